/* Shared dict: a hash table of immutable entries in a heap, read without
 * locks, written under one of 64 stripe locks, every change published by one
 * atomic store (see shmq/dict.h for the contract).
 *
 * Layout (offsets only):
 *   dict_shared: the current table, the stripes, the resize intent and the
 *     retired tables.
 *   dict_table: nbuckets chains and per-stripe key counts. A key's 64-bit
 *     order (its hash with the low byte replaced by a tie-breaker) picks its
 *     bucket by its top bits and its stripe by its top 6 bits, so every
 *     bucket of every table size belongs to exactly one stripe, and buckets
 *     cover increasing ranges of orders (shmq_dict_next walks by order).
 *   dict_entry: next link, order, lengths, key and value bytes. Everything
 *     but `next` is written before the entry is published and never again
 *     while it is reachable; `next` is changed only under the stripe lock.
 *
 * Writers (under the stripe lock): build the new entry aside, record the
 * change in the stripe's intent (link word, its old and new value, the entry
 * to retire, the count after), then apply it: one release store makes it
 * visible. The next holder after a death replays the intent strictly: a change
 * whose link still holds the old value (no reader can have seen it) is rolled
 * back and its fresh entry freed; a visible one is finished. Replaced and
 * removed entries wait in the stripe's limbo (linked through their heap
 * blocks' headers); a batch of them is sealed with one epoch stamp and freed
 * once the epoch has passed it (epoch.h).
 *
 * Resizing takes every stripe lock, copies every entry into a new table
 * (entries are immutable: readers still in the old table see it whole),
 * publishes it with one store and retires the old table with its entries as a
 * unit. Clear publishes an empty spare table the same way (so a full heap can
 * be cleared) and makes a new spare afterwards.
 *
 * Readers pin the epoch, load the table, walk one chain and copy out; every
 * offset they read is bounds-checked (heap_at) and every walk is bounded, so
 * hostile bytes give -EPROTO.
 */
#include "epoch.h"
#include "heap.h"
#include "mutex.h"
#include "testhook.h"

#include <errno.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#define STRIPES 64u
#define STRIPE_SHIFT 58          /* stripe = order >> STRIPE_SHIFT */
#define MIN_BUCKETS 64u          /* >= STRIPES: a bucket lies in one stripe */
#define MAX_BUCKETS (1ull << 36)
#define TIE_MASK 0xffull         /* the order's tie-breaker byte */
#define TIE_MAX 254u             /* 255 never used: order + 1 never wraps */
#define DICT_MAGIC 0x3243494451484d53ull  /* "SMHQDIC2" in memory (2: entries have seq) */
#define TABLE_MAGIC 0x4c42415451484d53ull /* "SMHQTABL" in memory */
#define RECLAIM_BATCH 32u        /* limbo entries before a reclaim attempt */
#define COUNT_MAX (1ll << 40)    /* more keys than any heap holds */
#define VLEN_BITS 40             /* values up to SHMQ_HEAP_MAX_MAX bytes */
#define KLEN_MAX ((1ull << (64 - VLEN_BITS)) - 1)
_Static_assert(KLEN_MAX == SHMQ_DICT_KEY_MAX, "the key limit is the API's");
#define TABLE_FREE_BUDGET 256u   /* entries of a dead table freed per write */

/* --------------------------------------------------------------- layout -- */

struct dict_entry {
	_Atomic uint64_t next; /* chain link: stripe lock holder, release */
	uint64_t order;        /* immutable, like everything below */
	uint64_t lens;         /* key length << VLEN_BITS | value length */
	uint64_t seq;          /* the key's insertion sequence: a replace keeps it */
	/* key bytes, then value bytes. A retired entry waits in its stripe's
	 * limbo linked through its block's header (heap_block_link): readers
	 * may still be reading every byte of it. */
};

struct dict_count {
	_Atomic int64_t n; /* keys of one stripe: its lock holder writes */
	char pad[56];
};

struct dict_table {
	uint64_t magic;    /* TABLE_MAGIC: immutable */
	uint64_t nbuckets; /* a power of two in MIN..MAX_BUCKETS: immutable */
	/* Once retired, by the holder of stripe 0 (which a retirer holds). */
	uint64_t limbo;
	uint64_t stamp;
	uint64_t freeing;  /* buckets already emptied while being freed */
	char pad[24];
	struct dict_count counts[STRIPES];
	_Atomic uint64_t buckets[]; /* entry offsets */
};

/* A change in flight on one stripe (written by its lock holder; op last). */
enum { OP_NONE, OP_LINK };
struct dict_intent {
	_Atomic uint32_t op;
	uint32_t pad;
	uint64_t link;     /* offset of the word to change */
	uint64_t old, new; /* its value before and after */
	uint64_t retire;   /* entry unlinked by the change, or 0 */
	uint64_t fresh;    /* entry built for the change (== new), or 0 */
	uint64_t count;    /* offset of the stripe's count in the table */
	int64_t count_after;
};

struct dict_stripe {
	struct mutex lock;
	struct dict_intent intent;
	/* Under the lock. Retired entries, newest first, and their number;
	 * the batch retired before it, sealed with an epoch stamp read after
	 * its last retirement; entries being freed. */
	uint64_t limbo;
	uint64_t limbo_len;
	uint64_t sealed;
	uint64_t sealed_stamp;
	uint64_t reclaim;
	char pad[8];
};
/* Two lines a stripe (the adjacent-line prefetcher pairs lines): writers of
 * different stripes never share one. */
