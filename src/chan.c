/* CSP channels and alternation (include/shmq/chan.h): objects of a heap.
 *
 * A channel is a heap object holding a robust mutex (mutex.c) that guards
 * everything else in it: two FIFO lists of waiting offers (readers', writers')
 * and, for a buffered channel, a circular array of message blocks. Every
 * message is a heap block, [length | bytes]. An end is a second, anonymous
 * heap object linked to the channel and holding the end's roles: the heap's
 * holder bitmaps then make ends shared by fork() and openable by name, and
 * its last holder's close, exit or death frees the end, which retires its
 * roles (end_destroy).
 *
 * The commit protocol is Go's select, between processes. A call (a read or a
 * write is an alternation of one guard) locks every channel it names, in
 * offset order, and looks for a partner offer in each guard's list. It is
 * itself in no list while it looks, so nobody can commit it meanwhile; a
 * partner is committed by one CAS of its record's state from WAITING to
 * FIRED|guard: that CAS is where a message moves, exactly once, and it fails
 * if the partner fired elsewhere or timed out (a waiter times out by its own
 * CAS, without any lock). Nothing ready: the call links one offer per guard
 * (one record, a block of the heap), unlocks, and waits on the record's state
 * word. Once its state left WAITING the owner unlinks its offers that are
 * still linked (each under its channel's lock) before it reads its result or
 * frees the record; whoever unlinks an offer clears its `linked` last, so an
 * owner that reads 0 there without the lock sees every store made into it.
 * tests/model/chan.pml checks this in Spin.
 *
 * Who moves a message: a reader copies from a waiting writer's block (the
 * writer frees it once unlinked) or from the buffer; a writer hands its
 * block to a waiting reader (stored in the offer before the CAS; the reader
 * frees it). A reader that takes a buffered message moves the first waiting
 * writer's block into the buffer (a "promotion"): the one multi-store change
 * after a CAS, so it is written as an intent first and a death mid-way is
 * rolled forward by the next holder of the lock (chan_repair), as are the
 * role counts (CHAN_INTENT_ROLES). Every other change under the lock is one store
 * or leaves at worst a stale offer (its record no longer WAITING) that the
 * next scan unlinks, or a leaked block.
 *
 * Dead waiters: an offer whose owner the participant table shows gone is
 * abandoned by whoever meets it; the channel's departed hook abandons every
 * offer of a participant when its death is noticed; the last unlinker of an
 * abandoned record frees it. A reader that died unnoticed may still be
 * handed a message, which is lost with it (see chan.h).
 */
#include "heap.h"
#include "mutex.h"
#include "testhook.h"
#include "wait.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define CHAN_MAGIC 0x4e414843514d4853ull /* "SHMQCHAN" little-endian */
#define END_MAGIC 0x444e4543514d4853ull  /* "SHMQCEND" */
#define SPIN_NS (10 * 1000)              /* about one futex round trip */

/* chan_shared.flags, sticky (under the lock). */
enum { CHAN_POISONED = 1, CHAN_NO_READERS = 2, CHAN_NO_WRITERS = 4 };

/* A change under the lock that must finish once begun: written by the
 * holder before it changes anything, op last; cleared once done. The next
 * holder after a death redoes it (absolute stores: redoing is harmless). */
enum { CHAN_INTENT_NONE, CHAN_INTENT_ROLES, CHAN_INTENT_PROMOTE };
struct chan_intent {
	_Atomic uint32_t op;
	uint32_t guard;     /* PROMOTE: the writer's guard, fired by our CAS */
	uint64_t waiter;    /* PROMOTE: the writer's record */
	uint64_t msg;       /* PROMOTE: its block, going into the buffer */
	uint64_t slot;      /* PROMOTE: the buffer slot it goes to */
	uint64_t buf_after; /* PROMOTE: the buffer word once it is in */
	uint64_t end;       /* ROLES: the end object */
	uint32_t end_roles; /* ROLES: the end's roles once done */
	uint32_t readers, writers, flags; /* ROLES: the channel's, once done */
};

/* A FIFO of offers, linked by offer.next (offsets). tail may be stale after
 * a death: chan_repair recomputes it. */
struct chan_list {
	_Atomic uint64_t head, tail;
};

struct chan_shared {
	uint64_t magic;   /* written once, at creation */
	uint32_t buffer;  /* N, written once */
	uint32_t pad;
	struct mutex lock;
	/* Everything below: written under the lock. */
	struct chan_intent intent;
	_Atomic uint32_t flags;
	_Atomic uint32_t readers, writers; /* ends holding each role */
	_Atomic uint64_t buf;              /* buffer: first slot << 32 | count */
	struct chan_list rq, wq;           /* waiting readers', writers' offers */
	_Atomic uint64_t slots[];          /* buffer: message blocks */
};

struct chan_end {
	uint64_t magic;          /* written once */
	_Atomic uint32_t roles;  /* under the channel's lock */
	uint32_t pad;
};

/* A waiter record: state, then one offer per guard. */
enum {
	ST_PARKED = 1u,             /* with WAITING: the owner may sleep */
	ST_WAITING = 0x10000000u,   /* set by the owner */
	ST_FIRED = 0x20000000u,     /* | guard << 8: by the committer's CAS */
	ST_CLOSED = 0x40000000u,    /* by the owner's own CAS (timed out) */
	ST_ABANDONED = 0x80000000u, /* owner gone: by whoever noticed */
};
struct chan_offer {
	_Atomic uint64_t next;   /* in its channel's list (lock) */
	uint64_t waiter;         /* the record (written once, by the owner) */
	uint64_t chan;           /* the channel object (once) */
	_Atomic uint32_t linked; /* 1 while listed; cleared last, release */
	uint32_t guard;          /* index (once) */
	uint32_t op;             /* SHMQ_GUARD_READ / WRITE (once) */
	uint32_t pad;
	/* write: the owner's message block, 0 once a promotion moved it into
	 * the buffer. read: the block a writer hands over. Written under the
	 * lock by a committer before its CAS (read) or after it (promotion). */
	_Atomic uint64_t msg;
	_Atomic int64_t result;  /* by the committer, before its CAS */
	uint64_t cap;            /* read: the reader's buffer (once) */
	uint64_t len;            /* write: the message's length (once) */
};
/* A message of up to CHAN_INLINE bytes moves through the records' own
 * room instead of a block: a waiting writer's bytes wait in its offer's
 * room (msg 0), a writer copies them into a waiting reader's room (msg 0,
 * result the length). One allocation and free less per hand-off. */
