#!/usr/bin/env bash
# The Redis bridge (tools/bridge/, `shmq-bridge`) across real processes and a
# real redis-server that this script starts on a free port of 127.0.0.1 (own
# directory, AOF with appendfsync always). One mode per run:
#   transfer       2 producers x 500000 lines: local queue -> out bridge ->
#                  stream -> in bridge (--dedup) -> local queue -> shmq cat.
#                  Every line once, each producer's lines in order, both
#                  bridges and cat exit 0 (end of data crossed the bridge).
#   kill_out       ~300000 lines while the out bridge is SIGKILLed and
#                  restarted 20 times: nothing lost or duplicated, order kept,
#                  no feed fails, cat sees end of data only at the end.
#   kill_in        the same, killing the in bridge.
#   kill_nodedup   kill_in without --dedup: nothing lost, first occurrences
#                  in order; duplicates allowed (counted).
#   redis_restart  redis-server SIGKILLed mid-transfer and restarted on the
#                  same port and directory ~1 s later: the bridges reconnect,
#                  nothing lost, no duplicate.
#   end_of_data    two out bridges into one stream, one in bridge with
#                  --producers 2: it keeps its producer role after the first
#                  out bridge's end and ends (cat exits 0) after the second's.
#   errors         exit statuses: 69 (Redis unreachable, address named), 64
#                  (usage), 75 (same arguments as a live bridge), 65 (message
#                  over the local msg_max), missing queue; SIGTERM exits 0.
#   backpressure   out bridge with --maxlen 20 and nobody reading the stream:
#                  the stream stays within 20 entries and the producers wait;
#                  once an in bridge reads, every line arrives in order.
#   joinable       a coordinator's shmq_join on a JoinableQueue returns only
#                  after the far side's consumer task_done'd every message
#                  (tests/bridge_join.c plays both ends).
# Every wait is bounded: a hang is a failure. Exits 77 (skip) without
# redis-server.
# Usage: test_bridge.sh BRIDGE SHMQ MODE   (env BRIDGE_JOIN: the bridge_join
#        program; default: tests/bridge_join next to SHMQ's build directory;
#        env BRT_KEEP=1 keeps the logs, the output and Redis's directory)
set -euo pipefail
if [ $# -ne 3 ]; then
	echo "usage: $0 BRIDGE SHMQ MODE" >&2
	exit 64
fi
bridge=$1
shmq=$2
mode=$3

fail() {
	echo "FAIL: $*" >&2
	local f
	for f in "$tmp"/*.log; do
		[ -s "$f" ] || continue
		echo "--- last lines of $(basename "$f"):" >&2
		case $f in
		*/redis.log) tail -n 5 "$f" >&2 ;;
		*) tail -n 15 "$f" >&2 ;;
		esac
	done
	exit 1
}

for p in redis-server redis-cli; do
	if ! command -v "$p" >/dev/null; then
		echo "SKIP: $p not found"
		exit 77
	fi
done
join_helper=${BRIDGE_JOIN:-$(dirname "$shmq")/../tests/bridge_join}
[ -x "$bridge" ] || { echo "FAIL: no bridge program at $bridge" >&2; exit 1; }
[ -x "$shmq" ] || { echo "FAIL: no shmq program at $shmq" >&2; exit 1; }

tmp=$(mktemp -d "${TMPDIR:-/tmp}/brt.XXXXXX")
# Every queue and stream name of this run carries $id: nothing collides with
# another run.
id=brt$$x$RANDOM
started=() # pids of every process this script started
queues=()  # queues it created
t0=$(date +%s.%N)

# The bridges this script starts, and the keepers they start, carry
# SHMQ_BRT_RUN=$id in their environment; marked lists those alive.
marked() {
	grep -lsxz -- "SHMQ_BRT_RUN=$id" /proc/[0-9]*/environ 2>/dev/null |
		sed 's,^/proc/,,; s,/environ$,,' || true
}

