/* Heap layer, internal side: the layout of a heap segment, its allocator and
 * its object directory, for the object layers (sync.c, array.c, dict.c, ...).
 *
 * Heap = header | participant table | arena. Offsets only, never pointers.
 * The header's geometry is immutable and checksummed; everything else in the
 * segment is writable by any process that maps it and is checked before use:
 * every offset read from shared memory goes through heap_at() (bounds against
 * max_size and the file's real size) before it is dereferenced.
 *
 * Allocator: blocks of size classes (16-byte steps to 256 B, then four per
 * doubling), each class a lock-free LIFO of free blocks (a Treiber stack whose
 * head packs offset and an ABA tag), fed by bumping `brk` through the arena;
 * the file grows (fallocate, which never shrinks it) ahead of brk. A process
 * killed at any instruction of an allocation or a free leaks at most that
 * block: a block is either on its list (pushed by one CAS) or not.
 *
 * Objects: a block holding struct heap_obj and the object's payload, linked
 * into one of the directory's hash chains by name. Who holds an object is a
 * bitmap of participant slots (a process with several handles on it sets its
 * bit once); the directory, the bitmaps and structural links are changed
 * under the heap's robust mutex, with an intent record that the next holder
 * replays if a holder dies mid-change.
 */
#ifndef SHMQ_HEAP_INTERNAL_H
#define SHMQ_HEAP_INTERNAL_H

#include "mutex.h"
#include "part.h"
#include "shmq.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define HEAP_MAGIC 0x5041454851484d53ull /* "SHMQHEAP" little-endian */
#define HEAP_VERSION 2u
#define HEAP_LINE 128u
#define HEAP_BUCKETS 1024u
#define HEAP_CLASSES 143u
#define HEAP_GRAIN 16u /* block alignment and size step */
#define HEAP_OBJ_ALIGN 64u

struct heap_geom { /* immutable after creation, checksummed */
	uint32_t version;
	uint32_t nparts;
	uint64_t max_size;  /* address space reserved, bytes */
	uint64_t parts_off; /* participant table */
	uint64_t pins_off;  /* epoch pins, one line per participant slot */
	uint64_t arena_off; /* first block */
};

/* Changes to the directory in flight (written under the heap mutex only).
 * op 0: none. The next holder of the mutex after a death replays it. */
enum { INTENT_NONE, INTENT_LINK, INTENT_FREE, INTENT_SCRUB };
struct heap_intent {
	_Atomic uint32_t op;
	uint32_t slot;        /* INTENT_SCRUB: the slot being scrubbed */
	uint64_t obj;         /* LINK/FREE: the object */
	uint64_t target;      /* its structural link (obj->ref), or 0 */
	uint32_t links_after; /* the target's link count once done */
	uint32_t tag;         /* INTENT_SCRUB: the departed owner's wide tag, or 0 */
};

struct heap_free_list {
	/* (offset / HEAP_GRAIN) in bits 0..39 | ABA tag << 40. CAS by every
	 * allocating or freeing process. */
	_Atomic uint64_t head;
	char pad[56];
};

struct heap_hdr {
	_Atomic uint64_t magic; /* written last by the creator */
	uint64_t checksum;      /* of geom */
	struct heap_geom geom;

	/* Next unused arena byte: CAS by allocators (bump). */
	alignas(HEAP_LINE) _Atomic uint64_t brk;
	/* Participant table words (struct part_table): membership epoch,
	 * roles ever held (unused by heaps), last sweep. */
	alignas(HEAP_LINE) _Atomic uint32_t epoch;
	_Atomic uint32_t ever;
	_Atomic int64_t swept;
	/* Sequence for anonymous object names: fetch_add by creators. */
	_Atomic uint64_t anon_seq;

	/* Reclamation epoch (epoch.c): CAS from e to e + 1 by any process
	 * that found every live pin at e. Read by everyone. */
	alignas(HEAP_LINE) _Atomic uint64_t reclaim_epoch;
	/* Participant slots that ever pinned lie below this: fetch-max by a
	 * slot's owner before its first pin; bounds the advancers' scan. */
	_Atomic uint32_t pins_used;

	/* The directory: mutex, intent record, hash chains of objects
	 * (offsets; written under the mutex). */
	alignas(HEAP_LINE) struct mutex lock;
	struct heap_intent intent;
	_Atomic uint64_t buckets[HEAP_BUCKETS];

