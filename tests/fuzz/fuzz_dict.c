/* libFuzzer target: shared dicts and lists in a heap whose bytes the fuzzer
 * overwrites, then used as a process uses them.
 *
 * Each input builds a heap (1, 2 or 4 MiB) in a memfd through the API: a
 * dict "d" and a list "l", filled from the input (keys from a fixed set of
 * 80: twelve of 0 to 100 bytes, the empty key among them, and numbered ones,
 * so that bulk inserts make the table grow and bulk deletes make it shrink;
 * values of 0 bytes to 60 KiB, and 8-byte counters), the creator's handle
 * closed. Then a little program: patch bytes of any block of the arena (the
 * blocks are enumerated from the arena's start: entries, tables, the list's
 * array and values, the objects' headers and payloads) or of any arena
 * offset; store chosen words into blocks (offsets of other blocks, 0, ~0,
 * INT64_MAX and other edge values, lock-like words, the word's own value
 * nudged); follow a word that looks like an offset and patch where it
 * points; and run dict and list operations: get, set, insert, pop, del, cas,
 * add, len, walks with buffers of every size, clear, bulk inserts and
 * deletes; list append, insert, get, set, pop, del, len, clear; close and
 * reopen the handles by name (and by the other kind's name), close and
 * reopen the heap, remove "d" and close it (its memory freed), anonymous
 * dicts and lists created, filled, read and closed, heap stats.
 *
 * Properties: never a crash, a sanitizer report or a hang (run it with
 * -timeout); every result one the API documents for the call (a length no
 * larger than the buffer; -EPROTO, -ENOSPC and friends only where
 * documented); a walk ends. Until the first patch, every result must be
 * exactly what a model of the dict and the list predicts (including
 * "-ENOSPC changes nothing" on the small heaps, an operation that would not
 * store giving its own answer on a full heap (-EEXIST, -EAGAIN, -ENOENT,
 * -EINVAL) rather than -ENOSPC, a clear that always succeeds, and a walk
 * returning every key exactly once).
 *
 * Not fuzzed (a hang by design): a lock word naming the live process
 * itself. As in fuzz_heap, the participant slots' generations are drawn
 * from a hash of the input before every open, so this process's owner tag
 * cannot be written by the input. The participant table, the pins and the
 * heap header are not patched (fuzz_heap covers them).
 *
 * FUZZ_DICT_TRACE=1 prints what each step did; FUZZ_DICT_WRITE_SEEDS=DIR
 * writes the seed corpus (tests/fuzz/corpus-dict) into DIR and exits.
 * tests/torture/README.md says how to build and run it. */
#include <shmq.h>
#include "heap.h" /* the arena's layout: blocks, objects; the participant table */

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_common.h" /* struct input, u8() .. u64(), mix() */
#include "fuzz_arena.h"  /* struct blk, class_size, arena_blocks, arena_word */

#define MAX_OPS 96
#define MAX_BLOCKS 4096
#define NFIXED 12u
#define NKEYS 80u
#define MAX_LIST 600u /* the model follows the list up to this length */
#define BUF (64u << 10)

/* ----------------------------------------------------------------- input -- */

static bool trace;
/* FUZZ_DICT_LENIENT=1: work around the library bugs this target found: the
 * fixed ones (hostile counts, overlapping copies, a cursor wrapping at tie
 * byte 255), as it did while they were open, and the open ones (a full heap:
 * a list set out of range gives -ENOSPC before -ERANGE, a list clear
 * -ENOSPC), so that it looks for others. */
static bool lenient;
#define TRACE(...)                                    \
	do {                                          \
		if (trace)                            \
			fprintf(stderr, __VA_ARGS__); \
	} while (0)

/* A result the API rules out: a finding, not a crash of the harness. */
#define EXPECT(cond)                                                                 \
	do {                                                                         \
		if (!(cond)) {                                                       \
			fprintf(stderr, "fuzz_dict: %s:%d: expected %s\n", __FILE__, \
				__LINE__, #cond);                                    \
			__builtin_trap();                                            \
		}                                                                    \
	} while (0)

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

/* ------------------------------------------------------------ keys, values -- */

static uint8_t key_bytes[NKEYS][100];
static size_t key_len[NKEYS];

static void make_keys(void)
{
	static const uint8_t fixed_len[NFIXED] = { 0, 1, 2, 3, 5, 8, 12, 16, 24, 40, 64, 100 };
	for (unsigned i = 0; i < NKEYS; i++) {
		size_t n = i < NFIXED ? fixed_len[i] : (size_t)snprintf((char *)key_bytes[i], 100, "n%u", i);
		for (size_t j = 0; i < NFIXED && j < n; j++)
			key_bytes[i][j] = (uint8_t)(i * 37 + j * 11 + 1);
		key_len[i] = n;
	}
}

#define K(i) key_bytes[i], key_len[i]

/* A value: seed and length (or an 8-byte counter); its bytes are derived. */
struct val {
	bool present, is_int;
	uint8_t seed;
	uint32_t len;
	int64_t iv;
};

static size_t val_bytes(const struct val *v, uint8_t *buf)
{
	if (v->is_int) {
		memcpy(buf, &v->iv, 8);
		return 8;
	}
	for (uint32_t i = 0; i < v->len; i++)
		buf[i] = (uint8_t)(v->seed * 131u + i * 7u + v->len);
	return v->len;
}

/* A value's shape from the input: mostly short, sometimes up to 60 KiB. */
static struct val val_of(struct input *in)
{
	unsigned s = u8(in), l = u8(in);
	struct val v = { .present = true, .seed = (uint8_t)s };
	v.len = l & 0x80 ? (l & 0x40 ? u16(in) % 61440 : (l & 0x3f) * 64 + u8(in)) : l & 0x7f;
	return v;
}

/* ------------------------------------------------------------------ state -- */


struct fz {
	unsigned char *seg; /* the file, mapped for patching */
	size_t size;
	struct heap_geom g;
	int fd;
	uint64_t salt;
	shmq_heap *h;
	shmq_dict *d;
	shmq_list *l;
	bool heap_gone; /* an open failed: nothing more to do */
	bool clean;     /* no byte patched yet: results must match the model */
	bool unfixed;   /* patched since lenient_fix */
	struct blk blocks[MAX_BLOCKS];
	unsigned nblocks;
	/* The model. */
	struct val dm[NKEYS];
	struct val lm[MAX_LIST];
	uint32_t llen;
	bool lm_valid; /* false once the list outgrew the model */
	uint8_t buf[BUF + 64], buf2[BUF + 64], want[BUF + 64];
};

static struct heap_hdr *hdr(struct fz *f)
{
	return (struct heap_hdr *)f->seg;
}

static struct seg_part *parts(struct fz *f)
{
	return (struct seg_part *)(f->seg + f->g.parts_off);
}


/* The blocks carved so far, from the arena's start to brk (as built, before
 * any patch: the header is never patched, but a block's class may be). */
static void collect(struct fz *f)
{
	f->nblocks = arena_blocks(f->seg, f->size, f->g.arena_off, atomic_load(&hdr(f)->brk),
				  f->blocks, MAX_BLOCKS);
}

static int model_len(struct fz *f)
{
	int n = 0;
	for (unsigned k = 0; k < NKEYS; k++)
		n += f->dm[k].present;
	return n;
}

/* -------------------------------------------------- slots and the heap -- */

/* Before any open: free slots get generations the input cannot predict
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

static void close_objects(struct fz *f)
{
	if (f->d)
		EXPECT(shmq_dict_close(f->d) == 0);
	if (f->l)
		EXPECT(shmq_list_close(f->l) == 0);
	f->d = NULL;
	f->l = NULL;
}

static void open_objects(struct fz *f)
{
	int r;
	if (!f->d) {
		r = shmq_dict_open(f->h, "d", &f->d);
		TRACE("  open d: %d\n", r);
		EXPECT(one_of(r, 6, 0, -ENOENT, -EINVAL, -EPROTO, -ENOMEM, -EBADF));
		EXPECT(!f->clean || r == 0);
		if (r)
			f->d = NULL;
	}
	if (!f->l) {
		r = shmq_list_open(f->h, "l", &f->l);
		TRACE("  open l: %d\n", r);
		EXPECT(one_of(r, 6, 0, -ENOENT, -EINVAL, -EPROTO, -ENOMEM, -EBADF));
		EXPECT(!f->clean || r == 0);
		if (r)
			f->l = NULL;
	}
}

static bool heap_open(struct fz *f)
{
	if (f->h)
		return true;
	if (f->heap_gone)
		return false;
	sanitize_parts(f);
	int r = shmq_heap_open_fd(f->fd, 0, &f->h);
	TRACE("  heap open: %d\n", r);
	EXPECT(r == 0 || r == -EPROTO); /* the header is never patched */
	EXPECT(r == 0 || !f->clean);
	if (r) {
		f->h = NULL;
		f->heap_gone = true;
		return false;
	}
	open_objects(f);
	return true;
}

