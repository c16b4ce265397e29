/* shmq-bench: the shared dict and list cases (--cases dict,list; see dict.h).
 *
 * Same rules as the other cases: every system runs in fresh processes on a
 * shared start barrier, on a structure created and preloaded afresh for the
 * run (outside the timed window); each repetition runs every case once with
 * every system (rotating order), after the message and sync cases of that
 * repetition; reported: ops/s median [min..max] over repetitions and shmq's
 * ratio to each peer computed per repetition (paired).
 */
#include "bench.h"
#include "dict.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define DICT_MAX_CASES 24
#define DICT_MAX_SYS 8
#define DICT_WATCHDOG_NS (10 * 1000000000LL)

const char *bench_mp_dict_script;

extern const struct dict_peer dict_shmq, dict_mutex, dict_mp;
#ifdef HAVE_LMDB
extern const struct dict_peer dict_lmdb;
#endif

/* Per case, the shmq row comes first (the baseline), then this order. */
const struct dict_peer *const dict_peers[] = {
	&dict_shmq,
#ifdef HAVE_LMDB
	&dict_lmdb,
#endif
	&dict_mutex,
	&dict_mp,
	NULL,
};

/* ------------------------------------------------------------ the cases -- */

struct dsys {
	const struct dict_peer *p;
	double rate[MAX_REPS]; /* ops/s; 0: the repetition failed */
	uint64_t ops[MAX_REPS], errors[MAX_REPS];
	double wall[MAX_REPS];
	char note[MAX_REPS][120];
};

struct dcase {
	struct dict_case c;
	int nsys;
	struct dsys sys[DICT_MAX_SYS];
};

static struct dcase *dcases;
static int ndcases, dreps;

int dict_total_runs(void)
{
	int n = 0;
	for (int k = 0; k < ndcases; k++)
		n += dcases[k].nsys * dreps;
	return n;
}

static void add_case(enum dict_kind kind, unsigned get_pct, size_t vsize, int nproc, double secs,
		     const char *systems, uint32_t nkeys)
{
	if (ndcases >= DICT_MAX_CASES)
		return;
	struct dcase *dc = &dcases[ndcases++];
	dc->c = (struct dict_case){ .kind = kind, .nproc = nproc, .get_pct = get_pct,
				    .vsize = vsize, .secs = secs,
				    .nkeys = kind == DICT_OPS ? nkeys : LIST_PRELOAD };
	for (int i = 0; dict_peers[i] && dc->nsys < DICT_MAX_SYS; i++) {
		const struct dict_peer *p = dict_peers[i];
		if ((p->kinds & DICT_KIND(kind)) &&
		    (!systems || p->flags & DP_SHMQ || name_listed(systems, p->name)))
			dc->sys[dc->nsys++].p = p;
	}
}

void dict_build_cases(bool quick, double secs, int reps, const char *systems, bool dict,
		      bool list, uint32_t nkeys)
{
	/* The dict mixes: gets only (the 10 M gets/s target), 90/10, 50/50. */
	static const struct {
		unsigned pct;
		size_t vsize;
		unsigned quick_procs; /* bit n: n processes in --quick */
	} mixes[] = { { 100, 8, 1u << 2 },
		      { 90, 8, 1u << 1 | 1u << 2 | 1u << 4 },
		      { 50, 8, 1u << 2 },
		      { 90, 1024, 1u << 2 },
		      { 50, 1024, 1u << 2 } };
	static const int procs[] = { 1, 2, 4 };
	dreps = reps;
	dcases = calloc(DICT_MAX_CASES, sizeof(*dcases));
	if (!dcases) {
		perror("calloc");
		exit(1);
	}
	for (size_t m = 0; dict && m < sizeof(mixes) / sizeof(mixes[0]); m++)
		for (int i = 0; i < 3; i++)
			if (!quick || mixes[m].quick_procs & 1u << procs[i])
				add_case(DICT_OPS, mixes[m].pct, mixes[m].vsize, procs[i], secs, systems,
					 nkeys);
	for (int i = 0; list && i < 3; i++)
		add_case(LIST_OPS, 0, LIST_VLEN, procs[i], secs, systems, 0);
}

/* ------------------------------------------------------------- running -- */

struct dproc {
	const struct dict_peer *p;
	void *ctx;
	struct dict_shared *sh;
	const struct dict_case *c;
};

