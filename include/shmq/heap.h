/* shmq heaps: one shared-memory segment holding many named objects (locks,
 * semaphores, conditions, events, barriers, arrays; later dicts, lists and
 * channels). Included by shmq.h; the conventions there (-errno returns,
 * relative timeouts in ns) hold here too.
 *
 * A heap is named (a POSIX shm name, like a queue) or anonymous (a memfd,
 * sealed against shrinking), inherited by fork() and passable by fd exactly
 * like a queue, and validated on open like a queue (-EPROTO for a segment that
 * is not a heap or whose header is inconsistent, never a crash). It reserves
 * max_size bytes of address space when mapped and grows its file on demand,
 * so objects never move and no process remaps. Truncation of a named heap by
 * a process allowed to write it is not guarded against (see shmq_queue_open).
 *
 * Objects: every kind K (lock, sem, cond, event, barrier, array) has
 *   shmq_K_create(heap, name, ..., &out)   name unique in the heap, or NULL
 *   shmq_K_open(heap, name, &out)          another handle on the same object
 *   shmq_K_close(obj)                      drop the handle
 *   shmq_K_name(obj)                       the object's name
 * Names are 1 to SHMQ_NAME_MAX - 1 bytes with no NUL. A name that exists
 * already is -EEXIST on create, a missing one -ENOENT on open, a name of
 * another kind -EINVAL. name NULL creates an anonymous object: the heap gives
 * it a unique name (read it with shmq_K_name; another process that holds the
 * heap opens the object by it), and frees it when its last handle closes. A
 * named object lives until shmq_heap_remove() and its last close. Handles are
 * process-local and inherited by fork() (the child holds every object its
 * parent held); a process that dies or exec()s releases its handles when its
 * death is noticed (by any waiter on the heap, or the next create, open,
 * close or remove in any process). Memory of a freed object is reused only
 * once no live process can reach it. A full heap gives -ENOSPC and changes
 * nothing.
 *
 * Concurrency: every call may run concurrently with any other from any thread
 * or process, except that a handle must not be closed while another thread
 * uses it, and a heap must not be closed while its objects are open.
 */
#ifndef SHMQ_HEAP_H
#define SHMQ_HEAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shmq_heap shmq_heap; /* process-local handle */

struct shmq_heap_attr {
	uint64_t max_size; /* bytes it may grow to; 0: SHMQ_HEAP_DEFAULT_MAX */
	uint32_t mode;     /* permission bits of a named heap; 0: 0600 */
	uint32_t flags;    /* none yet: 0 */
};

#define SHMQ_HEAP_DEFAULT_MAX (1ull << 30) /* 1 GiB of address space */
#define SHMQ_HEAP_MIN_MAX (1ull << 20)     /* smallest max_size accepted */
#define SHMQ_HEAP_MAX_MAX (1ull << 40)     /* largest max_size accepted */
#define SHMQ_NAME_MAX 64u                  /* object names: up to 63 bytes */

/* Fill *attr with the defaults (every field 0). */
void shmq_heap_attr_init(struct shmq_heap_attr *attr);

/* Create a heap. name NULL: anonymous (memfd), shared by fork() or through
 * shmq_heap_fd(); otherwise a POSIX shm name created O_EXCL with attr->mode.
 * attr NULL means the defaults.
 * Returns 0 and *out; -EINVAL (bad name or attr), -EEXIST, -EACCES, -ENOMEM,
 * or another -errno of shm_open/memfd_create/fallocate/mmap. */
int shmq_heap_create(const char *name, const struct shmq_heap_attr *attr, shmq_heap **out);

/* Open a named heap; flags 0, or SHMQ_FOREIGN to accept a heap owned by
 * another user. Waits up to 100 ms for a creator still writing the header.
 * Returns 0 and *out; -ENOENT, -EACCES, -EPROTO (not a valid heap), -EINVAL,
 * -EUSERS (SHMQ_MAX_PARTICIPANTS handles already), -ENOMEM. */
int shmq_heap_open(const char *name, int flags, shmq_heap **out);

/* The heap's fd (close-on-exec, owned by the handle), to pass over a unix
 * socket to shmq_heap_open_fd(). Returns the fd; -EINVAL for NULL. */
int shmq_heap_fd(shmq_heap *h);
/* Open a heap from an fd (the caller keeps its fd). flags as for open.
 * Returns 0 and *out; -EBADF, and the errors of shmq_heap_open. */
int shmq_heap_open_fd(int fd, int flags, shmq_heap **out);

/* Drop an object's name: it can no longer be opened, and is freed once its
 * last handle (in any process) closes. Returns 0; -ENOENT, -EINVAL. */
int shmq_heap_remove(shmq_heap *h, const char *name);

/* Close the heap handle. Every object handle opened through it must be
 * closed first. Returns 0; -EBUSY (object handles still open: nothing
 * changes), -EINVAL. */
int shmq_heap_close(shmq_heap *h);

/* shmq_unlink(name) removes a named heap's name, as for a queue. */

struct shmq_heap_stat {
	uint64_t max_size; /* address space reserved */
	uint64_t size;     /* bytes the file has grown to */
	uint64_t used;     /* bytes ever carved from it (free blocks are reused) */
	uint64_t free;     /* bytes in free blocks, ready for reuse */
	uint32_t objects;  /* live objects, named and anonymous */
	uint32_t handles;  /* live heap handles, all processes together */
};
/* Snapshot of a heap. Reaps dead participants first (a few syscalls each).
 * Returns 0; -EINVAL, -EPROTO (inconsistent allocator state). */
int shmq_heap_stat(shmq_heap *h, struct shmq_heap_stat *st);

#ifdef __cplusplus
}
#endif
#endif
