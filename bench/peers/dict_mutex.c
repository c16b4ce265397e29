/* The naive C design of a dict and a list shared between processes: one
 * PTHREAD_PROCESS_SHARED + PTHREAD_MUTEX_ROBUST mutex over the whole
 * structure, in a MAP_SHARED region that the harness maps and preloads before
 * it forks, with fixed-size slots sized for the case.
 *
 *   dict  open addressing with linear probing over an index of 64-bit
 *         words (the hash's high half beside the entry's number: a probe
 *         compares keys only on a hash match), at most half full; entries
 *         of key + value in an array beside it. The hash (XXH3, the one
 *         shmq's dict uses) is computed before taking the lock; gets copy
 *         the value out under it.
 *   list  a ring of 8-byte slots (power of two), head and length.
 *
 * A holder that dies leaves the mutex to the next locker (EOWNERDEAD), which
 * marks it consistent and goes on with whatever the dead one left: the
 * usual code, crash-safe only for the lock itself. */
#include "../dict.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

struct mx_entry {
	uint32_t klen, vlen;
	unsigned char k[DICT_KLEN];
	unsigned char v[];
};

struct mx_slot {
	uint32_t len, pad;
	unsigned char v[LIST_VLEN];
};

struct mx {
	_Alignas(64) pthread_mutex_t m;
	bool have_m;
	size_t map_len;
	/* dict: index[mask + 1], then cap entries of esize bytes */
	uint64_t mask;
	uint32_t cap, used;
	size_t esize, vmax;
	uint64_t *index;
	unsigned char *entries;
	/* list: slots[lmask + 1] */
	uint64_t lmask, head, len;
	struct mx_slot *slots;
};

/* The region lands at the same address in every process (inherited by
 * fork), so the pointers above hold in all of them. */

static void mx_teardown(void *ctx)
{
	struct mx *x = ctx;
	if (x->have_m)
		pthread_mutex_destroy(&x->m);
	munmap(x, x->map_len);
}

static int mx_lock(struct mx *x)
{
	int e = pthread_mutex_lock(&x->m);
	if (e == EOWNERDEAD) /* the naive answer: carry on */
		e = pthread_mutex_consistent(&x->m);
	return -e;
}

static uint64_t pow2_at_least(uint64_t n)
{
	uint64_t p = 64;
	while (p < n)
		p <<= 1;
	return p;
}

/* The entry of key k (hash h), or NULL and *empty the index word to fill. */
static struct mx_entry *mx_find(struct mx *x, const void *k, size_t kl, uint64_t h,
				uint64_t **empty)
{
	uint64_t tag = h >> 32;
	for (uint64_t i = h & x->mask;; i = (i + 1) & x->mask) {
		uint64_t w = x->index[i];
		if (w == 0) {
			*empty = &x->index[i];
			return NULL;
		}
		if (w >> 32 != tag)
			continue;
		struct mx_entry *e = (struct mx_entry *)(x->entries + ((w & 0xffffffffu) - 1) * x->esize);
		if (e->klen == kl && memcmp(e->k, k, kl) == 0)
			return e;
	}
}

static ssize_t mx_get(void *o, const void *k, size_t kl, void *buf, size_t cap)
{
	struct mx *x = o;
	uint64_t h = XXH3_64bits(k, kl), *empty;
	int rc = mx_lock(x);
	if (rc < 0)
		return rc;
	struct mx_entry *e = mx_find(x, k, kl, h, &empty);
	ssize_t r = !e ? -ENOENT : e->vlen > cap ? -EMSGSIZE : (ssize_t)e->vlen;
	if (r > 0)
		memcpy(buf, e->v, e->vlen);
	pthread_mutex_unlock(&x->m);
	return r;
}

static int mx_set(void *o, const void *k, size_t kl, const void *v, size_t vl)
{
	struct mx *x = o;
	if (kl > DICT_KLEN || vl > x->vmax)
		return -ENOSPC; /* fixed-size slots */
	uint64_t h = XXH3_64bits(k, kl), *empty;
	int rc = mx_lock(x);
	if (rc < 0)
		return rc;
	struct mx_entry *e = mx_find(x, k, kl, h, &empty);
	if (!e && x->used < x->cap) {
		e = (struct mx_entry *)(x->entries + x->used * x->esize);
		e->klen = (uint32_t)kl;
		memcpy(e->k, k, kl);
		*empty = (h >> 32) << 32 | ++x->used;
	}
	if (e) {
		e->vlen = (uint32_t)vl;
		memcpy(e->v, v, vl);
	}
	pthread_mutex_unlock(&x->m);
	return e ? 0 : -ENOSPC;
}

