#!/usr/bin/env bash
# Times `shmq feed q < in & shmq cat q > out` against `cat in | cat > out`:
# LINES lines of WIDTH + 6 bytes (20 by default), REPS runs of each,
# interleaved so both see the same machine load; prints median, min and max
# wall seconds and the ratio. The queue is created with CREATE_OPTS.
# Usage: tools/cli-bench.sh [path/to/shmq] (LINES, WIDTH, REPS, CREATE_OPTS, DIR in the env)
set -euo pipefail
shmq=${1:-build/tools/shmq}
lines=${LINES:-10000000}
reps=${REPS:-7}
dir=${DIR:-$(mktemp -d)}
q=clibench$$
in=$dir/in.txt
trap 'rm -f "$in" "$dir/out.txt"; "$shmq" rm $q 2>/dev/null || true' EXIT

awk -v n="$lines" -v w="${WIDTH:-14}" 'BEGIN { f = "line %0" w "d\n"; for (i = 0; i < n; i++) printf f, i }' >"$in"
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.6f", b - a }'; }
declare -a t_pipe t_shmq
for ((r = 0; r < reps; r++)); do
	rm -f "$dir/out.txt"
	t0=$EPOCHREALTIME
	cat "$in" | cat >"$dir/out.txt"
	t_pipe+=("$(since "$t0")")

	rm -f "$dir/out.txt"
	"$shmq" create $q ${CREATE_OPTS:-}
	t0=$EPOCHREALTIME
	"$shmq" feed $q <"$in" &
	"$shmq" cat $q >"$dir/out.txt"
	wait
	t_shmq+=("$(since "$t0")")
	"$shmq" rm $q
	cmp -s "$in" "$dir/out.txt" || { echo "cli-bench: output differs" >&2; exit 1; }
done
median() { printf '%s\n' "$@" | sort -g | awk '{ t[NR] = $1 }
	END { print NR % 2 ? t[(NR + 1) / 2] : (t[NR / 2] + t[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "min %.3f  max %.3f", lo, hi }'; }
mp=$(median "${t_pipe[@]}")
ms=$(median "${t_shmq[@]}")
echo "$lines lines, $(stat -c %s "$in") bytes, $reps runs each"
printf 'cat | cat (pipe)      median %.3f s  %s\n' "$mp" "$(range "${t_pipe[@]}")"
printf 'shmq feed & shmq cat  median %.3f s  %s\n' "$ms" "$(range "${t_shmq[@]}")"
echo "$mp $ms" | awk '{ printf "shmq / pipe time: %.2f (shmq is %.2fx as fast)\n", $2 / $1, $1 / $2 }'
