/* libFuzzer target: CSP channels (shmq/chan.h) in a heap whose bytes the
 * fuzzer overwrites, holding the records of processes that died blocked in
 * shmq_alt, used as a process uses them.
 *
 * Templates: at start-up this process builds four heaps (1 or 2 MiB)
 * through the API: rendezvous channels "r0" and "r1", buffered ones "b1"
 * and "b3" (full) and "e2" (empty), an anonymous one of 4 slots (half full,
 * or full), messages of each template's sizes (0 bytes to 60 KiB), ends of
 * every role (one of them held twice, two retired, one of no role) and a
 * lock "lk" (a name of another kind). Then it forks children that block in
 * shmq_alt (up to 8 read and write guards over several channels, a channel
 * in two guards) or in a plain read or write, waits until each one's offers
 * are linked and it sleeps (polling the lists through chan.c's layout), and
 * SIGKILLs and reaps it: in one template the first child is stopped first
 * and one of its guards fired by a read (a record fired, its other offers
 * still listed), in another a later child's read meets the first one's
 * offer (abandoned, its other offers still listed). The creator's handles
 * are closed then: the ends live on, held by the dead. Each input copies a
 * template's bytes into a fresh memfd (no fork per input: that is what keeps
 * it fast) and opens it, with the last sweep's time set to now (the dead are
 * reaped when an input asks: shmq_heap_stat, or a forged early sweep) or to
 * 0 (the first open, create, close or remove reaps them).
 *
 * Then it builds more through the API: up to 4 channels (buffers of 0 to
 * 64 slots, or too large for the heap), named or anonymous, holding up to
 * 12 messages of 0 bytes to 60 KiB; up to 7 ends of any role on any
 * channel, some held twice (shmq_chan_end_open), some retired. Then a little
 * program: patch bytes of any block of the arena (channel payloads, waiter
 * records and their offers, message blocks, ends, object headers) or of any
 * arena offset; store chosen words into blocks, into channel payloads (lock,
 * intent, flags, counts, buffer word, list heads and tails, slots) and into
 * the dead's records (state, owner, counts, each offer's link, record,
 * channel, flag, guard, op, message, result, capacity): offsets of blocks,
 * channels, ends, records, offers and messages, 0, ~0, edge values,
 * lock-like words, waiter states, buffer words, the word's own value nudged;
 * forge what a death leaves (a lock word of a holder that is gone, an intent
 * to redo: roles, or a promotion whose writer's record fired, a stale tail),
 * or a dead record waiting again as if this process owned it (a partner
 * that looks alive: committed, handed blocks, failed by retire and poison);
 * and run the operations: reads with buffers of every size, writes of 0
 * bytes to 60 KiB (and of 3 MiB, more than any heap here holds, and of
 * SHMQ_CHAN_MSG_MAX + 1), shmq_alt over 1 to 8 mixed guards with
 * SHMQ_ALT_PRI and SHMQ_ALT_FAIR, all with timeout 0 or 1 to 200 us, and
 * alternations with a live partner (a helper thread that reads or writes
 * once the alternation's offers are linked: a wait fired, a message handed
 * over or promoted into a buffer, or, if it matches nothing, the wait closed
 * as its timeout would);
 * retire, poison, open by name (also an end's name, the lock's, a missing
 * one, an empty one), end_open (also a channel's name), close, create
 * (named, anonymous, a name in use, buffers too large), remove,
 * roles/buffer/name/end_name, the -EINVAL cases (NULLs, bad roles, ops,
 * flags and guard counts, a guard on a channel of another heap),
 * shmq_heap_stat (which reaps the dead: their ends retire, their records
 * are abandoned).
 *
 * Properties: never a crash, a sanitizer report or a hang (run it with
 * -timeout); every result one chan.h documents for the call: a read's
 * length, and a fired read guard's, within its buffer; nothing copied into a
 * buffer on an error, nor into a guard that did not fire, whose result stays
 * untouched; -EAGAIN only with timeout 0, -ETIMEDOUT only with a timeout;
 * -EINVAL exactly for bad arguments. Until the first patch, every result
 * must be what a model predicts: each channel's buffered messages (FIFO,
 * exact bytes; -EMSGSIZE leaves the message), its flags and role counts,
 * each end's roles and life (the last holder gone, its roles retire; an
 * anonymous channel is freed with its last end; the dead hold theirs until
 * reaped), -EAGAIN or -ETIMEDOUT where nothing is ready (the dead are never
 * a partner: their offers are withdrawn when met), -EPIPE, -ECANCELED and
 * -EBADF by the rules of chan.h, which guard fires (SHMQ_ALT_FAIR's rotation
 * mirrored), what a partner's call gives and fires (or, after a stall of 5
 * ms, what it gives once the alternation timed out), -ENOSPC only where a
 * call allocates and nothing changed then;
 * after each call the channels' and ends' words in the heap must say what
 * the model says (flags, counts, buffered count, roles, which objects still
 * exist); at the end heap_check() must pass.
 *
 * Not fuzzed (a hang by design): a lock word naming the live process
 * itself. As in fuzz_dict, free participant slots get generations drawn from
 * a hash of the input before the open, so this process's owner tag cannot
 * be written by the input. The participant table, the pins and the heap
 * header are not patched (fuzz_heap covers them), but for the last sweep's
 * time, which an input may clear.
 *
 * FUZZ_CHAN_TRACE=1 prints what each step did; FUZZ_CHAN_WRITE_SEEDS=DIR
 * writes the seed corpus (tests/fuzz/corpus-chan) into DIR and exits.
 * tests/torture/README.md says how to build and run it. */
#include <shmq.h>
#include "heap.h" /* the arena's layout: blocks, objects; the participant table; heap_check */
#include "wait.h" /* wait_now(): the clock of the last sweep */

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fuzz_common.h" /* struct input, u8() .. u64(), mix() */
#include "fuzz_arena.h"  /* struct blk, class_size, arena_blocks, arena_word */

#define MAX_OPS 96
#define MAX_BLOCKS 4096
#define MAX_CH 32   /* channels the model follows */
#define MAX_END 64  /* ends */
#define MAX_H 24    /* handles held at once */
#define MAX_HOT 256 /* offsets worth storing */
#define MAX_REC 32  /* records of the dead */
#define MAXQ 64     /* buffered messages the model follows per channel */
#define MAX_G 8     /* guards of an alternation */
#define NT 4        /* templates */
#define NKIDS 4     /* dead children per template, at most */
#define BUF (64u << 10)
#define BIG (3u << 20) /* a message no heap here holds */
#define PID_MASK ((1ull << 22) - 1) /* part.c */
#define WIDE_GEN_MASK ((1u << 20) - 1)
#define NOT_READY INT64_MIN
#define SENTINEL ((ssize_t)0x5a5a5a5a)

/* chan.c's layout, checked at start-up against channels made through the
 * API (a change there stops this target with a message, not with findings).
 * The channel's payload: magic, buffer, pad, lock (struct mutex: word,
 * thread, count, flags), intent, flags, readers, writers, pad, buffer word,
 * rq (head, tail), wq (head, tail), slots. */
#define CHAN_MAGIC 0x4e414843514d4853ull
#define END_MAGIC 0x444e4543514d4853ull
enum { C_BUFFER = 8, C_LOCK = 16, C_INTENT = 32, C_FLAGS = 96, C_READERS = 100, C_WRITERS = 104,
       C_BUF = 112, C_RQ = 120, C_WQ = 136, C_SLOTS = 152 };
/* struct chan_intent, from C_INTENT */
enum { I_OP = 0, I_GUARD = 4, I_WAITER = 8, I_MSG = 16, I_SLOT = 24, I_BUF_AFTER = 32, I_END = 40,
       I_END_ROLES = 48, I_READERS = 52, I_WRITERS = 56, I_FLAGS = 60 };
/* struct chan_waiter, then n struct chan_offer (64 bytes or more: learnt
 * from the dead's records, see learn_offer_size), then maybe more */
enum { W_STATE = 0, W_OWNER = 4, W_N = 8, W_LINKED = 12, W_OFFERS = 16 };
static uint64_t offer_size = 64;
enum { O_NEXT = 0, O_WAITER = 8, O_CHAN = 16, O_LINKED = 24, O_GUARD = 28, O_OP = 32, O_MSG = 40,
       O_RESULT = 48, O_CAP = 56 };
enum { ST_PARKED = 1u, ST_WAITING = 0x10000000u, ST_FIRED = 0x20000000u, ST_CLOSED = 0x40000000u,
       ST_ABANDONED = 0x80000000u };
enum { F_POISONED = 1, F_NO_READERS = 2, F_NO_WRITERS = 4 };
enum { INTENT_ROLES = 1, INTENT_PROMOTE = 2 };
#define PAYLOAD(obj) ((obj) + sizeof(struct heap_obj))

/* ----------------------------------------------------------------- input -- */

static bool trace;
#define TRACE(...)                                    \
	do {                                          \
		if (trace)                            \
			fprintf(stderr, __VA_ARGS__); \
	} while (0)

/* A result the API rules out: a finding, not a crash of the harness. */
#define EXPECT(cond)                                                                 \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz_chan: %s:%d: expected %s\n", __FILE__, \
				__LINE__, #cond);                                    \
			__builtin_trap();                                            \
		}                                                                    \
	} while (0)

/* The harness itself cannot go on (start-up). */
static void die(const char *what, long r)
{
	fprintf(stderr, "fuzz_chan: %s (%ld)\n", what, r);
	abort();
}

/* Is r one of the n values that follow? */
static bool one_of(long r, int n, ...)
{
	va_list ap;
	va_start(ap, n);
	bool ok = false;
	for (int i = 0; i < n && !ok; i++)
		ok = r == va_arg(ap, int);
	va_end(ap);
	return ok;
}

/* ------------------------------------------------------------------ state -- */

struct msg {
	uint8_t seed;
	uint32_t len;
};

/* The model of a channel. */
struct mchan {
	char name[SHMQ_NAME_MAX];
	uint64_t obj;   /* its object's offset */
	uint32_t buffer;
	bool anon, removed, freed;
	uint32_t flags, readers, writers;
	uint32_t dead;  /* dead children that hold it (bits) */
	struct msg q[MAXQ];
	unsigned qn;
};

/* The model of an end. ch: its channel, -1 if the model does not know it
 * (opened once patched). */
struct mend {
	int ch;
	char name[SHMQ_NAME_MAX];
	uint64_t obj;
	uint32_t roles;
	uint32_t dead;
	unsigned handles; /* ours */
	bool removed, freed;
};

struct hnd {
	shmq_chan *c; /* NULL: a free slot */
	int end;
	int opened;   /* the end's roles when this handle opened it (-EBADF) */
};


/* A template: the bytes of the heap, its model and its dead. */
struct tmpl {
	unsigned char *bytes;
	size_t len;        /* bytes copied (up to brk) */
	size_t size;       /* the file's size */
	uint64_t max_size;
	struct mchan ch[8];
	unsigned nch;
	struct mend end[16];
	unsigned nend;
	unsigned nkids;
	int kid_slot[NKIDS];
	uint64_t kid_id[NKIDS];
};

struct fz {
	unsigned char *seg; /* the file, mapped (max_size) for patching and looking */
	size_t size;        /* the file's size as last seen */
	uint64_t map_size;
	struct heap_geom g;
	int fd;
	uint64_t salt;
	shmq_heap *h;
	bool clean; /* no byte patched yet: results must match the model */
	struct mchan ch[MAX_CH];
	unsigned nch;
	struct mend end[MAX_END];
	unsigned nend;
	bool lk_removed;
	struct hnd hd[MAX_H];
	unsigned nkids;
	int kid_slot[NKIDS];
	uint64_t kid_id[NKIDS];
	uint32_t reaped; /* dead children seen reaped (bits) */
	struct blk blocks[MAX_BLOCKS];
	unsigned nblocks;
	uint64_t hot[MAX_HOT]; /* channels, payloads, ends, records, offers, messages */
	unsigned nhot;
	uint64_t recs[MAX_REC]; /* records met in the lists at the start */
	unsigned nrec;
};

static struct fz F;
static struct tmpl tmpls[NT];
static uint8_t rb[MAX_G][BUF + 64], wb[MAX_G][BUF + 64], want[BUF + 64], want_h[BUF + 64];
static uint8_t big[BIG];
/* chan.c's SHMQ_ALT_FAIR rotation (the guard its last fair call on this
 * thread fired), mirrored. */
static unsigned fair = UINT_MAX;
/* A channel of another heap: a guard on it makes shmq_alt -EINVAL. */
static shmq_heap *other_heap;
static shmq_chan *other_chan;

static struct heap_hdr *hdr(struct fz *f)
{
	return (struct heap_hdr *)f->seg;
}

static struct seg_part *parts(struct fz *f)
{
	return (struct seg_part *)(f->seg + f->g.parts_off);
}

/* Are len bytes at off inside the arena and the file (it may have grown)? */
static bool in_seg(struct fz *f, uint64_t off, uint64_t len)
{
	if (off < f->g.arena_off || off > f->map_size || len > f->map_size - off)
		return false;
	if (off + len > f->size) {
		struct stat st;
		if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size <= f->map_size)
			f->size = (size_t)st.st_size;
	}
	return off + len <= f->size;
}

static uint64_t ld64(struct fz *f, uint64_t off)
{
	return off % 8 == 0 && in_seg(f, off, 8)
		       ? __atomic_load_n((uint64_t *)(f->seg + off), __ATOMIC_ACQUIRE)
		       : 0;
}

static uint32_t ld32(struct fz *f, uint64_t off)
{
	return off % 4 == 0 && in_seg(f, off, 4)
		       ? __atomic_load_n((uint32_t *)(f->seg + off), __ATOMIC_ACQUIRE)
		       : 0;
}

static void st64(struct fz *f, uint64_t off, uint64_t v)
{
	if (off % 8 == 0 && in_seg(f, off, 8))
		__atomic_store_n((uint64_t *)(f->seg + off), v, __ATOMIC_RELEASE);
}

