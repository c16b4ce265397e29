/* shmq CSP channels: any-to-any channels and alternation, as PyCSP offers
 * them, between OS processes. A channel is an object of a heap (shmq/heap.h:
 * its life cycle, names and errors); its messages live in blocks of the same
 * heap. Conventions of shmq.h hold: -errno returns, relative timeouts in ns
 * (-1 forever, 0 never blocks: -EAGAIN), -EINTR never returned.
 *
 * Channels: any number of readers and writers; each message goes to exactly
 * one reader, in the order writers offered them. buffer 0 is a rendezvous:
 * a write returns once a reader has taken its message. buffer N > 0 lets up
 * to N messages wait (a write to a full channel waits for room).
 *
 * Ends: a handle is an end with roles (SHMQ_RD, SHMQ_WR, or both). The
 * channel counts its ends with each role. An end is shared by the processes
 * that hold it, as a file description is: fork() gives the child the
 * parent's ends, and shmq_chan_end_open() opens an end another process holds
 * by its name. An end's roles end when any holder retires them
 * (shmq_chan_retire: PyCSP's retire) or when its last holder closes it,
 * exits or dies (a death is noticed by waiters within about 0.1 s). Once
 * every writer end has retired (the creator's end counts: open the writers'
 * ends before it retires SHMQ_WR), reads return what is still offered or
 * buffered and then -EPIPE; once every reader end has retired, writes return
 * -EPIPE. Retirement is final: ends opened later find the channel retired. shmq_chan_poison() from any end makes every pending
 * and later call on the channel, by anyone, return -ECANCELED, and drops what
 * is buffered.
 *
 * Crashes: a process killed at any instruction leaves no half-moved message:
 * a message moves whole or not at all, and never twice, and nobody waits
 * behind the dead. A partner's process is looked at before a message moves
 * to or from it (at most once per millisecond per process): the offer of a
 * writer killed while it waits is withdrawn, and a reader killed while it
 * waits is handed nothing, once known dead; within that millisecond the
 * writer's message may still be taken whole, and the reader may take one
 * with it, as a queue consumer killed with a claimed message does. A
 * buffered write with room left succeeds even if every reader died
 * unnoticed; the write that has to wait notices (-EPIPE), as with a queue.
 * A process killed inside a call may leak the blocks it held (its message,
 * its waiter record: a few hundred bytes) in the heap.
 */
#ifndef SHMQ_CHAN_H
#define SHMQ_CHAN_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "heap.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmq_chan shmq_chan; /* process-local handle on an end */

/* Largest message, and largest buffer. */
#define SHMQ_CHAN_MSG_MAX (16u << 20)
#define SHMQ_CHAN_BUFFER_MAX (1u << 20)

/* Create a channel (name NULL: anonymous, freed with its last end) with
 * buffer 0 (rendezvous) .. SHMQ_CHAN_BUFFER_MAX; the handle is an end with
 * SHMQ_RDWR. Returns 0; -EINVAL, -EEXIST, -ENOSPC, -ENOMEM, -EPROTO. */
int shmq_chan_create(shmq_heap *h, const char *name, uint32_t buffer, shmq_chan **out);
/* A new end of channel name with roles (SHMQ_RD, SHMQ_WR, SHMQ_RDWR, or 0:
 * an end that only poisons). Returns 0; -ENOENT, -EINVAL (bad roles, or
 * name is not a channel), -ENOSPC, -ENOMEM, -EPROTO. */
int shmq_chan_open(shmq_heap *h, const char *name, int roles, shmq_chan **out);
/* Another handle on the end named end_name (shmq_chan_end_name), held by
 * this process too from now on: pass the name to a process that shares the
 * heap, which opens it while a holder still holds it. Returns 0; -ENOENT,
 * -EINVAL, -ENOMEM, -EPROTO. */
