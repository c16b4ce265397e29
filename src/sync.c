/* Synchronisation primitives: objects of a heap (heap.h) built on the robust
 * mutex core (mutex.c), the futex and eventcount calls of the wait layer and
 * the participant table's liveness checks. */
#include "locks.h"
#include "wait.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SPIN_NS (10 * 1000) /* about one futex round trip, see mutex.c */
#define WAITERS_BIT 0x80000000u
#define VALUE_MASK 0x7fffffffu

static bool spin(bool (*try)(void *), void *arg, int64_t deadline)
{
	return wait_spin(try, arg, deadline, SPIN_NS);
}

/* A relative timeout for what is left until deadline (-1: forever). */
static int64_t remaining(int64_t deadline)
{
	if (deadline == WAIT_FOREVER)
		return -1;
	int64_t left = deadline - wait_now();
	return left > 0 ? left : 0;
}

static int expired(int64_t timeout_ns)
{
	return timeout_ns == 0 ? -EAGAIN : -ETIMEDOUT;
}

/* ------------------------------------------------------------ Lock, RLock -- */

static void lock_init(void *payload, void *arg)
{
	mutex_init(payload, *(uint32_t *)arg);
}

void sync_lock_bind(shmq_lock *l, const struct heap_ref *ref, struct mutex *m, bool own_ref)
{
	l->ref = *ref;
	l->m = m;
	l->own_ref = own_ref;
}

/* A handle on an object whose payload must hold size bytes (a hostile heap
 * may say less): -EPROTO, with the reference dropped, if it does not. */
static int payload_fits(struct heap_ref *ref, size_t size)
{
	if (ref->obj->size >= size)
		return 0;
	heap_obj_close(ref);
	return -EPROTO;
}

static int lock_new(struct heap_ref *ref, shmq_lock **out)
{
	int err = payload_fits(ref, sizeof(struct mutex));
	if (err)
		return err;
	shmq_lock *l = malloc(sizeof(*l));
	if (!l) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	sync_lock_bind(l, ref, ref->payload, true);
	*out = l;
	return 0;
}

int shmq_lock_create(shmq_heap *h, const char *name, int flags, shmq_lock **out)
{
	if (!out || (flags & ~SHMQ_RECURSIVE))
		return -EINVAL;
	uint32_t mflags = flags & SHMQ_RECURSIVE ? MUTEX_RECURSIVE : 0;
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_LOCK, sizeof(struct mutex), NULL, lock_init,
				  &mflags, &ref);
	return err ? err : lock_new(&ref, out);
}

int shmq_lock_open(shmq_heap *h, const char *name, shmq_lock **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_LOCK, &ref);
	return err ? err : lock_new(&ref, out);
}

int shmq_lock_close(shmq_lock *l)
{
	if (!l || !l->own_ref)
		return -EINVAL; /* NULL, or a condition's or array's lock */
	heap_obj_close(&l->ref);
	free(l);
	return 0;
}

const char *shmq_lock_name(shmq_lock *l)
{
	return l ? l->ref.name : NULL;
}

int shmq_lock_acquire(shmq_lock *l, int64_t timeout_ns)
{
	if (!l)
		return -EINVAL;
	shmq_heap *h = l->ref.heap;
	return mutex_lock(l->m, heap_parts(h), heap_owner(h), timeout_ns);
}

int shmq_lock_release(shmq_lock *l)
{
	return l ? mutex_unlock(l->m, heap_owner(l->ref.heap)) : -EINVAL;
}

int shmq_lock_held(shmq_lock *l)
{
	return l ? mutex_held(l->m) : -EINVAL;
}

int shmq_lock_is_mine(shmq_lock *l)
{
	return l ? mutex_is_mine(l->m, heap_owner(l->ref.heap)) : -EINVAL;
}

/* -------------------------------------------------------------- Semaphore -- */

/* word: the value, plus WAITERS_BIT when someone may be parked. Plain
 * semaphores change it with one CAS. UNDO semaphores change it only under
 * `m`, with an intent the next holder rolls back if the changer died, and
 * keep per-slot accounts of units taken: wide tag << 32 | units. */
struct sem_shared {
	_Atomic uint32_t word;
	uint32_t max;
	uint32_t flags; /* SHMQ_UNDO, immutable */
	uint32_t pad;
	struct mutex m;
	struct {
		_Atomic uint32_t active;
		uint32_t slot;
		uint32_t value; /* the value before the change */
		uint32_t pad;
		uint64_t account; /* slot's account before the change */
	} intent;
	_Atomic uint64_t account[]; /* UNDO: one per participant slot */
};

struct shmq_sem {
	struct heap_ref ref;
	struct sem_shared *s;
	bool undo;
};

struct sem_args {
	uint32_t value, max, flags;
};

static void sem_init(void *payload, void *arg)
{
	struct sem_shared *s = payload;
	const struct sem_args *a = arg;
	atomic_init(&s->word, a->value);
	s->max = a->max;
	s->flags = a->flags;
	mutex_init(&s->m, 0);
}

