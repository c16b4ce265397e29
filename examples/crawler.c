/* crawler: a multi-process crawler over a local "site", the JoinableQueue
 * example.
 *
 *   crawler gen DIR --pages N [--seed S]
 *	writes a deterministic site of N pages plus DIR/index.html, and the
 *	lists of what a correct crawl must find (site.h).
 *
 *   crawler crawl DIR [--workers W] [--out FILE] [--max-urls M] [--kill-after K]
 *		       [--frontier /F --links /L]
 *	crawls DIR from index.html with W worker processes and prints pages/s.
 *	--out writes every page fetched, one path per line, once per fetch.
 *	--kill-after is a test hook: the first worker to have crawled K URLs
 *	SIGKILLs itself while holding its next URL (got, not task_done).
 *	--frontier and --links split the crawl over two machines (below).
 *
 *   crawler work DIR [--workers W] --frontier /FB --links /LB
 *	the far side of a split crawl: fetches the URLs of /FB and reports
 *	what it found on /LB; exits at end of data on /FB.
 *
 * How it works: the frontier is an anonymous JoinableQueue of paths; the
 * visited-set is a shmq_dict (shmq/dict.h) on an anonymous heap that the
 * workers inherit by fork(): its keys are paths, its values each path's fetch
 * count (an int64_t). A worker gets a path, fetches and parses the page,
 * inserts each link into the dict and puts the ones it inserted first (the
 * others get -EEXIST), then calls task_done. It
 * puts before it calls task_done, so the count of unfinished paths never
 * drops to zero while work remains: the coordinator's shmq_join returns
 * exactly when the crawl is complete. Exit status: 0 complete, 3 incomplete
 * (a worker died holding URLs: join reported -EOWNERDEAD, or -EPIPE when no
 * worker was left to crawl what is queued), 1 error, 2 usage.
 *
 * Split mode (two machines, one Redis, four shmq-bridge processes): on
 * machine A, `crawl --frontier /F --links /L` uses the named JoinableQueue
 * /F (`shmq create /F --joinable`) as its frontier, and an out bridge ships
 * part of it to B, holding each URL shipped (not task_done) until B reports
 * it done. On B, `work` workers get URLs from /FB (an in bridge feeds it)
 * and fetch and parse them like a worker, but keep no visited-set: they put
 * an 'L' message per link ('L' + path) and then an 'F' record of the page
 * ('F' + the page's counters + path) into /LB, and only then task_done the
 * URL. An out bridge carries /LB to A's /L, where a linker process does with
 * each 'L' what a worker does with a link and adds each 'F' record to the
 * visited-set and the counters, then task_done's it. Every put comes before
 * the task_done it causes, and a bridge reports done only when its queues
 * are joined, so A's join on /F is as exact as on one machine. Afterwards A
 * keeps putting stop messages (the out bridge may ship some to B, whose
 * workers skip them) until its workers are gone, then closes /F: its end of
 * data reaches B's workers, theirs reaches the linker, and A prints the
 * totals of both sides. */
#include <shmq.h>

#include "site.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define URL_MAX 248 /* longest path queued; longer links are dropped */

/* Split mode's messages from B to A (on /LB, then /L): 'L' + path, a link
 * found on B; 'F' + REC_N little-endian uint64_t counters + path, a URL B
 * fetched. broken is 1 for a URL that could not be fetched (a broken link,
 * not a page), else 0. */
enum { REC_BYTES, REC_LINKS, REC_EXTERNAL, REC_BROKEN, REC_DROPPED, REC_ERRORS, REC_N };
#define REC_HDR (1 + 8 * REC_N)
#define LINK_MSG_MAX (REC_HDR + URL_MAX) /* the longest message B sends */

static int usage(void)
{
	fprintf(stderr, "usage: crawler gen DIR --pages N [--seed S]\n"
			"       crawler crawl DIR [--workers W] [--out FILE] [--max-urls M]"
			" [--kill-after K]\n"
			"                         [--frontier /F --links /L]\n"
			"       crawler work DIR [--workers W] --frontier /FB --links /LB\n"
			"split mode (machine A: crawl, B: work; shmq-bridge carries /F to /FB and\n"
			"/LB to /L): /F, /L, /FB and /LB are named JoinableQueues (shmq create\n"
			"--joinable); /F holds paths, like the anonymous frontier it replaces; B\n"
			"fetches what it gets from /FB and reports links and pages on /LB.\n");
	return 2;
}

static bool parse_u32(const char *s, uint32_t *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > UINT32_MAX)
		return false;
	*out = (uint32_t)v;
	return true;
}

/* ================================================= crawl: the workers === */

/* Counters shared by the workers (a MAP_SHARED page made before fork). */
struct stats {
	_Atomic uint64_t pages, bytes, links, external, broken, dropped, full, errors;
	_Atomic uint32_t urls; /* paths in the visited-set, or reserved for one */
	_Atomic int killed; /* --kill-after: one worker dies, once */
	_Atomic uint64_t remote; /* split mode: pages fetched by B (in pages) */
	_Atomic int over; /* split mode: join returned; the linker drops /F */
};