int shmq_chan_end_open(shmq_heap *h, const char *end_name, shmq_chan **out);
/* This process lets go of the end (see above). Returns 0; -EINVAL. */
int shmq_chan_close(shmq_chan *c);
/* The channel's name; the end's name. NULL for NULL. */
const char *shmq_chan_name(shmq_chan *c);
const char *shmq_chan_end_name(shmq_chan *c);
/* The end's roles now (retired ones gone); -EINVAL. */
int shmq_chan_roles(shmq_chan *c);
/* The buffer size given at creation; -EINVAL. */
int shmq_chan_buffer(shmq_chan *c);

/* Write a message of len bytes (0 .. SHMQ_CHAN_MSG_MAX; buf may be NULL for
 * 0). Returns 0 once a reader took it (buffered: once it is in the buffer);
 * -EAGAIN, -ETIMEDOUT (nothing was written), -EPIPE (every reader end
 * retired, or this end's SHMQ_WR was), -ECANCELED (poisoned), -EBADF (the end
 * never had SHMQ_WR), -EMSGSIZE, -EINVAL, -ENOSPC (no heap room for the
 * message), -EPROTO. */
int shmq_chan_write(shmq_chan *c, const void *buf, size_t len, int64_t timeout_ns);
/* Read the next message into buf (cap bytes). Returns its length; -EMSGSIZE
 * (larger than cap: it stays for another read), -EPIPE (every writer end
 * retired and nothing is left, or this end's SHMQ_RD was retired),
 * -ECANCELED, -EAGAIN, -ETIMEDOUT, -EBADF (never had SHMQ_RD), -EINVAL,
 * -ENOSPC (no heap room for the record a wait needs), -EPROTO. */
ssize_t shmq_chan_read(shmq_chan *c, void *buf, size_t cap, int64_t timeout_ns);
/* Retire roles of this end (for every holder). Returns 0 (also when they
 * were retired already); -EINVAL (bad roles). */
int shmq_chan_retire(shmq_chan *c, int roles);
/* Poison the channel. Returns 0; -EINVAL. */
int shmq_chan_poison(shmq_chan *c);

/* Alternation (PyCSP's Alternation/AltSelect): wait until one of n guards
 * can proceed, perform exactly that one, and return its index; its result
 * holds the length read (a read guard) or 0 (a write guard). The other
 * guards' offers are withdrawn atomically with the commit: a message moves
 * exactly once, also when the partner is itself inside an alternation, and
 * the buffers of guards that did not fire are untouched. A guard on a
 * retired, poisoned or unusable channel fires with result -EPIPE,
 * -ECANCELED, -EBADF or -EMSGSIZE (its message stays), a write guard whose
 * message found no heap room with -ENOSPC, one that met a corrupt message
 * with -EPROTO; nothing moves.
 * SHMQ_ALT_PRI prefers the first ready guard, SHMQ_ALT_FAIR the first ready
 * one after the guard that fired last time on this thread (rotating the
 * preference: every ready guard is served within n rounds). Every guard's
 * channel must be in the same heap; a channel may appear in several guards.
 * timeout 0: PyCSP's SkipGuard (-EAGAIN when nothing is ready); a timeout:
 * its TimeoutGuard (-ETIMEDOUT); either way nothing moved.
 * Returns the index; -EAGAIN, -ETIMEDOUT, -EINVAL (n 0 or > SHMQ_ALT_MAX, a
 * NULL channel, channels of different heaps, bad op or flags), -ENOSPC,
 * -EPROTO. */
struct shmq_guard {
	shmq_chan *chan;
	int op;           /* SHMQ_GUARD_READ or SHMQ_GUARD_WRITE */
	const void *wbuf; /* write: the message */
	size_t wlen;
	void *rbuf;       /* read: the buffer */
	size_t rcap;
	ssize_t result;   /* out, for the guard that fired */
};
enum { SHMQ_GUARD_READ = 1, SHMQ_GUARD_WRITE = 2 };
enum { SHMQ_ALT_PRI = 0, SHMQ_ALT_FAIR = 1 };
#define SHMQ_ALT_MAX 64u
int shmq_alt(struct shmq_guard *g, unsigned n, int flags, int64_t timeout_ns);

#ifdef __cplusplus
}
#endif
#endif
