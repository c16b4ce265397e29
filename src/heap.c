/* Heap layer: segments of many named objects, a crash-safe allocator, and an
 * object directory whose holders are participant slots (see heap.h). */
#include "heap.h"
#include "seg.h"
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GROW_MIN (1ull << 20)            /* the file grows by at least this */
#define GROW_MAX (64ull << 20)           /* ... and by at most this ahead */
#define OFF_MASK ((1ull << 40) - 1)      /* free list heads: offset / GRAIN */
#define TAG_SHIFT 40
#define SMALL_CLASSES 15u                /* 32 .. 256 bytes in steps of 16 */
#define HELD_EMPTY 0
#define HELD_GONE 1                      /* a deleted entry of the held map */

struct held {
	uint64_t off; /* HELD_EMPTY, HELD_GONE or an object's offset */
	uint32_t count;
};

struct shmq_heap {
	struct heap_map map; /* first: heap_at() inlines its fast path */
	struct heap_geom geom; /* validated private copy */
	struct part_table pt;
	int fd;
	uint32_t token;
	dev_t dev;
	ino_t ino;
	int child_slot; /* claimed in fork_prepare for the child */
	uint32_t owner; /* our wide tag, for lock words */
	/* Objects this handle holds open: offset -> handle count. */
	pthread_mutex_t held_lock;
	struct held *held;
	uint32_t held_cap, held_used; /* slots, slots not HELD_EMPTY */
	uint64_t handles;             /* open object handles, all objects */
	struct shmq_heap *prev, *next; /* every heap of this process, for fork */
};

/* ----------------------------------------------------------- geometry ---- */

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

static uint64_t geom_checksum(const struct heap_geom *g)
{
	return seg_checksum(g, sizeof(*g));
}

static int heap_geometry(uint64_t max_size, struct heap_geom *g)
{
	max_size = max_size ? max_size : SHMQ_HEAP_DEFAULT_MAX;
	if (max_size < SHMQ_HEAP_MIN_MAX || max_size > SHMQ_HEAP_MAX_MAX)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->version = HEAP_VERSION;
	g->nparts = SHMQ_MAX_PARTICIPANTS;
	g->max_size = round_up(max_size, 4096);
	g->parts_off = round_up(sizeof(struct heap_hdr), 4096);
	g->pins_off = round_up(g->parts_off + (uint64_t)g->nparts * sizeof(struct seg_part), 4096);
	g->arena_off = round_up(g->pins_off + (uint64_t)g->nparts * sizeof(struct heap_pin), 4096);
	return 0;
}

/* Valid when the geometry is exactly what heap_geometry() computes from its
 * own max_size and the checksum matches: nothing else in it is trusted. */
static bool geom_valid(const struct heap_geom *g, uint64_t checksum, uint64_t file_size)
{
	struct heap_geom want;
	if (g->version != HEAP_VERSION || geom_checksum(g) != checksum ||
	    heap_geometry(g->max_size, &want) < 0)
		return false;
	return memcmp(&want, g, sizeof(want)) == 0 && file_size >= g->arena_off;
}

/* ------------------------------------------------------- memory access ---- */

void *heap_at_grown(shmq_heap *h, uint64_t off, uint64_t len)
{
	uint64_t end = off + len; /* heap_at checked it against max_size */
	struct stat st;
	if (fstat(h->fd, &st) < 0 || (uint64_t)st.st_size < end)
		return NULL;
	uint64_t size = (uint64_t)st.st_size;
	atomic_store_explicit(&h->map.known_size, size < h->geom.max_size ? size : h->geom.max_size,
			      memory_order_relaxed);
	return (char *)h->map.hdr + off;
}

uint64_t heap_off(shmq_heap *h, const void *p)
{
	return (uint64_t)((const char *)p - (const char *)h->map.hdr);
}

/* Make the file at least end bytes long. fallocate only ever extends it, so
 * processes growing at once never shrink it under each other. */
static int heap_grow(shmq_heap *h, uint64_t end)
{
	if (end <= atomic_load_explicit(&h->map.known_size, memory_order_relaxed))
		return 0;
	struct stat st;
	if (fstat(h->fd, &st) < 0)
		return -errno;
	uint64_t cur = (uint64_t)st.st_size;
	if (cur < end) {
		uint64_t ahead = cur / 8 < GROW_MIN ? GROW_MIN : cur / 8 > GROW_MAX ? GROW_MAX : cur / 8;
		uint64_t want = round_up(end > cur + ahead ? end : cur + ahead, 4096);
		if (want > h->geom.max_size)
			want = h->geom.max_size;
		if (fallocate(h->fd, 0, (off_t)cur, (off_t)(want - cur)) < 0)
			return errno == EFBIG || errno == ENOSPC ? -ENOSPC : -errno;
		cur = want;
	}
	atomic_store_explicit(&h->map.known_size, cur, memory_order_relaxed);
	return 0;
}

/* ---------------------------------------------------------- allocator ---- */

static uint64_t class_size(unsigned c)
{
	if (c < SMALL_CLASSES)
		return 32 + 16 * (uint64_t)c;
	unsigned k = c - SMALL_CLASSES;
	uint64_t base = 256ull << (k / 4);
	return base + base / 4 * (k % 4 + 1);
}

/* The smallest class whose blocks hold bytes (header included). */
static unsigned class_of(uint64_t bytes)
{
	if (bytes <= 32)
		return 0;
	if (bytes <= 256)
		return (unsigned)((bytes - 32 + 15) / 16);
	uint64_t x = bytes - 1;
	unsigned b = 63u - (unsigned)__builtin_clzll(x);
	return SMALL_CLASSES + 4 * (b - 8) + (unsigned)((x - (1ull << b)) >> (b - 2));
}