#define CHAN_INLINE 256u
struct chan_waiter {
	_Atomic uint32_t state;  /* futex word */
	uint32_t owner;          /* the owner's wide tag (once) */
	uint32_t n;              /* guards (once) */
	_Atomic uint32_t linked; /* offers still listed */
	struct chan_offer offers[]; /* n of them, then n rooms of CHAN_INLINE */
};

static size_t waiter_size(uint32_t n)
{
	return sizeof(struct chan_waiter) + n * (sizeof(struct chan_offer) + CHAN_INLINE);
}

/* Offer i's room. */
static unsigned char *offer_room(struct chan_waiter *w, uint32_t i)
{
	return (unsigned char *)&w->offers[w->n] + (size_t)i * CHAN_INLINE;
}

struct shmq_chan {
	struct heap_ref end;   /* the end object */
	struct heap_ref ref;   /* the channel object */
	struct chan_end *e;
	struct chan_shared *c;
	int opened;            /* roles the end had when opened: -EBADF */
	uint32_t nbuf;         /* the buffer size, validated at open (the shared
				  copy may be rewritten by a hostile process) */
	/* A waiter record kept for the next wait through this handle (offset
	 * | guards it has room for << 56, or 0), so that a hot exchange does
	 * not go through the heap's allocator: taken and given back by
	 * exchange, by any thread. Valid in the process that put it there
	 * (spare_gen: a forked child must not share it with its parent). */
	_Atomic uint64_t spare;
	_Atomic unsigned spare_gen;
};

#define NOT_READY INT64_MIN
#define WALK_MAX (1u << 20) /* longest list walked: beyond, a hostile cycle */

/* SHMQ_ALT_FAIR's rotation: the guard its last call on this thread fired. */
static _Thread_local unsigned fair_last = UINT_MAX;

/* Bumped in a forked child: handles' spare records are its parent's. */
static _Atomic unsigned fork_gen;

/* ------------------------------------------------------- shared access -- */

static struct chan_offer *offer_at(shmq_heap *h, uint64_t off)
{
	return off && off % 8 == 0 ? heap_at(h, off, sizeof(struct chan_offer)) : NULL;
}

static struct chan_waiter *waiter_at(shmq_heap *h, uint64_t off)
{
	struct chan_waiter *w = off && off % 8 == 0 ? heap_at(h, off, sizeof(*w)) : NULL;
	if (!w || w->n == 0 || w->n > SHMQ_ALT_MAX)
		return NULL;
	return heap_at(h, off, waiter_size(w->n));
}

/* The waiter an offer belongs to, checked to contain it. */
static struct chan_waiter *owner_of(shmq_heap *h, struct chan_offer *o)
{
	struct chan_waiter *w = waiter_at(h, o->waiter);
	if (!w || o->guard >= w->n || &w->offers[o->guard] != o)
		return NULL;
	return w;
}

/* A message block's bytes and length, or NULL if it is not one. */
static const unsigned char *msg_at(shmq_heap *h, uint64_t blk, uint64_t *len)
{
	const uint64_t *p = blk && blk % 8 == 0 ? heap_at(h, blk, sizeof(uint64_t)) : NULL;
	if (!p || *p > SHMQ_CHAN_MSG_MAX)
		return NULL;
	*len = *p;
	return heap_at(h, blk + sizeof(uint64_t), *len) ? (const unsigned char *)(p + 1) : NULL;
}

/* A writer's offered message: its block's, or in its room. */
static const unsigned char *offered_msg(shmq_heap *h, struct chan_waiter *w, struct chan_offer *o,
					uint64_t *len)
{
	uint64_t blk = atomic_load(&o->msg);
	if (blk)
		return msg_at(h, blk, len);
	*len = o->len;
	return o->len <= CHAN_INLINE ? offer_room(w, o->guard) : NULL;
}

static int msg_new(shmq_heap *h, const void *buf, size_t len, uint64_t *blk)
{
	int err = heap_alloc(h, sizeof(uint64_t) + len, blk);
	if (err)
		return err;
	uint64_t *p = heap_at(h, *blk, sizeof(uint64_t) + len);
	if (!p) {
		heap_free(h, *blk);
		return -EPROTO;
	}
	*p = len;
	if (len)
		memcpy(p + 1, buf, len);
	return 0;
}

static bool waiting(uint32_t s)
{
	return (s & ~ST_PARKED) == ST_WAITING;
}

/* ---------------------------------------------------------------- lists -- */

/* Free the blocks a record nobody else touches any more still owns. */
static void waiter_free_msgs(shmq_heap *h, struct chan_waiter *w)
{
	for (uint32_t i = 0; i < w->n; i++) {
		uint64_t m = atomic_exchange(&w->offers[i].msg, 0);
		if (m)
			heap_free(h, m);
	}
}

static void waiter_free(shmq_heap *h, uint64_t woff, struct chan_waiter *w)
{
	waiter_free_msgs(h, w);
	heap_free(h, woff);
}

/* Take offer off out of list l (the lock held). Idempotent: an offer
 * already out only has its flag cleared. Frees an abandoned record once its
 * last offer is out. */
static void list_unlink(shmq_heap *h, struct chan_list *l, uint64_t off, struct chan_offer *o)
{
	_Atomic uint64_t *link = &l->head;
	uint64_t prev = 0;
	for (uint32_t steps = 0; steps < WALK_MAX; steps++) {
		uint64_t cur = atomic_load(link);
		if (cur == off) {
			atomic_store(link, atomic_load(&o->next));
			if (atomic_load(&l->tail) == off)
				atomic_store(&l->tail, prev);
			break;
		}
		struct chan_offer *p = offer_at(h, cur);
		if (!p)
			break;
		prev = cur;
		link = &p->next;
	}
	if (!atomic_load(&o->linked))
		return;
	struct chan_waiter *w = owner_of(h, o);
	bool last = w && atomic_fetch_sub(&w->linked, 1) == 1;
	bool abandoned = w && atomic_load(&w->state) & ST_ABANDONED;
	atomic_store_explicit(&o->linked, 0, memory_order_release); /* last: the owner may free */
	if (last && abandoned)
		waiter_free(h, o->waiter, w);
}