static void st32(struct fz *f, uint64_t off, uint32_t v)
{
	if (off % 4 == 0 && in_seg(f, off, 4))
		__atomic_store_n((uint32_t *)(f->seg + off), v, __ATOMIC_RELEASE);
}

static unsigned bucket_of(const char *name) /* as heap.c */
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % HEAP_BUCKETS;
}

/* The live (not removed) object named name, by the directory; 0 if none. */
static uint64_t obj_by_name(struct fz *f, const char *name)
{
	if (!*name)
		return 0;
	uint64_t off = atomic_load(&hdr(f)->buckets[bucket_of(name)]);
	for (int steps = 0; off && steps < 256; steps++) {
		if (off % HEAP_OBJ_ALIGN || !in_seg(f, off, sizeof(struct heap_obj)))
			return 0;
		struct heap_obj *o = (struct heap_obj *)(f->seg + off);
		if (o->magic == OBJ_MAGIC && !(atomic_load(&o->flags) & OBJ_REMOVED) &&
		    strncmp(o->name, name, SHMQ_NAME_MAX) == 0)
			return off;
		off = atomic_load(&o->next);
	}
	return 0;
}


/* The blocks carved so far, from the arena's start to brk (before any
 * patch: the header is never patched, but a block's class may be). */
static void collect(struct fz *f)
{
	in_seg(f, f->g.arena_off, 0);
	f->nblocks = arena_blocks(f->seg, f->size, f->g.arena_off, atomic_load(&hdr(f)->brk),
				  f->blocks, MAX_BLOCKS);
}

static void hot_add(struct fz *f, uint64_t off)
{
	if (!off || f->nhot == MAX_HOT)
		return;
	for (unsigned i = 0; i < f->nhot; i++)
		if (f->hot[i] == off)
			return;
	f->hot[f->nhot++] = off;
}

/* Offsets worth storing, and the records of the dead, as built. */
static void collect_hot(struct fz *f)
{
	f->nhot = f->nrec = 0;
	for (unsigned i = 0; i < f->nch; i++) {
		struct mchan *c = &f->ch[i];
		if (c->freed || !c->obj)
			continue;
		uint64_t p = PAYLOAD(c->obj);
		hot_add(f, c->obj);
		hot_add(f, p);
		for (uint32_t s = 0; s < c->buffer && s < 16; s++)
			hot_add(f, ld64(f, p + C_SLOTS + 8 * s));
		for (uint64_t l = C_RQ; l <= C_WQ; l += C_WQ - C_RQ) {
			uint64_t cur = ld64(f, p + l);
			for (int steps = 0; cur && steps < 64; steps++) {
				hot_add(f, cur);
				hot_add(f, ld64(f, cur + O_MSG));
				uint64_t rec = ld64(f, cur + O_WAITER);
				unsigned k = 0;
				while (k < f->nrec && f->recs[k] != rec)
					k++;
				if (k == f->nrec && f->nrec < MAX_REC && rec)
					f->recs[f->nrec++] = rec;
				cur = ld64(f, cur + O_NEXT);
			}
		}
	}
	for (unsigned i = 0; i < f->nend; i++)
		if (!f->end[i].freed && f->end[i].obj) {
			hot_add(f, f->end[i].obj);
			hot_add(f, PAYLOAD(f->end[i].obj));
		}
	for (unsigned i = 0; i < f->nrec; i++) {
		hot_add(f, f->recs[i]);
		uint32_t n = ld32(f, f->recs[i] + W_N);
		for (uint32_t g = 0; g < n && g < MAX_G; g++)
			hot_add(f, f->recs[i] + W_OFFERS + offer_size * g);
	}
}

/* ----------------------------------------------------------------- model -- */

static void dirty(struct fz *f, const char *why)
{
	if (f->clean)
		TRACE("  (from here on: no model: %s)\n", why);
	f->clean = false;
}

/* chan.c's set_roles. */
static void m_set_roles(struct fz *f, struct mend *e, uint32_t roles)
{
	if (e->ch < 0) {
		e->roles = roles;
		return;
	}
	struct mchan *c = &f->ch[e->ch];
	uint32_t old = e->roles;
	c->readers += (roles & SHMQ_RD ? 1u : 0u) - (old & SHMQ_RD ? 1u : 0u);
	c->writers += (roles & SHMQ_WR ? 1u : 0u) - (old & SHMQ_WR ? 1u : 0u);
	if (old & SHMQ_RD && c->readers == 0)
		c->flags |= F_NO_READERS;
	if (old & SHMQ_WR && c->writers == 0)
		c->flags |= F_NO_WRITERS;
	e->roles = roles;
}

/* A nameless or removed channel is freed once no end links it and no dead
 * child holds it (our handles hold their ends). */
static void m_chan_free_check(struct fz *f, int ci)
{
	if (ci < 0)
		return;
	struct mchan *c = &f->ch[ci];
	if (c->freed || !(c->anon || c->removed) || c->dead)
		return;
	for (unsigned i = 0; i < f->nend; i++)
		if (!f->end[i].freed && f->end[i].ch == ci)
			return;
	TRACE("  (channel %s freed)\n", c->name);
	c->freed = true;
}

/* An end nobody holds is freed: its roles retire (end_destroy). */
static void m_end_free_check(struct fz *f, int ei)
{
	struct mend *e = &f->end[ei];
	if (e->freed || e->handles || e->dead)
		return;
	TRACE("  (end %s freed)\n", e->name);
	e->freed = true;
	if (e->roles)
		m_set_roles(f, e, 0);
	m_chan_free_check(f, e->ch);
}

static void m_reap(struct fz *f, unsigned k)
{
	uint32_t bit = 1u << k;
	for (unsigned i = 0; i < f->nend; i++)
		if (f->end[i].dead & bit) {
			f->end[i].dead &= ~bit;
			m_end_free_check(f, (int)i);
		}
	for (unsigned i = 0; i < f->nch; i++)
		if (f->ch[i].dead & bit) {
			f->ch[i].dead &= ~bit;
			m_chan_free_check(f, (int)i);
		}
}

/* Were dead children reaped (by a sweep, a stat) since the last look? Their
 * holds end: the model follows. */
static bool reap_seen(struct fz *f)
{
	bool any = false;
	for (unsigned k = 0; k < f->nkids; k++) {
		if (f->reaped & 1u << k ||
		    atomic_load(&parts(f)[f->kid_slot[k]].id) == f->kid_id[k])
			continue;
		f->reaped |= 1u << k;
		any = true;
		TRACE("  (dead child %u reaped)\n", k);
		m_reap(f, k);
	}
	return any;
}

enum { K_NONE, K_CHAN, K_END, K_LOCK, K_BAD };

/* What the model says name is. */
static int m_lookup(struct fz *f, const char *name, int *idx)
{
	size_t n = strnlen(name, SHMQ_NAME_MAX);
	*idx = -1;
	if (n == 0 || n >= SHMQ_NAME_MAX)
		return K_BAD;
	for (int i = (int)f->nch - 1; i >= 0; i--)
		if (!f->ch[i].removed && !f->ch[i].freed && strcmp(f->ch[i].name, name) == 0) {
			*idx = i;
			return K_CHAN;
		}
	for (unsigned i = 0; i < f->nend; i++)
		if (!f->end[i].removed && !f->end[i].freed && strcmp(f->end[i].name, name) == 0) {
			*idx = (int)i;
			return K_END;
		}
	return !f->lk_removed && strcmp(name, "lk") == 0 ? K_LOCK : K_NONE;
}

/* A freed object's name now another's (a name is free again once its
 * object is freed). */
static bool m_named_again(struct fz *f, const char *name, bool freed)
{
	int idx;
	return freed && m_lookup(f, name, &idx) != K_NONE;
}

/* The heap's words say what the model says. */
static void m_verify(struct fz *f)
{
	if (!f->clean)
		return;
	for (unsigned i = 0; i < f->nch; i++) {
		struct mchan *c = &f->ch[i];
		if (!c->removed && !m_named_again(f, c->name, c->freed)) {
			uint64_t found = obj_by_name(f, c->name);
			if (!found != c->freed)
				TRACE("  channel %s: %s in the heap, %s in the model\n", c->name,
				      found ? "there" : "gone", c->freed ? "gone" : "there");
			EXPECT(!found == c->freed);
			EXPECT(c->freed || found == c->obj);
		}
		if (c->freed)
			continue;
		uint64_t p = PAYLOAD(c->obj);
		uint32_t flags = ld32(f, p + C_FLAGS), rd = ld32(f, p + C_READERS),
			 wr = ld32(f, p + C_WRITERS), n = (uint32_t)ld64(f, p + C_BUF);
		if (flags != c->flags || rd != c->readers || wr != c->writers || n != c->qn)
			TRACE("  channel %s: flags %u readers %u writers %u buffered %u; model %u %u %u %u\n",
			      c->name, flags, rd, wr, n, c->flags, c->readers, c->writers, c->qn);
		EXPECT(flags == c->flags && rd == c->readers && wr == c->writers && n == c->qn);
	}
	for (unsigned i = 0; i < f->nend; i++) {
		struct mend *e = &f->end[i];
		if (!e->removed && !m_named_again(f, e->name, e->freed)) {
			uint64_t found = obj_by_name(f, e->name);
			if (!found != e->freed)
				TRACE("  end %s: %s in the heap, %s in the model\n", e->name,
				      found ? "there" : "gone", e->freed ? "gone" : "there");
			EXPECT(!found == e->freed);
		}
		if (!e->freed) {
			uint32_t roles = ld32(f, PAYLOAD(e->obj) + 8);
			if (roles != e->roles)
				TRACE("  end %s: roles %u, model %u\n", e->name, roles, e->roles);
			EXPECT(roles == e->roles);
		}
	}
}

/* ------------------------------------------------------------- messages -- */

