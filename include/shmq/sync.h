/* shmq synchronisation primitives and shared arrays, objects of a heap
 * (shmq/heap.h has their common life cycle: create, open, close, name).
 *
 * Python's multiprocessing set, across processes, with the difference that is
 * the point: a process that dies never deadlocks the others. Every blocking
 * call takes a timeout (ns, -1 forever, 0 never blocks) and returns -EAGAIN
 * (timeout 0) or -ETIMEDOUT when it expires; -EINTR is never returned. Waiters
 * spin briefly, then park on a futex; nothing costs a syscall when nobody
 * waits. A death is noticed by a waiter within about 0.1 s (waiters check the
 * processes they wait for every 50 ms).
 *
 * Owners: a lock is held by the process (and thread) that acquired it through
 * a heap handle; "dead" means the process died, exec'd, or closed that heap
 * handle while holding it.
 */
#ifndef SHMQ_SYNC_H
#define SHMQ_SYNC_H

#include <stddef.h>
#include <stdint.h>

#include "heap.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmq_lock shmq_lock;
typedef struct shmq_sem shmq_sem;
typedef struct shmq_cond shmq_cond;
typedef struct shmq_event shmq_event;
typedef struct shmq_barrier shmq_barrier;
typedef struct shmq_array shmq_array;

enum { SHMQ_RECURSIVE = 1 }; /* shmq_lock_create flags: an RLock */
enum { SHMQ_UNDO = 1 };      /* shmq_sem_create flags: see below */
enum { SHMQ_NOLOCK = 1 };    /* shmq_array_create flags: no lock (RawArray) */

/* ------------------------------------------------------------ Lock, RLock -- */
/* Lock: acquire returns 0 when it took the lock, and -EOWNERDEAD when it took
 * it from a holder that died holding it: the caller now holds the lock, and
 * the data it guards may be half-updated (check and repair it). Any thread or
 * process may release a held Lock (as in Python). Acquiring a Lock that this
 * thread holds waits like any acquire (with timeout 0: -EAGAIN).
 * RLock (SHMQ_RECURSIVE): held by one thread of one process, counted; the
 * holder may acquire again; release by any other thread is -EPERM.
 * Waiters are woken one at a time, in no particular order. */
int shmq_lock_create(shmq_heap *h, const char *name, int flags, shmq_lock **out);
int shmq_lock_open(shmq_heap *h, const char *name, shmq_lock **out);
int shmq_lock_close(shmq_lock *l);
const char *shmq_lock_name(shmq_lock *l);
/* Returns 0, -EOWNERDEAD (taken from a dead holder), -EAGAIN, -ETIMEDOUT,
 * -EINVAL, -EOVERFLOW (an RLock acquired 2^32-1 times). */
int shmq_lock_acquire(shmq_lock *l, int64_t timeout_ns);
/* Returns 0; -EPERM (not held; for an RLock: not held by this thread). */
int shmq_lock_release(shmq_lock *l);
/* 1 if held (by anyone), 0 if not; -EINVAL. A snapshot. */
int shmq_lock_held(shmq_lock *l);
/* 1 if held by this thread (Lock: the thread that acquired it), 0 if not. */
int shmq_lock_is_mine(shmq_lock *l);

/* ------------------------------------------------- Semaphore, Bounded ---- */
/* value: initial units (at most SHMQ_SEM_VALUE_MAX); max: the bound that
 * release may not pass (BoundedSemaphore: max == value), 0: unbounded.
 * SHMQ_UNDO (like System V's SEM_UNDO): the units a process acquired and
 * had not released when it died are given back (up to max) when its death is
 * noticed, so a dead worker never leaks a slot. A release through a process
 * first pays back what that process holds; units released by a process that
 * holds none (the producer/consumer pattern) are not taken from the
 * acquirer's account. UNDO acquires and releases take an internal lock,
 * plain ones are one atomic operation. */
#define SHMQ_SEM_VALUE_MAX 0x7fffffffu
int shmq_sem_create(shmq_heap *h, const char *name, uint32_t value, uint32_t max, int flags,
		    shmq_sem **out); /* -EINVAL: value > max > 0, or too big */
int shmq_sem_open(shmq_heap *h, const char *name, shmq_sem **out);
int shmq_sem_close(shmq_sem *s);
const char *shmq_sem_name(shmq_sem *s);
/* Take one unit. Returns 0; -EAGAIN, -ETIMEDOUT, -EINVAL. */
int shmq_sem_acquire(shmq_sem *s, int64_t timeout_ns);
/* Give back n units (n >= 1). Returns 0; -EOVERFLOW (past max, or past
 * SHMQ_SEM_VALUE_MAX: nothing changes), -EINVAL. */
int shmq_sem_release(shmq_sem *s, uint32_t n);
/* The current value (a snapshot); -EINVAL. */
int shmq_sem_value(shmq_sem *s);
/* The bound given at creation (0: unbounded); -EINVAL. */
int shmq_sem_max(shmq_sem *s);

