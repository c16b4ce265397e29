/* Wait layer: CLOCK_MONOTONIC deadlines, shared futexes, eventcounts. */
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EC_WAITERS 0x80000000u

int64_t wait_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t wait_deadline(int64_t timeout_ns)
{
	if (timeout_ns < 0)
		return WAIT_FOREVER;
	int64_t now = wait_now();
	return timeout_ns > WAIT_FOREVER - now ? WAIT_FOREVER : now + timeout_ns;
}

bool wait_expired(int64_t deadline)
{
	return deadline != WAIT_FOREVER && wait_now() >= deadline;
}

static struct timespec to_timespec(int64_t ns)
{
	return (struct timespec){ .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
}

void wait_nap(int64_t ns)
{
	struct timespec ts = to_timespec(wait_now() + ns);
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
		;
}

uint32_t ec_prepare(_Atomic uint32_t *ec)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_relaxed);
	while (!(w & EC_WAITERS) &&
	       !atomic_compare_exchange_weak_explicit(ec, &w, w | EC_WAITERS, memory_order_seq_cst,
						      memory_order_relaxed))
		;
	atomic_thread_fence(memory_order_seq_cst);
	return w | EC_WAITERS;
}

int ec_wait(_Atomic uint32_t *ec, uint32_t key, int64_t deadline)
{
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a
	 * signal-interrupted wait resumes with the same deadline. */
	struct timespec abs = to_timespec(deadline);
	long r = syscall(SYS_futex, (uint32_t *)ec, FUTEX_WAIT_BITSET, key,
			 deadline == WAIT_FOREVER ? NULL : &abs, NULL, FUTEX_BITSET_MATCH_ANY);
	if (r < 0 && errno == ETIMEDOUT)
		return -ETIMEDOUT;
	return 0; /* woken, value moved (EAGAIN) or signal (EINTR): caller re-checks */
}

void ec_wake_all(_Atomic uint32_t *ec)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_relaxed);
	/* Clear the bit and move the sequence so a waiter between its re-check
	 * and its FUTEX_WAIT sees a changed word and does not sleep. */
	while (!atomic_compare_exchange_weak_explicit(ec, &w, (w + 1) & ~EC_WAITERS,
						      memory_order_seq_cst, memory_order_relaxed))
		;
	syscall(SYS_futex, (uint32_t *)ec, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}