keepers() { # the pids of this run's keepers, sorted
	local p
	for p in $(marked); do
		tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q '^[^ ]* keeper ' && echo "$p"
	done | sort -n | tr '\n' ' '
}

keepers_are() { # keepers_are N: this run has N keepers
	[ "$(keepers | wc -w)" -eq "$1" ]
}

cleanup() {
	local rc=$? p heap
	set +e
	exec 2>/dev/null # not bash's notes on the processes killed here
	trap - EXIT INT TERM
	for p in "${started[@]}"; do # still ours (not a pid reused since)
		[ "$(ps -o ppid= -p "$p" | tr -d ' ')" != $$ ] || kill -9 "$p"
	done
	# A bridge's keeper runs in its own session, not a child of this script
	# (one whose bridge was killed waits for a successor): found by this
	# run's mark in its environment; its window heap goes with it.
	for p in $(marked); do
		heap=$(tr '\0' ' ' <"/proc/$p/cmdline" | sed -n 's,.* keeper /\(shmqbr\.[0-9a-f]*\).*,\1,p')
		kill -9 "$p" 2>/dev/null
		[ -z "$heap" ] || rm -f "/dev/shm/$heap"
	done
	for p in "${queues[@]}"; do
		"$shmq" rm "$p" 2>/dev/null
	done
	if [ -n "${BRT_KEEP:-}" ]; then
		echo "logs kept in $tmp"
	else
		rm -rf "$tmp"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

elapsed() {
	awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f s", b - a }'
}

# ------------------------------------------------------------ processes ----

# await PID SECS WHAT: wait at most SECS s for PID to exit; sets rc.
await() {
	local pid=$1 secs=$2 what=$3
	local deadline=$((SECONDS + secs))
	while kill -0 "$pid" 2>/dev/null; do
		[ "$SECONDS" -lt "$deadline" ] || fail "$what (pid $pid) still running after $secs s"
		sleep 0.05
	done
	rc=0
	wait "$pid" || rc=$?
}

# expect_exit PID SECS WHAT STATUS: await, and fail unless it exited STATUS.
expect_exit() {
	await "$1" "$2" "$3"
	[ "$rc" -eq "$4" ] || fail "$3 exited with status $rc, expected $4"
}

# wait_for SECS WHAT COMMAND...: until COMMAND succeeds, at most SECS s.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local deadline=$((SECONDS + secs))
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || fail "waited $secs s for $what"
		sleep 0.05
	done
}

alive() {
	kill -0 "$1" 2>/dev/null
}

status() { # status PID: the exit status of a child that has exited
	local st=0
	wait "$1" || st=$?
	echo "$st"
}

# start_bridge LOGNAME ARGS...: run the bridge in the background, output to
# $tmp/LOGNAME.log (never to this script's stdout: its keeper may outlive
# it); sets bpid.
start_bridge() {
	local log=$1
	shift
	SHMQ_BRT_RUN=$id "$bridge" "$@" </dev/null >>"$tmp/$log.log" 2>&1 &
	bpid=$!
	started+=("$bpid")
}

# run_bridge SECS LOGNAME ARGS...: run the bridge in the foreground, at most
# SECS s; sets rc (124: timed out) and out (its output).
run_bridge() {
	local secs=$1 log=$2
	shift 2
	rc=0
	SHMQ_BRT_RUN=$id timeout -s KILL "$secs" "$bridge" "$@" </dev/null >"$tmp/$log.out" 2>&1 || rc=$?
	out=$(cat "$tmp/$log.out")
	[ "$rc" -ne 137 ] || rc=124
}

# ---------------------------------------------------------------- redis ----

free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' \
		2>/dev/null && return
	local p
	for _ in $(seq 100); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	fail "no free port found"
}

