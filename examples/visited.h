/* A lock-free set of paths shared by forked processes: the crawler's
 * visited-set.
 *
 * Open addressing over a table of 64-bit words in a MAP_SHARED|MAP_ANONYMOUS
 * mapping made before fork(). A word holds the top 32 bits of the path's hash
 * (a tag that makes most mismatches one compare) and the offset of the path's
 * bytes in an arena of the same mapping. An insert writes the path into the
 * arena first and then publishes the word with one CAS, so an entry is never
 * half there: a process killed at any instruction leaves the set consistent
 * (at worst a few arena bytes are wasted). Paths are compared in full, so two
 * paths with the same hash never collide. Capacity is fixed at creation.
 *
 * Every call may run concurrently with any other from any process, except
 * visited_destroy(), and visited_foreach() which sees a snapshot only when no
 * insert is in flight. */
#ifndef VISITED_H
#define VISITED_H

#include <stddef.h>
#include <stdint.h>

struct visited;

/* A set for up to max_entries paths of at most path_max bytes each.
 * Returns NULL with errno set (EINVAL, ENOMEM, or mmap's). */
struct visited *visited_create(uint32_t max_entries, uint32_t path_max);
void visited_destroy(struct visited *v);

/* Add path (len bytes, no NUL needed). Returns 1 if this call added it, 0 if
 * it was there already, -ENOSPC if the set is full, -EINVAL if len is 0 or
 * over path_max. */
int visited_insert(struct visited *v, const char *path, size_t len);

/* Count one fetch of a path that is in the set (the crawler's "visited
 * exactly once" check reads these counts). Returns 0, or -ENOENT. */
int visited_count_fetch(struct visited *v, const char *path, size_t len);

/* Call fn for every path in the set with its fetch count; stop early if fn
 * returns nonzero and return that. */
int visited_foreach(struct visited *v, int (*fn)(const char *path, uint32_t fetches, void *arg),
		    void *arg);

#endif
