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

/* Pin the current epoch for the calling thread. Returns the pin to hand to
 * epoch_leave(), or NULL if the heap handle lost its slot (-EBADF). */
struct heap_pin *epoch_enter(shmq_heap *h);
void epoch_leave(struct heap_pin *pin);
/* The stamp of blocks unlinked before this call (full barrier first). */
uint64_t epoch_stamp(shmq_heap *h);
/* Has the epoch moved two past stamp? Tries to advance it if not (a scan of
 * the pins in use). */
bool epoch_passed(shmq_heap *h, uint64_t stamp);

#endif
