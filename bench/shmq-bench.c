/* shmq-bench: shmq against the ways Linux processes usually pass messages,
 * (--cases sync, bench/sync.c) its locks, semaphores, barriers and events against
 * pthread, sem_t and multiprocessing, and (--cases dict,list, bench/dict.c) its
 * shared dict and list against LMDB, a robust-mutex hash table and
 * multiprocessing's Manager, and (--cases csp, bench/csp.c) its CSP channels
 * and alternation against a pipe(2) rendezvous and Go-style channels built
 * from a process-shared mutex and condvars, and (--cases bridge,
 * bench/bridge.c) a queue carried over Redis by shmq-bridge against
 * pipelined XADD from hiredis and a ZeroMQ TCP forwarder.
 *
 * Every system runs in fresh processes on a shared start barrier; systems are
 * compared only inside one run and interleaved: each repetition runs every
 * case once with every system (in a rotating order), then the next repetition
 * starts. Reported: median [min..max] over repetitions, and the ratio to shmq
 * computed per repetition (paired). See bench/RESULTS.md.
 */
#include "bench.h"
#include "sync.h"
#include "dict.h"
#include "csp.h"
#include "bridge.h"

#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_CASES 96
#define MAX_SYS 40
#define MAX_PC 16

const char *bench_mp_script;

struct sysres {
	const struct bench_peer *p;
	struct sample s[MAX_REPS];
	struct bench_hist hist; /* latency cases, merged over repetitions */
};

struct caseres {
	struct bench_case c;
	int nsys;
	struct sysres *sys;
	int nskip;
	char *skip[MAX_SYS];
};

static struct caseres cases[MAX_CASES];
static int ncases;
static int reps = 5;

/* ------------------------------------------------------------ options ---- */

static struct {
	bool quick, full;
	bool have_pc;
	int pc[MAX_PC][2];
	int npc;
	size_t sizes[8];
	int nsizes;
	size_t pipe_sizes[8]; /* Pipe cases */
	int npipe_sizes;
	const char *systems; /* comma list or NULL */
	double secs;
	uint64_t max_msgs;
	uint32_t dict_keys;
	unsigned batch;
	double rate;
	const char *json, *plot;
	bool no_lat, no_pp, no_tput, no_join, no_pipe, no_pipe_pp, no_sync, no_dict, no_list,
	     no_csp, no_bridge;
	bool verbose;
} opt;

static void usage(FILE *f)
{
	fprintf(f,
		"usage: shmq-bench [--quick | --full] [options]\n"
		"  --quick           reduced set, about 3 minutes: 8 B and 1 KiB, 1x1 2x2 4x4,\n"
		"                    the main systems, 3 repetitions; JoinableQueue 1x4, Pipe one\n"
		"                    way 1 KiB and 1 MiB, Pipe ping-pong 1 KiB (all their systems);\n"
		"                    the sync cases up to 4 processes (all their systems, about\n"
		"                    20 s); the dict cases at 2 processes (90/10 8 B also at 1 and\n"
		"                    4) and the list cases (all their systems, about 50 s); the\n"
		"                    csp cases at 8 B (rendezvous throughput also 1 KiB; all\n"
		"                    their systems, about 15 s); the bridge cases (all their\n"
		"                    systems, shorter runs, about 15 s; skipped without\n"
		"                    redis-server or shmq-bridge)\n"
		"  --full            everything (the default)\n"
		"  -p P -c C         one producer x consumer shape (repeatable: -p 2 -c 2 -p 1 -c 4)\n"
		"  -s SIZES          message sizes, comma separated (8,64,1K,64K); JoinableQueue\n"
		"                    cases too (default 8 B)\n"
		"  --pipe-sizes SIZES  Pipe cases (default 1,1K,1M)\n"
		"  -S SYSTEMS        systems to run, comma separated (see --list); shmq always runs\n"
		"  -r N              repetitions (default 5, quick 3)\n"
		"  -t SECONDS        time per run (default 0.3, quick 0.2)\n"
		"  -n N              at most N messages per producer per run\n"
		"  -b N              burst size of the batch modes (default 32)\n"
		"  --rate R          offered load of the paced latency cases, msgs/s (default 10000)\n"
		"  --no-latency, --no-pingpong, --no-throughput, --no-join, --no-pipe (one way and\n"
		"                    ping-pong), --no-sync, --no-dict (dict and list), --no-csp,\n"
		"                    --no-bridge\n"
		"  --cases LIST      only these kinds: throughput,latency,pingpong,join,pipe,\n"
		"                    pipe-pingpong,sync,dict,list,csp,bridge (sync: Lock, Semaphore,\n"
		"                    Barrier, Event against pthread, sem_t and multiprocessing; dict:\n"
		"                    get/set on 100,000 16-byte keys, 8 B and 1 KiB values, gets only,\n"
		"                    90/10, 50/50, 1 2 4 processes; list: append + pop, 1 2 4\n"
		"                    processes; against LMDB, a robust-mutex hash table and\n"
		"                    mp.Manager; csp: channel round trip, rendezvous and buffered\n"
		"                    throughput, alternation over 8 channels, against a pipe(2)\n"
		"                    rendezvous and Go-style channels (mutex + condvars in shared\n"
		"                    memory); bridge: queue -> shmq-bridge -> Redis -> shmq-bridge\n"
		"                    -> queue, 64 B and 1 KiB, throughput and paced one-way latency,\n"
		"                    against pipelined XADD (the Redis ceiling) and a ZeroMQ\n"
		"                    PUSH/PULL forwarder over TCP, on a redis-server the bench\n"
		"                    starts ($SHMQ_BRIDGE: the bridge program; default\n"
		"                    tools/shmq-bridge of this build); -p/-c/-s do not apply to them)\n"
		"  --json FILE       write every sample as JSON\n"
		"  --plot FILE.png   throughput and latency plots (gnuplot)\n"
		"  --mp-script PATH  bench/mp_peers.py\n"
		"  --mp-sync-script PATH  bench/mp_sync.py (run with /usr/bin/python3)\n"
		"  --dict-keys N     keys preloaded in the dict cases (default 100000)\n"
		"  --mp-dict-script PATH  bench/mp_dict.py (run with /usr/bin/python3)\n"
		"  --list            list the systems\n");
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (end == s)
		return 0;
	if (*end == 'k' || *end == 'K')
		v <<= 10;
	else if (*end == 'm' || *end == 'M')
		v <<= 20;
	return (size_t)v;
}

/* The JoinableQueue and Pipe cases. */
static bool new_kind(const struct bench_case *c)
{
	return c->kind == CASE_JOIN || bench_is_conn(c);
}

