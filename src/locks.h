/* Sync layer, internal side: the Lock handle, which conditions and arrays
 * also hand out for mutexes that live inside them. */
#ifndef SHMQ_LOCKS_H
#define SHMQ_LOCKS_H

#include "heap.h"
#include "mutex.h"

#include <stdbool.h>

struct shmq_lock {
	struct heap_ref ref; /* the object the mutex lives in */
	struct mutex *m;
	bool own_ref;        /* ref is this handle's to close (a Lock object,
				or the lock a condition was created over) */
};

/* Make l a handle on mutex m inside the object of ref. */
void sync_lock_bind(shmq_lock *l, const struct heap_ref *ref, struct mutex *m, bool own_ref);

#endif
