/* Ring layer: lock-free MPMC ring of variable-length messages in cells.
 *
 * Positions. `tail` and `head` hold a 40-bit cell position and a 24-bit
 * message count. Position p lives in cell p & mask and belongs to lap
 * (p >> shift) & lap_mask. A message of k cells occupies positions
 * p .. p+k-1, each cell carrying cell_size - 8 bytes of it.
 *
 * Cell state (64 bits): kind (2) | SKIP (1) | k (20) | owner or last (16) | lap (25)
 *
 *   FREE(L)          cell free for the message of lap L at this cell
 *   BUSY(L,K,owner)  a producer claimed K cells and is writing them
 *   FULL(L,k,last)   published, `last` bytes in its last cell: the length is
 *                    in the state, read with it in one load (SKIP: its
 *                    producer died; consumers drop it)
 *   READ(L,K,owner)  a consumer claimed K cells and is copying out
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
 * Batches: one claim covers K cells of several messages. A producer marks the
 * inner messages' first cells FULL, then publishes the first cell; consumers
 * reach inner messages only through head, which cannot pass the first cell
 * before it is published. A consumer scans consecutive FULL messages from
 * head and claims them all with one CAS on the first cell (READ(K)): nobody
 * else can reach the inner ones, since head jumps over all K cells.
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
#define TAG_FIELD (TAG_MASK << TAG_SHIFT)
#define FULL_ONE (ST_FULL | 1ull << K_SHIFT) /* FULL, one cell, lap and length 0 */
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
static inline uint64_t st_last(uint64_t s) { return st_tag(s); }

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
static inline uint64_t lap_prev(const struct ring *r, uint64_t lap)
{
	return (lap - 1) & r->lap_mask;
}
static inline struct seg_cell *cell(const struct ring *r, uint64_t pos)
{
	return (struct seg_cell *)(r->cells + ((pos & r->mask) << r->cell_shift));
}
static inline uint64_t free_state(const struct ring *r, uint64_t pos)
{
	return st_make(ST_FREE, lap_of(r, pos), 0, 0);
}
static inline uint64_t load_state(const struct seg_cell *c)
{
	return atomic_load_explicit(&c->state, memory_order_acquire);
}
static inline uint64_t cells_for(const struct ring *r, size_t len)
{
	return seg_cells_for(len, r->cell_size);
}
static inline uint64_t per_cell(const struct ring *r)
{
	return r->cell_size - CELL_HEAD;
}
/* The FULL state of a message of len bytes in k cells, lap field 0. */
static inline uint64_t full_state(const struct ring *r, size_t len, uint64_t k)
{
	return st_make(ST_FULL, 0, k, len - (k - 1) * per_cell(r));
}
/* Length of the FULL message s; false if s is not a sane one. */
static inline bool full_len(const struct ring *r, uint64_t s, uint64_t *len)
{
	uint64_t k = st_k(s), last = st_last(s);
	*len = (k - 1) * per_cell(r) + last;
	return k >= 1 && k <= r->max_cells && last <= per_cell(r) && (k == 1 || last) &&
	       *len <= r->msg_max;
}
/* A claim covers at most the ring and what the k field holds. */
static inline bool span_ok(const struct ring *r, uint64_t k)
{
	return k >= 1 && k <= r->span_max;
}
/* A walk over consecutive cells: the cell of pos and the lap field of its
 * states, kept up to date by cursor_step without recomputing them from pos
 * (the hot loops below step once per message). */
struct cursor {
	uint64_t pos;
	struct seg_cell *at; /* cell(r, pos) */
	uint64_t lap;        /* lap_of(r, pos) << LAP_SHIFT: also FREE of this lap */
	uint64_t freed;      /* FREE of the next lap: what a consumer leaves */
	uint64_t mask;       /* r's geometry, kept here so that a step needs no */
	uint64_t cell_size;  /* load from r (the atomics in the loops force them) */
};

static inline struct cursor cursor_at(const struct ring *r, uint64_t pos)
{
	uint64_t lap = lap_of(r, pos);
	return (struct cursor){ pos, cell(r, pos), lap << LAP_SHIFT, lap_next(r, lap) << LAP_SHIFT,
				r->mask, r->cell_size };
}

