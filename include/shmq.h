/* shmq: message queues between processes through shared memory.
 *
 * One shared-memory segment holds a bounded multi-producer multi-consumer ring.
 * Producers and consumers copy message bytes in and out with atomics only; they
 * sleep in the kernel (futex) only when they must wait. A process killed at any
 * instruction never makes the others hang or read a torn message.
 *
 * Conventions (the same for every function here):
 *  - Return 0 or a non-negative count on success, -errno on failure. No global
 *    error state, no abort(), nothing printed.
 *  - Timeouts are relative, in nanoseconds: -1 waits forever, 0 never blocks.
 *    Internally they become a CLOCK_MONOTONIC deadline; signals never shorten or
 *    extend a wait and -EINTR is never returned.
 *  - Errors with a fixed meaning:
 *      -EAGAIN     would block and the timeout is 0
 *      -ETIMEDOUT  the timeout expired
 *      -EMSGSIZE   message larger than msg_max, or larger than the caller's
 *                  buffer (the message then stays queued)
 *      -EPIPE      the other side is gone (closed or dead) and, for readers,
 *                  nothing is left to read
 *      -EINVAL     bad argument
 *      -EBADF      the handle lacks the role (SHMQ_RD / SHMQ_WR) the call needs
 *      -EEXIST / -ENOENT   create / open of a named segment
 *      -EPROTO     not a shmq segment, another layout version, or an
 *                  inconsistent (corrupted or hostile) header or ring state
 *      -EUSERS     the participant table (SHMQ_MAX_PARTICIPANTS) is full
 *      -ENOMEM     out of memory
 *  - Handles are process-local. Every call on a queue handle may run
 *    concurrently with any other call on the same or another handle, from any
 *    thread or process, except shmq_queue_close(), which must not race with
 *    other calls on the same handle.
 *
 * Crashes, stalls and fairness:
 *  - A process killed at any instruction loses at most what it held: a
 *    producer's half-written message (or batch) is skipped, never delivered
 *    torn or twice; a consumer's claimed message (or batch) is dropped. Its
 *    cells are taken back, and its roles end, when a waiter notices the
 *    death: waiters check the processes they wait for after spinning out and
 *    then every 50 ms, so a consumer blocked on a queue whose producers all
 *    died returns -EPIPE within about 0.1 s.
 *  - A put with room left succeeds even if every consumer died unnoticed; the
 *    put that has to wait notices and returns -EPIPE.
 *  - A producer that is alive but stopped (SIGSTOP, a debugger) between
 *    claiming and publishing holds up consumers behind its message, since
 *    messages leave in ring order; they resume when it does. This is the one
 *    stall, by design: a live process may still publish.
 *  - fork(): the child holds every handle with the parent's roles, from the
 *    moment fork() returns (drop what it does not use with
 *    shmq_queue_shutdown() or shmq_queue_close()); exit and exec end a
 *    process's roles. posix_spawn/vfork children hold none.
 *  - Messages of one producer leave in the order it put them. Consumers are
 *    not served fairly: a spinning consumer may take most messages while a
 *    parked one waits.
 *  - Waiters spin (yielding the core between polls) before they park on a
 *    futex; the spin adapts per handle, long while hand-offs are caught by it,
 *    none while they are not.
 */
#ifndef SHMQ_H
#define SHMQ_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- Queue ---- */

typedef struct shmq_queue shmq_queue; /* process-local handle */

struct shmq_queue_attr {
	uint32_t capacity; /* ring size in 64-byte cells, rounded up to a power of
			      two; 0: SHMQ_DEFAULT_CAPACITY */
	uint32_t msg_max;  /* largest message in bytes; 0: SHMQ_DEFAULT_MSG_MAX */
	uint32_t flags;    /* SHMQ_JOINABLE, SHMQ_NOROLES */
	uint32_t mode;     /* permission bits of a named segment; 0: 0600 */
	uint32_t cell_size; /* bytes per ring cell, a power of two from 16 to
			       64 KiB; 0: 64. A cell carries cell_size - 8
			       bytes of one message: a message of len bytes
			       fills max(1, ceil(len / (cell_size - 8))) cells,
			       and zero-copy needs it to fit in one. Small
			       cells pack small messages densely (16: four
			       8-byte messages per cache line); big cells suit
			       big messages. */
};

