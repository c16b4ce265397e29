/* Queue layer, internal side: what the pipe and multi-wait layers need. */
#ifndef SHMQ_QUEUE_H
#define SHMQ_QUEUE_H

#include "shmq.h"
#include "wait.h"

#include <stdatomic.h>
#include <stdint.h>

/* How often a waiter checks that the processes it waits for are alive; also
 * the longest a parked waiter sleeps between such checks (the wait layer's,
 * shared with heaps and locks). */
#define CHECK_NS WAIT_CHECK_NS

/* Of SHMQ_POLLIN/SHMQ_POLLOUT in events, which hold now: IN, a get would not
 * block (a message, or end of data); OUT, a put of a one-cell message would
 * not block (room, or no consumer left). HUP: the other side is gone. */
int queue_revents(shmq_queue *q, int events);
/* The eventcount that a change of `event` (SHMQ_POLLIN or SHMQ_POLLOUT)
 * readiness notifies. */
_Atomic uint32_t *queue_ec(shmq_queue *q, int event);
/* A wait for `event` drags on: reap dead peers it depends on and take back
 * cells a dead process holds in its way (rate-limited, see check_peers). */
void queue_check(shmq_queue *q, int event);

#endif