static inline void cursor_step(const struct ring *r, struct cursor *c, uint64_t k)
{
	if (__builtin_expect((c->pos & c->mask) + k <= c->mask, 1)) { /* no wrap */
		c->pos += k;
		c->at = (struct seg_cell *)((unsigned char *)c->at + k * c->cell_size);
	} else {
		*c = cursor_at(r, c->pos + k);
	}
}

/* The published, sane message whose state s was read at c: returns its cell
 * count, with its length in *len, or 0 when s is anything else. A one-cell
 * message, the common case, takes one compare. */
static inline uint64_t full_here(const struct ring *r, const struct cursor *c, uint64_t s,
				 uint64_t *len)
{
	if (__builtin_expect((s & ~TAG_FIELD) == (c->lap | FULL_ONE), 1)) {
		*len = st_last(s);
		return *len <= r->one_max;
	}
	if (st_kind(s) != ST_FULL || (s & ST_SKIP) || st_lap(s) << LAP_SHIFT != c->lap ||
	    !full_len(r, s, len))
		return 0;
	return st_k(s);
}

void ring_init(struct ring *r, const struct seg *s)
{
	r->hdr = s->hdr;
	r->cells = (unsigned char *)s->cells;
	r->mask = s->geom.capacity - 1;
	r->shift = (unsigned)__builtin_ctz(s->geom.capacity);
	r->cell_shift = (unsigned)__builtin_ctz(s->geom.cell_size);
	/* The lap must wrap exactly when the 40-bit position does. */
	unsigned lap_bits = POS_BITS - r->shift < LAP_BITS ? POS_BITS - r->shift : LAP_BITS;
	r->lap_mask = (1ull << lap_bits) - 1;
	r->msg_max = s->geom.msg_max;
	r->cell_size = s->geom.cell_size;
	r->max_cells = seg_cells_for(s->geom.msg_max, s->geom.cell_size);
	r->span_max = r->mask + 1 < K_MASK ? r->mask + 1 : K_MASK;
	r->one_max = r->msg_max < per_cell(r) ? r->msg_max : (uint32_t)per_cell(r);
	atomic_init(&r->put_ready, false);
}

/* Compare-and-swap a 64-bit index once; failure means someone helped. */
static inline void idx_help(_Atomic uint64_t *idx, uint64_t seen, uint64_t k)
{
	atomic_compare_exchange_strong_explicit(idx, &seen, idx_advance(seen, k),
						memory_order_acq_rel, memory_order_relaxed);
}

/* How many of the n messages fit in the run of free cells at pos, whose
 * first cell is known free: returns the count, with *cells their cells and
 * *stop the position after the last cell found free. */
static unsigned fit_free(const struct ring *r, uint64_t pos, const struct iovec *msgs, unsigned n,
			 uint64_t *cells, uint64_t *stop)
{
	struct cursor c = cursor_at(r, pos);
	uint64_t used = 0, checked = 1;
	unsigned m = 0;
	cursor_step(r, &c, 1);
	for (; m < n; m++) {
		uint64_t k = cells_for(r, msgs[m].iov_len);
		if (used + k > r->span_max)
			break;
		for (; checked < used + k; checked++, cursor_step(r, &c, 1))
			if (load_state(c.at) != c.lap)
				goto out;
		used += k;
	}
out:
	*cells = used;
	*stop = pos + checked;
	return m;
}

/* Copy n bytes where n is at most a cell's payload, typically a few dozen:
 * inline moves of overlapping chunks, which never touch a byte outside
 * [0, n). A libc call costs more than moving a 20-byte message. */