static struct heap_block *block_at(shmq_heap *h, uint64_t off, unsigned c)
{
	if (off < h->geom.arena_off || off % HEAP_GRAIN)
		return NULL;
	return heap_at(h, off, class_size(c));
}

static int block_pop(shmq_heap *h, unsigned c, uint64_t *out)
{
	_Atomic uint64_t *head = &h->map.hdr->free[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_acquire);
	for (;;) {
		uint64_t off = (old & OFF_MASK) * HEAP_GRAIN;
		if (!off)
			return -EAGAIN;
		struct heap_block *b = block_at(h, off, c);
		if (!b)
			return -EPROTO;
		/* b may have been popped and reused by now: then `next` is
		 * stale, and the tag makes the CAS fail. */
		uint64_t next = atomic_load_explicit(&b->next, memory_order_relaxed);
		uint64_t want = (next / HEAP_GRAIN & OFF_MASK) | ((old >> TAG_SHIFT) + 1) << TAG_SHIFT;
		if (atomic_compare_exchange_weak_explicit(head, &old, want, memory_order_acquire,
							  memory_order_acquire)) {
			if (b->cls != c || atomic_load(&b->magic) != BLOCK_FREE)
				return -EPROTO; /* not ours to use: leak it */
			atomic_store_explicit(&b->magic, BLOCK_USED, memory_order_relaxed);
			*out = off;
			return 0;
		}
	}
}

static int block_carve(shmq_heap *h, unsigned c, uint64_t *out)
{
	uint64_t size = class_size(c), max = h->geom.max_size;
	uint64_t b = atomic_load(&h->map.hdr->brk);
	do {
		if (b < h->geom.arena_off || b % HEAP_GRAIN || b > max)
			return -EPROTO;
		if (size > max - b)
			return -ENOSPC;
	} while (!atomic_compare_exchange_weak(&h->map.hdr->brk, &b, b + size));
	int err = heap_grow(h, b + size);
	struct heap_block *blk = err ? NULL : heap_at(h, b, size);
	if (!blk) {
		/* Give the range back if nobody carved after us. */
		uint64_t end = b + size;
		atomic_compare_exchange_strong(&h->map.hdr->brk, &end, b);
		return err ? err : -EPROTO;
	}
	blk->cls = c;
	atomic_store_explicit(&blk->magic, BLOCK_USED, memory_order_relaxed);
	*out = b;
	return 0;
}

int heap_alloc(shmq_heap *h, size_t size, uint64_t *off)
{
	if (size > h->geom.max_size)
		return -ENOSPC;
	unsigned c = class_of(size + sizeof(struct heap_block));
	if (c >= HEAP_CLASSES)
		return -ENOSPC;
	uint64_t b;
	int err = block_pop(h, c, &b);
	if (err == -EAGAIN)
		err = block_carve(h, c, &b);
	if (err)
		return err;
	*off = b + sizeof(struct heap_block);
	return 0;
}

void heap_free(shmq_heap *h, uint64_t off)
{
	if (off < sizeof(struct heap_block))
		return;
	uint64_t boff = off - sizeof(struct heap_block);
	struct heap_block *b = boff >= h->geom.arena_off && boff % HEAP_GRAIN == 0
				       ? heap_at(h, boff, sizeof(*b))
				       : NULL;
	if (!b || b->cls >= HEAP_CLASSES || !block_at(h, boff, b->cls))
		return; /* not a block we could have handed out: leave it */
	unsigned c = b->cls;
	/* Only a used block: a second free of a block still free (a replay
	 * after a death, a hostile heap) must not list it twice. */
	uint32_t used = BLOCK_USED;
	if (!atomic_compare_exchange_strong_explicit(&b->magic, &used, BLOCK_FREE,
						     memory_order_relaxed, memory_order_relaxed))
		return;
	_Atomic uint64_t *head = &h->map.hdr->free[c].head;
	uint64_t old = atomic_load_explicit(head, memory_order_relaxed);
	uint64_t want;
	do {
		atomic_store_explicit(&b->next, (old & OFF_MASK) * HEAP_GRAIN, memory_order_relaxed);
		want = (boff / HEAP_GRAIN) | ((old >> TAG_SHIFT) + 1) << TAG_SHIFT;
	} while (!atomic_compare_exchange_weak_explicit(head, &old, want, memory_order_release,
							memory_order_relaxed));
}

_Atomic uint64_t *heap_block_link(shmq_heap *h, uint64_t off)
{
	if (off < h->geom.arena_off + sizeof(struct heap_block) || off % HEAP_GRAIN)
		return NULL;
	struct heap_block *b = heap_at(h, off - sizeof(struct heap_block), sizeof(*b));
	return b ? &b->next : NULL;
}

/* ---------------------------------------------------------- directory ---- */

static bool name_valid(const char *name)
{
	size_t n = strnlen(name, SHMQ_NAME_MAX);
	return n > 0 && n < SHMQ_NAME_MAX;
}

static unsigned bucket_of(const char *name)
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % HEAP_BUCKETS;
}

/* The object at off, validated: aligned, inside the file, its magic, kind
 * and payload size consistent. NULL otherwise. */
struct heap_obj *heap_obj_at(shmq_heap *h, uint64_t off)
{
	if (off < h->geom.arena_off || off % HEAP_OBJ_ALIGN)
		return NULL;
	struct heap_obj *o = heap_at(h, off, sizeof(*o));
	if (!o || o->magic != OBJ_MAGIC || o->kind == 0 || o->kind >= HEAP_KIND_MAX ||
	    !heap_at(h, off, sizeof(*o) + o->size) || memchr(o->name, 0, sizeof(o->name)) == NULL)
		return NULL;
	return o;
}