static size_t sem_size(uint32_t flags)
{
	return sizeof(struct sem_shared) +
	       (flags & SHMQ_UNDO ? SHMQ_MAX_PARTICIPANTS * sizeof(uint64_t) : 0);
}

static int sem_new(struct heap_ref *ref, shmq_sem **out)
{
	struct sem_shared *s = ref->payload;
	shmq_sem *sem = malloc(sizeof(*sem));
	if (!sem) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	sem->ref = *ref;
	sem->s = s;
	/* Trust the UNDO flag only if the object is big enough for it. */
	sem->undo = (s->flags & SHMQ_UNDO) && ref->obj->size >= sem_size(SHMQ_UNDO);
	*out = sem;
	return 0;
}

int shmq_sem_create(shmq_heap *h, const char *name, uint32_t value, uint32_t max, int flags,
		    shmq_sem **out)
{
	if (!out || (flags & ~SHMQ_UNDO) || value > SHMQ_SEM_VALUE_MAX || max > SHMQ_SEM_VALUE_MAX ||
	    (max && value > max))
		return -EINVAL;
	struct sem_args a = { value, max, (uint32_t)flags };
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_SEM, sem_size(a.flags), NULL, sem_init, &a,
				  &ref);
	return err ? err : sem_new(&ref, out);
}

int shmq_sem_open(shmq_heap *h, const char *name, shmq_sem **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_SEM, &ref);
	if (!err)
		err = payload_fits(&ref, sizeof(struct sem_shared));
	return err ? err : sem_new(&ref, out);
}

int shmq_sem_close(shmq_sem *s)
{
	if (!s)
		return -EINVAL;
	heap_obj_close(&s->ref);
	free(s);
	return 0;
}

const char *shmq_sem_name(shmq_sem *s)
{
	return s ? s->ref.name : NULL;
}

/* Add n to the value (keeping the waiters bit) unless that passes the bound.
 * Returns the old word, or -EOVERFLOW through *err. */
static uint32_t value_add(struct sem_shared *s, uint32_t n, int *err)
{
	uint32_t w = atomic_load(&s->word), max = s->max ? s->max : SHMQ_SEM_VALUE_MAX;
	*err = 0;
	do {
		uint32_t v = w & VALUE_MASK;
		if (v > max || n > max - v) {
			*err = -EOVERFLOW;
			return w;
		}
	} while (!atomic_compare_exchange_weak(&s->word, &w, (w & ~WAITERS_BIT) + n));
	return w;
}

static void wake_after_add(struct sem_shared *s, uint32_t old, uint32_t n)
{
	/* The bit was cleared: wake as many as can now proceed. Those that
	 * take a unit set it again, so any still parked are not forgotten. */
	if (old & WAITERS_BIT)
		wait_wake(&s->word, n > INT32_MAX ? INT32_MAX : (int)n);
}

/* Take a unit if there is one; parked: keep (set) the waiters bit. */
static bool value_take(struct sem_shared *s, bool parked)
{
	uint32_t w = atomic_load_explicit(&s->word, memory_order_relaxed);
	while (w & VALUE_MASK)
		if (atomic_compare_exchange_weak_explicit(&s->word, &w,
							  (w - 1) | (parked ? WAITERS_BIT : 0),
							  memory_order_acquire, memory_order_relaxed)) {
			/* A woken waiter that leaves units behind wakes the
			 * next: a second release may have found the bit
			 * cleared by the first and woken no one (found by
			 * tests/model/sync.pml). */
			if (parked && ((w - 1) & VALUE_MASK))
				wait_wake(&s->word, 1);
			return true;
		}
	return false;
}

static bool try_plain(void *arg)
{
	return value_take(arg, false);
}

/* UNDO bookkeeping, all under s->m. */
static void undo_rollback(struct sem_shared *s)
{
	if (!atomic_load(&s->intent.active))
		return;
	uint32_t slot = s->intent.slot % SHMQ_MAX_PARTICIPANTS;
	uint32_t w = atomic_load(&s->word);
	while (!atomic_compare_exchange_weak(&s->word, &w,
					     (w & WAITERS_BIT) | (s->intent.value & VALUE_MASK)))
		;
	atomic_store(&s->account[slot], s->intent.account);
	atomic_store(&s->intent.active, 0);
}

static void undo_begin(struct sem_shared *s, uint32_t slot)
{
	s->intent.slot = slot;
	s->intent.value = atomic_load(&s->word) & VALUE_MASK;
	s->intent.account = atomic_load(&s->account[slot]);
	atomic_store(&s->intent.active, 1);
}

static uint32_t slot_of(uint32_t wide_tag)
{
	return wide_tag % SHMQ_MAX_PARTICIPANTS;
}

/* Give back the units in slot i's account if its owner is `departed` (its
 * wide tag) or gone (full: checked with syscalls, else only what the table
 * shows), as far as max allows. */
