/* crawler: a multi-process crawler over a local "site", the JoinableQueue
 * example.
 *
 *   crawler gen DIR --pages N [--seed S]
 *	writes a deterministic site of N pages plus DIR/index.html, and the
 *	lists of what a correct crawl must find (site.h).
 *
 *   crawler crawl DIR [--workers W] [--out FILE] [--max-urls M] [--kill-after K]
 *	crawls DIR from index.html with W worker processes and prints pages/s.
 *	--out writes every page fetched, one path per line, once per fetch.
 *	--kill-after is a test hook: the first worker to have crawled K URLs
 *	SIGKILLs itself while holding its next URL (got, not task_done).
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
 * worker was left to crawl what is queued), 1 error, 2 usage. */
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

static int usage(void)
{
	fprintf(stderr, "usage: crawler gen DIR --pages N [--seed S]\n"
			"       crawler crawl DIR [--workers W] [--out FILE] [--max-urls M]"
			" [--kill-after K]\n");
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
};

struct crawl {
	shmq_queue *q;
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

/* One href found on page `from`: resolve it and queue it if it is new. */
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
	int r = visited_insert(c, p.s, p.len);
	if (r == -ENOSPC) {
		atomic_fetch_add_explicit(&c->st->full, 1, memory_order_relaxed);
		return;
	}
	if (r < 0) {
		fprintf(stderr, "crawler: visited-set insert %s: %s\n", p.s, strerror(-r));
		atomic_fetch_add_explicit(&c->st->errors, 1, memory_order_relaxed);
		return;
	}
	/* The queue holds every URL the set can (see main): this never waits. */
	if (r == 1 && (r = shmq_put(c->q, p.s, p.len, -1)) < 0) {
		fprintf(stderr, "crawler: put %s: %s\n", p.s, strerror(-r));
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
	int err = shmq_dict_add(c->seen, url, len, 1, NULL); /* url is in the set */
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

static int cmd_crawl(int argc, char **argv)
{
	uint32_t workers = 4, max_urls = 0, kill_after = 0;
	const char *out = NULL;
	const char *dir = argv[2];
	for (int i = 3; i < argc; i++) {
		if (i + 1 >= argc)
			return usage();
		if (!strcmp(argv[i], "--out"))
			out = argv[++i];
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
	int r = shmq_queue_create(NULL, &attr, &c.q);
	if (r < 0) {
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
	pid_t self = getpid();
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

	r = workers ? shmq_join(c.q, -1) : -EPIPE;
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
	for (uint32_t i = 0; i < workers; i++)
		if ((r = shmq_put(c.q, "", 0, -1)) < 0)
			break; /* -EPIPE: no worker is left to stop */
	for (uint32_t i = 0; i < workers; i++) {
		int status;
		if (waitpid(pids[i], &status, 0) == pids[i] && WIFSIGNALED(status))
			fprintf(stderr, "crawler: worker %u (pid %d) killed by signal %d\n", i,
				(int)pids[i], WTERMSIG(status));
	}

	uint64_t pages = atomic_load(&c.st->pages);
	printf("workers: %u\npages: %llu\nbytes: %llu\nlinks: %llu\nexternal links: %llu\n"
	       "broken links: %llu\nelapsed: %.3f s\npages/s: %.0f\n",
	       workers, (unsigned long long)pages, (unsigned long long)atomic_load(&c.st->bytes),
	       (unsigned long long)atomic_load(&c.st->links),
	       (unsigned long long)atomic_load(&c.st->external),
	       (unsigned long long)atomic_load(&c.st->broken), elapsed,
	       elapsed > 0 ? (double)pages / elapsed : 0.0);
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
	shmq_queue_close(c.q);
	shmq_dict_close(c.seen);
	shmq_heap_close(c.heap);
	munmap(c.st, sizeof(*c.st));
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
	return usage();
}
