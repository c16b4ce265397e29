#!/usr/bin/env bash
# Builds shmq three ways and runs the whole test suite in each:
#   build/       release build (what users get)
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer
#   build-tsan/  ThreadSanitizer
# In CI (CI=true) warnings are errors. Usage: tools/test.sh [release|asan|tsan]...
set -euo pipefail
cd "$(dirname "$0")/.."

werror=()
[ "${CI:-}" = true ] && werror=(-Dwerror=true)

configure() { # dir, meson options...
	local dir=$1
	shift
	if [ -d "$dir/meson-private" ]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
}

run_suite() { # name, dir, meson options...
	local name=$1 dir=$2
	shift 2
	echo "=== $name ($dir)"
	configure "$dir" "${werror[@]}" "$@"
	ninja -C "$dir"
	meson test -C "$dir" --print-errorlogs --num-processes 1
	# Criterion's per-suite "Synthesis" lines, summed over this build.
	awk -F'[|:]' -v b="$name" '/Synthesis: Tested/ { p += $5; f += $7 + $9 }
		END { printf "%s: %d passed, %d failed\n", b, p, f }' \
		"$dir/meson-logs/testlog.txt" | tee -a "$summary"
}

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

builds=("$@")
[ ${#builds[@]} -gt 0 ] || builds=(release asan tsan)
for b in "${builds[@]}"; do
	case $b in
	release) run_suite Release build ;;
	asan) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		run_suite "ASan+UBSan" build-asan -Db_sanitize=address,undefined -Db_lundef=false \
		-Dbuildtype=debugoptimized -Dbench=false ;;
	tsan) TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
		run_suite TSan build-tsan -Db_sanitize=thread -Db_lundef=false \
		-Dbuildtype=debugoptimized -Dbench=false ;;
	*) echo "unknown build: $b" >&2; exit 2 ;;
	esac
done
awk '{ p += $(NF-3); f += $(NF-1) } END { printf "total: %d passed, %d failed\n", p, f }' "$summary"
