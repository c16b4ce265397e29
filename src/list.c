/* Shared list: a ring of value offsets in a heap, under one robust mutex (see
 * shmq/dict.h for the contract).
 *
 * Layout (offsets only): list_shared holds the mutex, the intent record and
 * the current array; an array holds its capacity (a power of two), one word
 * packing head and length, and the ring of slots; each value is a block of
 * its own (length, bytes), immutable once stored.
 *
 * Every operation builds what it needs aside (the value's block; a new array
 * when it inserts or deletes in the middle, grows or shrinks; clear works in
 * place, so that a full heap can be cleared), then records
 * the change in the intent: the word to store (a slot), the array and the
 * head/length after, the value and the array to free after. Applying it is
 * idempotent; a process that takes the mutex from a dead holder applies the
 * intent it left, so a kill at any instruction leaves the operation done or
 * not done (and leaks at most one block). Readers take the mutex too: values
 * are freed as soon as they leave the list.
 */
#include "heap.h"
#include "mutex.h"
#include "testhook.h"

#include <errno.h>
#include <stdlib.h>

/* Every shared word below is read and written under the list's mutex, which
 * orders them (relaxed accesses: plain moves). Only the intent's op is
 * published with release and read with acquire, for a replay by a process
 * that took the mutex from a dead holder without a release to pair with. */
static uint64_t ld(_Atomic uint64_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed);
}

static void st(_Atomic uint64_t *p, uint64_t v)
{
	atomic_store_explicit(p, v, memory_order_relaxed);
}

#include <string.h>

#define LIST_MAGIC 0x5453494c51484d53ull  /* "SHMQLIST" */
#define ARRAY_MAGIC 0x5952524151484d53ull /* "SHMQARRY" */
#define MIN_CAP 8u
#define MAX_LEN 0xffffffffull /* length is 32 bits of the head/len word */

struct list_item {
	uint64_t vlen; /* immutable, like the bytes after it */
};

struct list_array {
	uint64_t magic; /* ARRAY_MAGIC: immutable */
	uint64_t cap;   /* slots, a power of two in MIN_CAP..2^32: immutable */
	/* head << 32 | length: stored by the mutex holder; the commit of the
	 * operations that keep their array. */
	_Atomic uint64_t hl;
	uint64_t pad;
	_Atomic uint64_t slots[]; /* item offsets */
};

enum { OP_NONE, OP_COMMIT };
struct list_intent {
	_Atomic uint32_t op; /* written last when set, last when done */
	uint32_t drop_items; /* clear: free arr's items in drop_hl's range */
	uint64_t word;       /* offset of a slot to store val into, or 0 */
	uint64_t val;
	uint64_t arr;        /* the array after, and its head/len */
	uint64_t hl;
	uint64_t item;       /* a value to free after, or 0 */
	uint64_t old_arr;    /* an array to free after, or 0 */
	uint64_t drop_hl;    /* clear: the head/len its items were in */
};

struct list_shared {
	uint64_t magic;       /* immutable */
	struct mutex lock;
	struct list_intent intent; /* the mutex holder's */
	_Atomic uint64_t arr; /* the current array: the mutex holder stores */
};

struct shmq_list {
	struct heap_ref ref;
	shmq_heap *h;
	struct list_shared *s;
};

static uint64_t array_bytes(uint64_t cap)
{
	return sizeof(struct list_array) + cap * sizeof(uint64_t);
}

static struct list_array *array_at(shmq_heap *h, uint64_t off)
{
	if (!off || off % HEAP_GRAIN)
		return NULL;
	struct list_array *a = heap_at(h, off, sizeof(*a));
	if (!a || a->magic != ARRAY_MAGIC || a->cap < MIN_CAP || a->cap > MAX_LEN + 1 ||
	    (a->cap & (a->cap - 1)) || !heap_at(h, off, array_bytes(a->cap)))
		return NULL;
	uint64_t hl = ld(&a->hl);
	if (hl >> 32 >= a->cap || (hl & MAX_LEN) > a->cap)
		return NULL;
	return a;
}