# redis_up: start redis-server on $redis_port, in $tmp/redis, and wait (at
# most 10 s) until it answers PING (not while it loads its AOF).
redis_up() {
	mkdir -p "$tmp/redis"
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$tmp/redis" --save '' \
		--appendonly yes --appendfsync always --daemonize no --protected-mode no \
		</dev/null >>"$tmp/redis.log" 2>&1 &
	redis_pid=$!
	started+=("$redis_pid")
	local i
	for i in $(seq 100); do
		[ "$(timeout 2 redis-cli -p "$redis_port" ping 2>/dev/null)" != PONG ] || return 0
		alive "$redis_pid" || return 1
		sleep 0.1
	done
	return 1
}

start_redis() {
	local try
	for try in 1 2 3; do # a port taken between free_port and bind: another
		redis_port=$(free_port)
		if redis_up; then
			url=redis://127.0.0.1:$redis_port
			echo "redis-server on 127.0.0.1:$redis_port (pid $redis_pid)"
			return
		fi
		kill -9 "$redis_pid" 2>/dev/null || true
		wait "$redis_pid" 2>/dev/null || true
	done
	fail "redis-server did not start"
}

rcli() {
	timeout 5 redis-cli -p "$redis_port" "$@"
}

xlen_at_least() { # xlen_at_least STREAM N
	[ "$(rcli XLEN "$1")" -ge "$2" ]
}

# --------------------------------------------------------------- queues ----

create() { # create NAME [OPTIONS]: a queue removed at the end
	"$shmq" create "$@" || fail "shmq create $* exited with $?"
	queues+=("$1")
}

stat_field() { # stat_field NAME FIELD: a number from `shmq stat --json`
	"$shmq" stat "$1" --json | sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p"
}

field_at_least() { # field_at_least NAME FIELD MIN
	local v
	v=$(stat_field "$1" "$2") && [ -n "$v" ] && [ "$v" -ge "$3" ]
}

lines_at_least() { # lines_at_least FILE N
	[ "$(wc -l <"$1")" -ge "$2" ]
}

# gen P N [CHUNK PAUSE]: lines "P 1" .. "P N"; with CHUNK, a pause of PAUSE s
# after every CHUNK lines (a producer that keeps a transfer going for a while).
gen() {
	awk -v p="$1" -v n="$2" -v chunk="${3:-0}" -v pause="${4:-0}" 'BEGIN {
		for (i = 1; i <= n; i++) {
			print p " " i
			if (chunk && i % chunk == 0 && i < n) {
				fflush()
				system("sleep " pause)
			}
		}
	}'
}

# start_feed QUEUE P N [CHUNK PAUSE]: a producer feeding gen's lines; sets fpid.
start_feed() {
	local q=$1
	shift
	gen "$@" | "$shmq" feed "$q" 2>>"$tmp/feed.log" &
	fpid=$!
	started+=("$fpid")
}

# hold_open QUEUE: one more producer of QUEUE, which puts nothing until
# hold_close (a feed reading a FIFO that a sleeping writer keeps open): the
# queue's end of data waits for it. Sets hold_feed and hold_writer.
hold_open() {
	local fifo
	fifo=$tmp/hold.$RANDOM$RANDOM
	mkfifo "$fifo"
	"$shmq" feed "$1" <"$fifo" 2>>"$tmp/feed.log" &
	hold_feed=$!
	started+=("$hold_feed")
	sleep 600 >"$fifo" &
	hold_writer=$!
	started+=("$hold_writer")
}

hold_close() { # hold_close FEED WRITER
	kill "$2"
	wait "$2" 2>/dev/null || true
	expect_exit "$1" 10 "the holding feed" 0
}

