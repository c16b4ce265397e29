/* crawler gen: writes the deterministic site the crawler example crawls
 * (see site.h). */
#include "site.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIRS 8 /* subdirectories d0..d7 */

static uint64_t rng;

static uint32_t below(uint32_t n) /* splitmix64: the same site for a seed everywhere */
{
	uint64_t z = (rng += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return (uint32_t)((z ^ (z >> 31)) % n);
}

/* A node of the model: a page (0..n-1), the index (n) or a missing file
 * (n + 1 + b). Only these edges are links; everything else the generator
 * writes is noise a correct parser must not follow. */
struct site {
	uint32_t n, nbroken;
	bool *island;   /* no page outside the islands links to it */
	uint32_t **out; /* per page and the index: edges, out[i][0] is the count */
};

/* Path of node t relative to the site root. */
static void node_path(const struct site *s, uint32_t t, char *buf, size_t cap)
{
	if (t < s->n)
		snprintf(buf, cap, "d%u/page%05u.html", t % DIRS, t);
	else if (t == s->n)
		snprintf(buf, cap, "index.html");
	else
		snprintf(buf, cap, "d%u/missing%05u.html", (t - s->n - 1) % DIRS, t - s->n - 1);
}

/* An href from node `from` to node t, in one of the spellings a site uses. */
static void href_for(const struct site *s, uint32_t from, uint32_t t, char *buf, size_t cap)
{
	char path[64];
	node_path(s, t, path, sizeof(path));
	const char *file = strchr(path, '/') ? strchr(path, '/') + 1 : path;
	bool from_root = from == s->n, to_root = t == s->n;
	int fd = (int)(from % DIRS), td = to_root ? -1 : (int)(t < s->n ? t : t - s->n - 1) % DIRS;
	uint32_t pick = below(4);
	if (pick == 0) /* root-absolute works from anywhere */
		snprintf(buf, cap, "/%s", path);
	else if (from_root)
		snprintf(buf, cap, pick == 1 ? "%s" : "./%s", path);
	else if (to_root)
		snprintf(buf, cap, pick == 1 ? "../%s" : "../../%s", path); /* "..": clamped */
	else if (td == fd && pick == 1)
		snprintf(buf, cap, "%s", file);
	else if (td == fd)
		snprintf(buf, cap, "./%s", file);
	else if (pick == 1)
		snprintf(buf, cap, "../%s", path);
	else /* a detour through another directory, and a doubled slash */
		snprintf(buf, cap, "../d%u/..//d%d/./%s", below(DIRS), td, file);
	if (below(8) == 0) /* a fragment names the same page */
		snprintf(buf + strlen(buf), cap - strlen(buf), "#sec%u", below(5));
}

static void write_link(FILE *f, const char *href)
{
	switch (below(5)) {
	case 0: fprintf(f, "<li><a href=\"%s\">link</a></li>\n", href); break;
	case 1: fprintf(f, "<li><A HREF='%s'>LINK</A></li>\n", href); break;
	case 2: fprintf(f, "<li><a class=nav href=%s>link</a></li>\n", href); break;
	case 3: fprintf(f, "<li><a\n    href = \"%s\"\n    title=\"next\">link</a></li>\n", href); break;
	default: fprintf(f, "<li><a title=\"a > b\" data-q='\"' href=\"%s\">link</a></li>\n", href);
	}
}

static void add_edge(struct site *s, uint32_t from, uint32_t t, FILE *f)
{
	char href[160];
	uint32_t *e = s->out[from];
	e[++e[0]] = t;
	href_for(s, from, t, href, sizeof(href));
	write_link(f, href);
	if (below(6) == 0) /* the same link twice on a page */
		write_link(f, href);
}

/* A random page other links may lead to: not an island (islands link out). */
static uint32_t random_mainland(const struct site *s)
{
	uint32_t t;
	do
		t = below(s->n);
	while (s->island[t]);
	return t;
}

/* Create (or truncate) dirfd/path for writing; NULL, said on stderr. */
static FILE *create_at(int dirfd, const char *path)
{
	int fd = openat(dirfd, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	if (!f) {
		perror(path);
		if (fd >= 0)
			close(fd);
	}
	return f;
}

#define MAX_EDGES 16

/* Write page `from` (or the index) and record its edges. */
static int write_page(struct site *s, int dirfd, uint32_t from)
{
	char path[64];
	node_path(s, from, path, sizeof(path));
	FILE *f = create_at(dirfd, path);
	if (!f)
		return -1;
	fprintf(f, "<!DOCTYPE html>\n<html><head><title>%s</title>\n"
		   "<link rel=\"stylesheet\" href=\"/style.css\"></head>\n<body>\n"
		   "<p>Text with a stray < sign, 1 < 2 and 3 > 2.</p>\n<ul>\n", path);
	if (from == s->n) {
		/* The index leads into the mainland and to one missing page. */
		for (uint32_t i = 0; i < 4; i++)
			add_edge(s, from, random_mainland(s), f);
		add_edge(s, from, s->n + 1, f);
	} else {
		/* A ring through the mainland makes all of it reachable; the
		 * random links make cycles and short paths; islands link out
		 * to anything, so they are unreachable only because nothing
		 * links in. */
		if (!s->island[from]) {
			uint32_t next = from;
			do
				next = (next + 1) % s->n;
			while (s->island[next]);
			add_edge(s, from, next, f);
		}
		for (uint32_t k = 1 + below(5); k > 0; k--)
			add_edge(s, from, s->island[from] ? below(s->n) : random_mainland(s), f);
		if (below(4) == 0)
			add_edge(s, from, s->n, f); /* back to the index */
		if (below(8) == 0)
			add_edge(s, from, s->n + 1 + below(s->nbroken), f);
		if (below(10) == 0)
			add_edge(s, from, from, f); /* to itself */
	}
	/* Noise: nothing here is a link a crawler follows. */
	uint32_t island = below(s->n);
	char np[64];
	node_path(s, island, np, sizeof(np));
	if (s->island[island] && below(3) == 0)
		fprintf(f, "<!-- old: <a href=\"/%s\">gone</a> -->\n<abbr href=\"/%s\">x</abbr>\n", np,
			np);
	if (below(10) == 0)
		fprintf(f, "<a name=\"top\">top</a> <a href>empty</a> <a href=\"\">self</a>\n");
	if (below(10) == 0)
		fprintf(f, "<a href=\"http://example.com/%u\">out</a> <a href='mailto:x@y'>m</a> "
			   "<a href=\"//cdn.example.com/x.js\">cdn</a>\n", from);
	fprintf(f, "</ul>\n</body></html>\n");
	if (below(20) == 0 && s->island[island]) /* truncated mid-tag */
		fprintf(f, "<a href=\"/%s", np);
	return fclose(f) ? -1 : 0;
}

static int write_list(int dirfd, const char *name, const struct site *s, const uint32_t *nodes,
		      uint32_t count)
{
	FILE *f = create_at(dirfd, name);
	if (!f)
		return -1;
	char path[64];
	for (uint32_t i = 0; i < count; i++) {
		node_path(s, nodes[i], path, sizeof(path));
		fprintf(f, "%s\n", path);
	}
	return fclose(f) ? -1 : 0;
}

int site_gen(const char *dir, uint32_t n, uint32_t seed)
{
	if (n < 2 || n > SITE_MAX_PAGES) {
		fprintf(stderr, "crawler gen: --pages must be 2..%u\n", SITE_MAX_PAGES);
		return 2;
	}
	rng = seed;
	struct site s = { .n = n, .nbroken = n / 20 + 1 };
	uint32_t nodes = n + 1 + s.nbroken;
	s.island = calloc(n, sizeof(*s.island));
	s.out = calloc(n + 1, sizeof(*s.out));
	uint32_t *edges = calloc((size_t)(n + 1) * MAX_EDGES, sizeof(*edges));
	uint32_t *order = calloc(nodes, sizeof(*order));
	bool *seen = calloc(nodes, sizeof(*seen));
	int rc = 1, dirfd = -1;
	if (!s.island || !s.out || !edges || !order || !seen)
		goto out;
	for (uint32_t i = 0; i <= n; i++)
		s.out[i] = edges + (size_t)i * MAX_EDGES;
	for (uint32_t i = 1; i < n; i++) /* page 0 stays on the mainland */
		s.island[i] = below(10) == 0;
	if ((mkdir(dir, 0755) && errno != EEXIST) || (dirfd = open(dir, O_DIRECTORY | O_CLOEXEC)) < 0) {
		perror(dir);
		goto out;
	}
	for (int d = 0; d < DIRS; d++) {
		char sub[8];
		snprintf(sub, sizeof(sub), "d%d", d);
		if (mkdirat(dirfd, sub, 0755) && errno != EEXIST) {
			perror(sub);
			goto out;
		}
	}
	for (uint32_t i = 0; i <= n; i++)
		if (write_page(&s, dirfd, i))
			goto out;

	/* Breadth-first from the index over the model: what a crawl must find. */
	uint32_t head = 0, tail = 0, pages = 0, broken = 0;
	order[tail++] = n;
	seen[n] = true;
	while (head < tail) {
		uint32_t u = order[head++];
		if (u > n)
			continue; /* a missing file has no links */
		for (uint32_t k = 1; k <= s.out[u][0]; k++) {
			uint32_t t = s.out[u][k];
			if (!seen[t]) {
				seen[t] = true;
				order[tail++] = t;
			}
		}
	}
	/* Split the order into pages and missing files, in place. */
	uint32_t *missing = calloc(tail, sizeof(*missing));
	if (!missing)
		goto out;
	for (uint32_t i = 0; i < tail; i++) {
		if (order[i] > n)
			missing[broken++] = order[i];
		else
			order[pages++] = order[i];
	}
	if (!write_list(dirfd, "expected-reachable.txt", &s, order, pages) &&
	    !write_list(dirfd, "expected-broken.txt", &s, missing, broken)) {
		printf("generated %s: %u pages + index.html, %u reachable, %u broken links reachable\n",
		       dir, n, pages, broken);
		rc = 0;
	}
	free(missing);
out:
	if (dirfd >= 0)
		close(dirfd);
	free(s.island);
	free(s.out);
	free(edges);
	free(order);
	free(seen);
	return rc;
}
