/* Wait layer: deadlines, futexes and eventcounts. Knows nothing of rings. */
#ifndef SHMQ_WAIT_H
#define SHMQ_WAIT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define WAIT_FOREVER INT64_MAX

/* Monotonic clock in ns. */
int64_t wait_now(void);
/* Absolute CLOCK_MONOTONIC deadline for a relative timeout (-1: forever). */
int64_t wait_deadline(int64_t timeout_ns);
bool wait_expired(int64_t deadline);
/* The earlier of the deadline and slice_ns from now: where a wait that must
 * look around every slice_ns sleeps until. */
int64_t wait_slice(int64_t deadline, int64_t slice_ns);
/* Sleep ns (restarts after signals). */
void wait_nap(int64_t ns);

static inline void wait_pause(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ __volatile__("yield");
#endif
}

/* Eventcount on a shared 32-bit futex word: bit 31 says "someone may be
 * parked", bits 0..30 count notifications. A waiter calls ec_prepare(),
 * re-checks its condition (the seq_cst fence in ec_prepare orders that
 * re-check after the announcement), then ec_wait() with the key. A notifier
 * makes its condition true with a seq_cst store or RMW, then ec_notify(),
 * which costs one load and no syscall unless the bit is set. There is no
 * waiter count: a waiter killed while parked leaves at most one spurious
 * wake-up behind, never a leak. */
uint32_t ec_prepare(_Atomic uint32_t *ec);
/* Park until notified or the deadline passes.
 * Returns 0 when woken or the word already moved, -ETIMEDOUT at the deadline. */
int ec_wait(_Atomic uint32_t *ec, uint32_t key, int64_t deadline);
void ec_wake_all(_Atomic uint32_t *ec);

/* Park on several eventcounts at once (each prepared with ec_prepare, keys
 * from it) until one is notified or the deadline passes: futex_waitv where
 * the kernel has it, else short waits on one word at a time (a notification
 * of another word is then seen within 1 ms). Returns 0 (woken, or a word had
 * already moved: re-check), -ETIMEDOUT, -EINVAL (n is 0 or too big). */
#define EC_WAIT_MANY_MAX 128u
int ec_wait_many(_Atomic uint32_t *const *words, const uint32_t *keys, unsigned n,
		 int64_t deadline);

/* Park on a plain futex word while it holds val, until woken or the
 * deadline. Returns 0 (woken, moved, or a signal: re-check) or -ETIMEDOUT. */
int wait_futex(_Atomic uint32_t *word, uint32_t val, int64_t deadline);
/* Wake up to n waiters parked on word. */
void wait_wake(_Atomic uint32_t *word, int n);

/* How often a waiter checks that the processes it waits for are alive; also
 * the longest a parked waiter sleeps between such checks. */
#define WAIT_CHECK_NS (50 * 1000 * 1000)

/* Poll try(arg) for up to spin_ns or until the deadline, yielding the core
 * every WAIT_SPIN_POLLS polls (a peer that shares our core can then run).
 * Returns true once try did; false: the caller parks. */
#define WAIT_SPIN_POLLS 16
bool wait_spin(bool (*try)(void *), void *arg, int64_t deadline, int64_t spin_ns);

#define EC_WAITERS_BIT 0x80000000u

static inline void ec_notify(_Atomic uint32_t *ec)
{
	if (atomic_load_explicit(ec, memory_order_seq_cst) & EC_WAITERS_BIT)
		ec_wake_all(ec);
}

#endif
