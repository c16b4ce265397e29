/* shmq-bench: the synchronisation cases (--cases sync; see sync.h).
 *
 * Same rules as the message cases: every system runs in fresh processes on a
 * shared start barrier; each repetition runs every case once with every
 * system (rotating order), interleaved with the message cases of that
 * repetition; reported: median [min..max] over repetitions and shmq's ratio
 * to each peer computed per repetition (paired).
 */
#include "bench.h"
#include "sync.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define SYNC_MAX_CASES 16
#define SYNC_MAX_SYS 16

const char *bench_mp_sync_script;

#define SPEER(sym) extern const struct sync_peer sym;
SPEER(sync_shmq_lock)
SPEER(sync_shmq_sem)
SPEER(sync_shmq_barrier)
SPEER(sync_shmq_event)
SPEER(sync_pthread_mutex)
SPEER(sync_pthread_mutex_plain)
SPEER(sync_posix_sem)
SPEER(sync_pthread_barrier)
SPEER(sync_pthread_cond)
SPEER(sync_mp_lock)
SPEER(sync_mp_semaphore)
SPEER(sync_mp_barrier)
SPEER(sync_mp_event)

/* Per case, the shmq row comes first (the baseline), then this order. */
const struct sync_peer *const sync_peers[] = {
	&sync_shmq_lock,     &sync_shmq_sem,	   &sync_shmq_barrier,	   &sync_shmq_event,
	&sync_pthread_mutex, &sync_pthread_cond, &sync_pthread_barrier, &sync_posix_sem,
	&sync_mp_lock,	     &sync_mp_semaphore, &sync_mp_barrier,	   &sync_mp_event,
	&sync_pthread_mutex_plain,
	NULL,
};

/* ------------------------------------------------------------ the cases -- */

static const struct kind_info {
	const char *name;   /* JSON "case" */
	const char *metric; /* JSON "metric" */
	const char *head;   /* column head */
	bool is_time;       /* the figure is a time: lower is better */
} kinfo[SYNC_NKINDS] = {
	[SYNC_LOCK_1] = { "lock-uncontended", "ns_per_pair", "ns/pair", true },
	[SYNC_SEM_1] = { "semaphore-uncontended", "ns_per_pair", "ns/pair", true },
	[SYNC_LOCK_N] = { "lock-contended", "pairs_per_s", "pairs/s", false },
	[SYNC_SEM_PP] = { "semaphore-pingpong", "round_trips_per_s", "round trips/s", false },
	[SYNC_BARRIER] = { "barrier", "cycles_per_s", "cycles/s", false },
	[SYNC_EVENT] = { "event-wake", "wake_p50_ns", "wake p50", true },
};

struct ssample {
	bool ok;
	double value;    /* the case's figure (kinfo) */
	double p50, p99; /* SYNC_LOCK_N hand-offs, SYNC_EVENT wake-ups */
	double share;    /* SYNC_LOCK_N: hand-offs / acquisitions */
	uint64_t ops, handoffs, errors;
	double wall;
	char note[120];
};

struct ssys {
	const struct sync_peer *p;
	struct ssample s[MAX_REPS];
	struct bench_hist hist; /* merged over repetitions */
};

struct scase {
	struct sync_case c;
	int nsys;
	struct ssys *sys;
	int nskip;
	char *skip[SYNC_MAX_SYS];
};

static struct scase scases[SYNC_MAX_CASES];
static int nscases, sreps;

int sync_ncases(void)
{
	return nscases;
}

int sync_total_runs(void)
{
	int n = 0;
	for (int k = 0; k < nscases; k++)
		n += scases[k].nsys * sreps;
	return n;
}

static bool selected(const struct sync_peer *p, const char *systems)
{
	return !systems || p->flags & SP_SHMQ || name_listed(systems, p->name);
}

