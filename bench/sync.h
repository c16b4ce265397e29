/* shmq-bench: the synchronisation cases (--cases sync).
 *
 * shmq's heap objects (Lock, Semaphore, Barrier, Event) against the primitives
 * C programs use between processes (a robust process-shared pthread mutex,
 * a process-shared condvar, sem_t, a process-shared pthread barrier) and
 * Python's multiprocessing Lock, Semaphore, Event and Barrier. The cases:
 *
 *   SYNC_LOCK_1   one process: acquire + release in a loop, ns per pair.
 *   SYNC_SEM_1    the same with a semaphore of value 1.
 *   SYNC_LOCK_N   N processes on one lock, flat out, each doing acquire, a
 *                 tiny critical section (increment a shared counter), release:
 *                 pairs/s in all, and the hand-off latency: the releaser
 *                 stores CLOCK_MONOTONIC in the guarded data just before it
 *                 releases, and an acquirer that finds another process's
 *                 stamp there records now - stamp.
 *   SYNC_SEM_PP   two processes, two semaphores at 0: post(a), wait(b)
 *                 against wait(a), post(b): round trips/s.
 *   SYNC_BARRIER  N processes wait on one barrier in a loop: cycles/s.
 *   SYNC_EVENT    one process waits; the other, once the waiter has cleared
 *                 the event and a gap has passed (so that the waiter is
 *                 parked, not spinning), stores the time and sets it; the
 *                 waiter records wake time - set time. Latency percentiles.
 *
 * A system ("sync peer") either gives its primitive as small functions and
 * calls the loops below from its worker() (every C system runs the very same
 * loops, with direct calls: the loops are inlined into each peer), or runs the
 * whole case itself (run(): the Python driver, bench/mp_sync.py).
 */
#ifndef SHMQ_BENCH_SYNC_H
#define SHMQ_BENCH_SYNC_H

#include "peer.h"

#include <errno.h>
#include <stdio.h>

enum sync_kind {
	SYNC_LOCK_1,
	SYNC_SEM_1,
	SYNC_LOCK_N,
	SYNC_SEM_PP,
	SYNC_BARRIER,
	SYNC_EVENT,
	SYNC_NKINDS
};

#define SYNC_MAX_PROCS 8
#define SYNC_EVENT_GAP_NS 100000 /* set 100 us after the waiter has cleared */

struct sync_case {
	enum sync_kind kind;
	int nproc;
	double secs;
	int64_t gap_ns; /* SYNC_EVENT */
};

/* One worker's counts (in the shared page). */
struct sync_wres {
	uint64_t ops;      /* pairs, round trips, barrier waits, wake-ups */
	uint64_t handoffs; /* SYNC_LOCK_N: acquisitions that found another's stamp */
	uint64_t marks;    /* SYNC_BARRIER: waits that returned the one marked index */
	uint64_t errors;
	int64_t t_start, t_end;
	int rc;
	char note[120];
};

/* One MAP_SHARED page set per run. */
struct sync_shared {
	_Alignas(128) _Atomic uint32_t arrived;
	_Atomic uint32_t go;
	int64_t t0;
	_Alignas(128) _Atomic uint32_t stop;
	/* SYNC_LOCK_N: the data the lock guards, a line of its own (for every
	 * system alike; relaxed atomics only so that a broken lock is a
	 * counted error, not undefined behaviour). */
	_Alignas(128) _Atomic uint64_t counter;
	_Atomic int64_t t_rel;  /* when the last holder was about to release */
	_Atomic int32_t owner;  /* worker id of the last holder, -1: none yet */
	_Atomic int32_t inside; /* 1 while someone is in the critical section */
	/* SYNC_SEM_PP and SYNC_EVENT */
	_Alignas(128) _Atomic uint32_t quit;
	_Atomic int64_t t_set;
	_Alignas(128) _Atomic uint64_t acks;
	/* SYNC_BARRIER: the last cycle everyone runs (0: not decided yet). */
	_Alignas(128) _Atomic uint64_t last_cycle;
	struct sync_wres res[SYNC_MAX_PROCS];
	struct bench_hist hist[SYNC_MAX_PROCS];
};

struct sync_worker {
	struct sync_shared *sh;
	const struct sync_case *c;
	int id; /* 0 .. nproc-1 */
};

/* What one run of one system measured. */
struct sync_run {
	uint64_t ops, handoffs, errors;
	int64_t wall_ns;
	struct bench_hist hist; /* SYNC_LOCK_N hand-offs, SYNC_EVENT wake-ups */
	char note[120];
};

enum {
	SP_SHMQ = 1, /* the baseline of every ratio */
	SP_REF = 2,  /* a reference row, not a competitor (no target uses it) */
};

