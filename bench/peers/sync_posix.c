/* The primitives C programs use between processes, in MAP_SHARED memory made
 * by the harness before it forks:
 *   pthread-mutex        a PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST mutex
 *                        (the peer of shmq's Lock: a dead holder does not
 *                        deadlock the others);
 *   pthread-mutex-plain  the same without PTHREAD_MUTEX_ROBUST (reference: what
 *                        robustness costs glibc);
 *   pthread-cond         an Event in C: a flag under the robust mutex and a
 *                        process-shared condvar (set: lock, flag = 1,
 *                        broadcast, unlock; wait: lock, wait while !flag);
 *   pthread-barrier      a PTHREAD_PROCESS_SHARED pthread_barrier_t;
 *   sem-t                an unnamed POSIX sem_t, pshared = 1 (as a lock: value
 *                        1; as an event: post wakes one waiter, the wait
 *                        consumes it). */
#include "../sync.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdlib.h>
#include <sys/mman.h>

struct px {
	_Alignas(64) pthread_mutex_t m;
	_Alignas(64) pthread_cond_t cv;
	int flag; /* the Event's state, under m */
	_Alignas(64) sem_t a;
	_Alignas(64) sem_t b;
	_Alignas(64) pthread_barrier_t bar;
	bool have_m, have_cv, have_a, have_b, have_bar;
};

static void px_teardown(void *ctx)
{
	struct px *x = ctx;
	if (x->have_bar)
		pthread_barrier_destroy(&x->bar);
	if (x->have_a)
		sem_destroy(&x->a);
	if (x->have_b)
		sem_destroy(&x->b);
	if (x->have_cv)
		pthread_cond_destroy(&x->cv);
	if (x->have_m)
		pthread_mutex_destroy(&x->m);
	munmap(x, sizeof(*x));
}

static struct px *px_map(void)
{
	struct px *x = mmap(NULL, sizeof(*x), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			    -1, 0);
	return x == MAP_FAILED ? NULL : x;
}

static int mutex_init(struct px *x, bool robust)
{
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	if (robust)
		pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	int e = pthread_mutex_init(&x->m, &ma);
	pthread_mutexattr_destroy(&ma);
	x->have_m = e == 0;
	return -e;
}

