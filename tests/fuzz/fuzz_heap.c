/* libFuzzer target: a heap opened from a segment whose header, participant
 * table and arena hold bytes of the fuzzer's choosing, then used as a process
 * uses a heap it opened.
 *
 * Each input first builds a valid heap in a memfd, through the API (the first
 * three bytes choose max_size and what the "creator" leaves behind): named
 * objects of every kind (Lock, RLock, plain and UNDO semaphores, conditions
 * with their own lock and over a Lock, event, barrier, arrays with and without
 * a lock), anonymous ones, blocks on the free lists, and a creator that
 * "died" holding locks and semaphore units, with anonymous objects still held
 * by a dead participant slot. The creator's handle is closed, and the rest of
 * the input is a little program: patch bytes of the header (with the geometry
 * checksum fixed up if the input says so, so that forged geometries get past
 * it), of the participant table and of the arena (its first and its last
 * bytes); store chosen words (brk, free-list heads, buckets, the intent
 * record, the directory mutex, fields of existing objects), forge objects and
 * free blocks; open the heap with shmq_heap_open_fd(); open objects by name
 * (every kind, right or wrong), create and close objects, lock and unlock,
 * acquire and release semaphores, wait and notify conditions, use events,
 * barriers and arrays, allocate and free raw blocks, shmq_heap_stat,
 * shmq_heap_remove, heap_check(), a second heap handle, a close and reopen,
 * patching more bytes in between. Every blocking call has a timeout of 0 or
 * a few microseconds. The library must never crash, read out of bounds, hit
 * undefined behaviour or hang (run it with -timeout); a few results the API
 * documents are checked too (error codes, is_mine after an acquire, a clean
 * heap close), and trap if wrong.
 *
 * What is not fuzzed, because it is a hang by design and not a bug: a lock
 * word naming a holder that is alive. The harness keeps the fuzzer from
 * forging one: the generations of free participant slots are re-randomized
 * (from a hash of the input) before every open, so the fuzzer cannot predict
 * this process's owner tag; our own slot is restored after every patch of the
 * table; a patched slot that names another live process is pointed at a dead
 * pid instead, and its fork stamp (alive for 5 s) is cleared; the harness's
 * own fd on the heap sits at a file position no token can equal. RLIMIT_FSIZE
 * bounds the file (a forged brk near a forged 1 TiB max_size would make the
 * next allocation fallocate it all).
 *
 * FUZZ_HEAP_WRITE_SEEDS=DIR writes the seed corpus (tests/fuzz/corpus-heap)
 * into DIR and exits. tests/torture/README.md says how to build and run it. */
#include <shmq.h>
#include "heap.h" /* the layout the patches aim at, heap_alloc/free, heap_check */

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h" /* struct input, u8() .. u64(), mix() */
#include "fuzz_arena.h"  /* class_size, M_HELD */

#define MAX_OPS 64
#define MAX_HANDLES 16
#define MAX_KNOWN 64
#define MAX_RAW 8
#define FILE_LIMIT (64ull << 20) /* RLIMIT_FSIZE */
#define PID_MASK ((1ull << 22) - 1) /* part.c: id = pid | roles << 22 | start << 24 */
#define DEAD_SLOT 7u             /* the creator's anonymous objects stay held by it */

/* ----------------------------------------------------------------- input -- */

static int64_t timeout_of(unsigned b)
{
	static const int64_t t[8] = { 0, 0, 0, 0, 0, 1000, 20000, 200000 }; /* ns */
	return t[b & 7];
}

/* A documented result was not returned: a finding, not a crash of the
 * harness. */