struct sync_peer {
	const char *name;  /* -S name */
	const char *label; /* table */
	unsigned flags;
	unsigned kinds;    /* 1u << SYNC_... it runs */
	/* Parent before fork; each worker process; parent after every worker has
	 * exited. */
	int (*setup)(const struct sync_case *c, void **ctx);
	int (*worker)(void *ctx, struct sync_worker *w);
	void (*teardown)(void *ctx);
	/* Instead of the above: the whole case (Python). 0 or -errno. */
	int (*run)(const struct sync_case *c, struct sync_run *out);
	/* What it uses in this case (a line under the table), or NULL. */
	const char *(*models)(const struct sync_case *c);
};

#define SYNC_KIND(k) (1u << (k))

extern const struct sync_peer *const sync_peers[]; /* bench/sync.c, NULL-terminated */
extern const char *bench_mp_sync_script;          /* bench/mp_sync.py */

/* Harness side (bench/sync.c, called by shmq-bench.c). */
void sync_build_cases(bool quick, double secs, int reps, const char *systems);
int sync_ncases(void);
int sync_total_runs(void);
/* Run repetition r of every case, every system once (rotating order). */
void sync_run_rep(int r, bool tty, bool verbose, int *done, int total);
void sync_print(void);
void sync_targets(void);
/* Append the cases to the JSON "cases" array; first: no comma before. */
void sync_json(FILE *f, bool first);

/* ------------------------------------------------------- worker loops ---- */

/* Start barrier: warm up before it, time after it. */
void sync_ready(struct sync_worker *w);