static struct list_item *item_at(shmq_heap *h, uint64_t off)
{
	if (off % HEAP_GRAIN)
		return NULL;
	struct list_item *it = heap_at(h, off, sizeof(*it));
	if (!it || it->vlen > SHMQ_HEAP_MAX_MAX || !heap_at(h, off, sizeof(*it) + it->vlen))
		return NULL;
	return it;
}

static uint64_t pack(uint64_t head, uint64_t len)
{
	return head << 32 | len;
}

/* The state an operation works on, read under the mutex. */
struct view {
	uint64_t off;          /* the array */
	struct list_array *a;
	uint64_t head, len, mask;
};

static _Atomic uint64_t *slot(struct view *v, uint64_t i)
{
	return &v->a->slots[(v->head + i) & v->mask];
}

static int view_of(shmq_list *l, struct view *v)
{
	v->off = ld(&l->s->arr);
	v->a = array_at(l->h, v->off);
	if (!v->a)
		return -EPROTO;
	uint64_t hl = ld(&v->a->hl);
	v->head = hl >> 32;
	v->len = hl & MAX_LEN;
	v->mask = v->a->cap - 1;
	return 0;
}

/* ---------------------------------------------------------------- intents -- */

/* Free the items of the array at off in the range hl (head << 32 | len),
 * emptying each slot first: a death mid-way leaks one item at most, and a
 * replay goes on from there. */
static void free_items(shmq_heap *h, uint64_t off, uint64_t hl)
{
	struct list_array *a = array_at(h, off);
	if (!a)
		return;
	uint64_t head = hl >> 32, len = hl & MAX_LEN;
	if (len > a->cap)
		return; /* hostile */
	for (uint64_t i = 0; i < len; i++) {
		_Atomic uint64_t *s = &a->slots[(head + i) & (a->cap - 1)];
		uint64_t item = ld(s);
		st(s, 0);
		if (item)
			heap_free(h, item);
	}
}

/* Apply the intent: idempotent (the next holder after a death runs it). */
static void intent_apply(shmq_list *l)
{
	shmq_heap *h = l->h;
	struct list_intent *in = &l->s->intent;
	_Atomic uint64_t *w = in->word % 8 ? NULL : heap_at(h, in->word, sizeof(*w));
	if (in->word && w)
		st(w, in->val);
	struct list_array *a = array_at(h, in->arr);
	if (a) {
		st(&a->hl, in->hl);
		st(&l->s->arr, in->arr);
	}
	/* Each free is forgotten before it is done: a death in between
	 * leaks the block rather than freeing it twice. */
	uint64_t item = in->item;
	in->item = 0;
	if (item)
		heap_free(h, item);
	if (in->drop_items)
		free_items(h, in->arr, in->drop_hl);
	if (in->old_arr && in->old_arr != in->arr) {
		uint64_t old = in->old_arr;
		in->old_arr = 0;
		heap_free(h, old);
	}
	atomic_store_explicit(&in->op, OP_NONE, memory_order_release);
}

/* Record a change (see struct list_intent) and apply it. drop_hl: clear
 * in place, freeing the items that were in that range (0: none). */
static void commit(shmq_list *l, _Atomic uint64_t *word, uint64_t val, uint64_t arr, uint64_t hl,
		   uint64_t item, uint64_t old_arr, uint64_t drop_hl)
{
	struct list_intent *in = &l->s->intent;
	in->word = word ? heap_off(l->h, (const void *)word) : 0;
	in->val = val;
	in->arr = arr;
	in->hl = hl;
	in->item = item;
	in->old_arr = old_arr;
	in->drop_items = drop_hl != 0;
	in->drop_hl = drop_hl;
	atomic_store_explicit(&in->op, OP_COMMIT, memory_order_release);
	TEST_HOOK(SHMQ_HOOK_LIST_INTENT);
	intent_apply(l);
}

static int list_lock(shmq_list *l)
{
	if (!l)
		return -EINVAL;
	if (heap_slot(l->h) < 0)
		return -EBADF;
	int r = mutex_lock(&l->s->lock, heap_parts(l->h), heap_owner(l->h), -1);
	if (r == -EOWNERDEAD) {
		if (atomic_load_explicit(&l->s->intent.op, memory_order_acquire) == OP_COMMIT)
			intent_apply(l);
		r = 0;
	}
	return r;
}

