/* Ring layer: lock-free MPMC ring of variable-length messages in 64-byte cells.
 *
 * Positions. `tail` and `head` hold a 40-bit cell position and a 24-bit
 * message count. Position p lives in cell p & mask and belongs to lap
 * (p >> shift) & lap_mask. A message of k cells occupies positions
 * p .. p+k-1; its first cell carries the length, the rest only payload.
 *
 * Cell state (64 bits): kind (2) | SKIP (1) | k (20) | owner tag (16) | lap (25)
 *
 *   FREE(L)          cell free for the message of lap L at this cell
 *   BUSY(L,k,owner)  a producer claimed it and is writing k cells
 *   FULL(L,k)        published (SKIP: its producer died; consumers drop it)
 *   READ(L,k,owner)  a consumer claimed it and is copying out
 *
 * Continuation cells stay FREE(L) while in use and turn FREE(L+1) when the
 * consumer releases the message; the first cell is released last, so a
 * producer of lap L+1 finds a range free only once all of it is.
 *
 * Claims are CAS on the first cell's state, so the claimant is recorded in the
 * same atomic step that takes the cell: a process killed anywhere leaves a
 * state naming it, which the liveness check can resolve (ring_recover).
 * tail/head are advanced by the claimant, or by anyone who finds a claimed
 * cell at tail/head (helping), so a claimant that dies right after its claim
 * stalls no one. Only cells are authoritative; a stale tail/head read is
 * caught by the state's lap. Lap aliasing would need a thread to stall across
 * 2^25 laps (2^31 messages or more) at one instruction.
 *
 * Orderings: states are read with acquire and written with release or
 * stronger; the publishing store (FULL) and the releasing CAS (FREE) are
 * seq_cst because the caller then reads an eventcount word (Dekker pattern
 * with ec_prepare's fence, see wait.h).
 */
#include "ring.h"
#include "part.h"
#include "testhook.h"

#include <errno.h>
#include <string.h>

#ifdef SHMQ_TEST_HOOKS
void (*shmq_test_hook)(enum shmq_hook_point where);
#endif

enum { ST_FREE = 0, ST_BUSY = 1, ST_FULL = 2, ST_READ = 3 };
#define ST_SKIP (1ull << 2)
#define K_SHIFT 3
#define K_MASK ((1ull << 20) - 1)
#define TAG_SHIFT 23
#define TAG_MASK ((1ull << PART_TAG_BITS) - 1)
#define LAP_SHIFT 39
#define LAP_BITS 25u

#define POS_BITS 40u
#define CNT_BITS 24u
#define CNT_MASK ((1ull << CNT_BITS) - 1)

static inline uint64_t st_make(unsigned kind, uint64_t lap, uint64_t k, uint64_t tag)
{
	return kind | k << K_SHIFT | tag << TAG_SHIFT | lap << LAP_SHIFT;
}
static inline unsigned st_kind(uint64_t s) { return s & 3; }
static inline uint64_t st_k(uint64_t s) { return s >> K_SHIFT & K_MASK; }
static inline uint32_t st_tag(uint64_t s) { return (uint32_t)(s >> TAG_SHIFT & TAG_MASK); }
static inline uint64_t st_lap(uint64_t s) { return s >> LAP_SHIFT; }

static inline uint64_t idx_pos(uint64_t w) { return w >> CNT_BITS; }
static inline uint64_t idx_advance(uint64_t w, uint64_t k)
{
	return (idx_pos(w) + k) << CNT_BITS | ((w + 1) & CNT_MASK);
}

static inline uint64_t lap_of(const struct ring *r, uint64_t pos)
{
	return pos >> r->shift & r->lap_mask;
}
static inline uint64_t lap_next(const struct ring *r, uint64_t lap)
{
	return (lap + 1) & r->lap_mask;
}
static inline struct seg_cell *cell(const struct ring *r, uint64_t pos)
{
	return &r->cells[pos & r->mask];
}
static inline uint64_t free_state(const struct ring *r, uint64_t pos)
{
	return st_make(ST_FREE, lap_of(r, pos), 0, 0);
}
static inline uint64_t load_state(const struct seg_cell *c)
{
	return atomic_load_explicit(&c->state, memory_order_acquire);
}
/* Largest payload that k cells carry. */
static inline uint64_t cells_payload(uint64_t k)
{
	return CELL_FIRST_PAYLOAD + (k - 1) * CELL_NEXT_PAYLOAD;
}

void ring_init(struct ring *r, struct seg *s)
{
	r->hdr = s->hdr;
	r->cells = s->cells;
	r->mask = s->geom.capacity - 1;
	r->shift = (unsigned)__builtin_ctz(s->geom.capacity);
	/* The lap must wrap exactly when the 40-bit position does. */
	unsigned lap_bits = POS_BITS - r->shift < LAP_BITS ? POS_BITS - r->shift : LAP_BITS;
	r->lap_mask = (1ull << lap_bits) - 1;
	r->msg_max = s->geom.msg_max;
	r->max_cells = seg_cells_for(s->geom.msg_max);
}

