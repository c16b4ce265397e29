/* The crawler's shared visited-set: see visited.h. */
#include "visited.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>

/* The mapping: this header, then the slot words, the fetch counts and the
 * arena. Written before fork() except for the atomics. */
struct visited {
	size_t map_size;
	uint32_t mask;        /* slots - 1 */
	uint32_t max_entries; /* at most half the slots: probes stay short */
	uint32_t path_max;
	uint32_t arena_size;
	_Atomic uint32_t entries;    /* reserved by inserts (released if they lose) */
	_Atomic uint32_t arena_used; /* bump allocator; offset 0 means "empty slot" */
	_Atomic uint64_t *slot;      /* tag << 32 | arena offset; 0: empty */
	_Atomic uint32_t *fetches;   /* per slot */
	unsigned char *arena;        /* entry: 2-byte length, bytes, NUL */
};

/* FNV-1a, then a murmur3 finaliser so that the low bits (the slot index) and
 * the high bits (the tag) both depend on every byte. */
static uint64_t hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325u;
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)s[i]) * 0x100000001b3u;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdu;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53u;
	return h ^ (h >> 33);
}

struct visited *visited_create(uint32_t max_entries, uint32_t path_max)
{
	if (max_entries == 0 || max_entries > (1u << 30) || path_max == 0 || path_max > 65535) {
		errno = EINVAL;
		return NULL;
	}
	uint64_t slots = 2;
	while (slots < 2ull * max_entries)
		slots <<= 1;
	/* Room for every entry twice over: an insert that loses a race to the
	 * same path has already written its copy, which is then wasted. */
	uint64_t arena = 1 + 2ull * max_entries * (path_max + 3);
	if (arena > UINT32_MAX) {
		errno = EINVAL;
		return NULL;
	}
	size_t size = sizeof(struct visited) + slots * sizeof(uint64_t) + slots * sizeof(uint32_t) +
		      arena;
	/* Shared and anonymous: forked workers see one set. Pages are touched
	 * only as they fill, so the generous arena costs nothing until used. */
	void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return NULL;
	struct visited *v = m;
	v->map_size = size;
	v->mask = (uint32_t)(slots - 1);
	v->max_entries = max_entries;
	v->path_max = path_max;
	v->arena_size = (uint32_t)arena;
	atomic_init(&v->entries, 0);
	atomic_init(&v->arena_used, 1);
	v->slot = (_Atomic uint64_t *)(v + 1);
	v->fetches = (_Atomic uint32_t *)(v->slot + slots);
	v->arena = (unsigned char *)(v->fetches + slots);
	return v;
}

void visited_destroy(struct visited *v)
{
	if (v)
		munmap(v, v->map_size);
}

static size_t entry_len(const struct visited *v, uint32_t off)
{
	return (size_t)v->arena[off] | (size_t)v->arena[off + 1] << 8;
}

/* The slot holding path, or -1 with *empty set to the first empty slot on
 * its probe sequence (UINT32_MAX: none). The acquire load pairs with the
 * inserter's CAS, so the arena bytes it wrote first are visible. */
static int64_t find(struct visited *v, const char *path, size_t len, uint64_t h, uint32_t *empty)
{
	uint32_t tag = (uint32_t)(h >> 32), i = (uint32_t)h & v->mask;
	for (uint32_t n = 0; n <= v->mask; n++, i = (i + 1) & v->mask) {
		uint64_t w = atomic_load_explicit(&v->slot[i], memory_order_acquire);
		if (w == 0) {
			*empty = i;
			return -1;
		}
		uint32_t off = (uint32_t)w;
		if ((uint32_t)(w >> 32) == tag && entry_len(v, off) == len &&
		    memcmp(v->arena + off + 2, path, len) == 0)
			return i;
	}
	*empty = UINT32_MAX;
	return -1;
}

int visited_insert(struct visited *v, const char *path, size_t len)
{
	if (len == 0 || len > v->path_max)
		return -EINVAL;
	uint64_t h = hash(path, len);
	uint32_t off = 0; /* our copy in the arena, once written */
	for (;;) {
		uint32_t i;
		int found = find(v, path, len, h, &i) >= 0;
		if (found || i == UINT32_MAX) {
			if (off)
				atomic_fetch_sub(&v->entries, 1);
			return found ? 0 : -ENOSPC;
		}
		if (!off) {
			if (atomic_fetch_add(&v->entries, 1) >= v->max_entries) {
				atomic_fetch_sub(&v->entries, 1);
				return -ENOSPC;
			}
			uint32_t need = (uint32_t)len + 3;
			off = atomic_load(&v->arena_used);
			do {
				if (off > v->arena_size - need) {
					atomic_fetch_sub(&v->entries, 1);
					return -ENOSPC;
				}
			} while (!atomic_compare_exchange_weak(&v->arena_used, &off, off + need));
			v->arena[off] = (unsigned char)len;
			v->arena[off + 1] = (unsigned char)(len >> 8);
			memcpy(v->arena + off + 2, path, len);
			v->arena[off + 2 + len] = 0;
		}
		uint64_t expect = 0, w = (h >> 32) << 32 | off;
		if (atomic_compare_exchange_strong_explicit(&v->slot[i], &expect, w,
							    memory_order_acq_rel,
							    memory_order_acquire))
			return 1;
		/* Another insert took that slot: probe again, it may be our path. */
	}
}

int visited_count_fetch(struct visited *v, const char *path, size_t len)
{
	uint32_t empty;
	int64_t i = find(v, path, len, hash(path, len), &empty);
	if (i < 0)
		return -ENOENT;
	atomic_fetch_add_explicit(&v->fetches[i], 1, memory_order_relaxed);
	return 0;
}

int visited_foreach(struct visited *v, int (*fn)(const char *path, uint32_t fetches, void *arg),
		    void *arg)
{
	for (uint32_t i = 0; i <= v->mask; i++) {
		uint64_t w = atomic_load_explicit(&v->slot[i], memory_order_acquire);
		if (w == 0)
			continue;
		int r = fn((const char *)v->arena + (uint32_t)w + 2, atomic_load(&v->fetches[i]), arg);
		if (r)
			return r;
	}
	return 0;
}