static inline bool sync_stopping(const struct sync_worker *w)
{
	return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

/* Tell the others to stop (a worker that failed). */
static inline void sync_abort(struct sync_worker *w, int rc, const char *what)
{
	struct sync_wres *r = &w->sh->res[w->id];
	if (!r->note[0])
		snprintf(r->note, sizeof(r->note), "worker %d: %s: %s", w->id, what, strerror(-rc));
	atomic_store(&w->sh->stop, 1);
}

/* A primitive's operation: 0, or -errno. */
typedef int (*sync_op)(void *obj);

#define SYNC_INLINE static inline __attribute__((always_inline))

/* SYNC_LOCK_1, SYNC_SEM_1 (acquire = wait, release = post) and SYNC_LOCK_N. */
SYNC_INLINE int sync_lock_loop(struct sync_worker *w, void *obj, sync_op acquire, sync_op release)
{
	struct sync_shared *sh = w->sh;
	struct sync_wres *r = &sh->res[w->id];
	int rc;
	if ((rc = acquire(obj)) < 0 || (rc = release(obj)) < 0) { /* warm-up */
		sync_abort(w, rc, "warm-up");
		return rc;
	}
	sync_ready(w);
	uint64_t n = 0;
	r->t_start = bench_now();
	if (w->c->kind != SYNC_LOCK_N) { /* nothing in the loop but the two calls */
		do {
			for (int i = 0; i < 256; i++) {
				if ((rc = acquire(obj)) < 0 || (rc = release(obj)) < 0)
					goto out;
			}
			n += 256;
		} while (!sync_stopping(w));
		goto out;
	}
	struct bench_hist *h = &sh->hist[w->id];
	uint64_t handoffs = 0, errors = 0;
	while (!sync_stopping(w)) {
		if ((rc = acquire(obj)) < 0)
			break;
		int64_t now = bench_now();
		if (atomic_load_explicit(&sh->inside, memory_order_relaxed))
			errors++;
		atomic_store_explicit(&sh->inside, 1, memory_order_relaxed);
		int32_t prev = atomic_load_explicit(&sh->owner, memory_order_relaxed);
		if (prev >= 0 && prev != w->id) {
			int64_t d = now - atomic_load_explicit(&sh->t_rel, memory_order_relaxed);
			bench_hist_add(h, d > 0 ? (uint64_t)d : 0);
			handoffs++;
		}
		atomic_store_explicit(&sh->counter,
				      atomic_load_explicit(&sh->counter, memory_order_relaxed) + 1,
				      memory_order_relaxed);
		atomic_store_explicit(&sh->owner, w->id, memory_order_relaxed);
		atomic_store_explicit(&sh->inside, 0, memory_order_relaxed);
		atomic_store_explicit(&sh->t_rel, bench_now(), memory_order_relaxed);
		if ((rc = release(obj)) < 0)
			break;
		n++;
	}
	r->handoffs = handoffs;
	r->errors = errors;
out:
	r->t_end = bench_now();
	r->ops = n;
	if (rc < 0)
		sync_abort(w, rc, "acquire/release");
	return rc;
}

/* SYNC_SEM_PP: worker 0 pings (post a, wait b), worker 1 pongs. */
SYNC_INLINE int sync_pingpong_loop(struct sync_worker *w, void *a, void *b, sync_op wait,
				   sync_op post)
{
	struct sync_shared *sh = w->sh;
	struct sync_wres *r = &sh->res[w->id];
	int rc = 0;
	uint64_t n = 0;
	sync_ready(w);
	r->t_start = bench_now();
	if (w->id == 0) {
		for (; (n & 15) || !sync_stopping(w); n++)
			if ((rc = post(a)) < 0 || (rc = wait(b)) < 0)
				break;
		r->t_end = bench_now();
		atomic_store(&sh->quit, 1);
		int rc2 = post(a);
		rc = rc < 0 ? rc : rc2;
	} else {
		for (;;) {
			if ((rc = wait(a)) < 0 || atomic_load(&sh->quit))
				break;
			if ((rc = post(b)) < 0)
				break;
			n++;
		}
		r->t_end = bench_now();
	}
	r->ops = n;
	if (rc < 0)
		sync_abort(w, rc, "semaphore");
	return rc;
}

/* SYNC_BARRIER: bwait returns 1 for the one party per cycle that the
 * primitive marks (serial thread, index 0), 0 for the others, or -errno.
 * Worker 0 decides the last cycle once the harness says stop: it stores it
 * before its next wait, so every worker sees it after that wait at the
 * latest, and all of them leave after the same cycle. */
SYNC_INLINE int sync_barrier_loop(struct sync_worker *w, void *obj, sync_op bwait)
{
	struct sync_shared *sh = w->sh;
	struct sync_wres *r = &sh->res[w->id];
	int rc = 0;
	uint64_t i = 0, marks = 0;
	sync_ready(w);
	r->t_start = bench_now();
	for (;; i++) {
		if ((rc = bwait(obj)) < 0)
			break;
		marks += (uint64_t)rc;
		if (w->id == 0 && sync_stopping(w) &&
		    !atomic_load_explicit(&sh->last_cycle, memory_order_relaxed))
			atomic_store_explicit(&sh->last_cycle, i + 1, memory_order_release);
		uint64_t last = atomic_load_explicit(&sh->last_cycle, memory_order_acquire);
		if (last && i >= last) {
			i++;
			break;
		}
	}
	r->t_end = bench_now();
	r->ops = i;
	r->marks = marks;
	if (rc < 0) {
		sync_abort(w, rc, "barrier");
		return rc;
	}
	return 0;
}

/* SYNC_EVENT: worker 0 sets, worker 1 waits. clear may be NULL (an event
 * that a wait consumes, like a semaphore's post). */
SYNC_INLINE int sync_event_loop(struct sync_worker *w, void *obj, sync_op set, sync_op clear,
				sync_op wait)
{
	struct sync_shared *sh = w->sh;
	struct sync_wres *r = &sh->res[w->id];
	int rc = 0;
	uint64_t n = 0;
	sync_ready(w);
	r->t_start = bench_now();
	if (w->id == 0) {
		int64_t gap = w->c->gap_ns;
		for (;;) {
			unsigned spins = 0; /* the waiter has woken and cleared */
			while (atomic_load_explicit(&sh->acks, memory_order_acquire) != n &&
			       !atomic_load_explicit(&sh->quit, memory_order_relaxed))
				bench_backoff(&spins);
			if (sync_stopping(w))
				break;
			struct timespec ts = { .tv_sec = gap / 1000000000, .tv_nsec = gap % 1000000000 };
			while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
				;
			atomic_store_explicit(&sh->t_set, bench_now(), memory_order_relaxed);
			if ((rc = set(obj)) < 0)
				break;
			n++;
		}
		atomic_store(&sh->quit, 1);
		if (rc == 0)
			rc = set(obj);
	} else {
		struct bench_hist *h = &sh->hist[w->id];
		for (;;) {
			if ((rc = wait(obj)) < 0)
				break;
			int64_t now = bench_now();
			if (atomic_load(&sh->quit))
				break;
			int64_t d = now - atomic_load_explicit(&sh->t_set, memory_order_relaxed);
			bench_hist_add(h, d > 0 ? (uint64_t)d : 0);
			n++;
			if (clear && (rc = clear(obj)) < 0)
				break;
			atomic_store_explicit(&sh->acks, n, memory_order_release);
		}
	}
	r->t_end = bench_now();
	r->ops = n;
	if (rc < 0) {
		atomic_store(&sh->quit, 1);
		sync_abort(w, rc, "event");
	}
	return rc < 0 ? rc : 0;
}

#endif