_Static_assert(sizeof(struct dict_stripe) == 128, "a stripe is two lines");

/* The resize in flight (under every stripe lock; replayed by the next
 * holder of stripe 0 after a death). */
enum { RESIZE_NONE, RESIZE_BUILD };
struct dict_resize {
	_Atomic uint32_t op;
	uint32_t pad;
	uint64_t old, new; /* tables */
};

struct dict_shared {
	uint64_t magic;          /* immutable */
	_Atomic uint64_t table;  /* the current table: stored (release) under
				    every stripe lock, loaded by everyone */
	/* Under stripe 0: the resize record, retired tables (newest first),
	 * the table being freed, and the key count below which growing is
	 * not tried again after it failed for want of memory. */
	struct dict_resize resize;
	uint64_t table_limbo;
	uint64_t table_reclaim;
	_Atomic uint64_t grow_floor;
	/* An empty table kept for clear, so that a full heap can be cleared:
	 * taken by clear (the resize record names it first), made again
	 * after (stripe 0). */
	uint64_t spare;
	/* The next insertion sequence: taken (fetch_add) by the inserter of a
	 * new key under its stripe's lock. One taken by an insert that is then
	 * undone (its process died) is a gap, nothing worse. */
	_Atomic uint64_t next_seq;
	alignas(HEAP_OBJ_ALIGN) struct dict_stripe stripes[STRIPES];
};

struct shmq_dict {
	struct heap_ref ref;
	shmq_heap *h;
	struct dict_shared *s;
};

/* ---------------------------------------------------------- validation -- */

static uint64_t key_hash(const void *k, size_t klen)
{
	return XXH3_64bits(k, klen);
}

static unsigned stripe_of(uint64_t order)
{
	return (unsigned)(order >> STRIPE_SHIFT);
}

static unsigned table_shift(const struct dict_table *t)
{
	return (unsigned)__builtin_clzll(t->nbuckets) + 1;
}

static uint64_t table_bytes(uint64_t nbuckets)
{
	return sizeof(struct dict_table) + nbuckets * sizeof(uint64_t);
}

static struct dict_table *table_at(shmq_heap *h, uint64_t off)
{
	if (!off || off % HEAP_GRAIN)
		return NULL;
	struct dict_table *t = heap_at(h, off, sizeof(*t));
	if (!t || t->magic != TABLE_MAGIC || t->nbuckets < MIN_BUCKETS ||
	    t->nbuckets > MAX_BUCKETS || (t->nbuckets & (t->nbuckets - 1)) ||
	    !heap_at(h, off, table_bytes(t->nbuckets)))
		return NULL;
	return t;
}

static uint64_t klen_of(const struct dict_entry *e)
{
	return e->lens >> VLEN_BITS;
}

static uint64_t vlen_of(const struct dict_entry *e)
{
	return e->lens & ((1ull << VLEN_BITS) - 1);
}

static uint64_t entry_bytes(uint64_t klen, uint64_t vlen)
{
	return sizeof(struct dict_entry) + klen + vlen;
}

static struct dict_entry *entry_at(shmq_heap *h, uint64_t off)
{
	if (off % HEAP_GRAIN)
		return NULL;
	struct dict_entry *e = heap_at(h, off, sizeof(*e));
	if (!e || !heap_at(h, off, entry_bytes(klen_of(e), vlen_of(e))))
		return NULL;
	return e;
}

static const char *entry_key(const struct dict_entry *e)
{
	return (const char *)(e + 1);
}

static const char *entry_val(const struct dict_entry *e)
{
	return (const char *)(e + 1) + klen_of(e);
}

/* Longest walk along a chain or list: more links than entries fit in the
 * file is a cycle. */
static uint64_t walk_bound(shmq_heap *h)
{
	return heap_bound(h, sizeof(struct dict_entry) + sizeof(struct heap_block));
}

/* ---------------------------------------------------------------- walks -- */

struct found {
	_Atomic uint64_t *link; /* the word pointing at e (or the bucket) */
	struct dict_entry *e;   /* the key's entry, or NULL */
	uint64_t off;           /* its offset */
	uint64_t ties[4];       /* tie bytes used by the key's hash (bitmap) */
};

/* Walk k's chain in t. Returns 0 (f filled) or -EPROTO. */
static int find(shmq_heap *h, struct dict_table *t, uint64_t hash, const void *k, size_t klen,
		struct found *f)
{
	uint64_t base = hash & ~TIE_MASK;
	_Atomic uint64_t *link = &t->buckets[hash >> table_shift(t)];
	memset(f, 0, sizeof(*f));
	for (uint64_t steps = 0;; steps++) {
		uint64_t off = atomic_load_explicit(link, memory_order_acquire);
		if (!off) {
			f->link = &t->buckets[hash >> table_shift(t)];
			return 0;
		}
		struct dict_entry *e = entry_at(h, off);
		/* Chains are short: the bound is for hostile cycles. */
		if (!e || (steps > 64 && steps > walk_bound(h)))
			return -EPROTO;
		if ((e->order & ~TIE_MASK) == base) {
			f->ties[(e->order & TIE_MASK) / 64] |= 1ull << (e->order % 64);
			if (klen_of(e) == klen && memcmp(entry_key(e), k, klen) == 0) {
				f->link = link;
				f->e = e;
				f->off = off;
				return 0;
			}
		}
		link = &e->next;
	}
}