static void list_append(shmq_heap *h, struct chan_list *l, uint64_t off, struct chan_offer *o)
{
	atomic_store(&o->next, 0);
	struct chan_offer *t = offer_at(h, atomic_load(&l->tail));
	if (t && atomic_load(&l->head))
		atomic_store(&t->next, off);
	else
		atomic_store(&l->head, off);
	atomic_store(&l->tail, off);
}

/* Mark a record whose owner is gone; true if it was still waiting. */
static bool abandon(struct chan_waiter *w)
{
	uint32_t s = atomic_load(&w->state);
	while (!atomic_compare_exchange_weak(&w->state, &s,
					     (waiting(s) ? ST_CLOSED : s) | ST_ABANDONED))
		;
	return waiting(s);
}

/* Is the owner of a waiting record gone? The table says so at no cost once
 * the death was noticed; until then only a look at the process does
 * (part.c: a few syscalls), which each process does at most once per
 * GONE_CHECK_NS per participant slot: a partner in a hot exchange is looked
 * at once per millisecond, and one that died is known gone within that. */
#define GONE_CHECK_NS (1000 * 1000)
static _Atomic uint64_t seen_alive[SHMQ_MAX_PARTICIPANTS]; /* tag << 32 | ms */

static bool owner_gone(struct part_table *t, uint32_t tag)
{
	if (part_wide_tag_gone(t, tag, true))
		return true;
	uint32_t ms = (uint32_t)(wait_now() / GONE_CHECK_NS);
	_Atomic uint64_t *seen = &seen_alive[tag % SHMQ_MAX_PARTICIPANTS];
	uint64_t s = atomic_load_explicit(seen, memory_order_relaxed);
	if (s >> 32 == tag && (uint32_t)s == ms)
		return false;
	if (part_wide_tag_gone(t, tag, false))
		return true;
	atomic_store_explicit(seen, (uint64_t)tag << 32 | ms, memory_order_relaxed);
	return false;
}

/* The first offer of l whose owner still waits, its record in *wout;
 * offers of records that fired, closed or whose owner is gone are unlinked
 * on the way. NULL: none (or a corrupt list, then emptied). */
static struct chan_offer *first_waiting(shmq_heap *h, struct chan_list *l, uint64_t *off,
					struct chan_waiter **wout)
{
	struct part_table *t = heap_parts(h);
	for (uint32_t steps = 0; steps < WALK_MAX; steps++) {
		*off = atomic_load(&l->head);
		if (!*off)
			return NULL;
		struct chan_offer *o = offer_at(h, *off);
		struct chan_waiter *w = o ? owner_of(h, o) : NULL;
		if (!w) { /* hostile: drop the whole list rather than follow it */
			atomic_store(&l->head, 0);
			atomic_store(&l->tail, 0);
			return NULL;
		}
		uint32_t s = atomic_load(&w->state);
		if (waiting(s) ? owner_gone(t, w->owner) : part_wide_tag_gone(t, w->owner, true))
			abandon(w); /* gone: the last unlink frees its record */
		else if (waiting(s)) {
			*wout = w;
			return o;
		}
		list_unlink(h, l, *off, o);
	}
	return NULL;
}

/* Fire guard `guard` of waiter w: the commit. The caller stored what the
 * owner will read (result, msg) before. False: w no longer waits. */
static bool commit(struct chan_waiter *w, uint32_t guard)
{
	uint32_t s = atomic_load(&w->state);
	while (waiting(s))
		if (atomic_compare_exchange_weak(&w->state, &s, ST_FIRED | guard << 8)) {
			if (s & ST_PARKED)
				wait_wake(&w->state, 1);
			return true;
		}
	return false;
}

/* Fire every waiting offer of l with result err (nothing moves). */
static void fail_all(shmq_heap *h, struct chan_list *l, int64_t err)
{
	uint64_t off;
	struct chan_waiter *w;
	struct chan_offer *o;
	while ((o = first_waiting(h, l, &off, &w))) {
		if (o->op == SHMQ_GUARD_READ)
			atomic_store(&o->msg, 0);
		atomic_store(&o->result, err);
		commit(w, o->guard);
		list_unlink(h, l, off, o);
	}
}

/* ---------------------------------------------------------------- buffer -- */

static uint32_t buf_count(struct chan_shared *c)
{
	return (uint32_t)atomic_load(&c->buf);
}

static uint64_t buf_word(uint64_t first, uint64_t count)
{
	return first << 32 | count;
}

/* ---------------------------------------------------------- repair, settle -- */

static void intent_clear(struct chan_shared *c)
{
	atomic_store_explicit(&c->intent.op, CHAN_INTENT_NONE, memory_order_release);
}

/* After a death under the lock: finish its intent, rebuild the lists' tails.
 * nbuf: the buffer size, validated. */
static void chan_repair(shmq_heap *h, struct chan_shared *c, uint32_t nbuf)
{
	struct chan_intent *in = &c->intent;
	uint32_t op = atomic_load_explicit(&in->op, memory_order_acquire);
	if (op == CHAN_INTENT_ROLES) {
		uint64_t eoff = in->end;
		struct chan_end *e = eoff % alignof(struct chan_end) ? NULL
								   : heap_at(h, eoff, sizeof(*e));
		if (e && e->magic == END_MAGIC)
			atomic_store(&e->roles, in->end_roles);
		atomic_store(&c->readers, in->readers);
		atomic_store(&c->writers, in->writers);
		atomic_store(&c->flags, in->flags);
	} else if (op == CHAN_INTENT_PROMOTE && nbuf) {
		/* Redo it only if the writer's CAS happened; its record is
		 * still listed here, so it has not been freed. */
		struct chan_waiter *w = waiter_at(h, in->waiter);
		if (w && in->guard < w->n &&
		    (atomic_load(&w->state) & ~ST_ABANDONED) == (ST_FIRED | in->guard << 8)) {
			atomic_store(&c->slots[in->slot % nbuf], in->msg);
			atomic_store(&w->offers[in->guard].msg, 0);
			atomic_store(&c->buf, in->buf_after);
		}
	}
	intent_clear(c);
	struct chan_list *lists[2] = { &c->rq, &c->wq };
	for (int i = 0; i < 2; i++) {
		uint64_t last = 0, cur = atomic_load(&lists[i]->head);
		for (uint32_t steps = 0; cur && steps < WALK_MAX; steps++) {
			struct chan_offer *o = offer_at(h, cur);
			if (!o) {
				atomic_store(&lists[i]->head, 0);
				last = 0;
				break;
			}
			last = cur;
			cur = atomic_load(&o->next);
		}
		atomic_store(&lists[i]->tail, last);
	}
}

