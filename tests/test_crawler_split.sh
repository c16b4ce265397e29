#!/usr/bin/env bash
# The crawler example split over two "machines" that share one Redis: A runs
# `crawler crawl --frontier /F --links /L`, B runs `crawler work --frontier
# /FB --links /LB`, and four shmq-bridge processes carry /F to /FB (holding
# each URL until B reports it done) and /LB back to /L. On the 3000-page site
# of test_crawler.sh the union of both sides' fetches (A's --out, which has
# B's pages through the linker) must be every reachable page once each, with
# every broken link counted; both crawlers and all four bridges exit 0, and B
# fetched some pages (the split was real). A hang is a failure: every wait is
# bounded.
# Usage: test_crawler_split.sh CRAWLER SHMQ BRIDGE
set -euo pipefail
crawler=$1
shmq=$2
bridge=$3
if ! command -v redis-server >/dev/null; then
	echo 'SKIP: redis-server not found'
	exit 77
fi

tmp=$(mktemp -d)
p=/shmq-crawlsplit.$$ # the queues: $p.F $p.L (A), $p.FB $p.LB (B)
redis_pid=
pids=() # everything below started in the background, by pid
cleanup() {
	set +e
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null
	done
	for pid in "${pids[@]}"; do
		timeout 5 tail --pid="$pid" -f /dev/null 2>/dev/null || kill -9 "$pid" 2>/dev/null
	done
	for q in F L FB LB; do
		"$shmq" rm "$p.$q" 2>/dev/null
	done
	if [ -n "$redis_pid" ]; then
		kill "$redis_pid" 2>/dev/null
		timeout 5 tail --pid="$redis_pid" -f /dev/null || kill -9 "$redis_pid" 2>/dev/null
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
names=() # the names given to start
logs() {
	for name in "${names[@]}"; do
		if kill -0 "${!name}" 2>/dev/null; then
			echo "$name: still running"
		fi
	done
	for f in "$tmp"/*.log "$tmp"/crawl.*; do
		[ -s "$f" ] && [ "${f##*/}" != redis.log ] && { echo "--- ${f##*/}"; tail -20 "$f"; }
	done
	return 0
}
fail() {
	echo "FAIL: $*" >&2
	logs >&2
	exit 1
}

# Redis on a free port of 127.0.0.1, nothing saved: try ports until one binds.
port=
for try in $(seq 20); do
	port=$((20000 + RANDOM % 40000))
	redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
		--dir "$tmp" >"$tmp/redis.log" 2>&1 &
	redis_pid=$!
	for i in $(seq 50); do
		grep -q 'Ready to accept connections' "$tmp/redis.log" && break
		kill -0 "$redis_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q 'Ready to accept connections' "$tmp/redis.log" && break
	kill "$redis_pid" 2>/dev/null || true
	timeout 5 tail --pid="$redis_pid" -f /dev/null || kill -9 "$redis_pid" 2>/dev/null || true
	redis_pid=
done
[ -n "$redis_pid" ] || fail "redis-server did not start (tried 20 ports)"
url=redis://127.0.0.1:$port

"$crawler" gen "$tmp/site" --pages 3000 --seed 42
sort "$tmp/site/expected-reachable.txt" >"$tmp/expected"
reachable=$(wc -l <"$tmp/expected")
[ "$reachable" -gt 2000 ] || fail "the site should have many reachable pages: $reachable"

# Joinable, each sized like crawl's own frontier; 512-byte messages take any
# path (248 bytes at most) and B's page records.
for q in F L FB LB; do
	"$shmq" create "$p.$q" --joinable --capacity 65536 --msg-max 512
done

# Start one command in the background under `timeout`: its pid goes to
# pids and to the variable named $1; stdout and stderr to $tmp/$1.log.
start() {
	local name=$1
	shift
	timeout 90 "$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
	names+=("$name")
	printf -v "$name" %s $!
}
start a_out "$bridge" out "$p.F" "$url/front"
start b_in "$bridge" in "$url/front" "$p.FB" --group g --producers 1 --join-with "$p.LB"
start b_out "$bridge" out "$p.LB" "$url/links"
start a_in "$bridge" in "$url/links" "$p.L" --group g --producers 1
# Wait (5 s at most) until every bridge holds its role: a crawl of this site
# takes a few tens of milliseconds, over before a late bridge could take part.
role() { # NAME producers|consumers: how many live handles have that role
	"$shmq" stat "$1" | sed -n "s/^$2: *//p"
}
for i in $(seq 50); do
	[ "$(role "$p.F" consumers)" -ge 1 ] && [ "$(role "$p.FB" producers)" -ge 1 ] &&
		[ "$(role "$p.LB" consumers)" -ge 1 ] && [ "$(role "$p.L" producers)" -ge 1 ] &&
		break
	[ "$i" -lt 50 ] || fail "the bridges did not attach to their queues within 5 s"
	sleep 0.1
done
start work "$crawler" work "$tmp/site" --workers 2 --frontier "$p.FB" --links "$p.LB"

rc=0
timeout 60 "$crawler" crawl "$tmp/site" --workers 2 --frontier "$p.F" --links "$p.L" \
	--out "$tmp/visited" >"$tmp/crawl.out" 2>"$tmp/crawl.err" || rc=$?
cat "$tmp/crawl.out"
[ "$rc" -ne 124 ] || fail "crawl hung"
[ "$rc" -eq 0 ] || fail "crawl exited with $rc"

# Each started command is under `timeout`, so these waits are bounded.
for name in work a_out b_in b_out a_in; do
	rc=0
	wait "${!name}" || rc=$?
	[ "$rc" -ne 124 ] || fail "$name hung (killed by timeout)"
	[ "$rc" -eq 0 ] || fail "$name exited with $rc"
done
pids=()

dups=$(sort "$tmp/visited" | uniq -d)
[ -z "$dups" ] || fail "fetched more than once: $(echo "$dups" | head -5)"
sort "$tmp/visited" | diff -u "$tmp/expected" - >"$tmp/diff" ||
	fail "visited set differs from the reachable set: $(head -20 "$tmp/diff")"
broken=$(sed -n 's/^broken links: //p' "$tmp/crawl.out")
want=$(wc -l <"$tmp/site/expected-broken.txt")
[ "$want" -gt 0 ] || fail "the site should have broken links"
[ "$broken" = "$want" ] || fail "broken links: counted $broken, expected $want"
b_pages=$(sed -n 's/^pages: //p' "$tmp/work.log")
remote=$(sed -n 's/^remote pages: //p' "$tmp/crawl.out")
[ -n "$b_pages" ] || fail "no pages figure from crawler work"
[ "$b_pages" = "$remote" ] || fail "B fetched $b_pages pages, A counted $remote from B"
[ "$b_pages" -ge 1 ] || fail "B fetched no page: the crawl was not split"
echo "ok: $reachable pages fetched once each (A $((reachable - b_pages)), B $b_pages)," \
	"$broken broken links"