/* -------------------------------------------------------------- Condition -- */
/* A condition variable over a lock of the same heap (NULL: a recursive lock
 * of its own, returned by shmq_cond_lock; an array's lock works too).
 * wait is called with the lock held by this thread; it releases it (every
 * level of an RLock), sleeps until notified or timed out, and takes it again
 * before it returns 0, -ETIMEDOUT or -EOWNERDEAD (the lock's holder died: as
 * for shmq_lock_acquire, the lock is held). Without the lock held, wait and
 * notify return -EPERM. notify(n) wakes at most n of the waiters that were
 * waiting when it was called, the longest-waiting first; a notification is
 * never taken by a waiter that came later or had timed out. A waiter that
 * died may take one if its death has not been noticed yet. */
int shmq_cond_create(shmq_heap *h, const char *name, shmq_lock *lock, shmq_cond **out);
int shmq_cond_open(shmq_heap *h, const char *name, shmq_cond **out);
int shmq_cond_close(shmq_cond *c);
const char *shmq_cond_name(shmq_cond *c);
/* The condition's lock (owned by the condition handle: do not close it). */
shmq_lock *shmq_cond_lock(shmq_cond *c);
/* Returns 0; -ETIMEDOUT, -EAGAIN (timeout 0), -EOWNERDEAD, -EPERM, -ENOSPC
 * (the heap has no room for a waiter record), -EINVAL. */
int shmq_cond_wait(shmq_cond *c, int64_t timeout_ns);
/* Return the number of waiters woken; -EPERM, -EINVAL. */
int shmq_cond_notify(shmq_cond *c, uint32_t n);
int shmq_cond_notify_all(shmq_cond *c);

/* ------------------------------------------------------------------ Event -- */
int shmq_event_create(shmq_heap *h, const char *name, shmq_event **out);
int shmq_event_open(shmq_heap *h, const char *name, shmq_event **out);
int shmq_event_close(shmq_event *e);
const char *shmq_event_name(shmq_event *e);
int shmq_event_set(shmq_event *e);                   /* 0; wakes every waiter */
int shmq_event_clear(shmq_event *e);                 /* 0 */
int shmq_event_is_set(shmq_event *e);                /* 1 or 0 */
/* 0 once set (at once if it is; also if it was set while this call waited
 * and cleared before the call saw it, as threading.Event does); -EAGAIN,
 * -ETIMEDOUT, -EINVAL. */
int shmq_event_wait(shmq_event *e, int64_t timeout_ns);

/* ---------------------------------------------------------------- Barrier -- */
/* parties 1 .. SHMQ_BARRIER_MAX_PARTIES. wait returns an index, each of
 * 0 .. parties-1 once per cycle (in order of arrival); with an action, the
 * last process to arrive runs action(arg) before anyone is released. It
 * returns -ECANCELED when the barrier is broken: aborted, reset while
 * parties waited, a waiter timed out (which breaks it, as in Python: that
 * waiter gets -ETIMEDOUT, the others -ECANCELED), or a waiting party died
 * (or died running the action). A broken barrier stays broken (every wait
 * returns -ECANCELED at once) until reset. */
#define SHMQ_BARRIER_MAX_PARTIES 1024u
int shmq_barrier_create(shmq_heap *h, const char *name, uint32_t parties, shmq_barrier **out);
int shmq_barrier_open(shmq_heap *h, const char *name, shmq_barrier **out);
int shmq_barrier_close(shmq_barrier *b);
const char *shmq_barrier_name(shmq_barrier *b);
int shmq_barrier_wait(shmq_barrier *b, int64_t timeout_ns);
int shmq_barrier_wait_action(shmq_barrier *b, void (*action)(void *), void *arg,
			     int64_t timeout_ns);
int shmq_barrier_abort(shmq_barrier *b);     /* 0: broken, waiters woken */
int shmq_barrier_reset(shmq_barrier *b);     /* 0: usable again, waiters broken */
int shmq_barrier_n_waiting(shmq_barrier *b); /* parties waiting now */
int shmq_barrier_parties(shmq_barrier *b);
int shmq_barrier_broken(shmq_barrier *b);    /* 1 or 0 */

/* ------------------------------------------------------- Value and Array -- */
/* size bytes, zero-filled, 64-byte aligned (C11 atomics work on them), with a
 * recursive lock (Python's Value/Array get_lock()), or none with SHMQ_NOLOCK
 * (RawValue/RawArray). A Value is an array of one element; the C caller
 * chooses the type. size 0 is -EINVAL. */
int shmq_array_create(shmq_heap *h, const char *name, size_t size, int flags,
		      shmq_array **out);
int shmq_array_open(shmq_heap *h, const char *name, shmq_array **out);
int shmq_array_close(shmq_array *a);
const char *shmq_array_name(shmq_array *a);
void *shmq_array_data(shmq_array *a);        /* NULL for NULL */
size_t shmq_array_size(shmq_array *a);       /* 0 for NULL */
/* The array's recursive lock (owned by the array handle: do not close it);
 * NULL with SHMQ_NOLOCK. */
shmq_lock *shmq_array_lock(shmq_array *a);

#ifdef __cplusplus
}
#endif
#endif