/* What a change of counts, flags or buffer makes final for the waiters. */
static void settle(shmq_heap *h, struct chan_shared *c)
{
	uint32_t f = atomic_load(&c->flags);
	if (f & CHAN_POISONED) {
		fail_all(h, &c->rq, -ECANCELED);
		fail_all(h, &c->wq, -ECANCELED);
		return;
	}
	if (f & CHAN_NO_READERS)
		fail_all(h, &c->wq, -EPIPE);
	if (f & CHAN_NO_WRITERS && buf_count(c) == 0) {
		uint64_t off;
		struct chan_waiter *w;
		if (!first_waiting(h, &c->wq, &off, &w))
			fail_all(h, &c->rq, -EPIPE);
	}
}

static int chan_lock(shmq_heap *h, struct chan_shared *c, uint32_t nbuf)
{
	int r = mutex_lock(&c->lock, heap_parts(h), heap_owner(h), -1);
	if (r == -EOWNERDEAD) {
		chan_repair(h, c, nbuf);
		settle(h, c);
		r = 0;
	}
	return r;
}

static void chan_unlock(shmq_heap *h, struct chan_shared *c)
{
	mutex_unlock(&c->lock, heap_owner(h));
}

/* Set an end's roles and the channel's counts (the lock held). */
static void set_roles(shmq_heap *h, struct chan_shared *c, struct chan_end *e, uint32_t roles)
{
	uint32_t old = atomic_load(&e->roles) & SHMQ_RDWR;
	uint32_t readers = atomic_load(&c->readers), writers = atomic_load(&c->writers);
	uint32_t flags = atomic_load(&c->flags);
	readers += (roles & SHMQ_RD ? 1 : 0) - (old & SHMQ_RD ? 1 : 0);
	writers += (roles & SHMQ_WR ? 1 : 0) - (old & SHMQ_WR ? 1 : 0);
	if (old & SHMQ_RD && readers == 0)
		flags |= CHAN_NO_READERS;
	if (old & SHMQ_WR && writers == 0)
		flags |= CHAN_NO_WRITERS;
	struct chan_intent *in = &c->intent;
	in->end = heap_off(h, e);
	in->end_roles = roles;
	in->readers = readers;
	in->writers = writers;
	in->flags = flags;
	atomic_store_explicit(&in->op, CHAN_INTENT_ROLES, memory_order_release);
	atomic_store(&e->roles, roles);
	atomic_store(&c->readers, readers);
	atomic_store(&c->writers, writers);
	atomic_store(&c->flags, flags);
	intent_clear(c);
	settle(h, c);
}

/* ------------------------------------------------------------ the kinds -- */

/* The channel in object o, its buffer size in *nbuf (read once: callers use
 * that, never the shared field again), or NULL. */
static struct chan_shared *chan_of(struct heap_obj *o, uint32_t *nbuf)
{
	struct chan_shared *c = (struct chan_shared *)(o + 1);
	if (o->size < sizeof(*c) || c->magic != CHAN_MAGIC)
		return NULL;
	*nbuf = *(volatile uint32_t *)&c->buffer;
	if (*nbuf > SHMQ_CHAN_BUFFER_MAX || o->size < sizeof(*c) + (uint64_t)*nbuf * sizeof(c->slots[0]))
		return NULL;
	return c;
}

/* Free the buffered messages (poison, destroy). The word goes first: a
 * death mid-way leaks the rest. */
static void buf_drop(shmq_heap *h, struct chan_shared *c, uint32_t nbuf)
{
	uint64_t b = atomic_exchange(&c->buf, 0), count = (uint32_t)b;
	for (uint64_t i = 0; nbuf && i < count && i < nbuf; i++)
		heap_free(h, atomic_exchange(&c->slots[((b >> 32) + i) % nbuf], 0));
}

/* The last holder of an end let go of it (under the heap mutex): its roles
 * retire. */
static void end_destroy(shmq_heap *h, struct heap_obj *o)
{
	struct chan_end *e = (struct chan_end *)(o + 1);
	struct heap_obj *co = o->ref ? heap_obj_at(h, o->ref) : NULL;
	uint32_t nbuf;
	struct chan_shared *c = co && co->kind == HEAP_KIND_CHAN ? chan_of(co, &nbuf) : NULL;
	if (o->size < sizeof(*e) || e->magic != END_MAGIC || !c || chan_lock(h, c, nbuf))
		return;
	if (atomic_load(&e->roles))
		set_roles(h, c, e, 0);
	chan_unlock(h, c);
}

/* Abandon, in both lists, the offers of participant slot (owner tag, or 0:
 * any owner of that slot that is gone). Under the heap mutex. */
static void chan_departed(shmq_heap *h, struct heap_obj *o, uint32_t slot, uint32_t tag)
{
	uint32_t nbuf;
	struct chan_shared *c = chan_of(o, &nbuf);
	struct part_table *t = heap_parts(h);
	if (!c || chan_lock(h, c, nbuf))
		return;
	struct chan_list *lists[2] = { &c->rq, &c->wq };
	for (int i = 0; i < 2; i++) {
		uint64_t cur = atomic_load(&lists[i]->head);
		for (uint32_t steps = 0; cur && steps < WALK_MAX; steps++) {
			struct chan_offer *of = offer_at(h, cur);
			struct chan_waiter *w = of ? owner_of(h, of) : NULL;
			if (!w)
				break;
			uint64_t next = atomic_load(&of->next);
			bool theirs = tag ? w->owner == tag
					  : (w->owner & 1023u) == slot &&
						    part_wide_tag_gone(t, w->owner, true);
			if (theirs) {
				abandon(w);
				list_unlink(h, lists[i], cur, of);
			}
			cur = next;
		}
	}
	settle(h, c);
	chan_unlock(h, c);
}