static void undo_give_back(shmq_heap *h, struct sem_shared *s, uint32_t i, uint32_t departed,
			   bool full)
{
	uint64_t a = atomic_load_explicit(&s->account[i], memory_order_relaxed);
	uint32_t units = (uint32_t)a, tag = (uint32_t)(a >> 32);
	if (!units || slot_of(tag) != i ||
	    (tag != departed && !part_wide_tag_gone(heap_parts(h), tag, !full)))
		return;
	undo_begin(s, i);
	uint32_t max = s->max ? s->max : SHMQ_SEM_VALUE_MAX;
	uint32_t v = atomic_load(&s->word) & VALUE_MASK, room = v < max ? max - v : 0;
	uint32_t give = units < room ? units : room, old = 0;
	int err = 0;
	if (give)
		old = value_add(s, give, &err);
	atomic_store(&s->account[i], 0);
	atomic_store(&s->intent.active, 0);
	if (give && !err)
		wake_after_add(s, old, give);
}

static void undo_reclaim(shmq_heap *h, struct sem_shared *s, bool full)
{
	for (uint32_t i = 0; i < SHMQ_MAX_PARTICIPANTS; i++)
		undo_give_back(h, s, i, 0, full);
}

/* The internal mutex, within timeout_ns: a live holder stopped mid-change
 * must not make a bounded acquire wait past its timeout. */
static int undo_lock(shmq_heap *h, struct sem_shared *s, int64_t timeout_ns)
{
	int r = mutex_lock(&s->m, heap_parts(h), heap_owner(h), timeout_ns);
	if (r == -EOWNERDEAD) {
		undo_rollback(s);
		undo_reclaim(h, s, false);
		r = 0;
	}
	return r;
}

static void undo_unlock(shmq_heap *h, struct sem_shared *s)
{
	mutex_unlock(&s->m, heap_owner(h));
}

/* heap.c: the owner of slot left while holding a handle on this semaphore. */
static void sem_departed(shmq_heap *h, struct heap_obj *o, uint32_t slot, uint32_t tag)
{
	struct sem_shared *s = (struct sem_shared *)(o + 1);
	/* Under the heap mutex: never wait here (a later reclaim catches up). */
	if (o->size < sem_size(SHMQ_UNDO) || !(s->flags & SHMQ_UNDO) || undo_lock(h, s, 0))
		return;
	undo_give_back(h, s, slot % SHMQ_MAX_PARTICIPANTS, tag, false);
	undo_unlock(h, s);
}

static const struct heap_kind_ops sem_ops = { .departed = sem_departed };

__attribute__((constructor)) static void sync_register(void)
{
	heap_kind_register(HEAP_KIND_SEM, &sem_ops);
}

/* Our account: units we hold, as of wide tag me. */
static uint32_t account_units(uint64_t a, uint32_t me)
{
	return (uint32_t)(a >> 32) == me ? (uint32_t)a : 0;
}

static int undo_take(shmq_sem *sem, bool parked, int64_t timeout_ns)
{
	struct sem_shared *s = sem->s;
	shmq_heap *h = sem->ref.heap;
	uint32_t me = heap_owner(h), slot = slot_of(me);
	int r = undo_lock(h, s, timeout_ns);
	if (r)
		return r;
	/* A departed previous owner of our slot: its units go back first. */
	undo_give_back(h, s, slot, 0, false);
	undo_begin(s, slot);
	bool got = value_take(s, parked);
	if (got)
		atomic_store(&s->account[slot],
			     (uint64_t)me << 32 | (account_units(atomic_load(&s->account[slot]), me) + 1));
	atomic_store(&s->intent.active, 0);
	undo_unlock(h, s);
	return got ? 0 : -EAGAIN;
}

static bool try_undo(void *arg)
{
	shmq_sem *sem = arg;
	return (atomic_load(&sem->s->word) & VALUE_MASK) && undo_take(sem, false, 0) == 0;
}

int shmq_sem_acquire(shmq_sem *sem, int64_t timeout_ns)
{
	if (!sem)
		return -EINVAL;
	struct sem_shared *s = sem->s;
	bool (*try)(void *) = sem->undo ? try_undo : try_plain;
	void *arg = sem->undo ? (void *)sem : (void *)s;
	if (try(arg))
		return 0;
	/* Before waiting (or failing a poll): get back what holders known to
	 * be gone still had. */
	if (sem->undo && undo_lock(sem->ref.heap, s, 0) == 0) {
		undo_reclaim(sem->ref.heap, s, false);
		undo_unlock(sem->ref.heap, s);
		if (try(arg))
			return 0;
	}
	if (timeout_ns == 0)
		return -EAGAIN;
	int64_t deadline = wait_deadline(timeout_ns);
	if (spin(try, arg, deadline))
		return 0;
	int64_t next_check = wait_now() + WAIT_CHECK_NS;
	for (;;) {
		if (sem->undo ? (atomic_load(&s->word) & VALUE_MASK) &&
					undo_take(sem, true, remaining(deadline)) == 0
			      : value_take(s, true))
			return 0;
		if (wait_now() >= next_check) {
			next_check = wait_now() + WAIT_CHECK_NS;
			heap_sweep(sem->ref.heap);
			if (sem->undo && undo_lock(sem->ref.heap, s, remaining(deadline)) == 0) {
				undo_reclaim(sem->ref.heap, s, true);
				undo_unlock(sem->ref.heap, s);
			}
		}
		uint32_t w = atomic_load(&s->word);
		if (w & VALUE_MASK)
			continue;
		if (!(w & WAITERS_BIT) &&
		    !atomic_compare_exchange_strong(&s->word, &w, w | WAITERS_BIT))
			continue;
		/* Only with the bit set: a wake-up we took and leave unused
		 * must not leave others parked behind a clear bit. */
		if (wait_expired(deadline)) {
			if (atomic_load(&s->word) & VALUE_MASK)
				wait_wake(&s->word, 1);
			return -ETIMEDOUT;
		}
		wait_futex(&s->word, w | WAITERS_BIT, wait_slice(deadline, WAIT_CHECK_NS));
	}
}