static int dproc_main(void *arg, int i)
{
	struct dproc *a = arg;
	struct dict_worker w = { .sh = a->sh, .c = a->c, .id = i };
	return a->sh->res[i].rc = a->p->worker(a->ctx, &w);
}

/* A C system: set up, c->nproc fresh worker processes, count, tear down. */
static int run_procs(const struct dict_peer *p, const struct dict_case *c, struct dict_run *out)
{
	struct dproc a = { .p = p, .c = c };
	a.sh = mmap(NULL, sizeof(*a.sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	int rc = a.sh == MAP_FAILED ? -errno : p->setup(c, &a.ctx);
	if (rc < 0) {
		snprintf(out->note, sizeof(out->note), "%s: %s",
			 a.sh == MAP_FAILED ? "mmap" : "setup", strerror(-rc));
		if (a.sh != MAP_FAILED)
			munmap(a.sh, sizeof(*a.sh));
		return rc;
	}
	struct dict_shared *sh = a.sh;
	struct bench_window win = { &sh->arrived, &sh->go, &sh->stop, &sh->t0, (uint32_t)c->nproc,
				    30 * 1000000000LL, c->secs };
	bool failed = bench_fork_window(c->nproc, dproc_main, &a, &win, DICT_WATCHDOG_NS,
					out->note, sizeof(out->note));
	int64_t count = p->count ? p->count(a.ctx) : (int64_t)c->nkeys;
	p->teardown(a.ctx);
	int64_t t_end = sh->t0;
	for (int i = 0; i < c->nproc; i++) {
		out->ops += sh->res[i].ops;
		out->errors += sh->res[i].errors;
		if (sh->res[i].t_end > t_end)
			t_end = sh->res[i].t_end;
		if (!out->note[0] && sh->res[i].note[0])
			snprintf(out->note, sizeof(out->note), "%s", sh->res[i].note);
	}
	out->wall_ns = t_end - sh->t0;
	if (count != (int64_t)c->nkeys) { /* a key or a value lost or made up */
		out->errors++;
		if (!out->note[0])
			snprintf(out->note, sizeof(out->note), "%lld %s after the run, not %u",
				 (long long)count, c->kind == DICT_OPS ? "keys" : "values", c->nkeys);
	}
	munmap(sh, sizeof(*sh));
	return failed ? -EIO : 0;
}

static void run_sys(const struct dcase *dc, struct dsys *ds, int r)
{
	struct dict_run res = { 0 };
	int rc = ds->p->run ? ds->p->run(&dc->c, &res) : run_procs(ds->p, &dc->c, &res);
	bool ok = rc == 0 && res.ops > 0 && res.wall_ns > 0;
	ds->ops[r] = res.ops;
	ds->errors[r] = res.errors;
	ds->wall[r] = (double)res.wall_ns / 1e9;
	ds->rate[r] = ok ? (double)res.ops / ds->wall[r] : 0;
	if (ok && res.errors && !res.note[0])
		snprintf(res.note, sizeof(res.note), "%llu integrity errors",
			 (unsigned long long)res.errors);
	else if (!ok && !res.note[0])
		snprintf(res.note, sizeof(res.note), "failed (%d)", rc);
	memcpy(ds->note[r], res.note, sizeof(res.note));
}

static const char *kind_name(const struct dict_case *c)
{
	return c->kind == DICT_OPS ? "dict" : "list";
}

void dict_run_rep(int r, bool tty, bool verbose, int *done, int total)
{
	for (int k = 0; k < ndcases; k++) {
		struct dcase *dc = &dcases[k];
		for (int j = 0; j < dc->nsys; j++) {
			struct dsys *ds = &dc->sys[(j + r + k) % dc->nsys];
			if (tty) {
				fprintf(stderr, "\r[rep %d/%d] %3d%% %-16s %s %u%% %zu B %dp        ",
					r + 1, dreps, 100 * *done / (total ? total : 1), ds->p->name,
					kind_name(&dc->c), dc->c.get_pct, dc->c.vsize, dc->c.nproc);
				fflush(stderr);
			}
			int64_t t = bench_now();
			run_sys(dc, ds, r);
			if (verbose)
				fprintf(stderr, "%s %u%% %zu B %dp %s: %.0f ops/s (%.2f s) %s\n",
					kind_name(&dc->c), dc->c.get_pct, dc->c.vsize, dc->c.nproc,
					ds->p->name, ds->rate[r], (double)(bench_now() - t) / 1e9,
					ds->note[r]);
			(*done)++;
		}
	}
}

/* ------------------------------------------------------------- numbers -- */

/* Median [min..max] of a's ops/s over its repetitions, or with b, of a / b
 * over the repetitions where both ran (paired). */
static struct stat3 rates(const struct dsys *a, const struct dsys *b)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; a && r < dreps; r++) {
		double div = b ? b->rate[r] : 1;
		if (a->rate[r] > 0 && div > 0)
			v[n++] = a->rate[r] / div;
	}
	return stats(v, n);
}