/* Nobody holds the channel any more: free what it still owns. */
static void chan_destroy(shmq_heap *h, struct heap_obj *o)
{
	uint32_t nbuf;
	struct chan_shared *c = chan_of(o, &nbuf);
	if (!c)
		return;
	buf_drop(h, c, nbuf);
	struct chan_list *lists[2] = { &c->rq, &c->wq };
	for (int i = 0; i < 2; i++) {
		uint64_t off;
		struct chan_offer *of;
		for (uint32_t steps = 0; steps < WALK_MAX && (off = atomic_load(&lists[i]->head));
		     steps++) {
			struct chan_waiter *w = (of = offer_at(h, off)) ? owner_of(h, of) : NULL;
			if (!w)
				break;
			abandon(w);
			list_unlink(h, lists[i], off, of);
		}
	}
}

static const struct heap_kind_ops chan_ops = { .departed = chan_departed, .destroy = chan_destroy };
static const struct heap_kind_ops end_ops = { .destroy = end_destroy };

/* ---------------------------------------------------------- spare records -- */

#define SPARE_OFF ((1ull << 56) - 1)

static void count_fork(void)
{
	atomic_fetch_add_explicit(&fork_gen, 1, memory_order_relaxed);
}

/* The handle's spare record (offset | room << 56), or 0. */
static uint64_t spare_take(shmq_chan *ch)
{
	unsigned gen = atomic_load_explicit(&fork_gen, memory_order_relaxed);
	if (atomic_load_explicit(&ch->spare_gen, memory_order_relaxed) != gen) {
		atomic_store(&ch->spare, 0); /* inherited: the parent's */
		atomic_store_explicit(&ch->spare_gen, gen, memory_order_relaxed);
		return 0;
	}
	return atomic_exchange(&ch->spare, 0);
}

static void spare_give(shmq_heap *h, shmq_chan *ch, uint64_t off, uint32_t room)
{
	uint64_t none = 0;
	if (atomic_load_explicit(&ch->spare_gen, memory_order_relaxed) !=
		    atomic_load_explicit(&fork_gen, memory_order_relaxed) ||
	    !atomic_compare_exchange_strong(&ch->spare, &none, off | (uint64_t)room << 56))
		heap_free(h, off);
}

__attribute__((constructor)) static void chan_register(void)
{
	heap_kind_register(HEAP_KIND_CHAN, &chan_ops);
	heap_kind_register(HEAP_KIND_CHAN_END, &end_ops);
	pthread_atfork(NULL, NULL, count_fork);
}

/* ------------------------------------------------------------- handles -- */

static void chan_init(void *payload, void *arg)
{
	struct chan_shared *c = payload;
	c->magic = CHAN_MAGIC;
	c->buffer = *(uint32_t *)arg;
	mutex_init(&c->lock, 0);
}

static void end_init(void *payload, void *arg)
{
	(void)arg;
	((struct chan_end *)payload)->magic = END_MAGIC;
}

/* A handle on channel ref (taken over: closed on failure) and end eref. */
static int handle_new(struct heap_ref *ref, struct heap_ref *eref, uint32_t nbuf, shmq_chan **out)
{
	shmq_chan *ch = calloc(1, sizeof(*ch));
	if (!ch) {
		heap_obj_close(eref);
		heap_obj_close(ref);
		return -ENOMEM;
	}
	ch->ref = *ref;
	ch->end = *eref;
	ch->c = ref->payload;
	ch->e = eref->payload;
	ch->nbuf = nbuf;
	ch->opened = (int)(atomic_load(&ch->e->roles) & SHMQ_RDWR);
	*out = ch;
	return 0;
}

/* A new end with roles on the channel of ref (closed on failure). */
static int end_new(struct heap_ref *ref, int roles, shmq_chan **out)
{
	shmq_heap *h = ref->heap;
	uint32_t nbuf;
	struct chan_shared *c = chan_of(ref->obj, &nbuf);
	struct heap_ref eref;
	int err = c ? heap_obj_create(h, NULL, HEAP_KIND_CHAN_END, sizeof(struct chan_end), ref,
				      end_init, NULL, &eref)
		    : -EPROTO;
	if (!err && (err = chan_lock(h, c, nbuf)) == 0) {
		set_roles(h, c, eref.payload, (uint32_t)roles);
		chan_unlock(h, c);
	} else if (!err) {
		heap_obj_close(&eref);
	}
	if (err) {
		heap_obj_close(ref);
		return err;
	}
	return handle_new(ref, &eref, nbuf, out);
}

int shmq_chan_create(shmq_heap *h, const char *name, uint32_t buffer, shmq_chan **out)
{
	if (!h || !out || buffer > SHMQ_CHAN_BUFFER_MAX)
		return -EINVAL;
	struct heap_ref ref;
	size_t size = sizeof(struct chan_shared) + (size_t)buffer * sizeof(uint64_t);
	int err = heap_obj_create(h, name, HEAP_KIND_CHAN, size, NULL, chan_init, &buffer, &ref);
	if (!err && (err = end_new(&ref, SHMQ_RDWR, out)) && name)
		shmq_heap_remove(h, name); /* a failed create leaves no channel behind */
	return err;
}

int shmq_chan_open(shmq_heap *h, const char *name, int roles, shmq_chan **out)
{
	if (!h || !out || roles & ~SHMQ_RDWR)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_CHAN, &ref);
	return err ? err : end_new(&ref, roles, out);
}

int shmq_chan_end_open(shmq_heap *h, const char *end_name, shmq_chan **out)
{
	if (!h || !out)
		return -EINVAL;
	struct heap_ref eref, ref;
	uint32_t nbuf = 0;
	int err = heap_obj_open(h, end_name, HEAP_KIND_CHAN_END, &eref);
	if (err)
		return err;
	struct chan_end *e = eref.payload;
	if (eref.obj->size < sizeof(*e) || e->magic != END_MAGIC || !eref.obj->ref)
		err = -EPROTO;
	else if ((err = heap_obj_open_at(h, eref.obj->ref, HEAP_KIND_CHAN, &ref)) == 0 &&
		 !chan_of(ref.obj, &nbuf)) {
		heap_obj_close(&ref);
		err = -EPROTO;
	}
	if (err) {
		heap_obj_close(&eref);
		return err == -EINVAL ? -EPROTO : err;
	}
	return handle_new(&ref, &eref, nbuf, out);
}

int shmq_chan_close(shmq_chan *ch)
{
	if (!ch)
		return -EINVAL;
	uint64_t spare = spare_take(ch);
	if (spare)
		heap_free(ch->ref.heap, spare & SPARE_OFF);
	heap_obj_close(&ch->end); /* the last holder's close retires it */
	heap_obj_close(&ch->ref);
	free(ch);
	return 0;
}