static void val_bytes(uint8_t seed, uint32_t len, uint8_t *buf)
{
	for (uint32_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(seed * 131u + i * 7u + len);
}

static const void *msg_bytes(uint8_t seed, uint32_t len, uint8_t *buf)
{
	if (len > BUF)
		return big; /* never read beyond what a heap can hold */
	val_bytes(seed, len, buf);
	return buf;
}

/* A message's seed and length: mostly short, up to 60 KiB; 3 MiB (no heap
 * here holds it: -ENOSPC) or SHMQ_CHAN_MSG_MAX + 1 (-EMSGSIZE). */
static void msg_of(struct input *in, uint8_t *seed, uint32_t *len)
{
	unsigned s = u8(in), l = u8(in);
	*seed = (uint8_t)s;
	if (l == 0xff)
		*len = s & 1 ? SHMQ_CHAN_MSG_MAX + 1 : BIG;
	else
		*len = l & 0x80 ? (l & 0x40 ? u16(in) % 61440 : (l & 0x3f) * 64 + u8(in)) : l & 0x7f;
}

static size_t cap_of(struct input *in)
{
	unsigned c = u8(in);
	return c < 200 ? BUF : c < 230 ? c - 200 : (size_t)u16(in) % BUF;
}

static int64_t timeout_of(struct input *in)
{
	unsigned c = u8(in);
	return c < 192 ? 0 : c < 250 ? (int64_t)(c - 191) * 1000 : 200 * 1000;
}

/* ----------------------------------------------------------- the guards -- */

struct gspec {
	int h;      /* handle */
	int op;
	uint8_t seed;
	uint32_t len; /* write */
	size_t cap;   /* read */
};

/* chan.c's try_guard by the model: NOT_READY or the guard's result; apply:
 * its effect too. *passes: its end let it through (end_error). */
static int64_t m_guard(struct fz *f, const struct gspec *g, bool apply, bool *passes)
{
	struct hnd *hd = &f->hd[g->h];
	struct mend *e = &f->end[hd->end];
	struct mchan *c = &f->ch[e->ch];
	int need = g->op == SHMQ_GUARD_READ ? SHMQ_RD : SHMQ_WR;
	*passes = false;
	if (c->flags & F_POISONED)
		return -ECANCELED;
	if (!(hd->opened & need))
		return -EBADF;
	if (!(e->roles & (uint32_t)need) ||
	    c->flags & (need == SHMQ_RD ? F_NO_READERS : F_NO_READERS | F_NO_WRITERS))
		return -EPIPE;
	*passes = true;
	if (need == SHMQ_RD) {
		if (c->buffer && c->qn) {
			if (c->q[0].len > g->cap)
				return -EMSGSIZE;
			int64_t len = c->q[0].len;
			if (apply)
				memmove(c->q, c->q + 1, --c->qn * sizeof(c->q[0]));
			return len;
		}
		return c->flags & F_NO_WRITERS ? -EPIPE : NOT_READY;
	}
	if (g->len > SHMQ_CHAN_MSG_MAX)
		return -EMSGSIZE;
	if (c->qn < c->buffer) {
		if (apply) {
			if (c->qn == MAXQ)
				dirty(f, "a buffer longer than the model follows");
			else
				c->q[c->qn++] = (struct msg){ g->seed, g->len };
		}
		return 0;
	}
	return NOT_READY;
}

/* The model's view of an alternation that returned ret (the guards' results
 * in res), given the rotation before it. */
static void m_alt(struct fz *f, const struct gspec *gs, unsigned n, int flags, int64_t tmo, int ret,
		  const ssize_t *res, unsigned fair_before)
{
	if (!f->clean)
		return;
	for (unsigned i = 0; i < n; i++)
		if (f->end[f->hd[gs[i].h].end].ch < 0)
			return; /* a channel the model does not know */
	unsigned start = flags == SHMQ_ALT_FAIR && fair_before < n ? (fair_before + 1) % n : 0;
	for (unsigned k = 0; k < n; k++) {
		unsigned i = (start + k) % n;
		bool passes;
		int64_t r = m_guard(f, &gs[i], false, &passes);
		if (ret >= 0 && (unsigned)ret == i) {
			/* A write guard's message found no room in the heap. */
			if (res[i] == -ENOSPC && gs[i].op == SHMQ_GUARD_WRITE && passes)
				return;
			if (r == NOT_READY || res[i] != r)
				TRACE("  model: guard %u gives %lld, not %zd\n", i,
				      (long long)(r == NOT_READY ? 1 : r), res[i]);
			EXPECT(r != NOT_READY && res[i] == r);
			if (r >= 0 && gs[i].op == SHMQ_GUARD_READ) {
				struct mchan *c = &f->ch[f->end[f->hd[gs[i].h].end].ch];
				val_bytes(c->q[0].seed, c->q[0].len, want);
				EXPECT(memcmp(rb[i], want, c->q[0].len) == 0);
			}
			m_guard(f, &gs[i], true, &passes);
			return;
		}
		if (r != NOT_READY)
			TRACE("  model: guard %u is ready (%lld)\n", i, (long long)r);
		EXPECT(r == NOT_READY);
	}
	EXPECT(ret < 0);
	EXPECT(tmo == 0 ? ret == -EAGAIN : (ret == -ETIMEDOUT || ret == -ENOSPC));
}

/* What a fired guard may hold, as chan.h documents it. */
static bool guard_result_ok(const struct shmq_guard *g)
{
	if (g->op == SHMQ_GUARD_READ)
		return g->result >= 0 ? (size_t)g->result <= g->rcap
				      : one_of(g->result, 5, -EPIPE, -ECANCELED, -EBADF, -EMSGSIZE, -EPROTO);
	return one_of(g->result, 7, 0, -EPIPE, -ECANCELED, -EBADF, -EMSGSIZE, -ENOSPC, -EPROTO);
}

/* The guards of gs, into g: read buffers filled with 0xa5 (a guard that did
 * not fire must leave them so), write buffers with each spec's message. */
static void guards_of(struct fz *f, const struct gspec *gs, unsigned n, struct shmq_guard *g)
{
	for (unsigned i = 0; i < n; i++) {
		const struct gspec *s = &gs[i];
		g[i] = (struct shmq_guard){ .chan = f->hd[s->h].c, .op = s->op, .result = SENTINEL };
		if (s->op == SHMQ_GUARD_READ) {
			memset(rb[i], 0xa5, 64);
			g[i].rbuf = rb[i];
			g[i].rcap = s->cap;
		} else {
			g[i].wbuf = msg_bytes(s->seed, s->len, wb[i]);
			g[i].wlen = s->len;
		}
	}
}

/* shmq_alt over gs, checked. */
static int do_alt(struct fz *f, const struct gspec *gs, unsigned n, int flags, int64_t tmo)
{
	struct shmq_guard g[MAX_G];
	guards_of(f, gs, n, g);
	unsigned fair_before = fair;
	int ret = shmq_alt(g, n, flags, tmo);
	if (flags == SHMQ_ALT_FAIR && ret >= 0)
		fair = (unsigned)ret;
	if (trace) {
		fprintf(stderr, "  alt %s of %u, timeout %lld:", flags ? "fair" : "pri", n, (long long)tmo);
		for (unsigned i = 0; i < n; i++)
			fprintf(stderr, " %s h%d %u", gs[i].op == SHMQ_GUARD_READ ? "r" : "w", gs[i].h,
				gs[i].op == SHMQ_GUARD_READ ? (unsigned)gs[i].cap : gs[i].len);
		fprintf(stderr, ": %d (%zd)\n", ret, ret >= 0 && ret < (int)n ? g[ret].result : 0);
	}
	if (ret >= 0) {
		EXPECT((unsigned)ret < n);
		EXPECT(guard_result_ok(&g[ret]));
	} else {
		EXPECT(one_of(ret, 4, -EAGAIN, -ETIMEDOUT, -ENOSPC, -EPROTO));
		EXPECT(tmo == 0 ? ret != -ETIMEDOUT : ret != -EAGAIN);
	}
	for (unsigned i = 0; i < n; i++) {
		if ((int)i == ret)
			continue;
		EXPECT(g[i].result == SENTINEL); /* untouched */
		if (g[i].op == SHMQ_GUARD_READ)
			for (int b = 0; b < 64; b++)
				EXPECT(rb[i][b] == 0xa5); /* nothing copied */
	}
	if (ret >= 0 && g[ret].op == SHMQ_GUARD_READ && g[ret].result < 0)
		for (int b = 0; b < 64; b++)
			EXPECT(rb[ret][b] == 0xa5);
	if (reap_seen(f))
		dirty(f, "a reap during a wait");
	ssize_t res[MAX_G];
	for (unsigned i = 0; i < n; i++)
		res[i] = g[i].result;
	m_alt(f, gs, n, flags, tmo, ret, res, fair_before);
	return ret;
}

/* ------------------------------------------------------------ handles -- */

static int free_slot(struct fz *f)
{
	for (int i = 0; i < MAX_H; i++)
		if (!f->hd[i].c)
			return i;
	return -1;
}

/* The model's entry for a new end of channel ci (-1: unknown) with roles. */
static int add_end(struct fz *f, shmq_chan *c, int ci, uint32_t roles)
{
	struct mend *e = &f->end[f->nend];
	*e = (struct mend){ .ch = ci };
	snprintf(e->name, sizeof(e->name), "%s", shmq_chan_end_name(c));
	e->obj = obj_by_name(f, e->name);
	m_set_roles(f, e, roles);
	return (int)f->nend++;
}

static void add_handle(struct fz *f, int slot, shmq_chan *c, int ei)
{
	f->hd[slot] = (struct hnd){ .c = c, .end = ei, .opened = (int)f->end[ei].roles };
	f->end[ei].handles++;
}

static int pick_h(struct fz *f, struct input *in)
{
	unsigned a = u8(in) % MAX_H;
	for (unsigned k = 0; k < MAX_H; k++)
		if (f->hd[(a + k) % MAX_H].c)
			return (int)((a + k) % MAX_H);
	return -1;
}

/* A name to open, create or remove: a channel's, an end's, the lock's, one
 * that does not exist, an empty one, or a name OP_CREATE makes. */
static void name_of(struct fz *f, struct input *in, char *name)
{
	unsigned a = u8(in), i = u8(in);
	switch (a % 8) {
	case 0:
	case 1:
	case 2:
		if (f->nch) {
			snprintf(name, SHMQ_NAME_MAX, "%s", f->ch[i % f->nch].name);
			return;
		}
		break;
	case 3:
	case 4:
		if (f->nend) {
			snprintf(name, SHMQ_NAME_MAX, "%s", f->end[i % f->nend].name);
			return;
		}
		break;
	case 5:
		strcpy(name, "lk");
		return;
	case 6:
		strcpy(name, a & 8 ? "" : "nope");
		return;
	}
	snprintf(name, SHMQ_NAME_MAX, "c%u", i % 16);
}

/* shmq_chan_create, checked; the new handle's slot in *slot. Returns the
 * result, 1 if not tried (no room in the model). */
static int do_create(struct fz *f, const char *name, uint32_t buffer, int *slot)
{
	*slot = free_slot(f);
	if (*slot < 0 || f->nch == MAX_CH || f->nend == MAX_END)
		return 1;
	bool existed = name && obj_by_name(f, name);
	shmq_chan *c = NULL;
	int r = shmq_chan_create(f->h, name, buffer, &c);
	TRACE("  create %s buffer %u: %d\n", name ? name : "(anonymous)", buffer, r);
	EXPECT(one_of(r, 6, 0, -EINVAL, -EEXIST, -ENOSPC, -ENOMEM, -EPROTO));
	reap_seen(f); /* a sweep comes first */
	if (f->clean) {
		int idx, k = name ? m_lookup(f, name, &idx) : K_NONE;
		int want_r = buffer > SHMQ_CHAN_BUFFER_MAX || k == K_BAD ? -EINVAL
			     : k != K_NONE			  ? -EEXIST
								  : 0;
		/* -ENOSPC also before -EEXIST: the heap allocates before it
		 * looks the name up. */
		EXPECT(r == want_r || (r == -ENOSPC && want_r != -EINVAL));
		/* A full heap changes nothing: no channel left behind. */
		uint64_t left = r == -ENOSPC && name && !existed ? obj_by_name(f, name) : 0;
		EXPECT(!left);
		if (left) {
			struct mchan *m = &f->ch[f->nch++];
			*m = (struct mchan){ .buffer = buffer, .obj = left };
			snprintf(m->name, sizeof(m->name), "%s", name);
		}
	}
	if (r)
		return r;
	struct mchan *m = &f->ch[f->nch];
	*m = (struct mchan){ .buffer = buffer, .anon = !name };
	snprintf(m->name, sizeof(m->name), "%s", shmq_chan_name(c));
	m->obj = obj_by_name(f, m->name);
	int ci = (int)f->nch++;
	add_handle(f, *slot, c, add_end(f, c, ci, SHMQ_RDWR));
	return 0;
}

/* shmq_chan_open, checked. */
static int do_open(struct fz *f, const char *name, int roles, int *slot)
{
	*slot = free_slot(f);
	if (*slot < 0 || f->nend == MAX_END)
		return 1;
	shmq_chan *c = NULL;
	int r = shmq_chan_open(f->h, name, roles, &c);
	TRACE("  open \"%s\" roles %d: %d\n", name, roles, r);
	EXPECT(one_of(r, 6, 0, -ENOENT, -EINVAL, -ENOSPC, -ENOMEM, -EPROTO));
	reap_seen(f);
	int idx, k = m_lookup(f, name, &idx);
	if (f->clean) {
		int want_r = roles & ~SHMQ_RDWR || k == K_BAD ? -EINVAL
			     : k == K_CHAN			? 0
			     : k == K_NONE			? -ENOENT
								: -EINVAL;
		EXPECT(r == want_r || (want_r == 0 && r == -ENOSPC));
	}
	if (r)
		return r;
	add_handle(f, *slot, c, add_end(f, c, k == K_CHAN ? idx : -1, (uint32_t)roles));
	return 0;
}

/* shmq_chan_end_open, checked. */
static int do_end_open(struct fz *f, const char *name, int *slot)
{
	*slot = free_slot(f);
	if (*slot < 0 || f->nend == MAX_END)
		return 1;
	shmq_chan *c = NULL;
	int r = shmq_chan_end_open(f->h, name, &c);
	TRACE("  end_open \"%s\": %d\n", name, r);
	EXPECT(one_of(r, 5, 0, -ENOENT, -EINVAL, -ENOMEM, -EPROTO));
	reap_seen(f);
	int idx, k = m_lookup(f, name, &idx);
	if (f->clean)
		EXPECT(r == (k == K_END ? 0 : k == K_NONE ? -ENOENT : -EINVAL));
	if (r)
		return r;
	if (k != K_END) { /* something the model did not know as an end */
		add_handle(f, *slot, c, add_end(f, c, -1, (uint32_t)shmq_chan_roles(c)));
		return 0;
	}
	add_handle(f, *slot, c, idx);
	return 0;
}

static void do_close(struct fz *f, int slot)
{
	int r = shmq_chan_close(f->hd[slot].c);
	TRACE("  close h%d (end %s): %d\n", slot, f->end[f->hd[slot].end].name, r);
	EXPECT(r == 0);
	reap_seen(f);
	int ei = f->hd[slot].end;
	f->hd[slot].c = NULL;
	f->end[ei].handles--;
	m_end_free_check(f, ei);
}

static void do_retire(struct fz *f, int slot, int roles)
{
	int r = shmq_chan_retire(f->hd[slot].c, roles);
	TRACE("  retire h%d roles %d: %d\n", slot, roles, r);
	bool bad = roles & ~SHMQ_RDWR || !roles;
	EXPECT(r == (bad ? -EINVAL : 0));
	if (reap_seen(f))
		dirty(f, "a reap in a retire");
	struct mend *e = &f->end[f->hd[slot].end];
	if (!bad && e->roles & (uint32_t)roles)
		m_set_roles(f, e, e->roles & ~(uint32_t)roles);
}

/* shmq_chan_write, checked against the model as an alternation of one. */
static int do_write(struct fz *f, int slot, uint8_t seed, uint32_t len, int64_t tmo)
{
	struct gspec g = { .h = slot, .op = SHMQ_GUARD_WRITE, .seed = seed, .len = len };
	const void *buf = msg_bytes(seed, len, wb[0]);
	int r = shmq_chan_write(f->hd[slot].c, buf, len, tmo);
	TRACE("  write h%d %u bytes (seed %u), timeout %lld: %d\n", slot, len, seed, (long long)tmo, r);
	EXPECT(one_of(r, 9, 0, -EAGAIN, -ETIMEDOUT, -EPIPE, -ECANCELED, -EBADF, -EMSGSIZE, -ENOSPC,
		      -EPROTO));
	EXPECT(tmo == 0 ? r != -ETIMEDOUT : r != -EAGAIN);
	if (reap_seen(f))
		dirty(f, "a reap during a wait");
	bool fired = r != -EAGAIN && r != -ETIMEDOUT;
	ssize_t res = r;
	m_alt(f, &g, 1, SHMQ_ALT_PRI, tmo, fired ? 0 : r, &res, fair);
	return r;
}

/* shmq_chan_read, checked likewise. */
static ssize_t do_read(struct fz *f, int slot, size_t cap, int64_t tmo)
{
	struct gspec g = { .h = slot, .op = SHMQ_GUARD_READ, .cap = cap };
	memset(rb[0], 0xa5, 64);
	ssize_t n = shmq_chan_read(f->hd[slot].c, rb[0], cap, tmo);
	TRACE("  read h%d cap %zu, timeout %lld: %zd\n", slot, cap, (long long)tmo, n);
	/* -ENOSPC: a read that has to wait needs a record. */
	EXPECT(n >= 0 ? (size_t)n <= cap
		      : one_of(n, 8, -EMSGSIZE, -EPIPE, -ECANCELED, -EAGAIN, -ETIMEDOUT, -EBADF, -EPROTO,
			       -ENOSPC));
	EXPECT(tmo == 0 ? n != -ETIMEDOUT && n != -ENOSPC : n != -EAGAIN);
	if (n < 0)
		for (int b = 0; b < 64; b++)
			EXPECT(rb[0][b] == 0xa5); /* nothing copied */
	if (reap_seen(f))
		dirty(f, "a reap during a wait");
	bool fired = n != -EAGAIN && n != -ETIMEDOUT && n != -ENOSPC;
	ssize_t res = n;
	m_alt(f, &g, 1, SHMQ_ALT_PRI, tmo, fired ? 0 : (int)n, &res, fair);
	return n;
}

/* SHMQ_ALT_FAIR's rotation set to a known guard (0): a fair call that fires
 * at once (an end without roles: -EBADF), so that an input does the same
 * whatever ran before it. */
static void fair_reset(struct fz *f)
{
	int slot;
	if (do_open(f, "r0", 0, &slot))
		return;
	struct gspec g = { .h = slot, .op = SHMQ_GUARD_READ };
	EXPECT(do_alt(f, &g, 1, SHMQ_ALT_FAIR, 0) == 0);
	do_close(f, slot);
}

/* ---------------------------------------------------------------- patches -- */

/* Copy len bytes of input to off (inside the arena and the file). */
static void patch_at(struct fz *f, struct input *in, uint64_t off, unsigned len)
{
	for (unsigned i = 0; i < len; i++)
		if (in_seg(f, off + i, 1))
			f->seg[off + i] = (unsigned char)u8(in);
	dirty(f, "patched");
}

/* A word worth storing: offsets of blocks, channels, records, offers and
 * messages, edge values, lock-like words, waiter states, buffer words. */
static uint64_t value(struct fz *f, struct input *in, uint64_t cur)
{
	unsigned s = u8(in);
	int64_t delta = (int64_t)(s >> 4) - 8;
	switch (s % 17) {
	default: /* 0 .. 13 */
		return arena_word(in, s % 17, delta, cur, f->blocks, f->nblocks, f->map_size);
	case 14: return f->nhot ? f->hot[u8(in) % f->nhot] + (uint64_t)(delta * 8) : 0;
	case 15: { /* a waiter's state, its owner kept */
		static const uint32_t st[10] = { ST_WAITING, ST_WAITING | ST_PARKED, ST_FIRED, ST_CLOSED,
						 ST_ABANDONED, ST_CLOSED | ST_ABANDONED,
						 ST_FIRED | ST_ABANDONED, ST_WAITING | ST_ABANDONED, 0,
						 ST_FIRED | ST_PARKED };
		unsigned a = u8(in);
		return (cur & ~0xffffffffull) | st[a % 10] | (uint32_t)(a / 10 % 10) << 8;
	}
	case 16: { /* a buffer word: first << 32 | count */
		unsigned a = u8(in);
		uint64_t first = a & 1 ? u32(in) : (a >> 2) & 7, count = a & 2 ? u32(in) : a >> 5;
		return first << 32 | count;
	}
	}
}

static void store_word(struct fz *f, struct input *in, uint64_t off, const char *what)
{
	if (off % 8 || !in_seg(f, off, 8))
		return;
	uint64_t cur = ld64(f, off), v = value(f, in, cur);
	TRACE("  %s word at %#llx: %#llx -> %#llx\n", what, (unsigned long long)off,
	      (unsigned long long)cur, (unsigned long long)v);
	st64(f, off, v);
	dirty(f, "patched");
}

/* A channel of the model, and its payload. */
static struct mchan *chan_at(struct fz *f, struct input *in, uint64_t *p)
{
	if (!f->nch)
		return NULL;
	struct mchan *c = &f->ch[u8(in) % f->nch];
	*p = PAYLOAD(c->obj);
	return c->obj ? c : NULL;
}

/* What a death under a channel's lock leaves: the lock word of a holder
 * that is gone (garbage: taken over at once), an intent to redo, a stale
 * tail; a record's state or buffer word; an early sweep; a live partner. */
static void forge(struct fz *f, struct input *in)
{
	unsigned a = u8(in);
	uint64_t p;
	struct mchan *c = chan_at(f, in, &p);
	if (!c)
		return;
	uint32_t gone = 1 + (u32(in) & (M_HELD - 2)); /* nonzero, no M_HELD: garbage */
	switch (a % 8) {
	case 0: /* its lock, held by nobody alive */
		TRACE("  forge: %s's lock %#x\n", c->name, a & 8 ? M_HELD | gone : gone);
		st32(f, p + C_LOCK, a & 8 ? M_HELD | gone : gone);
		break;
	case 1: { /* a roles intent to redo */
		uint64_t end = f->nhot ? f->hot[u8(in) % f->nhot] : 0;
		for (unsigned i = 0; i < f->nend && !(a & 8); i++)
			if (f->end[i].ch == (int)(c - f->ch) && !f->end[i].freed)
				end = PAYLOAD(f->end[i].obj);
		unsigned b = u8(in);
		TRACE("  forge: %s: a roles intent (end %#llx)\n", c->name, (unsigned long long)end);
		st64(f, p + C_INTENT + I_END, end);
		st32(f, p + C_INTENT + I_END_ROLES, b & 3);
		st32(f, p + C_INTENT + I_READERS, b >> 2 & 3);
		st32(f, p + C_INTENT + I_WRITERS, b >> 4 & 3);
		st32(f, p + C_INTENT + I_FLAGS, b >> 5 & 7);
		st32(f, p + C_INTENT + I_OP, INTENT_ROLES);
		st32(f, p + C_LOCK, gone);
		break;
	}
	case 2: { /* a promotion: a waiting writer fired, its block half moved */
		uint64_t o = ld64(f, p + C_WQ);
		for (unsigned k = u8(in) % 4; k && o; k--)
			o = ld64(f, o + O_NEXT);
		if (!o)
			return;
		uint64_t rec = ld64(f, o + O_WAITER), b = ld64(f, p + C_BUF);
		uint32_t guard = ld32(f, o + O_GUARD), n = ld32(f, p + C_BUFFER);
		uint64_t first = b >> 32, count = (uint32_t)b;
		TRACE("  forge: %s: a promotion of record %#llx guard %u\n", c->name,
		      (unsigned long long)rec, guard);
		st32(f, p + C_INTENT + I_GUARD, guard);
		st64(f, p + C_INTENT + I_WAITER, rec);
		st64(f, p + C_INTENT + I_MSG, ld64(f, o + O_MSG));
		st64(f, p + C_INTENT + I_SLOT, a & 16 ? u8(in) : n ? (first + count) % n : 0);
		st64(f, p + C_INTENT + I_BUF_AFTER, first << 32 | (count + 1));
		st32(f, p + C_INTENT + I_OP, INTENT_PROMOTE);
		if (a & 32)
			st32(f, rec + W_STATE, ST_FIRED | guard << 8); /* its CAS happened */
		st32(f, p + C_LOCK, gone);
		break;
	}
	case 3: { /* a record's state */
		if (!f->nrec)
			return;
		uint64_t rec = f->recs[u8(in) % f->nrec];
		store_word(f, in, rec, "record");
		break;
	}
	case 4: { /* a stale tail */
		uint64_t l = p + (a & 8 ? C_RQ : C_WQ);
		uint64_t t = a & 16 ? 0 : a & 32 ? ld64(f, l) : f->nhot ? f->hot[u8(in) % f->nhot] : 0;
		TRACE("  forge: %s: %s tail %#llx\n", c->name, a & 8 ? "rq" : "wq", (unsigned long long)t);
		st64(f, l + 8, t);
		break;
	}
	case 5: /* the buffer word */
		store_word(f, in, p + C_BUF, "buffer");
		break;
	case 6: /* the next open, create, close or remove sweeps: the dead are reaped */
		TRACE("  the next sweep at once\n");
		atomic_store(&hdr(f)->swept, 0);
		return; /* nothing corrupted: the model goes on */
	default: { /* a dead record waiting again, owned by this process: a partner
		      that looks alive (nobody waits on it, nobody frees it) */
		if (!f->nrec)
			return;
		uint64_t rec = f->recs[u8(in) % f->nrec];
		TRACE("  forge: record %#llx alive and waiting\n", (unsigned long long)rec);
		st32(f, rec + W_OWNER, heap_owner(f->h));
		st32(f, rec + W_STATE, ST_WAITING | (a & 8 ? ST_PARKED : 0));
		break;
	}
	}
	dirty(f, "forged");
}

static void one_patch(struct fz *f, struct input *in, unsigned op)
{
	switch (op) {
	case 0: { /* bytes of a block */
		if (!f->nblocks)
			return;
		struct blk *b = &f->blocks[u16(in) % f->nblocks];
		uint64_t off = b->off - 16 + u16(in) % (b->size + 16); /* its header too */
		unsigned len = 1 + u8(in) % 8;
		TRACE("  patch %u bytes at %#llx\n", len, (unsigned long long)off);
		patch_at(f, in, off, len);
		return;
	}
	case 1: { /* a word of a block */
		if (!f->nblocks)
			return;
		struct blk *b = &f->blocks[u16(in) % f->nblocks];
		store_word(f, in, b->off + 8 * (u16(in) % (b->size / 8 ? b->size / 8 : 1)), "block");
		return;
	}
	case 2: { /* anywhere in the arena */
		uint64_t span = f->size - f->g.arena_off;
		uint64_t off = f->g.arena_off + u32(in) % span;
		unsigned len = 1 + u8(in) % 16;
		TRACE("  patch %u arena bytes at %#llx\n", len, (unsigned long long)off);
		patch_at(f, in, off, len);
		return;
	}
	case 3: { /* follow a word that looks like an offset, patch there */
		if (!f->nblocks)
			return;
		struct blk *b = &f->blocks[u16(in) % f->nblocks];
		uint64_t off = b->off + 8 * (u8(in) % (b->size / 8 ? b->size / 8 : 1));
		uint64_t to = ld64(f, off) + (uint64_t)(int64_t)((int)(u8(in) % 64) - 16);
		if (!in_seg(f, to, 1))
			return;
		unsigned len = 1 + u8(in) % 8;
		TRACE("  follow %#llx -> patch %u bytes at %#llx\n", (unsigned long long)off, len,
		      (unsigned long long)to);
		patch_at(f, in, to, len);
		return;
	}
	case 4: { /* a word of a channel's payload: lock, intent, flags, counts,
		     buffer word, lists, slots */
		uint64_t p;
		struct mchan *c = chan_at(f, in, &p);
		unsigned w = u8(in);
		if (c)
			store_word(f, in, p + 8 * (w % (C_SLOTS / 8 + (c->buffer < 16 ? c->buffer : 16))),
				   c->name);
		return;
	}
	case 5: { /* a word of a record of the dead: state, owner, counts, offers */
		if (!f->nrec)
			return;
		uint64_t rec = f->recs[u8(in) % f->nrec];
		uint32_t n = ld32(f, rec + W_N), cls = ld32(f, rec - sizeof(struct heap_block) + 4);
		n = n && n <= SHMQ_ALT_MAX ? n : 1;
		/* Its words, as far as its block goes. */
		uint64_t words = cls < HEAP_CLASSES ? (class_size(cls) - sizeof(struct heap_block)) / 8
						    : (W_OFFERS + n * offer_size) / 8;
		store_word(f, in, rec + 8 * (u16(in) % words), "record");
		return;
	}
	default:
		forge(f, in);
		return;
	}
}

/* ------------------------------------------------------------------ ops -- */

static void op_read(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	size_t cap = cap_of(in);
	int64_t tmo = timeout_of(in);
	if (h >= 0)
		do_read(f, h, cap, tmo);
}

static void op_write(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	uint8_t seed;
	uint32_t len;
	msg_of(in, &seed, &len);
	int64_t tmo = timeout_of(in);
	if (h >= 0)
		do_write(f, h, seed, len, tmo);
}

/* One guard from the input: read or write, on which handle, with what
 * message or capacity. false: no handle to use. */
static bool gspec_of(struct fz *f, struct input *in, struct gspec *g)
{
	unsigned b = u8(in);
	*g = (struct gspec){ .h = pick_h(f, in), .op = b & 1 ? SHMQ_GUARD_WRITE : SHMQ_GUARD_READ };
	if (b & 1)
		msg_of(in, &g->seed, &g->len);
	else
		g->cap = cap_of(in);
	return g->h >= 0;
}

static void op_alt(struct fz *f, struct input *in)
{
	unsigned a = u8(in), n = 1 + a % MAX_G;
	int flags = a & 8 ? SHMQ_ALT_FAIR : SHMQ_ALT_PRI;
	struct gspec gs[MAX_G];
	for (unsigned i = 0; i < n; i++)
		if (!gspec_of(f, in, &gs[i]))
			return;
	do_alt(f, gs, n, flags, timeout_of(in));
}

static void op_retire(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	static const int roles[6] = { 0, SHMQ_RD, SHMQ_WR, SHMQ_RDWR, 4, SHMQ_RDWR };
	int r = roles[u8(in) % 6];
	if (h >= 0)
		do_retire(f, h, r);
}

static void op_poison(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	if (h < 0)
		return;
	int r = shmq_chan_poison(f->hd[h].c);
	TRACE("  poison h%d: %d\n", h, r);
	EXPECT(r == 0);
	if (reap_seen(f))
		dirty(f, "a reap in a poison");
	int ci = f->end[f->hd[h].end].ch;
	if (ci >= 0) {
		f->ch[ci].flags |= F_POISONED;
		f->ch[ci].qn = 0;
	}
}

static void op_open(struct fz *f, struct input *in)
{
	char name[SHMQ_NAME_MAX];
	name_of(f, in, name);
	unsigned a = u8(in);
	int roles = a & 0x80 ? (a & 0x40 ? -1 : 4) : (int)(a & 3), slot;
	do_open(f, name, roles, &slot);
}

static void op_end_open(struct fz *f, struct input *in)
{
	char name[SHMQ_NAME_MAX];
	name_of(f, in, name);
	int slot;
	do_end_open(f, name, &slot);
}

static void op_close(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	if (h >= 0)
		do_close(f, h);
}

static void op_create(struct fz *f, struct input *in)
{
	static const uint32_t bufs[10] = { 0, 1, 2, 3, 4, 7, 16, 64, SHMQ_CHAN_BUFFER_MAX,
					   SHMQ_CHAN_BUFFER_MAX + 1 };
	unsigned a = u8(in);
	char name[SHMQ_NAME_MAX];
	name_of(f, in, name);
	if (a & 1)
		snprintf(name, sizeof(name), "c%u", a >> 4);
	int slot;
	do_create(f, a & 2 ? NULL : name, bufs[(a >> 2) % 10], &slot);
}

/* The getters; the private copies of the names never change. */
static void op_info(struct fz *f, struct input *in)
{
	int h = pick_h(f, in);
	if (h < 0)
		return;
	struct hnd *hd = &f->hd[h];
	struct mend *e = &f->end[hd->end];
	int roles = shmq_chan_roles(hd->c), buffer = shmq_chan_buffer(hd->c);
	const char *name = shmq_chan_name(hd->c), *ename = shmq_chan_end_name(hd->c);
	TRACE("  h%d: roles %d buffer %d name %s end %s\n", h, roles, buffer, name, ename);
	EXPECT(roles >= 0 && roles <= SHMQ_RDWR);
	EXPECT(buffer >= 0 && buffer <= (int)SHMQ_CHAN_BUFFER_MAX);
	EXPECT(name && ename && strcmp(ename, e->name) == 0);
	if (e->ch >= 0)
		EXPECT(strcmp(name, f->ch[e->ch].name) == 0);
	if (f->clean) {
		EXPECT(roles == (int)e->roles);
		EXPECT(buffer == (int)f->ch[e->ch].buffer);
	}
}

static void op_remove(struct fz *f, struct input *in)
{
	char name[SHMQ_NAME_MAX];
	name_of(f, in, name);
	int r = shmq_heap_remove(f->h, name);
	TRACE("  remove \"%s\": %d\n", name, r);
	EXPECT(one_of(r, 4, 0, -ENOENT, -EINVAL, -EPROTO));
	reap_seen(f);
	int idx, k = m_lookup(f, name, &idx);
	if (f->clean)
		EXPECT(r == (k == K_BAD ? -EINVAL : k == K_NONE ? -ENOENT : 0));
	if (r)
		return;
	if (k == K_CHAN) {
		f->ch[idx].removed = true;
		m_chan_free_check(f, idx);
	} else if (k == K_END) {
		f->end[idx].removed = true;
	} else if (k == K_LOCK) {
		f->lk_removed = true;
	}
}

static void op_stat(struct fz *f)
{
	struct shmq_heap_stat st;
	int r = shmq_heap_stat(f->h, &st);
	TRACE("  stat: %d: used %llu free %llu objects %u handles %u\n", r, (unsigned long long)st.used,
	      (unsigned long long)st.free, st.objects, st.handles);
	EXPECT(r == 0 || r == -EPROTO);
	reap_seen(f); /* it reaps the dead first */
	if (f->clean)
		EXPECT(r == 0 && st.handles == 1);
}

/* Bad arguments: -EINVAL (NULL for the names), whatever the heap holds. */
static void op_bad(struct fz *f, struct input *in)
{
	unsigned a = u8(in);
	int h = pick_h(f, in);
	shmq_chan *c = h >= 0 ? f->hd[h].c : NULL, *out = NULL;
	struct shmq_guard g[2] = {
		{ .chan = c, .op = SHMQ_GUARD_READ, .rbuf = rb[0], .rcap = 1, .result = SENTINEL },
		{ .chan = c, .op = SHMQ_GUARD_WRITE, .wbuf = wb[1], .wlen = 1, .result = SENTINEL },
	};
	int r;
	TRACE("  bad arguments %u\n", a % 16);
	switch (a % 16) {
	case 0: r = shmq_chan_create(NULL, "x", 0, &out); break;
	case 1: r = shmq_chan_create(f->h, "x", SHMQ_CHAN_BUFFER_MAX + 1, &out); break;
	case 2: r = shmq_chan_create(f->h, "", 0, &out); break;
	case 3: r = shmq_chan_open(f->h, "r0", 4, &out); break;
	case 4: r = shmq_chan_open(f->h, NULL, SHMQ_RD, &out); break;
	case 5: r = shmq_chan_end_open(f->h, NULL, &out); break;
	case 6: r = shmq_chan_write(NULL, wb[0], 1, 0); break;
	case 7: r = (int)shmq_chan_read(NULL, rb[0], 1, 0); break;
	case 8: r = c ? (int)shmq_chan_read(c, NULL, 1, 0) : -EINVAL; break;
	case 9: r = c ? shmq_chan_write(c, NULL, 1, 0) : -EINVAL; break;
	case 10:
		r = shmq_chan_retire(NULL, SHMQ_RD);
		EXPECT(shmq_chan_poison(NULL) == -EINVAL && shmq_chan_close(NULL) == -EINVAL);
		EXPECT(shmq_chan_roles(NULL) == -EINVAL && shmq_chan_buffer(NULL) == -EINVAL);
		EXPECT(!shmq_chan_name(NULL) && !shmq_chan_end_name(NULL));
		break;
	case 11: r = shmq_alt(NULL, 1, SHMQ_ALT_PRI, 0); break;
	case 12: r = c ? shmq_alt(g, a & 16 ? 0 : SHMQ_ALT_MAX + 1, SHMQ_ALT_PRI, 0) : -EINVAL; break;
	case 13: r = c ? shmq_alt(g, 2, 2, 0) : -EINVAL; break; /* flags */
	case 14: /* an op, or a NULL channel */
		if (a & 16)
			g[1].op = 3;
		else
			g[1].chan = NULL;
		r = c ? shmq_alt(g, 2, SHMQ_ALT_PRI, 0) : -EINVAL;
		break;
	default: /* a channel of another heap */
		g[1].chan = other_chan;
		r = c ? shmq_alt(g, 2, SHMQ_ALT_FAIR, 0) : -EINVAL;
		break;
	}
	EXPECT(r == -EINVAL);
	EXPECT(!out && g[0].result == SENTINEL && g[1].result == SENTINEL);
	if (reap_seen(f))
		dirty(f, "a reap in a call with bad arguments");
}

/* --------------------------------------------------- a live partner -- */

/* An alternation of this thread with a partner: a helper thread that waits
 * until the alternation's record is linked (or it returned), then reads or
 * writes with timeout 0 (committing the alternation, or not), then, if the
 * record still waits, closes it as its own timeout would (so the wait ends
 * at once; 5 ms at most anyway). */
struct partner {
	struct fz *f;
	struct gspec h;       /* the helper's call */
	const struct gspec *gs;
	unsigned n;
	uint32_t tag;         /* ours: the alternation's record's owner */
	_Atomic bool main_done;
	bool found;           /* the record was linked when the helper went */
	ssize_t res;          /* the helper's result */
	shmq_chan *c;
	uint8_t *rbuf;
	const void *wbuf;
};
static uint8_t hb[BUF + 64], hw[BUF + 64];
#define PARTNER_WAIT_NS (5 * 1000 * 1000)

/* The alternation's record: ours, waiting, of n guards, in one of its
 * channels' lists. */
static uint64_t main_record(struct fz *f, const struct gspec *gs, unsigned n, uint32_t tag)
{
	for (unsigned i = 0; i < n; i++) {
		int ci = f->end[f->hd[gs[i].h].end].ch;
		if (ci < 0)
			continue;
		uint64_t p = PAYLOAD(f->ch[ci].obj);
		for (uint64_t l = C_RQ; l <= C_WQ; l += C_WQ - C_RQ) {
			uint64_t cur = ld64(f, p + l);
			for (int steps = 0; cur && steps < 64; steps++) {
				uint64_t rec = ld64(f, cur + O_WAITER);
				uint32_t st = ld32(f, rec + W_STATE);
				if (ld32(f, rec + W_OWNER) == tag && ld32(f, rec + W_N) == n &&
				    (st & ~ST_PARKED) == ST_WAITING)
					return rec;
				cur = ld64(f, cur + O_NEXT);
			}
		}
	}
	return 0;
}

static void *partner_main(void *arg)
{
	struct partner *p = arg;
	uint64_t rec = 0;
	for (int64_t t0 = wait_now(); !atomic_load(&p->main_done);) {
		if ((rec = main_record(p->f, p->gs, p->n, p->tag)))
			break;
		if (wait_now() - t0 > 5 * PARTNER_WAIT_NS)
			break;
		sched_yield();
	}
	p->found = rec != 0;
	if (p->h.op == SHMQ_GUARD_READ) {
		memset(p->rbuf, 0xa5, 64);
		p->res = shmq_chan_read(p->c, p->rbuf, p->h.cap, 0);
	} else {
		p->res = shmq_chan_write(p->c, p->wbuf, p->h.len, 0);
	}
	if (rec) { /* as the owner's own timeout: WAITING -> CLOSED */
		_Atomic uint32_t *state = (_Atomic uint32_t *)(p->f->seg + rec + W_STATE);
		uint32_t s = atomic_load(state);
		while ((s & ~ST_PARKED) == ST_WAITING && !atomic_compare_exchange_weak(state, &s, ST_CLOSED))
			;
		wait_wake(state, 1);
	}
	return NULL;
}

/* The helper's call by the model, the alternation's offers linked (every
 * guard not ready): its result; *fired, *mres: the guard of the
 * alternation it fires and that guard's result (-1: none). */
static int64_t m_partner(struct fz *f, const struct gspec *h, const struct gspec *gs, unsigned n,
			 int *fired, int64_t *mres)
{
	struct hnd *hd = &f->hd[h->h];
	struct mend *e = &f->end[hd->end];
	struct mchan *c = &f->ch[e->ch];
	int need = h->op == SHMQ_GUARD_READ ? SHMQ_RD : SHMQ_WR;
	*fired = -1;
	if (c->flags & F_POISONED)
		return -ECANCELED;
	if (!(hd->opened & need))
		return -EBADF;
	if (!(e->roles & (uint32_t)need) ||
	    c->flags & (need == SHMQ_RD ? F_NO_READERS : F_NO_READERS | F_NO_WRITERS))
		return -EPIPE;
	int want = need == SHMQ_RD ? SHMQ_GUARD_WRITE : SHMQ_GUARD_READ;
	int g = -1; /* the alternation's first offer in the list the call looks at */
	for (unsigned i = 0; i < n && g < 0; i++)
		if (gs[i].op == want && f->end[f->hd[gs[i].h].end].ch == e->ch)
			g = (int)i;
	if (need == SHMQ_WR) {
		if (h->len > SHMQ_CHAN_MSG_MAX)
			return -EMSGSIZE;
		if (g >= 0) {
			*fired = g;
			*mres = h->len <= gs[g].cap ? (int64_t)h->len : -EMSGSIZE;
			if (*mres >= 0)
				return 0;
		}
		if (c->qn < c->buffer) {
			if (c->qn == MAXQ)
				dirty(f, "a buffer longer than the model follows");
			else
				c->q[c->qn++] = (struct msg){ h->seed, h->len };
			return 0;
		}
		return -EAGAIN;
	}
	if (c->buffer && c->qn) {
		if (c->q[0].len > h->cap)
			return -EMSGSIZE;
		int64_t len = c->q[0].len;
		val_bytes(c->q[0].seed, c->q[0].len, want_h);
		memmove(c->q, c->q + 1, --c->qn * sizeof(c->q[0]));
		if (g >= 0) { /* promoted into the freed slot */
			*fired = g;
			*mres = 0;
			c->q[c->qn++] = (struct msg){ gs[g].seed, gs[g].len };
		}
		return len;
	}
	if (g >= 0) {
		if (gs[g].len > h->cap)
			return -EMSGSIZE;
		*fired = g;
		*mres = 0;
		val_bytes(gs[g].seed, gs[g].len, want_h);
		return gs[g].len;
	}
	return c->flags & F_NO_WRITERS ? -EPIPE : -EAGAIN;
}

static void op_partner(struct fz *f, struct input *in)
{
	unsigned a = u8(in), n = 1 + a % MAX_G;
	int flags = a & 8 ? SHMQ_ALT_FAIR : SHMQ_ALT_PRI;
	struct gspec gs[MAX_G];
	for (unsigned i = 0; i < n; i++)
		if (!gspec_of(f, in, &gs[i]))
			return;
	struct partner p = { .f = f, .gs = gs, .n = n, .tag = heap_owner(f->h), .rbuf = hb };
	if (!gspec_of(f, in, &p.h))
		return;
	p.c = f->hd[p.h.h].c;
	p.wbuf = msg_bytes(p.h.seed, p.h.len, hw);
	struct shmq_guard g[MAX_G];
	guards_of(f, gs, n, g);
	pthread_t t;
	if (pthread_create(&t, NULL, partner_main, &p))
		die("pthread_create", errno);
	unsigned fair_before = fair;
	int ret = shmq_alt(g, n, flags, PARTNER_WAIT_NS);
	atomic_store(&p.main_done, true);
	pthread_join(t, NULL);
	if (flags == SHMQ_ALT_FAIR && ret >= 0)
		fair = (unsigned)ret;
	TRACE("  alt %s of %u with a partner (h%d %s %u): %d (%zd), the partner %s: %zd\n",
	      flags ? "fair" : "pri", n, p.h.h, p.h.op == SHMQ_GUARD_READ ? "reads" : "writes",
	      p.h.op == SHMQ_GUARD_READ ? (unsigned)p.h.cap : p.h.len, ret,
	      ret >= 0 && ret < (int)n ? g[ret].result : 0, p.found ? "while it waited" : "after it",
	      p.res);
	/* The properties of do_alt, do_read and do_write. */
	if (ret >= 0) {
		EXPECT((unsigned)ret < n);
		EXPECT(guard_result_ok(&g[ret]));
	} else {
		EXPECT(one_of(ret, 3, -ETIMEDOUT, -ENOSPC, -EPROTO));
	}
	for (unsigned i = 0; i < n; i++)
		if ((int)i != ret) {
			EXPECT(g[i].result == SENTINEL);
			if (g[i].op == SHMQ_GUARD_READ)
				for (int k = 0; k < 64; k++)
					EXPECT(rb[i][k] == 0xa5);
		}
	if (p.h.op == SHMQ_GUARD_READ) {
		EXPECT(p.res >= 0 ? (size_t)p.res <= p.h.cap
				  : one_of(p.res, 6, -EMSGSIZE, -EPIPE, -ECANCELED, -EAGAIN, -EBADF, -EPROTO));
		if (p.res < 0)
			for (int k = 0; k < 64; k++)
				EXPECT(hb[k] == 0xa5);
	} else {
		EXPECT(one_of(p.res, 8, 0, -EAGAIN, -EPIPE, -ECANCELED, -EBADF, -EMSGSIZE, -ENOSPC, -EPROTO));
	}
	if (reap_seen(f))
		dirty(f, "a reap during a wait");
	if (!f->clean)
		return;
	for (unsigned i = 0; i < n; i++)
		if (f->end[f->hd[gs[i].h].end].ch < 0)
			return;
	if (f->end[f->hd[p.h.h].end].ch < 0)
		return;
	ssize_t res[MAX_G];
	for (unsigned i = 0; i < n; i++)
		res[i] = g[i].result;
	struct gspec hs = p.h;
	ssize_t hres = p.res;
	if (!p.found) { /* it returned first: the helper's call came after */
		m_alt(f, gs, n, flags, PARTNER_WAIT_NS, ret, res, fair_before);
		if (p.res > 0 && p.h.op == SHMQ_GUARD_READ)
			memcpy(rb[0], hb, (size_t)p.res); /* where m_alt looks */
		bool fired = p.res != -EAGAIN;
		m_alt(f, &hs, 1, SHMQ_ALT_PRI, 0, fired ? 0 : -EAGAIN, &hres, fair);
		return;
	}
	/* Linked: every guard was not ready. The helper's call then, unless
	 * the alternation had timed out already (a stall of 5 ms): then it
	 * came as if the alternation were not there. */
	for (unsigned i = 0; i < n; i++) {
		bool passes;
		EXPECT(m_guard(f, &gs[i], false, &passes) == NOT_READY);
	}
	static struct mchan saved[MAX_CH];
	memcpy(saved, f->ch, sizeof(saved));
	int fired;
	int64_t mres = 0;
	int64_t r = m_partner(f, &hs, gs, n, &fired, &mres);
	if (p.h.op == SHMQ_GUARD_WRITE && p.res == -ENOSPC && ret == -ETIMEDOUT) {
		/* Its message found no room in the heap: nothing moved. */
		memcpy(f->ch, saved, sizeof(saved));
		EXPECT(r != -ECANCELED && r != -EBADF && r != -EPIPE && r != -EMSGSIZE);
		return;
	}
	bool ok = p.res == r && (fired >= 0 ? ret == fired && res[fired] == mres : ret == -ETIMEDOUT);
	if (!ok && ret == -ETIMEDOUT) {
		TRACE("  (the alternation timed out before its partner came)\n");
		memcpy(f->ch, saved, sizeof(saved));
		if (p.res > 0 && p.h.op == SHMQ_GUARD_READ)
			memcpy(rb[0], hb, (size_t)p.res);
		bool fired1 = p.res != -EAGAIN;
		m_alt(f, &hs, 1, SHMQ_ALT_PRI, 0, fired1 ? 0 : -EAGAIN, &hres, fair);
		return;
	}
	if (!ok)
		TRACE("  model: the partner gives %lld and fires guard %d (%lld)\n", (long long)r, fired,
		      (long long)mres);
	EXPECT(ok);
	if (r > 0 && p.h.op == SHMQ_GUARD_READ)
		EXPECT(memcmp(hb, want_h, (size_t)r) == 0);
	if (fired >= 0 && gs[fired].op == SHMQ_GUARD_READ && mres > 0) {
		val_bytes(hs.seed, hs.len, want);
		EXPECT(memcmp(rb[fired], want, (size_t)mres) == 0);
	}
}

enum { OP_PATCH, OP_WORD, OP_ARENA, OP_FOLLOW, OP_CHAN_WORD, OP_REC_WORD, OP_FORGE, OP_READ,
       OP_WRITE, OP_ALT, OP_RETIRE, OP_POISON, OP_OPEN, OP_END_OPEN, OP_CLOSE, OP_CREATE,
       OP_INFO, OP_REMOVE, OP_STAT, OP_BAD, OP_PARTNER, OP_N };

static void one_op(struct fz *f, struct input *in)
{
	unsigned op = u8(in) % OP_N;
	TRACE("op %u (%zu bytes left)\n", op, in->n);
	if (op <= OP_FORGE) {
		one_patch(f, in, op);
		return;
	}
	switch (op) {
	case OP_READ: op_read(f, in); break;
	case OP_WRITE: op_write(f, in); break;
	case OP_ALT: op_alt(f, in); break;
	case OP_RETIRE: op_retire(f, in); break;
	case OP_POISON: op_poison(f, in); break;
	case OP_OPEN: op_open(f, in); break;
	case OP_END_OPEN: op_end_open(f, in); break;
	case OP_CLOSE: op_close(f, in); break;
	case OP_CREATE: op_create(f, in); break;
	case OP_INFO: op_info(f, in); break;
	case OP_REMOVE: op_remove(f, in); break;
	case OP_STAT: op_stat(f); break;
	case OP_BAD: op_bad(f, in); break;
	default: op_partner(f, in); break;
	}
	m_verify(f);
}

/* ------------------------------------------------------------- building -- */

/* More channels, messages and ends from the input (see the header). */
static void build(struct fz *f, struct input *in)
{
	static const uint32_t bufs[8] = { 0, 1, 2, 3, 5, 8, 64, SHMQ_CHAN_BUFFER_MAX };
	unsigned nc = u8(in) % 5;
	for (unsigned i = 0; i < nc; i++) {
		unsigned b = u8(in);
		char name[16];
		snprintf(name, sizeof(name), "n%u", i);
		int slot, r = do_create(f, b & 8 ? NULL : name, bufs[b & 7], &slot);
		for (unsigned m = 0, nm = (b >> 4) % 13; m < nm; m++) {
			uint8_t seed;
			uint32_t len;
			msg_of(in, &seed, &len);
			if (r == 0)
				do_write(f, slot, seed, len, 0);
		}
	}
	unsigned ne = u8(in) % 8;
	for (unsigned i = 0; i < ne; i++) {
		unsigned a = u8(in), ci = u8(in) % f->nch;
		int slot, s2;
		if (do_open(f, f->ch[ci].name, (int)(a & 3), &slot))
			continue;
		if (a & 4)
			do_end_open(f, f->end[f->hd[slot].end].name, &s2);
		if (a & 0x30)
			do_retire(f, slot, (int)(a >> 4 & 3));
	}
}

/* Before the open: free slots get generations the input cannot predict
 * (this process's owner tag), and no slot carries a fork stamp. */
static void sanitize_parts(struct fz *f)
{
	struct seg_part *p = parts(f);
	for (uint32_t i = 0; i < f->g.nparts; i++) {
		atomic_store(&p[i].forking, 0);
		if (!atomic_load(&p[i].id))
			atomic_store(&p[i].gen, (uint32_t)mix(f->salt ^ i));
	}
	f->salt = mix(f->salt);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz *f = &F;
	struct input in = { data, size };
	memset(f, 0, offsetof(struct fz, blocks));
	f->salt = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < size; i++)
		f->salt = (f->salt ^ data[i]) * 0x100000001b3ull;
	unsigned g = u8(&in);
	const struct tmpl *t = &tmpls[g % NT];
	/* The template's bytes in a fresh file. */
	f->fd = memfd_create("fuzz-chan", MFD_CLOEXEC);
	if (f->fd < 0 || ftruncate(f->fd, (off_t)t->size) < 0 ||
	    pwrite(f->fd, t->bytes, t->len, 0) != (ssize_t)t->len)
		die("memfd", errno);
	/* Past any 32-bit token: this fd never passes for a participant's. */
	lseek(f->fd, (off_t)(1ull << 33) + (off_t)(f->salt & 0xffff), SEEK_SET);
	f->seg = mmap(NULL, t->max_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->seg == MAP_FAILED)
		die("mmap", errno);
	f->size = t->size;
	f->map_size = t->max_size;
	f->g = hdr(f)->geom;
	memcpy(f->ch, t->ch, sizeof(t->ch));
	f->nch = t->nch;
	memcpy(f->end, t->end, sizeof(t->end));
	f->nend = t->nend;
	f->nkids = t->nkids;
	memcpy(f->kid_slot, t->kid_slot, sizeof(f->kid_slot));
	memcpy(f->kid_id, t->kid_id, sizeof(f->kid_id));
	TRACE("template %u, %s\n", g % NT, g & 4 ? "the dead reaped at the first sweep" : "no sweep");
	atomic_store(&hdr(f)->swept, g & 4 ? 0 : wait_now());
	sanitize_parts(f);
	int r = shmq_heap_open_fd(f->fd, 0, &f->h);
	EXPECT(r == 0);
	f->clean = true;
	build(f, &in);
	fair_reset(f);
	m_verify(f);
	collect(f);
	collect_hot(f);
	for (int i = 0; i < MAX_OPS && in.n; i++)
		one_op(f, &in);
	r = heap_check(f->h);
	TRACE("heap_check: %d\n", r);
	EXPECT(r == 0 || (!f->clean && r == -EPROTO));
	for (int i = 0; i < MAX_H; i++)
		if (f->hd[i].c)
			do_close(f, i);
	m_verify(f);
	EXPECT(shmq_heap_close(f->h) == 0);
	munmap(f->seg, t->max_size);
	close(f->fd);
	return 0;
}