uint64_t heap_bound(shmq_heap *h, uint64_t unit)
{
	/* Blocks lie inside the file: it holds at most this many. */
	return atomic_load_explicit(&h->map.known_size, memory_order_relaxed) / unit + 1;
}

/* Most objects a chain can hold: a longer walk is a cycle (a hostile heap). */
static uint64_t chain_bound(shmq_heap *h)
{
	return heap_bound(h, sizeof(struct heap_obj));
}

/* Find a live (not removed) object by name. Returns its offset, 0 if there
 * is none, or -EPROTO through *err. Under the mutex. */
static uint64_t lookup(shmq_heap *h, const char *name, int *err)
{
	uint64_t off = atomic_load(&h->map.hdr->buckets[bucket_of(name)]);
	*err = 0;
	for (uint64_t steps = 0; off; steps++) {
		struct heap_obj *o = heap_obj_at(h, off);
		if (!o || steps > chain_bound(h)) {
			*err = -EPROTO;
			return 0;
		}
		if (!(atomic_load(&o->flags) & OBJ_REMOVED) && strcmp(o->name, name) == 0)
			return off;
		off = atomic_load(&o->next);
	}
	return 0;
}

/* The link that points at off in its chain (the bucket or a predecessor's
 * next), or NULL if off is not linked. */
static _Atomic uint64_t *chain_link_to(shmq_heap *h, struct heap_obj *o, uint64_t off)
{
	_Atomic uint64_t *link = &h->map.hdr->buckets[bucket_of(o->name)];
	for (uint64_t steps = 0; steps <= chain_bound(h); steps++) {
		uint64_t cur = atomic_load(link);
		if (cur == off)
			return link;
		struct heap_obj *c = cur ? heap_obj_at(h, cur) : NULL;
		if (!c)
			return NULL;
		link = &c->next;
	}
	return NULL;
}

static bool obj_unused(struct heap_obj *o)
{
	if (!(atomic_load(&o->flags) & (OBJ_ANON | OBJ_REMOVED)) || atomic_load(&o->links))
		return false;
	for (unsigned i = 0; i < HEAP_HOLDER_WORDS; i++)
		if (atomic_load(&o->holders[i]))
			return false;
	return true;
}

static void holder_set(struct heap_obj *o, int slot)
{
	atomic_fetch_or(&o->holders[slot / 64], 1ull << (slot % 64));
}

static void holder_clear(struct heap_obj *o, int slot)
{
	atomic_fetch_and(&o->holders[slot / 64], ~(1ull << (slot % 64)));
}

/* Begin and end an intent (heap.h): op is published last and cleared last,
 * so a replay never sees half an intent. */
static void intent_begin(shmq_heap *h, uint32_t op, uint64_t obj, uint64_t target,
			 uint32_t links_after, uint32_t slot, uint32_t tag)
{
	struct heap_intent *in = &h->map.hdr->intent;
	in->obj = obj;
	in->target = target;
	in->links_after = links_after;
	in->slot = slot;
	in->tag = tag;
	atomic_store_explicit(&in->op, op, memory_order_release);
}

static void intent_end(shmq_heap *h)
{
	atomic_store_explicit(&h->map.hdr->intent.op, INTENT_NONE, memory_order_release);
}

/* Link (or finish linking) the object at off, taking a link on its target:
 * idempotent, so a replay after a death mid-way is safe. */
static void do_link(shmq_heap *h, uint64_t off, struct heap_obj *o, struct heap_obj *target,
		    uint32_t links_after)
{
	if (chain_link_to(h, o, off))
		return;
	if (target)
		atomic_store(&target->links, links_after);
	_Atomic uint64_t *bucket = &h->map.hdr->buckets[bucket_of(o->name)];
	atomic_store(&o->next, atomic_load(bucket));
	atomic_store(bucket, off);
}

/* Returns false if off is not linked where its name says (a replay after
 * the unlink, or a hostile heap). */
static bool do_unlink(shmq_heap *h, uint64_t off, struct heap_obj *o, struct heap_obj *target,
		      uint32_t links_after)
{
	_Atomic uint64_t *link = chain_link_to(h, o, off);
	if (link)
		atomic_store(link, atomic_load(&o->next));
	if (target)
		atomic_store(&target->links, links_after);
	return link != NULL;
}

static struct heap_obj *link_target(shmq_heap *h, struct heap_obj *o)
{
	return o->ref ? heap_obj_at(h, o->ref) : NULL;
}

static void obj_link(shmq_heap *h, uint64_t off, struct heap_obj *o)
{
	struct heap_obj *t = link_target(h, o);
	uint32_t after = t ? atomic_load(&t->links) + 1 : 0;
	intent_begin(h, INTENT_LINK, off, t ? o->ref : 0, after, 0, 0);
	do_link(h, off, o, t, after);
	intent_end(h);
}

static const struct heap_kind_ops *kind_ops[HEAP_KIND_MAX];

/* Unlink an unused object and free its block; then its target, if that was
 * the last link keeping it. The block is freed after the intent ends: a death
 * in between leaks it rather than freeing it twice. Returns false if the
 * object was not in the directory (nothing freed). */
static bool obj_free(shmq_heap *h, uint64_t off, struct heap_obj *o)
{
	for (bool first = true; o; first = false) {
		struct heap_obj *t = link_target(h, o);
		uint32_t links = t ? atomic_load(&t->links) : 0;
		uint32_t after = links ? links - 1 : 0;
		uint64_t toff = t ? o->ref : 0;
		intent_begin(h, INTENT_FREE, off, toff, after, 0, 0);
		bool unlinked = do_unlink(h, off, o, t, after);
		intent_end(h);
		/* Free only what we took out of the directory: an object we
		 * cannot find in its chain (a hostile heap) stays, leaked,
		 * rather than freed while still reachable. */
		if (!unlinked)
			return !first;
		if (kind_ops[o->kind] && kind_ops[o->kind]->destroy)
			kind_ops[o->kind]->destroy(h, o);
		heap_free(h, o->block);
		o = t && obj_unused(t) ? t : NULL;
		off = toff;
	}
	return true;
}

