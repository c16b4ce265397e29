/* shmq's heap objects: Lock, Semaphore, Barrier, Event (include/shmq/sync.h).
 * One anonymous heap per run, created by the harness before it forks; the
 * workers inherit the heap and the object handles. Every blocking call waits
 * forever (-1), as the peers' calls do; the harness's watchdog ends a hang. */
#include "../sync.h"

#include <shmq.h>

#include <errno.h>
#include <stdlib.h>

struct sq {
	shmq_heap *h;
	shmq_lock *lock;
	shmq_sem *a, *b;
	shmq_barrier *bar;
	shmq_event *ev;
};

static void sq_teardown(void *ctx)
{
	struct sq *x = ctx;
	if (x->lock)
		shmq_lock_close(x->lock);
	if (x->a)
		shmq_sem_close(x->a);
	if (x->b)
		shmq_sem_close(x->b);
	if (x->bar)
		shmq_barrier_close(x->bar);
	if (x->ev)
		shmq_event_close(x->ev);
	if (x->h)
		shmq_heap_close(x->h);
	free(x);
}

static int sq_setup(const struct sync_case *c, void **ctx)
{
	struct sq *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = SHMQ_HEAP_MIN_MAX;
	int rc = shmq_heap_create(NULL, &attr, &x->h);
	if (rc == 0) {
		switch (c->kind) {
		case SYNC_LOCK_1:
		case SYNC_LOCK_N:
			rc = shmq_lock_create(x->h, NULL, 0, &x->lock);
			break;
		case SYNC_SEM_1:
			rc = shmq_sem_create(x->h, NULL, 1, 0, 0, &x->a);
			break;
		case SYNC_SEM_PP:
			rc = shmq_sem_create(x->h, NULL, 0, 0, 0, &x->a);
			if (rc == 0)
				rc = shmq_sem_create(x->h, NULL, 0, 0, 0, &x->b);
			break;
		case SYNC_BARRIER:
			rc = shmq_barrier_create(x->h, NULL, (uint32_t)c->nproc, &x->bar);
			break;
		case SYNC_EVENT:
			rc = shmq_event_create(x->h, NULL, &x->ev);
			break;
		default:
			rc = -EINVAL;
		}
	}
	if (rc < 0) {
		sq_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int lock_acq(void *o) { return shmq_lock_acquire(o, -1); }
static int lock_rel(void *o) { return shmq_lock_release(o); }
static int sem_acq(void *o) { return shmq_sem_acquire(o, -1); }
static int sem_rel(void *o) { return shmq_sem_release(o, 1); }
static int bar_wait(void *o)
{
	int r = shmq_barrier_wait(o, -1);
	return r < 0 ? r : r == 0;
}
static int ev_set(void *o) { return shmq_event_set(o); }
static int ev_clear(void *o) { return shmq_event_clear(o); }
static int ev_wait(void *o) { return shmq_event_wait(o, -1); }

static int sq_worker(void *ctx, struct sync_worker *w)
{
	struct sq *x = ctx;
	switch (w->c->kind) {
	case SYNC_LOCK_1:
	case SYNC_LOCK_N:
		return sync_lock_loop(w, x->lock, lock_acq, lock_rel);
	case SYNC_SEM_1:
		return sync_lock_loop(w, x->a, sem_acq, sem_rel);
	case SYNC_SEM_PP:
		return sync_pingpong_loop(w, x->a, x->b, sem_acq, sem_rel);
	case SYNC_BARRIER:
		return sync_barrier_loop(w, x->bar, bar_wait);
	case SYNC_EVENT:
		return sync_event_loop(w, x->ev, ev_set, ev_clear, ev_wait);
	default:
		return -EINVAL;
	}
}

static const char *sq_models(const struct sync_case *c)
{
	switch (c->kind) {
	case SYNC_LOCK_1:
	case SYNC_LOCK_N:
		return "shmq_lock_acquire(-1) / shmq_lock_release (a Lock: robust, a dead holder "
		       "is -EOWNERDEAD to the next acquirer)";
	case SYNC_SEM_1:
	case SYNC_SEM_PP:
		return "shmq_sem_acquire(-1) / shmq_sem_release(1), unbounded, no SHMQ_UNDO";
	case SYNC_BARRIER:
		return "shmq_barrier_wait(-1); index 0 counted once per cycle";
	case SYNC_EVENT:
		return "shmq_event_wait(-1) / shmq_event_set / shmq_event_clear";
	default:
		return NULL;
	}
}

#define SQ_PEER(sym, nm, lbl, k)                                                             \
	const struct sync_peer sym = { .name = nm,	   .label = lbl,	 .flags = SP_SHMQ,  \
				       .kinds = k,	   .setup = sq_setup,	 .worker = sq_worker, \
				       .teardown = sq_teardown, .models = sq_models };

SQ_PEER(sync_shmq_lock, "shmq", "shmq Lock", SYNC_KIND(SYNC_LOCK_1) | SYNC_KIND(SYNC_LOCK_N))
SQ_PEER(sync_shmq_sem, "shmq", "shmq Semaphore",
	SYNC_KIND(SYNC_SEM_1) | SYNC_KIND(SYNC_SEM_PP))
SQ_PEER(sync_shmq_barrier, "shmq", "shmq Barrier", SYNC_KIND(SYNC_BARRIER))
SQ_PEER(sync_shmq_event, "shmq", "shmq Event", SYNC_KIND(SYNC_EVENT))
