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
	count_tests "$name" "$dir/meson-logs/testlog.txt" | tee -a "$summary"
}

# Sums the test cases of one build's meson log, test by test: a Criterion
# suite by its "Synthesis" line, a TAP test (tests/test_cli.sh) by its
# "ok"/"not ok" lines, and any other test as one case by meson's result.
# A test meson failed whose own lines show no failure (it crashed, timed out
# or leaked after its synthesis) counts one failure more.
count_tests() { # build name, testlog.txt
	awk -v b="$1" '
	function end_test() {
		if (!in_test)
			return
		if (synth) { p += sp; f += sf }
		else if (tap) { p += tp; f += tf }
		else if (passed) p++
		if (!passed && (synth ? sf : tap ? tf : 0) == 0)
			f++
	}
	/^=+ [0-9]+\/[0-9]+ =+$/ { end_test(); in_test = 1; synth = tap = sp = sf = tp = tf = passed = 0 }
	/^result:/ { passed = $0 ~ /exit status 0$/ }
	/Synthesis: Tested/ { split($0, x, /[|:]/); synth = 1; sp += x[5]; sf += x[7] + x[9] }
	/^ok [0-9]+/ { tap = 1; tp++ }
	/^not ok [0-9]+/ { tap = 1; tf++ }
	END { end_test(); printf "%s: %d passed, %d failed\n", b, p, f }' "$2"
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