# check_seq FILE N STRICT: the lines of producers a and b. Each producer's
# first occurrences must be 1, 2, .., N in that order (nothing missing, none
# out of order); STRICT=1: no line twice either. Prints a summary; sets dups.
check_seq() {
	local res st=0
	res=$(awk -v n="$2" -v strict="$3" '
		function report(msg) { if (nrep++ < 8) print msg }
		BEGIN { last["a"] = 0; last["b"] = 0 }
		{
			if (NF != 2 || ($1 != "a" && $1 != "b") || $2 !~ /^[0-9]+$/) {
				report("line " NR ": malformed: \"" $0 "\""); bad++; next
			}
			p = $1; s = $2 + 0
			if (s == last[p] + 1) { last[p] = s; next }
			if (s > last[p]) { # a gap: remember the holes
				report("line " NR ": \"" $0 "\" right after " p " " last[p] ": " \
					s - last[p] - 1 " line(s) missing or late"); bad++
				for (v = last[p] + 1; v < s; v++) hole[p, v] = 1
				holes += s - last[p] - 1
				last[p] = s; next
			}
			if ((p, s) in hole) {
				report("line " NR ": \"" $0 "\" late, after " p " " last[p]); bad++
				delete hole[p, s]; holes--; next
			}
			dup++
			if (strict) { report("line " NR ": \"" $0 "\" again (after " p " " last[p] ")"); bad++ }
		}
		END {
			for (i = 1; i <= 2; i++) {
				p = i == 1 ? "a" : "b"
				if (last[p] != n) { report("producer " p ": up to " last[p] " of " n); bad++ }
			}
			if (holes) report(holes " line(s) never came")
			print "lines " NR " duplicates " dup + 0
			exit bad ? 1 : 0
		}' "$1") || st=$?
	dups=$(echo "$res" | sed -n 's/^lines [0-9]* duplicates //p')
	[ "$st" -eq 0 ] || fail "output of $(wc -l <"$1") lines, wrong: $res"
	echo "$res"
}

# ------------------------------------------------------------- transfers ----

# A transfer from $src through stream $stream to $dst, read by `shmq cat`:
# start_transfer N CHUNK PAUSE IN_OPTIONS... starts everything; the two
# producers a and b put N lines each (paced by CHUNK/PAUSE); the source stays
# open (hold_open) until finish_transfer, which checks the result.
start_transfer() {
	n=$1 chunk=$2 pause=$3
	shift 3
	src=/$id-src dst=/$id-dst stream=$url/$id-s1
	create "$src" --capacity 4096
	create "$dst" --capacity 4096
	out_args=(out "$src" "$stream")
	in_args=(in "$stream" "$dst" --group g --producers 1 "$@")
	"$shmq" cat "$dst" >"$tmp/out" 2>"$tmp/cat.log" &
	cat_pid=$!
	started+=("$cat_pid")
	start_bridge in "${in_args[@]}"
	in_pid=$bpid
	start_bridge out "${out_args[@]}"
	out_pid=$bpid
	hold_open "$src"
	src_hold=($hold_feed $hold_writer)
	wait_for 10 "the holder on $src" field_at_least "$src" producers 1
	start_feed "$src" a "$n" "$chunk" "$pause"
	feed_a=$fpid
	start_feed "$src" b "$n" "$chunk" "$pause"
	feed_b=$fpid
	wait_for 10 "3 producers on $src (2 feeds and the holder)" field_at_least "$src" producers 3
	echo "transfer: 2 x $n lines, $src -> $stream -> $dst (in: ${in_args[*]:3})"
}

# release_source: end the holder now; the source's end of data then comes
# when both feeds have exited.
release_source() {
	if [ -n "${src_hold[*]}" ]; then
		hold_close "${src_hold[@]}"
		src_hold=()
	fi
}

finish_transfer() { # finish_transfer STRICT
	expect_exit "$feed_a" 60 "feed of producer a" 0
	expect_exit "$feed_b" 60 "feed of producer b" 0
	if [ -n "${src_hold[*]}" ]; then
		alive "$cat_pid" || fail "shmq cat exited (status $(status "$cat_pid")) while the source was still open"
		release_source
	fi
	expect_exit "$out_pid" 60 "the out bridge" 0
	expect_exit "$in_pid" 60 "the in bridge" 0
	expect_exit "$cat_pid" 30 "shmq cat of $dst (end of data after the in bridge's end)" 0
	check_seq "$tmp/out" "$n" "$1"
	# Every entry acknowledged and gone from the stream (the ack script
	# trims what the group is done with).
	local left pending
	left=$(rcli XLEN "${stream##*/}")
	pending=$(rcli XPENDING "${stream##*/}" g | head -n 1)
	[ "$left" = 0 ] && [ "$pending" = 0 ] ||
		fail "after the transfer the stream holds $left entries, $pending pending"
	echo "stream empty, nothing pending"
}

# kill_loop out|in KILLS: SIGKILL that bridge KILLS times at random moments
# (0.05-0.3 s apart) and restart it each time with the same arguments.
kill_loop() {
	local which=$1 kills=$2 i ms
	local -n pid_ref=${which}_pid args_ref=${which}_args
	for ((i = 1; i <= kills; i++)); do
		ms=$((50 + RANDOM % 251))
		sleep "$(printf '0.%03d' "$ms")"
		alive "$cat_pid" || fail "shmq cat exited before kill $i: end of data seen early"
		if ! alive "$pid_ref"; then
			rc=0
			wait "$pid_ref" || rc=$?
			fail "the $which bridge exited by itself (status $rc) before kill $i"
		fi
		kill -9 "$pid_ref"
		wait "$pid_ref" 2>/dev/null || true
		echo "kill $i: $which bridge (pid $pid_ref) after ${ms} ms, $(wc -l <"$tmp/out") lines out"
		start_bridge "$which" "${args_ref[@]}"
		pid_ref=$bpid
	done
}

# ----------------------------------------------------------------- modes ----

start_redis

case $mode in
transfer)
	start_transfer 500000 0 0 --dedup
	release_source # end of data when both feeds have exited
	finish_transfer 1
	;;