int shmq_sem_release(shmq_sem *sem, uint32_t n)
{
	if (!sem || n == 0)
		return -EINVAL;
	struct sem_shared *s = sem->s;
	int err;
	if (!sem->undo) {
		uint32_t old = value_add(s, n, &err);
		if (!err)
			wake_after_add(s, old, n);
		return err;
	}
	shmq_heap *h = sem->ref.heap;
	uint32_t me = heap_owner(h), slot = slot_of(me);
	if ((err = undo_lock(h, s, -1)))
		return err;
	undo_begin(s, slot);
	uint32_t old = value_add(s, n, &err);
	if (!err) {
		uint32_t held = account_units(atomic_load(&s->account[slot]), me);
		uint32_t pay = held < n ? held : n;
		if (pay)
			atomic_store(&s->account[slot], (uint64_t)me << 32 | (held - pay));
	}
	atomic_store(&s->intent.active, 0);
	undo_unlock(h, s);
	if (!err)
		wake_after_add(s, old, n);
	return err;
}

int shmq_sem_value(shmq_sem *s)
{
	return s ? (int)(atomic_load(&s->s->word) & VALUE_MASK) : -EINVAL;
}

int shmq_sem_max(shmq_sem *s)
{
	return s ? (int)(s->s->max & VALUE_MASK) : -EINVAL;
}

/* -------------------------------------------------------------- Condition -- */

/* Waiters queue in a FIFO of records allocated from the heap, linked by
 * offsets and changed only under the condition's lock, each change one store
 * (a holder killed mid-change leaves a consistent list). A notifier marks a
 * record NOTIFIED before it unlinks it; the waiter unlinks its own record if
 * it is still there and frees it. */
struct cond_shared {
	struct mutex own;      /* the lock, when created without one */
	uint64_t lock_off;     /* the mutex used: own, or in obj->ref's object */
	_Atomic uint64_t head; /* first waiter record, 0: none */
};

enum { WAITING = 1, NOTIFIED = 2 };
/* Longest waiter list walked: longer is a cycle (a hostile heap). */
#define WAITERS_MAX (1u << 20)
struct cond_waiter {
	_Atomic uint32_t state; /* futex: WAITING, then NOTIFIED by a notifier */
	uint32_t owner;         /* the waiter's wide tag */
	_Atomic uint64_t next;
};

struct shmq_cond {
	struct heap_ref ref;
	struct cond_shared *c;
	shmq_lock lock;
};

struct cond_args {
	shmq_heap *heap;
	shmq_lock *lock;
};

static void cond_init(void *payload, void *arg)
{
	struct cond_shared *c = payload;
	const struct cond_args *a = arg;
	mutex_init(&c->own, MUTEX_RECURSIVE);
	c->lock_off = a->lock ? heap_off(a->heap, a->lock->m) : heap_off(a->heap, &c->own);
}

/* The handle's lock: the condition's own, or the linked object's mutex,
 * which must lie inside that object's payload. */
static int cond_bind(shmq_cond *cv)
{
	shmq_heap *h = cv->ref.heap;
	struct heap_obj *o = cv->ref.obj;
	uint64_t lo = cv->c->lock_off;
	if (!o->ref) {
		if (lo != heap_off(h, &cv->c->own))
			return -EPROTO;
		sync_lock_bind(&cv->lock, &cv->ref, &cv->c->own, false);
		return 0;
	}
	struct heap_ref lref;
	int err = heap_obj_open_at(h, o->ref, 0, &lref);
	if (err)
		return err;
	uint64_t start = lref.off + sizeof(struct heap_obj);
	if (lo < start || lo % 4 || lo + sizeof(struct mutex) > start + lref.obj->size) {
		heap_obj_close(&lref);
		return -EPROTO;
	}
	sync_lock_bind(&cv->lock, &lref, heap_at(h, lo, sizeof(struct mutex)), true);
	return 0;
}

static int cond_new(struct heap_ref *ref, shmq_cond **out)
{
	shmq_cond *cv = calloc(1, sizeof(*cv));
	int err = cv ? 0 : -ENOMEM;
	if (cv) {
		cv->ref = *ref;
		cv->c = ref->payload;
		err = cond_bind(cv);
	}
	if (err) {
		heap_obj_close(ref);
		free(cv);
		return err;
	}
	*out = cv;
	return 0;
}