/* Compare-and-swap a 64-bit index once; failure means someone helped. */
static inline void idx_help(_Atomic uint64_t *idx, uint64_t seen, uint64_t k)
{
	atomic_compare_exchange_strong_explicit(idx, &seen, idx_advance(seen, k),
						memory_order_acq_rel, memory_order_relaxed);
}

/* Offset of the first cell of pos+1 .. pos+k-1 that is not free, or k. */
static uint64_t range_free_until(const struct ring *r, uint64_t pos, uint64_t k)
{
	for (uint64_t i = 1; i < k; i++)
		if (load_state(cell(r, pos + i)) != free_state(r, pos + i))
			return i;
	return k;
}

static void copy_in(const struct ring *r, uint64_t pos, const void *buf, size_t len)
{
	struct seg_cell *c = cell(r, pos);
	const unsigned char *src = buf;
	size_t n = len < CELL_FIRST_PAYLOAD ? len : CELL_FIRST_PAYLOAD;

	atomic_store_explicit(&c->len, (uint32_t)len, memory_order_relaxed);
	memcpy(c->rest, src, n);
	for (src += n, len -= n; len; src += n, len -= n) {
		n = len < CELL_NEXT_PAYLOAD ? len : CELL_NEXT_PAYLOAD;
		memcpy((unsigned char *)cell(r, ++pos) + 8, src, n);
	}
}

static void copy_out(const struct ring *r, uint64_t pos, void *buf, size_t len)
{
	const struct seg_cell *c = cell(r, pos);
	unsigned char *dst = buf;
	size_t n = len < CELL_FIRST_PAYLOAD ? len : CELL_FIRST_PAYLOAD;

	memcpy(dst, c->rest, n);
	for (dst += n, len -= n; len; dst += n, len -= n) {
		n = len < CELL_NEXT_PAYLOAD ? len : CELL_NEXT_PAYLOAD;
		memcpy(dst, (const unsigned char *)cell(r, ++pos) + 8, n);
	}
}

int ring_try_put(struct ring *r, uint32_t tag, const void *buf, size_t len,
		 struct ring_block *b)
{
	_Atomic uint64_t *tail = &r->hdr->tail;
	uint64_t k = seg_cells_for(len);
	uint64_t t = atomic_load_explicit(tail, memory_order_acquire);

	for (;;) {
		uint64_t pos = idx_pos(t), lap = lap_of(r, pos);
		struct seg_cell *c = cell(r, pos);
		uint64_t s = load_state(c);

		if (s == free_state(r, pos)) {
			uint64_t busy = range_free_until(r, pos, k);
			if (busy == k &&
			    atomic_compare_exchange_strong_explicit(&c->state, &s,
								    st_make(ST_BUSY, lap, k, tag),
								    memory_order_acquire,
								    memory_order_relaxed)) {
				idx_help(tail, t, k);
				TEST_HOOK(SHMQ_HOOK_PUT_CLAIMED);
				copy_in(r, pos, buf, len);
				atomic_store_explicit(&c->state, st_make(ST_FULL, lap, k, 0),
						      memory_order_seq_cst);
				return 0;
			}
			uint64_t t2 = atomic_load_explicit(tail, memory_order_acquire);
			if (busy < k && t2 == t) {
				b->pos = pos + busy;
				b->state = load_state(cell(r, b->pos));
				return -EAGAIN;
			}
			t = t2;
			continue;
		}
		if (st_lap(s) == lap && st_kind(s) != ST_FREE) {
			/* Claimed at this lap and tail not moved yet: help. */
			uint64_t kk = st_k(s);
			if (kk == 0 || kk > r->max_cells)
				return -EPROTO;
			idx_help(tail, t, kk);
			t = atomic_load_explicit(tail, memory_order_acquire);
			continue;
		}
		uint64_t t2 = atomic_load_explicit(tail, memory_order_acquire);
		if (t2 != t) {
			t = t2;
			continue;
		}
		/* tail is current: the cell still holds the previous lap. */
		if (st_lap(s) != ((lap - 1) & r->lap_mask))
			return -EPROTO;
		b->pos = pos;
		b->state = s;
		return -EAGAIN;
	}
}

/* Release a message the caller holds in READ state: continuation cells first,
 * the first cell last (seq_cst, see the top comment). */
static void release(const struct ring *r, uint64_t pos, uint64_t held)
{
	for (uint64_t i = 1; i < st_k(held); i++)
		atomic_store_explicit(&cell(r, pos + i)->state,
				      st_make(ST_FREE, lap_next(r, lap_of(r, pos + i)), 0, 0),
				      memory_order_release);
	atomic_compare_exchange_strong_explicit(&cell(r, pos)->state, &held,
						st_make(ST_FREE, lap_next(r, st_lap(held)), 0, 0),
						memory_order_seq_cst, memory_order_relaxed);
}

/* Claim the FULL message s at pos; returns its length, -EPROTO, or SKIPPED for
 * a skipped one (dead producer). The caller retries on a lost race (-EBUSY). */