kill_out | kill_in | kill_nodedup)
	which=${mode#kill_}
	dedup=--dedup
	if [ "$which" = nodedup ]; then
		which=in
		dedup=
	fi
	# 2 x 150000 lines, paced over ~4.5 s; the kills take ~4-5 s and the
	# source stays open until they are done.
	start_transfer 150000 5000 0.15 $dedup
	wait_for 10 "a keeper for each bridge" keepers_are 2
	before=$(keepers)
	kill_loop "$which" 20
	# Each restarted bridge adopted the keeper: the same two processes.
	[ "$(keepers)" = "$before" ] || fail "keepers were $before before the kills, $(keepers) after"
	echo "the same keepers throughout: $before"
	finish_transfer "$([ -n "$dedup" ] && echo 1 || echo 0)"
	[ -n "$dedup" ] || echo "duplicates without --dedup: $dups"
	;;
redis_restart)
	start_transfer 150000 5000 0.1 --dedup
	sleep 1.5
	got=$(wc -l <"$tmp/out")
	kill -9 "$redis_pid"
	wait "$redis_pid" 2>/dev/null || true
	echo "redis-server killed after $got lines out"
	sleep 1
	redis_up || fail "redis-server did not restart on port $redis_port"
	echo "redis-server restarted (pid $redis_pid), $(wc -l <"$tmp/out") lines out"
	alive "$out_pid" || fail "the out bridge exited while Redis was down"
	alive "$in_pid" || fail "the in bridge exited while Redis was down"
	# The transfer goes on after the restart (the bridges reconnected).
	got=$(wc -l <"$tmp/out")
	wait_for 20 "lines after the restart" lines_at_least "$tmp/out" $((got + 1000))
	finish_transfer 1
	;;