int shmq_cond_create(shmq_heap *h, const char *name, shmq_lock *lock, shmq_cond **out)
{
	if (!out || (lock && lock->ref.heap != h))
		return -EINVAL;
	struct cond_args a = { h, lock };
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_COND, sizeof(struct cond_shared),
				  lock ? &lock->ref : NULL, cond_init, &a, &ref);
	return err ? err : cond_new(&ref, out);
}

int shmq_cond_open(shmq_heap *h, const char *name, shmq_cond **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_COND, &ref);
	if (!err)
		err = payload_fits(&ref, sizeof(struct cond_shared));
	return err ? err : cond_new(&ref, out);
}

int shmq_cond_close(shmq_cond *cv)
{
	if (!cv)
		return -EINVAL;
	if (cv->lock.own_ref)
		heap_obj_close(&cv->lock.ref);
	heap_obj_close(&cv->ref);
	free(cv);
	return 0;
}

const char *shmq_cond_name(shmq_cond *cv)
{
	return cv ? cv->ref.name : NULL;
}

shmq_lock *shmq_cond_lock(shmq_cond *cv)
{
	return cv ? &cv->lock : NULL;
}

static struct cond_waiter *waiter_at(shmq_heap *h, uint64_t off)
{
	return off && off % 8 == 0 ? heap_at(h, off, sizeof(struct cond_waiter)) : NULL;
}

/* The link that points at off (the head or a record's next), or, for off 0,
 * the list's last link. NULL if not found or the list is corrupt. */
static _Atomic uint64_t *waiter_link(shmq_cond *cv, uint64_t off)
{
	shmq_heap *h = cv->ref.heap;
	_Atomic uint64_t *link = &cv->c->head;
	for (uint32_t steps = 0; steps < WAITERS_MAX; steps++) {
		uint64_t cur = atomic_load(link);
		if (cur == off)
			return link;
		struct cond_waiter *w = waiter_at(h, cur);
		if (!w)
			return NULL;
		link = &w->next;
	}
	return NULL;
}

static bool cond_held(shmq_cond *cv)
{
	return mutex_is_mine(cv->lock.m, heap_owner(cv->ref.heap));
}

int shmq_cond_wait(shmq_cond *cv, int64_t timeout_ns)
{
	if (!cv)
		return -EINVAL;
	shmq_heap *h = cv->ref.heap;
	uint32_t me = heap_owner(h);
	if (!cond_held(cv))
		return -EPERM;
	uint64_t off;
	int err = heap_alloc(h, sizeof(struct cond_waiter), &off);
	if (err)
		return err;
	struct cond_waiter *w = heap_at(h, off, sizeof(*w));
	atomic_store(&w->state, WAITING);
	w->owner = me;
	atomic_store(&w->next, 0);
	_Atomic uint64_t *tail = waiter_link(cv, 0);
	if (!tail) {
		heap_free(h, off);
		return -EPROTO;
	}
	atomic_store(tail, off); /* enqueued: one store */
	int64_t deadline = wait_deadline(timeout_ns);
	uint32_t depth = mutex_unlock_all(cv->lock.m, me);
	while (atomic_load(&w->state) == WAITING && !wait_expired(deadline))
		wait_futex(&w->state, WAITING, wait_slice(deadline, WAIT_CHECK_NS));
	int r = mutex_lock(cv->lock.m, heap_parts(h), me, -1);
	mutex_restore(cv->lock.m, depth);
	_Atomic uint64_t *link = waiter_link(cv, off);
	if (link) /* timed out, or the notifier died before unlinking it */
		atomic_store(link, atomic_load(&w->next));
	bool notified = atomic_load(&w->state) == NOTIFIED;
	heap_free(h, off);
	if (r == -EOWNERDEAD)
		return r;
	return notified ? 0 : expired(timeout_ns);
}

int shmq_cond_notify(shmq_cond *cv, uint32_t n)
{
	if (!cv)
		return -EINVAL;
	if (!cond_held(cv))
		return -EPERM;
	shmq_heap *h = cv->ref.heap;
	struct part_table *t = heap_parts(h);
	int woken = 0;
	for (uint32_t steps = 0; (uint32_t)woken < n && steps < WAITERS_MAX; steps++) {
		uint64_t off = atomic_load(&cv->c->head);
		struct cond_waiter *w = waiter_at(h, off);
		if (!w)
			break;
		/* Waiters known to be gone take no notification; their records
		 * are freed here, since they never will be. */
		bool gone = part_wide_tag_gone(t, w->owner, true);
		if (!gone && atomic_load(&w->state) == WAITING) {
			atomic_store(&w->state, NOTIFIED);
			wait_wake(&w->state, 1);
			woken++;
		}
		atomic_store(&cv->c->head, atomic_load(&w->next));
		if (gone)
			heap_free(h, off);
	}
	return woken;
}

int shmq_cond_notify_all(shmq_cond *cv)
{
	return shmq_cond_notify(cv, UINT32_MAX);
}

/* ------------------------------------------------------------------ Event -- */