/* --cases: run only the kinds named. 0, or -1 after a message. */
static int parse_cases(const char *list)
{
	static const struct {
		const char *name;
		bool *off;
	} kinds[] = { { "throughput", &opt.no_tput }, { "latency", &opt.no_lat },
		      { "pingpong", &opt.no_pp },	  { "join", &opt.no_join },
		      { "pipe", &opt.no_pipe },	  { "pipe-pingpong", &opt.no_pipe_pp },
		      { "sync", &opt.no_sync },	  { "dict", &opt.no_dict },
		      { "list", &opt.no_list },	  { "csp", &opt.no_csp },
		      { "bridge", &opt.no_bridge } };
	size_t nk = sizeof(kinds) / sizeof(kinds[0]);
	for (size_t k = 0; k < nk; k++)
		*kinds[k].off = true;
	for (const char *s = list; *s;) {
		size_t l = strcspn(s, ",");
		size_t k = 0;
		while (k < nk && !(strlen(kinds[k].name) == l && strncmp(s, kinds[k].name, l) == 0))
			k++;
		if (k == nk) {
			fprintf(stderr, "shmq-bench: --cases: unknown kind '%.*s' (throughput, latency, "
					"pingpong, join, pipe, pipe-pingpong, sync, dict, list, csp, "
					"bridge)\n", (int)l, s);
			return -1;
		}
		*kinds[k].off = false;
		s += l + (s[l] == ',');
	}
	return 0;
}

bool name_listed(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *s = list; *s;) {
		size_t l = strcspn(s, ",");
		if (l == n && strncmp(s, name, n) == 0)
			return true;
		s += l + (s[l] == ',');
	}
	return false;
}

static bool system_selected(const struct bench_peer *p, const struct bench_case *c)
{
	if (opt.systems)
		return (p->flags & PF_SHMQ && strcmp(p->name, "shmq") == 0) ||
		       name_listed(opt.systems, p->name);
	/* --quick: the main systems; the JoinableQueue and Pipe cases have few
	 * systems: all of them. */
	return !opt.quick || (p->flags & PF_MAIN) || new_kind(c);
}

/* ------------------------------------------------------------ numbers ---- */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

struct stat3 stats(const double *v, int n)
{
	struct stat3 s = { .n = n };
	if (n == 0)
		return s;
	double t[MAX_REPS];
	memcpy(t, v, sizeof(double) * (size_t)n);
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	s.min = t[0];
	s.max = t[n - 1];
	s.med = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	return s;
}

static double metric(const struct bench_case *c, const struct sample *s)
{
	switch (c->kind) {
	case CASE_PINGPONG:
		return s->rtt_ns;
	case CASE_LATENCY:
		return s->p999;
	case CASE_CONN_PP:
		return s->p50;
	default:
		return s->mps;
	}
}

static struct stat3 sys_stat(const struct caseres *cr, const struct sysres *sr)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < reps; r++)
		if (sr->s[r].ok)
			v[n++] = metric(&cr->c, &sr->s[r]);
	return stats(v, n);
}

/* Per repetition a.metric / b.metric, where both ran. */
static struct stat3 paired(const struct caseres *ca, const struct sysres *a,
			   const struct caseres *cb, const struct sysres *b)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < reps; r++)
		if (a && b && a->s[r].ok && b->s[r].ok && metric(&cb->c, &b->s[r]) > 0)
			v[n++] = metric(&ca->c, &a->s[r]) / metric(&cb->c, &b->s[r]);
	return stats(v, n);
}

const char *human(double v, char *buf, size_t len)
{
	const char *u = "";
	if (v >= 1e9) {
		v /= 1e9;
		u = "G";
	} else if (v >= 1e6) {
		v /= 1e6;
		u = "M";
	} else if (v >= 1e3) {
		v /= 1e3;
		u = "k";
	}
	snprintf(buf, len, v >= 100 ? "%.0f%s" : v >= 10 ? "%.1f%s" : "%.2f%s", v, u);
	return buf;
}

const char *human_ns(double ns, char *buf, size_t len)
{
	if (ns >= 1e6)
		snprintf(buf, len, "%.2f ms", ns / 1e6);
	else if (ns >= 1e3)
		snprintf(buf, len, "%.1f us", ns / 1e3);
	else
		snprintf(buf, len, "%.0f ns", ns);
	return buf;
}

static const char *size_str(size_t s, char *buf, size_t len)
{
	if (s >= (1u << 20) && s % (1u << 20) == 0)
		snprintf(buf, len, "%zu MiB", s >> 20);
	else if (s >= 1024 && s % 1024 == 0)
		snprintf(buf, len, "%zu KiB", s / 1024);
	else
		snprintf(buf, len, "%zu B", s);
	return buf;
}

double hist_bucket_hi(unsigned idx)
{
	if (idx < 32)
		return idx + 1;
	unsigned lg = idx / 32 + 4, sub = idx % 32;
	return (double)((uint64_t)(32 + sub + 1) << (lg - 5));
}

double hist_pct(const struct bench_hist *h, double q)
{
	if (!h->n)
		return 0;
	uint64_t want = (uint64_t)ceil(q * (double)h->n), acc = 0;
	if (want == 0)
		want = 1;
	for (unsigned i = 0; i < BENCH_LAT_BUCKETS; i++) {
		acc += h->b[i];
		if (acc >= want) {
			double hi = hist_bucket_hi(i);
			return hi < (double)h->max ? hi : (double)h->max;
		}
	}
	return (double)h->max;
}

/* -------------------------------------------------------------- cases ---- */

static struct caseres *add_case(enum bench_kind kind, int np, int nc, size_t size, double rate)
{
	if (ncases >= MAX_CASES)
		return NULL;
	struct caseres *cr = &cases[ncases++];
	cr->c = (struct bench_case){ .kind = kind, .np = np, .nc = nc, .size = size,
				     .secs = opt.secs, .max_msgs = opt.max_msgs,
				     .batch = opt.batch, .rate = rate };
	return cr;
}

static bool peer_can(const struct bench_peer *p, const struct bench_case *c)
{
	bool only = p->flags & PF_ONLY;
	switch (c->kind) {
	case CASE_TPUT:
		return !only && (p->producer || p->run);
	case CASE_LATENCY:
		return !only && p->producer && !(p->flags & (PF_TPUT_ONLY | PF_REF));
	case CASE_PINGPONG:
		return !only && p->ping != NULL;
	case CASE_JOIN:
		return (p->flags & PF_JOIN) && (p->producer || p->run);
	case CASE_CONN:
		return (p->flags & PF_CONN) && (p->producer || p->run);
	case CASE_CONN_PP:
		return (p->flags & PF_CONN) && (p->ping || p->run);
	}
	return false;
}

static void case_title(const struct bench_case *c, char *buf, size_t len)
{
	char sz[32];
	size_str(c->size, sz, sizeof(sz));
	switch (c->kind) {
	case CASE_TPUT:
		snprintf(buf, len, "Throughput: %s messages, %d producer%s x %d consumer%s", sz,
			 c->np, c->np > 1 ? "s" : "", c->nc, c->nc > 1 ? "s" : "");
		break;
	case CASE_LATENCY:
		if (c->rate > 0)
			snprintf(buf, len,
				 "One-way latency: %s messages, %dp x %dc, paced at %.0f msgs/s in all",
				 sz, c->np, c->nc, c->rate);
		else
			snprintf(buf, len,
				 "One-way latency: %s messages, %dp x %dc, producers flat out (queueing)",
				 sz, c->np, c->nc);
		break;
	case CASE_PINGPONG:
		snprintf(buf, len, "Blocking ping-pong round trip: %s each way, 1 x 1", sz);
		break;
	case CASE_JOIN:
		snprintf(buf, len,
			 "JoinableQueue: %s messages, %d producer%s x %d consumer%s, put + task_done, "
			 "timed until join returns",
			 sz, c->np, c->np > 1 ? "s" : "", c->nc, c->nc > 1 ? "s" : "");
		break;
	case CASE_CONN:
		snprintf(buf, len, "Pipe one way: %s messages, 1 x 1", sz);
		break;
	case CASE_CONN_PP:
		snprintf(buf, len, "Pipe ping-pong: every round trip of %s each way timed, 1 x 1", sz);
		break;
	}
}

