/* shmq-bench: run one system on one case, in fresh processes. */
#include "bench.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct worker_arg {
	const struct bench_peer *p;
	void *ctx;
	struct bench_shared *sh;
	const struct bench_case *c;
	int id;
	bool producer;
	int rc;
};

static void *worker_run(void *arg)
{
	struct worker_arg *a = arg;
	struct bench_worker *w = calloc(1, sizeof(*w));
	if (!w) {
		a->rc = -ENOMEM;
		return NULL;
	}
	w->sh = a->sh;
	w->c = a->c;
	w->id = a->id;
	w->producer = a->producer;
	w->seq = 1;
	w->timed = a->c->kind == CASE_LATENCY;
	if (w->timed && a->producer && a->c->rate > 0)
		w->interval = (int64_t)(1e9 * a->c->np / a->c->rate);
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
	int rc;
	if (a->c->kind == CASE_PINGPONG || a->c->kind == CASE_CONN_PP)
		rc = a->producer ? a->p->ping(a->ctx, w) : a->p->pong(a->ctx, w);
	else
		rc = a->producer ? a->p->producer(a->ctx, w) : a->p->consumer(a->ctx, w);
	struct bench_wres *r = a->producer ? &a->sh->prod[a->id] : &a->sh->cons[a->id];
	r->rc = rc;
	if (rc < 0 && !r->note[0])
		snprintf(r->note, sizeof(r->note), "%s %d: %s", a->producer ? "producer" : "consumer",
			 a->id, strerror(-rc));
	a->rc = rc;
	free(w);
	return NULL;
}

static void child_init(void)
{
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
}

void hist_merge(struct bench_hist *into, const struct bench_hist *h)
{
	into->n += h->n;
	if (h->max > into->max)
		into->max = h->max;
	for (int i = 0; i < BENCH_LAT_BUCKETS; i++)
		into->b[i] += h->b[i];
}

/* A run's latency percentiles, and its histogram into the system's merged one. */
static void sample_hist(struct sample *out, const struct bench_hist *one, struct bench_hist *all)
{
	out->p50 = hist_pct(one, 0.50);
	out->p99 = hist_pct(one, 0.99);
	out->p999 = hist_pct(one, 0.999);
	if (all)
		hist_merge(all, one);
}