static inline void copy_small(unsigned char *d, const unsigned char *s, size_t n)
{
	if (n > 32) {
		memcpy(d, s, 32);
		memcpy(d + n - 32, s + n - 32, 32);
	} else if (n >= 16) {
		memcpy(d, s, 16);
		memcpy(d + n - 16, s + n - 16, 16);
	} else if (n >= 8) {
		memcpy(d, s, 8);
		memcpy(d + n - 8, s + n - 8, 8);
	} else if (n >= 4) {
		memcpy(d, s, 4);
		memcpy(d + n - 4, s + n - 4, 4);
	} else if (n) {
		d[0] = s[0];
		d[n / 2] = s[n / 2];
		d[n - 1] = s[n - 1];
	}
}

static inline void copy_bytes(void *d, const void *s, size_t n)
{
	if (n <= 64)
		copy_small(d, s, n);
	else
		memcpy(d, s, n);
}

/* Copy a message of len bytes into its cells from c on (copy_out: out of
 * them). */
static void copy_in(const struct ring *r, struct cursor c, const void *buf, size_t len)
{
	const unsigned char *src = buf;
	for (size_t n; len; src += n, len -= n, cursor_step(r, &c, 1)) {
		n = len < per_cell(r) ? len : per_cell(r);
		copy_bytes(c.at->payload, src, n);
	}
}

static void copy_out(const struct ring *r, struct cursor c, void *buf, size_t len)
{
	unsigned char *dst = buf;
	for (size_t n; len; dst += n, len -= n, cursor_step(r, &c, 1)) {
		n = len < per_cell(r) ? len : per_cell(r);
		copy_bytes(dst, c.at->payload, n);
	}
}

/* ------------------------------------------------------------- producers -- */

static inline void room_hint(struct ring *r, bool found)
{
	if (atomic_load_explicit(&r->put_ready, memory_order_relaxed) != found)
		atomic_store_explicit(&r->put_ready, found, memory_order_relaxed);
}

/* The cells at pos, tail t, are ours now (busy): move tail past them, unless
 * someone helped already. Returns m, the messages they are for. */
static inline int put_claimed(struct ring *r, uint64_t t, uint64_t pos, uint64_t busy, unsigned m,
			      struct ring_span *sp)
{
	idx_help(&r->hdr->tail, t, st_k(busy));
	*sp = (struct ring_span){ .pos = pos, .held = busy };
	TEST_HOOK(SHMQ_HOOK_PUT_CLAIMED);
	room_hint(r, true);
	return (int)m;
}

/* Claim cells at tail for up to n messages of the given lengths (all: exactly
 * n). Returns the count claimed, with *sp the range; -EAGAIN, -EPROTO. */
static inline int claim_put(struct ring *r, uint32_t tag, const struct iovec *msgs,
			    unsigned n, bool all, struct ring_span *sp, struct ring_block *b)
{
	_Atomic uint64_t *tail = &r->hdr->tail;
	uint64_t t = atomic_load_explicit(tail, memory_order_acquire);
	/* One one-cell message after a put that found room: claim the cell at
	 * tail as if it were free; a failed CAS reads it like a load would. */
	bool eager = n == 1 && cells_for(r, msgs[0].iov_len) == 1 &&
		     atomic_load_explicit(&r->put_ready, memory_order_relaxed);

	for (;;) {
		uint64_t pos = idx_pos(t), lap = lap_of(r, pos);
		struct seg_cell *c = cell(r, pos);
		uint64_t s = free_state(r, pos);
		if (eager) {
			uint64_t busy = st_make(ST_BUSY, lap, 1, tag);
			eager = false;
			if (atomic_compare_exchange_strong_explicit(&c->state, &s, busy,
								    memory_order_acquire,
								    memory_order_acquire))
				return put_claimed(r, t, pos, busy, 1, sp);
		} else {
			s = load_state(c);
		}

		if (s == free_state(r, pos)) {
			/* How many messages fit in the free run from pos. */
			uint64_t cells, stop;
			unsigned m = fit_free(r, pos, msgs, n, &cells, &stop);
			uint64_t busy = st_make(ST_BUSY, lap, cells, tag);
			if (m && (m == n || !all) &&
			    atomic_compare_exchange_strong_explicit(&c->state, &s, busy,
								    memory_order_acquire,
								    memory_order_relaxed))
				return put_claimed(r, t, pos, busy, m, sp);
			uint64_t t2 = atomic_load_explicit(tail, memory_order_acquire);
			if (t2 == t && (!m || (all && m < n))) {
				b->pos = stop;
				b->state = load_state(cell(r, b->pos));
				room_hint(r, false);
				return -EAGAIN;
			}
			t = t2;
			continue;
		}
		if (st_lap(s) == lap && st_kind(s) != ST_FREE) {
			/* Claimed at this lap and tail not moved yet: help. */
			if (!span_ok(r, st_k(s)))
				return -EPROTO;
			idx_help(tail, t, st_k(s));
			t = atomic_load_explicit(tail, memory_order_acquire);
			continue;
		}
		uint64_t t2 = atomic_load_explicit(tail, memory_order_acquire);
		if (t2 != t) {
			t = t2;
			continue;
		}
		/* tail is current: the cell still holds the previous lap. */
		if (st_lap(s) != lap_prev(r, lap))
			return -EPROTO;
		b->pos = pos;
		b->state = s;
		room_hint(r, false);
		return -EAGAIN;
	}
}