/* ---------------------------------------------------------------- patches -- */

static void dirty(struct fz *f)
{
	f->unfixed = true;
	if (f->clean)
		TRACE("  (from here on: no model)\n");
	f->clean = false;
}

/* Copy len bytes of input to off (inside the arena and the file). */
static void patch_at(struct fz *f, struct input *in, uint64_t off, unsigned len)
{
	for (unsigned i = 0; i < len && off + i < f->size; i++)
		if (off + i >= f->g.arena_off)
			f->seg[off + i] = (unsigned char)u8(in);
	dirty(f);
}

/* A word worth storing: offsets of blocks, edge values, lock-like words. */
static uint64_t value(struct fz *f, struct input *in, uint64_t cur)
{
	unsigned s = u8(in);
	return arena_word(in, s % ARENA_WORDS, (int64_t)(s >> 4) - 8, cur, f->blocks, f->nblocks,
			  f->size);
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
		uint64_t off = b->off + 8 * (u16(in) % (b->size / 8 ? b->size / 8 : 1));
		if (off + 8 > f->size)
			return;
		uint64_t cur;
		memcpy(&cur, f->seg + off, 8);
		uint64_t v = value(f, in, cur);
		TRACE("  word at %#llx: %#llx -> %#llx\n", (unsigned long long)off,
		      (unsigned long long)cur, (unsigned long long)v);
		memcpy(f->seg + off, &v, 8);
		dirty(f);
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
	default: { /* follow a word that looks like an offset, patch there */
		if (!f->nblocks)
			return;
		struct blk *b = &f->blocks[u16(in) % f->nblocks];
		uint64_t off = b->off + 8 * (u8(in) % (b->size / 8 ? b->size / 8 : 1)), to;
		if (off + 8 > f->size)
			return;
		memcpy(&to, f->seg + off, 8);
		to += (uint64_t)(int64_t)((int)(u8(in) % 64) - 16);
		if (to < f->g.arena_off || to >= f->size)
			return;
		unsigned len = 1 + u8(in) % 8;
		TRACE("  follow %#llx -> patch %u bytes at %#llx\n", (unsigned long long)off, len,
		      (unsigned long long)to);
		patch_at(f, in, to, len);
		return;
	}
	}
}

/* ------------------------------------------------------------ dict ops -- */

/* Check what a read of key k gave (n, bytes in f->buf) against the model. */
static void model_read(struct fz *f, unsigned k, ssize_t n, size_t cap)
{
	if (!f->clean)
		return;
	struct val *v = &f->dm[k];
	if (!v->present) {
		EXPECT(n == -ENOENT);
		return;
	}
	size_t m = val_bytes(v, f->want);
	if (m > cap) {
		EXPECT(n == -EMSGSIZE);
		return;
	}
	EXPECT(n == (ssize_t)m && memcmp(f->buf, f->want, m) == 0);
}

static size_t cap_of(struct input *in)
{
	unsigned c = u8(in);
	return c < 200 ? BUF : c < 230 ? c - 200 : (size_t)u16(in) % BUF;
}

static void dict_get(struct fz *f, struct input *in, bool pop)
{
	unsigned k = u8(in) % NKEYS;
	size_t cap = cap_of(in);
	memset(f->buf, 0xa5, 64);
	ssize_t n = pop ? shmq_dict_pop(f->d, K(k), f->buf, cap) : shmq_dict_get(f->d, K(k), f->buf, cap);
	TRACE("  d.%s key %u cap %zu: %zd\n", pop ? "pop" : "get", k, cap, n);
	EXPECT(n >= 0 || one_of(n, 4, -ENOENT, -EMSGSIZE, -EPROTO, -EBADF));
	EXPECT(n <= (ssize_t)cap);
	if (n < 0)
		for (int i = 0; i < 64; i++)
			EXPECT(f->buf[i] == 0xa5); /* nothing copied */
	model_read(f, k, n, cap);
	if (f->clean && pop && n >= 0)
		f->dm[k].present = false;
}

