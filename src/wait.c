/* Wait layer: CLOCK_MONOTONIC deadlines, shared futexes, eventcounts. */
#include "wait.h"

#include "shmq.h"
#include "testhook.h"

#include <errno.h>
#include <stdatomic.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EC_WAITERS EC_WAITERS_BIT

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

int64_t wait_slice(int64_t deadline, int64_t slice_ns)
{
	int64_t end = wait_now() + slice_ns;
	return deadline < end ? deadline : end;
}

/* Interruption (shmq_set_interrupt_check). The check is process-wide, set
 * once by a runtime before its threads wait. A sleep that a signal or its
 * slice's end cut short leaves `unusual` on the thread; the next deadline
 * test of a wait that has a deadline asks the check then (not on every
 * wake-up: a check may be costly, Python's takes the GIL). The mark stays
 * until shmq_interrupted() reads it, so every finite wait of the cut call
 * (and of its clean-up) ends at once instead of sleeping again. */
static int (*_Atomic interrupt_check)(void);
static _Thread_local bool unusual, interrupted;

void shmq_set_interrupt_check(int (*check)(void))
{
	atomic_store(&interrupt_check, check);
}

int shmq_interrupted(void)
{
	bool was = interrupted;
	interrupted = unusual = false;
	return was;
}

bool wait_expired(int64_t deadline)
{
	if (deadline == WAIT_FOREVER)
		return false;
	if (unusual && !interrupted) {
		unusual = false;
		int (*check)(void) = atomic_load_explicit(&interrupt_check, memory_order_relaxed);
		interrupted = check && check();
	}
	return interrupted || wait_now() >= deadline;
}

/* What a futex sleep that returned r means: -ETIMEDOUT at its deadline (a
 * slice's or the caller's), 0 otherwise: the caller re-checks. */
static int slept(long r)
{
	if (r >= 0)
		return 0;
	if (errno == EINTR || errno == ETIMEDOUT)
		unusual = true;
	return errno == ETIMEDOUT ? -ETIMEDOUT : 0; /* EAGAIN: the word had moved */
}

bool wait_spin(bool (*try)(void *), void *arg, int64_t deadline, int64_t spin_ns)
{
	int64_t end = wait_now() + spin_ns;
	if (deadline < end)
		end = deadline;
	for (;;) {
		for (int i = 0; i < WAIT_SPIN_POLLS; i++) {
			wait_pause();
			if (try(arg))
				return true;
		}
		if (wait_now() >= end)
			return false;
		sched_yield();
	}
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

/* Set bit on the word (unless set) and return the key: the word with it. */
static uint32_t ec_announce(_Atomic uint32_t *ec, uint32_t bit)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_relaxed);
	while (!(w & bit) &&
	       !atomic_compare_exchange_weak_explicit(ec, &w, w | bit, memory_order_seq_cst,
						      memory_order_relaxed))
		;
	atomic_thread_fence(memory_order_seq_cst);
	return w | bit;
}

uint32_t ec_prepare(_Atomic uint32_t *ec)
{
	return ec_announce(ec, EC_WAITERS);
}

uint32_t ec_prepare_one(_Atomic uint32_t *ec)
{
	return ec_announce(ec, EC_ONE_BIT);
}

int ec_wait(_Atomic uint32_t *ec, uint32_t key, int64_t deadline)
{
	return wait_futex(ec, key, deadline);
}

int wait_futex(_Atomic uint32_t *word, uint32_t val, int64_t deadline)
{
	/* FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time, so a
	 * signal-interrupted wait resumes with the same deadline. */
	struct timespec abs = to_timespec(deadline);
	long r = syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_BITSET, val,
			 deadline == WAIT_FOREVER ? NULL : &abs, NULL, FUTEX_BITSET_MATCH_ANY);
	return slept(r); /* woken, moved (EAGAIN), signal: caller re-checks */
}

static long futex_wake(_Atomic uint32_t *word, int n)
{
	return syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, n, NULL, NULL, 0);
}

void wait_wake(_Atomic uint32_t *word, int n)
{
	futex_wake(word, n);
}