/* Publish the first message last: it is what lets consumers in. */
static void publish(const struct ring *r, const struct ring_span *sp, size_t len)
{
	atomic_store_explicit(&cell(r, sp->pos)->state,
			      st_make(0, lap_of(r, sp->pos), 0, 0) | full_state(r, len, cells_for(r, len)),
			      memory_order_seq_cst);
}

int ring_try_put(struct ring *r, uint32_t tag, const struct iovec *msgs, unsigned n, bool all,
		 struct ring_block *b)
{
	struct ring_span sp;
	int m = claim_put(r, tag, msgs, n, all, &sp, b);
	if (m <= 0)
		return m;
	struct cursor c = cursor_at(r, sp.pos);
	for (int i = 0; i < m; i++) {
		size_t len = msgs[i].iov_len;
		uint64_t k = cells_for(r, len);
		if (k == 1)
			copy_bytes(c.at->payload, msgs[i].iov_base, len);
		else
			copy_in(r, c, msgs[i].iov_base, len);
		if (i > 0)
			atomic_store_explicit(&c.at->state, c.lap | full_state(r, len, k),
					      memory_order_release);
		cursor_step(r, &c, k);
	}
	/* tail counted the batch as one message. The rest is added only now: a
	 * producer that dies before publishing has its batch dropped as one
	 * skipped message, and the counts stay consistent. */
	if (m > 1)
		atomic_fetch_add_explicit(&r->hdr->tail_extra, (uint32_t)m - 1, memory_order_relaxed);
	publish(r, &sp, msgs[0].iov_len);
	return m;
}

int ring_try_reserve(struct ring *r, uint32_t tag, size_t len, struct ring_span *sp,
		     struct ring_block *b)
{
	struct iovec one = { .iov_base = NULL, .iov_len = len };
	int m = claim_put(r, tag, &one, 1, true, sp, b);
	return m < 0 ? m : 0;
}

void ring_commit(struct ring *r, const struct ring_span *sp, size_t len)
{
	publish(r, sp, len);
}

/* ------------------------------------------------------------- consumers -- */

/* Free n cells from c on, held by the caller inside its claim (never the
 * claim's first cell): their next lap may use them. */
static inline void free_cells(const struct ring *r, struct cursor c, uint64_t n)
{
	for (; n; n--, cursor_step(r, &c, 1))
		atomic_store_explicit(&c.at->state, c.freed, memory_order_release);
}

/* Free the first cell of a claim held in READ state, after all the others
 * (seq_cst, see the top comment). */
static void release_first(const struct ring *r, uint64_t pos, uint64_t held)
{
	atomic_compare_exchange_strong_explicit(&cell(r, pos)->state, &held,
						st_make(ST_FREE, lap_next(r, st_lap(held)), 0, 0),
						memory_order_seq_cst, memory_order_relaxed);
}

/* Release cells the caller holds in READ state: the others first, the first
 * cell last. */
static void release(const struct ring *r, uint64_t pos, uint64_t held)
{
	free_cells(r, cursor_at(r, pos + 1), st_k(held) - 1);
	release_first(r, pos, held);
}

