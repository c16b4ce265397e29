/* shmq-bench: the CSP channel cases (--cases csp; see csp.h).
 *
 * Same rules as the other families: every system runs in fresh processes on
 * a shared start barrier; each repetition runs every case once with every
 * system (rotating order), interleaved with the other cases of that
 * repetition; reported: median [min..max] over repetitions and shmq's ratio
 * to each peer computed per repetition (paired).
 */
#include "bench.h"
#include "csp.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CSP_MAX_CASES 16
#define CSP_MAX_SYS 8

#define CPEER(sym) extern const struct csp_peer sym;
CPEER(csp_shmq)
CPEER(csp_shmq_queue)
CPEER(csp_pipe)
CPEER(csp_gochan)

/* Per case, the shmq row comes first (the baseline), then this order. */
const struct csp_peer *const csp_peers[] = {
	&csp_shmq, &csp_gochan, &csp_pipe, &csp_shmq_queue, NULL,
};

/* ------------------------------------------------------------ the cases -- */

static bool kind_is_time(enum csp_kind k)
{
	return k == CSP_RTT || k == CSP_ALT_RTT;
}

/* JSON "case". */
static const char *case_name(const struct csp_case *c)
{
	switch (c->kind) {
	case CSP_RTT:
		return "rendezvous-round-trip";
	case CSP_TPUT:
		return c->buffer ? "buffered-throughput" : "rendezvous-throughput";
	case CSP_ALT_TPUT:
		return "alt-throughput";
	case CSP_ALT_RTT:
		return "alt-round-trip";
	default:
		return "?";
	}
}

struct csample {
	bool ok;
	double value;    /* round trip p50 (ns) or msgs/s */
	double p99;      /* round trips */
	double mean;     /* round trips: wall / rounds */
	double fairness; /* CSP_ALT_TPUT */
	uint64_t ops, errors;
	double wall;
	char note[120];
};

struct csys {
	const struct csp_peer *p;
	struct csample s[MAX_REPS];
	struct bench_hist hist; /* round trips, merged over repetitions */
};

struct ccase {
	struct csp_case c;
	int nsys;
	struct csys *sys;
};

static struct ccase ccases[CSP_MAX_CASES];
static int nccases, creps;

int csp_ncases(void)
{
	return nccases;
}

int csp_total_runs(void)
{
	int n = 0;
	for (int k = 0; k < nccases; k++)
		n += ccases[k].nsys * creps;
	return n;
}

static bool selected(const struct csp_peer *p, const char *systems)
{
	return !systems || p->flags & CP_SHMQ || name_listed(systems, p->name);
}

static void add_case(enum csp_kind kind, uint32_t buffer, size_t size, int nwriters, double secs,
		     const char *systems)
{
	if (nccases >= CSP_MAX_CASES)
		return;
	struct ccase *cc = &ccases[nccases++];
	cc->c = (struct csp_case){ .kind = kind, .buffer = buffer, .size = size,
				   .nchan = kind == CSP_ALT_TPUT || kind == CSP_ALT_RTT ? CSP_ALT_N : 0,
				   .nwriters = kind == CSP_ALT_TPUT ? nwriters : 0,
				   .nproc = kind == CSP_ALT_TPUT ? 1 + nwriters : 2,
				   .secs = secs };
	cc->sys = calloc(CSP_MAX_SYS, sizeof(*cc->sys));
	if (!cc->sys) {
		perror("calloc");
		exit(1);
	}
	for (int pass = 0; pass < 2; pass++) /* shmq first */
		for (int i = 0; csp_peers[i] && cc->nsys < CSP_MAX_SYS; i++) {
			const struct csp_peer *p = csp_peers[i];
			if (!!(p->flags & CP_SHMQ) != !pass)
				continue;
			if (!(p->kinds & CSP_KIND(kind)) || !selected(p, systems))
				continue;
			cc->sys[cc->nsys++].p = p;
		}
}

/* Quick: the round trips and throughputs at 8 B, rendezvous throughput at
 * 1 KiB too, alternation with 2 writers (each rotating over 4 of the 8
 * channels: two writer processes and the reader on 2 cores). Full adds
 * 1 KiB round trips and buffered throughput, and 8 writers, one per channel. */
