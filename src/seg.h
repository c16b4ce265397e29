/* Segment layer: the layout of a shmq segment and its mapping.
 *
 * Segment = header | participant table | ring cells. Offsets only, never
 * pointers. Everything immutable after creation lives in struct seg_geom,
 * covered by a checksum; the creator publishes `magic` last (release), so an
 * opener that sees the magic sees a complete header.
 */
#ifndef SHMQ_SEG_H
#define SHMQ_SEG_H

#include "part.h" /* struct seg_part, struct part_table */

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/types.h>

#define SEG_MAGIC 0x31514d4853ull /* "SHMQ1" little-endian */
#define SEG_VERSION 2u
#define SEG_LINE 128u  /* hot words this far apart: defeats adjacent-line prefetch */
#define SEG_MIN_CAPACITY 64u
#define SEG_MAX_RING (4ull << 30) /* bytes of cells */
#define SEG_EFDS 8u /* eventfd registrations per segment */

struct seg_geom {          /* immutable after creation, checksummed */
	uint32_t version;
	uint32_t cell_size;
	uint32_t capacity; /* cells, power of two */
	uint32_t msg_max;
	uint32_t flags;
	uint32_t nparts;
	uint64_t size;      /* total segment bytes */
	uint64_t parts_off; /* participant table */
	uint64_t cells_off; /* ring cells */
};

struct seg_hdr {
	_Atomic uint64_t magic; /* written last by the creator */
	uint64_t checksum;      /* of geom */
	struct seg_geom geom;

	/* Ring indices: position (40 bits) << 24 | message count mod 2^24.
	 * tail: CAS by producers (claimant or helpers), head: by consumers.
	 * A batch moves an index once, counting one message; its claimant adds
	 * the other n-1 to *_extra (on the line it already owns). */
	alignas(SEG_LINE) _Atomic uint64_t tail;
	_Atomic uint32_t tail_extra;
	alignas(SEG_LINE) _Atomic uint64_t head;
	_Atomic uint32_t head_extra;
	/* Eventcounts (futex words): consumers park on ec_data, producers on
	 * ec_room. Bit 31: someone may be parked; bits 0..30: sequence. */
	alignas(SEG_LINE) _Atomic uint32_t ec_data;
	alignas(SEG_LINE) _Atomic uint32_t ec_room;
	/* Membership (part.c, through struct seg.pt): epoch bumps at every role
	 * change (claim, shutdown, close, reap) so handles can cache
	 * producer/consumer counts; `ever` has SHMQ_RD/SHMQ_WR set once any
	 * handle held that role (sticky). */
	alignas(SEG_LINE) _Atomic uint32_t epoch;
	_Atomic uint32_t ever;
	/* CLOCK_MONOTONIC ns of the last liveness sweep (part_sweep). */
	_Atomic int64_t swept;
	/* Set once a dead owner's cells were taken back: a process may have died
	 * between a batch claim and its count update, so the message counts
	 * can be off and qsize counts cells instead (ring_count). */
	_Atomic uint32_t recovered;
	/* JoinableQueue: joiners park on ec_done (task_done and the departure
	 * of a consumer notify it); `lost` counts messages that were got but
	 * never marked done by a handle that closed or died. */
	alignas(SEG_LINE) _Atomic uint32_t ec_done;
	_Atomic uint64_t lost;
	/* Handles that want an eventfd signalled when data arrives: their
	 * participant tag + 1, 0 for a free entry (efd.c). */
	alignas(SEG_LINE) _Atomic uint32_t efd_reg[SEG_EFDS];
	alignas(SEG_LINE) char end[];
};

/* A ring cell (geom.cell_size bytes): the state word, then payload. A message
 * of k cells fills them in order; its length is in the first cell's state
 * (ring.c has the state machine). */
struct seg_cell {
	_Atomic uint64_t state;
	unsigned char payload[];
};
#define CELL_HEAD 8u /* bytes before the payload in a cell */

/* Cells of cell_size bytes that a message of len bytes occupies. */
static inline uint64_t seg_cells_for(uint64_t len, uint64_t cell_size)
{
	uint64_t per = cell_size - CELL_HEAD;
	return len <= per ? 1 : (len + per - 1) / per;
}

struct seg {
	struct seg_geom geom; /* validated private copy */
	struct seg_hdr *hdr;
	struct seg_part *parts;
	struct seg_cell *cells;
	size_t map_size;
	int fd;
	/* Random nonzero file position of our own open file description of the
	 * segment (fd): /proc/PID/fdinfo shows it, so a liveness check can tell
	 * our fd from one a later exec'd program opened at the same number.
	 * fork() shares the description, and so the token, with the child. */
	uint32_t token;
	/* The participant table (header's membership words, parts), for part.c.
	 * Its hooks are the queue layer's (queue.c sets them before the first
	 * claim). */
	struct part_table pt;
	/* Our dups of the eventfds registered in hdr->efd_reg (efd.c), by entry:
	 * the registration they belong to and the fd (-1: none yet). */
	struct {
		uint32_t reg;
		int fd;
	} efd_cache[SEG_EFDS];
	pthread_mutex_t efd_lock; /* guards efd_cache */
};

/* Create a segment (name NULL: anonymous memfd) with the given geometry inputs.
 * Returns 0 or -errno. */
int seg_create(struct seg *s, const char *name, const struct seg_geom *g, uint32_t mode);
/* Open by name, or adopt a dup of fd. Validates the header: -EPROTO if bad
 * or smaller than its geometry; -EACCES if another user owns the segment
 * and foreign is false. */
int seg_open_name(struct seg *s, const char *name, bool foreign);
int seg_open_fd(struct seg *s, int fd, bool foreign);
void seg_close(struct seg *s);

/* Helpers every kind of segment (queues, heaps) uses. */
/* FNV-1a of n bytes: the checksum of a header's immutable geometry. */
uint64_t seg_checksum(const void *bytes, size_t n);
/* A POSIX shm name: 1..NAME_MAX bytes, one optional leading '/', no other. */
bool seg_name_valid(const char *name);
/* Mark our open file description of a segment with a random nonzero file
 * position (see struct seg.token): a liveness check reads it back through
 * /proc/PID/fdinfo. Returns 0 and *token, or -errno. */
int seg_mark(int fd, uint32_t *token);
/* Wait up to 100 ms for a segment's creator to size the file (min_size
 * bytes) and publish magic, the first 8 bytes of every kind of header; then
 * copy the header's first len bytes to prefix. Returns 0 and *file_size;
 * -EACCES (another user's file, unless foreign), -EPROTO (another magic, or
 * none in time), -errno. */
int seg_read_header(int fd, bool foreign, uint64_t magic, size_t min_size, void *prefix,
		    size_t len, uint64_t *file_size);
/* A new open file description of the file behind fd (not a dup: its position
 * is our token and must not move the sender's). Returns the fd or -EBADF,
 * -errno. */
int seg_reopen(int fd);
int seg_unlink(const char *name);
/* Geometry for create: defaults applied, capacity rounded up to a power of two
 * and raised to hold one msg_max message. Returns 0 or -EINVAL. */
int seg_geometry(uint32_t capacity, uint32_t msg_max, uint32_t cell_size, uint32_t flags,
		 struct seg_geom *g);

#endif
