/* Segment layer: create, open, validate and map shmq segments. */
#include "seg.h"
#include "shmq.h"
#include "wait.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define OPEN_WAIT_NS (100 * 1000 * 1000) /* for a creator still writing */

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return (v + to - 1) / to * to;
}

uint64_t seg_checksum(const void *bytes, size_t n)
{
	const unsigned char *p = bytes;
	uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
	for (size_t i = 0; i < n; i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static uint64_t geom_checksum(const struct seg_geom *g)
{
	return seg_checksum(g, sizeof(*g));
}

int seg_geometry(uint32_t capacity, uint32_t msg_max, uint32_t cell_size, uint32_t flags,
		 struct seg_geom *g)
{
	msg_max = msg_max ? msg_max : SHMQ_DEFAULT_MSG_MAX;
	capacity = capacity ? capacity : SHMQ_DEFAULT_CAPACITY;
	cell_size = cell_size ? cell_size : SHMQ_DEFAULT_CELL_SIZE;
	if (msg_max > SHMQ_MAX_MSG_MAX || capacity > SHMQ_MAX_CAPACITY ||
	    cell_size < SHMQ_MIN_CELL_SIZE || cell_size > SHMQ_MAX_CELL_SIZE ||
	    (cell_size & (cell_size - 1)))
		return -EINVAL;
	uint64_t cap = SEG_MIN_CAPACITY;
	while (cap < capacity || cap < seg_cells_for(msg_max, cell_size))
		cap <<= 1;
	if (cap > SHMQ_MAX_CAPACITY || cap * cell_size > SEG_MAX_RING)
		return -EINVAL;
	memset(g, 0, sizeof(*g));
	g->version = SEG_VERSION;
	g->cell_size = cell_size;
	g->capacity = (uint32_t)cap;
	g->msg_max = msg_max;
	g->flags = flags;
	g->nparts = SHMQ_MAX_PARTICIPANTS;
	g->parts_off = round_up(sizeof(struct seg_hdr), SEG_LINE);
	g->cells_off = round_up(g->parts_off + (uint64_t)g->nparts * sizeof(struct seg_part), 4096);
	g->size = g->cells_off + cap * cell_size;
	return 0;
}

/* A header is valid when its geometry is exactly what seg_geometry() computes
 * from its own capacity and msg_max, the checksum matches, and the segment is
 * big enough: nothing else in it is trusted. */
static int geom_valid(const struct seg_geom *g, uint64_t checksum, uint64_t file_size)
{
	struct seg_geom want;
	if (g->version != SEG_VERSION || geom_checksum(g) != checksum)
		return 0;
	if (g->capacity & (g->capacity - 1))
		return 0;
	if ((g->flags & ~(uint32_t)SHMQ_JOINABLE) ||
	    seg_geometry(g->capacity, g->msg_max, g->cell_size, g->flags, &want) < 0)
		return 0;
	return memcmp(&want, g, sizeof(want)) == 0 && g->size <= file_size;
}

static int map_fd(struct seg *s, int fd, const struct seg_geom *g)
{
	size_t size = g->size;
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int err = -errno;
		munmap(p, size);
		return err;
	}
	/* A named segment can be truncated by any process that may write it;
	 * touching a page past the end would raise SIGBUS. Checked after
	 * mapping and before the first access, so only a truncation in the
	 * microseconds between here and the end of open can still fault
	 * (shmq.h, shmq_queue_open). */
	if ((uint64_t)st.st_size < size) {
		munmap(p, size);
		return -EPROTO;
	}
	uint32_t token;
	int err = seg_mark(fd, &token);
	if (err) {
		munmap(p, size);
		return err;
	}
	s->token = token;
	s->hdr = p;
	s->geom = *g; /* never re-read from shared memory after validation */
	s->map_size = size;
	s->fd = fd;
	s->parts = (struct seg_part *)((char *)p + g->parts_off);
	s->cells = (struct seg_cell *)((char *)p + g->cells_off);
	s->pt = (struct part_table){
		.parts = s->parts,
		.nparts = g->nparts, /* validated: SHMQ_MAX_PARTICIPANTS */
		.fd = fd,
		.token = token,
		.dev = st.st_dev,
		.ino = st.st_ino,
		.epoch = &s->hdr->epoch,
		.ever = &s->hdr->ever,
		.swept = &s->hdr->swept,
		.lost = &s->hdr->lost,
		.hooks = NULL, /* the queue layer's, set by queue.c */
	};
	return 0;
}

bool seg_name_valid(const char *name)
{
	size_t n = strnlen(name, NAME_MAX + 1);
	if (n == 0 || n > NAME_MAX)
		return false;
	const char *body = name[0] == '/' ? name + 1 : name;
	return *body && !strchr(body, '/');
}

int seg_create(struct seg *s, const char *name, const struct seg_geom *geom, uint32_t mode)
{
	const struct seg_geom g = *geom;
	int fd, err;

	if (mode & ~07777u)
		return -EINVAL;
	if (name) {
		if (!seg_name_valid(name))
			return -EINVAL;
		fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		/* Exactly the mode asked for, whatever the umask. */
		if (fd >= 0 && fchmod(fd, mode ? mode : 0600) < 0) {
			err = -errno;
			goto fail;
		}
	} else {
		fd = memfd_create("shmq", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	}
	if (fd < 0)
		return -errno;
	if (ftruncate(fd, (off_t)g.size) < 0) {
		err = -errno;
		goto fail;
	}
	/* No peer may shrink the segment under the others (SIGBUS). */
	if (!name && fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
		err = -errno;
		goto fail;
	}
	struct seg_hdr *h = mmap(NULL, g.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (h == MAP_FAILED) {
		err = -errno;
		goto fail;
	}
	h->geom = g; /* the file is zero-filled: every cell is FREE at lap 0 */
	h->checksum = geom_checksum(&g);
	atomic_store_explicit(&h->magic, SEG_MAGIC, memory_order_release);
	munmap(h, g.size);
	err = map_fd(s, fd, &g);
	if (err == 0)
		return 0;
fail:
	close(fd);
	if (name)
		shm_unlink(name);
	return err;
}

int seg_read_header(int fd, bool foreign, uint64_t magic, size_t min_size, void *prefix,
		    size_t len, uint64_t *file_size)
{
	int64_t deadline = wait_deadline(OPEN_WAIT_NS);
	for (;;) {
		struct stat st;
		if (fstat(fd, &st) < 0)
			return -errno;
		if (!foreign && st.st_uid != geteuid())
			return -EACCES;
		if ((uint64_t)st.st_size >= min_size) {
			void *h = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
			if (h == MAP_FAILED)
				return -errno;
			uint64_t seen = atomic_load_explicit((_Atomic uint64_t *)h, memory_order_acquire);
			memcpy(prefix, h, len);
			munmap(h, len);
			if (seen == magic) {
				*file_size = (uint64_t)st.st_size;
				return 0;
			}
			if (seen != 0)
				return -EPROTO; /* something else lives here */
		}
		if (wait_expired(deadline))
			return -EPROTO;
		wait_nap(1000 * 1000);
	}
}

/* Validate and map an fd the caller hands over (closed on failure). */
static int seg_adopt(struct seg *s, int fd, bool foreign)
{
	struct {
		uint64_t magic, checksum;
		struct seg_geom g;
	} p;
	_Static_assert(offsetof(struct seg_hdr, geom) == offsetof(__typeof__(p), g), "prefix");
	uint64_t size;
	int err = seg_read_header(fd, foreign, SEG_MAGIC, sizeof(struct seg_hdr), &p, sizeof(p),
				  &size);
	if (err == 0 && !geom_valid(&p.g, p.checksum, size))
		err = -EPROTO;
	if (err == 0)
		err = map_fd(s, fd, &p.g);
	/* Re-check what we mapped: a peer may rewrite the header between the
	 * two mappings. */
	if (err == 0 && (memcmp(&s->hdr->geom, &p.g, sizeof(p.g)) || s->hdr->checksum != p.checksum)) {
		munmap(s->hdr, s->map_size);
		err = -EPROTO;
	}
	if (err == 0)
		return 0;
	close(fd);
	return err;
}

int seg_open_name(struct seg *s, const char *name, bool foreign)
{
	if (!name || !seg_name_valid(name))
		return -EINVAL;
	int fd = shm_open(name, O_RDWR | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	return seg_adopt(s, fd, foreign);
}

int seg_mark(int fd, uint32_t *token)
{
	uint32_t t = 0;
	while (!t && getrandom(&t, sizeof(t), GRND_NONBLOCK) != sizeof(t))
		t = (uint32_t)wait_now() ^ (uint32_t)getpid();
	if (lseek(fd, (off_t)t, SEEK_SET) < 0)
		return -errno;
	*token = t;
	return 0;
}

int seg_reopen(int fd)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	if (fd < 0 || fcntl(fd, F_GETFD) < 0)
		return -EBADF;
	int copy = open(path, O_RDWR | O_CLOEXEC);
	if (copy < 0)
		return errno == ENOENT ? -EBADF : -errno;
	return copy;
}

int seg_open_fd(struct seg *s, int fd, bool foreign)
{
	int copy = seg_reopen(fd);
	return copy < 0 ? copy : seg_adopt(s, copy, foreign);
}

void seg_close(struct seg *s)
{
	munmap(s->hdr, s->map_size);
	close(s->fd);
}

int seg_unlink(const char *name)
{
	if (!name || !seg_name_valid(name))
		return -EINVAL;
	return shm_unlink(name) < 0 ? -errno : 0;
}