	alignas(HEAP_LINE) struct heap_free_list free[HEAP_CLASSES];
	alignas(HEAP_LINE) char end[];
};

/* A participant slot's epoch pin (epoch.c): the epoch its owner's readers
 * entered at (bits 16..63) and how many of its threads are inside (0..15).
 * CAS by the owner; zeroed by whoever scrubs the slot after its owner left.
 * A line each: every dict read writes its own pin twice. */
struct heap_pin {
	_Atomic uint64_t word;
	char pad[56];
};

/* Every block starts with this; the payload follows, HEAP_GRAIN aligned. */
enum { BLOCK_USED = 0x55534544u, BLOCK_FREE = 0x46524545u };
struct heap_block {
	_Atomic uint32_t magic; /* BLOCK_USED / BLOCK_FREE: set by whoever
				   allocates or frees it, before it leaves
				   or joins its list */
	uint32_t cls;           /* size class, set when carved */
	_Atomic uint64_t next;  /* on a free list: the next block's offset;
				   while allocated: the owner's (heap_block_link) */
};

/* Object kinds (heap_obj.kind). */
enum heap_kind {
	HEAP_KIND_LOCK = 1,
	HEAP_KIND_SEM,
	HEAP_KIND_COND,
	HEAP_KIND_EVENT,
	HEAP_KIND_BARRIER,
	HEAP_KIND_ARRAY,
	HEAP_KIND_DICT,
	HEAP_KIND_LIST,
	HEAP_KIND_CHAN,
	HEAP_KIND_CHAN_END,
	HEAP_KIND_MAX
};

enum { OBJ_MAGIC = 0x4a424f51u };
enum { OBJ_ANON = 1, OBJ_REMOVED = 2 }; /* heap_obj.flags */
#define HEAP_HOLDER_WORDS (SHMQ_MAX_PARTICIPANTS / 64)

/* An object's header, HEAP_OBJ_ALIGN aligned inside its block; the payload
 * follows at offset sizeof(struct heap_obj). Everything but holders, links,
 * flags and next is written once, before the object is linked. */
struct heap_obj {
	uint32_t magic;
	uint32_t kind;
	_Atomic uint32_t flags; /* OBJ_ANON, OBJ_REMOVED (under the mutex) */
	_Atomic uint32_t links; /* objects that link to this one (mutex) */
	uint64_t size;          /* payload bytes */
	uint64_t block;         /* the block it lives in (payload offset) */
	uint64_t ref;           /* the object this one links to, or 0 */
	_Atomic uint64_t next;  /* directory chain (mutex) */
	char name[SHMQ_NAME_MAX];
	/* Participant slots holding a handle: set and cleared under the mutex
	 * by the holder (open, close, fork) or by whoever scrubs a departed
	 * slot. */
	_Atomic uint64_t holders[HEAP_HOLDER_WORDS];
	char pad[16];
};
_Static_assert(sizeof(struct heap_obj) % HEAP_OBJ_ALIGN == 0, "payload stays aligned");

/* A process-local reference to an object: the common part of every object
 * handle (shmq_lock, shmq_sem, ...). */
struct heap_ref {
	shmq_heap *heap;
	uint64_t off;           /* the object's offset */
	struct heap_obj *obj;
	void *payload;          /* obj + 1, size bytes, validated */
	char name[SHMQ_NAME_MAX]; /* private copy: shared memory may change */
};

/* What an object layer wants done for its kind; heap.c knows nothing of the
 * kinds and calls these through the table heap_kind_register() fills. */
struct heap_kind_ops {
	/* The owner of participant slot held a handle on o and is gone (died,
	 * exec'd, or is closing its heap): give back what it held in o. tag is
	 * that owner's wide tag, or 0 if unknown (its slot was claimed again:
	 * then anything held by a tag that is gone is given back). Called under
	 * the heap mutex. */
	void (*departed)(shmq_heap *h, struct heap_obj *o, uint32_t slot, uint32_t tag);
	/* o is being freed (nobody holds it any more): free the blocks its
	 * payload owns. Under the heap mutex; must be resumable (a death
	 * mid-way leaves the rest to leak, never to be freed twice). */
	void (*destroy)(shmq_heap *h, struct heap_obj *o);
};
void heap_kind_register(uint32_t kind, const struct heap_kind_ops *ops);