enum { SHMQ_RD = 1, SHMQ_WR = 2, SHMQ_RDWR = 3 }; /* roles, like O_RDONLY/O_WRONLY */
/* OR'ed into the roles of shmq_queue_open / shmq_queue_open_fd: accept a
 * segment owned by another user. Without it such an open fails with -EACCES,
 * even for root: a segment someone else owns may be rewritten or truncated
 * by them at any moment (shmq_queue_open says what that costs). */
enum { SHMQ_FOREIGN = 0x100 };
enum {
	SHMQ_JOINABLE = 1, /* shmq_queue_attr.flags: a JoinableQueue (task_done, join) */
	SHMQ_NOROLES = 2,  /* the creator holds no role: the queue waits for its
			      first producer and consumer (what `shmq create` does) */
};

/* Limits. */
#define SHMQ_DEFAULT_CAPACITY 4096u        /* cells */
#define SHMQ_DEFAULT_CELL_SIZE 64u         /* bytes */
#define SHMQ_MIN_CELL_SIZE 16u
#define SHMQ_MAX_CELL_SIZE (64u << 10)
#define SHMQ_DEFAULT_MSG_MAX (64u * 1024u) /* bytes */
#define SHMQ_MAX_CAPACITY (1u << 24)       /* cells; the ring is at most 4 GiB */
#define SHMQ_MAX_MSG_MAX (16u << 20)       /* bytes */
#define SHMQ_MAX_PARTICIPANTS 1024u        /* open handles on one queue, all
					      processes together */

/* Fill *attr with the defaults (every field 0). */
void shmq_queue_attr_init(struct shmq_queue_attr *attr);

/* Create a queue. name NULL: anonymous (memfd, sealed against resizing), shared
 * with children by fork() or with other processes through shmq_queue_fd().
 * Otherwise a POSIX shm name ("/jobs"), created O_EXCL with attr->mode.
 * attr NULL means the defaults. The creator holds SHMQ_RDWR unless
 * attr->flags has SHMQ_NOROLES. The ring must hold at least one message of
 * msg_max bytes: capacity is raised to fit it.
 * Returns 0 and *out; -EINVAL (bad name or attr), -EEXIST, -EACCES, -ENOMEM,
 * -EUSERS, or another -errno from shm_open/memfd_create/ftruncate/mmap. */
int shmq_queue_create(const char *name, const struct shmq_queue_attr *attr,
		      shmq_queue **out);

/* Open a named queue with roles (SHMQ_RD, SHMQ_WR, SHMQ_RDWR, or 0 to only
 * look: qsize, empty, full), plus SHMQ_FOREIGN to accept a segment owned by
 * another user. Waits up to 100 ms for a creator that is still writing the
 * header.
 * Truncation: a named segment (unlike an anonymous one, which is sealed) can
 * be shrunk by any process allowed to write it. Open checks the segment's
 * size after mapping it and before touching it: a segment shorter than its
 * header says gives -EPROTO, not SIGBUS. What it cannot guard is a
 * truncation after that check: handles already attached, and an open in
 * the microseconds between its check and its return, take SIGBUS at their
 * next access to a page past the new end. Keep a named segment's mode to
 * processes you trust (the default is 0600), or use an anonymous queue.
 * Returns 0 and *out; -ENOENT, -EACCES (no permission, or owned by another
 * user without SHMQ_FOREIGN), -EPROTO (not a valid shmq segment, or
 * truncated), -EINVAL, -EUSERS, -ENOMEM. */
int shmq_queue_open(const char *name, int roles, shmq_queue **out);

/* The segment's file descriptor (close-on-exec, owned by the handle: do not
 * close it). Send it over a unix socket (SCM_RIGHTS); the receiver calls
 * shmq_queue_open_fd(). Returns the fd. */
int shmq_queue_fd(shmq_queue *q);

/* Open a queue from a segment fd (dup'ed: the caller keeps its fd); roles
 * as for shmq_queue_open, SHMQ_FOREIGN included.
 * Returns 0 and *out; -EPROTO, -EACCES (owned by another user),
 * -EINVAL, -EUSERS, -ENOMEM, -EBADF. */