/* flag: set/clear by anyone. sets: bumped by every set, before it notifies
 * ec: a waiter that was waiting when set was called returns 0 even if a
 * clear came before it ran (as threading.Event does). */
struct event_shared {
	_Atomic uint32_t flag;
	_Atomic uint32_t ec; /* eventcount: set notifies it */
	_Atomic uint32_t sets;
};

struct shmq_event {
	struct heap_ref ref;
	struct event_shared *e;
};

static int event_new(struct heap_ref *ref, shmq_event **out)
{
	int err = payload_fits(ref, sizeof(struct event_shared));
	if (err)
		return err;
	shmq_event *e = malloc(sizeof(*e));
	if (!e) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	e->ref = *ref;
	e->e = ref->payload;
	*out = e;
	return 0;
}

int shmq_event_create(shmq_heap *h, const char *name, shmq_event **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_EVENT, sizeof(struct event_shared), NULL, NULL,
				  NULL, &ref);
	return err ? err : event_new(&ref, out);
}

int shmq_event_open(shmq_heap *h, const char *name, shmq_event **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_EVENT, &ref);
	return err ? err : event_new(&ref, out);
}

int shmq_event_close(shmq_event *e)
{
	if (!e)
		return -EINVAL;
	heap_obj_close(&e->ref);
	free(e);
	return 0;
}

const char *shmq_event_name(shmq_event *e)
{
	return e ? e->ref.name : NULL;
}

int shmq_event_set(shmq_event *e)
{
	if (!e)
		return -EINVAL;
	atomic_store(&e->e->flag, 1);
	atomic_fetch_add(&e->e->sets, 1);
	ec_notify(&e->e->ec);
	return 0;
}

int shmq_event_clear(shmq_event *e)
{
	if (!e)
		return -EINVAL;
	atomic_store(&e->e->flag, 0);
	return 0;
}

int shmq_event_is_set(shmq_event *e)
{
	return e ? atomic_load(&e->e->flag) != 0 : -EINVAL;
}

struct event_wait {
	struct event_shared *s;
	uint32_t sets; /* as of the wait's start */
};

static bool event_check(void *arg)
{
	struct event_wait *w = arg;
	return atomic_load(&w->s->flag) || atomic_load(&w->s->sets) != w->sets;
}

int shmq_event_wait(shmq_event *e, int64_t timeout_ns)
{
	if (!e)
		return -EINVAL;
	struct event_wait w = { e->e, atomic_load(&e->e->sets) };
	if (atomic_load(&w.s->flag))
		return 0;
	if (timeout_ns == 0)
		return -EAGAIN;
	int64_t deadline = wait_deadline(timeout_ns);
	if (spin(event_check, &w, deadline))
		return 0;
	for (;;) {
		uint32_t key = ec_prepare(&w.s->ec);
		if (event_check(&w))
			return 0;
		ec_wait(&w.s->ec, key, deadline);
		if (wait_expired(deadline)) /* the deadline, or an interruption */
			return event_check(&w) ? 0 : -ETIMEDOUT;
	}
}

/* ---------------------------------------------------------------- Barrier -- */

/* Lock-free: an arrival is one CAS on `state`; whoever ends a cycle (the last
 * arrival releasing it, or a breaker: a timed-out waiter, abort, reset, a
 * waiter that found a party dead) wins a CAS that moves state to the next
 * cycle, records the outcome, then raises `gate`, on which waiters spin and
 * park.
 * state: cycle << 32 | B_BROKEN | arrivals in this cycle. CAS by all.
 * gate: (last ended cycle + 1) in 31 bits | GATE_WAITERS. Only ever raised
 *   (CAS), by the ender of a cycle, or by a waiter repairing a dead ender.
 * outcomes: bit c % 32 set when cycle c was broken, cleared when released;
 *   written by the ender before it raises gate. Kept long enough for every
 *   waiter of c to read it: 31 more cycles need every party back.
 * waiting[i]: cycle << 32 | wide tag of the i-th arrival of that cycle,
 *   written by the arrival right after its CAS (the liveness checks skip
 *   entries of other cycles). */
#define B_BROKEN (1ull << 31)
#define B_COUNT 0x7fffffffull
#define GATE_WAITERS 0x80000000u
#define GATE_MASK 0x7fffffffu
#define STALE_CHECKS 20 /* a cycle ended but gate not raised for 1 s: an ender died */

struct barrier_shared {
	_Atomic uint64_t state;
	_Atomic uint32_t gate;
	_Atomic uint32_t outcomes;
	uint32_t parties; /* immutable */
	uint32_t pad;
	_Atomic uint64_t waiting[];
};

struct shmq_barrier {
	struct heap_ref ref;
	struct barrier_shared *b;
	uint32_t parties; /* validated copy */
};

static void barrier_init(void *payload, void *arg)
{
	struct barrier_shared *b = payload;
	b->parties = *(uint32_t *)arg;
}

