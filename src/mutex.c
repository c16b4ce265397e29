/* Robust mutex core (see mutex.h). */
#include "mutex.h"
#include "wait.h"

#include <errno.h>

#define M_HELD (1u << 30)
#define M_WAITERS (1u << 31)
#define M_TAG (M_HELD - 1)
/* A hand-off caught while spinning costs well under a microsecond, a park
 * and wake-up ~20 us on the VMs we measured: spin about that long. */
#define SPIN_NS (10 * 1000)

/* Threads are numbered per process from 1, lazily: cheaper than gettid()
 * (a syscall) on every acquire. A forked child keeps its thread's number,
 * but its owner tag differs (its own participant slot). */
static _Atomic uint32_t threads_numbered;
static _Thread_local uint32_t thread_number;

static uint32_t self_thread(void)
{
	if (!thread_number)
		thread_number = atomic_fetch_add_explicit(&threads_numbered, 1,
							  memory_order_relaxed) + 1;
	return thread_number;
}

void mutex_init(struct mutex *m, uint32_t flags)
{
	atomic_init(&m->word, 0);
	atomic_init(&m->thread, 0);
	atomic_init(&m->count, 0);
	m->flags = flags;
}

static int took(struct mutex *m, int res)
{
	atomic_store_explicit(&m->thread, self_thread(), memory_order_relaxed);
	atomic_store_explicit(&m->count, 1, memory_order_relaxed);
	return res;
}

static bool try_take(struct mutex *m, uint32_t want)
{
	uint32_t w = 0;
	return atomic_compare_exchange_strong_explicit(&m->word, &w, want, memory_order_acquire,
						       memory_order_relaxed);
}

/* The holder recorded in w is gone (or w is garbage): take the word over,
 * with the waiters bit set (others may be parked behind the dead holder).
 * Fails if w changed meanwhile. */
static bool take_over(struct mutex *m, uint32_t w, uint32_t me)
{
	return atomic_compare_exchange_strong_explicit(&m->word, &w, me | M_HELD | M_WAITERS,
						       memory_order_acquire, memory_order_relaxed);
}

static bool holder_gone(struct part_table *t, uint32_t w, bool cheap_only)
{
	if (!(w & M_HELD))
		return true; /* nonzero without the held bit: garbage */
	return part_wide_tag_gone(t, w & M_TAG, cheap_only);
}

struct take_arg {
	struct mutex *m;
	uint32_t want;
};

static bool try_free(void *arg)
{
	struct take_arg *a = arg;
	return atomic_load_explicit(&a->m->word, memory_order_relaxed) == 0 && try_take(a->m, a->want);
}

static int lock_slow(struct mutex *m, struct part_table *t, uint32_t me, int64_t timeout_ns)
{
	int64_t deadline = wait_deadline(timeout_ns);
	uint32_t w = atomic_load(&m->word);
	/* Without a syscall first: the table may already show the holder gone. */
	if (w && holder_gone(t, w, true) && take_over(m, w, me))
		return took(m, -EOWNERDEAD);
	if (timeout_ns == 0)
		return -EAGAIN;
	struct take_arg arg = { m, me | M_HELD };
	if (wait_spin(try_free, &arg, deadline, SPIN_NS))
		return took(m, 0);
	int64_t next_check = wait_now() + WAIT_CHECK_NS;
	for (;;) {
		w = atomic_load(&m->word);
		if (w == 0) {
			/* We may have been woken with others still parked, and
			 * cannot know: keep the waiters bit (one spare wake-up
			 * at worst). */
			if (try_take(m, me | M_HELD | M_WAITERS))
				return took(m, 0);
			continue;
		}
		bool check = wait_now() >= next_check;
		if (holder_gone(t, w, !check)) {
			if (take_over(m, w, me))
				return took(m, -EOWNERDEAD);
			continue;
		}
		if (check)
			next_check = wait_now() + WAIT_CHECK_NS;
		if (!(w & M_WAITERS)) {
			uint32_t want = w | M_WAITERS;
			if (!atomic_compare_exchange_strong(&m->word, &w, want))
				continue;
			w = want;
		}
		if (wait_expired(deadline)) {
			/* A wake-up meant for the next waiter may have come to
			 * us as we leave: pass it on if the mutex is free. */
			if (atomic_load(&m->word) == 0)
				wait_wake(&m->word, 1);
			return -ETIMEDOUT;
		}
		wait_futex(&m->word, w, wait_slice(deadline, WAIT_CHECK_NS));
	}
}

int mutex_lock(struct mutex *m, struct part_table *t, uint32_t me, int64_t timeout_ns)
{
	me &= M_TAG;
	if (try_take(m, me | M_HELD))
		return took(m, 0);
	if (m->flags & MUTEX_RECURSIVE && mutex_is_mine(m, me)) {
		uint32_t c = atomic_load_explicit(&m->count, memory_order_relaxed);
		if (c == UINT32_MAX)
			return -EOVERFLOW;
		atomic_store_explicit(&m->count, c + 1, memory_order_relaxed);
		return 0;
	}
	return lock_slow(m, t, me, timeout_ns);
}

int mutex_unlock(struct mutex *m, uint32_t me)
{
	me &= M_TAG;
	uint32_t w = atomic_load_explicit(&m->word, memory_order_relaxed);
	if (!(w & M_HELD))
		return -EPERM;
	if (m->flags & MUTEX_RECURSIVE) {
		if (!mutex_is_mine(m, me))
			return -EPERM;
		uint32_t c = atomic_load_explicit(&m->count, memory_order_relaxed);
		if (c > 1) {
			atomic_store_explicit(&m->count, c - 1, memory_order_relaxed);
			return 0;
		}
	}
	atomic_store_explicit(&m->thread, 0, memory_order_relaxed);
	atomic_store_explicit(&m->count, 0, memory_order_relaxed);
	/* A plain Lock may be released by anyone: two racing releasers of one
	 * acquire must not both succeed. */
	while (!atomic_compare_exchange_weak_explicit(&m->word, &w, 0, memory_order_release,
						      memory_order_relaxed))
		if (!(w & M_HELD))
			return -EPERM;
	if (w & M_WAITERS)
		wait_wake(&m->word, 1);
	return 0;
}

bool mutex_is_mine(struct mutex *m, uint32_t me)
{
	uint32_t w = atomic_load_explicit(&m->word, memory_order_acquire);
	return (w & M_HELD) && (w & M_TAG) == (me & M_TAG) &&
	       atomic_load_explicit(&m->thread, memory_order_relaxed) == self_thread();
}

bool mutex_held(struct mutex *m)
{
	return atomic_load_explicit(&m->word, memory_order_acquire) & M_HELD;
}

uint32_t mutex_unlock_all(struct mutex *m, uint32_t me)
{
	uint32_t depth = atomic_load_explicit(&m->count, memory_order_relaxed);
	if (depth == 0)
		depth = 1;
	atomic_store_explicit(&m->count, 1, memory_order_relaxed);
	mutex_unlock(m, me);
	return depth;
}

void mutex_restore(struct mutex *m, uint32_t depth)
{
	atomic_store_explicit(&m->count, depth, memory_order_relaxed);
}