end_of_data)
	src1=/$id-src1 src2=/$id-src2 dst=/$id-dst stream=$url/$id-s
	create "$src1"
	create "$src2"
	create "$dst"
	n=50000
	"$shmq" cat "$dst" >"$tmp/out" 2>"$tmp/cat.log" &
	cat_pid=$!
	started+=("$cat_pid")
	start_bridge in in "$stream" "$dst" --group g --producers 2
	in_pid=$bpid
	start_bridge out1 out "$src1" "$stream"
	out1_pid=$bpid
	start_bridge out2 out "$src2" "$stream"
	out2_pid=$bpid
	hold_open "$src2" # the second source stays open until later
	wait_for 10 "the holder on $src2" field_at_least "$src2" producers 1
	start_feed "$src2" b "$n"
	feed_b=$fpid
	start_feed "$src1" a "$n"
	feed_a=$fpid
	expect_exit "$feed_a" 30 "feed of producer a" 0
	expect_exit "$feed_b" 30 "feed of producer b" 0
	expect_exit "$out1_pid" 30 "the first out bridge (its source ended)" 0
	echo "first out bridge done"
	wait_for 30 "all $((2 * n)) lines at $dst" lines_at_least "$tmp/out" $((2 * n))
	sleep 1 # time to end wrongly
	alive "$in_pid" || fail "the in bridge (--producers 2) exited after one out bridge's end (status $(status "$in_pid"))"
	alive "$cat_pid" || fail "shmq cat saw end of data after one out bridge's end"
	alive "$out2_pid" || fail "the second out bridge exited while its source was open"
	p=$(stat_field "$dst" producers)
	[ "$p" -ge 1 ] || fail "$dst has no live producer while the second source is open"
	echo "after the first end: in bridge running, cat running, $dst has $p producer(s)"
	hold_close "$hold_feed" "$hold_writer"
	expect_exit "$out2_pid" 30 "the second out bridge" 0
	expect_exit "$in_pid" 30 "the in bridge (--producers 2)" 0
	expect_exit "$cat_pid" 30 "shmq cat of $dst" 0
	check_seq "$tmp/out" "$n" 1
	;;