/* Take the message(s) at head: returns true when sp now holds them. */
static bool claim_at_head(const struct ring *r, uint64_t h, uint64_t seen, uint64_t held,
			  struct ring_span *sp)
{
	struct seg_cell *c = cell(r, idx_pos(h));
	if (!atomic_compare_exchange_strong_explicit(&c->state, &seen, held, memory_order_acquire,
						     memory_order_relaxed))
		return false;
	idx_help(&r->hdr->head, h, st_k(held));
	*sp = (struct ring_span){ .pos = idx_pos(h), .held = held };
	TEST_HOOK(SHMQ_HOOK_GET_CLAIMED);
	return true;
}

/* Claim up to n consecutive messages at head (all: exactly n), each fitting
 * its buffer. Returns the count, with *sp the range and *first the FULL state
 * of the first message; -EAGAIN, -EMSGSIZE, -EPROTO. Drops skipped and
 * corrupt messages found first at head. */
static inline int claim_get(const struct ring *r, uint32_t tag, const struct iovec *msgs,
			    unsigned n, bool all, struct ring_span *sp, uint64_t *first,
			    struct ring_block *b)
{
	_Atomic uint64_t *head = &r->hdr->head;
	uint64_t h = atomic_load_explicit(head, memory_order_acquire);

	for (;;) {
		uint64_t pos = idx_pos(h), lap = lap_of(r, pos);
		uint64_t s = load_state(cell(r, pos));
		uint64_t len;

		if (st_lap(s) == lap && st_kind(s) == ST_FULL) {
			if (!span_ok(r, st_k(s)))
				return -EPROTO;
			bool skip = s & ST_SKIP;
			if (skip || !full_len(r, s, &len)) {
				/* Dead producer's (or corrupt) message: drop it. */
				if (claim_at_head(r, h, s, st_make(ST_READ, lap, st_k(s), tag), sp)) {
					release(r, pos, sp->held);
					if (!skip)
						return -EPROTO;
				}
				h = atomic_load_explicit(head, memory_order_acquire);
				continue;
			}
			if (len > msgs[0].iov_len)
				return -EMSGSIZE;
			/* Scan the sane, fitting, FULL messages that follow. */
			unsigned m = 1;
			uint64_t cells = st_k(s), k;
			struct cursor c = cursor_at(r, pos + cells);
			for (; m < n; m++, cells += k, cursor_step(r, &c, k)) {
				k = full_here(r, &c, load_state(c.at), &len);
				if (!k || cells + k > r->span_max)
					break;
				if (len > msgs[m].iov_len) {
					if (all)
						return -EMSGSIZE;
					break;
				}
			}
			uint64_t p = c.pos;
			if (all && m < n) {
				uint64_t h2 = atomic_load_explicit(head, memory_order_acquire);
				if (h2 == h) {
					b->pos = p;
					b->state = load_state(cell(r, p));
					return -EAGAIN;
				}
				h = h2;
				continue;
			}
			*first = s;
			if (claim_at_head(r, h, s, st_make(ST_READ, lap, cells, tag), sp)) {
				if (m > 1)
					atomic_fetch_add_explicit(&r->hdr->head_extra, m - 1,
								  memory_order_relaxed);
				return (int)m;
			}
		} else if (st_lap(s) == lap && st_kind(s) == ST_READ) {
			if (!span_ok(r, st_k(s)))
				return -EPROTO;
			idx_help(head, h, st_k(s)); /* claimed, head not moved yet */
		} else {
			uint64_t h2 = atomic_load_explicit(head, memory_order_acquire);
			if (h2 == h) {
				/* Empty: this lap not yet written, or the cell
				 * still held by the previous lap. */
				if (st_lap(s) != lap && st_lap(s) != lap_prev(r, lap))
					return -EPROTO;
				b->pos = pos;
				b->state = s;
				return -EAGAIN;
			}
		}
		h = atomic_load_explicit(head, memory_order_acquire);
	}
}