/* ------------------------------------------------------------ templates -- */

enum { R0, R1, B1, B3, E2, AN, NCH_T };

/* A child's call: guards on the template's channels (creator's handles),
 * op, and a message's length (write) or a buffer's (read). */
struct kidspec {
	unsigned n;
	bool plain; /* shmq_chan_read/write rather than shmq_alt */
	bool fire;  /* stopped, then its first write on r1 taken by a read */
	struct {
		uint8_t ch, op;
		uint32_t len;
	} g[MAX_G];
};
#define RD_G SHMQ_GUARD_READ
#define WR_G SHMQ_GUARD_WRITE
/* The base: a reader of r0 and e2, a writer of r1 and of full b1, b3. */
#define KID_A { R0, RD_G, 64 }, { R1, WR_G, 9 }, { B1, WR_G, 0 }, { E2, RD_G, 0 }, { B3, WR_G, 33 }

static const struct kidspec kids[NT][NKIDS] = {
	{ { 5, false, false, { KID_A } } },
	{ { 6, false, false, { KID_A, { R1, RD_G, BUF } } },
	  { 1, true, false, { { B1, WR_G, 100 } } },
	  { 1, true, false, { { R0, RD_G, 7 } } } },
	{ { 8, false, true, { KID_A, { AN, WR_G, 20 }, { R1, RD_G, 100 }, { R1, WR_G, 5 } } },
	  { 2, false, false, { { E2, RD_G, BUF }, { B3, WR_G, 1000 } } } },
	/* D's read of r1 meets A's write there: A is dead, its record is
	 * abandoned with its other offers still listed. */
	{ { 5, false, false, { KID_A } },
	  { 1, true, false, { { R0, RD_G, 0 } } },
	  { 4, false, false,
	    { { B1, WR_G, 7 }, { B1, WR_G, 8 }, { R1, RD_G, 10 }, { R1, WR_G, 4000 } } } },
};