void csp_build_cases(bool quick, double secs, int reps, const char *systems)
{
	creps = reps;
	add_case(CSP_RTT, 0, 8, 0, secs, systems);
	if (!quick)
		add_case(CSP_RTT, 0, 1024, 0, secs, systems);
	add_case(CSP_TPUT, 0, 8, 0, secs, systems);
	add_case(CSP_TPUT, 0, 1024, 0, secs, systems);
	add_case(CSP_TPUT, CSP_BUFFERED, 8, 0, secs, systems);
	if (!quick)
		add_case(CSP_TPUT, CSP_BUFFERED, 1024, 0, secs, systems);
	add_case(CSP_ALT_TPUT, 0, 8, 2, secs, systems);
	if (!quick)
		add_case(CSP_ALT_TPUT, 0, 8, CSP_ALT_N, secs, systems);
	add_case(CSP_ALT_RTT, 0, 8, 0, secs, systems);
}

/* ------------------------------------------------------------- running -- */

void csp_ready(struct csp_worker *w)
{
	bench_arrive(&w->sh->arrived, &w->sh->go);
}

#define CSP_WATCHDOG_NS (5 * 1000000000LL)

struct proc_arg {
	const struct csp_peer *p;
	void *ctx;
	struct csp_shared *sh;
	const struct csp_case *c;
};

static int proc_main(void *arg, int i)
{
	struct proc_arg *a = arg;
	struct csp_worker w = { .sh = a->sh, .c = a->c, .id = i };
	int rc = a->p->worker(a->ctx, &w);
	a->sh->res[i].rc = rc;
	return rc;
}

static int run_procs(const struct csp_peer *p, const struct csp_case *c, struct csp_run *out)
{
	struct csp_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(out->note, sizeof(out->note), "mmap: %s", strerror(errno));
		return -errno;
	}
	void *ctx = NULL;
	int rc = p->setup(c, &ctx);
	if (rc < 0) {
		snprintf(out->note, sizeof(out->note), "setup: %s", strerror(-rc));
		munmap(sh, sizeof(*sh));
		return rc;
	}
	int n = c->nproc;
	struct proc_arg arg = { p, ctx, sh, c };
	struct bench_window win = { &sh->arrived, &sh->go, &sh->stop, &sh->t0, (uint32_t)n,
				    10 * 1000000000LL, c->secs };
	bool failed = bench_fork_window(n, proc_main, &arg, &win, CSP_WATCHDOG_NS, out->note,
					sizeof(out->note));
	int64_t t0 = sh->t0;
	if (p->teardown)
		p->teardown(ctx);

	struct csp_wres *r = sh->res;
	uint64_t errors = 0;
	for (int i = 0; i < n; i++) {
		errors += r[i].errors;
		if (!out->note[0] && r[i].note[0])
			snprintf(out->note, sizeof(out->note), "%s", r[i].note);
	}
	switch (c->kind) {
	case CSP_RTT:
	case CSP_ALT_RTT:
		out->ops = r[0].ops;
		out->wall_ns = r[0].t_end - r[0].t_start;
		hist_merge(&out->hist, &sh->hist);
		errors += r[1].ops != r[0].ops; /* every round echoed once */
		break;
	case CSP_TPUT:
		out->ops = r[1].ops;
		out->wall_ns = r[1].t_end - t0;
		errors += r[0].ops != r[1].ops; /* every message taken once */
		break;
	case CSP_ALT_TPUT: {
		uint64_t sent = 0, lo = UINT64_MAX, hi = 0;
		for (int i = 1; i < n; i++)
			sent += r[i].ops;
		for (int k = 0; k < c->nchan; k++) {
			lo = sh->per_chan[k] < lo ? sh->per_chan[k] : lo;
			hi = sh->per_chan[k] > hi ? sh->per_chan[k] : hi;
		}
		out->ops = r[0].ops;
		out->wall_ns = r[0].t_end - t0;
		out->fairness = hi ? (double)lo / (double)hi : 0;
		errors += sent != r[0].ops;
		break;
	}
	default:
		break;
	}
	out->errors = errors;
	munmap(sh, sizeof(*sh));
	return failed ? -EIO : 0;
}