static void build_cases(void)
{
	static const int def_pc[][2] = { { 1, 1 }, { 2, 2 }, { 4, 4 }, { 1, 4 }, { 4, 1 } };
	static const int quick_pc[][2] = { { 1, 1 }, { 2, 2 }, { 4, 4 } };
	/* JoinableQueue: one coordinator and workers is the usual shape. */
	static const int join_pc[][2] = { { 1, 1 }, { 1, 4 }, { 2, 2 }, { 4, 4 } };
	static const int join_quick_pc[][2] = { { 1, 4 } };
	size_t join_sizes[8] = { 8 };
	int njoin_sizes = 1;
	if (opt.nsizes) { /* -s given */
		memcpy(join_sizes, opt.sizes, sizeof(join_sizes));
		njoin_sizes = opt.nsizes;
	}
	int npc = opt.npc;
	int (*pc)[2] = opt.pc;
	if (!opt.have_pc) {
		const int(*src)[2] = opt.quick ? quick_pc : def_pc;
		npc = opt.quick ? 3 : 5;
		for (int i = 0; i < npc; i++) {
			pc[i][0] = src[i][0];
			pc[i][1] = src[i][1];
		}
	}
	if (!opt.nsizes) {
		if (opt.quick) {
			opt.sizes[opt.nsizes++] = 8;
			opt.sizes[opt.nsizes++] = 1024;
		} else {
			opt.sizes[opt.nsizes++] = 8;
			opt.sizes[opt.nsizes++] = 64;
			opt.sizes[opt.nsizes++] = 1024;
			opt.sizes[opt.nsizes++] = 65536;
		}
	}
	if (!opt.no_tput)
		for (int s = 0; s < opt.nsizes; s++)
			for (int i = 0; i < npc; i++)
				add_case(CASE_TPUT, pc[i][0], pc[i][1], opt.sizes[s], 0);
	if (!opt.no_pp)
		add_case(CASE_PINGPONG, 1, 1, 8, 0);
	if (!opt.no_lat) {
		if (opt.have_pc) {
			for (int i = 0; i < npc; i++)
				add_case(CASE_LATENCY, pc[i][0], pc[i][1], 16, opt.rate);
		} else {
			add_case(CASE_LATENCY, 1, 1, 16, opt.rate);
			add_case(CASE_LATENCY, 2, 2, 16, opt.rate);
			add_case(CASE_LATENCY, 4, 4, 16, opt.rate);
			if (!opt.quick) {
				add_case(CASE_LATENCY, 1, 1, 16, 0);
				add_case(CASE_LATENCY, 4, 4, 16, 0);
			}
		}
	}
	if (!opt.no_join) {
		const int(*jpc)[2] = opt.have_pc ? (const int(*)[2])opt.pc
				     : opt.quick ? join_quick_pc : join_pc;
		int njpc = opt.have_pc ? opt.npc : opt.quick ? 1 : 4;
		for (int s = 0; s < njoin_sizes; s++)
			for (int i = 0; i < njpc; i++)
				add_case(CASE_JOIN, jpc[i][0], jpc[i][1], join_sizes[s], 0);
	}
	/* Pipe cases: 1 B, 1 KiB, 1 MiB unless --pipe-sizes; --quick: one way
	 * 1 KiB and 1 MiB, ping-pong 1 KiB. */
	bool pipe_given = opt.npipe_sizes > 0;
	static const size_t pipe_def[] = { 1, 1024, 1u << 20 };
	for (int i = 0; !pipe_given && i < 3; i++)
		opt.pipe_sizes[opt.npipe_sizes++] = pipe_def[i];
	for (int i = 0; !opt.no_pipe && i < opt.npipe_sizes; i++)
		if (pipe_given || !opt.quick || opt.pipe_sizes[i] != 1)
			add_case(CASE_CONN, 1, 1, opt.pipe_sizes[i], 0);
	for (int i = 0; !opt.no_pipe_pp && i < opt.npipe_sizes; i++)
		if (pipe_given || !opt.quick || opt.pipe_sizes[i] == 1024)
			add_case(CASE_CONN_PP, 1, 1, opt.pipe_sizes[i], 0);
	/* Systems per case: shmq first (the baseline of every ratio). */
	for (int k = 0; k < ncases; k++) {
		struct caseres *cr = &cases[k];
		cr->sys = calloc(MAX_SYS, sizeof(*cr->sys));
		if (!cr->sys) {
			perror("calloc");
			exit(1);
		}
		for (int i = 0; bench_peers[i]; i++) {
			const struct bench_peer *p = bench_peers[i];
			if (!peer_can(p, &cr->c) || !system_selected(p, &cr->c))
				continue;
			if (cr->c.kind == CASE_LATENCY && opt.quick && !(p->flags & PF_MAIN))
				continue;
			const char *why = NULL;
			if (p->flags & PF_MAX_1X1 && (cr->c.np != 1 || cr->c.nc != 1))
				why = "1 producer x 1 consumer only";
			else if (p->skip)
				why = p->skip(&cr->c);
			if (why) {
				size_t l = strlen(p->name) + strlen(why) + 16;
				char *m = malloc(l);
				if (m && cr->nskip < MAX_SYS) {
					snprintf(m, l, "%s (%s)", p->name, why);
					cr->skip[cr->nskip++] = m;
				} else {
					free(m);
				}
				continue;
			}
			if (cr->nsys < MAX_SYS)
				cr->sys[cr->nsys++].p = p;
		}
	}
}

/* ------------------------------------------------------------- report ---- */

static struct sysres *find_sys(struct caseres *cr, const char *name)
{
	if (!cr)
		return NULL;
	for (int i = 0; i < cr->nsys; i++)
		if (strcmp(cr->sys[i].p->name, name) == 0)
			return &cr->sys[i];
	return NULL;
}

static struct caseres *find_case(enum bench_kind kind, int np, int nc, size_t size, bool paced)
{
	for (int k = 0; k < ncases; k++) {
		struct bench_case *c = &cases[k].c;
		if (c->kind == kind && c->np == np && c->nc == nc && c->size == size &&
		    (kind != CASE_LATENCY || (c->rate > 0) == paced))
			return &cases[k];
	}
	return NULL;
}

static const char *first_note(const struct sysres *sr)
{
	for (int r = 0; r < reps; r++)
		if (sr->s[r].note[0])
			return sr->s[r].note;
	return NULL;
}

/* Median over the repetitions of the messages/s, or of the mean round trip. */
static double rep_median(const struct sysres *sr, bool rtt)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < reps; r++)
		if (sr->s[r].ok)
			v[n++] = rtt ? sr->s[r].rtt_ns : sr->s[r].mps;
	return stats(v, n).med;
}

/* Did an earlier case's table already say what p models, in these words? */
static bool models_said(const struct caseres *cr, const struct bench_peer *p, const char *m)
{
	for (const struct caseres *e = cases; e < cr; e++)
		for (int i = 0; i < e->nsys; i++)
			if (e->sys[i].p == p && p->models(&e->c) && strcmp(p->models(&e->c), m) == 0)
				return true;
	return false;
}

