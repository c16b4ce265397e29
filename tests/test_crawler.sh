#!/usr/bin/env bash
# The crawler example (examples/crawler.c) on a generated site of 3000 pages.
#   complete:      4 workers fetch every page reachable from index.html exactly
#                  once, no unreachable page, and count every broken link target
#                  (the generator writes the expected sets from its own model of
#                  the links, not by parsing its HTML).
#   killed_worker: a worker SIGKILLs itself holding a URL; join still returns,
#                  the loss is reported (-EOWNERDEAD, exit status 3), and no
#                  page is fetched twice.
# Usage: test_crawler.sh CRAWLER complete|killed_worker
set -euo pipefail
crawler=$1
mode=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() {
	echo "FAIL: $*" >&2
	exit 1
}

"$crawler" gen "$tmp/site" --pages 3000 --seed 42
sort "$tmp/site/expected-reachable.txt" >"$tmp/expected"
files=$(find "$tmp/site" -name '*.html' | wc -l)
reachable=$(wc -l <"$tmp/expected")
[ "$reachable" -gt 2000 ] && [ "$reachable" -lt "$files" ] ||
	fail "the site should have reachable and unreachable pages: $reachable of $files"

case $mode in
complete)
	# A hang is a failure too: timeout exits 124.
	timeout 60 "$crawler" crawl "$tmp/site" --workers 4 --out "$tmp/visited" | tee "$tmp/log" ||
		fail "crawl exited with $?"
	dups=$(sort "$tmp/visited" | uniq -d)
	[ -z "$dups" ] || fail "fetched more than once: $(echo "$dups" | head -5)"
	sort "$tmp/visited" | diff -u "$tmp/expected" - >"$tmp/diff" ||
		fail "visited set differs from the reachable set: $(head -20 "$tmp/diff")"
	broken=$(sed -n 's/^broken links: //p' "$tmp/log")
	want=$(wc -l <"$tmp/site/expected-broken.txt")
	[ "$want" -gt 0 ] || fail "the site should have broken links"
	[ "$broken" = "$want" ] || fail "broken links: counted $broken, expected $want"
	grep -q '^pages/s: [1-9]' "$tmp/log" || fail "no pages/s figure"
	echo "ok: $reachable pages fetched once each, $broken broken links"
	;;
killed_worker)
	rc=0
	timeout 60 "$crawler" crawl "$tmp/site" --workers 4 --kill-after 100 --out "$tmp/visited" \
		>"$tmp/log" 2>"$tmp/err" || rc=$?
	cat "$tmp/log" "$tmp/err"
	[ "$rc" -ne 124 ] || fail "join hung after a worker died"
	[ "$rc" -eq 3 ] || fail "exit status $rc, expected 3 (incomplete crawl)"
	grep -q 'EOWNERDEAD: [1-9][0-9]* URL(s) lost' "$tmp/err" || fail "loss not reported"
	grep -q 'killed by signal 9' "$tmp/err" || fail "no worker was killed"
	dups=$(sort "$tmp/visited" | uniq -d)
	[ -z "$dups" ] || fail "fetched more than once: $(echo "$dups" | head -5)"
	extra=$(sort "$tmp/visited" | comm -13 "$tmp/expected" -)
	[ -z "$extra" ] || fail "fetched unreachable pages: $(echo "$extra" | head -5)"
	echo "ok: join returned after the kill, $(wc -l <"$tmp/visited") of $reachable pages fetched"
	;;
*)
	fail "unknown mode $mode"
	;;
esac