static void list_unlock(shmq_list *l)
{
	mutex_unlock(&l->s->lock, heap_owner(l->h));
}

/* ----------------------------------------------------------------- arrays -- */

static int array_new(shmq_heap *h, uint64_t cap, uint64_t *off)
{
	int err = heap_alloc(h, array_bytes(cap), off);
	if (err)
		return err;
	struct list_array *a = heap_at(h, *off, array_bytes(cap));
	if (!a) {
		heap_free(h, *off);
		return -EPROTO;
	}
	memset(a, 0, array_bytes(cap));
	a->magic = ARRAY_MAGIC;
	a->cap = cap;
	return 0;
}

/* A new array holding v's items with a hole at index `hole` (for an insert)
 * or without index `skip` (for a delete); UINT64_MAX for neither. Head 0. */
static int array_copy(shmq_list *l, struct view *v, uint64_t len_after, uint64_t hole,
		      uint64_t skip, uint64_t *off)
{
	uint64_t cap = MIN_CAP;
	while (cap < len_after)
		cap *= 2;
	/* Keep slack: an array more than a quarter full keeps its size or
	 * doubles, so appends after a middle insert stay O(1). */
	if (cap < len_after * 2 && cap <= MAX_LEN)
		cap *= 2;
	int err = array_new(l->h, cap, off);
	if (err)
		return err;
	struct list_array *na = array_at(l->h, *off);
	uint64_t j = 0;
	for (uint64_t i = 0; i < v->len; i++) {
		if (i == skip)
			continue;
		if (j == hole)
			j++;
		uint64_t item = ld(slot(v, i));
		st(&na->slots[j++], item);
	}
	return 0;
}

/* ----------------------------------------------------------------- values -- */

static int item_new(shmq_heap *h, const void *val, size_t vlen, uint64_t *off)
{
	int err = heap_alloc(h, sizeof(struct list_item) + vlen, off);
	if (err)
		return err;
	struct list_item *it = heap_at(h, *off, sizeof(*it) + vlen);
	if (!it) {
		heap_free(h, *off);
		return -EPROTO;
	}
	it->vlen = vlen;
	if (vlen)
		memcpy(it + 1, val, vlen);
	return 0;
}

/* Python's index: negative counts from the end. -ERANGE outside. */
static int norm_index(int64_t index, uint64_t len, uint64_t *out)
{
	if (index < 0)
		index += (int64_t)len;
	if (index < 0 || (uint64_t)index >= len)
		return -ERANGE;
	*out = (uint64_t)index;
	return 0;
}

/* Copy the value in slot i out. Returns its length, -EMSGSIZE, -EPROTO. */
static ssize_t copy_value(shmq_list *l, struct view *v, uint64_t i, void *buf, size_t cap,
			  uint64_t *item)
{
	*item = ld(slot(v, i));
	struct list_item *it = item_at(l->h, *item);
	if (!it)
		return -EPROTO;
	if (it->vlen > cap)
		return -EMSGSIZE;
	if (it->vlen)
		memcpy(buf, it + 1, it->vlen);
	return (ssize_t)it->vlen;
}

/* -------------------------------------------------------------- the API -- */

/* Insert the value at index (already clamped to 0..len). */
static int insert_at(shmq_list *l, struct view *v, uint64_t index, uint64_t item)
{
	if (v->len >= MAX_LEN)
		return -EOVERFLOW;
	uint64_t hl_len = v->len + 1;
	if (v->len < v->a->cap && index == v->len) { /* append in place */
		commit(l, slot(v, index), item, v->off, pack(v->head, hl_len), 0, 0, 0);
		return 0;
	}
	if (v->len < v->a->cap && index == 0) { /* prepend in place */
		uint64_t head = (v->head - 1) & v->mask;
		commit(l, &v->a->slots[head], item, v->off, pack(head, hl_len), 0, 0, 0);
		return 0;
	}
	uint64_t noff;
	int err = array_copy(l, v, hl_len, index, UINT64_MAX, &noff);
	if (err)
		return err;
	struct list_array *na = array_at(l->h, noff);
	commit(l, &na->slots[index], item, noff, pack(0, hl_len), 0, v->off, 0);
	return 0;
}