static void print_case(struct caseres *cr)
{
	char title[160], a[32], b[32], d[32];
	case_title(&cr->c, title, sizeof(title));
	printf("\n### %s\n", title);
	struct sysres *base = find_sys(cr, "shmq");
	/* Column heads, aligned with the rows' printf widths below. */
	static const char *const head[] = {
		[CASE_TPUT] = "system                 msgs/s median [min..max]       GB/s     "
			"this/shmq median [min..max]",
		[CASE_LATENCY] = "system                 p50        p99        p99.9      max        "
			"msgs/s     p99.9 median [min..max] of reps",
		[CASE_PINGPONG] = "system                 round trip median [min..max]       this/shmq "
			"median [min..max]",
		[CASE_JOIN] = "system                 msgs/s median [min..max]       this/shmq "
			"median [min..max]",
		[CASE_CONN] = "system                 msgs/s median [min..max]       MB/s      "
			"this/shmq median [min..max]",
		[CASE_CONN_PP] = "system                 p50        p99        p99.9      mean       "
			"p50 of reps median [min..max]    this/shmq (p50)",
	};
	printf("%s\n", head[cr->c.kind]);
	for (int i = 0; i < cr->nsys; i++) {
		struct sysres *sr = &cr->sys[i];
		struct stat3 st = sys_stat(cr, sr);
		const char *note = first_note(sr);
		char range[128];
		if (st.n == 0) {
			printf("%-22s failed%s%s\n", sr->p->label, note ? ": " : "", note ? note : "");
			continue;
		}
		struct stat3 ratio = paired(cr, sr, cr, base);
		char rs[64] = "-";
		if (ratio.n)
			snprintf(rs, sizeof(rs), "%.2f [%.2f..%.2f]", ratio.med, ratio.min, ratio.max);
		/* The metric's median [min..max]: a rate, or a time. */
		bool is_time = cr->c.kind == CASE_LATENCY || cr->c.kind == CASE_PINGPONG ||
			       cr->c.kind == CASE_CONN_PP;
		const char *(*fmt)(double, char *, size_t) = is_time ? human_ns : human;
		snprintf(range, sizeof(range), "%s [%s..%s]", fmt(st.med, a, sizeof(a)),
			 fmt(st.min, b, sizeof(b)), fmt(st.max, d, sizeof(d)));
		char pct[3][24]; /* merged p50, p99, p99.9 */
		const double q[3] = { 0.5, 0.99, 0.999 };
		for (int j = 0; j < 3; j++)
			human_ns(hist_pct(&sr->hist, q[j]), pct[j], sizeof(pct[j]));
		switch (cr->c.kind) {
		case CASE_TPUT:
			printf("%-22s %-30s %-8.3f %s", sr->p->label, range,
			       st.med * (double)cr->c.size / 1e9, rs);
			break;
		case CASE_LATENCY:
			human_ns((double)sr->hist.max, b, sizeof(b));
			human(rep_median(sr, false), a, sizeof(a));
			printf("%-22s %-10s %-10s %-10s %-10s %-10s %s", sr->p->label, pct[0], pct[1],
			       pct[2], b, a, range);
			break;
		case CASE_PINGPONG:
			printf("%-22s %-34s %s", sr->p->label, range, rs);
			break;
		case CASE_JOIN:
			printf("%-22s %-30s %s", sr->p->label, range, rs);
			break;
		case CASE_CONN: {
			double mbs = st.med * (double)cr->c.size / 1e6;
			printf("%-22s %-30s %-9.*f %s", sr->p->label, range,
			       mbs >= 100 ? 0 : mbs >= 10 ? 1 : 2, mbs, rs);
			break;
		}
		case CASE_CONN_PP:
			human_ns(rep_median(sr, true), a, sizeof(a));
			printf("%-22s %-10s %-10s %-10s %-10s %-32s %s", sr->p->label, pct[0], pct[1],
			       pct[2], a, range, rs);
			break;
		}
		if (st.n < reps)
			printf("  (%d/%d reps ok%s%s)", st.n, reps, note ? ": " : "", note ? note : "");
		else if (note)
			printf("  (%s)", note);
		printf("\n");
	}
	bool zc = false;
	for (int i = 0; i < cr->nsys; i++)
		zc |= (cr->sys[i].p->flags & PF_ZC) != 0;
	if (zc && cr->c.kind == CASE_TPUT && cr->c.size > 64)
		printf("(zero-copy rows write and read only the 8-byte header and trailer in place; "
		       "the others copy every byte in and out)\n");
	for (int i = 0; i < cr->nskip; i++)
		printf("skipped: %s\n", cr->skip[i]);
	for (int i = 0; i < cr->nsys; i++) {
		const struct bench_peer *p = cr->sys[i].p;
		const char *m = p->models ? p->models(&cr->c) : NULL;
		if (m && !models_said(cr, p, m))
			printf("- %s: %s\n", p->label, m);
	}
	if (cr->c.kind == CASE_CONN_PP)
		printf("(p50, p99, p99.9 over every round trip of every repetition; mean = median of "
		       "the repetitions' means; ratios pair the repetitions' p50)\n");
}

/* ------------------------------------------------------------ targets ---- */

static struct target targets[40];
static int ntargets;

struct target *new_target(const char *fmt, ...)
{
	static struct target spare; /* past the table: measured, never printed */
	size_t cap = sizeof(targets) / sizeof(targets[0]);
	struct target *t = ntargets < (int)cap ? &targets[ntargets++] : &spare;
	memset(t, 0, sizeof(*t));
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->text, sizeof(t->text), fmt, ap);
	va_end(ap);
	snprintf(t->meas, sizeof(t->meas), "not measured in this run");
	return t;
}

/* shmq-mode a over b in one case, higher is better for a: throughput. */
static void target_ratio(const char *text, size_t size, int np, int nc, const char *a,
			 const char *b, double want, bool want_le)
{
	struct target *t = new_target("%s", text);
	struct caseres *cr = find_case(CASE_TPUT, np, nc, size, false);
	struct sysres *sa = find_sys(cr, a), *sb = find_sys(cr, b);
	struct stat3 s = paired(cr, sa, cr, sb);
	if (!s.n)
		return;
	t->have = true;
	t->met = want_le ? s.med <= want : s.med >= want;
	snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f]", s.med, s.min, s.max);
}