int ring_try_get(struct ring *r, uint32_t tag, struct iovec *msgs, unsigned n, bool all,
		 struct ring_block *b)
{
	struct ring_span sp = { 0 }; /* (set when m > 0: for the compiler) */
	uint64_t s, len;
	int m = claim_get(r, tag, msgs, n, all, &sp, &s, b);
	if (m <= 0)
		return m;
	/* The cells are ours now: the inner states cannot move, unless a
	 * hostile peer writes them, which copy-out must survive. A claim of
	 * one-cell messages frees each cell as soon as it is copied, while the
	 * line is at hand; with longer messages, freeing all cells at the end
	 * measured faster (25% with 64-byte messages in 8 processes). The
	 * claim's first cell is freed last. */
	uint64_t end = sp.pos + st_k(sp.held), k;
	bool each = st_k(sp.held) == (uint64_t)m;
	struct cursor c = cursor_at(r, sp.pos);
	int result = m;
	for (int i = 0; i < m; i++, cursor_step(r, &c, k)) {
		if (i > 0)
			s = load_state(c.at);
		k = full_here(r, &c, s, &len);
		if (!k || len > msgs[i].iov_len || c.pos + k > end) {
			result = -EPROTO;
			break;
		}
		if (k == 1) {
			copy_bytes(msgs[i].iov_base, c.at->payload, len);
			if (each && i > 0)
				atomic_store_explicit(&c.at->state, c.freed, memory_order_release);
		} else {
			copy_out(r, c, msgs[i].iov_base, len);
		}
		msgs[i].iov_len = len;
	}
	if (each && result > 0)
		release_first(r, sp.pos, sp.held);
	else
		release(r, sp.pos, sp.held);
	return result;
}

int ring_try_peek(struct ring *r, uint32_t tag, struct ring_span *sp, size_t *len,
		  struct ring_block *b)
{
	struct iovec one = { .iov_base = NULL, .iov_len = per_cell(r) };
	uint64_t s, n;
	int m = claim_get(r, tag, &one, 1, true, sp, &s, b);
	if (m < 0)
		return m;
	full_len(r, s, &n); /* claim_get checked it: sane, one cell */
	*len = n;
	return 0;
}

void ring_release(struct ring *r, const struct ring_span *sp)
{
	release(r, sp->pos, sp->held);
}

void *ring_payload(const struct ring *r, const struct ring_span *sp)
{
	return cell(r, sp->pos)->payload;
}

bool ring_span_held(const struct ring *r, const struct ring_span *sp, uint32_t tag, bool put)
{
	unsigned kind = put ? ST_BUSY : ST_READ;
	return st_kind(sp->held) == kind && st_k(sp->held) == 1 && st_tag(sp->held) == tag &&
	       load_state(cell(r, sp->pos)) == sp->held;
}

/* -------------------------------------------------------------- recovery -- */

bool ring_recover(struct ring *r, struct seg *s, const struct ring_block *b)
{
	struct seg_cell *c = cell(r, b->pos);
	uint64_t st = b->state, k = st_k(st);
	unsigned kind = st_kind(st);

	if ((kind != ST_BUSY && kind != ST_READ) || !span_ok(r, k) || load_state(c) != st ||
	    !part_tag_gone(&s->pt, st_tag(st)))
		return false;
	atomic_store(&r->hdr->recovered, 1);
	if (kind == ST_BUSY) /* dead producer: publish its message as skipped */
		return atomic_compare_exchange_strong(
			&c->state, &st, st_make(ST_FULL, st_lap(st), k, 0) | ST_SKIP);
	/* Dead consumer: free its cells, the first last. CAS only states of the
	 * dead claim's lap: a racing recoverer may have finished, and the
	 * cells may already serve the next lap. */
	uint64_t first = st_lap(st) << r->shift | (b->pos & r->mask);
	for (uint64_t i = 1; i < k; i++) {
		uint64_t p = first + i, was = load_state(cell(r, p));
		if (st_lap(was) == lap_of(r, p))
			atomic_compare_exchange_strong(&cell(r, p)->state, &was,
						       st_make(ST_FREE, lap_next(r, lap_of(r, p)), 0, 0));
	}
	return atomic_compare_exchange_strong(&c->state, &st,
					      st_make(ST_FREE, lap_next(r, st_lap(st)), 0, 0));
}