static void run_sys(struct ccase *cc, struct csys *cs, int r)
{
	struct csample *s = &cs->s[r];
	memset(s, 0, sizeof(*s));
	struct csp_run *res = calloc(1, sizeof(*res));
	if (!res) {
		snprintf(s->note, sizeof(s->note), "out of memory");
		return;
	}
	const struct csp_case *c = &cc->c;
	int rc = run_procs(cs->p, c, res);
	snprintf(s->note, sizeof(s->note), "%s", res->note);
	s->ops = res->ops;
	s->errors = res->errors;
	s->wall = (double)res->wall_ns / 1e9;
	if (rc == 0 && res->ops > 0 && res->wall_ns > 0) {
		s->ok = true;
		if (kind_is_time(c->kind)) {
			s->value = hist_pct(&res->hist, 0.5);
			s->p99 = hist_pct(&res->hist, 0.99);
			s->mean = (double)res->wall_ns / (double)res->ops;
			hist_merge(&cs->hist, &res->hist);
		} else {
			s->value = (double)res->ops / s->wall;
			s->fairness = res->fairness;
		}
	} else if (!s->note[0]) {
		snprintf(s->note, sizeof(s->note), "failed (%d)", rc);
	}
	if (s->errors && s->ok)
		snprintf(s->note, sizeof(s->note), "%llu integrity errors",
			 (unsigned long long)s->errors);
	free(res);
}

void csp_run_rep(int r, bool tty, bool verbose, int *done, int total)
{
	for (int k = 0; k < nccases; k++) {
		struct ccase *cc = &ccases[k];
		for (int j = 0; j < cc->nsys; j++) {
			struct csys *cs = &cc->sys[(j + r + k) % cc->nsys];
			if (tty) {
				fprintf(stderr, "\r[rep %d/%d] %3d%% %-16s %-22s %zu   ", r + 1, creps,
					100 * *done / (total ? total : 1), cs->p->name,
					case_name(&cc->c), cc->c.size);
				fflush(stderr);
			}
			int64_t t = bench_now();
			run_sys(cc, cs, r);
			if (verbose)
				fprintf(stderr, "csp %s %zu B %s: ok=%d %g (%.2f s) %s\n",
					case_name(&cc->c), cc->c.size, cs->p->name, cs->s[r].ok,
					cs->s[r].value, (double)(bench_now() - t) / 1e9, cs->s[r].note);
			(*done)++;
		}
	}
}

/* ------------------------------------------------------------- numbers -- */

enum fig { FIG_VALUE, FIG_P99, FIG_MEAN, FIG_FAIR };

static double fig(const struct csample *s, enum fig f)
{
	return f == FIG_P99 ? s->p99 : f == FIG_MEAN ? s->mean : f == FIG_FAIR ? s->fairness
										: s->value;
}

static struct stat3 sys_stat(const struct csys *cs, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < creps; r++)
		if (cs->s[r].ok)
			v[n++] = fig(&cs->s[r], f);
	return stats(v, n);
}

/* Per repetition a / b of a figure, where both ran. */
static struct stat3 paired(const struct csys *a, const struct csys *b, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; a && b && r < creps; r++)
		if (a->s[r].ok && b->s[r].ok && fig(&b->s[r], f) > 0)
			v[n++] = fig(&a->s[r], f) / fig(&b->s[r], f);
	return stats(v, n);
}

static struct csys *base_of(struct ccase *cc)
{
	for (int i = 0; cc && i < cc->nsys; i++)
		if (cc->sys[i].p->flags & CP_SHMQ)
			return &cc->sys[i];
	return NULL;
}

static struct csys *find_sys(struct ccase *cc, const char *name)
{
	for (int i = 0; cc && i < cc->nsys; i++)
		if (strcmp(cc->sys[i].p->name, name) == 0)
			return &cc->sys[i];
	return NULL;
}

static struct ccase *find_case(enum csp_kind kind, uint32_t buffer, size_t size, int nwriters)
{
	for (int k = 0; k < nccases; k++) {
		struct csp_case *c = &ccases[k].c;
		if (c->kind == kind && c->buffer == buffer && c->size == size &&
		    c->nwriters == nwriters)
			return &ccases[k];
	}
	return NULL;
}