/* The current table, validated. */
static struct dict_table *current(shmq_dict *d)
{
	return table_at(d->h, atomic_load_explicit(&d->s->table, memory_order_acquire));
}

/* A stripe's key count, clamped to what a heap can hold (hostile bytes must
 * not overflow the sums and products made of it). */
static int64_t stripe_count(struct dict_table *t, unsigned i)
{
	int64_t n = atomic_load_explicit(&t->counts[i].n, memory_order_relaxed);
	return n < 0 ? 0 : n > COUNT_MAX ? COUNT_MAX : n;
}

static int64_t table_len(struct dict_table *t)
{
	int64_t n = 0;
	for (unsigned i = 0; i < STRIPES; i++)
		n += stripe_count(t, i);
	return n;
}

/* ------------------------------------------------------------ reclaiming -- */

/* Free the entries of a dead table, at most budget of them (0: all).
 * Returns true when none is left. Resumable: each entry is taken off its
 * chain before it is freed. The table's own block is its holder's to free,
 * after it dropped its reference (table_drop). */
static bool table_free_entries(shmq_heap *h, uint64_t off, uint64_t budget)
{
	struct dict_table *t = table_at(h, off);
	if (!t)
		return true; /* not a table: leave it */
	uint64_t bound = walk_bound(h);
	for (uint64_t b = t->freeing; b < t->nbuckets; b = ++t->freeing) {
		for (uint64_t steps = 0;; steps++) {
			uint64_t eoff = atomic_load(&t->buckets[b]);
			struct dict_entry *e = eoff ? entry_at(h, eoff) : NULL;
			if (!e || steps > bound)
				break;
			atomic_store(&t->buckets[b], atomic_load(&e->next));
			heap_free(h, eoff);
			if (budget && --budget == 0)
				return false;
		}
	}
	return true;
}

/* Replace the reference *ref to an emptied table by next, then free the
 * table: a death in between leaks it rather than freeing it twice. */
static void table_drop(shmq_heap *h, uint64_t *ref, uint64_t next)
{
	uint64_t off = *ref;
	*ref = next;
	if (table_at(h, off))
		heap_free(h, off);
}

/* Free a list of entries linked through their blocks, popping each first. */
static void free_entries(shmq_heap *h, uint64_t *list)
{
	uint64_t bound = walk_bound(h);
	for (uint64_t steps = 0; *list && steps <= bound; steps++) {
		uint64_t off = *list;
		_Atomic uint64_t *link = heap_block_link(h, off);
		if (!link)
			break; /* hostile: leak the rest */
		*list = atomic_load(link);
		heap_free(h, off);
	}
	*list = 0;
}

/* Free what the epoch has passed. Entries retire into limbo; a batch of them
 * is sealed with one stamp (read after its last retirement), and freed once
 * the epoch has passed that stamp. Each move is made of two stores that
 * stripe_replay repairs if a death splits them. Under the stripe lock.
 * force: even a short batch (clear). */
static void stripe_reclaim(shmq_dict *d, struct dict_stripe *st, bool force)
{
	shmq_heap *h = d->h;
	free_entries(h, &st->reclaim);
	if (!force && st->limbo_len < RECLAIM_BATCH)
		return;
	for (int round = 0; round < 2; round++) {
		if (st->sealed && epoch_passed(h, st->sealed_stamp)) {
			st->reclaim = st->sealed;
			st->sealed = 0;
			free_entries(h, &st->reclaim);
		}
		if (!st->sealed && st->limbo) {
			st->sealed_stamp = epoch_stamp(h);
			st->sealed = st->limbo;
			st->limbo = 0;
			st->limbo_len = 0;
		}
		if (!force)
			break;
	}
}

/* Retired tables (stripe 0's lock held): move those the epoch has passed to
 * table_reclaim and free them, budget entries at most (0: all). */
static void tables_reclaim(shmq_dict *d, uint64_t budget)
{
	shmq_heap *h = d->h;
	struct dict_shared *s = d->s;
	for (;;) {
		if (s->table_reclaim) {
			struct dict_table *t = table_at(h, s->table_reclaim);
			if (t && !table_free_entries(h, s->table_reclaim, budget))
				return;
			table_drop(h, &s->table_reclaim, t ? t->limbo : 0);
			continue;
		}
		struct dict_table *t = s->table_limbo ? table_at(h, s->table_limbo) : NULL;
		if (!t) {
			s->table_limbo = 0;
			return;
		}
		if (!epoch_passed(h, t->stamp))
			return;
		/* The newest has passed: so have all; take the whole list (two
		 * stores: stripe_replay repairs a death between them). */
		s->table_reclaim = s->table_limbo;
		s->table_limbo = 0;
	}
}

static void retire_entry(shmq_dict *d, struct dict_stripe *st, uint64_t off)
{
	_Atomic uint64_t *link = heap_block_link(d->h, off);
	if (!link)
		return;
	atomic_store_explicit(link, st->limbo, memory_order_relaxed);
	st->limbo = off; /* the retirement's commit: replay checks for it */
	st->limbo_len++;
}

static void retire_table(shmq_dict *d, uint64_t off)
{
	struct dict_table *t = table_at(d->h, off);
	if (!t)
		return;
	t->stamp = epoch_stamp(d->h);
	t->freeing = 0;
	t->limbo = d->s->table_limbo;
	d->s->table_limbo = off;
}

/* --------------------------------------------------------------- intents -- */

