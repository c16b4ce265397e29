#!/usr/bin/env bash
# Installs what shmq needs to build, test and benchmark, from Debian 12
# packages only. Run as root (or with sudo) on a fresh machine.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
packages=(
	build-essential meson ninja-build pkg-config git   # build
	libxxhash-dev                                        # the dict's hash
	libcriterion-dev clang libclang-rt-14-dev           # tests, sanitizers, fuzzing
	valgrind spin                                        # DRD, model checking
	python3-dev python3-pytest python3-mesonpy           # the Python package
	libck-dev liburcu-dev libzmq3-dev liblmdb-dev        # benchmark peers
	libiceoryx-binding-c-dev iceoryx python3 gnuplot-nox
	libhiredis-dev redis-server redis-tools              # the Redis bridge and its tests
)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
$sudo apt-get update -q
# Peers the benchmark can do without: install them one by one if the archive
# lacks any, rather than failing the whole set-up.
if ! $sudo apt-get install -y -q --no-install-recommends "${packages[@]}"; then
	for p in "${packages[@]}"; do
		$sudo apt-get install -y -q --no-install-recommends "$p" || echo "setup: could not install $p" >&2
	done
fi
