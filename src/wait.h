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

/* Eventcount on a shared 32-bit futex word: bit 31 says "someone who must
 * see every notification may be parked" (ec_prepare), bit 30 "someone of
 * whom one per notified item is enough may be parked" (ec_prepare_one),
 * bits 0..29 count notifications. A waiter calls ec_prepare() or
 * ec_prepare_one(), re-checks its condition (the seq_cst fence in them orders
 * that re-check after the announcement), then ec_wait() with the key. A
 * notifier makes its condition true with a seq_cst store or RMW, then
 * ec_notify() or ec_notify_n(), which cost one load and no syscall unless a
 * bit is set. There is no waiter count: a waiter killed while parked leaves
 * at most one spurious wake-up behind, never a leak.
 *
 * Wake-one (bit 30): the kernel's queue of sleepers is the count. A notifier
 * moves the sequence (a waiter between its re-check and its FUTEX_WAIT then
 * does not sleep) keeping the bit, and wakes n. Only a FUTEX_WAKE that finds
 * nobody asleep clears the bit, and then wakes everyone who slipped into the
 * kernel between that wake and the clear, so no sleeper is ever left behind
 * a clear bit (tests/model/ring.pml). A woken waiter killed before it takes
 * its item leaves the item to the next notification or to a sleeper's next
 * WAIT_CHECK_NS look. */
uint32_t ec_prepare(_Atomic uint32_t *ec);
uint32_t ec_prepare_one(_Atomic uint32_t *ec);
/* Park until notified or the deadline passes.
 * Returns 0 when woken or the word already moved, -ETIMEDOUT at the deadline. */
int ec_wait(_Atomic uint32_t *ec, uint32_t key, int64_t deadline);
void ec_wake_all(_Atomic uint32_t *ec);
/* Wake up to n of the bit-30 waiters (see above); when it woke one, yield
 * the core, which the scheduler mostly gives the woken waiter (what a pipe's
 * sync wake-up does). */
void ec_wake_some(_Atomic uint32_t *ec, int n);

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
#define EC_ONE_BIT 0x40000000u
#define EC_SEQ_MASK 0x3fffffffu

/* Wake every waiter. Returns true when ec_prepare waiters were woken (see
 * ec_notify_n). */
static inline bool ec_notify(_Atomic uint32_t *ec)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_seq_cst);
	if (w & (EC_WAITERS_BIT | EC_ONE_BIT))
		ec_wake_all(ec);
	return w & EC_WAITERS_BIT;
}

/* n items became available: wake every ec_prepare waiter and n of the
 * ec_prepare_one waiters. Returns true when ec_prepare waiters were woken
 * (eventfd registrants are among them, see efd.c). */
static inline bool ec_notify_n(_Atomic uint32_t *ec, int n)
{
	uint32_t w = atomic_load_explicit(ec, memory_order_seq_cst);
	if (w & EC_WAITERS_BIT) {
		ec_wake_all(ec);
		return true;
	}
	if (w & EC_ONE_BIT)
		ec_wake_some(ec, n);
	return false;
}

#endif