/* Apply the stripe's intent: idempotent, so the next holder after a death
 * runs it again. */
static void intent_apply(shmq_dict *d, struct dict_stripe *st)
{
	struct dict_intent *in = &st->intent;
	_Atomic uint64_t *w = in->link % 8 ? NULL : heap_at(d->h, in->link, sizeof(*w));
	TEST_HOOK(SHMQ_HOOK_DICT_INTENT);
	if (w && atomic_load(w) == in->old)
		atomic_store_explicit(w, in->new, memory_order_release);
	TEST_HOOK(SHMQ_HOOK_DICT_PUBLISHED);
	_Atomic int64_t *n = in->count % 8 ? NULL : heap_at(d->h, in->count, sizeof(*n));
	if (n)
		atomic_store_explicit(n, in->count_after, memory_order_relaxed);
	if (in->retire && st->limbo != in->retire)
		retire_entry(d, st, in->retire);
	atomic_store_explicit(&in->op, OP_NONE, memory_order_release);
}

/* After a death: a change that no reader can have seen yet (its link still
 * holds the old value) is undone, its fresh entry freed; one that readers
 * may have seen is finished. Either way the dead writer's operation is as
 * it looked to everyone at the moment it died. */
static void intent_replay(shmq_dict *d, struct dict_stripe *st)
{
	struct dict_intent *in = &st->intent;
	_Atomic uint64_t *w = in->link % 8 ? NULL : heap_at(d->h, in->link, sizeof(*w));
	if (w && atomic_load(w) == in->old) {
		uint64_t fresh = in->fresh;
		atomic_store_explicit(&in->op, OP_NONE, memory_order_release);
		if (fresh) /* forgotten first: a death here leaks it */
			heap_free(d->h, fresh);
		return;
	}
	intent_apply(d, st);
}

static void intent_begin(shmq_dict *d, struct dict_stripe *st, _Atomic uint64_t *link,
			 uint64_t old, uint64_t new, uint64_t retire, bool fresh,
			 _Atomic int64_t *count, int64_t count_after)
{
	struct dict_intent *in = &st->intent;
	in->link = heap_off(d->h, (const void *)link);
	in->old = old;
	in->new = new;
	in->retire = retire;
	in->fresh = fresh ? new : 0;
	in->count = heap_off(d->h, (const void *)count);
	in->count_after = count_after;
	atomic_store_explicit(&in->op, OP_LINK, memory_order_release);
}

/* Free the table a resize built and did not publish (it failed, or died),
 * and end the resize record. */
static void resize_discard(shmq_dict *d)
{
	struct dict_resize *r = &d->s->resize;
	table_free_entries(d->h, r->new, 0);
	table_drop(d->h, &r->new, 0);
	atomic_store_explicit(&r->op, RESIZE_NONE, memory_order_release);
}

static void resize_replay(shmq_dict *d)
{
	struct dict_resize *r = &d->s->resize;
	if (atomic_load(&r->op) != RESIZE_BUILD)
		return;
	if (atomic_load(&d->s->table) != r->new) {
		if (r->new == d->s->spare) /* a clear that had not published */
			atomic_store(&r->op, RESIZE_NONE);
		else
			resize_discard(d);
		return;
	}
	if (d->s->spare == r->new)
		d->s->spare = 0;
	if (d->s->table_limbo != r->old)
		retire_table(d, r->old);
	atomic_store(&r->op, RESIZE_NONE);
}

static void stripe_replay(shmq_dict *d, unsigned i)
{
	struct dict_stripe *st = &d->s->stripes[i];
	if (atomic_load_explicit(&st->intent.op, memory_order_acquire) == OP_LINK)
		intent_replay(d, st);
	/* A reclaim split between its two stores: a list must not be on two
	 * of the stripe's lists at once. */
	if (st->reclaim && st->reclaim == st->sealed)
		st->sealed = 0;
	if (st->sealed && st->sealed == st->limbo) {
		st->limbo = 0;
		st->limbo_len = 0;
	}
	if (i == 0) {
		resize_replay(d);
		if (d->s->table_reclaim && d->s->table_reclaim == d->s->table_limbo)
			d->s->table_limbo = 0;
	}
}

static int stripe_lock(shmq_dict *d, unsigned i)
{
	if (heap_slot(d->h) < 0)
		return -EBADF;
	int r = mutex_lock(&d->s->stripes[i].lock, heap_parts(d->h), heap_owner(d->h), -1);
	if (r == -EOWNERDEAD) {
		stripe_replay(d, i);
		r = 0;
	}
	return r;
}

static void stripe_unlock(shmq_dict *d, unsigned i)
{
	mutex_unlock(&d->s->stripes[i].lock, heap_owner(d->h));
}

/* -------------------------------------------------------------- resizing -- */

static int lock_all(shmq_dict *d)
{
	for (unsigned i = 0; i < STRIPES; i++) {
		int err = stripe_lock(d, i);
		if (err) {
			while (i--)
				stripe_unlock(d, i);
			return err;
		}
	}
	return 0;
}

static void unlock_all(shmq_dict *d)
{
	for (unsigned i = STRIPES; i--;)
		stripe_unlock(d, i);
}

/* Every stripe lock held: free every stripe's retired entries and the
 * retired tables, as far as the epoch allows. */
static void reclaim_locked(shmq_dict *d)
{
	for (unsigned i = 0; i < STRIPES; i++)
		stripe_reclaim(d, &d->s->stripes[i], true);
	tables_reclaim(d, 0);
}