static int barrier_new(struct heap_ref *ref, shmq_barrier **out)
{
	struct barrier_shared *s = ref->payload;
	int err = payload_fits(ref, sizeof(*s));
	if (err)
		return err;
	uint32_t parties = s->parties;
	if (parties == 0 || parties > SHMQ_BARRIER_MAX_PARTIES ||
	    ref->obj->size < sizeof(*s) + parties * sizeof(uint64_t)) {
		heap_obj_close(ref);
		return -EPROTO;
	}
	shmq_barrier *b = malloc(sizeof(*b));
	if (!b) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	b->ref = *ref;
	b->b = s;
	b->parties = parties;
	*out = b;
	return 0;
}

int shmq_barrier_create(shmq_heap *h, const char *name, uint32_t parties, shmq_barrier **out)
{
	if (!out || parties == 0 || parties > SHMQ_BARRIER_MAX_PARTIES)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_BARRIER,
				  sizeof(struct barrier_shared) + parties * sizeof(uint64_t), NULL,
				  barrier_init, &parties, &ref);
	return err ? err : barrier_new(&ref, out);
}

int shmq_barrier_open(shmq_heap *h, const char *name, shmq_barrier **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_BARRIER, &ref);
	return err ? err : barrier_new(&ref, out);
}

int shmq_barrier_close(shmq_barrier *b)
{
	if (!b)
		return -EINVAL;
	heap_obj_close(&b->ref);
	free(b);
	return 0;
}

const char *shmq_barrier_name(shmq_barrier *b)
{
	return b ? b->ref.name : NULL;
}

static uint32_t cycle_of(uint64_t s)
{
	return (uint32_t)(s >> 32);
}

/* Has gate g moved past cycle c (modulo 2^31)? */
static bool gate_passed(uint32_t g, uint32_t c)
{
	uint32_t d = ((g & GATE_MASK) - c) & GATE_MASK;
	return d != 0 && d < GATE_MASK / 2;
}

/* Cycle c has ended: raise gate past it (never lower it: a later cycle may
 * have ended first) and wake the parked. */
static void gate_raise(struct barrier_shared *s, uint32_t c)
{
	uint32_t g = atomic_load(&s->gate);
	while (!gate_passed(g, c))
		if (atomic_compare_exchange_weak(&s->gate, &g, (c + 1) & GATE_MASK)) {
			if (g & GATE_WAITERS)
				wait_wake(&s->gate, INT32_MAX);
			return;
		}
}

static void outcome_set(struct barrier_shared *s, uint32_t c, bool broken)
{
	uint32_t bit = 1u << (c % 32);
	if (broken)
		atomic_fetch_or(&s->outcomes, bit);
	else
		atomic_fetch_and(&s->outcomes, ~bit);
}

/* End the cycle of state old, released or broken; the next cycle opens
 * broken (a broken barrier stays so until reset) unless `reopen` (a reset:
 * the waiters of this cycle are broken, those who come next start a fresh
 * one, as Python's reset makes them wait out the draining). Fails if state is
 * no longer old. */
static bool cycle_finish(struct barrier_shared *s, uint64_t old, bool broken, bool reopen)
{
	uint32_t c = cycle_of(old);
	uint64_t want = (uint64_t)(c + 1) << 32 | (broken && !reopen ? B_BROKEN : 0);
	if (!atomic_compare_exchange_strong(&s->state, &old, want))
		return false;
	outcome_set(s, c, broken);
	gate_raise(s, c);
	return true;
}

static bool cycle_end(struct barrier_shared *s, uint64_t old, bool broken)
{
	return cycle_finish(s, old, broken, false);
}

/* Break the current cycle if it is still c and has waiters. */
static void cycle_break(struct barrier_shared *s, uint32_t c)
{
	uint64_t st = atomic_load(&s->state);
	while (cycle_of(st) == c && !(st & B_BROKEN) && !cycle_end(s, st, true))
		st = atomic_load(&s->state);
}

/* Is a party that arrived in cycle c gone? */
static bool party_died(shmq_barrier *b, uint32_t c, uint64_t n)
{
	struct part_table *t = heap_parts(b->ref.heap);
	for (uint64_t i = 0; i < n && i < b->parties; i++) {
		uint64_t w = atomic_load(&b->b->waiting[i]);
		if (cycle_of(w) == c && part_wide_tag_gone(t, (uint32_t)w, false))
			return true;
	}
	return false;
}

/* Look around while waiting for cycle c: a dead party breaks it; a cycle
 * that ended long ago without gate being raised had its ender die between
 * the two (outcome unknown: broken). */
static void barrier_check(shmq_barrier *b, uint32_t c, int *stale)
{
	struct barrier_shared *s = b->b;
	heap_sweep(b->ref.heap);
	uint64_t st = atomic_load(&s->state);
	if (cycle_of(st) == c) {
		if (party_died(b, c, st & B_COUNT))
			cycle_break(s, c);
	} else if (++*stale >= STALE_CHECKS) {
		outcome_set(s, c, true);
		gate_raise(s, c);
	}
}

static bool gate_check(void *arg)
{
	void **a = arg;
	return gate_passed(atomic_load_explicit((_Atomic uint32_t *)a[0], memory_order_acquire),
			   *(uint32_t *)a[1]);
}

