/* Ring layer: the lock-free MPMC ring of variable-length messages. */
#ifndef SHMQ_RING_H
#define SHMQ_RING_H

#include "seg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Process-local view of a ring: geometry copied from the validated header. */
struct ring {
	struct seg_hdr *hdr;
	struct seg_cell *cells;
	uint64_t mask;     /* capacity - 1 */
	unsigned shift;    /* log2(capacity) */
	uint64_t lap_mask; /* laps kept in a cell state */
	uint64_t max_cells;
	uint32_t msg_max;
};

/* Where a try_* call found its way blocked: the cell position and the state
 * it saw. The wait loop hands it to ring_recover() when the wait drags on. */
struct ring_block {
	uint64_t pos;
	uint64_t state;
};

void ring_init(struct ring *r, struct seg *s);

/* Put one message without waiting. tag: the caller's participant tag.
 * Returns 0; -EAGAIN (no room: *b says where); -EPROTO (inconsistent ring). */
int ring_try_put(struct ring *r, uint32_t tag, const void *buf, size_t len,
		 struct ring_block *b);

/* Get one message without waiting; skips messages of dead producers.
 * Returns its length; -EAGAIN (empty: *b says where); -EMSGSIZE (next message
 * larger than cap, left queued); -EPROTO (corrupted message, dropped, or an
 * inconsistent ring). */
ssize_t ring_try_get(struct ring *r, uint32_t tag, void *buf, size_t cap,
		     struct ring_block *b);

/* If the cell in *b is still held by an owner that is gone, take it back: a
 * dead producer's half-written message becomes a skipped one, a dead
 * consumer's cells become free. Returns true when it changed something. */
bool ring_recover(struct ring *r, struct seg *s, const struct ring_block *b);

/* Snapshots. */
uint64_t ring_count(const struct ring *r);
bool ring_full(const struct ring *r);

#endif
