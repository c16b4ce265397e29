/* Ring layer: the lock-free MPMC ring of variable-length messages. */
#ifndef SHMQ_RING_H
#define SHMQ_RING_H

#include "seg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Process-local view of a ring: geometry copied from the validated header. */
struct ring {
	struct seg_hdr *hdr;
	unsigned char *cells;
	uint64_t mask;       /* capacity - 1 */
	unsigned shift;      /* log2(capacity) */
	unsigned cell_shift; /* log2(cell_size) */
	uint64_t lap_mask;   /* laps kept in a cell state */
	uint64_t max_cells;  /* cells of one msg_max message */
	uint64_t span_max;   /* most cells one claim covers */
	uint32_t msg_max;
	uint32_t cell_size;
	uint32_t one_max;    /* longest one-cell message: min(cell payload, msg_max) */
	/* This handle's last put found room. Then the next one-cell put CASes
	 * the cell at tail from the free state it expects, which takes the
	 * line for writing in one coherence round trip, where a load then a
	 * CAS costs two (the line comes shared, then is upgraded): 8 B puts
	 * 1.06-1.6x faster (bench/RESULTS.md). After a put that found the
	 * ring full it loads first, so that polling does not take the line
	 * from the consumer releasing it. Written by the handle's users
	 * (relaxed: a hint, process-local). The same on the get side (an RMW
	 * that reads the cell at head) measured 0.8-0.9x: with little backlog
	 * the cell at head is the one the producer is about to write. */
	_Atomic bool put_ready;
};

/* Where a try_* call found its way blocked: the cell position and the state
 * it saw. The wait loop hands it to ring_recover() when the wait drags on. */
struct ring_block {
	uint64_t pos;
	uint64_t state;
};

/* Cells claimed by this process: first position and the state it holds. */
struct ring_span {
	uint64_t pos;
	uint64_t held;
};

void ring_init(struct ring *r, const struct seg *s);

/* Every try_* call runs concurrently with any other ring call of any process.
 * tag: the caller's participant tag (part_tag()). */

/* Put up to n messages (all: exactly n) with one claim. Returns the count;
 * -EAGAIN (no room: *b says where); -EPROTO (inconsistent ring). */
int ring_try_put(struct ring *r, uint32_t tag, const struct iovec *msgs, unsigned n, bool all,
		 struct ring_block *b);

/* Get up to n messages (all: exactly n) with one claim; msgs[i].iov_len is
 * the buffer size, set to the message length. Skips messages of dead
 * producers. Returns the count; -EAGAIN (empty: *b says where); -EMSGSIZE
 * (the first message, for bulk any of them, is larger than its buffer: left
 * queued); -EPROTO (a corrupted message, dropped, or an inconsistent ring). */
int ring_try_get(struct ring *r, uint32_t tag, struct iovec *msgs, unsigned n, bool all,
		 struct ring_block *b);

/* Zero-copy: claim one cell for a message of len <= cell_size - 8 bytes,
 * write it at ring_payload(), publish it with ring_commit(). Returns 0,
 * -EAGAIN, -EPROTO. */
int ring_try_reserve(struct ring *r, uint32_t tag, size_t len, struct ring_span *sp,
		     struct ring_block *b);
void ring_commit(struct ring *r, const struct ring_span *sp, size_t len);
/* Zero-copy: claim the next message if it fits one cell (else -EMSGSIZE,
 * left queued); read *len bytes at ring_payload(); then ring_release(). */
int ring_try_peek(struct ring *r, uint32_t tag, struct ring_span *sp, size_t *len,
		  struct ring_block *b);
void ring_release(struct ring *r, const struct ring_span *sp);
void *ring_payload(const struct ring *r, const struct ring_span *sp);
/* Is sp a reservation (put) or a peek (get) that the owner of tag holds? */
bool ring_span_held(const struct ring *r, const struct ring_span *sp, uint32_t tag, bool put);

/* If the cell in *b is still held by an owner that is gone, take it back: a
 * dead producer's half-written message becomes a skipped one, a dead
 * consumer's cells become free. Returns true when it changed something. */
struct seg;
bool ring_recover(struct ring *r, struct seg *s, const struct ring_block *b);

/* Snapshots. ring_count is O(1) from the index counters until a dead owner's
 * cells have been taken back, then counts from the cells (O(depth)). */
uint64_t ring_count(const struct ring *r);
/* No room for a one-cell message at tail; *b says where (for ring_recover). */
bool ring_full(const struct ring *r, struct ring_block *b);
/* Nothing between head and tail: every message put (or being put) has been
 * claimed by a consumer. Exact against batches and helping, unlike the counts.
 * seq_cst loads: a caller that then reads consumers' held counts sees those
 * of every claim this call saw (JoinableQueue's join). */
bool ring_drained(const struct ring *r);
/* Messages put and got since creation, modulo 2^24 (SHMQ_STAT_COUNT_MOD). */
void ring_counters(const struct ring *r, uint32_t *puts, uint32_t *gets);
/* A published message (or a skipped one) waits at head: a get would not
 * block now; else *b says where a get would block. Looks past messages claimed by consumers that have not moved
 * head yet, so a waiter that sees false can park without losing a wake-up. */
bool ring_readable(const struct ring *r, struct ring_block *b);

#endif