/* Wait until cycle c ends. Returns 0, or -EAGAIN/-ETIMEDOUT if this wait
 * broke the cycle at its deadline (party: our own arrival is in it). */
static int gate_wait(shmq_barrier *b, uint32_t c, bool party, int64_t timeout_ns)
{
	struct barrier_shared *s = b->b;
	int64_t deadline = wait_deadline(timeout_ns);
	void *arg[2] = { &s->gate, &c };
	if (timeout_ns != 0 && spin(gate_check, arg, deadline))
		return 0;
	int64_t next_check = wait_now() + WAIT_CHECK_NS;
	int stale = 0;
	for (;;) {
		uint32_t g = atomic_load(&s->gate);
		if (gate_passed(g, c))
			return 0;
		if (wait_expired(deadline)) {
			uint64_t st = atomic_load(&s->state);
			if (cycle_of(st) == c && !(st & B_BROKEN)) {
				if (!party)
					return expired(timeout_ns);
				if (cycle_end(s, st, true)) /* our timeout breaks it */
					return expired(timeout_ns);
				continue;
			}
			deadline = wait_now() + WAIT_CHECK_NS; /* the ender is raising gate */
		}
		if (wait_now() >= next_check) {
			next_check = wait_now() + WAIT_CHECK_NS;
			barrier_check(b, c, &stale);
			continue;
		}
		if (!(g & GATE_WAITERS) &&
		    !atomic_compare_exchange_strong(&s->gate, &g, g | GATE_WAITERS))
			continue;
		wait_futex(&s->gate, g | GATE_WAITERS, wait_slice(deadline, WAIT_CHECK_NS));
	}
}

int shmq_barrier_wait_action(shmq_barrier *b, void (*action)(void *), void *arg,
			     int64_t timeout_ns)
{
	if (!b)
		return -EINVAL;
	struct barrier_shared *s = b->b;
	uint64_t st = atomic_load(&s->state);
	for (;;) {
		if (st & B_BROKEN)
			return -ECANCELED;
		uint64_t n = st & B_COUNT;
		if (n < b->parties) {
			if (atomic_compare_exchange_weak(&s->state, &st, st + 1))
				break;
			continue;
		}
		/* Full: its last party is running the action. Wait for the
		 * next cycle (or garbage in state: break it). */
		if (n > b->parties) {
			cycle_break(s, cycle_of(st));
			st = atomic_load(&s->state);
			continue;
		}
		int r = gate_wait(b, cycle_of(st), false, timeout_ns);
		if (r)
			return r;
		st = atomic_load(&s->state);
	}
	uint32_t c = cycle_of(st), idx = (uint32_t)(st & B_COUNT);
	atomic_store(&s->waiting[idx], (uint64_t)c << 32 | heap_owner(b->ref.heap));
	if (idx + 1 == b->parties) {
		/* Last to arrive: run the action, then release everyone. A death
		 * in it is seen by the waiters (our tag is in waiting[]). */
		if (action)
			action(arg);
		return cycle_end(s, st + 1, false) ? (int)idx : -ECANCELED;
	}
	int r = gate_wait(b, c, true, timeout_ns);
	if (r)
		return r;
	return atomic_load(&s->outcomes) & (1u << (c % 32)) ? -ECANCELED : (int)idx;
}

int shmq_barrier_wait(shmq_barrier *b, int64_t timeout_ns)
{
	return shmq_barrier_wait_action(b, NULL, NULL, timeout_ns);
}

int shmq_barrier_abort(shmq_barrier *b)
{
	if (!b)
		return -EINVAL;
	struct barrier_shared *s = b->b;
	uint64_t st = atomic_load(&s->state);
	while (!(st & B_BROKEN)) {
		if (st & B_COUNT ? cycle_end(s, st, true)
				 : atomic_compare_exchange_weak(&s->state, &st, st | B_BROKEN))
			break;
		st = atomic_load(&s->state);
	}
	return 0;
}

int shmq_barrier_reset(shmq_barrier *b)
{
	if (!b)
		return -EINVAL;
	struct barrier_shared *s = b->b;
	uint64_t st = atomic_load(&s->state);
	for (;;) {
		if (!(st & B_BROKEN) && (st & B_COUNT)) { /* waiters: break them, reopen */
			if (cycle_finish(s, st, true, true))
				return 0;
		} else if (atomic_compare_exchange_weak(&s->state, &st,
							(uint64_t)cycle_of(st) << 32)) {
			return 0;
		}
		st = atomic_load(&s->state);
	}
}

int shmq_barrier_n_waiting(shmq_barrier *b)
{
	if (!b)
		return -EINVAL;
	uint64_t st = atomic_load(&b->b->state);
	uint64_t n = st & B_BROKEN ? 0 : st & B_COUNT;
	return (int)(n < b->parties ? n : b->parties);
}

int shmq_barrier_parties(shmq_barrier *b)
{
	return b ? (int)b->parties : -EINVAL;
}

int shmq_barrier_broken(shmq_barrier *b)
{
	return b ? (atomic_load(&b->b->state) & B_BROKEN) != 0 : -EINVAL;
}