#define SKIPPED ((ssize_t)-ENOMSG) /* internal, never returned */
static ssize_t claim_and_copy(struct ring *r, uint32_t tag, uint64_t h, uint64_t s,
			      void *buf, size_t cap)
{
	uint64_t pos = idx_pos(h), k = st_k(s);
	struct seg_cell *c = cell(r, pos);
	uint64_t held = st_make(ST_READ, st_lap(s), k, tag);

	if (!atomic_compare_exchange_strong_explicit(&c->state, &s, held, memory_order_acquire,
						     memory_order_relaxed))
		return -EBUSY;
	idx_help(&r->hdr->head, h, k);
	TEST_HOOK(SHMQ_HOOK_GET_CLAIMED);
	ssize_t n = SKIPPED;
	if (!(s & ST_SKIP)) {
		uint32_t len = atomic_load_explicit(&c->len, memory_order_relaxed);
		if (len > r->msg_max || seg_cells_for(len) != k || len > cap) {
			n = -EPROTO;
		} else {
			copy_out(r, pos, buf, len);
			n = len;
		}
	}
	release(r, pos, held);
	return n;
}

ssize_t ring_try_get(struct ring *r, uint32_t tag, void *buf, size_t cap,
		     struct ring_block *b)
{
	_Atomic uint64_t *head = &r->hdr->head;
	uint64_t h = atomic_load_explicit(head, memory_order_acquire);

	for (;;) {
		uint64_t pos = idx_pos(h), lap = lap_of(r, pos);
		struct seg_cell *c = cell(r, pos);
		uint64_t s = load_state(c);
		uint64_t k = st_k(s);

		if (st_lap(s) == lap && st_kind(s) == ST_FULL) {
			if (k == 0 || k > r->max_cells)
				return -EPROTO;
			if (!(s & ST_SKIP) && cap < cells_payload(k)) {
				/* Might not fit: read the length, and trust it
				 * only if the state did not move meanwhile. */
				uint32_t len = atomic_load_explicit(&c->len, memory_order_relaxed);
				atomic_thread_fence(memory_order_acquire);
				if (load_state(c) == s && len <= r->msg_max && len > cap)
					return -EMSGSIZE;
			}
			ssize_t n = claim_and_copy(r, tag, h, s, buf, cap);
			if (n != -EBUSY && n != SKIPPED)
				return n;
		} else if (st_lap(s) == lap && st_kind(s) == ST_READ) {
			if (k == 0 || k > r->max_cells)
				return -EPROTO;
			idx_help(head, h, k); /* claimed, head not moved yet */
		} else {
			uint64_t h2 = atomic_load_explicit(head, memory_order_acquire);
			if (h2 == h) {
				/* Empty: this lap not yet written, or the cell
				 * still held by the previous lap. */
				bool empty = (st_lap(s) == lap && st_kind(s) != ST_FULL) ||
					     st_lap(s) == ((lap - 1) & r->lap_mask);
				if (!empty)
					return -EPROTO;
				b->pos = pos;
				b->state = s;
				return -EAGAIN;
			}
		}
		h = atomic_load_explicit(head, memory_order_acquire);
	}
}

bool ring_recover(struct ring *r, struct seg *s, const struct ring_block *b)
{
	struct seg_cell *c = cell(r, b->pos);
	uint64_t st = b->state;
	unsigned kind = st_kind(st);
	uint64_t k = st_k(st);

	if ((kind != ST_BUSY && kind != ST_READ) || k == 0 || k > r->max_cells ||
	    load_state(c) != st || !part_tag_gone(s, st_tag(st)))
		return false;
	if (kind == ST_BUSY) /* dead producer: publish its message as skipped */
		return atomic_compare_exchange_strong(
			&c->state, &st, st_make(ST_FULL, st_lap(st), k, 0) | ST_SKIP);
	/* Dead consumer: free its cells, continuation first. CAS, not store: a
	 * racing recoverer may already have freed them, and they may be in use
	 * by the next lap. */
	uint64_t first = st_lap(st) << r->shift | (b->pos & r->mask);
	for (uint64_t i = 1; i < k; i++) {
		uint64_t was = free_state(r, first + i);
		atomic_compare_exchange_strong(&cell(r, first + i)->state, &was,
					       st_make(ST_FREE, lap_next(r, lap_of(r, first + i)), 0, 0));
	}
	return atomic_compare_exchange_strong(&c->state, &st,
					      st_make(ST_FREE, lap_next(r, st_lap(st)), 0, 0));
}

uint64_t ring_count(const struct ring *r)
{
	uint64_t h = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
	uint64_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
	uint64_t n = (t - h) & CNT_MASK;
	return n > r->mask + 1 ? r->mask + 1 : n;
}

bool ring_full(const struct ring *r)
{
	uint64_t pos = idx_pos(atomic_load_explicit(&r->hdr->tail, memory_order_acquire));
	uint64_t s = load_state(cell(r, pos));
	return s != free_state(r, pos) && st_lap(s) == ((lap_of(r, pos) - 1) & r->lap_mask);
}