static void dict_write(struct fz *f, struct input *in, unsigned what)
{
	unsigned k = u8(in) % NKEYS;
	struct val v = { 0 }, *m = &f->dm[k];
	if (what <= 1 || what == 3)
		v = val_of(in);
	size_t n = val_bytes(&v, f->buf);
	int r;
	switch (what) {
	case 0:
		r = shmq_dict_set(f->d, K(k), f->buf, n);
		TRACE("  d.set key %u (%zu bytes): %d\n", k, n, r);
		EXPECT(one_of(r, 4, 0, -ENOSPC, -EPROTO, -EBADF));
		if (f->clean) {
			EXPECT(r == 0 || r == -ENOSPC);
			if (r == 0)
				*m = v;
		}
		break;
	case 1:
		r = shmq_dict_insert(f->d, K(k), f->buf, n);
		TRACE("  d.insert key %u (%zu bytes): %d\n", k, n, r);
		EXPECT(one_of(r, 5, 0, -EEXIST, -ENOSPC, -EPROTO, -EBADF));
		if (f->clean) {
			/* A full heap: -ENOSPC only where the insert would
			 * store (a present key is -EEXIST first). */
			EXPECT(m->present ? r == -EEXIST : (r == 0 || r == -ENOSPC));
			if (r == 0)
				*m = v;
		}
		break;
	case 2:
		r = shmq_dict_del(f->d, K(k));
		TRACE("  d.del key %u: %d\n", k, r);
		EXPECT(one_of(r, 4, 0, -ENOENT, -EPROTO, -EBADF));
		if (f->clean) {
			EXPECT(r == (m->present ? 0 : -ENOENT));
			m->present = false;
		}
		break;
	case 3: { /* cas: old from the model (the current value) or made up */
		unsigned a = u8(in);
		struct val old = a & 1 && m->present ? *m : val_of(in);
		size_t on = val_bytes(&old, f->buf2);
		r = shmq_dict_cas(f->d, K(k), f->buf2, on, f->buf, n);
		TRACE("  d.cas key %u (%zu -> %zu bytes): %d\n", k, on, n, r);
		EXPECT(one_of(r, 6, 0, -EAGAIN, -ENOENT, -ENOSPC, -EPROTO, -EBADF));
		if (f->clean) {
			size_t cn = m->present ? val_bytes(m, f->want) : 0;
			bool eq = m->present && cn == on && memcmp(f->want, f->buf2, on) == 0;
			/* -ENOSPC only where the swap would store. */
			EXPECT(!m->present ? r == -ENOENT : !eq ? r == -EAGAIN : (r == 0 || r == -ENOSPC));
			if (r == 0)
				*m = v;
		}
		break;
	}
	default: { /* add */
		int64_t delta = (int64_t)u64(in), res = 0;
		r = shmq_dict_add(f->d, K(k), delta, &res);
		TRACE("  d.add key %u %lld: %d (%lld)\n", k, (long long)delta, r, (long long)res);
		EXPECT(one_of(r, 5, 0, -EINVAL, -ENOSPC, -EPROTO, -EBADF));
		if (f->clean) {
			bool bad = m->present && !m->is_int && m->len != 8;
			EXPECT(bad ? r == -EINVAL : (r == 0 || r == -ENOSPC));
			if (r == 0) {
				int64_t cur = 0;
				if (m->present) {
					val_bytes(m, f->want);
					memcpy(&cur, f->want, 8);
				}
				int64_t want = (int64_t)((uint64_t)cur + (uint64_t)delta);
				EXPECT(res == want);
				*m = (struct val){ .present = true, .is_int = true, .len = 8, .iv = want };
			}
		}
		break;
	}
	}
}

/* Keys lo..hi-1 (numbered ones) inserted, or deleted: the table resizes. */
static void dict_bulk(struct fz *f, struct input *in)
{
	unsigned a = u8(in), lo = NFIXED + u8(in) % (NKEYS - NFIXED), hi = lo + 1 + u8(in) % 68;
	if (hi > NKEYS)
		hi = NKEYS;
	TRACE("  d.bulk %s keys %u..%u\n", a & 1 ? "del" : "insert", lo, hi - 1);
	for (unsigned k = lo; k < hi; k++) {
		int r;
		if (a & 1) {
			r = shmq_dict_del(f->d, K(k));
			EXPECT(one_of(r, 4, 0, -ENOENT, -EPROTO, -EBADF));
			if (f->clean) {
				EXPECT(r == (f->dm[k].present ? 0 : -ENOENT));
				f->dm[k].present = false;
			}
		} else {
			struct val v = { .present = true, .seed = (uint8_t)(a + k), .len = (a >> 1) % 48 };
			size_t n = val_bytes(&v, f->buf);
			r = shmq_dict_insert(f->d, K(k), f->buf, n);
			TRACE("    insert key %u: %d (model: %s)\n", k, r,
			      f->dm[k].present ? "present" : "absent");
			EXPECT(one_of(r, 5, 0, -EEXIST, -ENOSPC, -EPROTO, -EBADF));
			if (f->clean) {
				EXPECT(f->dm[k].present ? r == -EEXIST : (r == 0 || r == -ENOSPC));
				if (r == 0)
					f->dm[k] = v;
			}
		}
	}
}

static void dict_len(struct fz *f)
{
	ssize_t n = shmq_dict_len(f->d);
	TRACE("  d.len: %zd\n", n);
	EXPECT(n >= 0 || one_of(n, 2, -EPROTO, -EBADF));
	if (f->clean)
		EXPECT(n == model_len(f));
}

/* A whole walk, buffers of the input's choosing; it must end (each item has
 * a larger order than the last, so it is another entry, and the file holds
 * only so many). */
static void dict_walk(struct fz *f, struct input *in)
{
	/* Entries are 16-byte aligned: no more of them than that. */
	uint64_t cur = 0, items = 0, bound = f->size / 16 + 1;
	unsigned a = u8(in);
	uint8_t seen[NKEYS] = { 0 };
	bool ended = false, nokey = a & 4 && !(a & 8), noval = a & 8 && !(a & 4);
	/* Small buffers until the first -EMSGSIZE, then full ones. */
	size_t kcap0 = a & 1 ? (size_t)u8(in) % 120 : 128, vcap0 = a & 2 ? (size_t)u16(in) % BUF : BUF;
	for (;;) {
		struct iovec key = { f->buf2, kcap0 }, val = { f->buf, vcap0 };
		size_t kcap = key.iov_len, vcap = val.iov_len;
		uint64_t before = cur;
		int r = shmq_dict_next(f->d, &cur, nokey ? NULL : &key, noval ? NULL : &val);
		EXPECT(one_of(r, 5, 1, 0, -EMSGSIZE, -EPROTO, -EBADF));
		if (r == -EMSGSIZE) {
			EXPECT(cur == before);
			EXPECT((!nokey && key.iov_len > kcap) || (!noval && val.iov_len > vcap));
			if (!in->n || u8(in) & 1)
				break; /* give up, or go on with full buffers */
			kcap0 = 128;
			vcap0 = BUF;
			continue;
		}
		if (r != 1) {
			ended = r == 0;
			break;
		}
		if (lenient && cur <= before)
			break; /* fixed bug: an entry's order of UINT64_MAX wrapped the cursor */
		EXPECT(cur > before);
		EXPECT((nokey || key.iov_len <= kcap) && (noval || val.iov_len <= vcap));
		EXPECT(++items <= bound);
		if (!f->clean || nokey)
			continue;
		/* Clean: a key of the model, once, with its value. */
		int64_t k = -1;
		for (unsigned i = 0; i < NKEYS && k < 0; i++)
			if (key_len[i] == key.iov_len && memcmp(key_bytes[i], f->buf2, key.iov_len) == 0)
				k = i;
		EXPECT(k >= 0 && f->dm[k].present && !seen[k]++);
		if (!noval) {
			size_t m = val_bytes(&f->dm[k], f->want);
			EXPECT(val.iov_len == m && memcmp(f->buf, f->want, m) == 0);
		}
	}
	TRACE("  d walk: %llu items\n", (unsigned long long)items);
	if (f->clean && ended)
		EXPECT(items == (uint64_t)model_len(f));
}