void heap_kind_register(uint32_t kind, const struct heap_kind_ops *ops)
{
	if (kind < HEAP_KIND_MAX)
		kind_ops[kind] = ops;
}

static bool holder_has(struct heap_obj *o, uint32_t slot)
{
	return atomic_load(&o->holders[slot / 64]) & 1ull << (slot % 64);
}

/* Clear a departed slot's holder bit everywhere, letting each object's layer
 * give back what the departed owner (wide tag `tag`, or 0 if unknown) held,
 * and free what nobody holds any more. */
static void scrub(shmq_heap *h, uint32_t slot, uint32_t tag)
{
	intent_begin(h, INTENT_SCRUB, 0, 0, 0, slot, tag);
	/* A departed owner reads nothing any more (and a new one has not
	 * started): its pin must not hold reclamation back. */
	atomic_store(&heap_pin_at(h, slot)->word, 0);
	/* One budget for the whole walk: the directory holds at most
	 * chain_bound objects, however a hostile heap links them. */
	uint64_t budget = 2 * chain_bound(h) + HEAP_BUCKETS;
	for (unsigned b = 0; b < HEAP_BUCKETS && budget; b++) {
		uint64_t off = atomic_load(&h->map.hdr->buckets[b]);
		for (; off && budget; budget--) {
			struct heap_obj *o = heap_obj_at(h, off);
			if (!o)
				break;
			uint64_t next = atomic_load(&o->next);
			if (holder_has(o, slot) && kind_ops[o->kind] && kind_ops[o->kind]->departed)
				kind_ops[o->kind]->departed(h, o, slot, tag);
			holder_clear(o, (int)slot);
			if (obj_unused(o) && obj_free(h, off, o)) {
				intent_begin(h, INTENT_SCRUB, 0, 0, 0, slot, tag);
				/* obj_free may have freed `next` (a target):
				 * walk this chain again from its start. */
				next = atomic_load(&h->map.hdr->buckets[b]);
			}
			off = next;
		}
	}
	intent_end(h);
}

/* A holder of the mutex died: finish what it was doing. */
static void replay(shmq_heap *h)
{
	struct heap_intent *in = &h->map.hdr->intent;
	uint32_t op = atomic_load_explicit(&in->op, memory_order_acquire);
	struct heap_obj *o = op == INTENT_LINK || op == INTENT_FREE ? heap_obj_at(h, in->obj) : NULL;
	struct heap_obj *t = in->target ? heap_obj_at(h, in->target) : NULL;
	if (op == INTENT_LINK && o)
		do_link(h, in->obj, o, t, in->links_after);
	else if (op == INTENT_FREE && o)
		do_unlink(h, in->obj, o, t, in->links_after); /* its block leaks */
	else if (op == INTENT_SCRUB && in->slot < h->geom.nparts)
		scrub(h, in->slot, in->tag);
	intent_end(h);
	if (op == INTENT_FREE && t && obj_unused(t))
		obj_free(h, in->target, t);
}

static int heap_lock(shmq_heap *h)
{
	if (h->map.slot < 0)
		return -EBADF;
	int r = mutex_lock(&h->map.hdr->lock, &h->pt, h->owner, -1);
	if (r == -EOWNERDEAD) {
		replay(h);
		r = 0;
	}
	return r;
}

static void heap_unlock(shmq_heap *h)
{
	mutex_unlock(&h->map.hdr->lock, h->owner);
}

/* ------------------------------------------------------------ held map ---- */

static uint32_t held_hash(uint64_t off, uint32_t cap)
{
	return (uint32_t)((off / HEAP_OBJ_ALIGN) * 0x9e3779b97f4a7c15ull >> 32) & (cap - 1);
}

static struct held *held_find(shmq_heap *h, uint64_t off, bool insert)
{
	if (!h->held_cap)
		return NULL;
	struct held *gone = NULL;
	for (uint32_t i = held_hash(off, h->held_cap), n = 0; n < h->held_cap;
	     i = (i + 1) & (h->held_cap - 1), n++) {
		struct held *e = &h->held[i];
		if (e->off == off)
			return e;
		if (e->off == HELD_GONE && !gone)
			gone = e;
		if (e->off == HELD_EMPTY) {
			if (!insert)
				return NULL;
			return gone ? gone : e;
		}
	}
	return insert ? gone : NULL;
}

static int held_grow(shmq_heap *h)
{
	uint32_t cap = h->held_cap ? h->held_cap * 2 : 16;
	struct held *old = h->held, *fresh = calloc(cap, sizeof(*fresh));
	if (!fresh)
		return -ENOMEM;
	uint32_t old_cap = h->held_cap;
	h->held = fresh;
	h->held_cap = cap;
	h->held_used = 0;
	for (uint32_t i = 0; i < old_cap; i++)
		if (old[i].off > HELD_GONE) {
			*held_find(h, old[i].off, true) = old[i];
			h->held_used++;
		}
	free(old);
	return 0;
}

/* Count a handle on off. Returns 1 if it is this heap handle's first on the
 * object (its holder bit must be set), 0 if not, or -ENOMEM. */