struct crawl {
	shmq_queue *q; /* the frontier: paths to fetch */
	shmq_queue *report; /* work (B): links and pages go here, not to q */
	shmq_heap *heap; /* holds seen */
	shmq_dict *seen; /* the visited-set: path -> fetch count (int64_t) */
	struct stats *st;
	int rootfd;
	uint32_t max_urls, kill_after;
	char *page; /* the page being parsed, and its buffer */
	size_t page_cap;
};

/* A path being resolved: its segments joined by '/', no ".", "..", "". */
struct path {
	char s[URL_MAX + 1];
	size_t len, depth, start[URL_MAX / 2 + 2]; /* where each segment begins */
};

/* Append the segments of s (n bytes), resolving "." and ".." (".." at the
 * root stays there, as in URLs). Returns false if p would exceed URL_MAX. */

static bool path_push(struct path *p, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j < n && s[j] != '/')
			j++;
		size_t sl = j - i;
		if (sl == 2 && s[i] == '.' && s[i + 1] == '.') {
			if (p->depth)
				p->len = p->start[--p->depth];
		} else if (sl > 0 && !(sl == 1 && s[i] == '.')) {
			size_t sep = p->depth > 0;
			if (p->len + sep + sl > URL_MAX)
				return false;
			p->start[p->depth++] = p->len;
			if (sep)
				p->s[p->len++] = '/';
			memcpy(p->s + p->len, s + i, sl);
			p->len += sl;
		}
		i = j + 1;
	}
	return true;
}

/* Add path (len bytes) to the visited-set with a fetch count of 0, if the set
 * has room for it: at most c->max_urls paths, so that the queue, sized for
 * them, never fills. Returns 1 if this call added it, 0 if it was there
 * already, -ENOSPC if the set is full, or another error of shmq_dict_insert.
 * A slot is reserved before the insert and given back if the insert loses, so
 * near the limit a racing duplicate may briefly make a new path look full. */
static int visited_insert(struct crawl *c, const char *path, size_t len)
{
	int64_t fetches = 0;
	ssize_t n = shmq_dict_get(c->seen, path, len, &fetches, sizeof(fetches));
	if (n >= 0 || n == -EMSGSIZE)
		return 0; /* the common case, lock-free */
	if (n != -ENOENT)
		return (int)n;
	if (atomic_fetch_add(&c->st->urls, 1) >= c->max_urls) {
		atomic_fetch_sub(&c->st->urls, 1);
		return -ENOSPC;
	}
	int r = shmq_dict_insert(c->seen, path, len, &fetches, sizeof(fetches));
	if (r < 0)
		atomic_fetch_sub(&c->st->urls, 1);
	return r == 0 ? 1 : r == -EEXIST ? 0 : r;
}

static void follow(struct crawl *c, const char *path, size_t len);

/* work (B): put a found link into /LB for A's linker, which decides. */
static void report_link(struct crawl *c, const char *path, size_t len)
{
	char msg[1 + URL_MAX];
	msg[0] = 'L';
	memcpy(msg + 1, path, len);
	int r = shmq_put(c->report, msg, 1 + len, -1);
	if (r < 0) {
		fprintf(stderr, "crawler: put link %s: %s\n", path, strerror(-r));
		atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
	}
}

/* One href found on page `from`: resolve it and queue it if it is new (or,
 * on B, report it). */
static void on_href(struct crawl *c, const char *from, const char *h, size_t n)
{
	atomic_fetch_add_explicit(&c->st->links, 1, memory_order_relaxed);
	size_t end = 0;
	while (end < n && h[end] != '#' && h[end] != '?')
		end++;
	if (end == 0 || memchr(h, '\0', end))
		return; /* the page itself, or not a path */
	size_t k = 0; /* a scheme ("http:", "mailto:") or "//host": not ours */
	while (k < end && ((h[k] | 0x20) >= 'a' && (h[k] | 0x20) <= 'z'))
		k++;
	if ((k > 0 && k < end && h[k] == ':') || (end >= 2 && h[0] == '/' && h[1] == '/')) {
		atomic_fetch_add_explicit(&c->st->external, 1, memory_order_relaxed);
		return;
	}
	struct path p;
	p.len = p.depth = 0;
	const char *slash = strrchr(from, '/');
	bool ok = (h[0] == '/' || !slash || path_push(&p, from, (size_t)(slash - from))) &&
		  path_push(&p, h, end);
	if (!ok || p.len == 0) {
		atomic_fetch_add_explicit(&c->st->dropped, 1, memory_order_relaxed);
		return;
	}
	if (c->report)
		report_link(c, p.s, p.len);
	else
		follow(c, p.s, p.len);
}