const char *shmq_chan_name(shmq_chan *ch)
{
	return ch ? ch->ref.name : NULL;
}

const char *shmq_chan_end_name(shmq_chan *ch)
{
	return ch ? ch->end.name : NULL;
}

int shmq_chan_roles(shmq_chan *ch)
{
	return ch ? (int)(atomic_load(&ch->e->roles) & SHMQ_RDWR) : -EINVAL;
}

int shmq_chan_buffer(shmq_chan *ch)
{
	return ch ? (int)ch->nbuf : -EINVAL;
}

int shmq_chan_retire(shmq_chan *ch, int roles)
{
	if (!ch || roles & ~SHMQ_RDWR || !roles)
		return -EINVAL;
	shmq_heap *h = ch->ref.heap;
	int err = chan_lock(h, ch->c, ch->nbuf);
	if (err)
		return err;
	uint32_t now = atomic_load(&ch->e->roles) & SHMQ_RDWR;
	if (now & (uint32_t)roles)
		set_roles(h, ch->c, ch->e, now & ~(uint32_t)roles);
	chan_unlock(h, ch->c);
	return 0;
}

int shmq_chan_poison(shmq_chan *ch)
{
	if (!ch)
		return -EINVAL;
	shmq_heap *h = ch->ref.heap;
	struct chan_shared *c = ch->c;
	int err = chan_lock(h, c, ch->nbuf);
	if (err)
		return err;
	atomic_fetch_or(&c->flags, CHAN_POISONED);
	buf_drop(h, c, ch->nbuf);
	settle(h, c);
	chan_unlock(h, c);
	return 0;
}

/* ----------------------------------------------------------- the guards -- */

/* What a guard's own end says before any partner is looked for: an error
 * it fires with, or 0. The lock held (roles change under it). */
static int64_t end_error(struct shmq_guard *g)
{
	shmq_chan *ch = g->chan;
	uint32_t f = atomic_load(&ch->c->flags);
	int need = g->op == SHMQ_GUARD_READ ? SHMQ_RD : SHMQ_WR;
	if (f & CHAN_POISONED)
		return -ECANCELED;
	if (!(ch->opened & need))
		return -EBADF;
	/* Our end retired, or the channel (final: a late end finds it so). */
	if (!(atomic_load(&ch->e->roles) & (uint32_t)need) ||
	    f & (g->op == SHMQ_GUARD_READ ? CHAN_NO_READERS : CHAN_NO_READERS | CHAN_NO_WRITERS))
		return -EPIPE;
	return 0;
}

/* A reader took a buffered message: move the first waiting writer's block
 * into the freed slot (see CHAN_INTENT_PROMOTE). */
static void promote(shmq_heap *h, struct chan_shared *c, uint32_t nbuf)
{
	uint64_t off;
	struct chan_waiter *w;
	struct chan_offer *o;
	while ((o = first_waiting(h, &c->wq, &off, &w))) {
		uint64_t b = atomic_load(&c->buf), first = b >> 32, count = (uint32_t)b, len;
		uint64_t blk = atomic_load(&o->msg);
		const unsigned char *p = blk ? NULL : offered_msg(h, w, o, &len);
		bool fresh = !blk; /* its bytes wait in its room: they need a block */
		if (fresh && (!p || msg_new(h, p, len, &blk)))
			return; /* stays waiting: taken directly once the buffer is empty */
		struct chan_intent *in = &c->intent;
		in->guard = o->guard;
		in->waiter = o->waiter;
		in->msg = blk;
		in->slot = (first + count) % nbuf;
		in->buf_after = buf_word(first, count + 1);
		atomic_store(&o->result, 0);
		atomic_store_explicit(&in->op, CHAN_INTENT_PROMOTE, memory_order_release);
		bool fired = commit(w, o->guard);
		if (fired) {
			TEST_HOOK(SHMQ_HOOK_CHAN_PROMOTE);
			atomic_store(&c->slots[in->slot], in->msg);
			atomic_store(&o->msg, 0);
			atomic_store(&c->buf, in->buf_after);
		} else if (fresh) {
			heap_free(h, blk);
		}
		intent_clear(c);
		list_unlink(h, &c->wq, off, o);
		if (fired)
			return;
	}
}

static int64_t try_read(shmq_heap *h, struct shmq_guard *g)
{
	struct chan_shared *c = g->chan->c;
	uint32_t nbuf = g->chan->nbuf;
	uint64_t b = atomic_load(&c->buf), len, off;
	if ((uint32_t)b && nbuf) {
		uint64_t first = b >> 32, blk = atomic_load(&c->slots[first % nbuf]);
		const unsigned char *p = msg_at(h, blk, &len);
		if (!p) { /* a corrupt slot: drop it */
			atomic_store(&c->buf, buf_word((first + 1) % nbuf, (uint32_t)b - 1));
			return -EPROTO;
		}
		if (len > g->rcap)
			return -EMSGSIZE;
		if (len)
			memcpy(g->rbuf, p, len);
		atomic_store(&c->buf, buf_word((first + 1) % nbuf, (uint32_t)b - 1));
		heap_free(h, blk);
		promote(h, c, nbuf);
		return (int64_t)len;
	}
	struct chan_waiter *w;
	struct chan_offer *o;
	while ((o = first_waiting(h, &c->wq, &off, &w))) {
		const unsigned char *p = offered_msg(h, w, o, &len);
		if (!p) { /* a corrupt offer: it fails, the reader goes on */
			atomic_store(&o->result, -EPROTO);
			commit(w, o->guard);
			list_unlink(h, &c->wq, off, o);
			continue;
		}
		if (len > g->rcap)
			return -EMSGSIZE;
		atomic_store(&o->result, 0);
		if (!commit(w, o->guard))
			continue; /* fired elsewhere meanwhile: next time it is unlinked */
		if (len)
			memcpy(g->rbuf, p, len);
		list_unlink(h, &c->wq, off, o); /* after the copy: then the writer frees */
		return (int64_t)len;
	}
	if (atomic_load(&c->flags) & CHAN_NO_WRITERS)
		return -EPIPE;
	return NOT_READY;
}

/* *blk: our message block (0: the message is small enough for a room, on
 * a rendezvous channel), 0 once handed over or buffered. */