int shmq_queue_open_fd(int fd, int roles, shmq_queue **out);

/* Drop roles (SHMQ_RD, SHMQ_WR or both) from this handle and keep it. Dropping
 * the last producer role wakes consumers so they can see end of data.
 * Returns 0; -EINVAL for bad roles. */
int shmq_queue_shutdown(shmq_queue *q, int roles);

/* Drop every role, unmap, free the handle. Never fails for a valid handle:
 * returns 0 (or -EINVAL for NULL). */
int shmq_queue_close(shmq_queue *q);

/* Remove a queue's name; attached handles keep working.
 * Returns 0; -ENOENT, -EINVAL, -EACCES. */
int shmq_unlink(const char *name);

/* Put one message of len bytes (0 .. msg_max); waits for room up to timeout_ns.
 * Returns 0; -EAGAIN (full, timeout 0), -ETIMEDOUT, -EMSGSIZE (len > msg_max),
 * -EPIPE (every consumer that ever attached is gone: closed, shut down or
 * dead), -EBADF (no SHMQ_WR role), -EINVAL (buf NULL and len > 0), -EPROTO.
 * On failure the queue is as it was. */
int shmq_put(shmq_queue *q, const void *buf, size_t len, int64_t timeout_ns);

/* Get the oldest message into buf; waits for one up to timeout_ns. Messages of
 * one producer come out in the order it put them; each is delivered once.
 * Returns the message length; -EAGAIN (empty, timeout 0), -ETIMEDOUT,
 * -EMSGSIZE (the next message is larger than cap; it stays queued),
 * -EPIPE (empty, and every producer that attached is gone: end of data),
 * -EBADF (no SHMQ_RD role), -EINVAL, -EPROTO (a corrupted message, which is
 * dropped). A message whose producer died while writing it is skipped. */
ssize_t shmq_get(shmq_queue *q, void *buf, size_t cap, int64_t timeout_ns);

/* Snapshots: number of queued messages; 1/0 for empty and full (a full queue
 * has no room for a one-cell message). Exact when no call is in flight.
 * shmq_qsize is O(1), or O(queued messages) once the queue has taken back the
 * cells of a process that died mid-call. -EINVAL for NULL. */
ssize_t shmq_qsize(shmq_queue *q);
int shmq_empty(shmq_queue *q);
int shmq_full(shmq_queue *q);

/* ------------------------------------------------------- JoinableQueue ---- */
/* A queue created with SHMQ_JOINABLE counts the messages got (shmq_get,
 * batches, peeks) and not yet marked done, per handle that got them.
 *
 * Dead consumers: messages got through a handle that is closed, or whose
 * process dies, before shmq_task_done count as lost: join does not wait for
 * them. Once everything else is done, shmq_join returns -EOWNERDEAD (instead
 * of 0) if messages were lost since this handle last returned -EOWNERDEAD or
 * was opened, so each handle hears of every loss once; a consumer killed
 * inside a get may count one batch as lost that it had not yet taken. A
 * death is noticed within about 0.1 s by a waiting joiner. */

/* Mark one message got as done: one this handle got, else (like Python's
 * queue-wide count) one another live handle got.
 * Returns 0; -EINVAL (not a JoinableQueue, or called more times than messages
 * were got: nothing changes). */
int shmq_task_done(shmq_queue *q);

/* Wait until every message put has been got and marked done (or lost); at
 * once if that already holds. A put that races with join may or may not be
 * waited for. Returns 0; -EOWNERDEAD (all done, but some were lost, see
 * above); -EPIPE (messages are queued and every consumer that attached is
 * gone); -EAGAIN (timeout 0), -ETIMEDOUT; -EINVAL (not a JoinableQueue). */
int shmq_join(shmq_queue *q, int64_t timeout_ns);