static void add_case(enum sync_kind kind, int nproc, double secs, const char *systems)
{
	if (nscases >= SYNC_MAX_CASES)
		return;
	struct scase *sc = &scases[nscases++];
	sc->c = (struct sync_case){ .kind = kind, .nproc = nproc, .secs = secs,
				    .gap_ns = kind == SYNC_EVENT ? SYNC_EVENT_GAP_NS : 0 };
	sc->sys = calloc(SYNC_MAX_SYS, sizeof(*sc->sys));
	if (!sc->sys) {
		perror("calloc");
		exit(1);
	}
	const struct sync_peer *order[SYNC_MAX_SYS + 1];
	int n = 0;
	for (int pass = 0; pass < 2; pass++) /* shmq first */
		for (int i = 0; sync_peers[i] && n < SYNC_MAX_SYS; i++)
			if (!!(sync_peers[i]->flags & SP_SHMQ) == !pass)
				order[n++] = sync_peers[i];
	for (int i = 0; i < n; i++) {
		const struct sync_peer *p = order[i];
		if (!(p->kinds & SYNC_KIND(kind)) || !selected(p, systems))
			continue;
		sc->sys[sc->nsys++].p = p;
	}
}

void sync_build_cases(bool quick, double secs, int reps, const char *systems)
{
	sreps = reps;
	add_case(SYNC_LOCK_1, 1, secs, systems);
	add_case(SYNC_SEM_1, 1, secs, systems);
	add_case(SYNC_LOCK_N, 2, secs, systems);
	add_case(SYNC_LOCK_N, 4, secs, systems);
	if (!quick)
		add_case(SYNC_LOCK_N, 8, secs, systems);
	add_case(SYNC_SEM_PP, 2, secs, systems);
	if (!quick)
		add_case(SYNC_BARRIER, 2, secs, systems);
	add_case(SYNC_BARRIER, 4, secs, systems);
	if (!quick)
		add_case(SYNC_BARRIER, 8, secs, systems);
	add_case(SYNC_EVENT, 2, secs, systems);
}

/* ------------------------------------------------------------- running -- */

void sync_ready(struct sync_worker *w)
{
	bench_arrive(&w->sh->arrived, &w->sh->go);
}

#define SYNC_WATCHDOG_NS (5 * 1000000000LL)

struct proc_arg {
	const struct sync_peer *p;
	void *ctx;
	struct sync_shared *sh;
	const struct sync_case *c;
};

static int proc_main(void *arg, int i)
{
	struct proc_arg *a = arg;
	struct sync_worker w = { .sh = a->sh, .c = a->c, .id = i };
	int rc = a->p->worker(a->ctx, &w);
	a->sh->res[i].rc = rc;
	return rc;
}

/* A C system: c->nproc fresh worker processes. */
static int run_procs(const struct sync_peer *p, const struct sync_case *c, struct sync_run *out)
{
	struct sync_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(out->note, sizeof(out->note), "mmap: %s", strerror(errno));
		return -errno;
	}
	atomic_store(&sh->owner, -1);
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
	bool failed = bench_fork_window(n, proc_main, &arg, &win, SYNC_WATCHDOG_NS, out->note,
					sizeof(out->note));
	int64_t t0 = sh->t0;
	if (p->teardown)
		p->teardown(ctx);

	struct sync_wres *r = sh->res;
	uint64_t errors = 0;
	int64_t t_end = 0;
	for (int i = 0; i < n; i++) {
		errors += r[i].errors;
		if (r[i].t_end > t_end)
			t_end = r[i].t_end;
		if (!out->note[0] && r[i].note[0])
			snprintf(out->note, sizeof(out->note), "%s", r[i].note);
	}
	switch (c->kind) {
	case SYNC_LOCK_1:
	case SYNC_SEM_1:
	case SYNC_SEM_PP:
		out->ops = r[0].ops;
		out->wall_ns = r[0].t_end - r[0].t_start;
		if (c->kind == SYNC_SEM_PP && r[1].ops != r[0].ops) /* every round answered */
			errors++;
		break;
	case SYNC_LOCK_N: {
		uint64_t total = 0;
		for (int i = 0; i < n; i++) {
			total += r[i].ops;
			out->handoffs += r[i].handoffs;
			hist_merge(&out->hist, &sh->hist[i]);
		}
		uint64_t counted = atomic_load(&sh->counter);
		errors += counted > total ? counted - total : total - counted; /* lost updates */
		out->ops = total;
		out->wall_ns = t_end - t0;
		break;
	}
	case SYNC_BARRIER: {
		uint64_t marks = 0;
		for (int i = 0; i < n; i++) {
			marks += r[i].marks;
			errors += r[i].ops != r[0].ops; /* everyone ran the same cycles */
		}
		errors += marks != r[0].ops; /* one marked party per cycle */
		out->ops = r[0].ops;
		out->wall_ns = t_end - t0;
		break;
	}
	case SYNC_EVENT:
		out->ops = r[1].ops;
		out->wall_ns = t_end - t0;
		hist_merge(&out->hist, &sh->hist[1]);
		if (r[0].ops != r[1].ops) /* every set woke the waiter once */
			errors++;
		break;
	default:
		break;
	}
	out->errors = errors;
	munmap(sh, sizeof(*sh));
	return failed ? -EIO : 0;
}