/* Run the case in worker processes (or threads of one child process). */
static void run_workers(const struct bench_peer *p, const struct bench_case *c, struct sample *out,
			struct bench_hist *hist)
{
	bool pp = c->kind == CASE_PINGPONG || c->kind == CASE_CONN_PP;
	struct bench_shared *sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE,
				       MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED) {
		snprintf(out->note, sizeof(out->note), "mmap: %s", strerror(errno));
		return;
	}
	void *ctx = NULL;
	int rc = pp ? p->pp_setup(c, &ctx) : p->setup(c, &ctx);
	if (rc < 0) {
		snprintf(out->note, sizeof(out->note), "setup: %s", strerror(-rc));
		munmap(sh, sizeof(*sh));
		return;
	}
	int n = c->np + c->nc;
	pid_t pids[2 * BENCH_MAX_WORKERS];
	int npids = 0;
	struct worker_arg args[2 * BENCH_MAX_WORKERS];
	for (int i = 0; i < n; i++)
		args[i] = (struct worker_arg){ .p = p, .ctx = ctx, .sh = sh, .c = c,
					       .id = i < c->np ? i : i - c->np,
					       .producer = i < c->np };
	fflush(NULL);
	if (p->flags & PF_THREADS) {
		pid_t pid = fork();
		if (pid == 0) {
			child_init();
			pthread_t th[2 * BENCH_MAX_WORKERS];
			for (int i = 0; i < n; i++)
				if (pthread_create(&th[i], NULL, worker_run, &args[i]) != 0)
					_exit(3);
			int bad = 0;
			for (int i = 0; i < n; i++) {
				pthread_join(th[i], NULL);
				bad |= args[i].rc < 0;
			}
			_exit(bad);
		}
		if (pid > 0)
			pids[npids++] = pid;
	} else {
		for (int i = 0; i < n; i++) {
			pid_t pid = fork();
			if (pid == 0) {
				child_init();
				worker_run(&args[i]);
				_exit(args[i].rc < 0);
			}
			if (pid < 0)
				break;
			pids[npids++] = pid;
		}
	}
	if (pp ? p->pp_parent != NULL : p->parent != NULL)
		(pp ? p->pp_parent : p->parent)(ctx);

	bool failed = npids != (p->flags & PF_THREADS ? 1 : n);
	struct bench_window win = { &sh->arrived, &sh->go, &sh->stop, &sh->t0, (uint32_t)n,
				    20 * 1000000000LL, c->secs };
	failed = bench_window(&win, pids, npids, failed, out->note, sizeof(out->note));
	int64_t t0 = sh->t0, t_stop = bench_now();

	/* Reap, with a watchdog: a system that hangs is reported, not waited on. */
	bool hung;
	failed |= bench_reap(pids, npids, 15 * 1000000000LL, &hung);
	if (hung) {
		snprintf(out->note, sizeof(out->note),
			 "hung: killed after 15 s (producers done %u/%d, sent %llu, counted %llu)",
			 atomic_load(&sh->prod_done), c->np,
			 (unsigned long long)atomic_load(&sh->sent_total),
			 (unsigned long long)atomic_load(&sh->recv_total));
		if (getenv("SHMQ_BENCH_DEBUG"))
			for (int i = 0; i < c->nc; i++)
				fprintf(stderr, "consumer %d: %llu\n", i,
					(unsigned long long)sh->cons[i].msgs);
	}
	if (pp ? p->pp_teardown != NULL : p->teardown != NULL)
		(pp ? p->pp_teardown : p->teardown)(ctx);

	uint64_t sent = 0, got = 0, errors = 0;
	int64_t t_end = 0;
	int joined = 0;
	for (int i = 0; i < c->np; i++) {
		sent += sh->prod[i].msgs;
		errors += sh->prod[i].errors;
		joined += sh->prod[i].joined;
		if (sh->prod[i].t_end > t_end)
			t_end = sh->prod[i].t_end;
		if (!out->note[0] && sh->prod[i].note[0])
			snprintf(out->note, sizeof(out->note), "%s", sh->prod[i].note);
	}
	/* Every producer joined: the time ends when the last join returned (a
	 * consumer may notice the end of data later). */
	bool by_join = joined == c->np;
	for (int i = 0; i < c->nc; i++) {
		got += sh->cons[i].msgs;
		errors += sh->cons[i].errors;
		if (sh->cons[i].t_end > t_end && !by_join)
			t_end = sh->cons[i].t_end;
		if (!out->note[0] && sh->cons[i].note[0])
			snprintf(out->note, sizeof(out->note), "%s", sh->cons[i].note);
	}
	if (pp) {
		if (!failed && sh->pp_rounds > 0) {
			out->ok = true;
			out->msgs = sh->pp_rounds;
			out->errors = errors;
			out->rtt_ns = (double)sh->pp_ns / (double)sh->pp_rounds;
			if (c->kind == CASE_CONN_PP)
				sample_hist(out, &sh->hist[0], hist);
		}
	} else {
		if (got != sent && !failed) {
			errors += got > sent ? got - sent : sent - got;
			if (!out->note[0])
				snprintf(out->note, sizeof(out->note), "sent %llu, received %llu",
					 (unsigned long long)sent, (unsigned long long)got);
		}
		if (t_end < t0)
			t_end = t_stop;
		double wall = (double)(t_end - t0) / 1e9;
		out->msgs = got;
		out->errors = errors;
		out->wall = wall;
		if (!failed && got > 0 && wall > 0) {
			out->ok = true;
			out->mps = (double)got / wall;
			out->gbs = out->mps * (double)c->size / 1e9;
		}
		if (c->kind == CASE_LATENCY && out->ok) {
			struct bench_hist one = { 0 };
			for (int i = 0; i < c->nc; i++)
				hist_merge(&one, &sh->hist[i]);
			sample_hist(out, &one, hist);
		}
	}
	if (errors && !out->note[0])
		snprintf(out->note, sizeof(out->note), "%llu integrity errors",
			 (unsigned long long)errors);
	if (failed && !out->note[0])
		snprintf(out->note, sizeof(out->note), "a worker failed");
	munmap(sh, sizeof(*sh));
}


void run_one(const struct bench_peer *p, const struct bench_case *c, struct sample *out,
	     struct bench_hist *hist)
{
	memset(out, 0, sizeof(*out));
	if (p->run && c->kind != CASE_LATENCY && c->kind != CASE_PINGPONG) {
		struct bench_run *res = calloc(1, sizeof(*res));
		if (!res) {
			snprintf(out->note, sizeof(out->note), "out of memory");
			return;
		}
		int rc = p->run(c, res);
		snprintf(out->note, sizeof(out->note), "%s", res->note);
		out->msgs = res->msgs;
		out->errors = res->errors;
		out->wall = (double)res->wall_ns / 1e9;
		if (rc == 0 && res->msgs > 0 && res->wall_ns > 0) {
			out->ok = true;
			out->mps = (double)res->msgs / out->wall;
			out->gbs = out->mps * (double)c->size / 1e9;
			if (c->kind == CASE_CONN_PP) {
				out->rtt_ns = (double)res->wall_ns / (double)res->msgs;
				sample_hist(out, &res->hist, hist);
			}
		} else if (!out->note[0]) {
			snprintf(out->note, sizeof(out->note), "failed (%d)", rc);
		}
		free(res);
		return;
	}
	run_workers(p, c, out, hist);
}