errors)
	src=/$id-src dst=/$id-dst
	create "$src"
	create "$dst"
	# Nothing listens on a port just bound and closed.
	dead=$(free_port)
	for dir in out in; do
		if [ $dir = out ]; then
			args=(out "$src" "redis://127.0.0.1:$dead/$id-s")
		else
			args=(in "redis://127.0.0.1:$dead/$id-s" "$dst" --group g)
		fi
		run_bridge 30 unreachable "${args[@]}"
		[ "$rc" -eq 69 ] || fail "$dir bridge, Redis unreachable: status $rc, expected 69: $out"
		grep -q "127.0.0.1:$dead" <<<"$out" || fail "$dir bridge, Redis unreachable: the message does not name 127.0.0.1:$dead: $out"
		echo "ok: $dir bridge, Redis unreachable: 69: $out"
	done

	s=$url/$id-s
	usage_cases=(
		""
		"bogus"
		"out"
		"out $src"
		"out $src http://127.0.0.1:$redis_port/$id-s"
		"out $src redis://127.0.0.1:$redis_port"
		"out $src $s --batch 0"
		"out $src $s --batch 1025"
		"out $src $s --batch ten"
		"out $src $s --maxlen"
		"out $src $s --frobnicate"
		"out $src $s extra"
		"in $s $dst"
		"in $s"
		"in $s $dst --group"
		"in $s $dst --group g --producers x"
		"in $s $dst --group g --claim-idle soon"
		"in $s $dst --group g --join-with"
	)
	for c in "${usage_cases[@]}"; do
		read -r -a args <<<"$c"
		run_bridge 10 usage "${args[@]}"
		[ "$rc" -eq 64 ] || fail "'shmq-bridge $c': status $rc, expected 64 (usage): $out"
	done
	echo "ok: ${#usage_cases[@]} bad usages: 64"

	for q in /$id-missing missing$id; do
		run_bridge 30 missing out "$q" "$s"
		[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "out bridge, missing queue $q: status $rc: $out"
		grep -q "${q#/}" <<<"$out" || fail "out bridge, missing queue: the message does not name $q: $out"
		run_bridge 30 missing in "$s" "$q" --group g
		[ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] || fail "in bridge, missing queue $q: status $rc: $out"
		grep -q "${q#/}" <<<"$out" || fail "in bridge, missing queue: the message does not name $q: $out"
	done
	echo "ok: missing queue: $out"

	# The same arguments as a live bridge: 75, and the live one goes on.
	hold_open "$src"
	wait_for 10 "the holder on $src" field_at_least "$src" producers 1
	start_bridge out1 out "$src" "$s"
	out1_pid=$bpid
	wait_for 10 "the out bridge to attach to $src" field_at_least "$src" consumers 1
	sleep 0.3
	run_bridge 15 out2 out "$src" "$s"
	[ "$rc" -eq 75 ] || fail "a second out bridge with the same arguments: status $rc, expected 75: $out"
	echo "ok: second out bridge: 75: $out"
	start_bridge in1 in "$s" "$dst" --group g
	in1_pid=$bpid
	wait_for 10 "the in bridge to attach to $dst" field_at_least "$dst" producers 1
	sleep 0.3
	run_bridge 15 in2 in "$s" "$dst" --group g
	[ "$rc" -eq 75 ] || fail "a second in bridge with the same arguments: status $rc, expected 75: $out"
	echo "ok: second in bridge: 75: $out"
	alive "$out1_pid" || fail "the first out bridge exited after the second was refused"
	alive "$in1_pid" || fail "the first in bridge exited after the second was refused"
	# Both still carry: a message put now arrives.
	"$shmq" put "$src" "after the refusal" || fail "shmq put exited with $?"
	msg=$(timeout 20 "$shmq" get "$dst") || fail "no message through the first bridges (status $?)"
	[ "$msg" = "after the refusal" ] || fail "got '$msg' through the bridges"
	hold_close "$hold_feed" "$hold_writer"
	expect_exit "$out1_pid" 30 "the first out bridge" 0
	kill -TERM "$in1_pid"
	expect_exit "$in1_pid" 15 "the in bridge without --producers, on SIGTERM" 0
	echo "ok: the first bridges carried on and ended with 0 (out: end of data; in: SIGTERM)"

	# A message larger than the destination's msg_max: 65.
	src65=/$id-src65 dst65=/$id-dst65
	create "$src65"
	create "$dst65" --msg-max 100
	start_bridge in65 in "$url/$id-s65" "$dst65" --group g --producers 1
	in65_pid=$bpid
	start_bridge out65 out "$src65" "$url/$id-s65"
	out65_pid=$bpid
	{
		echo short
		printf 'x%.0s' $(seq 300)
		echo
	} | "$shmq" feed "$src65" || fail "feed of $src65 exited with $?"
	expect_exit "$out65_pid" 30 "the out bridge of the large message" 0
	await "$in65_pid" 30 "the in bridge given a message over msg_max"
	[ "$rc" -eq 65 ] || fail "the in bridge given a 300-byte message for msg_max 100: status $rc, expected 65"
	echo "ok: message over msg_max: 65: $(tail -n 1 "$tmp/in65.log")"
	# Its keeper keeps the window (and the producer role) for a restart
	# once the queue is fixed: end it here, as an operator would.
	for p in $(marked); do
		if ls -l "/proc/$p/fd" 2>/dev/null | grep -q -- "/dev/shm/${dst65#/}\$"; then
			heap=$(tr '\0' ' ' <"/proc/$p/cmdline" | sed -n 's,.* keeper /\(shmqbr\.[0-9a-f]*\).*,\1,p')
			echo "the failed in bridge's keeper (pid $p, window /$heap) stays; ended by the test"
			kill -9 "$p"
			[ -z "$heap" ] || rm -f "/dev/shm/$heap"
		fi
	done
	;;
joinable)
	[ -x "$join_helper" ] || fail "no bridge_join program at $join_helper (set BRIDGE_JOIN)"
	src=/$id-jsrc dst=/$id-jdst stream=$url/$id-j
	create "$src" --joinable
	create "$dst" --joinable
	n=1000
	start_bridge out out "$src" "$stream"
	out_pid=$bpid
	start_bridge in in "$stream" "$dst" --group g --producers 1 --dedup
	in_pid=$bpid
	# The far side: 1 ms per message, then it writes its count, then
	# task_done. The coordinator reads that count the moment join returns.
	"$join_helper" consume "$dst" "$tmp/far" 1000 >"$tmp/consume.out" 2>"$tmp/consume.log" &
	cons_pid=$!
	started+=("$cons_pid")
	"$join_helper" produce "$src" "$n" "$tmp/far" >"$tmp/produce.out" 2>"$tmp/produce.log" &
	prod_pid=$!
	started+=("$prod_pid")
	await "$prod_pid" 60 "the coordinator's put and join"
	res=$(cat "$tmp/produce.out")
	echo "coordinator: $res (status $rc)"
	[ "$rc" -eq 0 ] || fail "the coordinator's join failed (status $rc): $res $(cat "$tmp/produce.log")"
	far=$(sed -n 's/.*far_done=\([0-9-]*\) .*/\1/p' <<<"$res")
	[ "$far" = "$n" ] || fail "join returned when the far side had done $far of $n messages"
	expect_exit "$out_pid" 30 "the out bridge" 0
	expect_exit "$in_pid" 30 "the in bridge" 0
	expect_exit "$cons_pid" 30 "the far side's consumer" 0
	grep -qx "consumed $n" "$tmp/consume.out" || fail "the far side's consumer: $(cat "$tmp/consume.out" "$tmp/consume.log")"
	echo "ok: join returned after the far side's $n task_done, not before"
	;;