static int held_add(shmq_heap *h, uint64_t off)
{
	pthread_mutex_lock(&h->held_lock);
	struct held *e = held_find(h, off, false);
	int first = 0;
	if (!e) {
		if ((h->held_used + 1) * 4 > h->held_cap * 3 && held_grow(h) < 0) {
			pthread_mutex_unlock(&h->held_lock);
			return -ENOMEM;
		}
		e = held_find(h, off, true);
		if (e->off == HELD_EMPTY)
			h->held_used++;
		*e = (struct held){ .off = off, .count = 0 };
		first = 1;
	}
	e->count++;
	h->handles++;
	pthread_mutex_unlock(&h->held_lock);
	return first;
}

/* Drop a handle on off. Returns true if it was the last. */
static bool held_drop(shmq_heap *h, uint64_t off)
{
	pthread_mutex_lock(&h->held_lock);
	struct held *e = held_find(h, off, false);
	bool last = false;
	if (e) {
		h->handles--;
		if (--e->count == 0) {
			e->off = HELD_GONE;
			last = true;
		}
	}
	pthread_mutex_unlock(&h->held_lock);
	return last;
}

/* ------------------------------------------------------------- objects ---- */

static void ref_fill(shmq_heap *h, uint64_t off, struct heap_obj *o, struct heap_ref *r)
{
	r->heap = h;
	r->off = off;
	r->obj = o;
	r->payload = o + 1;
	memcpy(r->name, o->name, sizeof(r->name));
	r->name[sizeof(r->name) - 1] = 0;
}

/* Take a handle on the object at off (the mutex held): its holder bit the
 * first time. */
static int take_handle(shmq_heap *h, uint64_t off, struct heap_obj *o)
{
	int first = held_add(h, off);
	if (first > 0)
		holder_set(o, h->map.slot);
	return first < 0 ? first : 0;
}

int heap_obj_create(shmq_heap *h, const char *name, uint32_t kind, size_t size,
		    const struct heap_ref *link, void (*init)(void *payload, void *arg), void *arg,
		    struct heap_ref *out)
{
	if (!h || !out || kind == 0 || kind >= HEAP_KIND_MAX || (name && !name_valid(name)) ||
	    (link && link->heap != h))
		return -EINVAL;
	if (size > h->geom.max_size)
		return -ENOSPC;
	heap_sweep(h);
	uint64_t block;
	int err = heap_alloc(h, sizeof(struct heap_obj) + size + HEAP_OBJ_ALIGN - HEAP_GRAIN, &block);
	if (err)
		return err;
	uint64_t off = round_up(block, HEAP_OBJ_ALIGN);
	struct heap_obj *o = heap_at(h, off, sizeof(*o) + size);
	if (!o) {
		heap_free(h, block);
		return -EPROTO;
	}
	memset(o, 0, sizeof(*o) + size); /* a reused block holds old bytes */
	o->magic = OBJ_MAGIC;
	o->kind = kind;
	o->size = size;
	o->block = block;
	o->ref = link ? link->off : 0;
	if (init)
		init(o + 1, arg);
	if ((err = heap_lock(h)) < 0) {
		heap_free(h, block);
		return err;
	}
	if (name) {
		if (lookup(h, name, &err) || err) {
			err = err ? err : -EEXIST;
			goto fail;
		}
		strcpy(o->name, name);
	} else {
		do {
			snprintf(o->name, sizeof(o->name), "@%llx",
				 (unsigned long long)atomic_fetch_add(&h->map.hdr->anon_seq, 1));
		} while (lookup(h, o->name, &err) && !err);
		if (err)
			goto fail;
		atomic_store(&o->flags, OBJ_ANON);
	}
	if ((err = take_handle(h, off, o)) < 0)
		goto fail;
	obj_link(h, off, o);
	heap_unlock(h);
	ref_fill(h, off, o, out);
	return 0;
fail:
	heap_unlock(h);
	heap_free(h, block);
	return err;
}

static int open_locked(shmq_heap *h, uint64_t off, uint32_t kind, struct heap_ref *out)
{
	struct heap_obj *o = heap_obj_at(h, off);
	if (!o)
		return -EPROTO;
	if (kind && o->kind != kind) /* 0: any kind */
		return -EINVAL;
	int err = take_handle(h, off, o);
	if (err == 0)
		ref_fill(h, off, o, out);
	return err;
}

int heap_obj_open(shmq_heap *h, const char *name, uint32_t kind, struct heap_ref *out)
{
	if (!h || !name || !out || !name_valid(name))
		return -EINVAL;
	heap_sweep(h);
	int err = heap_lock(h);
	if (err)
		return err;
	uint64_t off = lookup(h, name, &err);
	if (!err)
		err = off ? open_locked(h, off, kind, out) : -ENOENT;
	heap_unlock(h);
	return err;
}

int heap_obj_open_at(shmq_heap *h, uint64_t off, uint32_t kind, struct heap_ref *out)
{
	int err = heap_lock(h);
	if (err)
		return err;
	err = open_locked(h, off, kind, out);
	heap_unlock(h);
	return err;
}

void heap_obj_close(struct heap_ref *r)
{
	shmq_heap *h = r->heap;
	if (!held_drop(h, r->off))
		return;
	heap_sweep(h);
	if (heap_lock(h) < 0)
		return;
	struct heap_obj *o = heap_obj_at(h, r->off);
	if (o) {
		holder_clear(o, h->map.slot);
		if (obj_unused(o))
			obj_free(h, r->off, o);
	}
	heap_unlock(h);
}

int shmq_heap_remove(shmq_heap *h, const char *name)
{
	if (!h || !name || !name_valid(name))
		return -EINVAL;
	heap_sweep(h);
	int err = heap_lock(h);
	if (err)
		return err;
	uint64_t off = lookup(h, name, &err);
	struct heap_obj *o = off ? heap_obj_at(h, off) : NULL;
	if (o) {
		atomic_fetch_or(&o->flags, OBJ_REMOVED);
		if (obj_unused(o))
			obj_free(h, off, o);
	} else if (!err) {
		err = -ENOENT;
	}
	heap_unlock(h);
	return err;
}