static void run_sys(struct scase *sc, struct ssys *ss, int r)
{
	struct ssample *s = &ss->s[r];
	memset(s, 0, sizeof(*s));
	struct sync_run *res = calloc(1, sizeof(*res));
	if (!res) {
		snprintf(s->note, sizeof(s->note), "out of memory");
		return;
	}
	const struct sync_case *c = &sc->c;
	int rc = ss->p->run ? ss->p->run(c, res) : run_procs(ss->p, c, res);
	snprintf(s->note, sizeof(s->note), "%s", res->note);
	s->ops = res->ops;
	s->handoffs = res->handoffs;
	s->errors = res->errors;
	s->wall = (double)res->wall_ns / 1e9;
	if (rc == 0 && res->ops > 0 && res->wall_ns > 0) {
		s->ok = true;
		switch (c->kind) {
		case SYNC_LOCK_1:
		case SYNC_SEM_1:
			s->value = (double)res->wall_ns / (double)res->ops;
			break;
		case SYNC_EVENT:
			s->p50 = hist_pct(&res->hist, 0.5);
			s->p99 = hist_pct(&res->hist, 0.99);
			s->value = s->p50;
			hist_merge(&ss->hist, &res->hist);
			break;
		case SYNC_LOCK_N:
			s->p50 = hist_pct(&res->hist, 0.5);
			s->p99 = hist_pct(&res->hist, 0.99);
			s->share = (double)res->handoffs / (double)res->ops;
			hist_merge(&ss->hist, &res->hist);
			/* fall through */
		default:
			s->value = (double)res->ops / s->wall;
			break;
		}
	} else if (!s->note[0]) {
		snprintf(s->note, sizeof(s->note), "failed (%d)", rc);
	}
	if (s->errors && s->ok)
		snprintf(s->note, sizeof(s->note), "%llu integrity errors",
			 (unsigned long long)s->errors);
	free(res);
}

void sync_run_rep(int r, bool tty, bool verbose, int *done, int total)
{
	for (int k = 0; k < nscases; k++) {
		struct scase *sc = &scases[k];
		for (int j = 0; j < sc->nsys; j++) {
			struct ssys *ss = &sc->sys[(j + r + k) % sc->nsys];
			if (tty) {
				fprintf(stderr, "\r[rep %d/%d] %3d%% %-16s %-22s %dp   ", r + 1, sreps,
					100 * *done / (total ? total : 1), ss->p->name,
					kinfo[sc->c.kind].name, sc->c.nproc);
				fflush(stderr);
			}
			int64_t t = bench_now();
			run_sys(sc, ss, r);
			if (verbose)
				fprintf(stderr, "sync %s %dp %s: ok=%d %g (%.2f s) %s\n",
					kinfo[sc->c.kind].name, sc->c.nproc, ss->p->name, ss->s[r].ok,
					ss->s[r].value, (double)(bench_now() - t) / 1e9, ss->s[r].note);
			(*done)++;
		}
	}
}

/* ------------------------------------------------------------- numbers -- */

enum fig { FIG_VALUE, FIG_P99, FIG_SHARE };