/* A resolved link (path, len bytes, NUL-terminated): queue it if it is new. */
static void follow(struct crawl *c, const char *path, size_t len)
{
	int r = visited_insert(c, path, len);
	if (r == -ENOSPC) {
		atomic_fetch_add_explicit(&c->st->full, 1, memory_order_relaxed);
		return;
	}
	if (r < 0) {
		fprintf(stderr, "crawler: visited-set insert %s: %s\n", path, strerror(-r));
		atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
		return;
	}
	/* The queue holds every URL the set can (see main): this never waits.
	 * (In split mode the script sizes /F; the out bridge drains it too.) */
	if (r == 1 && (r = shmq_put(c->q, path, len, -1)) < 0) {
		fprintf(stderr, "crawler: put %s: %s\n", path, strerror(-r));
		atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
	}
}

static bool is_space(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f';
}

/* Find the href of every <a> tag. Tolerant the way browsers are: comments
 * are skipped, names are case-insensitive, values may be quoted either way or
 * not at all, a stray '<' in text starts nothing, an unterminated quote ends
 * the page. Every step advances, so any input terminates. */
static void parse(struct crawl *c, const char *from, const char *p, const char *end)
{
	while ((p = memchr(p, '<', (size_t)(end - p)))) {
		p++;
		if (end - p >= 3 && !memcmp(p, "!--", 3)) {
			const char *close = memmem(p + 3, (size_t)(end - p - 3), "-->", 3);
			if (!close)
				return;
			p = close + 3;
			continue;
		}
		const char *name = p;
		while (p < end && ((*p | 0x20) >= 'a' && (*p | 0x20) <= 'z'))
			p++;
		bool is_a = p - name == 1 && (*name | 0x20) == 'a', got = false;
		while (p < end && *p != '>' && *p != '<') { /* attributes */
			if (is_space(*p) || *p == '/') {
				p++;
				continue;
			}
			const char *an = p;
			while (p < end && !is_space(*p) && *p != '=' && *p != '>' && *p != '/' && *p != '<')
				p++;
			bool href = p - an == 4 && !strncasecmp(an, "href", 4);
			while (p < end && is_space(*p))
				p++;
			if (p == end || *p != '=')
				continue;
			p++;
			while (p < end && is_space(*p))
				p++;
			const char *v = p;
			if (p < end && (*p == '"' || *p == '\'')) {
				const char *q = memchr(p + 1, *p, (size_t)(end - p - 1));
				if (!q)
					return;
				v = p + 1;
				p = q + 1;
				if (is_a && href && !got)
					on_href(c, from, v, (size_t)(q - v));
			} else {
				while (p < end && !is_space(*p) && *p != '>')
					p++;
				if (is_a && href && !got)
					on_href(c, from, v, (size_t)(p - v));
			}
			got |= is_a && href;
		}
	}
}

/* Fetch one page: read it whole, count it, follow its links. */
static void fetch(struct crawl *c, const char *url, size_t len)
{
	int fd = openat(c->rootfd, url, O_RDONLY | O_CLOEXEC);
	size_t n = 0;
	ssize_t r = fd < 0 ? -1 : 0;
	while (fd >= 0) {
		if (n == c->page_cap) {
			size_t cap = c->page_cap ? 2 * c->page_cap : 64 << 10;
			char *b = realloc(c->page, cap);
			if (!b) {
				r = -1;
				break;
			}
			c->page = b;
			c->page_cap = cap;
		}
		r = read(fd, c->page + n, c->page_cap - n);
		if (r <= 0)
			break;
		n += (size_t)r;
	}
	if (fd >= 0)
		close(fd);
	if (r < 0) { /* missing, a directory, unreadable: a broken link */
		atomic_fetch_add_explicit(&c->st->broken, 1, memory_order_relaxed);
		return;
	}
	/* url is in the set (B has none: A counts B's fetches) */
	int err = c->seen ? shmq_dict_add(c->seen, url, len, 1, NULL) : 0;
	if (err < 0) {
		fprintf(stderr, "crawler: visited-set count %s: %s\n", url, strerror(-err));
		atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
	}
	atomic_fetch_add_explicit(&c->st->pages, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&c->st->bytes, n, memory_order_relaxed);
	parse(c, url, c->page, c->page + n);
}

static void worker(struct crawl *c, pid_t parent)
{
	/* Workers are producers too, so they would never see EOF if the
	 * coordinator died: die with it. */
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	char url[URL_MAX + 1];
	uint32_t crawled = 0;
	for (;;) {
		ssize_t n = shmq_get(c->q, url, URL_MAX, -1);
		if (n < 0) {
			fprintf(stderr, "crawler: worker get: %s\n", strerror((int)-n));
			break;
		}
		if (n == 0) { /* the coordinator's stop message */
			shmq_task_done(c->q);
			break;
		}
		url[n] = '\0';
		int expect = 0;
		if (c->kill_after && crawled == c->kill_after &&
		    atomic_compare_exchange_strong(&c->st->killed, &expect, 1))
			raise(SIGKILL); /* test hook: die holding url, before task_done */
		fetch(c, url, (size_t)n);
		crawled++;
		int r = shmq_task_done(c->q);
		if (r < 0) {
			fprintf(stderr, "crawler: task_done: %s\n", strerror(-r));
			atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
		}
	}
	shmq_queue_close(c->q);
	shmq_dict_close(c->seen);
	shmq_heap_close(c->heap);
	_exit(0);
}

