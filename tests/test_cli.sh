#!/usr/bin/env bash
# The shmq command-line tool, run for real: subcommands, framing round trips,
# exit codes, and a pipeline of two feeders and three cats moving 1M lines.
# Usage: tests/test_cli.sh path/to/shmq. Prints TAP (one line per check).
set -uo pipefail
export LC_ALL=C
shmq=${1:?usage: test_cli.sh path/to/shmq}
shmq=$(cd "$(dirname "$shmq")" && pwd)/$(basename "$shmq")
tmp=$(mktemp -d)
p=shmq-clitest-$$ # queue names: /dev/shm is shared with other test runs
cleanup() {
	exec 3>&- 2>/dev/null
	jobs -p | xargs -r kill 2>/dev/null
	rm -rf "$tmp"
	rm -f /dev/shm/$p-*
}
trap cleanup EXIT
cd "$tmp" || exit 1

n=0 failed=0
ok() { # description: the previous command's verdict was true
	n=$((n + 1))
	echo "ok $n - $1"
}
not_ok() { # description, details...
	n=$((n + 1))
	failed=$((failed + 1))
	echo "not ok $n - $1"
	shift
	[ $# -gt 0 ] && printf '# %s\n' "$@"
}
check() { # description, command...: passes when the command succeeds
	local what=$1
	shift
	if "$@" >check.out 2>&1; then ok "$what"; else not_ok "$what" "$(tail -5 check.out)"; fi
}
code() { # description, expected exit code, command...
	local what=$1 want=$2
	shift 2
	"$@" >code.out 2>code.err
	local got=$?
	if [ $got -eq "$want" ]; then ok "$what"; else not_ok "$what" "exit $got, want $want" "$(cat code.err)"; fi
}
same() { # description, file, file
	if cmp -s "$2" "$3"; then ok "$1"; else not_ok "$1" "$(cmp "$2" "$3" 2>&1)"; fi
}
# A file of n bytes from /dev/urandom, as --len framed input: 4-byte
# little-endian length, then the bytes.
le32() {
	local v=$1
	printf "\\$(printf %03o $((v & 255)))\\$(printf %03o $(((v >> 8) & 255)))"
	printf "\\$(printf %03o $(((v >> 16) & 255)))\\$(printf %03o $(((v >> 24) & 255)))"
}
len_record() { # size: appends one random record of that size to stdout
	le32 "$1"
	head -c "$1" /dev/urandom
}

# ---------------------------------------------------------------- help ----
for c in create rm ls stat put get cat feed; do
	check "$c --help" bash -c "'$shmq' $c --help | grep -q '^usage: shmq $c'"
done
check "--help lists the exit codes" bash -c "'$shmq' --help | grep -q 'EX_TEMPFAIL'"
code "no command is a usage error" 64 "$shmq"
code "unknown command" 64 "$shmq" frob
code "missing NAME" 64 "$shmq" get
code "unknown option" 64 "$shmq" get $p-x --bogus
code "bad option value" 64 "$shmq" get $p-x -n zero
code "option of another command" 64 "$shmq" cat $p-x --capacity 8
code "bad --capacity" 64 "$shmq" create $p-x --capacity 1Q

# ------------------------------------------- create, ls, stat, put, get ----
q=$p-basic
check "create" "$shmq" create $q --capacity 64 --msg-max 1K --cell-size 32 --mode 0640
code "create again: exists" 73 "$shmq" create $q
check "create without options: 64K cells of 64 bytes, msg_max 64K" bash -c \
	"'$shmq' create $p-defaults && '$shmq' stat $p-defaults --json | grep -q '\"capacity\":65536,\"cell_size\":64,\"msg_max\":65536' && '$shmq' rm $p-defaults"
check "mode is 0640" test "$(stat -c %a /dev/shm/$q)" = 640
"$shmq" ls >ls.out
check "ls lists the queue" grep -Eq "^$q +64 +32 +1024 +0 +0 +0\$" ls.out
check "ls header" grep -Eq '^NAME +CAPACITY +CELL_SIZE +MSG_MAX +DEPTH +PRODUCERS +CONSUMERS$' ls.out
head -c 100000 /dev/zero >/dev/shm/$p-notq
"$shmq" ls >ls.out
check "ls skips segments that are not queues" bash -c "! grep -q '^$p-notq' ls.out"
code "rm refuses a segment that is not a queue" 76 "$shmq" rm $p-notq
check "... and leaves it" test -e /dev/shm/$p-notq
rm -f /dev/shm/$p-notq
code "stat of a missing queue" 66 "$shmq" stat $p-none
check "put three messages" "$shmq" put $q one "two words" ""
"$shmq" stat $q >stat.out
check "stat: depth 3" grep -q '^depth: *3 messages' stat.out
check "stat: geometry" grep -q '^msg_max: *1024 bytes' stat.out
"$shmq" stat /$q --json >json.out
check "stat --json" grep -q "^{\"name\":\"/$q\",.*\"capacity\":64,\"cell_size\":32,\"msg_max\":1024,.*\"depth\":3,\"producers\":0,\"consumers\":0,\"puts\":3,\"gets\":0" json.out
if command -v python3 >/dev/null; then
	check "stat --json is JSON" python3 -c 'import json, sys; json.load(open("json.out"))'
fi
"$shmq" get $q -n 2 >get.out
printf 'one\ntwo words\n' >want.out
same "get -n 2" get.out want.out
"$shmq" get $q >get.out
printf '\n' >want.out
same "get: the empty message" get.out want.out
code "get at end of data: every producer gone" 69 "$shmq" get $q --timeout 5
code "put with no consumer left" 69 "$shmq" put $q late
check "rm" "$shmq" rm $q
code "rm again: no such queue" 66 "$shmq" rm $q
code "get from a missing queue" 66 "$shmq" get $q

q=$p-time
"$shmq" create $q
start=$(date +%s%N)
code "get --timeout on a queue no producer attached to" 75 "$shmq" get $q --timeout 0.3
waited=$((($(date +%s%N) - start) / 1000000))
check "... waited about 0.3 s ($waited ms)" test $waited -ge 290 -a $waited -lt 5000
code "get --timeout 0" 75 "$shmq" get $q --timeout 0
"$shmq" rm $q

q=$p-watch
"$shmq" create $q
timeout -s INT 2 "$shmq" stat $q --watch 0.2 >watch.out
check "stat --watch: a line per interval" test "$(grep -c '^depth  *0  put  *0 msg/s  get  *0 msg/s' watch.out)" -ge 3
timeout -s INT 1 "$shmq" stat $q --watch=0.2 --json >watch.out
check "stat --watch --json: objects with rates" grep -q '"put_rate":0.0,"get_rate":0.0}$' watch.out
code "stat: a second argument needs --watch" 64 "$shmq" stat $q 2
"$shmq" rm $q

# ---------------------------------------------------------------- framing --
msg_max=4096
roundtrip() { # description, input file, framing options...
	local what=$1 in=$2
	shift 2
	local q=$p-frame
	"$shmq" create $q --msg-max $msg_max --capacity 256
	# From a file, and through a pipe (reads that end mid-message).
	"$shmq" feed $q "$@" <"$in" &
	"$shmq" cat $q "$@" >out1
	wait
	"$shmq" rm $q
	"$shmq" create $q --msg-max $msg_max --capacity 256
	{ cat "$in" | "$shmq" feed $q "$@"; } & "$shmq" cat $q "$@" >out2
	wait
	"$shmq" rm $q
	same "$what (from a file)" "$in" out1
	same "$what (through a pipe)" "$in" out2
}
{
	printf 'plain\n\n  spaces  \ttab\n'
	head -c $msg_max /dev/zero | tr '\0' x
	printf '\n'
	for i in $(seq 1 2000); do echo "line $i"; done
	head -c $((msg_max - 1)) /dev/zero | tr '\0' y
	printf '\n'
} >lines.in
roundtrip "newline framing, a line of msg_max bytes" lines.in
{
	printf 'multi\nline\0\0with \n newlines\0'
	head -c $msg_max /dev/zero | tr '\0' z
	printf '\0'
} >nul.in
roundtrip "-0 framing" nul.in -0
{
	len_record 0
	len_record 1
	printf '\005\0\0\0\0\0\0\0\0' # five NUL bytes
	for s in 3 100 1000 $((msg_max - 1)) $msg_max 17 4000; do len_record $s; done
} >len.in
roundtrip "--len framing, binary with NUL bytes, msg_max" len.in --len

q=$p-frame
"$shmq" create $q --msg-max $msg_max
printf 'last line without newline' >nonl.in
"$shmq" feed $q <nonl.in && "$shmq" cat $q >out
printf 'last line without newline\n' >want.out
same "feed: a last line without newline is a message" out want.out
"$shmq" rm $q

"$shmq" create $q --msg-max $msg_max
{ echo before; head -c $((msg_max + 1)) /dev/zero | tr '\0' x; echo; echo after; } >long.in
code "feed: a line longer than msg_max" 65 "$shmq" feed $q <long.in
check "... says so" grep -q "message 2 is longer than the queue's msg_max (4096 bytes)" code.err
"$shmq" cat $q >out
echo before >want.out
same "... after putting the messages before it" out want.out
"$shmq" rm $q

"$shmq" create $q --msg-max $msg_max
code "put: an argument longer than msg_max" 65 "$shmq" put $q ok "$(head -c $((msg_max + 1)) /dev/zero | tr '\0' x)"
check "... puts none" grep -q '^depth: *0 messages' <("$shmq" stat $q)
{ len_record 10; le32 100; printf 'short'; } >trunc.in
code "feed --len: input ends inside a message" 65 "$shmq" feed $q --len <trunc.in
{ le32 $((msg_max + 1)); } >big.in
"$shmq" rm $q
"$shmq" create $q --msg-max $msg_max
code "feed --len: a length over msg_max" 65 "$shmq" feed $q --len <big.in
"$shmq" rm $q

"$shmq" create $q
"$shmq" put $q a b c
"$shmq" get $q -n 3 -0 >out
printf 'a\0b\0c\0' >want.out
same "get -0" out want.out
"$shmq" rm $q
"$shmq" create $q
"$shmq" put $q abc
"$shmq" get $q --len >out
printf '\003\0\0\0abc' >want.out
same "get --len" out want.out
"$shmq" rm $q

# JoinableQueue: cat marks each message done once written, so nothing is
# reported lost after it exits.
q=$p-join
"$shmq" create $q --joinable
"$shmq" put $q x y
"$shmq" cat $q >/dev/null
check "joinable: cat marks messages done" grep -q '"joinable":true.*"held":0,"lost":0' <("$shmq" stat $q --json)
"$shmq" rm $q

# --------------------------------------------------------------- pipeline --
# Two feeders with disjoint numbered lines, three cats, 1M lines in all: none
# lost or duplicated, each producer's lines in order within each output. A
# holder (a feeder reading a FIFO) is attached first, so the queue cannot
# reach end of data before both feeders attached. Only this shell may hold
# the FIFO's write end (fd 3): the others close it, or the holder never
# sees end of input.
q=$p-pipe
half=500000
awk -v n=$half 'BEGIN { for (i = 0; i < n; i++) printf "a%07d\n", i }' >a.in
awk -v n=$half 'BEGIN { for (i = 0; i < n; i++) printf "b%07d\n", i }' >b.in
"$shmq" create $q --capacity 1024
mkfifo hold
"$shmq" feed $q <hold &
holder=$!
exec 3>hold
for _ in $(seq 100); do
	"$shmq" stat $q | grep -q '^producers: *1$' && break
	sleep 0.1
done
"$shmq" cat $q >c1.out 3>&- &
c1=$!
"$shmq" cat $q >c2.out 3>&- &
c2=$!
"$shmq" cat $q >c3.out 3>&- &
c3=$!
"$shmq" feed $q <a.in 3>&- &
f1=$!
cat b.in 3>&- | "$shmq" feed $q 3>&- &
f2=$!
wait $f1
r1=$?
wait $f2
r2=$?
exec 3>&- # the holder sees end of input: last producer gone, cats see EOF
wait $holder
wait $c1 && wait $c2 && wait $c3
r3=$?
check "pipeline: feeders and cats exit 0" test $r1 -eq 0 -a $r2 -eq 0 -a $r3 -eq 0
sort -m <(sort a.in) <(sort b.in) >want.out
sort c1.out c2.out c3.out >got.out
check "pipeline: 1M lines, none lost or duplicated" cmp -s want.out got.out
order=0
for f in c1.out c2.out c3.out; do
	for s in a b; do
		grep "^$s" $f | LC_ALL=C sort -c 2>/dev/null || order=1
	done
done
check "pipeline: each producer's lines in order in every output" test $order -eq 0
check "pipeline: queue drained" grep -q '^depth: *0 messages' <("$shmq" stat $q)
"$shmq" rm $q

echo "1..$n"
[ $failed -eq 0 ]