static void build_targets(void)
{
	ntargets = 0;
	target_ratio("8 B 1p1c shmq >= 1x ck_ring MPMC", 8, 1, 1, "shmq", "ck-mpmc", 1, false);
	target_ratio("8 B 1p1c shmq >= 2x mutex+condvar", 8, 1, 1, "shmq", "mutex-cv", 2, false);
	target_ratio("8 B 1p1c shmq >= 10x pipe", 8, 1, 1, "shmq", "pipe", 10, false);
	target_ratio("8 B 1p1c shmq >= 50x mp.Queue", 8, 1, 1, "shmq", "mp-queue", 50, false);
	target_ratio("8 B 1p1c shmq batch >= 0.3x ck_ring SPSC hand-off", 8, 1, 1, "shmq-batch",
		     "ck-spsc", 0.3, false);

	/* Scaling: shmq P x C over shmq 1 x 1, paired by repetition index. */
	for (int k = 2; k <= 4; k += 2) {
		struct target *t = new_target("8 B %dp%dc shmq >= 0.5x shmq 1p1c", k, k);
		struct caseres *ck = find_case(CASE_TPUT, k, k, 8, false);
		struct caseres *c1 = find_case(CASE_TPUT, 1, 1, 8, false);
		struct stat3 s = paired(ck, find_sys(ck, "shmq"), c1, find_sys(c1, "shmq"));
		if (s.n) {
			t->have = true;
			t->met = s.med >= 0.5;
			snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f] (paired by rep only)",
				 s.med, s.min, s.max);
		}
	}
	for (int k = 2; k <= 4; k += 2) {
		struct target *t =
			new_target("%dp%dc shmq p99.9 one-way latency < 1 ms (paced)", k, k);
		struct caseres *cr = find_case(CASE_LATENCY, k, k, 16, true);
		struct sysres *sr = find_sys(cr, "shmq");
		if (sr && sr->hist.n) {
			double v = hist_pct(&sr->hist, 0.999);
			char a[24];
			t->have = true;
			t->met = v < 1e6;
			snprintf(t->meas, sizeof(t->meas), "%s (%llu samples)", human_ns(v, a, sizeof(a)),
				 (unsigned long long)sr->hist.n);
		}
	}
	/* 1 KiB: over the best competitor of each repetition. */
	for (int z = 0; z < 2; z++) {
		const char *mode = z ? "shmq-zc" : "shmq";
		struct target *t = new_target("1 KiB 1p1c %s >= %sx best peer", mode, z ? "2" : "1.5");
		struct caseres *cr = find_case(CASE_TPUT, 1, 1, 1024, false);
		struct sysres *sa = find_sys(cr, mode);
		if (!sa)
			continue;
		double v[MAX_REPS];
		int n = 0;
		const char *bestname = NULL;
		double bestmed = 0;
		for (int i = 0; i < cr->nsys; i++) {
			struct sysres *sr = &cr->sys[i];
			if (sr->p->flags & (PF_SHMQ | PF_REF))
				continue;
			struct stat3 st = sys_stat(cr, sr);
			if (st.n && st.med > bestmed) {
				bestmed = st.med;
				bestname = sr->p->label;
			}
		}
		for (int r = 0; r < reps; r++) {
			double best = 0;
			for (int i = 0; i < cr->nsys; i++) {
				struct sysres *sr = &cr->sys[i];
				if (!(sr->p->flags & (PF_SHMQ | PF_REF)) && sr->s[r].ok &&
				    sr->s[r].mps > best)
					best = sr->s[r].mps;
			}
			if (best > 0 && sa->s[r].ok)
				v[n++] = sa->s[r].mps / best;
		}
		struct stat3 s = stats(v, n);
		if (s.n) {
			t->have = true;
			t->met = s.med >= (z ? 2 : 1.5);
			snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f] (best: %s)", s.med, s.min,
				 s.max, bestname ? bestname : "?");
		}
	}
	target_ratio("64 KiB 1p1c shmq >= 0.3x memcpy bandwidth", 65536, 1, 1, "shmq", "memcpy", 0.3,
		     false);
	{
		struct caseres *cr = find_case(CASE_PINGPONG, 1, 1, 8, false);
		const char *names[2] = { "pipe", "futex" };
		const char *texts[2] = { "blocking ping-pong shmq <= 0.5x pipe round trip",
					 "blocking ping-pong shmq <= 1x bare futex round trip" };
		double want[2] = { 0.5, 1.0 };
		for (int i = 0; i < 2; i++) {
			struct target *t = new_target("%s", texts[i]);
			struct stat3 s = paired(cr, find_sys(cr, "shmq"), cr, find_sys(cr, names[i]));
			if (s.n) {
				t->have = true;
				t->met = s.med <= want[i];
				snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f]", s.med, s.min,
					 s.max);
			}
		}
	}
}

static void print_targets(void)
{
	printf("\n### Targets (ratios are medians of per-repetition ratios [min..max])\n");
	for (int i = 0; i < ntargets; i++)
		printf("%-52s %-54s %s\n", targets[i].text, targets[i].meas,
		       !targets[i].have ? "-" : targets[i].met ? "met" : "MISSED");
}

/* --------------------------------------------------------------- json ---- */

void json_str(FILE *f, const char *s)
{
	fputc('"', f);
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			fprintf(f, "\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			fprintf(f, "\\u%04x", *s);
		else
			fputc(*s, f);
	}
	fputc('"', f);
}

static const char *kind_name(enum bench_kind k)
{
	static const char *const names[] = { [CASE_TPUT] = "throughput", [CASE_LATENCY] = "latency",
					     [CASE_PINGPONG] = "pingpong", [CASE_JOIN] = "join",
					     [CASE_CONN] = "pipe", [CASE_CONN_PP] = "pipe-pingpong" };
	return names[k];
}

static const char *metric_name(enum bench_kind k)
{
	return k == CASE_LATENCY ? "p99.9_ns" : k == CASE_PINGPONG ? "round_trip_ns"
	       : k == CASE_CONN_PP ? "round_trip_p50_ns" : "msgs_per_s";
}

static char machine[512];

