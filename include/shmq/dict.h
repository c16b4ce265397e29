/* shmq shared dict and list, objects of a heap (shmq/heap.h has their common
 * life cycle: create, open, close, name). What multiprocessing's
 * Manager().dict() and .list() give, with no server process: every process
 * works on the structure in place, in shared memory.
 *
 * Keys and values are byte strings: values of any length the heap can hold,
 * keys up to SHMQ_DICT_KEY_MAX bytes (longer: -EINVAL). A key of 0 bytes is a
 * key; a value of 0 bytes is a value. Every operation is atomic
 * (linearizable) and crash-safe: a process killed at any instruction leaves
 * each operation done entirely or not at all, and nobody waits on a dead
 * process for more than about 0.1 s. A kill may leak at most the one heap
 * block the killed process was allocating or freeing.
 *
 * Dict: lock-free reads (get, len, next never wait for a writer, never see a
 * torn or freed value); writers lock one of 64 stripes of the key space, write
 * the new entry out of place and publish it with one atomic store. Memory of
 * replaced and removed entries is reused only once no live process can still
 * be reading it (epochs; a dead reader's pin is dropped by the liveness
 * checks). The table grows as keys come and shrinks when they go.
 *
 * List: a ring of values under a robust mutex: appends and pops at either end
 * are O(1), inserts and deletes in the middle O(n) (copy of offsets).
 *
 * Errors (besides those of each call): -EINVAL a NULL handle or out pointer,
 * or a NULL buffer with a nonzero length; -ENOSPC the heap is full (nothing
 * changed: old values stay); -EPROTO the structure in the heap is corrupted
 * (hostile bytes give this, never a crash or an endless loop); -EBADF the
 * heap handle lost its participant slot (see shmq_heap_open).
 */
#ifndef SHMQ_DICT_H
#define SHMQ_DICT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "heap.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmq_dict shmq_dict;
#define SHMQ_DICT_KEY_MAX ((1u << 24) - 1) /* 16 MiB - 1 */
typedef struct shmq_list shmq_list;

/* ------------------------------------------------------------------ dict -- */
int shmq_dict_create(shmq_heap *h, const char *name, shmq_dict **out);
int shmq_dict_open(shmq_heap *h, const char *name, shmq_dict **out);
int shmq_dict_close(shmq_dict *d);
const char *shmq_dict_name(shmq_dict *d);

/* d[k] = v. Returns 0. */
int shmq_dict_set(shmq_dict *d, const void *k, size_t klen, const void *v, size_t vlen);
/* d[k] = v only if k is absent. Returns 0; -EEXIST (nothing changed). */
int shmq_dict_insert(shmq_dict *d, const void *k, size_t klen, const void *v, size_t vlen);
/* Copy d[k] into buf. Returns its length; -ENOENT no such key; -EMSGSIZE the
 * value is longer than cap (nothing copied). Never waits. */
ssize_t shmq_dict_get(shmq_dict *d, const void *k, size_t klen, void *buf, size_t cap);
/* Copy d[k] into buf and remove k. Returns its length; -ENOENT; -EMSGSIZE
 * (nothing copied, nothing removed). */
ssize_t shmq_dict_pop(shmq_dict *d, const void *k, size_t klen, void *buf, size_t cap);
/* Remove k. Returns 0; -ENOENT. */
int shmq_dict_del(shmq_dict *d, const void *k, size_t klen);
/* d[k] = v only if d[k] is now exactly old (olen bytes). Returns 0; -EAGAIN
 * the value differs (nothing changed); -ENOENT no such key. */
int shmq_dict_cas(shmq_dict *d, const void *k, size_t klen, const void *old, size_t olen,
		  const void *v, size_t vlen);
/* d[k] += delta, the value a native int64_t (absent: 0, then created); the new
 * value in *result (may be NULL). Returns 0; -EINVAL the value is not 8 bytes
 * (nothing changed). Wraps around on overflow, like unsigned arithmetic. */
int shmq_dict_add(shmq_dict *d, const void *k, size_t klen, int64_t delta, int64_t *result);
/* The number of keys (a snapshot). Never waits. */
ssize_t shmq_dict_len(shmq_dict *d);
/* Remove every key; the table's memory shrinks back. Returns 0. */
int shmq_dict_clear(shmq_dict *d);
/* Walk the dict: *cursor 0 starts a walk. key->iov_len and val->iov_len are
 * the buffers' capacities on entry and the item's lengths on return (either
 * iovec may be NULL: not copied). Returns 1 an item (cursor advanced), 0 the
 * end, -EMSGSIZE a buffer is too small (lengths set, nothing copied, cursor
 * kept). A key present for the whole walk is returned exactly once, whatever
 * other processes change meanwhile; keys are returned in no useful order.
 * Never waits. */
int shmq_dict_next(shmq_dict *d, uint64_t *cursor, struct iovec *key, struct iovec *val);
/* shmq_dict_next, and *seq (may be NULL) the item's insertion sequence: keys
 * sorted by it come in the order they were inserted, as a Python dict keeps
 * them (setting a present key keeps its place; deleting it and setting it
 * again moves it to the end). */
int shmq_dict_next_seq(shmq_dict *d, uint64_t *cursor, struct iovec *key, struct iovec *val,
		       uint64_t *seq);

/* ------------------------------------------------------------------ list -- */
/* Indexes follow Python: a negative index counts from the end (-1 is the
 * last); an index out of range is -ERANGE, except for insert, which clamps
 * (as list.insert does). */
int shmq_list_create(shmq_heap *h, const char *name, shmq_list **out);
int shmq_list_open(shmq_heap *h, const char *name, shmq_list **out);
int shmq_list_close(shmq_list *l);
const char *shmq_list_name(shmq_list *l);

/* Returns 0; -EOVERFLOW the list holds 2^32 - 1 values already. */
int shmq_list_append(shmq_list *l, const void *v, size_t vlen);
int shmq_list_insert(shmq_list *l, int64_t index, const void *v, size_t vlen);
/* Copy l[index] into buf. Returns its length; -ERANGE; -EMSGSIZE (nothing
 * copied). */
ssize_t shmq_list_get(shmq_list *l, int64_t index, void *buf, size_t cap);
/* l[index] = v. Returns 0; -ERANGE. */
int shmq_list_set(shmq_list *l, int64_t index, const void *v, size_t vlen);
/* Copy l[index] into buf and remove it (index -1: the last, 0: the first).
 * Returns its length; -ERANGE (also on an empty list); -EMSGSIZE (nothing
 * copied, nothing removed). */
ssize_t shmq_list_pop(shmq_list *l, int64_t index, void *buf, size_t cap);
/* Remove l[index]. Returns 0; -ERANGE. */
int shmq_list_del(shmq_list *l, int64_t index);
/* The number of values. */
ssize_t shmq_list_len(shmq_list *l);
/* Remove every value. Returns 0. */
int shmq_list_clear(shmq_list *l);

#ifdef __cplusplus
}
#endif

#endif