static uint64_t buckets_for(int64_t keys)
{
	uint64_t want = keys > 0 ? (uint64_t)keys * 2 : 0, nb = MIN_BUCKETS;
	while (nb < want && nb < MAX_BUCKETS)
		nb *= 2;
	return nb;
}

/* A new empty table of nb buckets (not yet published). */
static int table_new(shmq_heap *h, uint64_t nb, uint64_t *off)
{
	int err = heap_alloc(h, table_bytes(nb), off);
	if (err)
		return err;
	struct dict_table *t = heap_at(h, *off, table_bytes(nb));
	if (!t) {
		heap_free(h, *off);
		return -EPROTO;
	}
	memset(t, 0, table_bytes(nb));
	t->magic = TABLE_MAGIC;
	t->nbuckets = nb;
	return 0;
}

/* Copy every entry of old into nt. Returns 0, -ENOSPC or -EPROTO. */
static int table_copy(shmq_dict *d, struct dict_table *old, struct dict_table *nt)
{
	shmq_heap *h = d->h;
	uint64_t bound = walk_bound(h);
	unsigned shift = table_shift(nt);
	for (uint64_t b = 0; b < old->nbuckets; b++) {
		uint64_t off = atomic_load(&old->buckets[b]);
		for (uint64_t steps = 0; off; steps++) {
			struct dict_entry *e = entry_at(h, off);
			if (!e || steps > bound)
				return -EPROTO;
			uint64_t size = entry_bytes(klen_of(e), vlen_of(e)), coff;
			int err = heap_alloc(h, size, &coff);
			if (err)
				return err;
			struct dict_entry *c = heap_at(h, coff, size);
			if (!c) {
				heap_free(h, coff);
				return -EPROTO;
			}
			memmove(c, e, size); /* a hostile length may overlap */
			_Atomic uint64_t *bucket = &nt->buckets[e->order >> shift];
			atomic_store_explicit(&c->next, atomic_load(bucket), memory_order_relaxed);
			atomic_store(bucket, coff);
			off = atomic_load(&e->next);
		}
	}
	for (unsigned i = 0; i < STRIPES; i++)
		atomic_store(&nt->counts[i].n, stripe_count(old, i));
	return 0;
}

/* Replace the table by one sized for its keys (clear: by an empty one).
 * A resize that runs out of memory changes nothing. */
static int resize(shmq_dict *d, bool clear)
{
	int err = lock_all(d);
	if (err)
		return err;
	struct dict_shared *s = d->s;
	struct dict_table *old = current(d);
	if (!old) {
		unlock_all(d);
		return -EPROTO;
	}
	int64_t keys = table_len(old);
	uint64_t nb = buckets_for(clear ? 0 : keys), noff;
	/* Another resize may have done it while we waited for the locks. */
	if (!clear && (nb == old->nbuckets || (nb > old->nbuckets && keys <= (int64_t)old->nbuckets))) {
		unlock_all(d);
		return 0;
	}
	noff = clear ? s->spare : 0;
	err = noff ? 0 : table_new(d->h, nb, &noff);
	if (err == -ENOSPC) { /* free what the epoch allows, and try again */
		reclaim_locked(d);
		err = table_new(d->h, nb, &noff);
	}
	if (!err) {
		struct dict_resize *r = &s->resize;
		r->old = atomic_load(&s->table);
		r->new = noff;
		atomic_store_explicit(&r->op, RESIZE_BUILD, memory_order_release);
		if (s->spare == noff)
			s->spare = 0;
		err = clear ? 0 : table_copy(d, old, table_at(d->h, noff));
		if (err) {
			resize_discard(d);
		} else {
			atomic_store_explicit(&s->table, noff, memory_order_release);
			retire_table(d, r->old);
			atomic_store(&s->grow_floor, 0);
			atomic_store_explicit(&r->op, RESIZE_NONE, memory_order_release);
		}
	}
	if (err == -ENOSPC && !clear)
		atomic_store(&s->grow_floor, (uint64_t)keys * 2);
	if (!err && clear) {
		reclaim_locked(d); /* give the memory back now if no reader holds it */
		uint64_t spare;
		if (!s->spare && table_new(d->h, MIN_BUCKETS, &spare) == 0)
			s->spare = spare; /* best effort: a death before leaks it */
	}
	unlock_all(d);
	return err;
}

/* After a write to stripe i of t (its lock held): does the stripe's count say
 * the table is far from its load? The resize itself runs after the lock is
 * let go (it takes every stripe lock in order) and checks again. */
static bool wants_resize(shmq_dict *d, struct dict_table *t, unsigned i)
{
	int64_t est = stripe_count(t, i) * STRIPES;
	if (est > (int64_t)t->nbuckets)
		return t->nbuckets < MAX_BUCKETS && (uint64_t)est >= atomic_load(&d->s->grow_floor);
	return t->nbuckets > MIN_BUCKETS && est < (int64_t)t->nbuckets / 8 &&
	       table_len(t) < (int64_t)t->nbuckets / 8;
}

/* ---------------------------------------------------------------- writes -- */

enum wop { W_SET, W_INSERT, W_CAS, W_ADD, W_POP, W_DEL };

struct write {
	enum wop op;
	const void *k, *v, *old;
	size_t klen, vlen, olen;
	int64_t delta, result;
	void *buf;
	size_t cap;
	ssize_t got; /* W_POP: the value's length */
};