static const char *first_note(const struct csys *cs)
{
	for (int r = 0; r < creps; r++)
		if (cs->s[r].note[0])
			return cs->s[r].note;
	return NULL;
}

/* -------------------------------------------------------------- report -- */

static const char *size_str(size_t s, char *buf, size_t len)
{
	if (s >= 1024 && s % 1024 == 0)
		snprintf(buf, len, "%zu KiB", s / 1024);
	else
		snprintf(buf, len, "%zu B", s);
	return buf;
}

static void title(const struct csp_case *c, char *buf, size_t len)
{
	char sz[32];
	size_str(c->size, sz, sizeof(sz));
	switch (c->kind) {
	case CSP_RTT:
		snprintf(buf, len, "CSP: rendezvous round trip, %s each way (A writes X, B reads X "
				   "and writes Y, A reads Y)", sz);
		break;
	case CSP_TPUT:
		if (c->buffer)
			snprintf(buf, len, "CSP: buffered channel (buffer %u) throughput, %s messages, "
					   "1 writer x 1 reader", c->buffer, sz);
		else
			snprintf(buf, len, "CSP: rendezvous throughput, %s messages, 1 writer x 1 "
					   "reader", sz);
		break;
	case CSP_ALT_TPUT:
		if (c->nwriters == c->nchan)
			snprintf(buf, len, "CSP: alternation (fair) over %d rendezvous channels, %d "
					   "writers (one per channel), 1 reader, %s messages",
				 c->nchan, c->nwriters, sz);
		else
			snprintf(buf, len, "CSP: alternation (fair) over %d rendezvous channels, %d "
					   "writers each rotating over %d of them, 1 reader, %s messages",
				 c->nchan, c->nwriters, c->nchan / c->nwriters, sz);
		break;
	case CSP_ALT_RTT:
		snprintf(buf, len, "CSP: alternation round trip, %s each way (A alternates over %d "
				   "input channels, one used; B writes on it, reads A's reply)",
			 sz, c->nchan);
		break;
	default:
		snprintf(buf, len, "?");
	}
}

/* Did an earlier case's table already say what p models, in these words? */
static bool models_said(const struct ccase *cc, const struct csp_peer *p, const char *m)
{
	for (const struct ccase *e = ccases; e < cc; e++)
		for (int i = 0; i < e->nsys; i++)
			if (e->sys[i].p == p && p->models(&e->c) && strcmp(p->models(&e->c), m) == 0)
				return true;
	return false;
}