static int mutex_setup(const struct sync_case *c, void **ctx, bool robust)
{
	(void)c;
	struct px *x = px_map();
	if (!x)
		return -errno;
	int rc = mutex_init(x, robust);
	if (rc < 0) {
		px_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int robust_setup(const struct sync_case *c, void **ctx) { return mutex_setup(c, ctx, true); }
static int plain_setup(const struct sync_case *c, void **ctx) { return mutex_setup(c, ctx, false); }

/* A robust mutex whose holder died: made consistent, and reported. */
static int m_lock(void *o)
{
	int e = pthread_mutex_lock(o);
	if (e == EOWNERDEAD) {
		pthread_mutex_consistent(o);
		return -EOWNERDEAD;
	}
	return -e;
}
static int m_unlock(void *o) { return -pthread_mutex_unlock(o); }

static int mutex_worker(void *ctx, struct sync_worker *w)
{
	struct px *x = ctx;
	return sync_lock_loop(w, &x->m, m_lock, m_unlock);
}

/* ---------------------------------------------------- mutex + condvar -- */

static int cond_setup(const struct sync_case *c, void **ctx)
{
	int rc = robust_setup(c, ctx);
	if (rc < 0)
		return rc;
	struct px *x = *ctx;
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	int e = pthread_cond_init(&x->cv, &ca);
	pthread_condattr_destroy(&ca);
	x->have_cv = e == 0;
	if (e) {
		px_teardown(x);
		return -e;
	}
	return 0;
}

static int cv_set(void *o)
{
	struct px *x = o;
	int rc = m_lock(&x->m);
	if (rc < 0)
		return rc;
	x->flag = 1;
	pthread_cond_broadcast(&x->cv);
	return m_unlock(&x->m);
}

static int cv_clear(void *o)
{
	struct px *x = o;
	int rc = m_lock(&x->m);
	if (rc < 0)
		return rc;
	x->flag = 0;
	return m_unlock(&x->m);
}

static int cv_wait(void *o)
{
	struct px *x = o;
	int rc = m_lock(&x->m);
	if (rc < 0)
		return rc;
	while (!x->flag) {
		int e = pthread_cond_wait(&x->cv, &x->m);
		if (e == EOWNERDEAD) {
			pthread_mutex_consistent(&x->m);
			rc = -EOWNERDEAD;
			break;
		}
		if (e) {
			return -e;
		}
	}
	int rc2 = m_unlock(&x->m);
	return rc < 0 ? rc : rc2;
}

static int cond_worker(void *ctx, struct sync_worker *w)
{
	return sync_event_loop(w, ctx, cv_set, cv_clear, cv_wait);
}

/* -------------------------------------------------------------- sem_t -- */

static int sem_setup(const struct sync_case *c, void **ctx)
{
	struct px *x = px_map();
	if (!x)
		return -errno;
	unsigned v = c->kind == SYNC_LOCK_1 || c->kind == SYNC_LOCK_N || c->kind == SYNC_SEM_1;
	x->have_a = sem_init(&x->a, 1, v) == 0;
	x->have_b = x->have_a && sem_init(&x->b, 1, 0) == 0;
	if (!x->have_b) {
		int rc = -errno;
		px_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int s_wait(void *o)
{
	while (sem_wait(o) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}
static int s_post(void *o) { return sem_post(o) < 0 ? -errno : 0; }

static int sem_worker(void *ctx, struct sync_worker *w)
{
	struct px *x = ctx;
	switch (w->c->kind) {
	case SYNC_LOCK_1:
	case SYNC_LOCK_N:
	case SYNC_SEM_1:
		return sync_lock_loop(w, &x->a, s_wait, s_post);
	case SYNC_SEM_PP:
		return sync_pingpong_loop(w, &x->a, &x->b, s_wait, s_post);
	case SYNC_EVENT:
		return sync_event_loop(w, &x->a, s_post, NULL, s_wait);
	default:
		return -EINVAL;
	}
}

/* ------------------------------------------------------------ barrier -- */

static int bar_setup(const struct sync_case *c, void **ctx)
{
	struct px *x = px_map();
	if (!x)
		return -errno;
	pthread_barrierattr_t ba;
	pthread_barrierattr_init(&ba);
	pthread_barrierattr_setpshared(&ba, PTHREAD_PROCESS_SHARED);
	int e = pthread_barrier_init(&x->bar, &ba, (unsigned)c->nproc);
	pthread_barrierattr_destroy(&ba);
	x->have_bar = e == 0;
	if (e) {
		px_teardown(x);
		return -e;
	}
	*ctx = x;
	return 0;
}

static int b_wait(void *o)
{
	int e = pthread_barrier_wait(o);
	return e == PTHREAD_BARRIER_SERIAL_THREAD ? 1 : -e;
}

static int bar_worker(void *ctx, struct sync_worker *w)
{
	struct px *x = ctx;
	return sync_barrier_loop(w, &x->bar, b_wait);
}

/* ------------------------------------------------------------- models -- */

static const char *mutex_models(const struct sync_case *c)
{
	(void)c;
	return "pthread_mutex_lock / unlock, PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST "
	       "(glibc: no spinning, a futex wait once contended)";
}

static const char *plain_models(const struct sync_case *c)
{
	(void)c;
	return "reference: the same mutex without PTHREAD_MUTEX_ROBUST (a dead holder "
	       "deadlocks it; not a competitor of a Lock that survives its holder's death)";
}

static const char *sem_models(const struct sync_case *c)
{
	switch (c->kind) {
	case SYNC_LOCK_1:
	case SYNC_LOCK_N:
		return "sem_wait / sem_post on a sem_t of value 1 used as a lock (what "
		       "multiprocessing.Lock is made of; not robust: a dead holder keeps the unit)";
	case SYNC_EVENT:
		return "reference: sem_post wakes the one waiter, its sem_wait consumes the post "
		       "(no clear; a one-waiter signal, not an Event)";
	default:
		return "sem_wait / sem_post, unnamed, pshared = 1";
	}
}

static const char *cond_models(const struct sync_case *c)
{
	(void)c;
	return "Event in C: a flag under the robust mutex + a process-shared condvar (set: "
	       "lock, flag = 1, broadcast, unlock; wait: lock, cond_wait while !flag, unlock; "
	       "clear: lock, flag = 0, unlock)";
}

static const char *bar_models(const struct sync_case *c)
{
	(void)c;
	return "pthread_barrier_wait, PTHREAD_PROCESS_SHARED; the serial thread counted once "
	       "per cycle";
}

const struct sync_peer sync_pthread_mutex = {
	.name = "pthread-mutex",
	.label = "pthread robust mutex",
	.kinds = SYNC_KIND(SYNC_LOCK_1) | SYNC_KIND(SYNC_LOCK_N),
	.setup = robust_setup,
	.worker = mutex_worker,
	.teardown = px_teardown,
	.models = mutex_models,
};

const struct sync_peer sync_pthread_mutex_plain = {
	.name = "pthread-mutex-plain",
	.label = "ref: pthread mutex",
	.flags = SP_REF,
	.kinds = SYNC_KIND(SYNC_LOCK_1) | SYNC_KIND(SYNC_LOCK_N),
	.setup = plain_setup,
	.worker = mutex_worker,
	.teardown = px_teardown,
	.models = plain_models,
};

const struct sync_peer sync_pthread_cond = {
	.name = "pthread-cond",
	.label = "robust mutex+condvar",
	.kinds = SYNC_KIND(SYNC_EVENT),
	.setup = cond_setup,
	.worker = cond_worker,
	.teardown = px_teardown,
	.models = cond_models,
};

const struct sync_peer sync_posix_sem = {
	.name = "sem-t",
	.label = "POSIX sem_t",
	.kinds = SYNC_KIND(SYNC_LOCK_1) | SYNC_KIND(SYNC_LOCK_N) | SYNC_KIND(SYNC_SEM_1) |
		 SYNC_KIND(SYNC_SEM_PP) | SYNC_KIND(SYNC_EVENT),
	.setup = sem_setup,
	.worker = sem_worker,
	.teardown = px_teardown,
	.models = sem_models,
};

const struct sync_peer sync_pthread_barrier = {
	.name = "pthread-barrier",
	.label = "pthread barrier",
	.kinds = SYNC_KIND(SYNC_BARRIER),
	.setup = bar_setup,
	.worker = bar_worker,
	.teardown = px_teardown,
	.models = bar_models,
};