static const char *first_note(const struct dsys *ds)
{
	for (int r = 0; r < dreps; r++)
		if (ds->note[r][0])
			return ds->note[r];
	return NULL;
}

static struct dcase *find_case(enum dict_kind kind, unsigned get_pct, size_t vsize, int nproc)
{
	for (int k = 0; k < ndcases; k++) {
		const struct dict_case *c = &dcases[k].c;
		if (c->kind == kind && c->nproc == nproc &&
		    (kind == LIST_OPS || (c->get_pct == get_pct && c->vsize == vsize)))
			return &dcases[k];
	}
	return NULL;
}

/* -------------------------------------------------------------- report -- */

static void title(const struct dict_case *c, char *buf, size_t len)
{
	const char *s = c->nproc > 1 ? "es" : "";
	char mix[40];
	if (c->kind == LIST_OPS) {
		snprintf(buf, len, "List: append + pop (front, back in turn), %d process%s", c->nproc,
			 s);
		return;
	}
	if (c->get_pct >= 100)
		snprintf(mix, sizeof(mix), "gets only");
	else
		snprintf(mix, sizeof(mix), "%u%% get / %u%% set", c->get_pct, 100 - c->get_pct);
	bool kib = c->vsize % 1024 == 0;
	snprintf(buf, len, "Dict: %s, %u B keys, %zu %s values, %d process%s", mix, DICT_KLEN,
		 kib ? c->vsize / 1024 : c->vsize, kib ? "KiB" : "B", c->nproc, s);
}

static void print_case(const struct dcase *dc)
{
	char t[160];
	title(&dc->c, t, sizeof(t));
	printf("\n### %s\n", t);
	printf("%-22s %-30s %-12s %s\n", "system", "ops/s median [min..max]", "per process",
	       "shmq/this median [min..max]");
	const struct dsys *base = &dc->sys[0]; /* shmq: always selected, always first */
	for (int i = 0; i < dc->nsys; i++) {
		const struct dsys *ds = &dc->sys[i];
		struct stat3 st = rates(ds, NULL);
		const char *note = first_note(ds);
		if (!st.n) {
			printf("%-22s failed%s%s\n", ds->p->label, note ? ": " : "", note ? note : "");
			continue;
		}
		char range[96], per[24], ratio[64];
		stat_range_str(&st, false, range, sizeof(range));
		human(st.med / dc->c.nproc, per, sizeof(per));
		struct stat3 ra = rates(base, ds);
		stat_ratio_str(&ra, ratio, sizeof(ratio));
		printf("%-22s %-30s %-12s %s", ds->p->label, range, per, ratio);
		if (st.n < dreps)
			printf("  (%d/%d reps ok%s%s)", st.n, dreps, note ? ": " : "", note ? note : "");
		else if (note)
			printf("  (%s)", note);
		printf("\n");
	}
}

/* What each system uses, once per kind of case. */
static void print_models(enum dict_kind kind)
{
	const struct dcase *dc = NULL;
	for (int k = 0; k < ndcases && !dc; k++)
		if (dcases[k].c.kind == kind)
			dc = &dcases[k];
	if (!dc)
		return;
	printf("\n%s systems:\n", kind == DICT_OPS ? "Dict" : "List");
	for (int i = 0; i < dc->nsys; i++) {
		const char *m = dc->sys[i].p->models ? dc->sys[i].p->models(&dc->c) : NULL;
		if (m)
			printf("- %s: %s\n", dc->sys[i].p->label, m);
	}
}