static int list_insert(shmq_list *l, int64_t index, bool append, const void *val, size_t vlen)
{
	if (!l || (!val && vlen))
		return -EINVAL;
	uint64_t item;
	int err = item_new(l->h, val, vlen, &item);
	if (err)
		return err;
	if ((err = list_lock(l)) == 0) {
		struct view v;
		if ((err = view_of(l, &v)) == 0) {
			int64_t n = (int64_t)v.len;
			int64_t i = append ? n : index < 0 ? index + n : index;
			i = i < 0 ? 0 : i > n ? n : i; /* list.insert clamps */
			err = insert_at(l, &v, (uint64_t)i, item);
		}
		list_unlock(l);
	}
	if (err)
		heap_free(l->h, item);
	return err;
}

int shmq_list_append(shmq_list *l, const void *v, size_t vlen)
{
	return list_insert(l, 0, true, v, vlen);
}

int shmq_list_insert(shmq_list *l, int64_t index, const void *v, size_t vlen)
{
	return list_insert(l, index, false, v, vlen);
}

ssize_t shmq_list_get(shmq_list *l, int64_t index, void *buf, size_t cap)
{
	if (l && !buf && cap)
		return -EINVAL;
	int err = list_lock(l);
	if (err)
		return err;
	struct view v;
	uint64_t i, item;
	ssize_t r = view_of(l, &v);
	if (r == 0 && (r = norm_index(index, v.len, &i)) == 0)
		r = copy_value(l, &v, i, buf, cap, &item);
	list_unlock(l);
	return r;
}

int shmq_list_set(shmq_list *l, int64_t index, const void *val, size_t vlen)
{
	if (!l || (!val && vlen))
		return -EINVAL;
	uint64_t item = 0;
	int err = item_new(l->h, val, vlen, &item);
	/* A full heap: an index out of range is still -ERANGE. */
	bool full = err == -ENOSPC;
	if (err && !full)
		return err;
	if ((err = list_lock(l)) == 0) {
		struct view v;
		uint64_t i;
		if ((err = view_of(l, &v)) == 0 && (err = norm_index(index, v.len, &i)) == 0 &&
		    full) {
			err = -ENOSPC;
		} else if (err == 0) {
			_Atomic uint64_t *s = slot(&v, i);
			commit(l, s, item, v.off, pack(v.head, v.len), ld(s), 0, 0);
		}
		list_unlock(l);
	}
	if (err)
		heap_free(l->h, item);
	return err;
}

/* Remove slot i of v (its item freed after the commit). */
static int remove_at(shmq_list *l, struct view *v, uint64_t i, uint64_t item)
{
	uint64_t len = v->len - 1;
	bool shrink = v->a->cap > MIN_CAP && len < v->a->cap / 4;
	if (!shrink && i == 0) {
		commit(l, NULL, 0, v->off, pack((v->head + 1) & v->mask, len), item, 0, 0);
		return 0;
	}
	if (!shrink && i == len) {
		commit(l, NULL, 0, v->off, pack(v->head, len), item, 0, 0);
		return 0;
	}
	uint64_t noff;
	int err = array_copy(l, v, len, UINT64_MAX, i, &noff);
	if (err == -ENOSPC && !shrink)
		return err;
	if (err) { /* no memory to shrink: remove in place where we can */
		if (i == 0 || i == len)
			commit(l, NULL, 0, v->off,
			       pack(i == 0 ? (v->head + 1) & v->mask : v->head, len), item, 0, 0);
		return i == 0 || i == len ? 0 : err;
	}
	commit(l, NULL, 0, noff, pack(0, len), item, v->off, 0);
	return 0;
}

static ssize_t list_remove(shmq_list *l, int64_t index, bool copy, void *buf, size_t cap)
{
	if (l && !buf && cap)
		return -EINVAL;
	int err = list_lock(l);
	if (err)
		return err;
	struct view v;
	uint64_t i, item = 0;
	ssize_t r = view_of(l, &v);
	if (r == 0 && (r = norm_index(index, v.len, &i)) == 0) {
		if (copy) {
			r = copy_value(l, &v, i, buf, cap, &item);
		} else {
			item = ld(slot(&v, i));
		}
		if (r >= 0) {
			int e = remove_at(l, &v, i, item);
			r = e ? e : r;
		}
	}
	list_unlock(l);
	return r;
}