/* ============================================ split mode: A's linker === */

static void put_u64le(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64le(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

/* Apply one message from B (n bytes, in a buffer with room for a NUL). */
static void link_msg(struct crawl *c, char *m, size_t n)
{
	struct stats *st = c->st;
	if (n >= 2 && m[0] == 'L' && n - 1 <= URL_MAX && !memchr(m + 1, '\0', n - 1)) {
		m[n] = '\0';
		if (c->q) {
			follow(c, m + 1, n - 1);
			return;
		}
		/* /F is closed: join has returned, so every link B found has
		 * been seen (see cmd_crawl). A link already in the set is
		 * harmless; a new one could not be crawled: an error. */
		int r = visited_insert(c, m + 1, n - 1);
		if (r == 0)
			return;
		fprintf(stderr, "crawler: linker: link %s after the crawl ended\n", m + 1);
	} else if (n > REC_HDR && m[0] == 'F' && n - REC_HDR <= URL_MAX &&
		   !memchr(m + REC_HDR, '\0', n - REC_HDR)) {
		const unsigned char *u = (const unsigned char *)m + 1;
		uint64_t rec[REC_N];
		for (int i = 0; i < REC_N; i++)
			rec[i] = get_u64le(u + 8 * i);
		m[n] = '\0';
		if (!rec[REC_BROKEN]) {
			int r = shmq_dict_add(c->seen, m + REC_HDR, n - REC_HDR, 1, NULL);
			if (r < 0) {
				fprintf(stderr, "crawler: visited-set count %s: %s\n", m + REC_HDR,
					strerror(-r));
				atomic_fetch_add_explicit(&st->errors, 1, memory_order_relaxed);
			}
			atomic_fetch_add_explicit(&st->pages, 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&st->remote, 1, memory_order_relaxed);
		}
		atomic_fetch_add_explicit(&st->bytes, rec[REC_BYTES], memory_order_relaxed);
		atomic_fetch_add_explicit(&st->links, rec[REC_LINKS], memory_order_relaxed);
		atomic_fetch_add_explicit(&st->external, rec[REC_EXTERNAL], memory_order_relaxed);
		atomic_fetch_add_explicit(&st->broken, rec[REC_BROKEN], memory_order_relaxed);
		atomic_fetch_add_explicit(&st->dropped, rec[REC_DROPPED], memory_order_relaxed);
		atomic_fetch_add_explicit(&st->errors, rec[REC_ERRORS], memory_order_relaxed);
		return;
	} else {
		fprintf(stderr, "crawler: linker: a malformed message of %zu bytes\n", n);
	}
	atomic_fetch_add_explicit(&st->errors, 1, memory_order_relaxed);
}

/* Consume /L (lq, held with SHMQ_RD only) until end of data: B's links and
 * pages. Holds the write role on the frontier until the coordinator's join
 * has returned (st->over), then drops it so that /F can reach end of data. */
static void linker(struct crawl *c, shmq_queue *lq, size_t msg_max, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* a producer of /F: see worker */
	if (getppid() != parent)
		_exit(1);
	shmq_queue_shutdown(c->q, SHMQ_RD);
	char *m = malloc(msg_max + 1);
	if (!m) {
		perror("crawler: linker");
		_exit(1);
	}
	int rc = 0;
	for (;;) {
		if (c->q && atomic_load(&c->st->over)) {
			shmq_queue_close(c->q);
			c->q = NULL;
		}
		ssize_t n = shmq_get(lq, m, msg_max, c->q ? 10 * 1000 * 1000 : -1);
		if (n == -ETIMEDOUT)
			continue;
		if (n == -EPIPE)
			break; /* B is done and its end of data has crossed */
		if (n < 0) {
			fprintf(stderr, "crawler: linker get: %s\n", strerror((int)-n));
			rc = 1;
			break;
		}
		link_msg(c, m, (size_t)n);
		int r = shmq_task_done(lq); /* after the put: see the header */
		if (r < 0) {
			fprintf(stderr, "crawler: linker task_done: %s\n", strerror(-r));
			atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
		}
	}
	free(m);
	shmq_queue_close(lq);
	if (c->q)
		shmq_queue_close(c->q);
	shmq_dict_close(c->seen);
	shmq_heap_close(c->heap);
	_exit(rc);
}

/* ============================================ split mode: B's workers === */

/* Get URLs from /FB until end of data; for each, put an 'L' message per link
 * and then the 'F' record into /LB, then task_done it. tot: the counters of
 * all B's workers (shared with `crawler work`). */
static void far_worker(struct crawl *c, struct stats *tot, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != parent)
		_exit(1);
	char url[URL_MAX + 1];
	unsigned char rec[LINK_MSG_MAX];
	for (;;) {
		ssize_t n = shmq_get(c->q, url, URL_MAX, -1);
		if (n == -EPIPE)
			break; /* A's frontier is closed and drained */
		if (n < 0) {
			fprintf(stderr, "crawler: work get: %s\n", strerror((int)-n));
			atomic_fetch_add_explicit(&tot->errors, 1, memory_order_relaxed);
			break;
		}
		if (n > 0) { /* empty: a stop message meant for A's workers */
			url[n] = '\0';
			struct stats page = { 0 }; /* this page's counters */
			c->st = &page;
			fetch(c, url, (size_t)n);
			uint64_t v[REC_N] = {
				[REC_BYTES] = atomic_load(&page.bytes),
				[REC_LINKS] = atomic_load(&page.links),
				[REC_EXTERNAL] = atomic_load(&page.external),
				[REC_BROKEN] = atomic_load(&page.broken),
				[REC_DROPPED] = atomic_load(&page.dropped),
				[REC_ERRORS] = atomic_load(&page.errors),
			};
			rec[0] = 'F';
			for (int i = 0; i < REC_N; i++)
				put_u64le(rec + 1 + 8 * i, v[i]);
			memcpy(rec + REC_HDR, url, (size_t)n);
			int r = shmq_put(c->report, rec, REC_HDR + (size_t)n, -1);
			if (r < 0) {
				fprintf(stderr, "crawler: put page %s: %s\n", url, strerror(-r));
				v[REC_ERRORS]++;
			}
			atomic_fetch_add(&tot->pages, atomic_load(&page.pages));
			atomic_fetch_add(&tot->bytes, v[REC_BYTES]);
			atomic_fetch_add(&tot->links, v[REC_LINKS]);
			atomic_fetch_add(&tot->external, v[REC_EXTERNAL]);
			atomic_fetch_add(&tot->broken, v[REC_BROKEN]);
			atomic_fetch_add(&tot->dropped, v[REC_DROPPED]);
			atomic_fetch_add(&tot->errors, v[REC_ERRORS]);
		}
		int r = shmq_task_done(c->q); /* after the puts: see the header */
		if (r < 0) {
			fprintf(stderr, "crawler: task_done: %s\n", strerror(-r));
			atomic_fetch_add_explicit(&tot->errors, 1, memory_order_relaxed);
		}
	}
	shmq_queue_close(c->q);
	shmq_queue_close(c->report);
	_exit(0);
}

/* ============================================= crawl: the coordinator === */

static uint32_t html_files;

static int count_html(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	size_t len = strlen(path + ftw->base);
	if (type == FTW_F && len > 5 && !strcmp(path + ftw->base + len - 5, ".html"))
		html_files++;
	return 0;
}

/* Write every path of the visited-set to f, once per fetch. Returns 0, or -1
 * with errno set. */
static int write_visited(shmq_dict *seen, FILE *f)
{
	char path[URL_MAX + 1];
	int64_t fetches;
	uint64_t cursor = 0;
	for (;;) {
		struct iovec k = { path, URL_MAX }, v = { &fetches, sizeof(fetches) };
		int r = shmq_dict_next(seen, &cursor, &k, &v);
		if (r == 0)
			return 0;
		if (r < 0 || v.iov_len != sizeof(fetches)) {
			errno = r < 0 ? -r : EPROTO;
			return -1;
		}
		path[k.iov_len] = '\0';
		for (int64_t i = 0; i < fetches; i++)
			if (fprintf(f, "%s\n", path) < 0)
				return -1;
	}
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Split mode: open the named queue `name` (made by `shmq create`) with roles;
 * it must be joinable (task_done, join) and take messages of min_msg bytes.
 * Returns 0 and *q, *st; else says why and returns 1. */
static int open_named(const char *name, int roles, uint32_t min_msg, shmq_queue **q,
		      struct shmq_stat *st)
{
	int r = shmq_queue_open(name, roles, q);
	if (r < 0) {
		fprintf(stderr, "crawler: %s: %s\n", name, strerror(-r));
		return 1;
	}
	if ((r = shmq_queue_stat(*q, st)) < 0) {
		fprintf(stderr, "crawler: %s: stat: %s\n", name, strerror(-r));
	} else if (!(st->flags & SHMQ_JOINABLE)) {
		fprintf(stderr, "crawler: %s is not joinable (shmq create --joinable)\n", name);
	} else if (st->msg_max < min_msg) {
		fprintf(stderr, "crawler: %s takes messages of %u bytes at most; %u needed\n", name,
			st->msg_max, min_msg);
	} else {
		return 0;
	}
	shmq_queue_close(*q);
	*q = NULL;
	return 1;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000 };
	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

static int cmd_crawl(int argc, char **argv)
{
	uint32_t workers = 4, max_urls = 0, kill_after = 0;
	const char *out = NULL, *frontier = NULL, *links = NULL;
	const char *dir = argv[2];
	for (int i = 3; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--out"))
			out = argv[++i];
		else if (!strcmp(argv[i], "--frontier"))
			frontier = argv[++i];
		else if (!strcmp(argv[i], "--links"))
			links = argv[++i];
		else if (!((!strcmp(argv[i], "--workers") && parse_u32(argv[i + 1], &workers)) ||
			   (!strcmp(argv[i], "--max-urls") && parse_u32(argv[i + 1], &max_urls)) ||
			   (!strcmp(argv[i], "--kill-after") && parse_u32(argv[i + 1], &kill_after))))
			return usage();
		else
			i++;
	}
	if (workers < 1 || workers > 256) {
		fprintf(stderr, "crawler: --workers must be 1..256\n");
		return 2;
	}
	if (!frontier != !links) {
		fprintf(stderr, "crawler: --frontier and --links go together\n");
		return 2;
	}
	struct crawl c = { .kill_after = kill_after };
	c.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0 || nftw(dir, count_html, 16, FTW_PHYS)) {
		perror(dir);
		return 1;
	}
	/* Room for every page, the missing files links point to, and slack:
	 * twice the pages is generous for a site; --max-urls overrides it. */
	if (!max_urls)
		max_urls = 2 * html_files + 1024;
	c.max_urls = max_urls;

	/* Every URL enters the queue at most once (the visited-set sees to
	 * that), so a ring that holds max_urls longest URLs plus the stop
	 * messages never fills: a put never waits. That matters: workers are
	 * the only consumers, so workers all waiting to put would deadlock. */
	struct shmq_queue_attr attr;
	shmq_queue_attr_init(&attr);
	attr.flags = SHMQ_JOINABLE;
	attr.msg_max = URL_MAX;
	attr.cell_size = 64; /* a cell carries 56 bytes: most paths take one */
	uint32_t per_cell = attr.cell_size - 8;
	uint64_t cells = ((uint64_t)max_urls + workers) * ((URL_MAX + per_cell - 1) / per_cell);
	if (cells > SHMQ_MAX_CAPACITY) {
		fprintf(stderr, "crawler: --max-urls %u needs a queue larger than shmq allows\n",
			max_urls);
		return 2;
	}
	attr.capacity = (uint32_t)cells;
	int r;
	shmq_queue *lq = NULL; /* split mode: /L, B's links and pages */
	struct shmq_stat fst, lst;
	if (frontier) {
		/* Named: the out bridge consumes it too, so a full ring waits for
		 * the bridge rather than deadlocking; still, warn if it is small. */
		if (open_named(frontier, SHMQ_RDWR, URL_MAX, &c.q, &fst) ||
		    open_named(links, SHMQ_RD, LINK_MSG_MAX, &lq, &lst))
			return 1;
		if (fst.capacity < cells || fst.cell_size < attr.cell_size)
			fprintf(stderr, "crawler: warning: %s has %u cells of %u bytes;"
					" %llu of %u would never fill\n",
				frontier, fst.capacity, fst.cell_size, (unsigned long long)cells,
				attr.cell_size);
	} else if ((r = shmq_queue_create(NULL, &attr, &c.q)) < 0) {
		fprintf(stderr, "crawler: queue: %s\n", strerror(-r));
		return 1;
	}
	/* The visited-set's heap: anonymous, so the forked workers share it.
	 * It reserves address space only and grows its file as paths come;
	 * 1 KiB a path covers an entry, its replacements by the fetch count
	 * waiting to be reclaimed, and the copies a table resize makes. */
	struct shmq_heap_attr hattr;
	shmq_heap_attr_init(&hattr);
	hattr.max_size = (uint64_t)max_urls * 1024 + (64u << 20);
	if (hattr.max_size < SHMQ_HEAP_DEFAULT_MAX)
		hattr.max_size = SHMQ_HEAP_DEFAULT_MAX;
	if ((r = shmq_heap_create(NULL, &hattr, &c.heap)) < 0 ||
	    (r = shmq_dict_create(c.heap, "visited", &c.seen)) < 0) {
		fprintf(stderr, "crawler: visited-set: %s\n", strerror(-r));
		return 1;
	}
	c.st = mmap(NULL, sizeof(*c.st), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t *pids = calloc(workers, sizeof(*pids));
	if (c.st == MAP_FAILED || !pids) {
		perror("crawler: shared memory");
		return 1;
	}
	int rc = 0;
	double t0 = now_s();
	if ((r = visited_insert(&c, "index.html", strlen("index.html"))) < 0) {
		fprintf(stderr, "crawler: visited-set insert: %s\n", strerror(-r));
		return 1;
	}
	if ((r = shmq_put(c.q, "index.html", strlen("index.html"), -1)) < 0) {
		fprintf(stderr, "crawler: put: %s\n", strerror(-r));
		return 1;
	}
	fflush(NULL); /* no stdio buffer is written twice by a child */
	pid_t self = getpid(), linker_pid = 0;
	if (lq) { /* first, so that no worker inherits lq */
		linker_pid = fork();
		if (linker_pid == 0)
			linker(&c, lq, lst.msg_max, self);
		if (linker_pid < 0) {
			perror("crawler: fork");
			return 1;
		}
		shmq_queue_close(lq);
	}
	for (uint32_t i = 0; i < workers; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			worker(&c, self);
		if (pids[i] < 0) {
			perror("crawler: fork");
			rc = 1;
			workers = i; /* crawl with those we have */
			break;
		}
	}
	/* The coordinator consumes nothing. Holding no read role, it lets join
	 * report -EPIPE instead of hanging if every worker dies with URLs
	 * queued. */
	shmq_queue_shutdown(c.q, SHMQ_RD);

	if (!workers) {
		r = -EPIPE;
	} else if (!linker_pid) {
		r = shmq_join(c.q, -1);
	} else {
		/* B's links come through the linker: if it died, nobody would
		 * finish what B fetched, and join would wait forever. */
		while ((r = shmq_join(c.q, 100 * 1000 * 1000)) == -ETIMEDOUT) {
			int status;
			if (waitpid(linker_pid, &status, WNOHANG) == linker_pid) {
				fprintf(stderr, "crawler: the linker (pid %d) exited early (status"
						" 0x%x); the crawl is incomplete\n",
					(int)linker_pid, status);
				linker_pid = 0;
				r = 0;
				rc = 1;
				break;
			}
		}
	}
	double elapsed = now_s() - t0;
	struct shmq_stat qs;
	if (r == -EOWNERDEAD && shmq_queue_stat(c.q, &qs) == 0) {
		fprintf(stderr, "crawler: join: -EOWNERDEAD: %llu URL(s) lost with a dead worker;"
				" the crawl is incomplete\n",
			(unsigned long long)qs.lost);
		rc = rc ? rc : 3;
	} else if (r == -EPIPE) {
		fprintf(stderr, "crawler: join: -EPIPE: every worker died with URLs left to crawl;"
				" the crawl is incomplete\n");
		rc = rc ? rc : 3;
	} else if (r < 0) {
		fprintf(stderr, "crawler: join: %s\n", strerror(-r));
		rc = 1;
	}

	/* The crawl is over, but every worker still holds the write role (it
	 * had to, to put links), so none of them can see EOF: a stop message
	 * (empty: no URL is empty) per worker tells each to exit. The ring has
	 * room for them (see above), and a dead worker's leftover stop
	 * message is harmless. */
	if (!frontier) {
		for (uint32_t i = 0; i < workers; i++)
			if ((r = shmq_put(c.q, "", 0, -1)) < 0)
				break; /* -EPIPE: no worker is left to stop */
		for (uint32_t i = 0; i < workers; i++) {
			int status;
			if (waitpid(pids[i], &status, 0) == pids[i] && WIFSIGNALED(status))
				fprintf(stderr, "crawler: worker %u (pid %d) killed by signal %d\n",
					i, (int)pids[i], WTERMSIG(status));
		}
	} else {
		/* Split mode: the out bridge may ship stop messages to B (whose
		 * workers skip them), so put more every 10 ms until all of ours
		 * are gone. Nothing new can reach the linker now (every URL is
		 * done, on both sides): it drops /F, we close it, and the end of
		 * data goes round through B back to the linker. */
		atomic_store(&c.st->over, 1);
		for (;;) {
			uint32_t alive = 0;
			for (uint32_t i = 0; i < workers; i++) {
				int status;
				pid_t w = pids[i] ? waitpid(pids[i], &status, WNOHANG) : 0;
				if (w == pids[i] && w > 0 && WIFSIGNALED(status))
					fprintf(stderr, "crawler: worker %u (pid %d) killed by signal"
							" %d\n",
						i, (int)pids[i], WTERMSIG(status));
				if (w == pids[i] || w < 0)
					pids[i] = 0;
				else
					alive++;
			}
			if (!alive)
				break;
			for (uint32_t i = 0; i < alive; i++)
				if (shmq_put(c.q, "", 0, 0) < 0)
					break; /* full for now, or no consumer left */
			sleep_ms(10);
		}
		shmq_queue_close(c.q);
		c.q = NULL;
		int status;
		if (linker_pid && waitpid(linker_pid, &status, 0) == linker_pid &&
		    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			fprintf(stderr, "crawler: the linker (pid %d) failed (status 0x%x)\n",
				(int)linker_pid, status);
			rc = 1;
		}
	}

	uint64_t pages = atomic_load(&c.st->pages);
	printf("workers: %u\npages: %llu\nbytes: %llu\nlinks: %llu\nexternal links: %llu\n"
	       "broken links: %llu\nelapsed: %.3f s\npages/s: %.0f\n",
	       workers, (unsigned long long)pages, (unsigned long long)atomic_load(&c.st->bytes),
	       (unsigned long long)atomic_load(&c.st->links),
	       (unsigned long long)atomic_load(&c.st->external),
	       (unsigned long long)atomic_load(&c.st->broken), elapsed,
	       elapsed > 0 ? (double)pages / elapsed : 0.0);
	if (frontier)
		printf("remote pages: %llu\n", (unsigned long long)atomic_load(&c.st->remote));
	if (atomic_load(&c.st->dropped))
		printf("dropped links (the bare root, or longer than %d bytes): %llu\n", URL_MAX,
		       (unsigned long long)atomic_load(&c.st->dropped));
	if (atomic_load(&c.st->full)) {
		fprintf(stderr, "crawler: the visited-set is full (%u URLs): %llu links not followed;"
				" raise --max-urls\n",
			max_urls, (unsigned long long)atomic_load(&c.st->full));
		rc = 1;
	}
	if (atomic_load(&c.st->errors))
		rc = 1;
	if (out) {
		FILE *f = fopen(out, "w");
		if (!f || write_visited(c.seen, f) || fclose(f)) {
			perror(out);
			rc = 1;
		}
	}
	if (c.q)
		shmq_queue_close(c.q);
	shmq_dict_close(c.seen);
	shmq_heap_close(c.heap);
	munmap(c.st, sizeof(*c.st));
	close(c.rootfd);
	free(pids);
	return rc;
}

/* Split mode, machine B: W far_workers on /FB and /LB; prints B's counters. */
static int cmd_work(int argc, char **argv)
{
	uint32_t workers = 4;
	const char *frontier = NULL, *links = NULL;
	const char *dir = argv[2];
	for (int i = 3; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--frontier"))
			frontier = argv[++i];
		else if (!strcmp(argv[i], "--links"))
			links = argv[++i];
		else if (!strcmp(argv[i], "--workers") && parse_u32(argv[i + 1], &workers))
			i++;
		else
			return usage();
	}
	if (!frontier || !links)
		return usage();
	if (workers < 1 || workers > 256) {
		fprintf(stderr, "crawler: --workers must be 1..256\n");
		return 2;
	}
	struct crawl c = { 0 };
	c.rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (c.rootfd < 0) {
		perror(dir);
		return 1;
	}
	/* Roles: the workers consume /FB and only produce /LB, so that the end
	 * of data of each can cross. */
	struct shmq_stat fst, lst;
	if (open_named(frontier, SHMQ_RD, URL_MAX, &c.q, &fst) ||
	    open_named(links, SHMQ_WR, LINK_MSG_MAX, &c.report, &lst))
		return 1;
	struct stats *tot = mmap(NULL, sizeof(*tot), PROT_READ | PROT_WRITE,
				 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	pid_t *pids = calloc(workers, sizeof(*pids));
	if (tot == MAP_FAILED || !pids) {
		perror("crawler: shared memory");
		return 1;
	}
	int rc = 0;
	double t0 = now_s();
	fflush(NULL);
	pid_t self = getpid();
	for (uint32_t i = 0; i < workers; i++) {
		pids[i] = fork();
		if (pids[i] == 0)
			far_worker(&c, tot, self);
		if (pids[i] < 0) {
			perror("crawler: fork");
			rc = 1;
			workers = i;
			break;
		}
	}
	shmq_queue_close(c.q); /* the workers hold the roles now */
	shmq_queue_close(c.report);
	for (uint32_t i = 0; i < workers; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) == pids[i] &&
		    !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			fprintf(stderr, "crawler: worker %u (pid %d) failed (status 0x%x)\n", i,
				(int)pids[i], status);
			rc = 1;
		}
	}
	double elapsed = now_s() - t0;
	uint64_t pages = atomic_load(&tot->pages);
	printf("workers: %u\npages: %llu\nbytes: %llu\nlinks: %llu\nexternal links: %llu\n"
	       "broken links: %llu\nelapsed: %.3f s\n",
	       workers, (unsigned long long)pages, (unsigned long long)atomic_load(&tot->bytes),
	       (unsigned long long)atomic_load(&tot->links),
	       (unsigned long long)atomic_load(&tot->external),
	       (unsigned long long)atomic_load(&tot->broken), elapsed);
	if (atomic_load(&tot->errors))
		rc = 1;
	munmap(tot, sizeof(*tot));
	close(c.rootfd);
	free(pids);
	return rc;
}

static int cmd_gen(int argc, char **argv)
{
	uint32_t pages = 0, seed = 1;
	for (int i = 3; i < argc; i++) {
		if (i + 1 < argc && !strcmp(argv[i], "--pages") && parse_u32(argv[i + 1], &pages))
			i++;
		else if (i + 1 < argc && !strcmp(argv[i], "--seed") && parse_u32(argv[i + 1], &seed))
			i++;
		else
			return usage();
	}
	return site_gen(argv[2], pages, seed);
}

int main(int argc, char **argv)
{
	if (argc >= 3 && !strcmp(argv[1], "gen"))
		return cmd_gen(argc, argv);
	if (argc >= 3 && !strcmp(argv[1], "crawl"))
		return cmd_crawl(argc, argv);
	if (argc >= 3 && !strcmp(argv[1], "work"))
		return cmd_work(argc, argv);
	return usage();
}