void ec_wake_all(_Atomic uint32_t *ec)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_relaxed);
	/* Clear the bits and move the sequence so a waiter between its re-check
	 * and its FUTEX_WAIT sees a changed word and does not sleep. */
	while (!atomic_compare_exchange_weak_explicit(ec, &w, (w + 1) & EC_SEQ_MASK,
						      memory_order_seq_cst, memory_order_relaxed))
		;
	futex_wake(ec, INT_MAX);
}

void ec_wake_some(_Atomic uint32_t *ec, int n)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_relaxed), moved;
	do {
		if (w & EC_WAITERS) { /* announced meanwhile: they want every wake-up */
			ec_wake_all(ec);
			return;
		}
		if (!(w & EC_ONE_BIT))
			return; /* a racing notifier found nobody asleep */
		moved = ((w + 1) & EC_SEQ_MASK) | EC_ONE_BIT;
	} while (!atomic_compare_exchange_weak_explicit(ec, &w, moved, memory_order_seq_cst,
							memory_order_relaxed));
	long woke = futex_wake(ec, n);
	if (woke > 0) {
		/* Hand the core to the woken waiter when the scheduler queued it
		 * on ours (it mostly does: wake-affine), as a pipe's writer is
		 * preempted by the reader its sync wake-up woke; else this
		 * returns at once. Measured: a parked consumer's one-way latency
		 * 8.2 -> 5.4 us, pipe(2) 6.9 us (bench/RESULTS.md). */
		sched_yield();
		return;
	}
	if (woke < 0)
		return;
	/* Nobody asleep: clear the bit, unless the word moved since (its mover
	 * decides). Whoever went to sleep between our wake and the clear did so
	 * behind the bit we clear: wake them to announce themselves again. */
	if (atomic_compare_exchange_strong_explicit(ec, &moved, moved & ~EC_ONE_BIT,
						    memory_order_seq_cst, memory_order_relaxed))
		futex_wake(ec, INT_MAX);
}

/* futex_waitv (Linux 5.16) waits on up to 128 words at once. Without it, wait
 * on one word at a time in short slices: another word's wake-up is then seen
 * within WAITV_FALLBACK_NS. */
#define WAITV_FALLBACK_NS (1000 * 1000)

#ifdef SHMQ_TEST_HOOKS
bool shmq_test_no_waitv;
#endif

static _Atomic int waitv_missing; /* set once the kernel said ENOSYS */

static int wait_one_slice(_Atomic uint32_t *const *words, const uint32_t *keys, unsigned n,
			  int64_t deadline)
{
	static _Atomic unsigned turn;
	unsigned i = atomic_fetch_add_explicit(&turn, 1, memory_order_relaxed) % n;
	int r = ec_wait(words[i], keys[i], wait_slice(deadline, WAITV_FALLBACK_NS));
	return r == -ETIMEDOUT && wait_expired(deadline) ? -ETIMEDOUT : 0;
}

int ec_wait_many(_Atomic uint32_t *const *words, const uint32_t *keys, unsigned n,
		 int64_t deadline)
{
	if (n == 0 || n > EC_WAIT_MANY_MAX)
		return -EINVAL;
	bool missing = atomic_load_explicit(&waitv_missing, memory_order_relaxed);
#ifdef SHMQ_TEST_HOOKS
	missing |= shmq_test_no_waitv;
#endif
#ifdef SYS_futex_waitv
	if (!missing) {
		struct futex_waitv w[EC_WAIT_MANY_MAX];
		for (unsigned i = 0; i < n; i++)
			w[i] = (struct futex_waitv){ .val = keys[i],
						     .uaddr = (uintptr_t)words[i],
						     .flags = FUTEX_32 }; /* shared: no PRIVATE */
		struct timespec abs = to_timespec(deadline);
		long r = syscall(SYS_futex_waitv, w, n, 0, deadline == WAIT_FOREVER ? NULL : &abs,
				 CLOCK_MONOTONIC);
		if (r >= 0 || errno != ENOSYS)
			return slept(r);
		atomic_store_explicit(&waitv_missing, 1, memory_order_relaxed);
	}
#endif
	return wait_one_slice(words, keys, n, deadline);
}