/* Where a peer's median beats shmq's: said plainly under the tables. */
static void print_peer_wins(void)
{
	int n = 0;
	printf("\n### Dict and list: where a peer is ahead of shmq (paired median ratio)\n");
	for (int k = 0; k < ndcases; k++) {
		const struct dcase *dc = &dcases[k];
		char t[160];
		title(&dc->c, t, sizeof(t));
		for (int i = 1; i < dc->nsys; i++) {
			struct stat3 ra = rates(&dc->sys[0], &dc->sys[i]);
			if (ra.n && ra.med < 1) {
				printf("- %s: %s has the higher rate (shmq/this %.2f [%.2f..%.2f])\n", t,
				       dc->sys[i].p->label, ra.med, ra.min, ra.max);
				n++;
			}
		}
	}
	if (!n)
		printf("- none in this run\n");
}

void dict_print(void)
{
	if (!ndcases)
		return;
	printf("\n## Shared dict and list (%d repetitions x %.2f s per run, interleaved: every "
	       "system once per case per repetition, rotating order)\n", dreps, dcases[0].c.secs);
	uint32_t nkeys = 0;
	for (int k = 0; k < ndcases && !nkeys; k++)
		nkeys = dcases[k].c.kind == DICT_OPS ? dcases[k].c.nkeys : 0;
	printf("Dict: %u keys of %u B preloaded, each operation on a key picked uniformly at "
	       "random; list: %u values of %u B preloaded. Every call is an operation; ops/s over "
	       "all processes; every value read is checked, and the key / value count after the "
	       "run.\n", nkeys, DICT_KLEN, LIST_PRELOAD, LIST_VLEN);
	for (int k = 0; k < ndcases; k++)
		print_case(&dcases[k]);
	printf("(shmq/this: per-repetition ratios, then median [min..max]; above 1 favours shmq)\n");
	print_models(DICT_OPS);
	print_models(LIST_OPS);
	print_peer_wins();
}

/* ------------------------------------------------------------- targets -- */

void dict_targets(void)
{
	if (!ndcases)
		return;
	struct target *t = new_target("dict gets >= 10M ops/s, 2 procs, 16 B keys, 8 B vals");
	struct dcase *dc = find_case(DICT_OPS, 100, 8, 2);
	struct stat3 st = dc ? rates(&dc->sys[0], NULL) : (struct stat3){ 0 };
	if (!st.n)
		return;
	char a[24], b[24], d[24];
	t->have = true;
	t->met = st.med >= 10e6;
	snprintf(t->meas, sizeof(t->meas), "%s [%s..%s] ops/s", human(st.med, a, sizeof(a)),
		 human(st.min, b, sizeof(b)), human(st.max, d, sizeof(d)));
}

/* ---------------------------------------------------------------- json -- */

static void json_range(FILE *f, const char *key, struct stat3 s)
{
	fprintf(f, ",\"%s\":{\"median\":%g,\"min\":%g,\"max\":%g}", key, s.med, s.min, s.max);
}

void dict_json(FILE *f, bool first)
{
	for (int k = 0; k < ndcases; k++) {
		const struct dcase *dc = &dcases[k];
		const struct dict_case *c = &dc->c;
		fprintf(f, "%s\n{\"kind\":\"%s\",\"processes\":%d,\"get_pct\":%u,\"key_size\":%u,"
			   "\"value_size\":%zu,\"preloaded\":%u,\"secs\":%g,\"metric\":\"ops_per_s\","
			   "\"better\":\"higher\",\"systems\":[",
			first && k == 0 ? "" : ",", kind_name(c), c->nproc, c->get_pct, DICT_KLEN,
			c->vsize, c->nkeys, c->secs);
		for (int i = 0; i < dc->nsys; i++) {
			const struct dsys *ds = &dc->sys[i];
			const char *m = ds->p->models ? ds->p->models(c) : NULL;
			fprintf(f, "%s\n {\"name\":\"%s\",\"label\":", i ? "," : "", ds->p->name);
			json_str(f, ds->p->label);
			fprintf(f, ",\"models\":");
			json_str(f, m ? m : "");
			json_range(f, "ops_per_s", rates(ds, NULL));
			json_range(f, "shmq_over_this", rates(&dc->sys[0], ds));
			fprintf(f, ",\"samples\":[");
			for (int r = 0; r < dreps; r++) {
				fprintf(f, "%s{\"ok\":%s,\"ops\":%llu,\"errors\":%llu,\"wall_s\":%g,"
					   "\"ops_per_s\":%g,\"note\":",
					r ? "," : "", ds->rate[r] > 0 ? "true" : "false",
					(unsigned long long)ds->ops[r], (unsigned long long)ds->errors[r],
					ds->wall[r], ds->rate[r]);
				json_str(f, ds->note[r]);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "]}");
	}
}