/* ------------------------------------------------------- participants ---- */

/* A dead participant was reaped: release what it held, unless its slot was
 * claimed again (the claimant scrubs before it uses the slot). */
static void heap_reaped(struct part_table *t, uint32_t slot, uint32_t gen)
{
	shmq_heap *h = (shmq_heap *)((char *)t - offsetof(struct shmq_heap, pt));
	if (heap_lock(h) < 0)
		return;
	struct seg_part *p = &t->parts[slot];
	if (atomic_load(&p->gen) == gen && atomic_load(&p->id) == 0)
		scrub(h, slot, part_wide_tag_at(slot, gen));
	heap_unlock(h);
}

static const struct part_hooks heap_hooks = { .changed = NULL, .reaped = heap_reaped };

struct part_table *heap_parts(shmq_heap *h)
{
	return &h->pt;
}

uint32_t heap_owner(shmq_heap *h)
{
	return h->owner;
}

void heap_sweep(shmq_heap *h)
{
	part_sweep(&h->pt, 0, WAIT_CHECK_NS);
}

/* -------------------------------------------------------- fork and exit ---- */

static pthread_mutex_t heaps_lock = PTHREAD_MUTEX_INITIALIZER;
static shmq_heap *heaps;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* Give the child a slot of its own, holding every object this process
 * holds, before fork() returns anywhere: a parent that closes its handles
 * at once must not free objects the child still uses. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&heaps_lock);
	for (shmq_heap *h = heaps; h; h = h->next) {
		h->child_slot = h->map.slot < 0 ? -1 : part_claim(&h->pt, 0, true);
		if (h->child_slot < 0 || heap_lock(h) < 0)
			continue;
		scrub(h, (uint32_t)h->child_slot, 0);
		pthread_mutex_lock(&h->held_lock);
		for (uint32_t i = 0; i < h->held_cap; i++) {
			struct heap_obj *o =
				h->held[i].off > HELD_GONE ? heap_obj_at(h, h->held[i].off) : NULL;
			if (o)
				holder_set(o, h->child_slot);
		}
		pthread_mutex_unlock(&h->held_lock);
		heap_unlock(h);
	}
}

static void fork_parent(void)
{
	for (shmq_heap *h = heaps; h; h = h->next)
		if (h->child_slot >= 0)
			part_fork_resolve(&h->pt, h->child_slot);
	pthread_mutex_unlock(&heaps_lock);
}

static void fork_child(void)
{
	for (shmq_heap *h = heaps; h; h = h->next) {
		if (h->child_slot >= 0 && part_adopt(&h->pt, h->child_slot)) {
			h->map.slot = h->child_slot;
			h->owner = part_wide_tag(&h->pt, h->map.slot);
		} else {
			h->map.slot = -1; /* reaped before we ran: our handles are void */
		}
	}
	pthread_mutex_unlock(&heaps_lock);
}

/* A process that exits without closing its heaps lets go of them at once
 * (locks it holds then count as held by a dead owner); one that dies is
 * noticed by the liveness checks instead. */
static void release_at_exit(void)
{
	pthread_mutex_lock(&heaps_lock);
	for (shmq_heap *h = heaps; h; h = h->next) {
		if (h->map.slot < 0)
			continue;
		/* Free what only we held, unless the mutex is busy: then the
		 * slot's next claimant scrubs it. */
		int r = mutex_lock(&h->map.hdr->lock, &h->pt, h->owner, 100 * 1000 * 1000);
		if (r == 0 || r == -EOWNERDEAD) {
			if (r == -EOWNERDEAD)
				replay(h);
			scrub(h, (uint32_t)h->map.slot, h->owner);
			heap_unlock(h);
		}
		part_release(&h->pt, h->map.slot);
		h->map.slot = -1;
	}
	pthread_mutex_unlock(&heaps_lock);
}

static void register_process_hooks(void)
{
	part_fork_init();
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	atexit(release_at_exit);
}

/* ------------------------------------------------------------ lifecycle ---- */

void shmq_heap_attr_init(struct shmq_heap_attr *attr)
{
	*attr = (struct shmq_heap_attr){ 0 };
}

/* Map a validated heap fd (owned by h from here on) and join its table. */
static int heap_attach(shmq_heap *h, int fd, const struct heap_geom *g)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	void *p = mmap(NULL, g->max_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	h->geom = *g;
	h->map.hdr = p;
	h->map.max_size = g->max_size;
	h->map.pins = (struct heap_pin *)((char *)p + g->pins_off);
	h->fd = fd;
	h->dev = st.st_dev;
	h->ino = st.st_ino;
	atomic_init(&h->map.known_size, 0);
	/* Re-check what we mapped: a peer may rewrite the header between our
	 * first look and the mapping; and never touch past the file's end. */
	if (!heap_at(h, 0, g->arena_off) || memcmp(&h->map.hdr->geom, g, sizeof(*g)) ||
	    h->map.hdr->checksum != geom_checksum(g))
		return -EPROTO;
	/* Our own open file description, marked with a random position: the
	 * liveness check tells our fd from one a later program reuses. */
	uint32_t token;
	int err = seg_mark(fd, &token);
	if (err)
		return err;
	h->token = token;
	h->pt = (struct part_table){
		.parts = (struct seg_part *)((char *)p + g->parts_off),
		.nparts = g->nparts,
		.fd = fd,
		.token = token,
		.dev = st.st_dev,
		.ino = st.st_ino,
		.epoch = &h->map.hdr->epoch,
		.ever = &h->map.hdr->ever,
		.swept = &h->map.hdr->swept,
		.lost = NULL,
		.hooks = &heap_hooks,
	};
	pthread_once(&hooks_once, register_process_hooks);
	pthread_mutex_lock(&heaps_lock);
	h->map.slot = part_claim(&h->pt, 0, false);
	if (h->map.slot < 0) {
		pthread_mutex_unlock(&heaps_lock);
		return h->map.slot;
	}
	h->owner = part_wide_tag(&h->pt, h->map.slot);
	/* A dead previous owner of the slot may still hold objects. */
	err = heap_lock(h);
	if (err == 0) {
		scrub(h, (uint32_t)h->map.slot, 0);
		heap_unlock(h);
	}
	if (err) {
		part_release(&h->pt, h->map.slot);
		pthread_mutex_unlock(&heaps_lock);
		return err;
	}
	h->next = heaps;
	if (heaps)
		heaps->prev = h;
	heaps = h;
	pthread_mutex_unlock(&heaps_lock);
	return 0;
}