/* Create an object of kind with size payload bytes: init(payload, arg) fills
 * the payload before anyone can see it. link: an object of the same heap
 * this one must keep alive (a condition's lock), or NULL. */
int heap_obj_create(shmq_heap *h, const char *name, uint32_t kind, size_t size,
		    const struct heap_ref *link, void (*init)(void *payload, void *arg), void *arg,
		    struct heap_ref *out);
int heap_obj_open(shmq_heap *h, const char *name, uint32_t kind, struct heap_ref *out);
/* Open the object at offset off (one this process reached through another
 * object, e.g. a condition's lock). Returns 0 or -EPROTO. */
int heap_obj_open_at(shmq_heap *h, uint64_t off, uint32_t kind, struct heap_ref *out);
void heap_obj_close(struct heap_ref *r);
/* The object at offset off, checked (aligned, magic, kind, payload inside
 * the heap), or NULL: for an offset read from shared memory. */
struct heap_obj *heap_obj_at(shmq_heap *h, uint64_t off);

/* The first member of every struct shmq_heap: what heap_at() needs, so that
 * its fast path inlines into the object layers' read paths. base and
 * max_size are set once at attach; known_size only grows (relaxed: a stale
 * value only sends heap_at to fstat). */
struct heap_map {
	struct heap_hdr *hdr;        /* the mapping */
	uint64_t max_size;
	_Atomic uint64_t known_size; /* file bytes known to exist */
	struct heap_pin *pins;       /* the epoch pins, one per slot */
	int slot;                    /* our participant slot, -1 if lost
					(see fork_child in heap.c) */
};
/* heap_at() beyond known_size: fstat the file, then check. */
void *heap_at_grown(shmq_heap *h, uint64_t off, uint64_t len);
/* A pointer to len bytes at offset off, or NULL if they are not inside the
 * heap's file (checked against max_size, then the real file size). */
static inline void *heap_at(shmq_heap *h, uint64_t off, uint64_t len)
{
	struct heap_map *m = (struct heap_map *)h;
	if (off > m->max_size || len > m->max_size - off)
		return NULL;
	if (off + len > atomic_load_explicit(&m->known_size, memory_order_relaxed))
		return heap_at_grown(h, off, len);
	return (char *)m->hdr + off;
}
/* The offset of p, a pointer into the heap. */
uint64_t heap_off(shmq_heap *h, const void *p);
/* Allocate size bytes (HEAP_GRAIN aligned) / free them. Returns 0 and *off;
 * -ENOSPC (nothing changed), -EPROTO (corrupted allocator state). */
int heap_alloc(shmq_heap *h, size_t size, uint64_t *off);
void heap_free(shmq_heap *h, uint64_t off);
/* The block header's link word of the allocated block at off (as heap_alloc
 * returned it), or NULL: unused by the heap while the block is allocated, it
 * is the owner's to chain the block into lists of its own (the dict's retired
 * entries) without a field in the payload. heap_free overwrites it. */
_Atomic uint64_t *heap_block_link(shmq_heap *h, uint64_t off);

/* Most blocks of at least unit bytes the heap's file holds now: a walk over
 * more links than this is a cycle (a hostile heap). */
uint64_t heap_bound(shmq_heap *h, uint64_t unit);

/* The participant table and this handle's owner tag for lock words. */
struct part_table *heap_parts(shmq_heap *h);
uint32_t heap_owner(shmq_heap *h);
/* A wait on an object of h drags on: reap dead participants (at most once
 * per WAIT_CHECK_NS among all waiters), which releases their handles. */
void heap_sweep(shmq_heap *h);

/* Tests: walk the free lists and the directory of a quiescent heap. Returns
 * 0, or -EPROTO if a block is out of range, on two lists, of the wrong class
 * or marked used while listed, a chain is cyclic, or an object overlaps free
 * memory. */
int heap_check(shmq_heap *h);

/* The mapped header; for epoch.c: the pin of participant slot, the calling
 * process's slot (-1 if the handle lost it, see fork). Inline: every dict
 * read pins. */
static inline struct heap_hdr *heap_header(shmq_heap *h)
{
	return ((struct heap_map *)h)->hdr;
}

static inline struct heap_pin *heap_pin_at(shmq_heap *h, uint32_t slot)
{
	return ((struct heap_map *)h)->pins + slot;
}

static inline int heap_slot(shmq_heap *h)
{
	return ((struct heap_map *)h)->slot;
}

#endif