/* A new entry for k and v (order set later). */
static int entry_new(shmq_dict *d, const struct write *w, uint64_t *off)
{
	uint64_t size = entry_bytes(w->klen, w->vlen);
	int err = heap_alloc(d->h, size, off);
	if (err)
		return err;
	struct dict_entry *e = heap_at(d->h, *off, size);
	if (!e) {
		heap_free(d->h, *off);
		return -EPROTO;
	}
	atomic_init(&e->next, 0);
	e->lens = (uint64_t)w->klen << VLEN_BITS | w->vlen;
	if (w->klen)
		memcpy((char *)(e + 1), w->k, w->klen);
	if (w->vlen && w->v)
		memcpy((char *)(e + 1) + w->klen, w->v, w->vlen);
	return 0;
}

/* Decide what w does to k's entry f->e. Returns 1 to store the new entry,
 * 2 to remove the old one, or 0 / -errno to do nothing. */
static int decide(struct write *w, struct found *f, struct dict_entry *ne)
{
	struct dict_entry *e = f->e;
	switch (w->op) {
	case W_SET:
		return 1;
	case W_INSERT:
		return e ? -EEXIST : 1;
	case W_CAS:
		if (!e)
			return -ENOENT;
		if (vlen_of(e) != w->olen || (w->olen && memcmp(entry_val(e), w->old, w->olen)))
			return -EAGAIN;
		return 1;
	case W_ADD: {
		int64_t v = 0;
		if (e && vlen_of(e) != sizeof(v))
			return -EINVAL;
		if (e)
			memcpy(&v, entry_val(e), sizeof(v));
		w->result = (int64_t)((uint64_t)v + (uint64_t)w->delta);
		if (ne) /* NULL: the heap is full, nothing will be stored */
			memcpy((char *)(ne + 1) + w->klen, &w->result, sizeof(w->result));
		return 1;
	}
	case W_POP:
		if (!e)
			return -ENOENT;
		if (vlen_of(e) > w->cap)
			return -EMSGSIZE;
		if (vlen_of(e))
			memcpy(w->buf, entry_val(e), vlen_of(e));
		w->got = (ssize_t)vlen_of(e);
		return 2;
	case W_DEL:
		return e ? 2 : -ENOENT;
	}
	return -EINVAL;
}

/* The smallest tie byte not used by another key of the same hash. */
static int pick_tie(const struct found *f)
{
	for (unsigned t = 0; t <= TIE_MAX; t++)
		if (!(f->ties[t / 64] & 1ull << (t % 64)))
			return (int)t;
	return -ENOSPC; /* 255 keys of one 56-bit hash: a hostile caller */
}

/* The heap is full: free every stripe's retired entries and the retired
 * tables the epoch has passed. Returns 0 or the error of a lock. */
static int reclaim_all(shmq_dict *d)
{
	int err = lock_all(d);
	if (err)
		return err;
	reclaim_locked(d);
	unlock_all(d);
	return 0;
}

static int dict_write(shmq_dict *d, struct write *w)
{
	if (!d || (!w->k && w->klen) || (!w->v && w->vlen) || (!w->old && w->olen) ||
	    (!w->buf && w->cap) || w->klen > KLEN_MAX)
		return -EINVAL;
	if (w->vlen >= SHMQ_HEAP_MAX_MAX)
		return -ENOSPC; /* its length would not fit VLEN_BITS */
	if (!w->klen)
		w->k = ""; /* memcmp wants a pointer even for 0 bytes */
	shmq_heap *h = d->h;
	uint64_t hash = key_hash(w->k, w->klen), noff = 0;
	bool stores = w->op != W_POP && w->op != W_DEL;
	if (w->op == W_ADD)
		w->vlen = sizeof(int64_t);
	/* Build the new entry before taking the lock; a full heap may be full
	 * of retired entries: free what the epoch allows, then try again. */
	int err = stores ? entry_new(d, w, &noff) : 0;
	if (err == -ENOSPC && reclaim_all(d) == 0)
		err = entry_new(d, w, &noff);
	/* Still full: go on without an entry, so that an operation that
	 * would not store anyway (an insert of a present key, a cas that
	 * fails, ...) gives its own answer; one that would store: -ENOSPC. */
	bool full = err == -ENOSPC;
	if (err && !full)
		return err;
	struct dict_entry *ne = noff ? entry_at(h, noff) : NULL;
	unsigned i = stripe_of(hash);
	struct dict_stripe *st = &d->s->stripes[i];
	if ((err = stripe_lock(d, i))) {
		if (noff)
			heap_free(h, noff);
		return err;
	}
	struct dict_table *t = current(d);
	struct found f;
	bool grow_or_shrink = false;
	int what = t ? find(h, t, hash, w->k, w->klen, &f) : -EPROTO;
	if (what == 0)
		what = decide(w, &f, ne);
	if (what == 1 && full)
		what = -ENOSPC;
	if (what == 1 && !f.e) {
		int tie = pick_tie(&f);
		if (tie < 0)
			what = tie;
		else
			ne->order = (hash & ~TIE_MASK) | (uint64_t)tie;
	}
	if (what > 0) {
		_Atomic int64_t *count = &t->counts[i].n;
		int64_t n = stripe_count(t, i);
		if (what == 2) { /* remove */
			intent_begin(d, st, f.link, f.off, atomic_load(&f.e->next), f.off, false, count,
				     n - 1);
		} else if (f.e) { /* replace */
			ne->order = f.e->order;
			ne->seq = f.e->seq;
			atomic_store_explicit(&ne->next, atomic_load(&f.e->next), memory_order_relaxed);
			intent_begin(d, st, f.link, f.off, noff, f.off, true, count, n);
		} else { /* insert at the chain's head */
			ne->seq = atomic_fetch_add(&d->s->next_seq, 1);
			uint64_t head = atomic_load(f.link);
			atomic_store_explicit(&ne->next, head, memory_order_relaxed);
			intent_begin(d, st, f.link, head, noff, 0, true, count, n + 1);
		}
		intent_apply(d, st);
		stripe_reclaim(d, st, false);
		if (i == 0)
			tables_reclaim(d, TABLE_FREE_BUDGET);
		grow_or_shrink = wants_resize(d, t, i);
	}
	stripe_unlock(d, i);
	if (noff && what != 1)
		heap_free(h, noff);
	if (what < 0)
		return what;
	if (grow_or_shrink)
		resize(d, false); /* an -ENOSPC here only leaves the table as it is */
	return 0;
}