static void dict_clear(struct fz *f)
{
	int r = shmq_dict_clear(f->d);
	TRACE("  d.clear: %d\n", r);
	EXPECT(one_of(r, 4, 0, -ENOSPC, -EPROTO, -EBADF));
	if (f->clean) {
		EXPECT(r == 0); /* a full heap too: the dict keeps a spare table */
		if (r == 0)
			for (unsigned k = 0; k < NKEYS; k++)
				f->dm[k].present = false;
	}
}

/* ------------------------------------------------------------ list ops -- */

static struct val lval_of(struct input *in)
{
	unsigned s = u8(in), l = u8(in);
	return (struct val){ .present = true, .seed = (uint8_t)s,
			     .len = l & 0x80 ? (l & 0x7f) * 32 + u8(in) % 32 : l % 64 };
}

/* Python's index for a list of n: -ERANGE (as -1) outside. */
static int64_t py_index(int64_t i, uint32_t n)
{
	if (i < 0)
		i += n;
	return i < 0 || i >= (int64_t)n ? -1 : i;
}

static int64_t index_of(struct input *in)
{
	return (int64_t)(int8_t)u8(in) * (u8(in) & 1 ? 1 : 1000003);
}

static bool list_model(struct fz *f)
{
	return f->clean && f->lm_valid;
}

static void list_read(struct fz *f, struct input *in, bool pop)
{
	int64_t i = u8(in) % 4 == 0 ? -1 : index_of(in);
	size_t cap = cap_of(in);
	memset(f->buf, 0xa5, 64);
	ssize_t n = pop ? shmq_list_pop(f->l, i, f->buf, cap) : shmq_list_get(f->l, i, f->buf, cap);
	TRACE("  l.%s %lld cap %zu: %zd\n", pop ? "pop" : "get", (long long)i, cap, n);
	EXPECT(n >= 0 || one_of(n, 5, -ERANGE, -EMSGSIZE, -ENOSPC, -EPROTO, -EBADF));
	EXPECT(n <= (ssize_t)cap);
	if (!pop)
		EXPECT(n != -ENOSPC);
	/* Nothing copied, but a pop may fail after its copy: its removal needs
	 * a new array (-ENOSPC), or finds the heap corrupted (-EPROTO). */
	if (n < 0 && !(pop && (n == -ENOSPC || n == -EPROTO)))
		for (int b = 0; b < 64; b++)
			EXPECT(f->buf[b] == 0xa5);
	if (!list_model(f))
		return;
	int64_t j = py_index(i, f->llen);
	if (j < 0) {
		EXPECT(n == -ERANGE);
		return;
	}
	size_t m = val_bytes(&f->lm[j], f->want);
	if (m > cap) {
		EXPECT(n == -EMSGSIZE);
		return;
	}
	EXPECT(n == (ssize_t)m || (pop && n == -ENOSPC));
	if (n >= 0)
		EXPECT(memcmp(f->buf, f->want, m) == 0);
	if (pop && n >= 0) {
		memmove(&f->lm[j], &f->lm[j + 1], (f->llen - (uint32_t)j - 1) * sizeof(f->lm[0]));
		f->llen--;
	}
}

static void list_write(struct fz *f, struct input *in, unsigned what)
{
	struct val v = what <= 2 ? lval_of(in) : (struct val){ 0 };
	size_t n = val_bytes(&v, f->buf);
	int64_t i = what >= 1 && what <= 3 ? index_of(in) : 0;
	int r;
	switch (what) {
	case 0:
	case 1: { /* append, insert */
		r = what ? shmq_list_insert(f->l, i, f->buf, n) : shmq_list_append(f->l, f->buf, n);
		TRACE("  l.%s %lld (%zu bytes): %d\n", what ? "insert" : "append", (long long)i, n, r);
		EXPECT(one_of(r, 5, 0, -EOVERFLOW, -ENOSPC, -EPROTO, -EBADF));
		if (!list_model(f))
			break;
		EXPECT(r == 0 || r == -ENOSPC);
		if (r)
			break;
		if (f->llen == MAX_LIST) {
			f->lm_valid = false;
			break;
		}
		int64_t at = !what ? f->llen : i < 0 ? i + f->llen : i;
		at = at < 0 ? 0 : at > f->llen ? f->llen : at;
		memmove(&f->lm[at + 1], &f->lm[at], (f->llen - (uint32_t)at) * sizeof(f->lm[0]));
		f->lm[at] = v;
		f->llen++;
		break;
	}
	case 2: { /* set */
		r = shmq_list_set(f->l, i, f->buf, n);
		TRACE("  l.set %lld (%zu bytes): %d\n", (long long)i, n, r);
		EXPECT(one_of(r, 5, 0, -ERANGE, -ENOSPC, -EPROTO, -EBADF));
		if (!list_model(f))
			break;
		int64_t j = py_index(i, f->llen);
		/* Open bug (lenient): on a full heap an index out of range
		 * gives -ENOSPC (the value is stored before the index is
		 * checked), not -ERANGE. */
		EXPECT(j < 0 ? r == -ERANGE || (lenient && r == -ENOSPC) : (r == 0 || r == -ENOSPC));
		if (r == 0)
			f->lm[j] = v;
		break;
	}
	case 3: { /* del */
		r = shmq_list_del(f->l, i);
		TRACE("  l.del %lld: %d\n", (long long)i, r);
		EXPECT(one_of(r, 5, 0, -ERANGE, -ENOSPC, -EPROTO, -EBADF));
		if (!list_model(f))
			break;
		int64_t j = py_index(i, f->llen);
		EXPECT(j < 0 ? r == -ERANGE : (r == 0 || r == -ENOSPC));
		if (r == 0) {
			memmove(&f->lm[j], &f->lm[j + 1], (f->llen - (uint32_t)j - 1) * sizeof(f->lm[0]));
			f->llen--;
		}
		break;
	}
	case 4: { /* len */
		ssize_t len = shmq_list_len(f->l);
		TRACE("  l.len: %zd\n", len);
		EXPECT(len >= 0 || one_of(len, 2, -EPROTO, -EBADF));
		if (list_model(f))
			EXPECT(len == (ssize_t)f->llen);
		break;
	}
	default: /* clear */
		r = shmq_list_clear(f->l);
		TRACE("  l.clear: %d\n", r);
		EXPECT(one_of(r, 4, 0, -ENOSPC, -EPROTO, -EBADF));
		if (f->clean) {
			/* Open bug (lenient): a full heap gives -ENOSPC (the
			 * new empty array is made before the old is freed). */
			EXPECT(r == 0 || (lenient && r == -ENOSPC));
			if (r == 0) {
				f->llen = 0;
				f->lm_valid = true;
			}
		}
		break;
	}
}

