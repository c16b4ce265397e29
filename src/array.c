/* Shared arrays (Value, Array, RawValue, RawArray): zero-filled bytes in a
 * heap object, 64-byte aligned, behind a recursive lock unless SHMQ_NOLOCK. */
#include "locks.h"

#include <errno.h>
#include <stdlib.h>

/* The object's payload: this header, then the data at the next 64 bytes. */
struct array_shared {
	struct mutex lock; /* recursive; unused with SHMQ_NOLOCK */
	uint64_t size;     /* data bytes, immutable */
	uint32_t flags;    /* SHMQ_NOLOCK, immutable */
	char pad[HEAP_OBJ_ALIGN - sizeof(struct mutex) - 12];
};
_Static_assert(sizeof(struct array_shared) == HEAP_OBJ_ALIGN, "data stays 64-byte aligned");

struct shmq_array {
	struct heap_ref ref;
	shmq_lock lock;
	void *data;
	size_t size;
	bool has_lock;
};

struct array_args {
	uint64_t size;
	uint32_t flags;
};

static void array_init(void *payload, void *arg)
{
	struct array_shared *a = payload;
	const struct array_args *args = arg;
	mutex_init(&a->lock, MUTEX_RECURSIVE);
	a->size = args->size;
	a->flags = args->flags;
}

static int array_new(struct heap_ref *ref, shmq_array **out)
{
	struct array_shared *s = ref->payload;
	/* Sizes and flags in shared memory are checked against the object. */
	if (ref->obj->size < sizeof(*s) || s->size == 0 || s->size > ref->obj->size - sizeof(*s)) {
		heap_obj_close(ref);
		return -EPROTO;
	}
	shmq_array *a = malloc(sizeof(*a));
	if (!a) {
		heap_obj_close(ref);
		return -ENOMEM;
	}
	a->ref = *ref;
	a->data = s + 1;
	a->size = s->size;
	a->has_lock = !(s->flags & SHMQ_NOLOCK);
	sync_lock_bind(&a->lock, ref, &s->lock, false);
	*out = a;
	return 0;
}

int shmq_array_create(shmq_heap *h, const char *name, size_t size, int flags, shmq_array **out)
{
	if (!out || size == 0 || (flags & ~SHMQ_NOLOCK))
		return -EINVAL;
	if (size > SHMQ_HEAP_MAX_MAX)
		return -ENOSPC;
	struct array_args args = { size, (uint32_t)flags };
	struct heap_ref ref;
	int err = heap_obj_create(h, name, HEAP_KIND_ARRAY, sizeof(struct array_shared) + size, NULL,
				  array_init, &args, &ref);
	return err ? err : array_new(&ref, out);
}

int shmq_array_open(shmq_heap *h, const char *name, shmq_array **out)
{
	if (!out)
		return -EINVAL;
	struct heap_ref ref;
	int err = heap_obj_open(h, name, HEAP_KIND_ARRAY, &ref);
	return err ? err : array_new(&ref, out);
}

int shmq_array_close(shmq_array *a)
{
	if (!a)
		return -EINVAL;
	heap_obj_close(&a->ref);
	free(a);
	return 0;
}

const char *shmq_array_name(shmq_array *a)
{
	return a ? a->ref.name : NULL;
}

void *shmq_array_data(shmq_array *a)
{
	return a ? a->data : NULL;
}

size_t shmq_array_size(shmq_array *a)
{
	return a ? a->size : 0;
}

shmq_lock *shmq_array_lock(shmq_array *a)
{
	return a && a->has_lock ? &a->lock : NULL;
}
