/* Robust mutex core: one futex word in shared memory that names its holder
 * by participant tag, so a waiter can tell a dead holder from a slow one.
 * Used by the heap's own directory lock and by Lock, RLock, Condition and
 * the arrays' locks (sync.c, array.c): one copy of the mechanism.
 *
 * Why not the kernel's robust futex list: glibc owns each thread's list
 * (set_robust_list) for its own robust pthread mutexes, a Python Lock may be
 * released by another thread or process than the one that took it (the list
 * is per thread), and a holder that unmaps the heap makes the kernel skip the
 * entry. Owner tags in the participant table survive all of these: the
 * liveness check (part.c) sees death, exec, a closed heap handle and a
 * reused pid alike.
 */
#ifndef SHMQ_MUTEX_H
#define SHMQ_MUTEX_H

#include "part.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define MUTEX_RECURSIVE 1u

/* In shared memory, 16 bytes.
 * word: 0 free; else M_HELD | holder's wide tag (part_wide_tag), plus
 *   M_WAITERS when someone may be parked. CAS by acquirers (acquire
 *   ordering), exchanged to 0 by the releaser (release ordering).
 * thread: the holder's thread number (process-local numbering, see
 *   mutex.c): written by the holder after it took the word, cleared before it
 *   lets go. Read by threads of the same process to tell whose it is.
 * count: RLock depth, written only by the holder.
 * flags: MUTEX_RECURSIVE, written once at creation. */
struct mutex {
	_Atomic uint32_t word;
	_Atomic uint32_t thread;
	_Atomic uint32_t count;
	uint32_t flags;
};

void mutex_init(struct mutex *m, uint32_t flags);
/* Take the mutex as owner tag `me` (a wide tag of table t) within timeout_ns.
 * Returns 0; -EOWNERDEAD (taken from a holder that died: the caller holds
 * it); -EAGAIN (timeout 0), -ETIMEDOUT; -EOVERFLOW (recursion too deep). A
 * holder's death is noticed within CHECK_NS of parking (50 ms), at once if
 * the table already shows it. A word holding garbage is taken over as if its
 * holder had died. */
int mutex_lock(struct mutex *m, struct part_table *t, uint32_t me, int64_t timeout_ns);
/* Returns 0; -EPERM (not held; recursive: not held by this thread of me). */
int mutex_unlock(struct mutex *m, uint32_t me);
/* Held by this thread of `me`? */
bool mutex_is_mine(struct mutex *m, uint32_t me);
bool mutex_held(struct mutex *m);
/* Condition support: release every level (returns the depth to restore),
 * and restore the depth after a mutex_lock. The caller holds the mutex. */
uint32_t mutex_unlock_all(struct mutex *m, uint32_t me);
void mutex_restore(struct mutex *m, uint32_t depth);

#endif