/* Every value by index, then past both ends. */
static void list_scan(struct fz *f)
{
	ssize_t len = shmq_list_len(f->l);
	EXPECT(len >= 0 || one_of(len, 2, -EPROTO, -EBADF));
	if (len < 0)
		return;
	if (list_model(f))
		EXPECT(len == (ssize_t)f->llen);
	for (ssize_t i = 0; i < len && i < 4096; i++) {
		ssize_t n = shmq_list_get(f->l, i, f->buf, BUF);
		EXPECT(n >= 0 || one_of(n, 4, -ERANGE, -EMSGSIZE, -EPROTO, -EBADF));
		if (list_model(f)) {
			size_t m = val_bytes(&f->lm[i], f->want);
			EXPECT(n == (ssize_t)m && memcmp(f->buf, f->want, m) == 0);
		}
	}
	ssize_t n = shmq_list_get(f->l, len, f->buf, BUF);
	EXPECT(n >= 0 || one_of(n, 4, -ERANGE, -EMSGSIZE, -EPROTO, -EBADF));
	if (f->clean)
		EXPECT(n == -ERANGE && shmq_list_get(f->l, -len - 1, f->buf, BUF) == -ERANGE);
}

/* ----------------------------------------------------- life cycle, others -- */

/* An anonymous dict and list of our own, filled, read back, closed (their
 * memory freed). */
static void anon(struct fz *f, struct input *in)
{
	shmq_dict *d;
	shmq_list *l;
	int r = shmq_dict_create(f->h, NULL, &d);
	TRACE("  anonymous dict: %d\n", r);
	EXPECT(one_of(r, 5, 0, -ENOSPC, -EPROTO, -ENOMEM, -EBADF));
	if (r)
		return;
	unsigned n = 1 + u8(in) % 40;
	for (unsigned k = 0; k < n; k++) {
		struct val v = { .present = true, .seed = (uint8_t)k, .len = k * 3 };
		size_t m = val_bytes(&v, f->buf);
		r = shmq_dict_set(d, K(k % NKEYS), f->buf, m);
		EXPECT(one_of(r, 3, 0, -ENOSPC, -EPROTO));
		ssize_t g = shmq_dict_get(d, K(k % NKEYS), f->buf2, BUF);
		EXPECT(g >= 0 || one_of(g, 2, -ENOENT, -EPROTO));
		if (r == 0 && f->clean)
			EXPECT(g == (ssize_t)m && memcmp(f->buf, f->buf2, m) == 0);
	}
	r = shmq_list_create(f->h, NULL, &l);
	EXPECT(one_of(r, 5, 0, -ENOSPC, -EPROTO, -ENOMEM, -EBADF));
	if (r == 0) {
		for (unsigned k = 0; k < n; k++) {
			int a = shmq_list_insert(l, (int64_t)k / 2, f->buf, k);
			EXPECT(one_of(a, 3, 0, -ENOSPC, -EPROTO));
		}
		ssize_t p = shmq_list_pop(l, (int64_t)(u8(in) % 8) - 4, f->buf2, BUF);
		EXPECT(p >= 0 || one_of(p, 4, -ERANGE, -ENOSPC, -EPROTO, -EMSGSIZE));
		EXPECT(shmq_list_close(l) == 0);
	}
	EXPECT(shmq_dict_close(d) == 0);
}

/* Reopen by name, or open a name as the wrong kind (-EINVAL), or one that
 * does not exist (-ENOENT). */
static void reopen(struct fz *f, struct input *in)
{
	unsigned a = u8(in);
	switch (a % 4) {
	case 0:
		if (f->d)
			EXPECT(shmq_dict_close(f->d) == 0);
		f->d = NULL;
		open_objects(f);
		break;
	case 1:
		if (f->l)
			EXPECT(shmq_list_close(f->l) == 0);
		f->l = NULL;
		open_objects(f);
		break;
	case 2: {
		shmq_dict *d = NULL;
		shmq_list *l = NULL;
		int r1 = shmq_dict_open(f->h, "l", &d), r2 = shmq_list_open(f->h, "d", &l);
		TRACE("  open l as a dict: %d, d as a list: %d\n", r1, r2);
		EXPECT(one_of(r1, 6, 0, -ENOENT, -EINVAL, -EPROTO, -ENOMEM, -EBADF));
		EXPECT(one_of(r2, 6, 0, -ENOENT, -EINVAL, -EPROTO, -ENOMEM, -EBADF));
		if (f->clean)
			EXPECT(r1 == -EINVAL && r2 == -EINVAL);
		if (r1 == 0) /* "l" patched into a dict */
			EXPECT(shmq_dict_close(d) == 0);
		if (r2 == 0)
			EXPECT(shmq_list_close(l) == 0);
		break;
	}
	default: {
		shmq_dict *d = NULL;
		int r = shmq_dict_open(f->h, "nope", &d);
		EXPECT(one_of(r, 5, 0, -ENOENT, -EINVAL, -EPROTO, -EBADF)); /* 0, -EINVAL: forged */
		if (f->clean)
			EXPECT(r == -ENOENT);
		if (r == 0)
			EXPECT(shmq_dict_close(d) == 0);
		EXPECT(shmq_dict_name(f->d) == NULL || strcmp(shmq_dict_name(f->d), "d") == 0);
		break;
	}
	}
}

/* "d" removed and closed: the dict and all its memory freed (over whatever
 * the input made of it); then a new empty "d". */
static void remove_dict(struct fz *f)
{
	int r = shmq_heap_remove(f->h, "d");
	TRACE("  remove d: %d\n", r);
	EXPECT(one_of(r, 4, 0, -ENOENT, -EPROTO, -EBADF));
	if (f->clean)
		EXPECT(r == 0);
	if (f->d)
		EXPECT(shmq_dict_close(f->d) == 0);
	f->d = NULL;
	r = shmq_dict_create(f->h, "d", &f->d);
	TRACE("  create d: %d\n", r);
	EXPECT(one_of(r, 6, 0, -EEXIST, -ENOSPC, -EPROTO, -ENOMEM, -EBADF));
	if (r) {
		EXPECT(!f->clean || r == -ENOSPC);
		f->d = NULL;
		f->clean = false; /* the model has no "d" any more */
		return;
	}
	for (unsigned k = 0; k < NKEYS; k++)
		f->dm[k].present = false;
}