static int64_t try_write(shmq_heap *h, struct shmq_guard *g, uint64_t *blk)
{
	struct chan_shared *c = g->chan->c;
	uint32_t nbuf = g->chan->nbuf;
	if (!*blk && (g->wlen > CHAN_INLINE || nbuf))
		return -ENOSPC; /* the block it needs could not be had */
	uint64_t off;
	struct chan_waiter *w;
	struct chan_offer *o;
	while ((o = first_waiting(h, &c->rq, &off, &w))) {
		bool fits = g->wlen <= o->cap, room = fits && g->wlen <= CHAN_INLINE;
		if (room && g->wlen)
			memcpy(offer_room(w, o->guard), g->wbuf, g->wlen);
		atomic_store(&o->msg, fits && !room ? *blk : 0);
		atomic_store(&o->result, fits ? (int64_t)g->wlen : -EMSGSIZE);
		bool fired = commit(w, o->guard);
		if (!fired)
			atomic_store(&o->msg, 0);
		list_unlink(h, &c->rq, off, o);
		if (fired && fits) {
			if (!room)
				*blk = 0;
			return 0;
		}
	}
	uint64_t b = atomic_load(&c->buf), count = (uint32_t)b;
	if (count < nbuf) {
		uint64_t first = b >> 32;
		atomic_store(&c->slots[(first + count) % nbuf], *blk);
		atomic_store(&c->buf, buf_word(first, count + 1)); /* published */
		*blk = 0;
		return 0;
	}
	return NOT_READY;
}

static int64_t try_guard(shmq_heap *h, struct shmq_guard *g, uint64_t *blk)
{
	int64_t err = end_error(g);
	if (err)
		return err;
	if (g->op == SHMQ_GUARD_READ)
		return try_read(h, g);
	if (g->wlen > SHMQ_CHAN_MSG_MAX)
		return -EMSGSIZE;
	return try_write(h, g, blk);
}

/* ---------------------------------------------------------- alternation -- */

struct alt {
	struct shmq_guard *g;
	unsigned n;
	shmq_heap *h;
	uint64_t blk[SHMQ_ALT_MAX];   /* write guards' message blocks */
	shmq_chan *locks[SHMQ_ALT_MAX]; /* a handle per distinct channel, by offset */
	unsigned nlocks;
	uint64_t woff;                /* our record, once waiting */
	uint32_t room;                /* guards it has room for */
	struct chan_waiter *w;
};


static int alt_check(struct alt *a)
{
	if (!a->g || a->n == 0 || a->n > SHMQ_ALT_MAX)
		return -EINVAL;
	for (unsigned i = 0; i < a->n; i++) {
		struct shmq_guard *g = &a->g[i];
		if (!g->chan || (g->op != SHMQ_GUARD_READ && g->op != SHMQ_GUARD_WRITE) ||
		    g->chan->ref.heap != a->g[0].chan->ref.heap ||
		    (g->op == SHMQ_GUARD_READ && !g->rbuf && g->rcap) ||
		    (g->op == SHMQ_GUARD_WRITE && !g->wbuf && g->wlen))
			return -EINVAL;
	}
	a->h = a->g[0].chan->ref.heap;
	return 0;
}

/* Our channels, each once, in offset order: every process locks in the
 * same order. */
static void alt_sort(struct alt *a)
{
	a->nlocks = 0;
	for (unsigned i = 0; i < a->n; i++) {
		shmq_chan *ch = a->g[i].chan;
		unsigned j = 0;
		while (j < a->nlocks && a->locks[j]->c < ch->c)
			j++;
		if (j < a->nlocks && a->locks[j]->c == ch->c)
			continue;
		memmove(&a->locks[j + 1], &a->locks[j], (a->nlocks - j) * sizeof(a->locks[0]));
		a->locks[j] = ch;
		a->nlocks++;
	}
}

static int alt_lock(struct alt *a)
{
	for (unsigned i = 0; i < a->nlocks; i++) {
		int err = chan_lock(a->h, a->locks[i]->c, a->locks[i]->nbuf);
		if (err) {
			while (i--)
				chan_unlock(a->h, a->locks[i]->c);
			return err;
		}
	}
	return 0;
}

static void alt_unlock(struct alt *a)
{
	for (unsigned i = 0; i < a->nlocks; i++) {
		settle(a->h, a->locks[i]->c);
		chan_unlock(a->h, a->locks[i]->c);
	}
}

static void alt_free_msgs(struct alt *a)
{
	for (unsigned i = 0; i < a->n; i++)
		if (a->blk[i])
			heap_free(a->h, a->blk[i]);
}

/* Link an offer per guard (every lock held). The offers own the write
 * blocks from now on. */
static int alt_enqueue(struct alt *a)
{
	uint64_t spare = spare_take(a->g[0].chan);
	a->woff = spare & SPARE_OFF;
	a->room = (uint32_t)(spare >> 56);
	if (spare && a->room < a->n) {
		heap_free(a->h, a->woff);
		spare = 0;
	}
	if (!spare) {
		a->room = a->n;
		int err = heap_alloc(a->h, waiter_size(a->n), &a->woff);
		if (err)
			return err;
	}
	struct chan_waiter *w = a->w = heap_at(a->h, a->woff, waiter_size(a->room));
	if (!w) {
		heap_free(a->h, a->woff);
		return -EPROTO;
	}
	memset(w, 0, sizeof(*w) + a->n * sizeof(struct chan_offer)); /* not the rooms */
	w->owner = heap_owner(a->h);
	w->n = a->n;
	atomic_store(&w->linked, a->n);
	atomic_store(&w->state, ST_WAITING);
	for (unsigned i = 0; i < a->n; i++) {
		struct shmq_guard *g = &a->g[i];
		struct chan_offer *o = &w->offers[i];
		o->waiter = a->woff;
		o->chan = g->chan->ref.off;
		o->guard = i;
		o->op = (uint32_t)g->op;
		o->cap = g->rcap;
		o->len = g->wlen;
		if (g->op == SHMQ_GUARD_WRITE && !a->blk[i] && g->wlen)
			memcpy(offer_room(w, i), g->wbuf, g->wlen); /* small: it waits in the room */
		atomic_store(&o->msg, a->blk[i]);
		a->blk[i] = 0;
		atomic_store(&o->linked, 1);
		struct chan_shared *c = g->chan->c;
		list_append(a->h, g->op == SHMQ_GUARD_READ ? &c->rq : &c->wq,
			    heap_off(a->h, o), o);
	}
	return 0;
}