/* ------------------------------------------------------------- snapshots -- */

/* Messages between head and tail, counted from the cells: exact whatever
 * processes died, O(depth). A batch still being written counts as one, one
 * being read as none. */
static uint64_t count_cells(const struct ring *r)
{
	uint64_t pos_mask = (1ull << POS_BITS) - 1, n = 0;
	uint64_t p = idx_pos(atomic_load_explicit(&r->hdr->head, memory_order_acquire));
	uint64_t t = idx_pos(atomic_load_explicit(&r->hdr->tail, memory_order_acquire));
	for (uint64_t steps = 0; steps <= r->mask && ((t - p) & pos_mask) - 1 <= r->mask; steps++) {
		uint64_t s = load_state(cell(r, p));
		if (st_lap(s) != lap_of(r, p) || st_kind(s) == ST_FREE || !span_ok(r, st_k(s)))
			break;
		n += st_kind(s) == ST_BUSY || (st_kind(s) == ST_FULL && !(s & ST_SKIP));
		p += st_k(s);
	}
	return n;
}

uint64_t ring_count(const struct ring *r)
{
	const struct seg_hdr *hd = r->hdr;
	if (atomic_load_explicit(&hd->recovered, memory_order_relaxed))
		return count_cells(r);
	uint64_t h = atomic_load_explicit(&hd->head, memory_order_acquire) +
		     atomic_load_explicit(&hd->head_extra, memory_order_relaxed);
	uint64_t t = atomic_load_explicit(&hd->tail, memory_order_acquire) +
		     atomic_load_explicit(&hd->tail_extra, memory_order_relaxed);
	uint64_t n = (t - h) & CNT_MASK;
	if (n & (1ull << (CNT_BITS - 1))) /* negative: a batch's count not added yet */
		return 0;
	return n > r->mask + 1 ? r->mask + 1 : n;
}

void ring_counters(const struct ring *r, uint32_t *puts, uint32_t *gets)
{
	const struct seg_hdr *hd = r->hdr;
	*puts = (uint32_t)((atomic_load(&hd->tail) + atomic_load(&hd->tail_extra)) & CNT_MASK);
	*gets = (uint32_t)((atomic_load(&hd->head) + atomic_load(&hd->head_extra)) & CNT_MASK);
}

bool ring_drained(const struct ring *r)
{
	uint64_t h = idx_pos(atomic_load_explicit(&r->hdr->head, memory_order_seq_cst));
	uint64_t t = idx_pos(atomic_load_explicit(&r->hdr->tail, memory_order_seq_cst));
	if (h != t)
		return false;
	uint64_t s = load_state(cell(r, t)); /* claimed, tail not advanced yet? */
	return st_lap(s) != lap_of(r, t) || st_kind(s) == ST_FREE || st_kind(s) == ST_READ;
}

bool ring_readable(const struct ring *r, struct ring_block *b)
{
	uint64_t p = idx_pos(atomic_load_explicit(&r->hdr->head, memory_order_seq_cst));
	for (uint64_t steps = 0; steps <= r->mask; steps++) {
		uint64_t s = load_state(cell(r, p));
		*b = (struct ring_block){ .pos = p, .state = s };
		if (st_lap(s) != lap_of(r, p) || !span_ok(r, st_k(s)))
			return false;
		if (st_kind(s) != ST_READ) /* claimed, head not advanced yet: look past */
			return st_kind(s) == ST_FULL;
		p += st_k(s);
	}
	return false;
}

bool ring_full(const struct ring *r, struct ring_block *b)
{
	uint64_t pos = idx_pos(atomic_load_explicit(&r->hdr->tail, memory_order_acquire));
	uint64_t s = load_state(cell(r, pos));
	*b = (struct ring_block){ .pos = pos, .state = s };
	return s != free_state(r, pos) && st_lap(s) == lap_prev(r, lap_of(r, pos));
}