backpressure)
	# --maxlen bounds the stream; with no in bridge reading, the out
	# bridge's window fills, then the local queue, and the producer waits
	# (no entry beyond the bound, nothing dropped); once an in bridge reads,
	# everything arrives in order.
	src=/$id-src dst=/$id-dst stream=$url/$id-s
	create "$src" --capacity 256 --msg-max 64 # a window filled with messages smaller than a keeper slot
	create "$dst"
	n=200000 # each: more 32-byte records than the 4 MiB window holds
	start_bridge out out "$src" "$stream" --maxlen 20 --batch 8
	out_pid=$bpid
	start_feed "$src" a "$n"
	feed_a=$fpid
	start_feed "$src" b "$n"
	feed_b=$fpid
	wait_for 20 "the stream to reach its bound" xlen_at_least "$id-s" 20
	sleep 1.5
	len=$(rcli XLEN "$id-s")
	[ "$len" -le 20 ] || fail "the stream holds $len entries past --maxlen 20"
	alive "$feed_a" || alive "$feed_b" || fail "the producers finished although nothing consumed the stream"
	depth=$(stat_field "$src" depth)
	echo "held back: stream $len entries, local queue $depth messages, producer waiting"
	"$shmq" cat "$dst" >"$tmp/out" 2>"$tmp/cat.log" &
	cat_pid=$!
	started+=("$cat_pid")
	start_bridge in in "$stream" "$dst" --group g --producers 1 --dedup
	in_pid=$bpid
	expect_exit "$feed_a" 60 "producer a" 0
	expect_exit "$feed_b" 60 "producer b" 0
	expect_exit "$out_pid" 60 "the out bridge" 0
	expect_exit "$in_pid" 60 "the in bridge" 0
	expect_exit "$cat_pid" 60 "shmq cat of $dst" 0
	check_seq "$tmp/out" "$n" 1
	;;
*)
	fail "unknown mode $mode"
	;;
esac

# A keeper ends by itself once its bridge has finished.
for _ in $(seq 60); do
	[ -n "$(marked)" ] || break
	sleep 0.05
done
left=$(for p in $(marked); do echo "$p: $(tr '\0' ' ' <"/proc/$p/cmdline")"; done)
[ -z "$left" ] || fail "left running 3 s after every bridge finished: $left"
echo "ok: $mode ($(elapsed))"