static shmq_heap *heap_new(void)
{
	shmq_heap *h = calloc(1, sizeof(*h));
	if (h) {
		h->fd = -1;
		h->map.slot = -1;
		pthread_mutex_init(&h->held_lock, NULL);
	}
	return h;
}

static void heap_dispose(shmq_heap *h)
{
	if (h->map.hdr)
		munmap(h->map.hdr, h->geom.max_size);
	if (h->fd >= 0)
		close(h->fd);
	pthread_mutex_destroy(&h->held_lock);
	free(h->held);
	free(h);
}

static int finish(shmq_heap *h, int fd, const struct heap_geom *g, shmq_heap **out)
{
	int err = heap_attach(h, fd, g);
	if (err) {
		if (h->fd < 0)
			close(fd);
		heap_dispose(h);
		return err;
	}
	*out = h;
	return 0;
}

int shmq_heap_create(const char *name, const struct shmq_heap_attr *attr, shmq_heap **out)
{
	struct shmq_heap_attr a = { 0 };
	if (attr)
		a = *attr;
	struct heap_geom g;
	if (!out || a.flags || (a.mode & ~07777u) || (name && !seg_name_valid(name)) ||
	    heap_geometry(a.max_size, &g) < 0)
		return -EINVAL;
	int fd;
	if (name) {
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd >= 0 && fchmod(fd, a.mode ? a.mode : 0600) < 0) {
			int err = -errno;
			close(fd);
			shm_unlink(name);
			return err;
		}
	} else {
		fd = memfd_create("shmq-heap", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	}
	if (fd < 0)
		return -errno;
	int err = 0;
	uint64_t first = g.arena_off + GROW_MIN < g.max_size ? g.arena_off + GROW_MIN : g.max_size;
	/* An anonymous heap grows but never shrinks: no peer can cut the
	 * mapping from under the others (SIGBUS). */
	if (fallocate(fd, 0, 0, (off_t)first) < 0 ||
	    (!name && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0))
		err = -errno;
	struct heap_hdr *hdr = err ? MAP_FAILED
				   : mmap(NULL, g.arena_off, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (!err && hdr == MAP_FAILED)
		err = -errno;
	if (err) {
		close(fd);
		if (name)
			shm_unlink(name);
		return err;
	}
	/* The file is zero-filled: free lists and buckets start empty. */
	hdr->geom = g;
	hdr->checksum = geom_checksum(&g);
	atomic_store(&hdr->brk, g.arena_off);
	mutex_init(&hdr->lock, 0);
	atomic_store_explicit(&hdr->magic, HEAP_MAGIC, memory_order_release);
	munmap(hdr, g.arena_off);
	shmq_heap *h = heap_new();
	if (!h) {
		close(fd);
		if (name)
			shm_unlink(name);
		return -ENOMEM;
	}
	err = finish(h, fd, &g, out);
	if (err && name)
		shm_unlink(name);
	return err;
}

/* Validate a heap fd the caller hands over (closed on failure). */
static int heap_adopt(int fd, int flags, shmq_heap **out)
{
	struct {
		uint64_t magic, checksum;
		struct heap_geom g;
	} p;
	_Static_assert(offsetof(struct heap_hdr, geom) == offsetof(__typeof__(p), g), "prefix");
	uint64_t size;
	int err = seg_read_header(fd, flags & SHMQ_FOREIGN, HEAP_MAGIC, sizeof(struct heap_hdr), &p,
				  sizeof(p), &size);
	if (err == 0 && !geom_valid(&p.g, p.checksum, size))
		err = -EPROTO;
	shmq_heap *h = err ? NULL : heap_new();
	if (h)
		return finish(h, fd, &p.g, out);
	close(fd);
	return err ? err : -ENOMEM;
}

int shmq_heap_open(const char *name, int flags, shmq_heap **out)
{
	if (!name || !out || !seg_name_valid(name) || (flags & ~SHMQ_FOREIGN))
		return -EINVAL;
	int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	return heap_adopt(fd, flags, out);
}

int shmq_heap_open_fd(int fd, int flags, shmq_heap **out)
{
	if (!out || (flags & ~SHMQ_FOREIGN))
		return -EINVAL;
	int copy = seg_reopen(fd);
	return copy < 0 ? copy : heap_adopt(copy, flags, out);
}

int shmq_heap_fd(shmq_heap *h)
{
	return h ? h->fd : -EINVAL;
}

int shmq_heap_close(shmq_heap *h)
{
	if (!h)
		return -EINVAL;
	pthread_mutex_lock(&h->held_lock);
	bool busy = h->handles > 0;
	pthread_mutex_unlock(&h->held_lock);
	if (busy)
		return -EBUSY;
	pthread_mutex_lock(&heaps_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		heaps = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&heaps_lock);
	if (h->map.slot >= 0) {
		if (heap_lock(h) == 0) {
			scrub(h, (uint32_t)h->map.slot, h->owner);
			heap_unlock(h);
		}
		part_release(&h->pt, h->map.slot);
	}
	heap_dispose(h);
	return 0;
}

/* ------------------------------------------------------------- checks ---- */

/* Walk free list c, calling fn on each block. Returns the number of blocks,
 * or -EPROTO for a block out of range, of another class or not free, or a
 * list longer than the arena could hold. */
static int64_t walk_free(shmq_heap *h, unsigned c, void (*fn)(void *, uint64_t, uint64_t),
			 void *arg)
{
	uint64_t off = (atomic_load(&h->map.hdr->free[c].head) & OFF_MASK) * HEAP_GRAIN;
	uint64_t size = class_size(c);
	uint64_t bound = atomic_load_explicit(&h->map.known_size, memory_order_relaxed) / size + 1;
	int64_t n = 0;
	for (; off; n++) {
		struct heap_block *b = block_at(h, off, c);
		if (!b || (uint64_t)n > bound || b->cls != c || atomic_load(&b->magic) != BLOCK_FREE)
			return -EPROTO;
		if (fn)
			fn(arg, off, size);
		off = atomic_load(&b->next);
	}
	return n;
}

int shmq_heap_stat(shmq_heap *h, struct shmq_heap_stat *st)
{
	if (!h || !st)
		return -EINVAL;
	part_reap_dead(&h->pt, 0);
	memset(st, 0, sizeof(*st));
	st->max_size = h->geom.max_size;
	struct stat fs;
	if (fstat(h->fd, &fs) == 0)
		st->size = (uint64_t)fs.st_size;
	uint64_t brk = atomic_load(&h->map.hdr->brk);
	st->used = brk > h->geom.arena_off ? brk - h->geom.arena_off : 0;
	for (unsigned c = 0; c < HEAP_CLASSES; c++) {
		int64_t n = walk_free(h, c, NULL, NULL);
		if (n < 0)
			return -EPROTO;
		st->free += (uint64_t)n * class_size(c);
	}
	for (uint32_t i = 0; i < h->geom.nparts; i++)
		st->handles += atomic_load(&h->pt.parts[i].id) != 0;
	int err = heap_lock(h);
	if (err)
		return err;
	for (unsigned b = 0; b < HEAP_BUCKETS && !err; b++) {
		uint64_t off = atomic_load(&h->map.hdr->buckets[b]);
		for (uint64_t steps = 0; off; steps++) {
			struct heap_obj *o = heap_obj_at(h, off);
			if (!o || steps > chain_bound(h)) {
				err = -EPROTO;
				break;
			}
			st->objects++;
			off = atomic_load(&o->next);
		}
	}
	heap_unlock(h);
	return err;
}

struct check {
	shmq_heap *h;
	uint8_t *seen; /* one bit per HEAP_GRAIN of the arena, up to brk */
	uint64_t brk;
	int err;
};

static void mark(void *arg, uint64_t off, uint64_t len)
{
	struct check *ck = arg;
	if (off < ck->h->geom.arena_off || off % HEAP_GRAIN || off > ck->brk ||
	    len > ck->brk - off) {
		ck->err = -EPROTO; /* a block past what was ever carved */
		return;
	}
	for (uint64_t u = (off - ck->h->geom.arena_off) / HEAP_GRAIN,
		      end = u + (len + HEAP_GRAIN - 1) / HEAP_GRAIN;
	     u < end; u++) {
		if (ck->seen[u / 8] & (1u << (u % 8)))
			ck->err = -EPROTO;
		ck->seen[u / 8] |= (uint8_t)(1u << (u % 8));
	}
}

int heap_check(shmq_heap *h)
{
	uint64_t brk = atomic_load(&h->map.hdr->brk);
	if (brk < h->geom.arena_off || brk > h->geom.max_size || !heap_at(h, 0, brk))
		return -EPROTO;
	uint64_t units = (brk - h->geom.arena_off) / HEAP_GRAIN + 1;
	struct check ck = { .h = h, .seen = calloc(units / 8 + 1, 1), .brk = brk };
	if (!ck.seen)
		return -ENOMEM;
	for (unsigned c = 0; c < HEAP_CLASSES && !ck.err; c++)
		if (walk_free(h, c, mark, &ck) < 0)
			ck.err = -EPROTO;
	for (unsigned b = 0; b < HEAP_BUCKETS && !ck.err; b++) {
		uint64_t off = atomic_load(&h->map.hdr->buckets[b]);
		for (uint64_t steps = 0; off && !ck.err; steps++) {
			struct heap_obj *o = heap_obj_at(h, off);
			if (!o || steps > chain_bound(h) || bucket_of(o->name) != b ||
			    o->block < h->geom.arena_off + sizeof(struct heap_block) ||
			    o->block % HEAP_GRAIN) {
				ck.err = -EPROTO;
				break;
			}
			struct heap_block *blk = heap_at(h, o->block - sizeof(*blk), sizeof(*blk));
			if (!blk || atomic_load(&blk->magic) != BLOCK_USED || blk->cls >= HEAP_CLASSES ||
			    off + sizeof(*o) + o->size >
				    o->block - sizeof(*blk) + class_size(blk->cls)) {
				ck.err = -EPROTO;
				break;
			}
			mark(&ck, o->block - sizeof(*blk), class_size(blk->cls));
			off = atomic_load(&o->next);
		}
	}
	free(ck.seen);
	return ck.err;
}