static double fig(const struct ssample *s, enum fig f)
{
	return f == FIG_P99 ? s->p99 : f == FIG_SHARE ? s->share : s->value;
}

static struct stat3 sys_stat(const struct ssys *ss, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; r < sreps; r++)
		if (ss->s[r].ok)
			v[n++] = fig(&ss->s[r], f);
	return stats(v, n);
}

/* Per repetition a / b of a figure, where both ran. */
static struct stat3 paired(const struct ssys *a, const struct ssys *b, enum fig f)
{
	double v[MAX_REPS];
	int n = 0;
	for (int r = 0; a && b && r < sreps; r++)
		if (a->s[r].ok && b->s[r].ok && fig(&b->s[r], f) > 0)
			v[n++] = fig(&a->s[r], f) / fig(&b->s[r], f);
	return stats(v, n);
}

static struct ssys *base_of(struct scase *sc)
{
	for (int i = 0; i < sc->nsys; i++)
		if (sc->sys[i].p->flags & SP_SHMQ)
			return &sc->sys[i];
	return NULL;
}

static struct ssys *find_sys(struct scase *sc, const char *name)
{
	for (int i = 0; sc && i < sc->nsys; i++)
		if (strcmp(sc->sys[i].p->name, name) == 0)
			return &sc->sys[i];
	return NULL;
}

static struct scase *find_case(enum sync_kind kind, int nproc)
{
	for (int k = 0; k < nscases; k++)
		if (scases[k].c.kind == kind && scases[k].c.nproc == nproc)
			return &scases[k];
	return NULL;
}

static const char *first_note(const struct ssys *ss)
{
	for (int r = 0; r < sreps; r++)
		if (ss->s[r].note[0])
			return ss->s[r].note;
	return NULL;
}

/* -------------------------------------------------------------- report -- */

static void title(const struct sync_case *c, char *buf, size_t len)
{
	switch (c->kind) {
	case SYNC_LOCK_1:
		snprintf(buf, len, "Sync: Lock uncontended, acquire + release in one process");
		break;
	case SYNC_SEM_1:
		snprintf(buf, len, "Sync: Semaphore(1) uncontended, acquire + release in one process");
		break;
	case SYNC_LOCK_N:
		snprintf(buf, len, "Sync: Lock, %d processes contending: acquire, counter++, release, "
				   "flat out", c->nproc);
		break;
	case SYNC_SEM_PP:
		snprintf(buf, len, "Sync: Semaphore ping-pong, 2 processes, two semaphores at 0");
		break;
	case SYNC_BARRIER:
		snprintf(buf, len, "Sync: Barrier, %d processes waiting in a loop", c->nproc);
		break;
	case SYNC_EVENT:
		snprintf(buf, len, "Sync: Event set -> wake latency, 1 waiter (parked: set %.0f us "
				   "after it cleared), 1 setter", (double)c->gap_ns / 1e3);
		break;
	default:
		snprintf(buf, len, "?");
	}
}

static const char *fmt_fig(bool is_time, double v, char *buf, size_t len)
{
	if (!is_time)
		return human(v, buf, len);
	if (v < 1000) {
		snprintf(buf, len, v < 10 ? "%.2f" : v < 100 ? "%.1f" : "%.0f", v);
		return buf;
	}
	return human_ns(v, buf, len);
}

void stat_range_str(const struct stat3 *st, bool is_time, char *buf, size_t len)
{
	char a[32], b[32], d[32];
	snprintf(buf, len, "%s [%s..%s]", fmt_fig(is_time, st->med, a, sizeof(a)),
		 fmt_fig(is_time, st->min, b, sizeof(b)), fmt_fig(is_time, st->max, d, sizeof(d)));
}

static void range_ns(const struct stat3 *st, char *buf, size_t len)
{
	char a[32], b[32], d[32];
	snprintf(buf, len, "%s [%s..%s]", human_ns(st->med, a, sizeof(a)),
		 human_ns(st->min, b, sizeof(b)), human_ns(st->max, d, sizeof(d)));
}

