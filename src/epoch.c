/* Epoch-based reclamation over a heap (see epoch.h). */
#include "epoch.h"

#include <stdatomic.h>

#define PIN_READERS 0xffffull /* bits 0..15: threads inside; 16..63: epoch */
#define PIN_SHIFT 16

struct heap_pin *epoch_enter(shmq_heap *h)
{
	int slot = heap_slot(h);
	if (slot < 0)
		return NULL;
	_Atomic uint32_t *used = &heap_header(h)->pins_used;
	if ((uint32_t)slot >= atomic_load_explicit(used, memory_order_relaxed)) {
		/* Before our first pin: advancers scan slots below pins_used. */
		uint32_t u = atomic_load(used);
		while (u <= (uint32_t)slot && !atomic_compare_exchange_weak(used, &u, (uint32_t)slot + 1))
			;
	}
	struct heap_pin *pin = heap_pin_at(h, (uint32_t)slot);
	uint64_t w = atomic_load_explicit(&pin->word, memory_order_relaxed), want;
	do {
		/* The first thread in takes the current epoch; others join the
		 * pin as it is (an older epoch only holds reclamation back
		 * longer). A stale read of the epoch is older, never newer. The
		 * CAS is a full barrier: links are read after the pin is seen. */
		if (w & PIN_READERS)
			want = w + 1;
		else
			want = atomic_load_explicit(&heap_header(h)->reclaim_epoch, memory_order_relaxed) << PIN_SHIFT | 1;
	} while (!atomic_compare_exchange_weak_explicit(&pin->word, &w, want, memory_order_seq_cst,
							memory_order_relaxed));
	return pin;
}

void epoch_leave(struct heap_pin *pin)
{
	/* Release: our reads are done before the pin may be seen gone. Once
	 * the count is 0 the epoch bits are meaningless. */
	atomic_fetch_sub_explicit(&pin->word, 1, memory_order_release);
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
