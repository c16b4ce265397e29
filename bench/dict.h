/* shmq-bench: the shared dict and list cases (--cases dict,list).
 *
 * shmq's dict and list (include/shmq/dict.h) against what programs use for a
 * key-value table or a list shared between processes: LMDB (an embedded
 * B-tree in a memory map), the naive C design (one process-shared robust
 * mutex over a hash table or a ring in MAP_SHARED memory) and Python's
 * multiprocessing Manager().dict() / .list(). The cases:
 *
 *   DICT_OPS  nproc processes on one dict preloaded with nkeys keys of
 *             DICT_KLEN bytes and values of vsize bytes; each process picks
 *             a key uniformly at random from that set and gets its value
 *             (get_pct in 100 operations) or sets a new value of the same
 *             size; every call is an operation. ops/s over all processes.
 *   LIST_OPS  nproc processes on one list preloaded with nkeys values of
 *             LIST_VLEN bytes; each process alternately appends a value and
 *             pops one, from the front and from the back in turn; every
 *             call is an operation. ops/s over all processes.
 *
 * Every value read is checked: a get returns the value of the key it asked
 * for (the key's index is in the value's first 8 bytes, repeated in its last
 * 8: a tear check), a pop returns a value some process appended; after the
 * run the dict still holds nkeys keys and the list nkeys values. A C system
 * gives its operations as small functions and calls the loops below from its
 * worker() (every C system runs the very same loops, inlined into each peer,
 * as in bench/sync.h); the Python one runs the whole case itself.
 */
#ifndef SHMQ_BENCH_DICT_H
#define SHMQ_BENCH_DICT_H

#include "peer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

enum dict_kind { DICT_OPS, LIST_OPS, DICT_NKINDS };

#define DICT_KLEN 16          /* key bytes */
#define DICT_NKEYS 100000     /* keys preloaded (--dict-keys) */
#define DICT_IDX_BITS 24      /* a value's tag: key index | stamp << 24 */
#define LIST_VLEN 8           /* list value bytes */
#define LIST_PRELOAD 1000     /* values in the list at the start */
#define DICT_MAX_PROCS 8

struct dict_case {
	enum dict_kind kind;
	int nproc;
	unsigned get_pct; /* DICT_OPS: gets in 100 operations, the rest sets */
	size_t vsize;     /* value bytes */
	uint32_t nkeys;   /* keys (DICT_OPS) or values (LIST_OPS) preloaded */
	double secs;
};

/* One worker's counts (in the shared page). */
struct dict_wres {
	uint64_t ops, errors;
	int64_t t_end;
	int rc;
	char note[120];
};

/* One MAP_SHARED page set per run. */
struct dict_shared {
	_Alignas(128) _Atomic uint32_t arrived;
	_Atomic uint32_t go;
	int64_t t0;
	_Alignas(128) _Atomic uint32_t stop;
	_Alignas(128) struct dict_wres res[DICT_MAX_PROCS];
};

struct dict_worker {
	struct dict_shared *sh;
	const struct dict_case *c;
	int id; /* 0 .. nproc-1 */
};

/* What one run of one system measured. */
struct dict_run {
	uint64_t ops, errors;
	int64_t wall_ns;
	char note[120];
};

enum {
	DP_SHMQ = 1, /* the baseline of every ratio */
};

struct dict_peer {
	const char *name;  /* -S name */
	const char *label; /* table */
	unsigned flags;
	unsigned kinds;    /* 1u << DICT_OPS, LIST_OPS: the cases it runs */
	/* Parent before fork: create the structure and preload it (with
	 * dict_preload / list_preload); each worker process; parent after
	 * every worker has exited: the number of keys or values now (or
	 * -errno), then clean up. */
	int (*setup)(const struct dict_case *c, void **ctx);
	int (*worker)(void *ctx, struct dict_worker *w);
	int64_t (*count)(void *ctx);
	void (*teardown)(void *ctx);
	/* Instead of the above: the whole case (Python). 0 or -errno. */
	int (*run)(const struct dict_case *c, struct dict_run *out);
	/* What it uses in this case (a line under the tables), or NULL. */
	const char *(*models)(const struct dict_case *c);
};