static bool not_waiting(void *arg)
{
	return !waiting(atomic_load(&((struct chan_waiter *)arg)->state));
}

/* Wait until a partner fires one of our guards, or the deadline: then close
 * our record ourselves (a CAS that loses to a committer). */
static void alt_wait(struct alt *a, int64_t deadline)
{
	struct chan_waiter *w = a->w;
	if (wait_spin(not_waiting, w, deadline, SPIN_NS))
		return;
	int64_t next_sweep = wait_now() + WAIT_CHECK_NS;
	for (;;) {
		uint32_t s = atomic_load(&w->state);
		if (!waiting(s))
			return;
		if (wait_expired(deadline)) {
			if (atomic_compare_exchange_strong(&w->state, &s, ST_CLOSED))
				return;
			continue;
		}
		if (!(s & ST_PARKED) &&
		    !atomic_compare_exchange_strong(&w->state, &s, s | ST_PARKED))
			continue;
		wait_futex(&w->state, s | ST_PARKED, wait_slice(deadline, WAIT_CHECK_NS));
		if (wait_now() >= next_sweep) {
			/* Writers (readers) that died retire their ends here:
			 * our offers then fire with -EPIPE. */
			heap_sweep(a->h);
			next_sweep = wait_now() + WAIT_CHECK_NS;
		}
	}
}

/* Unlink our offers still listed, then take the fired guard's result and
 * free the record. Returns the guard's index, or -1 if none fired. */
static int alt_finish(struct alt *a)
{
	struct chan_waiter *w = a->w;
	bool out = true;
	for (unsigned i = 0; i < a->n; i++) {
		struct chan_offer *o = &w->offers[i];
		if (!atomic_load_explicit(&o->linked, memory_order_acquire))
			continue;
		struct chan_shared *c = a->g[i].chan->c;
		if (chan_lock(a->h, c, a->g[i].chan->nbuf) == 0) {
			list_unlink(a->h, o->op == SHMQ_GUARD_READ ? &c->rq : &c->wq,
				    heap_off(a->h, o), o);
			chan_unlock(a->h, c);
		} else {
			out = false; /* still listed: the record must stay (leaked) */
		}
	}
	uint32_t s = atomic_load(&w->state);
	int fired = -1;
	if ((s & ~0xff00u) == ST_FIRED && (s >> 8 & 0xffu) < a->n) {
		fired = (int)(s >> 8 & 0xffu);
		struct chan_offer *o = &w->offers[fired];
		struct shmq_guard *g = &a->g[fired];
		int64_t r = atomic_load(&o->result);
		if (g->op == SHMQ_GUARD_READ && r >= 0) {
			/* Handed a block, or (msg 0) the bytes in our room. */
			uint64_t len = (uint64_t)r, blk = atomic_exchange(&o->msg, 0);
			const unsigned char *p = blk ? msg_at(a->h, blk, &len)
					   : len <= CHAN_INLINE ? offer_room(w, (uint32_t)fired) : NULL;
			if (!p || len > g->rcap)
				r = -EPROTO;
			else if (len)
				memcpy(g->rbuf, p, len);
			if (blk)
				heap_free(a->h, blk);
			if (r >= 0)
				r = (int64_t)len;
		}
		g->result = (ssize_t)r;
	}
	if (out) {
		waiter_free_msgs(a->h, w);
		spare_give(a->h, a->g[0].chan, a->woff, a->room);
	}
	return fired;
}

int shmq_alt(struct shmq_guard *g, unsigned n, int flags, int64_t timeout_ns)
{
	struct alt a = { .g = g, .n = n };
	int err = alt_check(&a);
	if (err || (flags != SHMQ_ALT_PRI && flags != SHMQ_ALT_FAIR))
		return err ? err : -EINVAL;
	/* Write guards' messages go into blocks before any lock is taken,
	 * unless they may travel in records' rooms (see CHAN_INLINE); a
	 * buffered channel keeps blocks. */
	for (unsigned i = 0; i < n; i++)
		if (g[i].op == SHMQ_GUARD_WRITE && g[i].wlen <= SHMQ_CHAN_MSG_MAX &&
		    (g[i].wlen > CHAN_INLINE || g[i].chan->nbuf) &&
		    msg_new(a.h, g[i].wbuf, g[i].wlen, &a.blk[i]) == -EPROTO) {
			alt_free_msgs(&a);
			return -EPROTO;
		}
	alt_sort(&a);
	if ((err = alt_lock(&a))) {
		alt_free_msgs(&a);
		return err;
	}
	unsigned start = flags == SHMQ_ALT_FAIR && fair_last < n ? (fair_last + 1) % n : 0;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (start + k) % n;
		int64_t r = try_guard(a.h, &g[i], &a.blk[i]);
		if (r != NOT_READY) {
			alt_unlock(&a);
			alt_free_msgs(&a);
			g[i].result = (ssize_t)r;
			if (flags == SHMQ_ALT_FAIR)
				fair_last = i;
			return (int)i;
		}
	}
	err = timeout_ns == 0 ? -EAGAIN : alt_enqueue(&a);
	alt_unlock(&a);
	if (err) {
		alt_free_msgs(&a);
		return err;
	}
	alt_wait(&a, wait_deadline(timeout_ns));
	int fired = alt_finish(&a);
	if (fired < 0)
		return -ETIMEDOUT;
	if (flags == SHMQ_ALT_FAIR)
		fair_last = (unsigned)fired;
	return fired;
}

int shmq_chan_write(shmq_chan *ch, const void *buf, size_t len, int64_t timeout_ns)
{
	if (!ch)
		return -EINVAL;
	struct shmq_guard g = { .chan = ch, .op = SHMQ_GUARD_WRITE, .wbuf = buf, .wlen = len };
	int r = shmq_alt(&g, 1, SHMQ_ALT_PRI, timeout_ns);
	return r < 0 ? r : (int)g.result;
}

ssize_t shmq_chan_read(shmq_chan *ch, void *buf, size_t cap, int64_t timeout_ns)
{
	if (!ch)
		return -EINVAL;
	struct shmq_guard g = { .chan = ch, .op = SHMQ_GUARD_READ, .rbuf = buf, .rcap = cap };
	int r = shmq_alt(&g, 1, SHMQ_ALT_PRI, timeout_ns);
	return r < 0 ? r : g.result;
}