static uint32_t tmsg_len(unsigned t, unsigned i)
{
	static const uint32_t mixed[8] = { 0, 60000, 17, 1024, 5, 300, 7, 2 };
	switch (t) {
	case 0: return 3 * i;
	case 1: return 100 + 37 * i;
	case 2: return 4000 + 3000 * i;
	default: return mixed[i % 8];
	}
}

static _Noreturn void kid_main(struct fz *f, const struct kidspec *k, unsigned ki)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	struct shmq_guard g[MAX_G];
	for (unsigned i = 0; i < k->n; i++) {
		shmq_chan *c = f->hd[k->g[i].ch].c;
		if (k->g[i].op == RD_G)
			g[i] = (struct shmq_guard){ .chan = c, .op = RD_G, .rbuf = rb[i], .rcap = k->g[i].len };
		else
			g[i] = (struct shmq_guard){ .chan = c, .op = WR_G,
						    .wbuf = msg_bytes((uint8_t)(ki * 16 + i), k->g[i].len, wb[i]),
						    .wlen = k->g[i].len };
	}
	if (k->plain && g[0].op == RD_G)
		shmq_chan_read(g[0].chan, g[0].rbuf, g[0].rcap, -1);
	else if (k->plain)
		shmq_chan_write(g[0].chan, g[0].wbuf, g[0].wlen, -1);
	else
		shmq_alt(g, k->n, SHMQ_ALT_PRI, -1);
	_exit(1); /* it must block until killed */
}