/* ----------------------------------------------------------- Inspection ---- */
#define SHMQ_STAT_COUNT_MOD (1u << 24) /* puts and gets wrap at this */
struct shmq_stat {
	uint64_t size;       /* segment bytes */
	uint32_t capacity;   /* ring cells */
	uint32_t cell_size;  /* bytes per cell */
	uint32_t msg_max;    /* largest message */
	uint32_t flags;      /* SHMQ_JOINABLE */
	uint32_t producers;  /* live handles holding SHMQ_WR */
	uint32_t consumers;  /* live handles holding SHMQ_RD */
	uint64_t depth;      /* queued messages (shmq_qsize) */
	uint32_t puts;       /* messages put since creation, mod SHMQ_STAT_COUNT_MOD */
	uint32_t gets;       /* messages got since creation, mod SHMQ_STAT_COUNT_MOD */
	uint64_t held;       /* JoinableQueue: got, not yet done, by live handles */
	uint64_t lost;       /* JoinableQueue: got by handles that closed or died */
};
/* Snapshot of a queue for tools (`shmq stat`). Checks the liveness of every
 * participant first (a few syscalls each), so the counts exclude the dead.
 * Returns 0; -EINVAL. */
int shmq_queue_stat(shmq_queue *q, struct shmq_stat *st);

/* ------------------------------------------------------------- Batches ---- */
/* Put or get up to n messages with one reservation of the ring and at most
 * one wake-up. msgs[i].iov_base/iov_len describe message i (put) or buffer i
 * (get: iov_len is the capacity on entry and the message length on return).
 * Bulk is all or nothing: it waits (up to timeout_ns) until all n fit or are
 * there. Burst takes as many as are possible now, waiting only for the first.
 * Returns the count moved (bulk: n); -EINVAL (n == 0, n > SHMQ_BATCH_MAX, or
 * bulk larger than the ring could ever hold), and otherwise the errors of
 * shmq_put / shmq_get. A get stops before a message larger than its buffer
 * (-EMSGSIZE when that is the first one); that message stays queued. */
#define SHMQ_BATCH_MAX 1024u
struct iovec;
int shmq_put_bulk(shmq_queue *q, const struct iovec *msgs, unsigned n, int64_t timeout_ns);
int shmq_put_burst(shmq_queue *q, const struct iovec *msgs, unsigned n, int64_t timeout_ns);
int shmq_get_bulk(shmq_queue *q, struct iovec *msgs, unsigned n, int64_t timeout_ns);
int shmq_get_burst(shmq_queue *q, struct iovec *msgs, unsigned n, int64_t timeout_ns);

/* ----------------------------------------------------------- Zero-copy ---- */
/* Write a message in place: shmq_put_reserve() gives slot->data, len bytes
 * inside the ring; fill them, then shmq_put_commit() publishes. Read in place:
 * shmq_get_peek() gives the next message as slot->data/slot->len; use it, then
 * shmq_get_release(). Messages must fit in one cell (len <= cell_size - 8).
 * A slot is single-use and belongs to the thread that got it. A process that
 * dies holding a slot loses only that message; the ring is not blocked for
 * good (the slot is taken back once the death is noticed). Between reserve and
 * commit (or peek and release) consumers (producers) behind that slot wait:
 * keep the window short.
 * reserve/peek return 0 or the errors of shmq_put / shmq_get (-EMSGSIZE: len
 * too big for one cell); commit/release return 0 or -EINVAL (not a live
 * slot of this handle). */
typedef struct shmq_slot {
	void *data;
	size_t len;
	uint64_t priv[2];
} shmq_slot;
int shmq_put_reserve(shmq_queue *q, size_t len, shmq_slot *slot, int64_t timeout_ns);
int shmq_put_commit(shmq_queue *q, shmq_slot *slot);
int shmq_get_peek(shmq_queue *q, shmq_slot *slot, int64_t timeout_ns);
int shmq_get_release(shmq_queue *q, shmq_slot *slot);

/* Geometry of the queue: largest message in bytes, ring capacity in cells,
 * cell size in bytes. 0 for NULL. */
size_t shmq_msg_max(shmq_queue *q);
size_t shmq_capacity(shmq_queue *q);
size_t shmq_cell_size(shmq_queue *q);