#define DICT_KIND(k) (1u << (k))

extern const struct dict_peer *const dict_peers[]; /* bench/dict.c, NULL-terminated */
extern const char *bench_mp_dict_script;          /* bench/mp_dict.py */

/* Harness side (bench/dict.c, called by shmq-bench.c). */
void dict_build_cases(bool quick, double secs, int reps, const char *systems, bool dict,
		      bool list, uint32_t nkeys);
int dict_total_runs(void);
/* Run repetition r of every case, every system once (rotating order). */
void dict_run_rep(int r, bool tty, bool verbose, int *done, int total);
void dict_print(void);
void dict_targets(void);
/* Append the cases to the JSON "cases" array; first: no comma before. */
void dict_json(FILE *f, bool first);

/* ------------------------------------------------------- keys, values -- */

/* splitmix64's finaliser: a bijection, so distinct inputs stay distinct. */
static inline uint64_t dict_mix(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

/* Key i: 16 bytes that look random (bench/mp_dict.py makes the same). */
static inline void dict_key(uint32_t i, unsigned char *k)
{
	uint64_t a = dict_mix(i), b = dict_mix((uint64_t)i | 1ull << 32);
	memcpy(k, &a, 8);
	memcpy(k + 8, &b, 8);
}

/* A value of n bytes tagged tag (the key index in its low DICT_IDX_BITS):
 * the tag in its first 8 bytes and, from 16 bytes on, in its last 8; the
 * bytes between keep what the buffer held. */
static inline void dict_value(unsigned char *v, size_t n, uint64_t tag)
{
	memcpy(v, &tag, 8);
	if (n >= 16)
		memcpy(v + n - 8, &tag, 8);
}

/* Is v (len bytes, or -errno) a whole value of key idx, n bytes long? */
static inline bool dict_value_ok(const unsigned char *v, ssize_t len, size_t n, uint32_t idx)
{
	uint64_t a, b;
	if (len != (ssize_t)n)
		return false;
	memcpy(&a, v, 8);
	if (n >= 16) {
		memcpy(&b, v + n - 8, 8);
		if (a != b)
			return false;
	}
	return (a & ((1u << DICT_IDX_BITS) - 1)) == idx;
}

/* ------------------------------------------------------- worker loops -- */

typedef ssize_t (*dict_get_fn)(void *obj, const void *k, size_t klen, void *buf, size_t cap);
typedef int (*dict_set_fn)(void *obj, const void *k, size_t klen, const void *v, size_t vlen);
typedef int (*list_append_fn)(void *obj, const void *v, size_t vlen);
typedef ssize_t (*list_pop_fn)(void *obj, int64_t index, void *buf, size_t cap);

#define DICT_INLINE static inline __attribute__((always_inline))

/* Setup: the c->nkeys keys of the case, each with its value (tag = index). */
DICT_INLINE int dict_preload(const struct dict_case *c, void *obj, dict_set_fn set)
{
	unsigned char k[DICT_KLEN], *v = bench_buf(c->vsize);
	if (!v)
		return -ENOMEM;
	int rc = 0;
	for (uint32_t i = 0; i < c->nkeys && rc == 0; i++) {
		dict_key(i, k);
		dict_value(v, c->vsize, i);
		rc = set(obj, k, DICT_KLEN, v, c->vsize);
	}
	free(v);
	return rc;
}

/* Setup: c->nkeys values in the list (tag 0 << 48 | i). */
DICT_INLINE int list_preload(const struct dict_case *c, void *obj, list_append_fn append)
{
	int rc = 0;
	for (uint64_t i = 0; i < c->nkeys && rc == 0; i++)
		rc = append(obj, &i, LIST_VLEN);
	return rc;
}

/* Start barrier: warm up before it, time after it. */
static inline void dict_ready(struct dict_worker *w)
{
	bench_arrive(&w->sh->arrived, &w->sh->go);
}

static inline bool dict_stopping(const struct dict_worker *w)
{
	return atomic_load_explicit(&w->sh->stop, memory_order_relaxed) != 0;
}

/* The end of a worker: its counts, or the error that stopped it (and the
 * others with it). Returns rc. */
static inline int dict_done(struct dict_worker *w, uint64_t ops, uint64_t errors, int rc,
			    const char *what)
{
	struct dict_wres *r = &w->sh->res[w->id];
	r->t_end = bench_now();
	r->ops = ops;
	r->errors = errors;
	if (rc < 0) {
		snprintf(r->note, sizeof(r->note), "worker %d: %s: %s", w->id, what, strerror(-rc));
		atomic_store(&w->sh->stop, 1);
	}
	return rc;
}

/* DICT_OPS. Before the barrier, every key is read once (the pages this
 * process will touch are mapped, and the preload is checked). */
DICT_INLINE int dict_loop(struct dict_worker *w, void *obj, dict_get_fn get, dict_set_fn set)
{
	const struct dict_case *c = w->c;
	size_t n = c->vsize, cap = n + 64; /* a longer value is an error, not -EMSGSIZE */
	unsigned char k[DICT_KLEN], *v = bench_buf(n), *buf = bench_buf(cap);
	if (!v || !buf)
		return dict_done(w, 0, 0, -ENOMEM, "buffers");
	uint64_t ops = 0, errors = 0, stamp = (uint64_t)w->id << 16;
	ssize_t rc = 0;
	for (uint32_t i = 0; i < c->nkeys; i++) {
		dict_key(i, k);
		rc = get(obj, k, DICT_KLEN, buf, cap);
		if (rc < 0 && rc != -ENOENT)
			return dict_done(w, 0, 0, (int)rc, "warm-up get");
		errors += !dict_value_ok(buf, rc, n, i);
	}
	/* x's high half picks the key, its low half the operation. */
	uint64_t gets = (uint64_t)c->get_pct * (1ull << 32) / 100, seed = 0x5eed0000u + (uint64_t)w->id;
	dict_ready(w);
	while (!dict_stopping(w)) {
		for (int j = 0; j < 64; j++) {
			uint64_t x = dict_mix(seed += 0x9e3779b97f4a7c15ull);
			uint32_t idx = (uint32_t)(((x >> 32) * c->nkeys) >> 32);
			dict_key(idx, k);
			if ((x & 0xffffffffu) < gets) {
				rc = get(obj, k, DICT_KLEN, buf, cap);
				if (rc < 0 && rc != -ENOENT)
					goto out;
				errors += !dict_value_ok(buf, rc, n, idx);
			} else {
				dict_value(v, n, idx | ++stamp << DICT_IDX_BITS);
				if ((rc = set(obj, k, DICT_KLEN, v, n)) < 0)
					goto out;
			}
		}
		ops += 64;
	}
	rc = 0;
out:
	return dict_done(w, ops, errors, (int)rc, "get/set");
}

/* LIST_OPS: append a value tagged (id + 1) << 48 | seq, pop one (front,
 * then back, in turn). A process pops only after its own append, so the
 * list is never empty when it pops: -ERANGE is an error too. */
DICT_INLINE int list_loop(struct dict_worker *w, void *obj, list_append_fn append, list_pop_fn pop)
{
	uint64_t ops = 0, errors = 0, seq = 0, v, got[2];
	uint64_t tag = (uint64_t)(w->id + 1) << 48, end = (uint64_t)(w->c->nproc + 1) << 48;
	ssize_t rc = 0;
	dict_ready(w);
	while (!dict_stopping(w)) {
		for (int j = 0; j < 32; j++) {
			v = tag | ++seq;
			if ((rc = append(obj, &v, LIST_VLEN)) < 0)
				goto out;
			rc = pop(obj, j & 1 ? -1 : 0, got, sizeof(got));
			if (rc < 0 && rc != -ERANGE)
				goto out;
			errors += rc != LIST_VLEN || got[0] >= end;
		}
		ops += 64;
	}
	rc = 0;
out:
	return dict_done(w, ops, errors, (int)rc, "append/pop");
}

#endif