ssize_t shmq_list_pop(shmq_list *l, int64_t index, void *buf, size_t cap)
{
	return list_remove(l, index, true, buf, cap);
}

int shmq_list_del(shmq_list *l, int64_t index)
{
	return (int)list_remove(l, index, false, NULL, 0);
}

ssize_t shmq_list_len(shmq_list *l)
{
	int err = list_lock(l);
	if (err)
		return err;
	struct view v;
	ssize_t r = view_of(l, &v);
	list_unlock(l);
	return r ? r : (ssize_t)v.len;
}

int shmq_list_clear(shmq_list *l)
{
	int err = list_lock(l);
	if (err)
		return err;
	/* In place, so that a full heap can be cleared; then, if memory
	 * allows, back to the smallest array. */
	struct view v;
	uint64_t noff;
	if ((err = view_of(l, &v)) == 0 && v.len) {
		commit(l, NULL, 0, v.off, 0, 0, 0, pack(v.head, v.len));
		if (v.a->cap > MIN_CAP && array_new(l->h, MIN_CAP, &noff) == 0)
			commit(l, NULL, 0, noff, 0, 0, v.off, 0);
	}
	list_unlock(l);
	return err;
}

/* ------------------------------------------------------------ life cycle -- */

static void list_init(void *payload, void *arg)
{
	struct list_shared *s = payload;
	s->magic = LIST_MAGIC;
	mutex_init(&s->lock, 0);
	st(&s->arr, *(uint64_t *)arg);
}

/* Free the values and the array (heap mutex held, nobody holds the list). */
static void list_destroy(shmq_heap *h, struct heap_obj *o)
{
	struct list_shared *s = (struct list_shared *)(o + 1);
	if (o->size < sizeof(*s) || s->magic != LIST_MAGIC)
		return;
	shmq_list l = { .h = h, .s = s };
	if (atomic_load(&s->intent.op) == OP_COMMIT)
		intent_apply(&l);
	uint64_t arr = ld(&s->arr);
	st(&s->arr, 0);
	struct list_array *a = array_at(h, arr);
	if (a) {
		free_items(h, arr, ld(&a->hl));
		heap_free(h, arr);
	}
}

static const struct heap_kind_ops list_ops = { .departed = NULL, .destroy = list_destroy };

__attribute__((constructor)) static void list_register(void)
{
	heap_kind_register(HEAP_KIND_LIST, &list_ops);
}

static int list_new(struct heap_ref *ref, shmq_list **out)
{
	struct list_shared *s = ref->payload;
	if (ref->obj->size < sizeof(*s) || s->magic != LIST_MAGIC) {
		heap_obj_close(ref);
		return -EPROTO;
	}
	shmq_list *l = malloc(sizeof(*l));
	if (!l) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	l->ref = *ref;
	l->h = ref->heap;
	l->s = s;
	*out = l;
	return 0;
}

int shmq_list_create(shmq_heap *h, const char *name, shmq_list **out)
{
	if (!h || !out)
		return -EINVAL;
	uint64_t aoff;
	int err = array_new(h, MIN_CAP, &aoff);
	if (err)
		return err;
	struct heap_ref ref;
	err = heap_obj_create(h, name, HEAP_KIND_LIST, sizeof(struct list_shared), NULL, list_init,
			      &aoff, &ref);
	if (err) {
		heap_free(h, aoff);
		return err;
	}
	return list_new(&ref, out);
}

int shmq_list_open(shmq_heap *h, const char *name, shmq_list **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_LIST, &ref);
	return err ? err : list_new(&ref, out);
}

int shmq_list_close(shmq_list *l)
{
	if (!l)
		return -EINVAL;
	heap_obj_close(&l->ref);
	free(l);
	return 0;
}

const char *shmq_list_name(shmq_list *l)
{
	return l ? l->ref.name : NULL;
}