static void heap_reopen(struct fz *f)
{
	close_objects(f);
	EXPECT(shmq_heap_close(f->h) == 0);
	f->h = NULL;
	heap_open(f);
}

static void stat_heap(struct fz *f)
{
	struct shmq_heap_stat st;
	int r = shmq_heap_stat(f->h, &st);
	TRACE("  stat: %d: used %llu free %llu objects %u\n", r, (unsigned long long)st.used,
	      (unsigned long long)st.free, st.objects);
	EXPECT(r == 0 || r == -EPROTO);
	if (f->clean)
		EXPECT(r == 0 && st.objects == 2 && st.handles == 1);
}

/* ------------------------------------------------------------ lenient -- */

/* dict.c: a table starts with TABLE_MAGIC; its 64 per-stripe key counts
 * (int64, one per 64 bytes) start 64 bytes in, its buckets 64 + 64 * 64
 * bytes in. The dict's payload holds its magic, then the current table's
 * offset; an entry: next, order, lengths (key << 40 | value), the bytes. */
#define TABLE_MAGIC 0x4c42415451484d53ull
#define COUNT_MAX (1ll << 40)
#define TABLE_BUCKETS_AT (64u + 64u * 64u)
#define ENTRY_HDR 24u
#define VLEN_BITS 40

static unsigned bucket_of(const char *name) /* as heap.c */
{
	uint32_t h = 2166136261u;
	for (const unsigned char *p = (const unsigned char *)name; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h % HEAP_BUCKETS;
}

static void *at(struct fz *f, uint64_t off, uint64_t len)
{
	return off >= f->g.arena_off && off <= f->size && len <= f->size - off ? f->seg + off : NULL;
}

/* Entries of d's current table whose lengths reach past their block have
 * them cut to fit: a resize copies an entry into a new block, which may lie
 * inside a forged entry's range (it was a memcpy of overlapping ranges). */
static void lenient_entries(struct fz *f)
{
	uint64_t off = atomic_load(&hdr(f)->buckets[bucket_of("d")]);
	struct heap_obj *o = NULL;
	for (int steps = 0; off && steps < 64; steps++) {
		o = off % HEAP_OBJ_ALIGN ? NULL : at(f, off, sizeof(*o) + 16);
		if (!o || (o->magic == OBJ_MAGIC && strcmp(o->name, "d") == 0))
			break;
		off = atomic_load(&o->next);
		o = NULL;
	}
	if (!o)
		return;
	uint64_t toff, nb;
	memcpy(&toff, (char *)(o + 1) + 8, 8);
	unsigned char *t = toff % 16 ? NULL : at(f, toff, TABLE_BUCKETS_AT);
	if (!t)
		return;
	memcpy(&nb, t + 8, 8);
	if (nb > (1u << 20) || !at(f, toff, TABLE_BUCKETS_AT + nb * 8))
		return;
	for (uint64_t b = 0; b < nb; b++) {
		uint64_t e;
		memcpy(&e, t + TABLE_BUCKETS_AT + 8 * b, 8);
		for (int steps = 0; e && steps < 1000; steps++) {
			unsigned char *p = e % 16 ? NULL : at(f, e - 16, 16 + ENTRY_HDR);
			if (!p)
				break;
			struct heap_block *blk = (struct heap_block *)p;
			uint64_t cap = blk->cls < HEAP_CLASSES ? class_size(blk->cls) - 16 : 0, lens;
			memcpy(&lens, p + 16 + 16, 8);
			uint64_t kl = lens >> VLEN_BITS, vl = lens & ((1ull << VLEN_BITS) - 1);
			if (kl > cap || vl > cap || ENTRY_HDR + kl + vl > cap) {
				kl = kl > cap ? 0 : kl;
				vl = cap > ENTRY_HDR + kl ? cap - ENTRY_HDR - kl : 0;
				lens = kl << VLEN_BITS | vl;
				memcpy(p + 16 + 16, &lens, 8);
			}
			memcpy(&e, p + 16, 8);
		}
	}
}

/* Lenient: the (fixed) bugs' triggers taken out before each call. Key
 * counts near INT64_MAX overflowed table_len's sum, wants_resize's product
 * and a write's count +- 1 (signed overflow): clamp every count of every
 * table in the file (a table may be forged anywhere 16-byte aligned). */
static void lenient_fix(struct fz *f)
{
	if (!f->unfixed)
		return;
	f->unfixed = false;
	for (uint64_t off = f->g.arena_off; off + 64 + 64 * 64 <= f->size; off += 16) {
		uint64_t magic;
		memcpy(&magic, f->seg + off, 8);
		if (magic != TABLE_MAGIC)
			continue;
		for (unsigned i = 0; i < 64; i++) {
			int64_t n;
			memcpy(&n, f->seg + off + 64 + 64 * i, 8);
			if (n > COUNT_MAX || n < -COUNT_MAX) {
				n = n > 0 ? COUNT_MAX : -COUNT_MAX;
				memcpy(f->seg + off + 64 + 64 * i, &n, 8);
			}
		}
	}
	lenient_entries(f);
}

/* ------------------------------------------------------------ the program -- */

enum { OP_PATCH, OP_WORD, OP_ARENA, OP_FOLLOW, OP_GET, OP_POP, OP_SET, OP_INSERT, OP_DEL,
       OP_CAS, OP_ADD, OP_BULK, OP_LEN, OP_WALK, OP_CLEAR, OP_LAPPEND, OP_LINSERT, OP_LSET,
       OP_LDEL, OP_LLEN, OP_LCLEAR, OP_LGET, OP_LPOP, OP_LSCAN, OP_ANON, OP_REOPEN,
       OP_REMOVE, OP_HEAP_REOPEN, OP_STAT, OP_N };

static void one_op(struct fz *f, struct input *in)
{
	unsigned op = u8(in) % OP_N;
	TRACE("op %u (%zu bytes left)\n", op, in->n);
	if (op <= OP_FOLLOW) {
		one_patch(f, in, op);
		return;
	}
	if (lenient)
		lenient_fix(f);
	if (!heap_open(f))
		return;
	if (op >= OP_GET && op <= OP_CLEAR && !f->d)
		return;
	if (op >= OP_LAPPEND && op <= OP_LSCAN && !f->l)
		return;
	switch (op) {
	case OP_GET: dict_get(f, in, false); break;
	case OP_POP: dict_get(f, in, true); break;
	case OP_SET: dict_write(f, in, 0); break;
	case OP_INSERT: dict_write(f, in, 1); break;
	case OP_DEL: dict_write(f, in, 2); break;
	case OP_CAS: dict_write(f, in, 3); break;
	case OP_ADD: dict_write(f, in, 4); break;
	case OP_BULK: dict_bulk(f, in); break;
	case OP_LEN: dict_len(f); break;
	case OP_WALK: dict_walk(f, in); break;
	case OP_CLEAR: dict_clear(f); break;
	case OP_LAPPEND: list_write(f, in, 0); break;
	case OP_LINSERT: list_write(f, in, 1); break;
	case OP_LSET: list_write(f, in, 2); break;
	case OP_LDEL: list_write(f, in, 3); break;
	case OP_LLEN: list_write(f, in, 4); break;
	case OP_LCLEAR: list_write(f, in, 5); break;
	case OP_LGET: list_read(f, in, false); break;
	case OP_LPOP: list_read(f, in, true); break;
	case OP_LSCAN: list_scan(f); break;
	case OP_ANON: anon(f, in); break;
	case OP_REOPEN: reopen(f, in); break;
	case OP_REMOVE: remove_dict(f); break;
	case OP_HEAP_REOPEN: heap_reopen(f); break;
	default: stat_heap(f); break;
	}
}

/* The creator: "d" and "l" filled from the input, its handle closed.
 * Returns a dup of the heap's fd, or -1. */
static int build(struct fz *f, struct input *in, uint64_t max_size)
{
	struct shmq_heap_attr attr;
	shmq_heap_attr_init(&attr);
	attr.max_size = max_size;
	shmq_heap *h = NULL;
	shmq_dict *d = NULL;
	shmq_list *l = NULL;
	if (shmq_heap_create(NULL, &attr, &h) < 0)
		return -1;
	int fd = -1;
	if (shmq_dict_create(h, "d", &d) || shmq_list_create(h, "l", &l))
		goto out;
	unsigned nd = u8(in) % 32, nl = u8(in) % 40;
	for (unsigned i = 0; i < nd; i++) {
		unsigned k = u8(in) % NKEYS;
		struct val v = val_of(in);
		if (v.seed == 0xff) { /* a counter (-EINVAL: a value of another length) */
			int64_t res;
			int r = shmq_dict_add(d, K(k), (int64_t)v.len - 100, &res);
			bool bad = f->dm[k].present && !f->dm[k].is_int && f->dm[k].len != 8;
			EXPECT(bad ? r == -EINVAL : (r == 0 || r == -ENOSPC));
			if (r == 0)
				f->dm[k] = (struct val){ .present = true, .is_int = true, .len = 8, .iv = res };
			continue;
		}
		size_t n = val_bytes(&v, f->buf);
		int r = shmq_dict_set(d, K(k), f->buf, n);
		EXPECT(r == 0 || r == -ENOSPC);
		if (r == 0)
			f->dm[k] = v;
	}
	for (unsigned i = 0; i < nl; i++) {
		struct val v = lval_of(in);
		size_t n = val_bytes(&v, f->buf);
		int r = shmq_list_append(l, f->buf, n);
		EXPECT(r == 0 || r == -ENOSPC);
		if (r == 0)
			f->lm[f->llen++] = v;
	}
	fd = dup(shmq_heap_fd(h));
out:
	if (d)
		shmq_dict_close(d);
	if (l)
		shmq_list_close(l);
	if (shmq_heap_close(h) != 0)
		__builtin_trap();
	return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	static const uint64_t max_sizes[4] = { 1ull << 20, 2ull << 20, 4ull << 20, 1ull << 20 };
	struct input in = { data, size };
	memset(&f, 0, offsetof(struct fz, buf));
	f.clean = f.lm_valid = true;
	f.salt = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < size; i++)
		f.salt = (f.salt ^ data[i]) * 0x100000001b3ull;
	unsigned g = u8(&in);
	f.fd = build(&f, &in, max_sizes[g & 3]);
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
	collect(&f);
	for (int i = 0; i < MAX_OPS && in.n; i++)
		one_op(&f, &in);
	if (lenient)
		lenient_fix(&f);
	if (heap_open(&f)) {
		/* A last look at everything, then everything closed. */
		if (f.d) {
			dict_len(&f);
			dict_walk(&f, &(struct input){ NULL, 0 });
		}
		if (f.l)
			list_scan(&f);
		close_objects(&f);
		EXPECT(shmq_heap_close(f.h) == 0);
	}
	munmap(f.seg, f.size);
	close(f.fd);
	return 0;
}