static int mx_append(void *o, const void *v, size_t vl)
{
	struct mx *x = o;
	if (vl > LIST_VLEN)
		return -ENOSPC;
	int rc = mx_lock(x);
	if (rc < 0)
		return rc;
	if (x->len <= x->lmask) {
		struct mx_slot *s = &x->slots[(x->head + x->len++) & x->lmask];
		s->len = (uint32_t)vl;
		memcpy(s->v, v, vl);
	} else {
		rc = -ENOSPC;
	}
	pthread_mutex_unlock(&x->m);
	return rc;
}

static ssize_t mx_pop(void *o, int64_t index, void *buf, size_t cap)
{
	struct mx *x = o;
	int rc = mx_lock(x);
	if (rc < 0)
		return rc;
	ssize_t r = -ERANGE;
	if (x->len > 0) { /* front (0) or back (-1) only: all this benchmark pops */
		uint64_t at = index == 0 ? x->head : x->head + x->len - 1;
		struct mx_slot *s = &x->slots[at & x->lmask];
		r = s->len > cap ? -EMSGSIZE : (ssize_t)s->len;
		if (r >= 0) {
			memcpy(buf, s->v, s->len);
			x->head += index == 0;
			x->len--;
		}
	}
	pthread_mutex_unlock(&x->m);
	return r;
}

static int mx_setup(const struct dict_case *c, void **ctx)
{
	size_t esize = (sizeof(struct mx_entry) + c->vsize + 7) & ~(size_t)7;
	uint64_t slots = pow2_at_least(2ull * c->nkeys), lslots = 0;
	size_t len = sizeof(struct mx);
	if (c->kind == DICT_OPS) {
		len += slots * 8 + c->nkeys * esize;
	} else {
		lslots = pow2_at_least(c->nkeys + 2 * DICT_MAX_PROCS);
		len += lslots * sizeof(struct mx_slot);
	}
	struct mx *x = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (x == MAP_FAILED)
		return -errno;
	x->map_len = len;
	pthread_mutexattr_t ma;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
	int rc = -pthread_mutex_init(&x->m, &ma);
	pthread_mutexattr_destroy(&ma);
	x->have_m = rc == 0;
	if (rc == 0 && c->kind == DICT_OPS) {
		x->index = (uint64_t *)(x + 1);
		x->entries = (unsigned char *)(x->index + slots);
		x->mask = slots - 1;
		x->cap = c->nkeys;
		x->esize = esize;
		x->vmax = c->vsize;
		rc = dict_preload(c, x, mx_set);
	} else if (rc == 0) {
		x->slots = (struct mx_slot *)(x + 1);
		x->lmask = lslots - 1;
		rc = list_preload(c, x, mx_append);
	}
	if (rc < 0) {
		mx_teardown(x);
		return rc;
	}
	*ctx = x;
	return 0;
}

static int mx_worker(void *ctx, struct dict_worker *w)
{
	if (w->c->kind == DICT_OPS)
		return dict_loop(w, ctx, mx_get, mx_set);
	return list_loop(w, ctx, mx_append, mx_pop);
}

static int64_t mx_count(void *ctx)
{
	struct mx *x = ctx;
	return x->slots ? (int64_t)x->len : (int64_t)x->used;
}

static const char *mx_models(const struct dict_case *c)
{
	if (c->kind == DICT_OPS)
		return "one robust process-shared pthread mutex over an open-addressing hash table "
		       "(XXH3, linear probing, at most half full, fixed-size entries) in MAP_SHARED "
		       "memory; the hash outside the lock, the copy inside";
	return "one robust process-shared pthread mutex over a ring of fixed 8-byte slots in "
	       "MAP_SHARED memory";
}

const struct dict_peer dict_mutex = {
	.name = "mutex-map",
	.label = "robust mutex + table",
	.kinds = DICT_KIND(DICT_OPS) | DICT_KIND(LIST_OPS),
	.setup = mx_setup,
	.worker = mx_worker,
	.count = mx_count,
	.teardown = mx_teardown,
	.models = mx_models,
};
