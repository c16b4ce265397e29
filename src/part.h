/* Participant layer: who holds a segment, with which roles, and who is dead.
 *
 * Every open handle owns one slot of a participant table that lives in the
 * segment it attaches to (a queue segment or a heap). A slot's id packs pid
 * (22 bits), roles (2 bits) and the process start time in clock ticks (40
 * bits): a reused pid has another start time, so it is never taken for the
 * dead process. A process that exec()s loses its close-on-exec segment fd; the
 * liveness check sees that through /proc/PID/fd and counts it as gone.
 *
 * The table is one mechanism for every kind of segment: struct part_table
 * says where the slots and the shared counters are, and which hooks the
 * segment's layer wants run when membership changes or a dead slot is reaped.
 */
#ifndef SHMQ_PART_H
#define SHMQ_PART_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* One open handle: `id` packs pid, roles and process start time (see part.c);
 * 0 means the slot is free. Written by its owner (claim, roles, release) and
 * by whoever reaps a dead owner, always with CAS. */
struct seg_part {
	_Atomic uint64_t id;
	_Atomic uint32_t gen; /* bumped at every claim: tells reuse of the slot */
	_Atomic int32_t fdno; /* the owner's fd on the segment (liveness check) */
	/* Nonzero while claimed by a parent for a child being forked and not yet
	 * resolved to the child's pid: the CLOCK_MONOTONIC second of the claim
	 * (+1). The parent clears it once it knows the child, the child when it
	 * adopts the slot. */
	_Atomic uint32_t forking;
	/* The owner's file position on fdno (see struct seg.token). */
	_Atomic uint32_t token;
	/* JoinableQueue: messages this handle got and has not marked done.
	 * Written only by the owner, or by the next claimant of the slot once
	 * the owner is gone (which counts them as lost, see part_claim). On a
	 * line of its own slot: consumers write it at every get. */
	_Atomic uint32_t held;
	/* The owner's eventfd number + 1 if it registered one (efd.c). */
	_Atomic int32_t efd;
	char pad[32];
};
_Static_assert(sizeof(struct seg_part) == 64, "one participant per cache line");

/* Owner tag stored in ring cells: slot (10 bits) | gen (6 bits). */
#define PART_TAG_BITS 16u
/* Owner tag stored in lock words: slot (10 bits) | gen (20 bits). */
#define PART_WIDE_TAG_BITS 30u

struct part_table;
struct part_hooks {
	/* Roles changed (claim, shutdown, close, reap); `dropped` are the roles
	 * some handle gave up or lost by death. May be NULL. */
	void (*changed)(struct part_table *t, int dropped);
	/* A dead (or exec'd) owner of slot with generation gen was reaped: its
	 * id is already 0. Called by the reaper, outside any part.c lock. May be
	 * NULL. */
	void (*reaped)(struct part_table *t, uint32_t slot, uint32_t gen);
};

/* Process-local view of a table. Filled by the segment's layer after it
 * mapped and validated the segment; every pointer points into the mapping. */
struct part_table {
	struct seg_part *parts;
	uint32_t nparts;        /* a power of two, at most SHMQ_MAX_PARTICIPANTS */
	int fd;                 /* our fd on the segment (liveness: /proc/PID/fd) */
	uint32_t token;         /* our file position on fd (see struct seg.token) */
	dev_t dev;              /* identity of the segment file */
	ino_t ino;
	/* Shared words, in the segment: epoch bumps at every role change;
	 * `ever` has SHMQ_RD/SHMQ_WR set once any handle held that role
	 * (sticky); swept is the CLOCK_MONOTONIC ns of the last sweep; lost
	 * (JoinableQueue, may be NULL) counts messages held by departed
	 * handles. */
	_Atomic uint32_t *epoch;
	_Atomic uint32_t *ever;
	_Atomic int64_t *swept;
	_Atomic uint64_t *lost;
	const struct part_hooks *hooks;
};

struct part_counts {
	uint32_t producers, consumers;
};

/* Claim a slot for this process with roles. Returns the slot index or -EUSERS.
 * for_child: claimed by a parent inside its pthread_atfork prepare handler,
 * for the child, which must part_adopt() it. The parent's fork handler
 * resolves the slot to the child's pid (part_fork_resolve) as soon as fork()
 * has created it, so a child killed before it ever ran is seen dead like any
 * other process; a slot that cannot be resolved counts as alive for
 * PART_FORK_GRACE_S. */
int part_claim(struct part_table *t, int roles, bool for_child);
#define PART_FORK_GRACE_S 5
/* Fork support, shared by every layer. part_fork_init() registers part.c's
 * own atfork handlers; call it (it is idempotent) before registering the
 * layer's handlers, so that part.c's parent handler runs first and has
 * found the child's pid by the time the layers' parent handlers run. */
void part_fork_init(void);
/* In a parent's atfork handler: bind a slot claimed for_child to the child
 * just forked, if part.c could identify it. */
void part_fork_resolve(struct part_table *t, int slot);
/* In the child's atfork handler: take over a slot claimed for it. Returns
 * false if the slot was reaped meanwhile (the handle then holds no slot). */
bool part_adopt(struct part_table *t, int slot);
/* Change the roles of our own slot; release it. */
void part_set_roles(struct part_table *t, int slot, int roles);
void part_release(struct part_table *t, int slot);
/* The tag the ring writes into cells owned by this slot (PART_TAG_BITS). */
uint32_t part_tag(struct part_table *t, int slot);
/* The wider tag of lock words (PART_WIDE_TAG_BITS): 2^20 reuses of a slot
 * before a tag repeats. */
uint32_t part_wide_tag(struct part_table *t, int slot);
/* The wide tag of the owner of slot at generation gen. */
static inline uint32_t part_wide_tag_at(uint32_t slot, uint32_t gen)
{
	return slot | (gen & ((1u << (PART_WIDE_TAG_BITS - 10)) - 1)) << 10; /* 10: slot bits */
}
/* Count roles over the table (no liveness checks: cheap). */
struct part_counts part_count(struct part_table *t);
/* JoinableQueue: messages got and not yet marked done by live handles; *lost
 * gets those of handles that closed or died (they will never be done). A
 * departed owner's count moves from its free slot to `lost` when the slot is
 * claimed again; in between it is counted here as lost. */
uint64_t part_held(struct part_table *t, uint64_t *lost);
/* Check the liveness of every slot holding any of roles (0: every slot) and
 * reap the dead (their roles end). Returns how many were reaped. Costs a few
 * syscalls per participant checked. */
int part_reap_dead(struct part_table *t, int roles);
/* part_reap_dead(t, roles), by at most one waiter of all processes per
 * period_ns: waiters on a segment share the sweeps instead of each scanning
 * the table. */
void part_sweep(struct part_table *t, int roles, int64_t period_ns);
/* Is the owner named by a cell tag gone (closed, dead or exec'd)? */
bool part_tag_gone(struct part_table *t, uint32_t tag);
/* The same for a wide tag. cheap_only: no syscalls, only what the table
 * itself says (slot free, or claimed again since): a process that died
 * unnoticed still counts as alive. */
bool part_wide_tag_gone(struct part_table *t, uint32_t tag, bool cheap_only);
/* The pid of the owner named by a tag (0 if the slot is free). */
pid_t part_tag_pid(struct part_table *t, uint32_t tag);
/* Is slot's owner (whatever its gen) alive? A free slot is not. */
bool part_slot_alive(struct part_table *t, uint32_t slot);

#endif