/* -------------------------------------------------------------- the API -- */

int shmq_dict_set(shmq_dict *d, const void *k, size_t klen, const void *v, size_t vlen)
{
	struct write w = { .op = W_SET, .k = k, .klen = klen, .v = v, .vlen = vlen };
	return dict_write(d, &w);
}

int shmq_dict_insert(shmq_dict *d, const void *k, size_t klen, const void *v, size_t vlen)
{
	struct write w = { .op = W_INSERT, .k = k, .klen = klen, .v = v, .vlen = vlen };
	return dict_write(d, &w);
}

int shmq_dict_cas(shmq_dict *d, const void *k, size_t klen, const void *old, size_t olen,
		  const void *v, size_t vlen)
{
	struct write w = { .op = W_CAS, .k = k, .klen = klen, .old = old, .olen = olen,
			   .v = v, .vlen = vlen };
	return dict_write(d, &w);
}

int shmq_dict_add(shmq_dict *d, const void *k, size_t klen, int64_t delta, int64_t *result)
{
	struct write w = { .op = W_ADD, .k = k, .klen = klen, .delta = delta };
	int err = dict_write(d, &w);
	if (!err && result)
		*result = w.result;
	return err;
}

ssize_t shmq_dict_pop(shmq_dict *d, const void *k, size_t klen, void *buf, size_t cap)
{
	struct write w = { .op = W_POP, .k = k, .klen = klen, .buf = buf, .cap = cap };
	int err = dict_write(d, &w);
	return err ? err : w.got;
}

int shmq_dict_del(shmq_dict *d, const void *k, size_t klen)
{
	struct write w = { .op = W_DEL, .k = k, .klen = klen };
	return dict_write(d, &w);
}

int shmq_dict_clear(shmq_dict *d)
{
	return d ? resize(d, true) : -EINVAL;
}

ssize_t shmq_dict_get(shmq_dict *d, const void *k, size_t klen, void *buf, size_t cap)
{
	if (!d || (!k && klen) || (!buf && cap))
		return -EINVAL;
	if (!klen)
		k = ""; /* memcmp wants a pointer even for 0 bytes */
	uint64_t hash = key_hash(k, klen);
	struct heap_pin *pin = epoch_enter(d->h);
	if (!pin)
		return -EBADF;
	struct dict_table *t = current(d);
	struct found f;
	ssize_t r = t ? find(d->h, t, hash, k, klen, &f) : -EPROTO;
	if (r == 0 && !f.e) {
		r = -ENOENT;
	} else if (r == 0) {
		uint64_t vlen = vlen_of(f.e);
		r = vlen > cap ? -EMSGSIZE : (ssize_t)vlen;
		if (r > 0)
			memcpy(buf, entry_val(f.e), vlen);
	}
	epoch_leave(pin);
	return r;
}

ssize_t shmq_dict_len(shmq_dict *d)
{
	if (!d)
		return -EINVAL;
	struct heap_pin *pin = epoch_enter(d->h);
	if (!pin)
		return -EBADF;
	struct dict_table *t = current(d);
	ssize_t n = t ? (ssize_t)table_len(t) : -EPROTO;
	epoch_leave(pin);
	return n;
}

static int copy_out(struct iovec *io, const void *p, uint64_t len)
{
	if (io && len && io->iov_base)
		memcpy(io->iov_base, p, len);
	if (io)
		io->iov_len = len;
	return 0;
}

/* The entry with the smallest order >= cursor (orders are unique), or NULL. */
static int next_entry(shmq_heap *h, struct dict_table *t, uint64_t cursor, struct dict_entry **out)
{
	uint64_t bound = walk_bound(h);
	*out = NULL;
	for (uint64_t b = cursor >> table_shift(t); b < t->nbuckets; b++) {
		uint64_t off = atomic_load_explicit(&t->buckets[b], memory_order_acquire);
		for (uint64_t steps = 0; off; steps++) {
			struct dict_entry *e = entry_at(h, off);
			if (!e || steps > bound)
				return -EPROTO;
			if ((e->order & TIE_MASK) > TIE_MAX)
				return -EPROTO; /* order + 1 would wrap: an endless walk */
			if (e->order >= cursor && (!*out || e->order < (*out)->order))
				*out = e;
			off = atomic_load_explicit(&e->next, memory_order_acquire);
		}
		if (*out)
			return 0;
	}
	return 0;
}