/* ------------------------------------------------------------ seed corpus -- */

/* Emitters that consume what the ops above read. */
static void e_val(struct seed *s, unsigned seed, unsigned len) /* val_of */
{
	if (len < 128)
		emit(s, 2, seed, len);
	else if (len < 4096)
		emit(s, 3, seed, 0x80 | len / 64, len % 64);
	else
		emit(s, 4, seed, 0xc0, len & 0xff, len >> 8);
}

static void e_lval(struct seed *s, unsigned seed, unsigned len) /* lval_of */
{
	if (len < 64)
		emit(s, 2, seed, len);
	else
		emit(s, 3, seed, 0x80 | len / 32, len % 32);
}

static void e_write(struct seed *s, unsigned op, unsigned k, unsigned seed, unsigned len)
{
	emit(s, 2, op, k);
	e_val(s, seed, len);
}

static void e_index(struct seed *s, int i) /* index_of: -128..127 */
{
	emit(s, 2, (uint8_t)(int8_t)i, 1);
}

static void e_lread(struct seed *s, unsigned op, int i, unsigned cap)
{
	if (i == -1) {
		emit(s, 3, op, 0, cap);
	} else {
		emit(s, 2, op, 1);
		e_index(s, i);
		emit(s, 1, cap);
	}
}

static void e_word(struct seed *s, unsigned block, unsigned word, int n, ...)
{
	emit(s, 5, OP_WORD, block & 0xff, block >> 8, word & 0xff, word >> 8);
	va_list ap;
	va_start(ap, n);
	for (int i = 0; i < n; i++)
		emit(s, 1, va_arg(ap, int));
	va_end(ap);
}