#define EXPECT(cond)                                                             \
	do {                                                                     \
		if (!(cond)) {                                                   \
			fprintf(stderr, "fuzz_heap: %s:%d: expected %s\n", __FILE__, \
				__LINE__, #cond);                                \
			__builtin_trap();                                        \
		}                                                                \
	} while (0)

/* ------------------------------------------------------------------ state -- */

enum htype { H_LOCK, H_SEM, H_COND, H_EVENT, H_BARRIER, H_ARRAY, H_N };

struct hnd {
	enum htype t;
	void *p;
};

static const char *const names[] = {
	"lock", "rlock", "sem", "usem", "cond", "cond2", "event", "barrier", "array", "raw",
	"@0", "@1", "@2", "@3", "@4", "@5", "@6", "@7", "new", "x",
};
#define NNAMES (sizeof(names) / sizeof(names[0]))
/* The kind each name above has in the heap as built (anonymous: see build). */
static const enum htype name_type[NNAMES] = {
	H_LOCK, H_LOCK, H_SEM, H_SEM, H_COND, H_COND, H_EVENT, H_BARRIER, H_ARRAY, H_ARRAY,
	H_LOCK, H_SEM, H_LOCK, H_COND, H_EVENT, H_BARRIER, H_ARRAY, H_LOCK, H_LOCK, H_LOCK,
};

struct fz {
	unsigned char *seg; /* the file as this process maps it for patching */
	size_t size;
	struct heap_geom g; /* as created: where the regions are */
	int fd;             /* ours, at a file position no token can equal */
	uint64_t salt;      /* hash of the input: slot generations */
	bool fix_sum;
	shmq_heap *h;
	bool open_failed;
	int our_slot;
	unsigned char our_part[64]; /* our slot as claimed: restored after patches */
	struct hnd hs[MAX_HANDLES];
	unsigned nh;
	uint64_t raw[MAX_RAW]; /* raw blocks this process allocated */
	unsigned nraw;
	uint64_t known[MAX_KNOWN]; /* objects of the heap as built */
	unsigned nknown;
	uint64_t blocks[MAX_KNOWN]; /* blocks (payload offsets) as built */
	unsigned nblocks;
};

static pid_t dead_pid; /* a pid no process has */
static bool trace;     /* FUZZ_HEAP_TRACE: say what each op did (stderr) */
/* Strict (the default, now that the library bugs this target found are
 * fixed): 1 GiB heaps, forged geometries of any size, heap_check() and
 * unaligned blocks everywhere. FUZZ_HEAP_LENIENT=1 brings back the
 * workarounds the target used while those bugs were open:
 *  - heap sizes: a looping directory chain is walked max_size / 256 steps
 *    before it counts as a cycle (4.2 million steps per bucket at 1 GiB,
 *    0.3 s per stat and per bucket scrubbed; 262,000 at 64 MiB), which the
 *    fuzzer finds within minutes as a timeout and then again and again; so
 *    heaps are of 1 to 8 MiB, and a forged geometry's checksum is fixed only
 *    up to 8 MiB. Strict: 1 GiB heaps, forged geometries of any size.
 *  - heap_check() is called only when it cannot write past its bitmap
 *    (check_is_safe);
 *  - objects the library can reach get 16-byte aligned blocks (heap_free
 *    loads a block's header before it checks the block's alignment). */
static bool strict;
#define SMALL_MAX (8ull << 20)
#define TRACE(...)                                    \
	do {                                          \
		if (trace)                            \
			fprintf(stderr, __VA_ARGS__); \
	} while (0)

static struct heap_hdr *hdr(struct fz *f)
{
	return (struct heap_hdr *)f->seg;
}

static struct seg_part *parts(struct fz *f)
{
	return (struct seg_part *)(f->seg + f->g.parts_off);
}

static uint64_t geom_sum(const struct heap_geom *g) /* FNV-1a, as heap.c */
{
	const unsigned char *p = (const unsigned char *)g;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < sizeof(*g); i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static unsigned bucket_of(const char *name) /* as heap.c */
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % HEAP_BUCKETS;
}

/* An object of the mapped file at off, if its header lies inside it. */
static struct heap_obj *obj_in(struct fz *f, uint64_t off)
{
	if (off < f->g.arena_off || off % HEAP_OBJ_ALIGN || off > f->size ||
	    f->size - off < sizeof(struct heap_obj))
		return NULL;
	return (struct heap_obj *)(f->seg + off);
}

/* -------------------------------------------------- slots and liveness -- */

static bool pid_exists(pid_t pid)
{
	return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

/* Before any open: free slots get generations the fuzzer cannot predict (the
 * claimant's owner tag), and no slot carries a fork stamp. */
static void sanitize_parts(struct fz *f)
{
	struct seg_part *p = parts(f);
	for (uint32_t i = 0; i < f->g.nparts; i++) {
		atomic_store(&p[i].forking, 0);
		if (!atomic_load(&p[i].id))
			atomic_store(&p[i].gen, (uint32_t)mix(f->salt ^ i));
	}
}

/* After a patch of slots lo..hi: our own slot as it was, no fork stamps, and
 * no slot naming another live process (which would hold locks forever). */
static void fix_parts(struct fz *f, uint32_t lo, uint32_t hi)
{
	struct seg_part *p = parts(f);
	for (uint32_t i = lo; i <= hi && i < f->g.nparts; i++) {
		if (f->h && (int)i == f->our_slot) {
			memcpy(&p[i], f->our_part, sizeof(f->our_part));
			continue;
		}
		atomic_store(&p[i].forking, 0);
		uint64_t id = atomic_load(&p[i].id);
		pid_t pid = (pid_t)(id & PID_MASK);
		if (id && pid != getpid() && pid_exists(pid))
			atomic_store(&p[i].id, (id & ~PID_MASK) | (uint64_t)dead_pid);
	}
}

static int heap_open(struct fz *f, unsigned flags_byte, shmq_heap **out)
{
	sanitize_parts(f);
	return shmq_heap_open_fd(f->fd, flags_byte & 1 ? SHMQ_FOREIGN : 0, out);
}

static void note_our_slot(struct fz *f)
{
	f->our_slot = (int)(heap_owner(f->h) % f->g.nparts);
	memcpy(f->our_part, &parts(f)[f->our_slot], sizeof(f->our_part));
}

/* ---------------------------------------------------------------- patches -- */

/* Copy len bytes of input into the file at off, inside [lo, hi). */
static void patch(struct fz *f, struct input *in, size_t lo, size_t hi, size_t off, size_t len)
{
	if (hi <= lo)
		return;
	off = lo + off % (hi - lo);
	for (size_t i = 0; i < len && off + i < hi; i++)
		f->seg[off + i] = (unsigned char)u8(in);
	if (f->fix_sum && (strict || hdr(f)->geom.max_size <= SMALL_MAX))
		hdr(f)->checksum = geom_sum(&hdr(f)->geom);
	if (hi > f->g.parts_off && lo < f->g.arena_off && off + len > f->g.parts_off) {
		size_t a = off > f->g.parts_off ? off : f->g.parts_off;
		fix_parts(f, (uint32_t)((a - f->g.parts_off) / sizeof(struct seg_part)),
			  (uint32_t)((off + len - 1 - f->g.parts_off) / sizeof(struct seg_part)));
	}
}

/* A value worth storing: offsets of objects and blocks, the arena's edges,
 * lock words, list heads, or plain bytes. */
static uint64_t value(struct fz *f, struct input *in)
{
	unsigned s = u8(in);
	int delta = (int)(s >> 4) - 8;
	switch (s % 12) {
	case 0: return u64(in);
	case 1: return u8(in);
	case 2: return f->nknown ? f->known[u8(in) % f->nknown] + (uint64_t)(delta * 64) : 0;
	case 3: return f->nblocks ? f->blocks[u8(in) % f->nblocks] + (uint64_t)(delta * 16) : 0;
	case 4: return f->g.arena_off + 16ull * u16(in);
	case 5: return f->size - 16ull * (1 + u16(in) % 4096);
	case 6: return atomic_load(&hdr(f)->brk) + (uint64_t)(delta * 16);
	case 7: return 0;
	case 8: return M_HELD | u32(in) % M_HELD;
	case 9: return f->g.max_size - 16ull * u8(in);
	case 10: { /* a free-list head naming a known block */
		uint64_t b = f->nblocks ? f->blocks[u8(in) % f->nblocks] - 16 : f->g.arena_off;
		return b / HEAP_GRAIN | (uint64_t)u8(in) << 40;
	}
	default: return ~0ull;
	}
}

static void header_word(struct fz *f, struct input *in)
{
	struct heap_hdr *h = hdr(f);
	unsigned t = u8(in);
	uint64_t v = value(f, in);
	switch (t % 13) {
	case 0: atomic_store(&h->brk, v); break;
	case 1: atomic_store(&h->free[u8(in) % HEAP_CLASSES].head, v); break;
	case 2: atomic_store(&h->buckets[(t >> 4) & 1 ? bucket_of(names[u8(in) % NNAMES])
						      : u16(in) % HEAP_BUCKETS], v);
		break;
	case 3: atomic_store(&h->intent.op, (uint32_t)v % 5); break;
	case 4: h->intent.slot = (uint32_t)v; break;
	case 5: h->intent.obj = v; break;
	case 6: h->intent.target = v; break;
	case 7: h->intent.links_after = (uint32_t)v; break;
	case 8: atomic_store(&h->lock.word, (uint32_t)v); break;
	case 9: atomic_store(&h->lock.count, (uint32_t)v); h->lock.flags = (uint32_t)(v >> 32); break;
	case 10: atomic_store(&h->anon_seq, v); break;
	case 11: atomic_store(&h->swept, (int64_t)v); break;
	default: atomic_store(&h->epoch, (uint32_t)v); break;
	}
}

/* Store a word into an object the heap had as built (its header or its
 * payload). */
static void object_word(struct fz *f, struct input *in)
{
	if (!f->nknown)
		return;
	struct heap_obj *o = obj_in(f, f->known[u8(in) % f->nknown]);
	unsigned t = u8(in);
	uint64_t v = value(f, in);
	if (!o)
		return;
	switch (t % 11) {
	case 0: o->magic = (uint32_t)v; break;
	case 1: o->kind = (uint32_t)v % (HEAP_KIND_MAX + 2); break;
	case 2: atomic_store(&o->flags, (uint32_t)v); break;
	case 3: atomic_store(&o->links, (uint32_t)v); break;
	case 4: o->size = (t >> 4) & 1 ? v : v % 4096; break;
	case 5: o->block = v; break;
	case 6: o->ref = v; break;
	case 7: atomic_store(&o->next, v); break;
	case 8: atomic_store(&o->holders[(t >> 4) % HEAP_HOLDER_WORDS], v); break;
	case 9: o->name[(t >> 4) % SHMQ_NAME_MAX] = (char)v; break;
	default: { /* a word of the payload, inside the file */
		uint64_t off = (uint64_t)((char *)(o + 1) - (char *)f->seg) + 4 * ((t >> 4) + 16 * (v >> 60));
		if (off + 4 <= f->size)
			memcpy(f->seg + off, &v, 4);
		break;
	}
	}
}

/* Write an object header somewhere in the file (often right at its end, so
 * that its payload would lie past it) and maybe link it into its chain.
 * Returns the index of its name in names[] and its kind, or -1. */
static int forge_object(struct fz *f, struct input *in, uint32_t *kind)
{
	unsigned a = u8(in);
	uint64_t span = (f->size - f->g.arena_off) / HEAP_OBJ_ALIGN;
	unsigned back = u8(in);
	uint64_t off = a & 1 ? f->g.arena_off + HEAP_OBJ_ALIGN * ((back | u8(in) << 8) % span)
			     : f->size - sizeof(struct heap_obj) - HEAP_OBJ_ALIGN * (back & 8 ? back % 8 : 0);
	struct heap_obj *o = obj_in(f, off);
	if (!o)
		return -1;
	unsigned ni = u8(in) % NNAMES;
	const char *name = names[ni];
	memset(o, 0, sizeof(*o));
	o->magic = a & 2 ? u32(in) : OBJ_MAGIC;
	o->kind = 1 + u8(in) % (HEAP_KIND_MAX - 1);
	atomic_store(&o->flags, (a >> 2) & 3);
	atomic_store(&o->links, (a >> 4) & 1);
	unsigned sz = u8(in); /* often 0 or small: a payload past the end of the file */
	o->size = sz & 128 ? u16(in) : sz & 64 ? sz % 64 : 0;
	o->block = value(f, in);
	o->ref = a & 32 ? value(f, in) : 0;
	snprintf(o->name, sizeof(o->name), "%s", name);
	atomic_store(&o->holders[0], a & 64 ? 1ull << DEAD_SLOT : 0);
	_Atomic uint64_t *bucket = &hdr(f)->buckets[bucket_of(name)];
	atomic_store(&o->next, a & 128 ? off : atomic_load(bucket)); /* or a cycle */
	atomic_store(bucket, off);
	*kind = o->kind;
	return (int)ni;
}

/* Write a block header somewhere in the arena and push it on a free list. */
static void forge_block(struct fz *f, struct input *in)
{
	unsigned a = u8(in);
	uint64_t span = (f->size - f->g.arena_off) / HEAP_GRAIN;
	uint64_t off = f->g.arena_off + HEAP_GRAIN * (u16(in) % span);
	if (off + sizeof(struct heap_block) > f->size)
		return;
	struct heap_block *b = (struct heap_block *)(f->seg + off);
	unsigned c = u8(in) % (HEAP_CLASSES + 8);
	atomic_store(&b->magic, a & 1 ? BLOCK_FREE : a & 2 ? BLOCK_USED : u32(in));
	b->cls = c;
	_Atomic uint64_t *head = &hdr(f)->free[c % HEAP_CLASSES].head;
	uint64_t old = atomic_load(head);
	atomic_store(&b->next, a & 4 ? value(f, in) : (old & ((1ull << 40) - 1)) * HEAP_GRAIN);
	if (a & 8)
		atomic_store(head, off / HEAP_GRAIN | ((old >> 40) + 1) << 40);
}

/* heap_check() marks every listed block and every object's block in a
 * bitmap sized by brk, and does not check that they lie below brk: one past
 * it is a write past the bitmap; nor that an object's block is aligned
 * before it loads the block's header (both reported). Until that is fixed,
 * it is called only when neither happens, so that the fuzzer looks for other
 * things. Walks as heap_check does, bounded. */
static bool check_is_safe(struct fz *f)
{
	shmq_heap *h = f->h;
	struct heap_hdr *hd = hdr(f);
	uint64_t brk = atomic_load(&hd->brk), arena = f->g.arena_off;
	const int bound = 100000;
	for (unsigned c = 0; c < HEAP_CLASSES; c++) {
		uint64_t off = (atomic_load(&hd->free[c].head) & ((1ull << 40) - 1)) * HEAP_GRAIN;
		int n = 0;
		for (; off && n < bound; n++) {
			struct heap_block *b =
				off >= arena && off % HEAP_GRAIN == 0 ? heap_at(h, off, class_size(c)) : NULL;
			if (!b || b->cls != c || atomic_load(&b->magic) != BLOCK_FREE)
				break;
			if (off + class_size(c) > brk)
				return false;
			off = atomic_load(&b->next);
		}
		if (n == bound)
			return false;
	}
	for (unsigned bk = 0; bk < HEAP_BUCKETS; bk++) {
		uint64_t off = atomic_load(&hd->buckets[bk]);
		int n = 0;
		for (; off && n < bound; n++) {
			struct heap_obj *o = off >= arena && off % HEAP_OBJ_ALIGN == 0
						     ? heap_at(h, off, sizeof(*o)) : NULL;
			if (!o || o->magic != OBJ_MAGIC || o->kind == 0 || o->kind >= HEAP_KIND_MAX ||
			    !heap_at(h, off, sizeof(*o) + o->size) ||
			    !memchr(o->name, 0, sizeof(o->name)) || bucket_of(o->name) != bk ||
			    o->block < arena + sizeof(struct heap_block))
				break;
			if (o->block % HEAP_GRAIN)
				return false; /* heap_check would load its header misaligned */
			struct heap_block *b = heap_at(h, o->block - sizeof(*b), sizeof(*b));
			if (!b || atomic_load(&b->magic) != BLOCK_USED || b->cls >= HEAP_CLASSES ||
			    off + sizeof(*o) + o->size > o->block - sizeof(*b) + class_size(b->cls))
				break;
			if (o->block - sizeof(*b) + class_size(b->cls) > brk)
				return false;
			off = atomic_load(&o->next);
		}
		if (n == bound)
			return false;
	}
	return true;
}

static int checked(struct fz *f)
{
	if (!strict && !check_is_safe(f))
		return -EPROTO;
	int r = heap_check(f->h);
	EXPECT(r == 0 || r == -EPROTO);
	return r;
}

/* heap_free() reads the header of the block it is given before it checks
 * that the block is aligned: an object whose block is not is undefined
 * behaviour when the object is freed (reported). Until that is fixed, the
 * objects the library can reach (chains, their links, the intent record)
 * get aligned blocks before every call. */
static void align_one(struct fz *f, uint64_t off, int depth)
{
	struct heap_obj *o;
	for (; depth < 8 && (o = obj_in(f, off)); depth++) {
		o->block &= ~(uint64_t)(HEAP_GRAIN - 1);
		off = o->ref;
	}
}

static void align_blocks(struct fz *f)
{
	if (strict)
		return;
	for (unsigned b = 0; b < HEAP_BUCKETS; b++) {
		uint64_t off = atomic_load(&hdr(f)->buckets[b]);
		struct heap_obj *o;
		for (int steps = 0; steps < 256 && (o = obj_in(f, off)); steps++) {
			align_one(f, off, 0);
			off = atomic_load(&o->next);
		}
	}
	align_one(f, hdr(f)->intent.obj, 0);
	align_one(f, hdr(f)->intent.target, 0);
}

/* --------------------------------------------------------------- handles -- */

static void close_handle(struct hnd *x)
{
	switch (x->t) {
	case H_LOCK: EXPECT(shmq_lock_close(x->p) == 0); break;
	case H_SEM: EXPECT(shmq_sem_close(x->p) == 0); break;
	case H_COND: EXPECT(shmq_cond_close(x->p) == 0); break;
	case H_EVENT: EXPECT(shmq_event_close(x->p) == 0); break;
	case H_BARRIER: EXPECT(shmq_barrier_close(x->p) == 0); break;
	default: EXPECT(shmq_array_close(x->p) == 0); break;
	}
}

static void close_all(struct fz *f)
{
	while (f->nh)
		close_handle(&f->hs[--f->nh]);
	while (f->nraw)
		heap_free(f->h, f->raw[--f->nraw]);
}

static const char *handle_name(struct hnd *x)
{
	switch (x->t) {
	case H_LOCK: return shmq_lock_name(x->p);
	case H_SEM: return shmq_sem_name(x->p);
	case H_COND: return shmq_cond_name(x->p);
	case H_EVENT: return shmq_event_name(x->p);
	case H_BARRIER: return shmq_barrier_name(x->p);
	default: return shmq_array_name(x->p);
	}
}

static void add_handle(struct fz *f, enum htype t, void *p)
{
	f->hs[f->nh++] = (struct hnd){ t, p };
	const char *n = handle_name(&f->hs[f->nh - 1]);
	EXPECT(n && strnlen(n, SHMQ_NAME_MAX) < SHMQ_NAME_MAX);
}

static int open_by_name(shmq_heap *h, enum htype t, const char *name, void **out)
{
	switch (t) {
	case H_LOCK: return shmq_lock_open(h, name, (shmq_lock **)out);
	case H_SEM: return shmq_sem_open(h, name, (shmq_sem **)out);
	case H_COND: return shmq_cond_open(h, name, (shmq_cond **)out);
	case H_EVENT: return shmq_event_open(h, name, (shmq_event **)out);
	case H_BARRIER: return shmq_barrier_open(h, name, (shmq_barrier **)out);
	default: return shmq_array_open(h, name, (shmq_array **)out);
	}
}

/* The lock a handle offers, if any: a Lock, a condition's, an array's. */
static shmq_lock *lock_of(struct hnd *x)
{
	switch (x->t) {
	case H_LOCK: return x->p;
	case H_COND: return shmq_cond_lock(x->p);
	case H_ARRAY: return shmq_array_lock(x->p);
	default: return NULL;
	}
}

/* Acquire l; a taken lock must then be ours. Returns true if taken. */
static bool take(shmq_lock *l, int64_t t)
{
	int r = shmq_lock_acquire(l, t);
	TRACE("  lock acquire: %d\n", r);
	EXPECT(r == 0 || r == -EOWNERDEAD || r == -EAGAIN || r == -ETIMEDOUT || r == -EOVERFLOW);
	if (r == -EAGAIN)
		EXPECT(t == 0);
	if (r != 0 && r != -EOWNERDEAD)
		return false;
	EXPECT(shmq_lock_is_mine(l) == 1 && shmq_lock_held(l) == 1);
	return true;
}

static void give(shmq_lock *l)
{
	int r = shmq_lock_release(l);
	EXPECT(r == 0 || r == -EPERM);
}

static int create_obj(struct fz *f, struct input *in, const char *name, enum htype t, void **out)
{
	unsigned a = u8(in);
	shmq_heap *h = f->h;
	switch (t) {
	case H_LOCK: return shmq_lock_create(h, name, a & 1 ? SHMQ_RECURSIVE : 0, (shmq_lock **)out);
	case H_SEM: {
		uint32_t v = a >> 4, max = a & 2 ? v + (a >> 2 & 3) : 0;
		return shmq_sem_create(h, name, v, max, a & 1 ? SHMQ_UNDO : 0, (shmq_sem **)out);
	}
	case H_COND: {
		shmq_lock *l = NULL;
		if (a & 1 && f->nh)
			l = lock_of(&f->hs[u8(in) % f->nh]);
		return shmq_cond_create(h, name, l, (shmq_cond **)out);
	}
	case H_EVENT: return shmq_event_create(h, name, (shmq_event **)out);
	case H_BARRIER: return shmq_barrier_create(h, name, 1 + (a & 3), (shmq_barrier **)out);
	default: return shmq_array_create(h, name, 1 + u16(in) % 4096, a & 1 ? SHMQ_NOLOCK : 0,
					  (shmq_array **)out);
	}
}

static void barrier_action(void *arg)
{
	++*(int *)arg;
}

static void use_handle(struct fz *f, struct input *in)
{
	if (!f->nh)
		return;
	struct hnd *x = &f->hs[u8(in) % f->nh];
	unsigned a = u8(in);
	int64_t t = timeout_of(a >> 3);
	int r;
	TRACE("  use %s (type %d), a %#x\n", handle_name(x), x->t, a);
	switch (x->t) {
	case H_LOCK:
		switch (a % 3) {
		case 0:
			if (take(x->p, t) && !(a & 128))
				give(x->p);
			break;
		case 1: give(x->p); break;
		default:
			r = shmq_lock_held(x->p);
			EXPECT(r == 0 || r == 1);
			r = shmq_lock_is_mine(x->p);
			EXPECT(r == 0 || r == 1);
			break;
		}
		break;
	case H_SEM:
		switch (a % 3) {
		case 0:
			r = shmq_sem_acquire(x->p, t);
			TRACE("  sem acquire: %d (value now %d)\n", r, shmq_sem_value(x->p));
			EXPECT(r == 0 || r == -EAGAIN || r == -ETIMEDOUT);
			if (r == -EAGAIN)
				EXPECT(t == 0);
			break;
		case 1:
			r = shmq_sem_release(x->p, 1 + (a >> 6));
			EXPECT(r == 0 || r == -EOVERFLOW);
			break;
		default:
			EXPECT(shmq_sem_value(x->p) >= 0 && shmq_sem_max(x->p) >= 0);
			break;
		}
		break;
	case H_COND: {
		shmq_lock *l = shmq_cond_lock(x->p);
		EXPECT(l != NULL);
		if (a & 1 && shmq_lock_is_mine(l) == 0) { /* not held: refused */
			EXPECT(shmq_cond_notify(x->p, 1) == -EPERM);
			EXPECT(shmq_cond_wait(x->p, 0) == -EPERM);
			break;
		}
		if (!shmq_lock_is_mine(l) && !take(l, 0))
			break;
		switch (a >> 1 & 3) {
		case 0:
			r = shmq_cond_wait(x->p, t);
			TRACE("  cond wait: %d\n", r);
			/* Returned with the lock held, unless it never let go. */
			if (r == 0 || r == -ETIMEDOUT || r == -EAGAIN || r == -EOWNERDEAD)
				EXPECT(shmq_lock_is_mine(l) == 1);
			break;
		case 1: r = shmq_cond_notify(x->p, 1 + (a >> 6)); EXPECT(r >= 0); break;
		case 2: r = shmq_cond_notify_all(x->p); EXPECT(r >= 0); break;
		default: break;
		}
		give(l);
		break;
	}
	case H_EVENT:
		switch (a % 4) {
		case 0: EXPECT(shmq_event_set(x->p) == 0); break;
		case 1: EXPECT(shmq_event_clear(x->p) == 0); break;
		case 2: r = shmq_event_is_set(x->p); EXPECT(r == 0 || r == 1); break;
		default:
			r = shmq_event_wait(x->p, t);
			EXPECT(r == 0 || r == -EAGAIN || r == -ETIMEDOUT);
			break;
		}
		break;
	case H_BARRIER: {
		int parties = shmq_barrier_parties(x->p);
		EXPECT(parties >= 1 && parties <= (int)SHMQ_BARRIER_MAX_PARTIES);
		r = shmq_barrier_n_waiting(x->p);
		EXPECT(r >= 0 && r <= parties);
		r = shmq_barrier_broken(x->p);
		EXPECT(r == 0 || r == 1);
		int ran = 0;
		switch (a % 4) {
		case 0:
			r = shmq_barrier_wait(x->p, 0);
			EXPECT(r == -ECANCELED || r == -EAGAIN || (r >= 0 && r < parties));
			break;
		case 1:
			r = shmq_barrier_wait_action(x->p, barrier_action, &ran, 0);
			EXPECT(r == -ECANCELED || r == -EAGAIN || (r >= 0 && r < parties));
			break;
		case 2: EXPECT(shmq_barrier_abort(x->p) == 0); break;
		default: EXPECT(shmq_barrier_reset(x->p) == 0); break;
		}
		break;
	}
	default: {
		unsigned char *d = shmq_array_data(x->p);
		size_t n = shmq_array_size(x->p);
		EXPECT(d && n > 0);
		shmq_lock *l = shmq_array_lock(x->p);
		bool held = l && a & 1 && take(l, 0);
		d[0] = (unsigned char)a;
		d[n - 1] ^= d[(a * 31u) % n];
		if (held)
			give(l);
		break;
	}
	}
}

/* ------------------------------------------------------------- the program -- */

static bool ensure_open(struct fz *f, struct input *in)
{
	if (f->h)
		return true;
	if (f->open_failed)
		return false;
	int r = heap_open(f, u8(in), &f->h);
	TRACE("  heap open: %d\n", r);
	if (r < 0) {
		f->h = NULL;
		f->open_failed = true;
		return false;
	}
	note_our_slot(f);
	return true;
}

static void one_op(struct fz *f, struct input *in)
{
	unsigned op = u8(in) % 23;
	TRACE("op %u (%zu bytes left)\n", op, in->n);
	switch (op) {
	case 0:
		patch(f, in, 0, sizeof(struct heap_hdr), u16(in), 1 + u8(in) % 8);
		return;
	case 1:
		patch(f, in, f->g.parts_off, f->g.parts_off + f->g.nparts * sizeof(struct seg_part),
		      u16(in), 1 + u8(in) % 8);
		return;
	case 2:
		patch(f, in, f->g.arena_off, f->size, u16(in), 1 + u8(in) % 16);
		return;
	case 3: { /* the last bytes of the file */
		size_t back = 1 + u16(in) % 8192;
		patch(f, in, f->size - (back < f->size - f->g.arena_off ? back : f->size - f->g.arena_off),
		      f->size, 0, 1 + u8(in) % 16);
		return;
	}
	case 4: header_word(f, in); return;
	case 5: object_word(f, in); return;
	case 6: forge_object(f, in, &(uint32_t){ 0 }); return;
	case 7: forge_block(f, in); return;
	default: break;
	}
	align_blocks(f);
	if (!ensure_open(f, in))
		return;
	shmq_heap *h = f->h;
	switch (op) {
	case 8:
	case 9: { /* open by name, as the kind the name has or any other */
		unsigned a = u8(in), ni = u8(in) % NNAMES;
		enum htype t = a & 1 ? (enum htype)(a >> 1) % H_N : name_type[ni];
		void *p = NULL;
		int r = f->nh < MAX_HANDLES ? open_by_name(h, t, names[ni], &p) : -ENFILE;
		TRACE("  open %s as type %d: %d\n", names[ni], t, r);
		if (r == 0) {
			add_handle(f, t, p);
			EXPECT(strcmp(handle_name(&f->hs[f->nh - 1]), names[ni]) == 0);
		}
		break;
	}
	case 10: { /* create, named or anonymous */
		unsigned a = u8(in);
		enum htype t = (enum htype)((a & 7) % H_N);
		const char *name = a & 8 ? names[u8(in) % NNAMES] : NULL;
		void *p = NULL;
		int r = f->nh < MAX_HANDLES ? create_obj(f, in, name, t, &p) : -ENFILE;
		TRACE("  create %s type %d: %d\n", name ? name : "(anonymous)", t, r);
		if (r == 0)
			add_handle(f, t, p);
		break;
	}
	case 11:
		if (f->nh) {
			unsigned i = u8(in) % f->nh;
			close_handle(&f->hs[i]);
			f->hs[i] = f->hs[--f->nh];
		}
		break;
	case 12:
	case 13:
	case 14:
		use_handle(f, in);
		break;
	case 15: {
		struct shmq_heap_stat st;
		int r = shmq_heap_stat(h, &st);
		TRACE("  stat: %d: used %llu free %llu objects %u handles %u\n", r,
		      (unsigned long long)st.used, (unsigned long long)st.free, st.objects, st.handles);
		EXPECT(r == 0 || r == -EPROTO);
		if (r == 0)
			EXPECT(st.max_size == f->g.max_size || f->fix_sum);
		break;
	}
	case 16: {
		int r = shmq_heap_remove(h, names[u8(in) % NNAMES]);
		TRACE("  remove: %d\n", r);
		EXPECT(r == 0 || r == -ENOENT || r == -EPROTO);
		break;
	}
	case 17:
		TRACE("  heap_check: %d\n", checked(f));
		break;
	case 18: { /* raw blocks, as the object layers allocate them */
		unsigned a = u8(in);
		if (a & 1 && f->nraw) {
			unsigned i = u8(in) % f->nraw;
			heap_free(h, f->raw[i]);
			f->raw[i] = f->raw[--f->nraw];
		} else if (f->nraw < MAX_RAW) {
			uint64_t off;
			size_t len = a & 2 ? u16(in) : 1 + u8(in);
			int r = heap_alloc(h, len, &off);
			EXPECT(r == 0 || r == -ENOSPC || r == -EPROTO);
			if (r == 0) {
				unsigned char *p = heap_at(h, off, len);
				EXPECT(p != NULL);
				memset(p, (int)a, len);
				f->raw[f->nraw++] = off;
			}
		}
		break;
	}
	case 19: { /* a second handle, used a little and closed */
		shmq_heap *o = NULL;
		unsigned a = u8(in);
		if (heap_open(f, a, &o) == 0) {
			void *p = NULL;
			unsigned ni = u8(in) % NNAMES;
			if (open_by_name(o, name_type[ni], names[ni], &p) == 0) {
				struct hnd x = { name_type[ni], p };
				close_handle(&x);
			}
			EXPECT(shmq_heap_close(o) == 0);
		}
		break;
	}
	case 20: { /* everything closed, then the heap opened again */
		close_all(f);
		EXPECT(shmq_heap_close(h) == 0);
		f->h = NULL;
		ensure_open(f, in);
		break;
	}
	case 21: { /* an object forged, then opened as the kind it says */
		static const enum htype of_kind[HEAP_KIND_MAX] = {
			[HEAP_KIND_LOCK] = H_LOCK,	 [HEAP_KIND_SEM] = H_SEM,
			[HEAP_KIND_COND] = H_COND,	 [HEAP_KIND_EVENT] = H_EVENT,
			[HEAP_KIND_BARRIER] = H_BARRIER, [HEAP_KIND_ARRAY] = H_ARRAY,
		};
		uint32_t kind = 0;
		int ni = forge_object(f, in, &kind);
		align_blocks(f);
		void *p = NULL;
		enum htype t = of_kind[kind % HEAP_KIND_MAX];
		int r = ni < 0 || f->nh >= MAX_HANDLES ? -ENFILE : open_by_name(h, t, names[ni], &p);
		TRACE("  forged %s (kind %u), open as type %d: %d\n", ni < 0 ? "-" : names[ni], kind,
		      t, r);
		if (r == 0)
			add_handle(f, t, p);
		break;
	}
	default: {
		int r = shmq_heap_stat(h, &(struct shmq_heap_stat){ 0 });
		EXPECT(r == 0 || r == -EPROTO);
		break;
	}
	}
}

/* ----------------------------------------------------------- building it -- */

/* Offsets of every object in the directory, and their blocks. */
static void collect(struct fz *f)
{
	f->nknown = f->nblocks = 0;
	for (unsigned b = 0; b < HEAP_BUCKETS; b++) {
		uint64_t off = atomic_load(&hdr(f)->buckets[b]);
		for (int steps = 0; off && steps < 64 && f->nknown < MAX_KNOWN; steps++) {
			struct heap_obj *o = obj_in(f, off);
			if (!o)
				break;
			f->known[f->nknown++] = off;
			f->blocks[f->nblocks++] = o->block;
			off = atomic_load(&o->next);
		}
	}
}

/* The creator: a heap with objects of every kind, left as a process leaves
 * it that dies holding things (pre's bits say which). Returns a dup of the
 * heap's fd, or -1. */
static int build(uint64_t max_size, unsigned pre)
{
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = max_size;
	shmq_heap *h = NULL;
	if (shmq_heap_create(NULL, &attr, &h) < 0)
		return -1;
	shmq_lock *lock = NULL, *rlock = NULL, *alock = NULL, *alock2 = NULL;
	shmq_sem *sem = NULL, *usem = NULL, *asem = NULL;
	shmq_cond *cond = NULL, *cond2 = NULL, *acond = NULL;
	shmq_event *event = NULL, *aevent = NULL;
	shmq_barrier *barrier = NULL, *abarrier = NULL;
	shmq_array *array = NULL, *raw = NULL, *aarray = NULL;
	shmq_lock_create(h, "lock", 0, &lock);
	shmq_lock_create(h, "rlock", SHMQ_RECURSIVE, &rlock);
	shmq_sem_create(h, "sem", 1 + (pre >> 5), 0, 0, &sem);
	shmq_sem_create(h, "usem", 2, 4, SHMQ_UNDO, &usem);
	shmq_cond_create(h, "cond", NULL, &cond);
	shmq_cond_create(h, "cond2", lock, &cond2);
	shmq_event_create(h, "event", &event);
	shmq_barrier_create(h, "barrier", 2, &barrier);
	shmq_array_create(h, "array", 64, 0, &array);
	shmq_array_create(h, "raw", 256, SHMQ_NOLOCK, &raw);
	/* Anonymous: @0 .. @6, in this order (names[] and name_type[]). */
	shmq_lock_create(h, NULL, 0, &alock);
	shmq_sem_create(h, NULL, 1, 1, SHMQ_UNDO, &asem);
	shmq_lock_create(h, NULL, SHMQ_RECURSIVE, &alock2);
	shmq_cond_create(h, NULL, alock2, &acond);
	shmq_event_create(h, NULL, &aevent);
	shmq_barrier_create(h, NULL, 3, &abarrier);
	shmq_array_create(h, NULL, 100, 0, &aarray);
	if (pre & 1 && lock)
		shmq_lock_acquire(lock, 0);
	if (pre & 2 && rlock) {
		shmq_lock_acquire(rlock, 0);
		shmq_lock_acquire(rlock, 0);
	}
	if (pre & 4 && usem) {
		shmq_sem_acquire(usem, 0);
		shmq_sem_acquire(usem, 0);
	}
	if (pre & 8 && event)
		shmq_event_set(event);
	if (pre & 16) { /* blocks of a few classes on the free lists */
		uint64_t off[12];
		for (unsigned i = 0; i < 12; i++)
			if (heap_alloc(h, 16u << (i % 6), &off[i]) < 0)
				off[i] = 0;
		for (unsigned i = 0; i < 12; i += 1 + (i & 1))
			if (off[i])
				heap_free(h, off[i]);
	}
	int fd = dup(shmq_heap_fd(h));
	struct stat st;
	unsigned char *seg = MAP_FAILED;
	if (fd >= 0 && fstat(fd, &st) == 0)
		seg = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (seg != MAP_FAILED && pre & 64) {
		/* A participant that died holding the anonymous objects (and
		 * "array", removed meanwhile): they outlive our handles, and the
		 * first reap of its slot frees them. */
		struct heap_hdr *hd = (struct heap_hdr *)seg;
		struct seg_part *p = (struct seg_part *)(seg + hd->geom.parts_off);
		atomic_store(&p[DEAD_SLOT].gen, 1);
		atomic_store(&p[DEAD_SLOT].id, (uint64_t)dead_pid | 12345ull << 24);
		shmq_heap_remove(h, "array");
		for (unsigned b = 0; b < HEAP_BUCKETS; b++) {
			uint64_t off = atomic_load(&hd->buckets[b]);
			for (int steps = 0; off && steps < 64; steps++) {
				struct heap_obj *o = (struct heap_obj *)(seg + off);
				if (atomic_load(&o->flags) & (OBJ_ANON | OBJ_REMOVED))
					atomic_fetch_or(&o->holders[0], 1ull << DEAD_SLOT);
				off = atomic_load(&o->next);
			}
		}
	}
	if (seg != MAP_FAILED) {
		if (pre & 128)
			atomic_store(&((struct heap_hdr *)seg)->swept, 0); /* sweep at once */
		munmap(seg, (size_t)st.st_size);
	}
	shmq_lock_close(lock);
	shmq_lock_close(rlock);
	shmq_sem_close(sem);
	shmq_sem_close(usem);
	shmq_cond_close(cond);
	shmq_cond_close(cond2);
	shmq_event_close(event);
	shmq_barrier_close(barrier);
	shmq_array_close(array);
	shmq_array_close(raw);
	shmq_lock_close(alock);
	shmq_sem_close(asem);
	shmq_lock_close(alock2);
	shmq_cond_close(acond);
	shmq_event_close(aevent);
	shmq_barrier_close(abarrier);
	shmq_array_close(aarray);
	if (shmq_heap_close(h) != 0)
		__builtin_trap();
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	static const uint64_t max_sizes[4] = { 1ull << 20, 2ull << 20, 4ull << 20, SMALL_MAX };
	struct input in = { data, size };
	unsigned g = u8(&in), pre = u8(&in);
	memset(&f, 0, sizeof(f));
	f.salt = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < size; i++)
		f.salt = (f.salt ^ data[i]) * 0x100000001b3ull;
	f.fd = build(strict && (g & 3) == 3 ? 1ull << 30 : max_sizes[g & 3], pre);
	struct stat st;
	if (f.fd < 0 || fstat(f.fd, &st) < 0) {
		if (f.fd >= 0)
			close(f.fd);
		return 0;
	}
	/* Past any 32-bit token: this fd never passes for a participant's. */
	lseek(f.fd, (off_t)(1ull << 33) + (off_t)(f.salt & 0xffff), SEEK_SET);
	f.size = (size_t)st.st_size;
	f.seg = mmap(NULL, f.size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
	if (f.seg == MAP_FAILED) {
		close(f.fd);
		return 0;
	}
	f.g = hdr(&f)->geom;
	f.fix_sum = g & 4;
	f.our_slot = -1;
	collect(&f);
	for (int i = 0; i < MAX_OPS && in.n; i++)
		one_op(&f, &in);
	if (f.h) {
		align_blocks(&f);
		close_all(&f);
		checked(&f);
		EXPECT(shmq_heap_close(f.h) == 0);
	}
	munmap(f.seg, f.size);
	close(f.fd);
	return 0;
}

/* ------------------------------------------------------------ seed corpus -- */

/* Op numbers of one_op, for the seeds. */
enum { OP_PATCH_HDR, OP_PATCH_PARTS, OP_PATCH_ARENA, OP_PATCH_END, OP_HDR_WORD, OP_OBJ_WORD,
       OP_FORGE_OBJ, OP_FORGE_BLOCK, OP_OPEN, OP_CREATE = 10, OP_CLOSE, OP_USE, OP_STAT = 15,
       OP_REMOVE, OP_CHECK, OP_RAW, OP_SECOND, OP_REOPEN, OP_FORGE_OPEN };

/* Open names 0 .. n-1 as their kinds (the heap is open already), then use
 * each handle in several ways. */
static void seed_tour(struct seed *s, unsigned n)
{
	for (unsigned i = 0; i < n && i < NNAMES; i++)
		emit(s, 3, OP_OPEN, 0, i);
	for (unsigned k = 0; k < 3 * n; k++)
		emit(s, 3, OP_USE, k % n, (k * 37 + k / n) % 256 & ~0xc0);
}

static void write_seeds(const char *dir)
{
	struct seed s = { .n = 0 };
	/* 1: a clean heap, every named object opened and used, stat, check,
	 * remove. The first call (stat) opens the heap: flags byte 0. */
	emit(&s, 2, 0, 0);
	emit(&s, 2, OP_STAT, 0);
	seed_tour(&s, 10);
	emit(&s, 4, OP_CHECK, OP_STAT, OP_REMOVE, 8);
	write_seed(dir, "tour", &s);

	/* 2: a creator that died holding a Lock, an RLock, UNDO units and
	 * anonymous objects (held by a dead slot); stat reaps it, acquires
	 * take over; objects of every kind created anonymously and named. */
	s.n = 0;
	emit(&s, 2, 2, 0xff);
	emit(&s, 2, OP_STAT, 0);
	seed_tour(&s, 16);
	emit(&s, 3, OP_CREATE, 0, 1);           /* anonymous RLock */
	emit(&s, 4, OP_CREATE, 1 | 8, 18, 0x33); /* "new": UNDO sem, value 3, max 3 */
	emit(&s, 4, OP_CREATE, 2, 1, 0);        /* cond over handle 0 */
	emit(&s, 3, OP_CREATE, 3, 0);           /* event */
	emit(&s, 3, OP_CREATE, 4, 3);           /* barrier of 4 */
	emit(&s, 5, OP_CREATE, 5, 0, 0x40, 0);  /* array of 65 bytes */
	emit(&s, 4, OP_CLOSE, 3, OP_CHECK, OP_STAT);
	write_seed(dir, "dead-creator", &s);

	/* 3: raw blocks on the free lists, allocations and frees, a second
	 * handle, a reopen. */
	s.n = 0;
	emit(&s, 2, 1, 16 | 8);
	emit(&s, 4, OP_RAW, 0, 0, 40); /* (flags byte, then a = 0: 41 bytes) */
	emit(&s, 4, OP_RAW, 2, 0, 0x10);
	emit(&s, 3, OP_RAW, 0, 200);
	emit(&s, 3, OP_RAW, 1, 0);
	emit(&s, 4, OP_SECOND, 0, 4, OP_CHECK);
	seed_tour(&s, 6);
	emit(&s, 4, OP_REOPEN, 0, OP_STAT, OP_CHECK);
	seed_tour(&s, 3);
	write_seed(dir, "alloc-reopen", &s);

	/* 4: the largest heap (8 MiB), checksum fixed; an object forged near the end of the
	 * file (a Lock of 16 bytes, "lock", first in its chain), opened and
	 * used; patched header and object words. */
	s.n = 0;
	emit(&s, 2, 3 | 4, 1 | 4 | 64);
	emit(&s, 7, OP_FORGE_OBJ, 0, 9, 0, 0, 64 | 16, 7);
	emit(&s, 4, OP_OPEN, 0, 0, 0);
	emit(&s, 3, OP_USE, 0, 0);
	emit(&s, 1, OP_STAT);
	emit(&s, 7, OP_FORGE_OPEN, 0, 9, 6, 3, 64 | 8, 7); /* an event "event", opened */
	emit(&s, 3, OP_USE, 1, 0);
	emit(&s, 5, OP_OBJ_WORD, 2, 7, 2, 3); /* an object's next: another object */
	emit(&s, 4, OP_HDR_WORD, 3, 1, 2);    /* intent op LINK */
	emit(&s, 2, OP_CHECK, OP_STAT);
	write_seed(dir, "forged", &s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	struct rlimit rl = { FILE_LIMIT, FILE_LIMIT };
	setrlimit(RLIMIT_FSIZE, &rl);
	signal(SIGXFSZ, SIG_IGN); /* past the limit: EFBIG, which the heap maps to -ENOSPC */
	for (dead_pid = (pid_t)PID_MASK; pid_exists(dead_pid); dead_pid--)
		;
	trace = getenv("FUZZ_HEAP_TRACE") != NULL;
	strict = getenv("FUZZ_HEAP_LENIENT") == NULL;
	const char *dir = getenv("FUZZ_HEAP_WRITE_SEEDS");
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}