/* The record of owner tag with n offers, all linked, its owner asleep. */
static uint64_t kid_record(struct fz *f, uint32_t tag, uint32_t n)
{
	for (unsigned ci = 0; ci < NCH_T; ci++) {
		uint64_t p = PAYLOAD(f->ch[ci].obj);
		for (uint64_t l = C_RQ; l <= C_WQ; l += C_WQ - C_RQ) {
			uint64_t cur = ld64(f, p + l);
			for (int steps = 0; cur && steps < 64; steps++) {
				uint64_t rec = ld64(f, cur + O_WAITER);
				if (ld32(f, rec + W_OWNER) == tag && ld32(f, rec + W_N) == n &&
				    ld32(f, rec + W_LINKED) == n &&
				    ld32(f, rec + W_STATE) == (ST_WAITING | ST_PARKED))
					return rec;
				cur = ld64(f, cur + O_NEXT);
			}
		}
	}
	return 0;
}

/* The size of an offer, from the offsets of rec's offers in the lists. */
static void learn_offer_size(struct fz *f, uint64_t rec)
{
	for (unsigned ci = 0; ci < NCH_T; ci++)
		for (uint64_t l = C_RQ; l <= C_WQ; l += C_WQ - C_RQ)
			for (uint64_t cur = ld64(f, PAYLOAD(f->ch[ci].obj) + l); cur; cur = ld64(f, cur + O_NEXT)) {
				uint32_t g = ld32(f, cur + O_GUARD);
				if (ld64(f, cur + O_WAITER) != rec || !g)
					continue;
				if (cur < rec + W_OFFERS || (cur - rec - W_OFFERS) % g ||
				    (cur - rec - W_OFFERS) / g < 64)
					die("chan.c's offers are not where fuzz_chan.c looks: update it", 0);
				offer_size = (cur - rec - W_OFFERS) / g;
			}
}