/* Every operation once or more, against the model (no patch). */
static void e_tour(struct seed *s)
{
	emit(s, 3, OP_GET, 3, 0);
	emit(s, 3, OP_GET, 3, 201); /* a 1-byte buffer: -EMSGSIZE */
	emit(s, 1, OP_LEN);
	e_write(s, OP_SET, 12, 7, 40);
	e_write(s, OP_INSERT, 12, 1, 2); /* -EEXIST */
	e_write(s, OP_INSERT, 0, 1, 0);  /* the empty key, an empty value */
	e_write(s, OP_CAS, 12, 9, 300);
	emit(s, 1, 1);                   /* old: the current value */
	e_write(s, OP_CAS, 5, 2, 3);
	emit(s, 1, 0);
	e_val(s, 9, 9);                  /* old: made up: -EAGAIN */
	emit(s, 10, OP_ADD, 20, 5, 0, 0, 0, 0, 0, 0, 0);
	emit(s, 10, OP_ADD, 20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff);
	emit(s, 10, OP_ADD, 3, 1, 0, 0, 0, 0, 0, 0, 0); /* a 5-byte value: -EINVAL */
	emit(s, 3, OP_POP, 12, 0);
	emit(s, 3, OP_POP, 13, 210); /* a 10-byte buffer */
	emit(s, 2, OP_DEL, 2);
	emit(s, 2, OP_DEL, 2); /* -ENOENT */
	emit(s, 2, OP_WALK, 0);
	emit(s, 2, OP_WALK, 4); /* no key buffer */
	emit(s, 2, OP_WALK, 8); /* no value buffer */
	emit(s, 4, OP_WALK, 1, 2, 0); /* a 2-byte key buffer: -EMSGSIZE, then on */
	emit(s, 5, OP_WALK, 2, 3, 0, 0); /* a 3-byte value buffer */
	emit(s, 1, OP_LAPPEND);
	e_lval(s, 2, 0);
	emit(s, 1, OP_LAPPEND);
	e_lval(s, 3, 100);
	emit(s, 1, OP_LINSERT);
	e_lval(s, 4, 5);
	e_index(s, 1);
	emit(s, 1, OP_LINSERT);
	e_lval(s, 5, 6);
	e_index(s, -100); /* clamped to 0 */
	emit(s, 1, OP_LSET);
	e_lval(s, 6, 7);
	e_index(s, -1);
	emit(s, 1, OP_LSET);
	e_lval(s, 6, 7);
	e_index(s, 100); /* -ERANGE */
	e_lread(s, OP_LGET, 0, 0);
	e_lread(s, OP_LGET, -2, 205);
	e_lread(s, OP_LPOP, -1, 0);
	e_lread(s, OP_LPOP, 2, 0);
	emit(s, 1, OP_LDEL);
	e_index(s, 1);
	emit(s, 2, OP_LLEN, OP_LSCAN);
	emit(s, 2, OP_REOPEN, 0);
	emit(s, 2, OP_REOPEN, 1);
	emit(s, 2, OP_REOPEN, 2);
	emit(s, 2, OP_REOPEN, 3);
	emit(s, 2, OP_ANON, 12);
	emit(s, 1, OP_HEAP_REOPEN);
	emit(s, 3, OP_WALK, 0, OP_STAT);
}

static void write_seeds(const char *dir)
{
	struct seed s = { .n = 0 };
	/* 1: a clean tour, checked against the model: a heap of 2 MiB with 8
	 * keys and 6 list values, then every operation. */
	emit(&s, 3, 1, 8, 6);
	for (unsigned k = 0; k < 8; k++) {
		emit(&s, 1, k);
		e_val(&s, k * 3, k * 5);
	}
	for (unsigned i = 0; i < 6; i++)
		e_lval(&s, i, i * 9);
	e_tour(&s);
	emit(&s, 4, OP_CLEAR, OP_LCLEAR, OP_LEN, OP_LSCAN);
	write_seed(dir, "tour", &s);

	/* 2: bulk inserts (the table grows), a walk, bulk deletes (it
	 * shrinks), "d" removed and made anew, more inserts. */
	s.n = 0;
	emit(&s, 3, 2, 0, 0);
	emit(&s, 4, OP_BULK, 0, 0, 67);
	emit(&s, 3, OP_LEN, OP_WALK, 0);
	emit(&s, 4, OP_BULK, 1, 0, 60);
	emit(&s, 3, OP_LEN, OP_WALK, 0);
	emit(&s, 4, OP_BULK, 2, 20, 30);
	emit(&s, 2, OP_ANON, 39);
	emit(&s, 1, OP_REMOVE);
	emit(&s, 4, OP_BULK, 4, 10, 20);
	emit(&s, 4, OP_LEN, OP_WALK, 0, OP_STAT);
	write_seed(dir, "resize", &s);

	/* 3: the smallest heap, filled with big values until -ENOSPC (then
	 * nothing may have changed; what would not store gives its own answer:
	 * an insert of a present key, a cas that does not match or of an
	 * absent key, an add on a 61000-byte value), cleared (a full heap
	 * too), filled again. */
	s.n = 0;
	emit(&s, 3, 0, 0, 0);
	for (unsigned k = 0; k < 16; k++)
		e_write(&s, OP_SET, k, k, 61000);
	emit(&s, 3, OP_LEN, OP_WALK, 0);
	for (unsigned i = 0; i < 6; i++) {
		emit(&s, 1, OP_LAPPEND);
		e_lval(&s, i, 4000);
	}
	e_write(&s, OP_INSERT, 0, 3, 61000); /* -EEXIST */
	e_write(&s, OP_CAS, 1, 5, 61000);    /* -EAGAIN */
	emit(&s, 1, 0);
	e_val(&s, 9, 100);
	e_write(&s, OP_CAS, 15, 5, 61000);   /* -ENOENT */
	emit(&s, 1, 0);
	e_val(&s, 9, 100);
	emit(&s, 10, OP_ADD, 2, 1, 0, 0, 0, 0, 0, 0, 0); /* -EINVAL */
	e_write(&s, OP_SET, 14, 14, 61000);  /* -ENOSPC */
	emit(&s, 2, OP_LSCAN, OP_CLEAR);
	for (unsigned k = 0; k < 4; k++)
		e_write(&s, OP_SET, k, k, 61000);
	emit(&s, 3, OP_WALK, 0, OP_STAT);
	write_seed(dir, "full", &s);

	/* 4: filled (blocks 0-3: d's table and object, l's array and object,
	 * then the entries and values), then patched: a bucket pointing at a
	 * value of the list, an entry's link at itself, bytes of an entry and
	 * of the list's array, a followed word; then every operation. */
	s.n = 0;
	emit(&s, 3, 1, 10, 10);
	for (unsigned k = 0; k < 10; k++) {
		emit(&s, 1, k + 2);
		e_val(&s, k, k * 7);
	}
	for (unsigned i = 0; i < 10; i++)
		e_lval(&s, i, i * 5);
	e_word(&s, 0, 520 + 7, 2, 2, 20);   /* a bucket: block 20's offset */
	e_word(&s, 4, 0, 3, 2, 4, 0);       /* an entry's next: itself */
	emit(&s, 6, OP_PATCH, 6, 0, 24, 0, 3); /* an entry's lengths */
	emit(&s, 4, 0x10, 0x27, 0x00);
	e_word(&s, 2, 2, 2, 13, 0x7f);       /* the list's head/len word */
	emit(&s, 6, OP_FOLLOW, 1, 0, 1, 16, 3); /* a word of d's object */
	emit(&s, 3, 0x41, 0x41, 0x41);
	e_tour(&s);
	emit(&s, 4, OP_CLEAR, OP_LCLEAR, OP_REMOVE, OP_STAT);
	write_seed(dir, "patched", &s);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	make_keys();
	trace = getenv("FUZZ_DICT_TRACE") != NULL;
	lenient = getenv("FUZZ_DICT_LENIENT") != NULL;
	const char *dir = getenv("FUZZ_DICT_WRITE_SEEDS");
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}