void stat_ratio_str(const struct stat3 *st, char *buf, size_t len)
{
#define R(v) (v) >= 100 ? 0 : 2, (v)
	if (st->n)
		snprintf(buf, len, "%.*f [%.*f..%.*f]", R(st->med), R(st->min), R(st->max));
	else
		snprintf(buf, len, "-");
#undef R
}

static void print_case(struct scase *sc)
{
	const struct sync_case *c = &sc->c;
	const struct kind_info *ki = &kinfo[c->kind];
	char t[200];
	title(c, t, sizeof(t));
	printf("\n### %s\n", t);
	struct ssys *base = base_of(sc);
	char head[64];
	snprintf(head, sizeof(head), "%s median [min..max]", ki->head);
	switch (c->kind) {
	case SYNC_LOCK_N:
		printf("%-24s %-30s %-22s %-32s %-22s %s\n", "system", head, "shmq/this",
		       "hand-off p99 median [min..max]", "shmq/this (p99)", "hand-offs (all reps)");
		break;
	case SYNC_EVENT:
		printf("%-24s %-30s %-22s %-10s %-10s %s\n", "system", head, "shmq/this", "p50 all",
		       "p99 all", "max");
		break;
	default:
		printf("%-24s %-30s %s\n", "system", head, "shmq/this median [min..max]");
	}
	for (int i = 0; i < sc->nsys; i++) {
		struct ssys *ss = &sc->sys[i];
		struct stat3 st = sys_stat(ss, FIG_VALUE);
		const char *note = first_note(ss);
		if (!st.n) {
			printf("%-24s failed%s%s\n", ss->p->label, note ? ": " : "", note ? note : "");
			continue;
		}
		char range[128], ratio[64];
		stat_range_str(&st, ki->is_time, range, sizeof(range));
		struct stat3 ra = paired(base, ss, FIG_VALUE);
		stat_ratio_str(&ra, ratio, sizeof(ratio));
		switch (c->kind) {
		case SYNC_LOCK_N: {
			struct stat3 p99 = sys_stat(ss, FIG_P99), sh = sys_stat(ss, FIG_SHARE);
			struct stat3 rp = paired(base, ss, FIG_P99);
			char prange[128], pratio[64];
			range_ns(&p99, prange, sizeof(prange));
			stat_ratio_str(&rp, pratio, sizeof(pratio));
			char cnt[24];
			double pc = sh.med * 100, nh = (double)ss->hist.n;
			if (nh < 1000)
				snprintf(cnt, sizeof(cnt), "%.0f", nh);
			else
				human(nh, cnt, sizeof(cnt));
			printf("%-24s %-30s %-22s %-32s %-22s %.*f%% (%s)", ss->p->label, range, ratio,
			       prange, pratio, pc >= 10 ? 0 : pc >= 1 ? 1 : pc >= 0.1 ? 2 : 3, pc, cnt);
			break;
		}
		case SYNC_EVENT: {
			char a[24], b[24], d[24];
			printf("%-24s %-30s %-22s %-10s %-10s %s", ss->p->label, range, ratio,
			       human_ns(hist_pct(&ss->hist, 0.5), a, sizeof(a)),
			       human_ns(hist_pct(&ss->hist, 0.99), b, sizeof(b)),
			       human_ns((double)ss->hist.max, d, sizeof(d)));
			break;
		}
		default:
			printf("%-24s %-30s %s", ss->p->label, range, ratio);
		}
		if (st.n < sreps)
			printf("  (%d/%d reps ok%s%s)", st.n, sreps, note ? ": " : "", note ? note : "");
		else if (note)
			printf("  (%s)", note);
		printf("\n");
	}
	for (int i = 0; i < sc->nskip; i++)
		printf("skipped: %s\n", sc->skip[i]);
	for (int i = 0; i < sc->nsys; i++) {
		const char *m = sc->sys[i].p->models ? sc->sys[i].p->models(c) : NULL;
		if (m)
			printf("- %s: %s\n", sc->sys[i].p->label, m);
	}
	switch (c->kind) {
	case SYNC_LOCK_N:
		printf("(shmq/this: per-repetition ratios, then median [min..max]; pairs/s above 1 and "
		       "p99 below 1 favour shmq. Hand-off: from the holder's release to the next "
		       "acquire by another process; hand-offs: the median share of acquisitions that "
		       "changed process, the rest were the releaser taking the lock again, and their "
		       "count over all repetitions, the samples of the p99)\n");
		break;
	case SYNC_EVENT:
		printf("(the figure: each repetition's p50; p50/p99/max all: every wake-up of every "
		       "repetition; shmq/this below 1 favours shmq)\n");
		break;
	default:
		printf("(shmq/this: per-repetition ratios, then median [min..max]; %s)\n",
		       ki->is_time ? "times: below 1 favours shmq" : "rates: above 1 favours shmq");
	}
}