/* ----------------------------------------------------------------- Pipe ---- */
/* A Pipe is a pair of connected ends. Duplex (the default): what one end
 * sends the other receives, both ways, each way through a queue of its own.
 * SHMQ_SIMPLEX: a can only receive, b can only send.
 *
 * Messages of any length, 0 bytes to 2^63, are delivered whole and in order.
 * One shorter than the chunk size (shmq_conn_chunk; the queue's msg_max,
 * 64 KiB by default) is one queue message: any number of processes may send
 * and receive such messages on the same end at once. A longer one is
 * streamed through the ring in chunks, so while it flows it must have that
 * end to itself: one sender (and one receiver) at a time per direction, as
 * with Python's Connection. Its timeout covers the wait for its first
 * chunk; after that the rest flows as fast as the other side takes (gives)
 * it, and ends with -EPIPE if the other side goes away.
 *
 * End of file: when every holder of the other end has closed it (or shut it
 * down) or died, shmq_recv returns what is left and then -EPIPE, and
 * shmq_send returns -EPIPE. Ends are inherited by fork() like queue handles
 * (each process then closes the end it does not use); a holder that forgets
 * to close keeps the other side waiting, as with an OS pipe.
 *
 * Concurrency: calls on one end may run in several threads, except
 * shmq_conn_close(), and except as said above for long messages. */
typedef struct shmq_conn shmq_conn;
enum { SHMQ_SIMPLEX = 1 }; /* shmq_pipe flags */

/* Create a pipe: *a and *b are its two ends, in this process.
 * Returns 0; -EINVAL (bad flags or NULL), -ENOMEM, and the errors of
 * shmq_queue_create. */
int shmq_pipe(shmq_conn **a, shmq_conn **b, int flags);
/* The same with the geometry of each direction's queue (attr->capacity,
 * msg_max: the chunk size, cell_size; flags and mode are ignored). The
 * default: 1024 cells of 1 KiB (1 MiB per direction), 64 KiB chunks. */
int shmq_pipe_attr(shmq_conn **a, shmq_conn **b, int flags, const struct shmq_queue_attr *attr);

/* Send a message of len bytes (any length; buf may be NULL for 0). Waits up
 * to timeout_ns for room for it (for a long message: for its first chunk).
 * Returns 0; -EAGAIN, -ETIMEDOUT (nothing was sent), -EPIPE (the other end
 * is closed or dead), -EBADF (a receive-only end), -EINVAL. */
int shmq_send(shmq_conn *c, const void *buf, size_t len, int64_t timeout_ns);

/* Receive the next message into buf (cap bytes). Returns its length;
 * -EMSGSIZE (larger than cap: it stays, for the next shmq_recv on this end),
 * -EPIPE (end of file: the other end is closed or dead and nothing is left;
 * also when it died in the middle of a long message, which is dropped),
 * -EAGAIN, -ETIMEDOUT, -EBADF (a send-only end), -EINVAL, -EPROTO. */
ssize_t shmq_recv(shmq_conn *c, void *buf, size_t cap, int64_t timeout_ns);

/* The length of the message that shmq_recv left waiting with -EMSGSIZE, so a
 * caller can size its buffer. Returns it; -ENOENT (no message was left
 * waiting), -EINVAL. */
ssize_t shmq_recv_len(shmq_conn *c);

/* Wait up to timeout_ns until shmq_recv would not block. Returns 1 (a message
 * or end of file waits), 0 (not by the deadline), -EBADF (a send-only end),
 * -EINVAL. */
int shmq_poll(shmq_conn *c, int64_t timeout_ns);

/* Close the end: its roles end at once (the other side sees end of file once
 * no other process holds it). Returns 0, -EINVAL for NULL. */
int shmq_conn_close(shmq_conn *c);

/* Messages shorter than this go as one queue message (see above). 0 for NULL. */
size_t shmq_conn_chunk(shmq_conn *c);

/* Pass an end to an unrelated process: send both fds over a unix socket
 * (SCM_RIGHTS), open them there with shmq_conn_open_fds(). *rfd is the
 * receiving direction's segment, *wfd the sending one's; -1 where the end
 * has no such direction. The fds stay owned by the end (do not close them).
 * The sender should keep its end open until the receiver has opened it:
 * until then the receiver is not a holder, and closing would be seen as end
 * of file. Returns 0; -EINVAL. */