static void write_json(const char *path)
{
	FILE *f = fopen(path, "w");
	if (!f) {
		fprintf(stderr, "shmq-bench: %s: %s\n", path, strerror(errno));
		return;
	}
	fprintf(f, "{\"machine\":");
	json_str(f, machine);
	fprintf(f, ",\"reps\":%d,\"cases\":[", reps);
	for (int k = 0; k < ncases; k++) {
		struct caseres *cr = &cases[k];
		struct bench_case *c = &cr->c;
		struct sysres *base = find_sys(cr, "shmq");
		fprintf(f, "%s\n{\"kind\":\"%s\",\"producers\":%d,\"consumers\":%d,\"size\":%zu,"
			   "\"secs\":%g,\"rate\":%g,\"systems\":[",
			k ? "," : "", kind_name(c->kind), c->np, c->nc, c->size, c->secs, c->rate);
		for (int i = 0; i < cr->nsys; i++) {
			struct sysres *sr = &cr->sys[i];
			struct stat3 st = sys_stat(cr, sr), ra = paired(cr, sr, cr, base);
			fprintf(f, "%s\n {\"name\":", i ? "," : "");
			json_str(f, sr->p->name);
			fprintf(f, ",\"label\":");
			json_str(f, sr->p->label);
			const char *models = sr->p->models ? sr->p->models(c) : NULL;
			if (models) {
				fprintf(f, ",\"models\":");
				json_str(f, models);
			}
			fprintf(f, ",\"metric\":\"%s\",\"median\":%g,\"min\":%g,\"max\":%g,",
				metric_name(c->kind), st.med, st.min, st.max);
			if (c->kind == CASE_CONN)
				fprintf(f, "\"mb_per_s_median\":%g,", st.med * (double)c->size / 1e6);
			fprintf(f, "\"ratio_to_shmq\":{\"median\":%g,\"min\":%g,\"max\":%g},", ra.med,
				ra.min, ra.max);
			if (c->kind == CASE_LATENCY || c->kind == CASE_CONN_PP)
				fprintf(f, "\"merged\":{\"n\":%llu,\"p50\":%g,\"p99\":%g,\"p999\":%g,"
					   "\"max\":%llu},",
					(unsigned long long)sr->hist.n, hist_pct(&sr->hist, 0.5),
					hist_pct(&sr->hist, 0.99), hist_pct(&sr->hist, 0.999),
					(unsigned long long)sr->hist.max);
			fprintf(f, "\"samples\":[");
			for (int r = 0; r < reps; r++) {
				struct sample *s = &sr->s[r];
				fprintf(f, "%s{\"ok\":%s,\"msgs\":%llu,\"errors\":%llu,\"wall_s\":%g,"
					   "\"msgs_per_s\":%g,\"gb_per_s\":%g,\"rtt_ns\":%g,"
					   "\"p50_ns\":%g,\"p99_ns\":%g,\"p999_ns\":%g,\"note\":",
					r ? "," : "", s->ok ? "true" : "false",
					(unsigned long long)s->msgs, (unsigned long long)s->errors,
					s->wall, s->mps, s->gbs, s->rtt_ns, s->p50, s->p99, s->p999);
				json_str(f, s->note);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "],\"skipped\":[");
		for (int i = 0; i < cr->nskip; i++) {
			fprintf(f, "%s", i ? "," : "");
			json_str(f, cr->skip[i]);
		}
		fprintf(f, "]}");
	}
	sync_json(f, ncases == 0);
	dict_json(f, ncases == 0 && sync_ncases() == 0);
	csp_json(f, ncases == 0 && sync_ncases() == 0 && dict_total_runs() == 0);
	bridge_json(f, ncases == 0 && sync_ncases() == 0 && dict_total_runs() == 0 &&
			       csp_ncases() == 0);
	fprintf(f, "],\n\"targets\":[");
	for (int i = 0; i < ntargets; i++) {
		fprintf(f, "%s\n{\"target\":", i ? "," : "");
		json_str(f, targets[i].text);
		fprintf(f, ",\"measured\":");
		json_str(f, targets[i].meas);
		fprintf(f, ",\"status\":\"%s\"}",
			!targets[i].have ? "not measured" : targets[i].met ? "met" : "missed");
	}
	fprintf(f, "]}\n");
	fclose(f);
}

/* --------------------------------------------------------------- plot ---- */

static void write_plot(const char *png)
{
	char dir[] = "/tmp/shmq-bench-plot.XXXXXX";
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return;
	}
	char path[512];
	snprintf(path, sizeof(path), "%s/plot.gp", dir);
	FILE *gp = fopen(path, "w");
	if (!gp)
		return;
	/* Panels: one per message size (throughput vs shape), one per latency case. */
	int npanels = 0;
	size_t sizes[8];
	int nsz = 0;
	for (int k = 0; k < ncases; k++) {
		if (cases[k].c.kind != CASE_TPUT)
			continue;
		bool seen = false;
		for (int i = 0; i < nsz; i++)
			seen |= sizes[i] == cases[k].c.size;
		if (!seen && nsz < 8)
			sizes[nsz++] = cases[k].c.size;
	}
	int nlat = 0;
	for (int k = 0; k < ncases; k++)
		nlat += cases[k].c.kind == CASE_LATENCY;
	npanels = nsz + nlat;
	if (!npanels) {
		fclose(gp);
		return;
	}
	int cols = npanels > 2 ? 2 : npanels, rows = (npanels + cols - 1) / cols;
	fprintf(gp, "set terminal pngcairo size %d,%d font 'sans,9'\n", 700 * cols, 480 * rows);
	fprintf(gp, "set output '%s'\n", png);
	fprintf(gp, "set multiplot layout %d,%d title %s\n", rows, cols, "'shmq-bench'");
	fprintf(gp, "set termoption noenhanced\n");
	fprintf(gp, "set key outside right top font 'sans,8'\nset grid\nset datafile missing 'NaN'\n");
	for (int z = 0; z < nsz; z++) {
		/* Columns: shape label, then one column per system seen at this size. */
		const struct bench_peer *sys[MAX_SYS];
		int ns = 0;
		int idx[MAX_CASES], nk = 0;
		for (int k = 0; k < ncases; k++) {
			if (cases[k].c.kind != CASE_TPUT || cases[k].c.size != sizes[z])
				continue;
			idx[nk++] = k;
			for (int i = 0; i < cases[k].nsys; i++) {
				bool seen = false;
				for (int j = 0; j < ns; j++)
					seen |= sys[j] == cases[k].sys[i].p;
				if (!seen && ns < MAX_SYS)
					sys[ns++] = cases[k].sys[i].p;
			}
		}
		char dat[512];
		snprintf(dat, sizeof(dat), "%s/tput%d.dat", dir, z);
		FILE *d = fopen(dat, "w");
		if (!d)
			continue;
		fprintf(d, "shape");
		for (int j = 0; j < ns; j++)
			fprintf(d, " \"%s\"", sys[j]->label);
		fprintf(d, "\n");
		for (int q = 0; q < nk; q++) {
			struct caseres *cr = &cases[idx[q]];
			fprintf(d, "%dx%d", cr->c.np, cr->c.nc);
			for (int j = 0; j < ns; j++) {
				struct sysres *sr = find_sys(cr, sys[j]->name);
				struct stat3 st = sr ? sys_stat(cr, sr) : (struct stat3){ 0 };
				if (st.n)
					fprintf(d, " %g", st.med);
				else
					fprintf(d, " NaN");
			}
			fprintf(d, "\n");
		}
		fclose(d);
		char sz[32];
		fprintf(gp, "set title 'throughput, %s messages (median of %d reps)'\n",
			size_str(sizes[z], sz, sizeof(sz)), reps);
		fprintf(gp, "set logscale y\nset ylabel 'messages/s'\nset xlabel 'producers x consumers'\n");
		fprintf(gp, "unset logscale x\nset format y '%%.0s%%c'\n");
		/* Colours repeat after 8: vary the dash pattern and the point too. */
		fprintf(gp, "plot for [i=2:%d] '%s' using 0:i:xtic(1) with linespoints lw 2 lc i-1 "
			    "dt 1+int((i-2)/8) pt i-1 title columnheader(i)\n",
			ns + 1, dat);
	}
	/* One CDF panel per latency case, from the merged histograms. */
	for (int k = 0; k < ncases; k++) {
		struct caseres *cr = &cases[k];
		if (cr->c.kind != CASE_LATENCY)
			continue;
		if (cr->c.rate > 0)
			fprintf(gp, "set title 'one-way latency CDF, %dp x %dc, paced %.0f msgs/s'\n",
				cr->c.np, cr->c.nc, cr->c.rate);
		else
			fprintf(gp, "set title 'one-way latency CDF, %dp x %dc, producers flat out'\n",
				cr->c.np, cr->c.nc);
		fprintf(gp, "set logscale x\nunset logscale y\nset format y '%%g'\nset format x '%%.0s%%cs'\n");
		fprintf(gp, "set xlabel 'latency'\nset ylabel 'fraction <= x'\nset yrange [0:1]\n");
		fprintf(gp, "plot ");
		int nplot = 0;
		for (int i = 0; i < cr->nsys; i++) {
			struct sysres *sr = &cr->sys[i];
			if (!sr->hist.n)
				continue;
			char dat[512];
			snprintf(dat, sizeof(dat), "%s/lat%d_%d.dat", dir, k, i);
			FILE *d = fopen(dat, "w");
			if (!d)
				continue;
			uint64_t acc = 0;
			for (unsigned b = 0; b < BENCH_LAT_BUCKETS; b++) {
				if (!sr->hist.b[b])
					continue;
				acc += sr->hist.b[b];
				fprintf(d, "%g %g\n", hist_bucket_hi(b) / 1e9, (double)acc / (double)sr->hist.n);
			}
			fclose(d);
			fprintf(gp, "%s'%s' using 1:2 with steps lw 2 lc %d dt %d title '%s'",
				nplot ? ", " : "", dat, nplot + 1, 1 + nplot / 8, sr->p->label);
			nplot++;
		}
		if (!nplot)
			fprintf(gp, "NaN notitle");
		fprintf(gp, "\nset yrange [*:*]\n");
	}
	fprintf(gp, "unset multiplot\n");
	fclose(gp);
	char cmd[1100];
	snprintf(cmd, sizeof(cmd), "gnuplot '%s' 2>&1", path);
	FILE *pf = popen(cmd, "r");
	int rc = -1;
	if (pf) {
		char line[512];
		while (fgets(line, sizeof(line), pf))
			fprintf(stderr, "gnuplot: %s", line);
		rc = pclose(pf);
	}
	if (rc != 0)
		fprintf(stderr, "shmq-bench: gnuplot failed (installed? gnuplot-nox); script kept in %s\n",
			dir);
	else {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd) != 0)
			fprintf(stderr, "shmq-bench: could not remove %s\n", dir);
		printf("\nplot written to %s\n", png);
	}
}