/* Where a peer's median figure beats shmq's: said plainly under the tables. */
static void print_peer_wins(void)
{
	int n = 0;
	printf("\n### Sync: where a peer is ahead of shmq (paired median ratio)\n");
	for (int k = 0; k < nscases; k++) {
		struct scase *sc = &scases[k];
		struct ssys *base = base_of(sc);
		char t[200];
		title(&sc->c, t, sizeof(t));
		for (int i = 0; i < sc->nsys; i++) {
			struct ssys *ss = &sc->sys[i];
			if (ss == base)
				continue;
			for (int f = 0; f < 2; f++) {
				if (f == 1 && sc->c.kind != SYNC_LOCK_N)
					break;
				bool is_time = f == 1 || kinfo[sc->c.kind].is_time;
				struct stat3 ra = paired(base, ss, f == 1 ? FIG_P99 : FIG_VALUE);
				if (!ra.n || (is_time ? ra.med <= 1 : ra.med >= 1))
					continue;
				printf("- %s%s: %s %s (shmq/this %.2f [%.2f..%.2f])\n", t + 6,
				       f == 1 ? " (hand-off p99)" : "", ss->p->label,
				       is_time ? "is faster" : "has the higher rate", ra.med, ra.min,
				       ra.max);
				n++;
			}
		}
	}
	if (!n)
		printf("- none in this run\n");
}

void sync_print(void)
{
	if (!nscases)
		return;
	printf("\n## Synchronisation primitives (%d repetitions x %.2f s per run, interleaved: "
	       "every system once per case per repetition, rotating order)\n", sreps,
	       scases[0].c.secs);
	for (int k = 0; k < nscases; k++)
		print_case(&scases[k]);
	print_peer_wins();
}

/* ------------------------------------------------------------- targets -- */

/* shmq over a peer in one case: want_le for times (shmq/peer <= want),
 * otherwise rates (shmq/peer >= want). inverse: report peer/shmq instead
 * (a time ratio read as a speed-up). */
static void target(const char *text, enum sync_kind kind, int nproc, const char *peer,
		   double want, bool want_le, bool inverse)
{
	struct target *t = new_target("%s", text);
	struct scase *sc = find_case(kind, nproc);
	struct ssys *b = sc ? base_of(sc) : NULL, *p = find_sys(sc, peer);
	struct stat3 s = inverse ? paired(p, b, FIG_VALUE) : paired(b, p, FIG_VALUE);
	if (!s.n)
		return;
	t->have = true;
	t->met = want_le ? s.med <= want : s.med >= want;
	snprintf(t->meas, sizeof(t->meas), "%.2fx [%.2f..%.2f]%s", s.med, s.min, s.max,
		 inverse ? " (its time / shmq's)" : "");
}

void sync_targets(void)
{
	if (!nscases)
		return;
	target("sync Lock uncontended <= 1.2x robust mutex time", SYNC_LOCK_1, 1, "pthread-mutex",
	       1.2, true, false);
	target("sync Lock 2 procs pairs/s >= 1x robust mutex", SYNC_LOCK_N, 2, "pthread-mutex", 1,
	       false, false);
	target("sync Lock 4 procs pairs/s >= 1x robust mutex", SYNC_LOCK_N, 4, "pthread-mutex", 1,
	       false, false);
	target("sync Lock uncontended >= 50x mp.Lock", SYNC_LOCK_1, 1, "mp-lock", 50, false, true);
	target("sync Barrier 4 procs cycles >= 2x pthread barrier", SYNC_BARRIER, 4,
	       "pthread-barrier", 2, false, false);
}