int shmq_conn_fds(shmq_conn *c, int *rfd, int *wfd);
/* Open an end from fds got through shmq_conn_fds() (each dup'ed: the caller
 * keeps its fds; -1 for a missing direction, not both). Like
 * shmq_queue_open_fd without SHMQ_FOREIGN, it refuses segments another user
 * owns (-EACCES).
 * Returns 0; -EINVAL, and the errors of shmq_queue_open_fd. */
int shmq_conn_open_fds(int rfd, int wfd, shmq_conn **out);

/* ---------------------------------------------------------- Wait on many ---- */
/* Wait until any of several queues and pipe ends is ready, like poll(2).
 * Each item names a queue or a conn (the other NULL) and the events wanted:
 * SHMQ_POLLIN, a get / recv would not block (a message, or end of data);
 * SHMQ_POLLOUT, a put / send of a one-cell message would not block (room, or
 * no consumer left). revents gets those that hold, plus SHMQ_POLLHUP when the
 * other side is gone. Uses futex_waitv (Linux 5.16) on up to
 * SHMQ_WAIT_MAX wake-up words (an item asking for both events uses two);
 * without it, a readiness change is seen within 1 ms.
 * Returns the number of items with revents set, 0 if none by the deadline;
 * -EINVAL (n is 0 or too many events, an item with neither or both objects,
 * or no events), -EBADF (an event the object's roles cannot have). */
enum { SHMQ_POLLIN = 0x001, SHMQ_POLLOUT = 0x004, SHMQ_POLLHUP = 0x010 };
#define SHMQ_WAIT_MAX 128u
struct shmq_pollitem {
	shmq_queue *queue;
	shmq_conn *conn;
	short events;
	short revents;
};
int shmq_wait_any(struct shmq_pollitem *items, unsigned n, int64_t timeout_ns);

/* ------------------------------------------------------------- eventfd ---- */
/* An eventfd that becomes readable when a message (or end of data) arrives,
 * for epoll, libuv or asyncio loops. Use: when it is readable, read its 8
 * bytes, then get (or recv) with timeout 0 until -EAGAIN; that -EAGAIN re-arms
 * it. Producers in other processes signal it through pidfd_getfd(2): they
 * need the permission to ptrace this process (same user without Yama
 * restrictions, or CAP_SYS_PTRACE). A producer that dies (rather than
 * closes) is noticed by a get with timeout 0, at most every 50 ms: call one
 * from a timer to learn of end of data by death. At most 8 handles per
 * queue have one. The fd belongs to the handle (closed with it; a forked
 * child does not inherit the registration).
 * Returns the fd; -EBADF (no SHMQ_RD role; for a conn: send-only), -EUSERS,
 * -EINVAL, or the -errno of eventfd(2). */
int shmq_queue_eventfd(shmq_queue *q);
int shmq_conn_eventfd(shmq_conn *c);

/* -------------------------------------------------------- Interruption ---- */
/* For runtimes that must run signal handlers while a thread blocks in shmq
 * (the Python binding raises KeyboardInterrupt out of a blocking get). Once
 * a check is set, a blocking call whose sleep is cut by a signal, or that
 * has slept through one of its liveness periods (about 50 ms), calls
 * check() in the waiting thread; when it returns nonzero the call ends as at
 * its deadline, with that deadline's result and clean-up (-ETIMEDOUT, or 0
 * from shmq_wait_any; a Barrier breaks; a Condition retakes its lock) and
 * the thread is marked. Waits with timeout -1 are never cut: pass a finite
 * timeout (INT64_MAX / 4 is 73 years) to be interruptible. While marked,
 * every finite wait of the thread ends at once: read (and clear) the mark
 * with shmq_interrupted() after each call. check NULL removes it. */
void shmq_set_interrupt_check(int (*check)(void));
/* Returns 1 if a wait of this thread was cut by the check since the last
 * call (and clears the mark), else 0. */
int shmq_interrupted(void);

#ifdef __cplusplus
}
#endif

/* Shared state: heaps of named objects (shmq/heap.h), locks, semaphores,
 * conditions, events, barriers and shared arrays (shmq/sync.h), dicts and
 * lists (shmq/dict.h), CSP channels and alternation (shmq/chan.h). */
#include "shmq/heap.h"
#include "shmq/sync.h"
#include "shmq/dict.h"
#include "shmq/chan.h"

#endif