/* --------------------------------------------------------------- main ---- */

static void describe_machine(void)
{
	char model[160] = "unknown";
	FILE *f = fopen("/proc/cpuinfo", "r");
	if (f) {
		char line[512];
		while (fgets(line, sizeof(line), f)) {
			if (strncmp(line, "model name", 10) == 0) {
				char *v = strchr(line, ':');
				if (v) {
					v += 2;
					v[strcspn(v, "\n")] = 0;
					snprintf(model, sizeof(model), "%s", v);
				}
				break;
			}
		}
		fclose(f);
	}
	struct utsname u;
	uname(&u);
	time_t now = time(NULL);
	char date[64];
	strftime(date, sizeof(date), "%Y-%m-%d %H:%M %Z", localtime(&now));
	snprintf(machine, sizeof(machine), "nproc=%ld, CPU=%s, kernel=%s %s %s, date=%s",
		 sysconf(_SC_NPROCESSORS_ONLN), model, u.sysname, u.release, u.machine, date);
}

static void on_signal(int sig)
{
	(void)sig;
	exit(130); /* runs the peers' atexit clean-ups (iox-roudi) */
}

int main(int argc, char **argv)
{
	enum { O_QUICK = 256, O_FULL, O_JSON, O_PLOT, O_RATE, O_NOLAT, O_NOPP, O_NOTPUT, O_MP, O_LIST,
	       O_NOJOIN, O_NOPIPE, O_CASES, O_PIPESIZES, O_NOSYNC, O_MPSYNC, O_NODICT, O_MPDICT,
	       O_DICTKEYS, O_NOCSP, O_NOBRIDGE };
	static const struct option lo[] = {
		{ "quick", no_argument, 0, O_QUICK },	   { "full", no_argument, 0, O_FULL },
		{ "json", required_argument, 0, O_JSON },  { "plot", required_argument, 0, O_PLOT },
		{ "rate", required_argument, 0, O_RATE },  { "no-latency", no_argument, 0, O_NOLAT },
		{ "no-pingpong", no_argument, 0, O_NOPP }, { "no-throughput", no_argument, 0, O_NOTPUT },
		{ "mp-script", required_argument, 0, O_MP }, { "list", no_argument, 0, O_LIST },
		{ "no-join", no_argument, 0, O_NOJOIN },   { "no-pipe", no_argument, 0, O_NOPIPE },
		{ "cases", required_argument, 0, O_CASES },
		{ "pipe-sizes", required_argument, 0, O_PIPESIZES },
		{ "no-sync", no_argument, 0, O_NOSYNC },
		{ "mp-sync-script", required_argument, 0, O_MPSYNC },
		{ "no-dict", no_argument, 0, O_NODICT },
		{ "mp-dict-script", required_argument, 0, O_MPDICT },
		{ "dict-keys", required_argument, 0, O_DICTKEYS },
		{ "no-csp", no_argument, 0, O_NOCSP },
		{ "no-bridge", no_argument, 0, O_NOBRIDGE },
		{ "help", no_argument, 0, 'h' },	   { 0, 0, 0, 0 }
	};
	int r_opt = 0, np = 0;
	double t_opt = 0;
	opt.batch = 32;
	opt.rate = 10000;
	opt.max_msgs = 1ull << 40;
	opt.dict_keys = DICT_NKEYS;
#ifdef MP_PEERS_PY
	bench_mp_script = MP_PEERS_PY;
#endif
#ifdef MP_SYNC_PY
	bench_mp_sync_script = MP_SYNC_PY;
#endif
#ifdef MP_DICT_PY
	bench_mp_dict_script = MP_DICT_PY;
#endif
	int ch;
	while ((ch = getopt_long(argc, argv, "p:c:s:S:r:t:n:b:vh", lo, NULL)) != -1) {
		switch (ch) {
		case 'p':
			np = atoi(optarg);
			break;
		case 'c':
			if (np <= 0 || atoi(optarg) <= 0 || np > BENCH_MAX_WORKERS ||
			    atoi(optarg) > BENCH_MAX_WORKERS || opt.npc >= MAX_PC) {
				fprintf(stderr, "shmq-bench: give -p P before -c C (1..%d)\n",
					BENCH_MAX_WORKERS);
				return 2;
			}
			opt.pc[opt.npc][0] = np;
			opt.pc[opt.npc++][1] = atoi(optarg);
			opt.have_pc = true;
			break;
		case 's':
			for (char *s = strtok(optarg, ","); s && opt.nsizes < 8; s = strtok(NULL, ","))
				opt.sizes[opt.nsizes++] = parse_size(s);
			break;
		case 'S':
			opt.systems = optarg;
			break;
		case 'r':
			r_opt = atoi(optarg);
			break;
		case 't':
			t_opt = atof(optarg);
			break;
		case 'n':
			opt.max_msgs = strtoull(optarg, NULL, 10);
			break;
		case 'b':
			opt.batch = (unsigned)atoi(optarg);
			break;
		case 'v':
			opt.verbose = true;
			break;
		case O_QUICK:
			opt.quick = true;
			break;
		case O_FULL:
			opt.full = true;
			break;
		case O_JSON:
			opt.json = optarg;
			break;
		case O_PLOT:
			opt.plot = optarg;
			break;
		case O_RATE:
			opt.rate = atof(optarg);
			break;
		case O_NOLAT:
			opt.no_lat = true;
			break;
		case O_NOPP:
			opt.no_pp = true;
			break;
		case O_NOTPUT:
			opt.no_tput = true;
			break;
		case O_NOJOIN:
			opt.no_join = true;
			break;
		case O_NOPIPE:
			opt.no_pipe = opt.no_pipe_pp = true;
			break;
		case O_CASES:
			if (parse_cases(optarg) < 0)
				return 2;
			break;
		case O_PIPESIZES:
			for (char *s = strtok(optarg, ","); s && opt.npipe_sizes < 8; s = strtok(NULL, ","))
				opt.pipe_sizes[opt.npipe_sizes++] = parse_size(s);
			break;
		case O_MP:
			bench_mp_script = optarg;
			break;
		case O_MPSYNC:
			bench_mp_sync_script = optarg;
			break;
		case O_NOSYNC:
			opt.no_sync = true;
			break;
		case O_MPDICT:
			bench_mp_dict_script = optarg;
			break;
		case O_DICTKEYS:
			opt.dict_keys = (uint32_t)strtoul(optarg, NULL, 10);
			if (opt.dict_keys < 1 || opt.dict_keys >= 1u << DICT_IDX_BITS) {
				fprintf(stderr, "shmq-bench: --dict-keys 1..%u\n",
					(1u << DICT_IDX_BITS) - 1);
				return 2;
			}
			break;
		case O_NODICT:
			opt.no_dict = opt.no_list = true;
			break;
		case O_NOCSP:
			opt.no_csp = true;
			break;
		case O_NOBRIDGE:
			opt.no_bridge = true;
			break;
		case O_LIST:
			for (int i = 0; bench_peers[i]; i++)
				printf("%-18s %-22s%s%s%s\n", bench_peers[i]->name, bench_peers[i]->label,
				       bench_peers[i]->flags & PF_MAIN ? " [quick]" : "",
				       bench_peers[i]->flags & PF_REF ? " [reference]" : "",
				       bench_peers[i]->flags & PF_THREADS ? " [threads]" : "");
			for (int i = 0; bench_missing[i].peer; i++)
				printf("%-18s skipped: %s not installed at build time\n",
				       bench_missing[i].peer, bench_missing[i].package);
			printf("sync cases:\n");
			for (int i = 0; sync_peers[i]; i++)
				if (!(sync_peers[i]->flags & SP_SHMQ))
					printf("%-18s %-22s%s\n", sync_peers[i]->name, sync_peers[i]->label,
					       sync_peers[i]->flags & SP_REF ? " [reference]" : "");
			printf("dict and list cases:\n");
			for (int i = 0; dict_peers[i]; i++)
				if (!(dict_peers[i]->flags & DP_SHMQ))
					printf("%-18s %s\n", dict_peers[i]->name, dict_peers[i]->label);
			printf("csp cases:\n");
			for (int i = 0; csp_peers[i]; i++)
				if (!(csp_peers[i]->flags & CP_SHMQ))
					printf("%-18s %-22s%s\n", csp_peers[i]->name, csp_peers[i]->label,
					       csp_peers[i]->flags & CP_REF ? " [reference]" : "");
			bridge_list();
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (opt.quick && opt.full) {
		fprintf(stderr, "shmq-bench: --quick or --full, not both\n");
		return 2;
	}
	for (int i = 0; i < opt.nsizes; i++)
		if (opt.sizes[i] < 8 || opt.sizes[i] > (16u << 20)) {
			fprintf(stderr, "shmq-bench: message sizes are 8 B .. 16 MiB\n");
			return 2;
		}
	for (int i = 0; i < opt.npipe_sizes; i++)
		if (opt.pipe_sizes[i] < 1 || opt.pipe_sizes[i] > (64u << 20)) {
			fprintf(stderr, "shmq-bench: Pipe message sizes are 1 B .. 64 MiB\n");
			return 2;
		}
	if (opt.batch < 1 || opt.batch > 1024) {
		fprintf(stderr, "shmq-bench: -b 1..1024\n");
		return 2;
	}
	reps = r_opt > 0 ? r_opt : opt.quick ? 3 : 5;
	if (reps > MAX_REPS)
		reps = MAX_REPS;
	opt.secs = t_opt > 0 ? t_opt : opt.quick ? 0.2 : 0.3;

	signal(SIGPIPE, SIG_IGN);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);
	describe_machine();
	int64_t t_start = bench_now();
	printf("shmq-bench: %s\n", machine);
	printf("mode: %s, %d repetitions x %.2f s per run, interleaved (every system once per case "
	       "per repetition, rotating order); batch burst %u\n",
	       opt.quick ? "quick" : "full", reps, opt.secs, opt.batch);
	printf("shmq geometry: 64-byte cells below 1 KiB (ring 256 KiB); from 1 KiB, and for "
	       "zero-copy, one message per cell (ring 1 MiB); 32 KiB cells for messages over "
	       "one cell; at least 16 messages\n");
	for (int i = 0; bench_missing[i].peer; i++)
		printf("skipped: %s (%s not installed)\n", bench_missing[i].peer,
		       bench_missing[i].package);

	build_cases();
	if (!opt.no_sync)
		sync_build_cases(opt.quick, opt.secs, reps, opt.systems);
	dict_build_cases(opt.quick, opt.secs, reps, opt.systems, !opt.no_dict, !opt.no_list,
			 opt.dict_keys);
	if (!opt.no_csp)
		csp_build_cases(opt.quick, opt.secs, reps, opt.systems);
	if (!opt.no_bridge) {
		bridge_build_cases(opt.quick, opt.secs, reps, opt.max_msgs, opt.systems);
		if (bridge_skipped())
			printf("skipped: %s\n", bridge_skipped());
	}
	int total = sync_total_runs() + dict_total_runs() + csp_total_runs() +
		    bridge_total_runs(), done = 0;
	for (int k = 0; k < ncases; k++)
		total += cases[k].nsys * reps;
	bool tty = isatty(2);
	for (int r = 0; r < reps; r++) {
		for (int k = 0; k < ncases; k++) {
			struct caseres *cr = &cases[k];
			for (int j = 0; j < cr->nsys; j++) {
				struct sysres *sr = &cr->sys[(j + r + k) % cr->nsys];
				if (tty) {
					fprintf(stderr, "\r[rep %d/%d] %3d%% %-16s %dx%d %-8zu", r + 1, reps,
						100 * done / (total ? total : 1), sr->p->name, cr->c.np,
						cr->c.nc, cr->c.size);
					fflush(stderr);
				}
				int64_t t_run = bench_now();
				run_one(sr->p, &cr->c, &sr->s[r], &sr->hist);
				if (opt.verbose)
					fprintf(stderr, "%s %s %dx%d %zu: ok=%d %.0f msgs/s rtt %.0f ns "
							"(%.2f s) %s\n",
						kind_name(cr->c.kind), sr->p->name, cr->c.np, cr->c.nc,
						cr->c.size, sr->s[r].ok, sr->s[r].mps, sr->s[r].rtt_ns,
						(double)(bench_now() - t_run) / 1e9, sr->s[r].note);
				done++;
			}
		}
		sync_run_rep(r, tty, opt.verbose, &done, total);
		dict_run_rep(r, tty, opt.verbose, &done, total);
		csp_run_rep(r, tty, opt.verbose, &done, total);
		bridge_run_rep(r, tty, opt.verbose, &done, total);
	}
	if (tty)
		fprintf(stderr, "\r%-60s\r", "");
	for (int k = 0; k < ncases; k++)
		print_case(&cases[k]);
	sync_print();
	dict_print();
	csp_print();
	bridge_print();
	build_targets();
	sync_targets();
	dict_targets();
	csp_targets();
	bridge_targets();
	print_targets();
	if (opt.json)
		write_json(opt.json);
	if (opt.plot)
		write_plot(opt.plot);
	printf("\ntotal time: %.1f s\n", (double)(bench_now() - t_start) / 1e9);
	return 0;
}