static void kid_run(struct fz *f, struct tmpl *t, const struct kidspec *k, unsigned ki)
{
	/* It holds what we hold now. */
	for (unsigned i = 0; i < f->nend; i++)
		if (f->end[i].handles)
			f->end[i].dead |= 1u << ki;
	for (unsigned i = 0; i < f->nch; i++)
		f->ch[i].dead |= 1u << ki;
	atomic_store(&hdr(f)->swept, wait_now());
	pid_t pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0)
		kid_main(f, k, ki);
	int slot = -1;
	for (uint32_t i = 0; i < f->g.nparts && slot < 0; i++)
		if ((atomic_load(&parts(f)[i].id) & PID_MASK) == (uint64_t)pid)
			slot = (int)i;
	if (slot < 0)
		die("the child's slot", pid);
	uint32_t tag = (uint32_t)slot | (atomic_load(&parts(f)[slot].gen) & WIDE_GEN_MASK) << 10;
	uint64_t rec = 0;
	for (int64_t t0 = wait_now(); !(rec = kid_record(f, tag, k->n));) {
		/* No sweep in the child (it would reap the dead before it). */
		atomic_store(&hdr(f)->swept, wait_now());
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid)
			die("a child did not block", st);
		if (wait_now() - t0 > 10ll * 1000 * 1000 * 1000)
			die("a child's offers were not linked in 10 s", pid);
		usleep(100);
	}
	learn_offer_size(f, rec);
	int st;
	if (k->fire) {
		kill(pid, SIGSTOP);
		if (waitpid(pid, &st, WUNTRACED) != pid || !WIFSTOPPED(st))
			die("a child did not stop", st);
		ssize_t n = shmq_chan_read(f->hd[R1].c, rb[0], BUF, 0); /* its write on r1 */
		if (n != (ssize_t)k->g[1].len)
			die("the stopped child's write", n);
	}
	kill(pid, SIGKILL);
	if (waitpid(pid, &st, 0) != pid || !WIFSIGNALED(st))
		die("a child did not die", st);
	t->kid_slot[ki] = slot;
	t->kid_id[ki] = atomic_load(&parts(f)[slot].id);
	if (!t->kid_id[ki])
		die("a dead child was reaped", ki);
}

static void build_template(unsigned ti)
{
	struct fz *f = &F;
	struct tmpl *t = &tmpls[ti];
	memset(f, 0, offsetof(struct fz, blocks));
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = ti & 1 ? 2ull << 20 : 1ull << 20;
	t->max_size = attr.max_size;
	int r = shmq_heap_create(NULL, &attr, &f->h);
	if (r)
		die("heap_create", r);
	f->fd = dup(shmq_heap_fd(f->h));
	struct stat st;
	if (f->fd < 0 || fstat(f->fd, &st) < 0)
		die("dup", errno);
	f->seg = mmap(NULL, t->max_size, PROT_READ | PROT_WRITE, MAP_SHARED, f->fd, 0);
	if (f->seg == MAP_FAILED)
		die("mmap", errno);
	f->size = (size_t)st.st_size;
	f->map_size = t->max_size;
	f->g = hdr(f)->geom;
	f->clean = true;
	shmq_lock *lk;
	if ((r = shmq_lock_create(f->h, "lk", 0, &lk)))
		die("lock_create", r);
	static const char *names[NCH_T] = { "r0", "r1", "b1", "b3", "e2", NULL };
	static const uint32_t bufs[NCH_T] = { 0, 0, 1, 3, 2, 4 };
	int slot;
	for (unsigned i = 0; i < NCH_T; i++)
		if ((r = do_create(f, names[i], bufs[i], &slot)) || slot != (int)i)
			die("template: create", r);
	unsigned nm = 0;
	static const unsigned fill[NCH_T] = { 0, 0, 1, 3, 0, 2 };
	for (unsigned i = 0; i < NCH_T; i++)
		for (unsigned m = 0; m < fill[i] + (i == AN && ti == 2 ? 2 : 0); m++)
			if ((r = do_write(f, (int)i, (uint8_t)(ti * 40 + nm), tmsg_len(ti, nm), 0)))
				die("template: write", r);
			else
				nm++;
	/* chan.c's layout as this target knows it. */
	uint64_t p = PAYLOAD(f->ch[B3].obj);
	if (ld64(f, p) != CHAN_MAGIC || ld32(f, p + C_BUFFER) != 3 || ld64(f, p + C_BUF) != 3 ||
	    ld32(f, p + C_READERS) != 1 || ld32(f, p + C_WRITERS) != 1 ||
	    ld64(f, PAYLOAD(f->end[B3].obj)) != END_MAGIC || ld32(f, PAYLOAD(f->end[B3].obj) + 8) != 3)
		die("chan.c's layout is not the one fuzz_chan.c knows: update it", 0);
	int s;
	if (do_open(f, "r0", SHMQ_RD, &s) || do_open(f, "b3", SHMQ_WR, &s) || do_open(f, "r1", 0, &s))
		die("template: open", 0);
	if (do_open(f, "e2", SHMQ_RDWR, &s))
		die("template: open", 0);
	do_retire(f, s, SHMQ_RD);
	if (do_open(f, f->ch[AN].name, SHMQ_WR, &s) || do_open(f, "b1", SHMQ_RDWR, &s))
		die("template: open", 0);
	do_retire(f, s, SHMQ_RDWR);
	if (do_end_open(f, f->end[NCH_T].name, &s)) /* r0's reader, twice */
		die("template: end_open", 0);
	m_verify(f);
	for (unsigned k = 0; k < NKIDS && kids[ti][k].n; k++) {
		kid_run(f, t, &kids[ti][k], k);
		t->nkids = k + 1;
	}
	atomic_store(&hdr(f)->swept, wait_now());
	for (int i = 0; i < MAX_H; i++)
		if (f->hd[i].c)
			do_close(f, i);
	shmq_lock_close(lk);
	m_verify(f);
	if ((r = shmq_heap_close(f->h)))
		die("heap_close", r);
	for (unsigned k = 0; k < t->nkids; k++)
		if (atomic_load(&parts(f)[t->kid_slot[k]].id) != t->kid_id[k])
			die("a dead child was reaped", k);
	t->len = atomic_load(&hdr(f)->brk);
	if (fstat(f->fd, &st) < 0 || t->len > (size_t)st.st_size)
		die("template size", errno);
	t->size = (size_t)st.st_size;
	t->bytes = malloc(t->len);
	if (!t->bytes)
		die("malloc", 0);
	memcpy(t->bytes, f->seg, t->len);
	memcpy(t->ch, f->ch, sizeof(t->ch));
	t->nch = f->nch;
	memcpy(t->end, f->end, sizeof(t->end));
	t->nend = f->nend;
	munmap(f->seg, t->max_size);
	close(f->fd);
	if (f->nch > 8 || f->nend > 16)
		die("template: too many objects", 0);
}

/* ------------------------------------------------------------ seed corpus -- */

/* Emitters that consume what the parsers above read. */
static void e_msg(struct seed *s, unsigned seed, uint32_t len) /* msg_of */
{
	if (len == BIG || len == SHMQ_CHAN_MSG_MAX + 1)
		emit(s, 2, (seed & ~1u) | (len == BIG ? 0 : 1), 0xff);
	else if (len < 128)
		emit(s, 2, seed, len);
	else if (len < 4096)
		emit(s, 3, seed, 0x80 | len / 64, len % 64);
	else
		emit(s, 4, seed, 0xc0, len & 0xff, len >> 8);
}

static void e_cap(struct seed *s, size_t cap) /* cap_of */
{
	if (cap == BUF)
		emit(s, 1, 0);
	else if (cap < 30)
		emit(s, 1, 200 + (int)cap);
	else
		emit(s, 3, 230, (int)(cap & 0xff), (int)(cap >> 8));
}

static void e_tmo(struct seed *s, unsigned us) /* timeout_of: 0, 1..58 or 200 us */
{
	emit(s, 1, us == 0 ? 0 : us >= 200 ? 250 : 191 + (int)us);
}

static void e_read(struct seed *s, unsigned h, size_t cap, unsigned us)
{
	emit(s, 2, OP_READ, h);
	e_cap(s, cap);
	e_tmo(s, us);
}

static void e_write(struct seed *s, unsigned h, unsigned seed, uint32_t len, unsigned us)
{
	emit(s, 2, OP_WRITE, h);
	e_msg(s, seed, len);
	e_tmo(s, us);
}

/* An alternation: n guards, each "h op len" (op 'r': len is the buffer). */
static void e_alt(struct seed *s, bool fair_flag, unsigned us, unsigned n, ...)
{
	va_list ap;
	va_start(ap, n);
	emit(s, 2, OP_ALT, (int)(n - 1) | (fair_flag ? 8 : 0));
	for (unsigned i = 0; i < n; i++) {
		unsigned h = va_arg(ap, unsigned);
		int op = va_arg(ap, int);
		uint32_t len = va_arg(ap, uint32_t);
		emit(s, 2, op == 'w' ? 1 : 0, h);
		if (op == 'w')
			e_msg(s, 40 + i, len);
		else
			e_cap(s, len);
	}
	va_end(ap);
	e_tmo(s, us);
}

/* An alternation with a partner: n guards as for e_alt, then the helper's
 * call "h op len". */
static void e_partner(struct seed *s, bool fair_flag, unsigned n, ...)
{
	va_list ap;
	va_start(ap, n);
	emit(s, 2, OP_PARTNER, (int)(n - 1) | (fair_flag ? 8 : 0));
	for (unsigned i = 0; i <= n; i++) {
		unsigned h = va_arg(ap, unsigned);
		int op = va_arg(ap, int);
		uint32_t len = va_arg(ap, uint32_t);
		emit(s, 2, op == 'w' ? 1 : 0, h);
		if (op == 'w')
			e_msg(s, 60 + i, len);
		else
			e_cap(s, len);
	}
	va_end(ap);
}

/* name_of: a channel (model index), an end (model index), or the others. */
static void e_chan_name(struct seed *s, unsigned i)
{
	emit(s, 2, 0, i);
}

static void e_end_name(struct seed *s, unsigned i)
{
	emit(s, 2, 3, i);
}

static void e_value_u64(struct seed *s, uint64_t v) /* value(): case 0 */
{
	emit(s, 1, 0);
	for (int i = 0; i < 8; i++)
		emit(s, 1, (int)(v >> 8 * i & 0xff));
}

/* The template's channels (model indices), and its ends: */
enum { M_R0, M_R1, M_B1, M_B3, M_E2, M_AN, M_N0 };
/* @0 r0's, @1 r1's, @2 b1's, @3 b3's, @4 e2's, @6 the anonymous one's (the
 * creators', RDWR), @7 r0's reader, @8 b3's writer, @9 r1's (no role), @a
 * e2's (RD retired), @b the anonymous one's writer, @c b1's (retired). */
enum { M_END_R0_RD = 6, M_END_B1_RETIRED = 11 };

