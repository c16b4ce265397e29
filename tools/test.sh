#!/usr/bin/env bash
# Builds shmq three ways and runs the whole test suite in each, then the
# reliability checks that need a build of their own:
#   release  build/       release build (what users get)
#   asan     build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer
#   tsan     build-tsan/  ThreadSanitizer
#   python   build/       the Python package's pytest suite (python/tests) with
#                         Debian's /usr/bin/python3, from the build tree
#   pyasan   build-asan/  the Python suite's binding tests against the package
#                         built with ASan+UBSan (the runtime preloaded)
#   drd      build/       tests/threads under valgrind's DRD (tests/drd.supp)
#   fuzz     build-fuzz/  90 s of fuzzing (clang), tests/fuzz: 22 s for each of 4 targets
#   model    (temp dirs)  Spin verification of tests/model/{ring,sync,epoch,chan,bridge}.pml
# In CI (CI=true) warnings are errors. Usage: tools/test.sh [step]...
# (default: every step). tests/torture/README.md has the long modes.
# Ends with 'total: N passed, N failed' and fails if anything failed.
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

failed=0
record() { # name, passed, failed
	echo "$1: $2 passed, $3 failed" | tee -a "$summary"
	[ "$3" -eq 0 ] || failed=1
}

# suite_args: more `meson test` arguments for the next run_suite.
run_suite() { # name, dir, meson options...
	local name=$1 dir=$2
	shift 2
	echo "=== $name ($dir)"
	configure "$dir" "${werror[@]}" "$@"
	ninja -C "$dir"
	meson test -C "$dir" --print-errorlogs --num-processes 1 ${suite_args:-} || true
	record "$name" $(count_tests "$dir/meson-logs/testlog.txt")
}

# Sums the test cases of one build's meson log, test by test: a Criterion
# suite by its "Synthesis" line, a TAP test (tests/test_cli.sh) by its
# "ok"/"not ok" lines, and any other test (the torture, tests/threads, the
# crawler) as one case by meson's result. A test meson failed whose own
# lines show no failure (it crashed, timed out or leaked after its
# synthesis) counts one failure more. Prints "passed failed".
count_tests() { # testlog.txt
	awk '
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
	END { end_test(); printf "%d %d\n", p, f }' "$1"
}

# Runs a pytest command (the arguments), tee'd into a log, and records its
# counts under a name. A run that printed no count is one failure.
pytest_record() { # name, log, command...
	local name=$1 log=$2 passed failed
	shift 2
	"$@" 2>&1 | tee "$log" || true
	passed=$({ grep -Eo '[0-9]+ passed' "$log" || true; } | tail -1 | cut -d' ' -f1)
	failed=$({ grep -Eo '[0-9]+ (failed|error)' "$log" || true; } | awk '{ n += $1 } END { print n + 0 }')
	grep -Eq '[0-9]+ (passed|failed)' "$log" || failed=$((failed + 1))
	record "$name" "${passed:-0}" "$failed"
}

# The Python suite against the package built in build/python (PYTHONPATH,
# and -P so that the source tree does not shadow it).
run_python() {
	echo "=== Python (pytest python/tests, build/python)"
	configure build "${werror[@]}" -Dpython=enabled
	ninja -C build
	pytest_record Python build/pytest.log env PYTHONPATH="$PWD/build/python" \
		/usr/bin/python3 -P -m pytest -q -p no:cacheprovider python/tests
}

# The binding's tests (not the seeds, start methods and leak counts: they add
# time, not coverage of C; nor the kill tests: Debian 12's ASan runtime can
# deadlock a child forked while another thread of the parent is in malloc,
# and they fork the most) against the extension and libshmq built with
# ASan+UBSan in build-asan. The interpreter is not instrumented: the runtime
# is preloaded, and Python's allocator is plain malloc.
run_pyasan() {
	echo "=== Python under ASan+UBSan (pytest, build-asan/python)"
	configure build-asan "${werror[@]}" "${asan_options[@]}"
	ninja -C build-asan
	local t tests=() reports=$PWD/build-asan/pyasan-report
	for t in queue pipe sync sharedctypes manager extras codec csp; do
		tests+=("python/tests/test_$t.py")
	done
	# pytest captures the tests' stderr, and an abort loses it: reports go
	# to files, shown here.
	rm -f "$reports".*
	pytest_record "Python ASan+UBSan" build-asan/pytest.log env \
		LD_PRELOAD="$(gcc -print-file-name=libasan.so)" PYTHONMALLOC=malloc \
		ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$reports" \
		UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$reports" \
		PYTHONPATH="$PWD/build-asan/python" /usr/bin/python3 -P -m pytest -q \
		-p no:cacheprovider "${tests[@]}"
	if compgen -G "$reports.*" >/dev/null; then
		head -60 "$reports".*
		record "Python ASan+UBSan reports" 0 1
	fi
}