int shmq_dict_next(shmq_dict *d, uint64_t *cursor, struct iovec *key, struct iovec *val)
{
	return shmq_dict_next_seq(d, cursor, key, val, NULL);
}

int shmq_dict_next_seq(shmq_dict *d, uint64_t *cursor, struct iovec *key, struct iovec *val,
		       uint64_t *seq)
{
	if (!d || !cursor || (key && !key->iov_base && key->iov_len) ||
	    (val && !val->iov_base && val->iov_len))
		return -EINVAL;
	struct heap_pin *pin = epoch_enter(d->h);
	if (!pin)
		return -EBADF;
	struct dict_table *t = current(d);
	struct dict_entry *e = NULL;
	int r = t ? next_entry(d->h, t, *cursor, &e) : -EPROTO;
	if (r == 0 && e) {
		uint64_t klen = klen_of(e), vlen = vlen_of(e);
		if ((key && klen > key->iov_len) || (val && vlen > val->iov_len)) {
			r = -EMSGSIZE;
			if (key)
				key->iov_len = klen;
			if (val)
				val->iov_len = vlen;
		} else {
			copy_out(key, entry_key(e), klen);
			copy_out(val, entry_val(e), vlen);
			if (seq)
				*seq = e->seq;
			*cursor = e->order + 1; /* the tie byte is never 255 */
			r = 1;
		}
	}
	epoch_leave(pin);
	return r;
}

/* ------------------------------------------------------------ life cycle -- */

static void dict_init(void *payload, void *arg)
{
	struct dict_shared *s = payload;
	const uint64_t *tables = arg;
	s->magic = DICT_MAGIC;
	atomic_store(&s->table, tables[0]);
	s->spare = tables[1];
	for (unsigned i = 0; i < STRIPES; i++)
		mutex_init(&s->stripes[i].lock, 0);
}

/* Free everything the dict owns (heap mutex held, nobody holds the dict). */
static void dict_destroy(shmq_heap *h, struct heap_obj *o)
{
	struct dict_shared *s = (struct dict_shared *)(o + 1);
	if (o->size < sizeof(*s) || s->magic != DICT_MAGIC)
		return;
	/* Finish or undo what a dead holder left, and repair split moves
	 * between lists, exactly as the next locker would: nothing may be on
	 * two lists when they are freed. */
	shmq_dict d = { .h = h, .s = s };
	for (unsigned i = 0; i < STRIPES; i++)
		stripe_replay(&d, i);
	for (unsigned i = 0; i < STRIPES; i++) {
		free_entries(h, &s->stripes[i].reclaim);
		free_entries(h, &s->stripes[i].sealed);
		free_entries(h, &s->stripes[i].limbo);
	}
	uint64_t bound = walk_bound(h);
	uint64_t *lists[] = { &s->table_reclaim, &s->table_limbo };
	for (unsigned l = 0; l < 2; l++)
		for (uint64_t steps = 0; *lists[l] && steps <= bound; steps++) {
			struct dict_table *t = table_at(h, *lists[l]);
			table_free_entries(h, *lists[l], 0);
			table_drop(h, lists[l], t ? t->limbo : 0);
		}
	table_drop(h, &s->spare, 0);
	uint64_t cur = atomic_load(&s->table);
	table_free_entries(h, cur, 0);
	atomic_store(&s->table, 0);
	if (table_at(h, cur))
		heap_free(h, cur);
}

static const struct heap_kind_ops dict_ops = { .departed = NULL, .destroy = dict_destroy };

__attribute__((constructor)) static void dict_register(void)
{
	heap_kind_register(HEAP_KIND_DICT, &dict_ops);
}

static int dict_new(struct heap_ref *ref, shmq_dict **out)
{
	struct dict_shared *s = ref->payload;
	if (ref->obj->size < sizeof(*s) || s->magic != DICT_MAGIC) {
		heap_obj_close(ref);
		return -EPROTO;
	}
	shmq_dict *d = malloc(sizeof(*d));
	if (!d) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	d->ref = *ref;
	d->h = ref->heap;
	d->s = s;
	*out = d;
	return 0;
}

int shmq_dict_create(shmq_heap *h, const char *name, shmq_dict **out)
{
	if (!h || !out)
		return -EINVAL;
	/* The first table and the spare are made before the object, and
	 * freed if the object cannot be. */
	uint64_t tables[2];
	int err = table_new(h, MIN_BUCKETS, &tables[0]);
	if (err)
		return err;
	if ((err = table_new(h, MIN_BUCKETS, &tables[1]))) {
		heap_free(h, tables[0]);
		return err;
	}
	struct heap_ref ref;
	err = heap_obj_create(h, name, HEAP_KIND_DICT, sizeof(struct dict_shared), NULL, dict_init,
			      tables, &ref);
	if (err) {
		heap_free(h, tables[0]);
		heap_free(h, tables[1]);
		return err;
	}
	return dict_new(&ref, out);
}

int shmq_dict_open(shmq_heap *h, const char *name, shmq_dict **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_DICT, &ref);
	return err ? err : dict_new(&ref, out);
}

int shmq_dict_close(shmq_dict *d)
{
	if (!d)
		return -EINVAL;
	heap_obj_close(&d->ref);
	free(d);
	return 0;
}

const char *shmq_dict_name(shmq_dict *d)
{
	return d ? d->ref.name : NULL;
}
