/* Participant layer: who holds a segment, with which roles, and who is dead.
 *
 * Every open handle owns one slot of the segment's participant table. A slot's
 * id packs pid (22 bits), roles (2 bits) and the process start time in clock
 * ticks (40 bits): a reused pid has another start time, so it is never taken
 * for the dead process. A process that exec()s loses its close-on-exec segment
 * fd; the liveness check sees that through /proc/PID/fd and counts it as gone.
 */
#ifndef SHMQ_PART_H
#define SHMQ_PART_H

#include "seg.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Owner tag stored in ring cells: slot (10 bits) | gen (6 bits). */
#define PART_TAG_BITS 16u

struct part_counts {
	uint32_t producers, consumers;
};

/* Claim a slot for this process with roles. Returns the slot index or -EUSERS.
 * for_child: claimed by a parent about to fork, for the child, which must
 * part_adopt() it; until then it counts as alive for PART_FORK_GRACE_S. */
int part_claim(struct seg *s, int roles, bool for_child);
void part_adopt(struct seg *s, int slot);
#define PART_FORK_GRACE_S 5
/* Change the roles of our own slot; release it (roles -1). */
void part_set_roles(struct seg *s, int slot, int roles);
void part_release(struct seg *s, int slot);
/* The tag the ring writes into cells owned by this slot. */
uint32_t part_tag(struct seg *s, int slot);
/* Count roles over the table (no liveness checks: cheap). */
struct part_counts part_count(struct seg *s);
/* JoinableQueue: messages got and not yet marked done by live handles; *lost
 * gets those of handles that closed or died (they will never be done). A
 * departed owner's count moves from its free slot to the header's `lost` when
 * the slot is claimed again; in between it is counted here as lost. */
uint64_t part_held(struct seg *s, uint64_t *lost);
/* Check the liveness of every slot holding any of roles (0: every slot) and
 * reap the dead (their roles end). Returns how many were reaped. Costs a few
 * syscalls per participant checked. */
int part_reap_dead(struct seg *s, int roles);
/* part_reap_dead(s, roles), by at most one waiter of all processes per
 * period_ns: waiters on a segment share the sweeps instead of each scanning
 * the table. */
void part_sweep(struct seg *s, int roles, int64_t period_ns);
/* Is the owner named by a cell tag gone (closed, dead or exec'd)? */
bool part_tag_gone(struct seg *s, uint32_t tag);
/* The pid of the owner named by a tag (0 if the slot is free). */
pid_t part_tag_pid(struct seg *s, uint32_t tag);

#endif