# tests/threads under DRD, in the release build. DRD does not model C11
# atomics or futexes: see tests/threads.c (ignore_segments) and tests/drd.supp.
run_drd() {
	echo "=== DRD (build/tests/threads under valgrind --tool=drd)"
	configure build "${werror[@]}"
	ninja -C build tests/threads
	if valgrind --tool=drd --error-exitcode=1 --suppressions=tests/drd.supp \
		build/tests/threads 5000; then
		record DRD 1 0
	else
		record DRD 0 1
	fi
}

# 90 s of fuzzing, split between the targets (22 s each), each from its seed
# corpus; new inputs go to a temporary directory, crash reproducers to
# build-fuzz/.
run_fuzz() {
	echo "=== fuzz (build-fuzz, 4 targets, 22 s each)"
	CC=clang configure build-fuzz "${werror[@]}" -Dfuzz=true -Dtests=disabled -Dbench=false -Dpython=disabled
	ninja -C build-fuzz tests/fuzz/fuzz_segment tests/fuzz/fuzz_heap tests/fuzz/fuzz_dict \
		tests/fuzz/fuzz_chan
	local target seeds corpus log passed=0 failed=0
	for target in fuzz_segment:corpus fuzz_heap:corpus-heap fuzz_dict:corpus-dict \
		fuzz_chan:corpus-chan; do
		seeds=tests/fuzz/${target#*:}
		target=${target%%:*}
		log=build-fuzz/$target.log
		corpus=$(mktemp -d)
		echo "--- $target"
		if build-fuzz/tests/fuzz/$target -timeout=5 -max_total_time=22 -handle_xfsz=0 \
			-print_final_stats=1 -artifact_prefix=build-fuzz/ \
			"$corpus" "$seeds" >"$log" 2>&1; then
			grep -E 'DONE|stat::(number_of_executed_units|average_exec_per_sec)' "$log"
			passed=$((passed + 1))
		else
			tail -40 "$log"
			failed=$((failed + 1))
		fi
		rm -rf "$corpus"
	done
	record Fuzz $passed $failed
}

# Exhaustive safety verification of each model (assertions, invalid end
# states), one result each; pan exits 0 whatever it finds, so its report is
# checked. A counterexample's trail is kept (the path is printed).
run_model() {
	local name
	for name in ring sync epoch chan bridge; do
		check_model "$name"
	done
}

check_model() { # name: tests/model/NAME.pml
	local name=$1 dir
	echo "=== model (spin, tests/model/$name.pml)"
	dir=$(mktemp -d)
	cp "tests/model/$name.pml" "$dir"
	if (cd "$dir" && spin -a "$name.pml" && cc -O2 -DSAFETY -DCOLLAPSE -DMEMLIM=2048 -o pan pan.c &&
		./pan -m100000) >"$dir/log" 2>&1 &&
		grep -q 'errors: 0' "$dir/log" && ! grep -q 'Search not completed' "$dir/log"; then
		grep -E 'errors:|states, stored|elapsed' "$dir/log"
		record "Model $name" 1 0
		rm -rf "$dir"
	else
		grep -v '^Depth=' "$dir/log" | tail -30
		[ -f "$dir/$name.pml.trail" ] &&
			echo "counterexample: $dir/$name.pml.trail (replay there: spin -t -p -g $name.pml)"
		record "Model $name" 0 1
	fi
}

# The ASan+UBSan build (its C suites and the Python binding's tests).
asan_options=(-Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debugoptimized
	-Dbench=false -Dpython=enabled)

summary=$(mktemp)
trap 'rm -f "$summary"' EXIT

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(release python asan pyasan tsan drd fuzz model)
for b in "${steps[@]}"; do
	case $b in
	release) run_suite Release build ;;
	asan) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		run_suite "ASan+UBSan" build-asan "${asan_options[@]}" ;;
	# The Redis bridge and the split crawl (suite bridge) are single-threaded
	# processes: release and ASan run them, TSan would add only time.
	tsan) TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 suite_args="--no-suite bridge" \
		run_suite TSan build-tsan -Db_sanitize=thread -Db_lundef=false \
		-Dbuildtype=debugoptimized -Dbench=false -Dpython=disabled ;;
	python) run_python ;;
	pyasan) run_pyasan ;;
	drd) run_drd ;;
	fuzz) run_fuzz ;;
	model) run_model ;;
	*) echo "unknown step: $b" >&2; exit 2 ;;
	esac
done
awk '{ p += $(NF-3); f += $(NF-1) } END { printf "total: %d passed, %d failed\n", p, f }' "$summary"
exit $failed