static void write_seeds(const char *dir)
{
	struct seed s = { .n = 0 };

	/* 1: a tour of every operation against the model, template 0. Built:
	 * n0 (buffer 3, messages of 5 and 70 bytes), an anonymous rendezvous
	 * channel; ends: r0 RDWR, n0 WR (held twice), b3 RDWR with RD retired.
	 * Handles: 0 n0, 1 the anonymous one, 2 r0, 3 and 4 n0's writer, 5 b3. */
	emit(&s, 3, 0, 2, 0x23);
	e_msg(&s, 1, 5);
	e_msg(&s, 2, 70);
	emit(&s, 1, 0x08);
	emit(&s, 7, 3, 0x03, M_R0, 0x06, M_N0, 0x13, M_B3);
	e_read(&s, 0, BUF, 0);		/* 5 bytes */
	e_read(&s, 0, 1, 0);		/* -EMSGSIZE: it stays */
	e_read(&s, 0, BUF, 0);		/* 70 bytes */
	e_read(&s, 0, BUF, 0);		/* -EAGAIN */
	e_read(&s, 0, BUF, 10);		/* -ETIMEDOUT */
	e_write(&s, 3, 7, 300, 0);	/* buffered */
	e_write(&s, 1, 8, 3, 0);	/* rendezvous, nobody: -EAGAIN */
	e_write(&s, 1, 8, 3, 20);	/* -ETIMEDOUT */
	e_write(&s, 2, 9, 1, 0);	/* r0: a writer at last: the dead reader is withdrawn, -EAGAIN */
	e_read(&s, 2, BUF, 0);		/* -EAGAIN */
	e_write(&s, 0, 1, SHMQ_CHAN_MSG_MAX + 1, 0); /* -EMSGSIZE */
	e_write(&s, 0, 1, BIG, 0);	/* -ENOSPC */
	e_alt(&s, false, 0, 3, 1, 'r', BUF, 0, 'r', BUF, 3, 'w', 10); /* the read of n0 */
	e_alt(&s, true, 0, 3, 3, 'w', 1, 4, 'w', 2, 0, 'w', 3); /* fair: guard 1 */
	e_alt(&s, true, 0, 3, 3, 'w', 1, 4, 'w', 2, 0, 'w', 3); /* guard 2 */
	e_alt(&s, true, 0, 2, 1, 'w', 1, 1, 'r', 0);	/* fair, nothing ready: -EAGAIN */
	e_alt(&s, false, 5, 2, 1, 'w', 1, 1, 'r', 0);	/* -ETIMEDOUT */
	e_alt(&s, false, 0, 2, 5, 'r', BUF, 5, 'w', 4);	/* b3: -EPIPE (our RD retired) */
	e_alt(&s, false, 0, 1, 0, 'r', 3);		/* -EMSGSIZE */
	emit(&s, 2, OP_INFO, 5);
	emit(&s, 3, OP_RETIRE, 3, 2);	/* n0's writer end */
	emit(&s, 3, OP_RETIRE, 0, 2);	/* the last writer: reads drain, then -EPIPE */
	e_read(&s, 0, BUF, 0);
	e_read(&s, 0, BUF, 0);
	e_read(&s, 0, BUF, 0);
	e_write(&s, 4, 1, 1, 0);	/* -EPIPE */
	emit(&s, 3, OP_RETIRE, 0, 0);	/* -EINVAL */
	emit(&s, 2, OP_POISON, 1);
	e_read(&s, 1, BUF, 0);		/* -ECANCELED */
	emit(&s, 1, OP_OPEN);
	e_chan_name(&s, M_R1);
	emit(&s, 1, SHMQ_RD);
	emit(&s, 4, OP_OPEN, 5, 0, 1);	/* "lk": -EINVAL */
	emit(&s, 4, OP_OPEN, 6, 0, 1);	/* "nope": -ENOENT */
	emit(&s, 4, OP_OPEN, 14, 0, 1);	/* "": -EINVAL */
	emit(&s, 4, OP_OPEN, 3, 0, 0x84); /* an end's name (and bad roles): -EINVAL */
	emit(&s, 1, OP_END_OPEN);
	e_end_name(&s, M_END_R0_RD);
	emit(&s, 1, OP_END_OPEN);
	e_chan_name(&s, M_R0);		/* -EINVAL */
	emit(&s, 4, OP_CREATE, 0x09, 7, 0); /* "c0", buffer 2 */
	emit(&s, 4, OP_CREATE, 0x09, 7, 0); /* -EEXIST */
	emit(&s, 4, OP_CREATE, 0x27, 7, 0); /* too large: -EINVAL */
	emit(&s, 4, OP_CREATE, 0x21, 7, 0); /* no room: -ENOSPC */
	emit(&s, 4, OP_CREATE, 0x0a, 7, 0); /* anonymous */
	emit(&s, 2, OP_CLOSE, 1);
	emit(&s, 3, OP_REMOVE, 7, 0);	/* "c0" */
	emit(&s, 3, OP_REMOVE, 6, 0);	/* -ENOENT */
	for (int b = 0; b < 16; b++)
		emit(&s, 3, OP_BAD, b, 0);
	emit(&s, 1, OP_STAT);
	write_seed(dir, "tour", &s);

	/* 2: the dead of template 1 met: b1 full with two dead writers (a
	 * read takes the buffered message and promotes nobody), r0 with two
	 * dead readers, e2 with a dead reader, b3 full with a dead writer;
	 * then a stat reaps them: the ends only they held retire. Handles: 0
	 * b1, 1 r0, 2 e2, 3 b3, 4 r1. */
	s.n = 0;
	emit(&s, 3, 1, 0, 5);
	emit(&s, 10, 3, M_B1, 3, M_R0, 3, M_E2, 3, M_B3, 3, M_R1);
	e_read(&s, 0, BUF, 0);		/* b1's message */
	e_read(&s, 0, BUF, 0);		/* -EAGAIN: the dead writers are withdrawn */
	e_write(&s, 0, 3, 10, 0);
	e_write(&s, 0, 3, 10, 0);	/* full: -EAGAIN */
	e_write(&s, 1, 4, 64, 0);	/* r0: -EAGAIN */
	e_write(&s, 2, 5, 0, 0);	/* e2: buffered */
	e_read(&s, 3, BUF, 0);
	e_read(&s, 3, BUF, 0);
	e_read(&s, 3, BUF, 0);
	e_read(&s, 3, BUF, 3);		/* -ETIMEDOUT */
	e_write(&s, 4, 6, 9, 0);
	e_read(&s, 4, BUF, 0);
	e_alt(&s, false, 0, 4, 1, 'r', BUF, 4, 'r', BUF, 2, 'r', 0, 0, 'w', 1);
	emit(&s, 1, OP_STAT);
	emit(&s, 1, OP_END_OPEN);
	e_end_name(&s, M_END_R0_RD);	/* freed with the dead: -ENOENT */
	emit(&s, 3, OP_CLOSE, 1, OP_STAT);
	e_read(&s, 0, BUF, 0);
	e_read(&s, 2, BUF, 0);
	emit(&s, 2, OP_INFO, 0);
	write_seed(dir, "dead", &s);

	/* 3: template 2: a record fired (its message taken) with offers still
	 * listed, and a waiting one; more channels; alternations over up to 8
	 * guards, which meet them. Handles: 0 n0 (buffer 5), 1 n1 (anonymous,
	 * rendezvous), 2 r1, 3 b3, 4 e2 (a writer). */
	s.n = 0;
	emit(&s, 2, 2, 2);
	emit(&s, 1, 0x34);
	e_msg(&s, 1, 1000);
	e_msg(&s, 2, 0);
	e_msg(&s, 3, 40000);
	emit(&s, 1, 0x08);
	emit(&s, 7, 3, 3, M_R1, 3, M_B3, 2, M_E2);
	e_alt(&s, false, 0, 8, 1, 'r', BUF, 1, 'w', 3, 2, 'r', 10, 2, 'w', 10, 4, 'r', BUF, 3, 'w', 1,
	      0, 'w', 2, 0, 'r', BUF);
	e_alt(&s, true, 0, 8, 1, 'r', BUF, 1, 'w', 3, 2, 'r', 10, 2, 'w', 10, 4, 'w', 5, 3, 'w', 1,
	      0, 'w', 2, 0, 'r', 3);
	e_alt(&s, true, 0, 8, 1, 'r', BUF, 1, 'w', 3, 2, 'r', 10, 2, 'w', 10, 4, 'w', 5, 3, 'w', 1,
	      0, 'w', 2, 0, 'r', 3);
	e_alt(&s, true, 30, 3, 1, 'r', BUF, 2, 'r', 10, 2, 'w', 10);
	e_read(&s, 0, 999, 0);		/* -EMSGSIZE */
	e_read(&s, 0, 1000, 0);
	e_read(&s, 0, 0, 0);
	e_read(&s, 0, BUF, 0);
	e_read(&s, 3, BUF, 0);
	emit(&s, 3, OP_RETIRE, 4, 2);	/* e2's last writer... */
	e_read(&s, 3, BUF, 0);
	emit(&s, 2, OP_POISON, 0);
	e_alt(&s, false, 0, 2, 0, 'r', BUF, 0, 'w', 1); /* -ECANCELED */
	emit(&s, 1, OP_STAT);
	write_seed(dir, "fired", &s);

	/* 4: template 3: a dead record abandoned with offers still listed,
	 * two waiting; reads and writes meet them one by one; then the
	 * template's ends closed by a stat. Handles: 0 r0, 1 b1, 2 r1, 3 b3,
	 * 4 e2, 5 the anonymous one. */
	s.n = 0;
	emit(&s, 3, 3, 0, 6);
	emit(&s, 12, 3, M_R0, 3, M_B1, 3, M_R1, 3, M_B3, 3, M_E2, 3, M_AN);
	e_write(&s, 0, 1, 5, 0);
	e_read(&s, 1, BUF, 0);
	e_read(&s, 1, BUF, 0);
	e_read(&s, 2, BUF, 0);
	e_write(&s, 2, 1, 5, 0);
	e_read(&s, 3, BUF, 0);
	e_write(&s, 4, 1, 7, 0);
	e_read(&s, 5, BUF, 0);
	e_read(&s, 5, 2, 0);
	emit(&s, 1, OP_OPEN);
	e_end_name(&s, 0);		/* an end's name: -EINVAL */
	emit(&s, 1, 3);
	emit(&s, 1, OP_END_OPEN);
	e_end_name(&s, M_END_B1_RETIRED); /* an end with no role left */
	e_read(&s, 6, BUF, 0);		/* -EBADF */
	emit(&s, 1, OP_STAT);
	e_write(&s, 0, 1, 5, 0);
	e_read(&s, 4, BUF, 0);
	emit(&s, 1, OP_REMOVE);
	e_chan_name(&s, M_R0);
	emit(&s, 4, OP_CLOSE, 0, OP_STAT, OP_STAT);
	write_seed(dir, "abandoned", &s);

	/* 5: template 1 patched: the dead's records, the lists, the buffer
	 * words; forged deaths under the lock (a lock word, a roles intent, a
	 * promotion half done, a stale tail, an early sweep), a dead record
	 * alive again (a partner that is committed); then everything
	 * runs over it. Handles as in "dead". The forge's case is its first
	 * byte % 8, its flags that byte's bits 3 to 5. */
	s.n = 0;
	emit(&s, 3, 1, 0, 5);
	emit(&s, 10, 3, M_B1, 3, M_R0, 3, M_E2, 3, M_B3, 3, M_R1);
	emit(&s, 7, OP_FORGE, 6, M_B3, 1, 0, 0, 0); /* the next sweep at once */
	emit(&s, 8, OP_FORGE, 34, M_B1, 5, 0, 0, 0, 0); /* a promotion done halfway */
	emit(&s, 7, OP_FORGE, 8, M_R0, 7, 0, 0, 0);  /* r0's lock: a holder gone */
	emit(&s, 9, OP_FORGE, 1, M_E2, 9, 0, 0, 0, 0, 0x7b); /* a roles intent */
	emit(&s, 7, OP_FORGE, 20, M_B3, 3, 0, 0, 0); /* wq's tail: 0 */
	emit(&s, 4, OP_REC_WORD, 0, 0, 0);
	emit(&s, 2, 15, 3);		/* record 0's state: closed */
	emit(&s, 4, OP_REC_WORD, 1, 5, 0); /* an offer's link: hot block */
	emit(&s, 2, 14, 2);
	emit(&s, 3, OP_CHAN_WORD, M_B3, C_BUF / 8);
	e_value_u64(&s, 2ull << 32 | 7); /* a count beyond the buffer */
	emit(&s, 3, OP_CHAN_WORD, M_R1, C_RQ / 8);
	emit(&s, 2, 14, 7);		/* r1's rq head: a hot offset */
	emit(&s, 6, OP_WORD, 3, 0, 1, 0, 2); /* a block's word: its neighbour */
	emit(&s, 2, 0, 0);
	emit(&s, 7, OP_PATCH, 9, 0, 40, 0, 2, 0x41);
	emit(&s, 2, 0x42, 0x43);
	emit(&s, 8, OP_FORGE, 15, M_R1, 1, 0, 0, 0, 1); /* record 1 alive again */
	e_read(&s, 0, BUF, 0);
	e_read(&s, 3, BUF, 0);
	e_read(&s, 3, BUF, 0);
	e_write(&s, 1, 2, 9, 0);
	e_write(&s, 2, 2, 9, 3);
	e_read(&s, 4, BUF, 0);
	e_alt(&s, true, 2, 4, 0, 'r', BUF, 1, 'w', 1, 2, 'w', 2, 4, 'r', 7);
	emit(&s, 3, OP_RETIRE, 1, 3);
	emit(&s, 2, OP_POISON, 3);
	emit(&s, 3, OP_CLOSE, 0, OP_STAT);
	emit(&s, 1, OP_END_OPEN);
	e_end_name(&s, 3);
	write_seed(dir, "patched", &s);

	/* 6: alternations with a live partner (a helper thread): template 0,
	 * n0 a rendezvous channel, n1 buffered (2); handles 0 n0, 1 n1, 2 r0.
	 * The partner writes to a waiting read guard (one too small first),
	 * reads a waiting write guard, takes a buffered message and promotes
	 * the waiting writer into its slot, comes after an alternation that
	 * did not wait, or matches nothing (the alternation's wait closed). */
	s.n = 0;
	emit(&s, 5, 0, 2, 0x00, 0x02, 1);
	emit(&s, 2, 0x03, M_R0);
	e_partner(&s, false, 2, 0, 'r', 3, 0, 'r', BUF, 0, 'w', 5);
	e_partner(&s, false, 1, 0, 'w', 9, 0, 'r', BUF);
	e_partner(&s, false, 1, 0, 'w', SHMQ_CHAN_MSG_MAX + 1, 0, 'r', BUF); /* fires at once */
	e_partner(&s, true, 3, 2, 'r', BUF, 1, 'w', 1, 0, 'r', 1, 1, 'r', BUF);
	e_write(&s, 1, 3, 30, 0);
	e_write(&s, 1, 4, 31, 0);			/* n1 full */
	e_partner(&s, false, 2, 0, 'r', BUF, 1, 'w', 2000, 1, 'r', BUF); /* a promotion */
	e_partner(&s, true, 8, 0, 'r', 4, 0, 'w', 4, 2, 'r', BUF, 2, 'w', 0, 1, 'w', 9, 0, 'r', 5,
		  0, 'w', 6, 1, 'w', 7, 0, 'w', 4);
	e_partner(&s, false, 1, 0, 'r', BUF, 1, 'w', 3);	/* nothing for it */
	e_read(&s, 1, BUF, 0);
	e_read(&s, 1, BUF, 0);
	e_read(&s, 1, BUF, 0);
	emit(&s, 3, OP_RETIRE, 1, 2);
	e_partner(&s, false, 1, 0, 'r', BUF, 1, 'r', BUF);	/* -EPIPE for the partner */
	write_seed(dir, "partner", &s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	trace = getenv("FUZZ_CHAN_TRACE") != NULL;
	const char *dir = getenv("FUZZ_CHAN_WRITE_SEEDS");
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	bool tr = trace;
	trace = false;
	for (unsigned t = 0; t < NT; t++)
		build_template(t);
	trace = tr;
	/* chan.c remembers for a millisecond that a process was alive (the
	 * stopped child): let that pass before the first input. */
	nanosleep(&(struct timespec){ 0, 3 * 1000 * 1000 }, NULL);
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = 1ull << 20;
	if (shmq_heap_create(NULL, &attr, &other_heap) ||
	    shmq_chan_create(other_heap, NULL, 0, &other_chan))
		die("the other heap", 0);
	return 0;
}