/* ---------------------------------------------------------------- json -- */

static void json_stat(FILE *f, const char *key, struct stat3 s)
{
	fprintf(f, "\"%s\":{\"median\":%g,\"min\":%g,\"max\":%g}", key, s.med, s.min, s.max);
}

void sync_json(FILE *f, bool first)
{
	for (int k = 0; k < nscases; k++) {
		struct scase *sc = &scases[k];
		const struct sync_case *c = &sc->c;
		const struct kind_info *ki = &kinfo[c->kind];
		struct ssys *base = base_of(sc);
		fprintf(f, "%s\n{\"kind\":\"sync\",\"case\":\"%s\",\"processes\":%d,\"secs\":%g,"
			   "\"gap_ns\":%lld,\"metric\":\"%s\",\"better\":\"%s\",\"systems\":[",
			first && k == 0 ? "" : ",", ki->name, c->nproc, c->secs, (long long)c->gap_ns,
			ki->metric, ki->is_time ? "lower" : "higher");
		for (int i = 0; i < sc->nsys; i++) {
			struct ssys *ss = &sc->sys[i];
			struct stat3 st = sys_stat(ss, FIG_VALUE);
			fprintf(f, "%s\n {\"name\":", i ? "," : "");
			json_str(f, ss->p->name);
			fprintf(f, ",\"label\":");
			json_str(f, ss->p->label);
			const char *m = ss->p->models ? ss->p->models(c) : NULL;
			if (m) {
				fprintf(f, ",\"models\":");
				json_str(f, m);
			}
			fprintf(f, ",\"reference\":%s,\"metric\":\"%s\",\"median\":%g,\"min\":%g,"
				   "\"max\":%g,",
				ss->p->flags & SP_REF ? "true" : "false", ki->metric, st.med, st.min,
				st.max);
			json_stat(f, "shmq_over_this", paired(base, ss, FIG_VALUE));
			fputc(',', f);
			json_stat(f, "ratio_to_shmq", paired(ss, base, FIG_VALUE));
			fputc(',', f);
			if (c->kind == SYNC_LOCK_N) {
				json_stat(f, "handoff_p99_ns", sys_stat(ss, FIG_P99));
				fputc(',', f);
				json_stat(f, "handoff_p99_shmq_over_this", paired(base, ss, FIG_P99));
				fputc(',', f);
				json_stat(f, "handoff_share", sys_stat(ss, FIG_SHARE));
				fputc(',', f);
			}
			if (c->kind == SYNC_LOCK_N || c->kind == SYNC_EVENT)
				fprintf(f, "\"merged\":{\"n\":%llu,\"p50\":%g,\"p99\":%g,\"p999\":%g,"
					   "\"max\":%llu},",
					(unsigned long long)ss->hist.n, hist_pct(&ss->hist, 0.5),
					hist_pct(&ss->hist, 0.99), hist_pct(&ss->hist, 0.999),
					(unsigned long long)ss->hist.max);
			fprintf(f, "\"samples\":[");
			for (int r = 0; r < sreps; r++) {
				struct ssample *s = &ss->s[r];
				fprintf(f, "%s{\"ok\":%s,\"ops\":%llu,\"errors\":%llu,\"wall_s\":%g,"
					   "\"value\":%g,\"p50_ns\":%g,\"p99_ns\":%g,\"handoffs\":%llu,"
					   "\"note\":",
					r ? "," : "", s->ok ? "true" : "false",
					(unsigned long long)s->ops, (unsigned long long)s->errors, s->wall,
					s->value, s->p50, s->p99, (unsigned long long)s->handoffs);
				json_str(f, s->note);
				fputc('}', f);
			}
			fprintf(f, "]}");
		}
		fprintf(f, "],\"skipped\":[");
		for (int i = 0; i < sc->nskip; i++) {
			fprintf(f, "%s", i ? "," : "");
			json_str(f, sc->skip[i]);
		}
		fprintf(f, "]}");
	}
}
