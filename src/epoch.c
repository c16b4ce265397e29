/* Epoch-based reclamation over a heap (see epoch.h). */
#include "epoch.h"

#include <stdatomic.h>

void epoch_first_pin(shmq_heap *h, uint32_t slot)
{
	_Atomic uint32_t *used = &heap_header(h)->pins_used;
	uint32_t u = atomic_load(used);
	while (u <= slot && !atomic_compare_exchange_weak(used, &u, slot + 1))
		;
}

uint64_t epoch_stamp(shmq_heap *h)
{
	atomic_thread_fence(memory_order_seq_cst); /* the unlink before the read */
	return atomic_load(&heap_header(h)->reclaim_epoch);
}

/* Move the epoch from e to e + 1 if every live pin in use is at e. */
static uint64_t epoch_advance(shmq_heap *h, uint64_t e)
{
	struct heap_hdr *hdr = heap_header(h);
	struct part_table *pt = heap_parts(h);
	uint32_t used = atomic_load(&hdr->pins_used);
	if (used > pt->nparts)
		used = pt->nparts; /* a hostile count: scan what exists */
	bool blocked = false;
	for (uint32_t slot = 0; slot < used && !blocked; slot++) {
		uint64_t w = atomic_load(&heap_pin_at(h, slot)->word);
		/* A free slot's pin is a dead reader's: its scrub is on the
		 * way, and it reads nothing meanwhile. */
		blocked = (w & PIN_READERS) && w >> PIN_SHIFT != e &&
			  atomic_load_explicit(&pt->parts[slot].id, memory_order_relaxed) != 0;
	}
	if (blocked) {
		/* Perhaps by a reader that died: let the liveness checks
		 * (rate-limited among all processes) find it. */
		heap_sweep(h);
		return e;
	}
	atomic_compare_exchange_strong(&hdr->reclaim_epoch, &e, e + 1);
	return atomic_load(&hdr->reclaim_epoch);
}

bool epoch_passed(shmq_heap *h, uint64_t stamp)
{
	uint64_t e = atomic_load(&heap_header(h)->reclaim_epoch);
	for (int tries = 0; e < stamp + 2 && tries < 2; tries++) {
		uint64_t next = epoch_advance(h, e);
		if (next == e)
			break;
		e = next;
	}
	return e >= stamp + 2;
}
