/* Epoch-based reclamation over a heap: memory that a writer unlinked is
 * reused only once no live process can still be reading it.
 *
 * A reader pins the heap's epoch in its participant slot's pin for the length
 * of one read (epoch_enter .. epoch_leave): every link it follows was read
 * after its pin was published. A writer that unlinks a block stamps it with
 * the epoch read after the unlink (epoch_stamp); the epoch moves from e to
 * e + 1 only when every live pin is at e, so once it has moved twice past a
 * stamp (epoch_passed) no reader that could have reached the block is left.
 * A dead reader's pin is zeroed when its slot is scrubbed (heap.c), and a pin
 * whose slot is free is ignored: a reader killed inside a read holds
 * reclamation back only until the liveness checks notice (about 0.1 s).
 */
#ifndef SHMQ_EPOCH_H
#define SHMQ_EPOCH_H

#include "heap.h"

#define PIN_READERS 0xffffull /* pin bits 0..15: threads inside; 16..63: epoch */
#define PIN_SHIFT 16

/* Before a slot's first pin: advancers scan the slots below pins_used. */
void epoch_first_pin(shmq_heap *h, uint32_t slot);

/* Pin the current epoch for the calling thread. Returns the pin to hand to
 * epoch_leave(), or NULL if the heap handle lost its slot (-EBADF). Inline:
 * every dict read pays for it. */
static inline struct heap_pin *epoch_enter(shmq_heap *h)
{
	int slot = heap_slot(h);
	if (slot < 0)
		return NULL;
	struct heap_hdr *hdr = heap_header(h);
	if ((uint32_t)slot >= atomic_load_explicit(&hdr->pins_used, memory_order_relaxed))
		epoch_first_pin(h, (uint32_t)slot);
	struct heap_pin *pin = heap_pin_at(h, (uint32_t)slot);
	uint64_t w = atomic_load_explicit(&pin->word, memory_order_relaxed), want;
	do {
		/* The first thread in takes the current epoch; others join the
		 * pin as it is (an older epoch only holds reclamation back
		 * longer). A stale read of the epoch is older, never newer. The
		 * CAS is a full barrier: links are read after the pin is seen. */
		uint64_t e = atomic_load_explicit(&hdr->reclaim_epoch, memory_order_relaxed);
		want = w & PIN_READERS ? w + 1 : e << PIN_SHIFT | 1;
	} while (!atomic_compare_exchange_weak_explicit(&pin->word, &w, want, memory_order_seq_cst,
							memory_order_relaxed));
	return pin;
}

static inline void epoch_leave(struct heap_pin *pin)
{
	/* Release: our reads are done before the pin may be seen gone. Once
	 * the count is 0 the epoch bits are meaningless. */
	atomic_fetch_sub_explicit(&pin->word, 1, memory_order_release);
}
/* The stamp of blocks unlinked before this call (full barrier first). */
uint64_t epoch_stamp(shmq_heap *h);
/* Has the epoch moved two past stamp? Tries to advance it if not (a scan of
 * the pins in use). */
bool epoch_passed(shmq_heap *h, uint64_t stamp);

#endif