static void print_case(struct ccase *cc)
{
	const struct csp_case *c = &cc->c;
	bool is_time = kind_is_time(c->kind);
	char t[240];
	title(c, t, sizeof(t));
	printf("\n### %s\n", t);
	struct csys *base = base_of(cc);
	if (is_time)
		printf("%-26s %-30s %-22s %-10s %s\n", "system", "round trip p50 median [min..max]",
		       "shmq/this", "p99 all", "mean (median of reps)");
	else if (c->kind == CSP_ALT_TPUT)
		printf("%-26s %-30s %-22s %s\n", "system", "msgs/s median [min..max]", "shmq/this",
		       "fairness min/max channel [min..max]");
	else
		printf("%-26s %-30s %-22s %s\n", "system", "msgs/s median [min..max]", "shmq/this",
		       "MB/s");
	for (int i = 0; i < cc->nsys; i++) {
		struct csys *cs = &cc->sys[i];
		struct stat3 st = sys_stat(cs, FIG_VALUE);
		const char *note = first_note(cs);
		if (!st.n) {
			printf("%-26s failed%s%s\n", cs->p->label, note ? ": " : "", note ? note : "");
			continue;
		}
		char range[128], ratio[64];
		stat_range_str(&st, is_time, range, sizeof(range));
		struct stat3 ra = paired(base, cs, FIG_VALUE);
		stat_ratio_str(&ra, ratio, sizeof(ratio));
		if (is_time) {
			char a[24], b[24];
			printf("%-26s %-30s %-22s %-10s %s", cs->p->label, range, ratio,
			       human_ns(hist_pct(&cs->hist, 0.99), a, sizeof(a)),
			       human_ns(sys_stat(cs, FIG_MEAN).med, b, sizeof(b)));
		} else if (c->kind == CSP_ALT_TPUT) {
			struct stat3 f = sys_stat(cs, FIG_FAIR);
			printf("%-26s %-30s %-22s %.2f [%.2f..%.2f]", cs->p->label, range, ratio, f.med,
			       f.min, f.max);
		} else {
			double mbs = st.med * (double)c->size / 1e6;
			printf("%-26s %-30s %-22s %.*f", cs->p->label, range, ratio,
			       mbs >= 100 ? 0 : mbs >= 10 ? 1 : 2, mbs);
		}
		if (st.n < creps)
			printf("  (%d/%d reps ok%s%s)", st.n, creps, note ? ": " : "", note ? note : "");
		else if (note)
			printf("  (%s)", note);
		printf("\n");
	}
	for (int i = 0; i < cc->nsys; i++) {
		const char *m = cc->sys[i].p->models ? cc->sys[i].p->models(c) : NULL;
		if (m && !models_said(cc, cc->sys[i].p, m))
			printf("- %s: %s\n", cc->sys[i].p->label, m);
	}
	if (is_time)
		printf("(every round trip timed; the figure: each repetition's p50; p99 all: every "
		       "round trip of every repetition; shmq/this below 1 favours shmq)\n");
	else
		printf("(shmq/this: per-repetition ratios, then median [min..max]; rates: above 1 "
		       "favours shmq)\n");
}

/* Where a peer's median figure beats shmq's: said plainly under the tables. */
static void print_peer_wins(void)
{
	int n = 0;
	printf("\n### CSP: where a peer is ahead of shmq (paired median ratio)\n");
	for (int k = 0; k < nccases; k++) {
		struct ccase *cc = &ccases[k];
		struct csys *base = base_of(cc);
		bool is_time = kind_is_time(cc->c.kind);
		char t[240];
		title(&cc->c, t, sizeof(t));
		for (int i = 0; i < cc->nsys; i++) {
			struct csys *cs = &cc->sys[i];
			if (cs == base)
				continue;
			struct stat3 ra = paired(base, cs, FIG_VALUE);
			if (!ra.n || (is_time ? ra.med <= 1 : ra.med >= 1))
				continue;
			printf("- %s: %s%s %s (shmq/this %.2f [%.2f..%.2f])\n", t + 5, cs->p->label,
			       cs->p->flags & CP_REF ? " (reference)" : "",
			       is_time ? "is faster" : "has the higher rate", ra.med, ra.min, ra.max);
			n++;
		}
	}
	if (!n)
		printf("- none in this run\n");
}

void csp_print(void)
{
	if (!nccases)
		return;
	printf("\n## CSP channels (%d repetitions x %.2f s per run, interleaved: every system once "
	       "per case per repetition, rotating order)\n", creps, ccases[0].c.secs);
	for (int k = 0; k < nccases; k++)
		print_case(&ccases[k]);
	print_peer_wins();
}

/* ------------------------------------------------------------- targets -- */

/* shmq's figure in case a over its figure in case b, paired by repetition
 * index (different cases: weaker evidence than a ratio within one case). */
static void target_cross(const char *text, struct ccase *a, struct ccase *b, double want,
			 bool invert)
{
	struct target *t = new_target("%s", text);
	struct csys *sa = base_of(a), *sb = base_of(b);
	struct stat3 s = invert ? paired(sb, sa, FIG_VALUE) : paired(sa, sb, FIG_VALUE);
	if (!s.n)
		return;
	t->have = true;
	t->met = s.med <= want;
	snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f] (paired by rep only)", s.med, s.min,
		 s.max);
}

void csp_targets(void)
{
	if (!nccases)
		return;
	{
		struct target *t = new_target("csp rendezvous round trip <= 2x queue ping-pong");
		struct ccase *cc = find_case(CSP_RTT, 0, 8, 0);
		struct stat3 s = paired(base_of(cc), find_sys(cc, "csp-queue"), FIG_VALUE);
		if (s.n) {
			t->have = true;
			t->met = s.med <= 2;
			snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f] (p50s)", s.med, s.min,
				 s.max);
		}
	}
	target_cross("csp alt over 8 round trip <= 3x rendezvous",
		     find_case(CSP_ALT_RTT, 0, 8, 0), find_case(CSP_RTT, 0, 8, 0), 3, false);
	/* Rates: the cost of a message is 1 / rate, so rendezvous rate / alt rate. */
	target_cross("csp alt over 8 cost per msg <= 3x rendezvous", find_case(CSP_ALT_TPUT, 0, 8, 2),
		     find_case(CSP_TPUT, 0, 8, 0), 3, true);
}

/* ---------------------------------------------------------------- json -- */

static void json_stat(FILE *f, const char *key, struct stat3 s)
{
	fprintf(f, "\"%s\":{\"median\":%g,\"min\":%g,\"max\":%g}", key, s.med, s.min, s.max);
}

void csp_json(FILE *f, bool first)
{
	for (int k = 0; k < nccases; k++) {
		struct ccase *cc = &ccases[k];
		const struct csp_case *c = &cc->c;
		bool is_time = kind_is_time(c->kind);
		struct csys *base = base_of(cc);
		fprintf(f, "%s\n{\"kind\":\"csp\",\"case\":\"%s\",\"size\":%zu,\"buffer\":%u,"
			   "\"channels\":%d,\"writers\":%d,\"processes\":%d,\"secs\":%g,"
			   "\"metric\":\"%s\",\"better\":\"%s\",\"systems\":[",
			first && k == 0 ? "" : ",", case_name(c), c->size, c->buffer, csp_nchans(c),
			c->kind == CSP_ALT_TPUT ? c->nwriters : 1, c->nproc, c->secs,
			is_time ? "round_trip_p50_ns" : "msgs_per_s", is_time ? "lower" : "higher");
		for (int i = 0; i < cc->nsys; i++) {
			struct csys *cs = &cc->sys[i];
			struct stat3 st = sys_stat(cs, FIG_VALUE);
			fprintf(f, "%s\n {\"name\":", i ? "," : "");
			json_str(f, cs->p->name);
			fprintf(f, ",\"label\":");
			json_str(f, cs->p->label);
			const char *m = cs->p->models ? cs->p->models(c) : NULL;
			if (m) {
				fprintf(f, ",\"models\":");
				json_str(f, m);
			}
			fprintf(f, ",\"reference\":%s,\"median\":%g,\"min\":%g,\"max\":%g,",
				cs->p->flags & CP_REF ? "true" : "false", st.med, st.min, st.max);
			json_stat(f, "shmq_over_this", paired(base, cs, FIG_VALUE));
			fputc(',', f);
			if (is_time) {
				json_stat(f, "mean_ns", sys_stat(cs, FIG_MEAN));
				fprintf(f, ",\"merged\":{\"n\":%llu,\"p50\":%g,\"p99\":%g,\"p999\":%g,"
					   "\"max\":%llu},",
					(unsigned long long)cs->hist.n, hist_pct(&cs->hist, 0.5),
					hist_pct(&cs->hist, 0.99), hist_pct(&cs->hist, 0.999),
					(unsigned long long)cs->hist.max);
			} else if (c->kind == CSP_ALT_TPUT) {
				json_stat(f, "fairness", sys_stat(cs, FIG_FAIR));
				fputc(',', f);
			}
			fprintf(f, "\"samples\":[");
			for (int r = 0; r < creps; r++) {
				struct csample *s = &cs->s[r];
				fprintf(f, "%s{\"ok\":%s,\"ops\":%llu,\"errors\":%llu,\"wall_s\":%g,"
					   "\"value\":%g,\"p99_ns\":%g,\"mean_ns\":%g,\"fairness\":%g,"
					   "\"note\":",
					r ? "," : "", s->ok ? "true" : "false",
					(unsigned long long)s->ops, (unsigned long long)s->errors, s->wall,
					s->value, s->p99, s->mean, s->fairness);
				json_str(f, s->note);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "]}");
	}
}
