/* Segment layer: named segments (mode, EEXIST, ENOENT, unlink), validation of
 * segments that are not ours or were tampered with (-EPROTO, never a crash),
 * anonymous segments (seals, passing the fd over a unix socket) and a queue
 * opened by name from another program (tests/peer, fork + exec). */
#include <criterion/criterion.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "common.h"
#include "seg.h" /* struct seg_hdr / seg_geom: the header layout */

#define LIVE (2 * T_SEC * T_SCALE)

#ifndef PEER_PATH
#define PEER_PATH "tests/peer"
#endif

static const char *dev_shm(const char *name, char *buf, size_t n)
{
	snprintf(buf, n, "/dev/shm/%s", name + 1);
	return buf;
}

/* ------------------------------------------------------------- named -- */

Test(named, default_mode_is_exactly_0600)
{
	const char *name = t_name("mode");
	mode_t old = umask(0); /* a permissive umask must not widen it */
	shmq_queue *q = t_create_named(name, NULL);
	umask(old);
	char path[128];
	struct stat st;
	cr_assert_eq(stat(dev_shm(name, path, sizeof(path)), &st), 0, "%s: %s", path,
		     strerror(errno));
	cr_assert(S_ISREG(st.st_mode));
	cr_assert_eq(st.st_mode & 07777, 0600, "mode %o", st.st_mode & 07777);
	cr_assert_eq(st.st_uid, geteuid());
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(named, mode_attr_honoured_exactly_despite_umask)
{
	const char *name = t_name("mode");
	struct shmq_queue_attr a = t_attr(0, 0);
	a.mode = 0640;
	mode_t old = umask(077);
	shmq_queue *q = t_create_named(name, &a);
	umask(old);
	char path[128];
	struct stat st;
	cr_assert_eq(stat(dev_shm(name, path, sizeof(path)), &st), 0);
	cr_assert_eq(st.st_mode & 07777, 0640, "mode %o", st.st_mode & 07777);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(named, create_twice_eexist_open_missing_enoent)
{
	const char *name = t_name("twice");
	shmq_queue *q = t_create_named(name, NULL), *q2 = NULL;
	cr_assert_eq(shmq_queue_create(name, NULL, &q2), -EEXIST);
	cr_assert_null(q2);
	t_roundtrip(q, q, 0); /* the first is untouched */

	const char *missing = t_name("missing");
	cr_assert_eq(shmq_queue_open(missing, SHMQ_RD, &q2), -ENOENT);
	cr_assert_eq(shmq_unlink(missing), -ENOENT);
	cr_assert_null(q2);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(named, open_by_name_shares_the_queue)
{
	const char *name = t_name("share");
	struct shmq_queue_attr a = t_attr(128, 2000);
	shmq_queue *q = t_create_named(name, &a), *r = NULL, *w = NULL;
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &r), 0);
	cr_assert_eq(shmq_queue_open(name, SHMQ_WR, &w), 0);
	cr_assert_eq(shmq_capacity(r), shmq_capacity(q), "geometry seen by an opener");
	cr_assert_eq(shmq_msg_max(r), 2000);
	t_roundtrip(w, r, 1);
	t_roundtrip(q, r, 2);
	t_roundtrip(w, q, 3);
	shmq_queue_close(w);
	shmq_queue_close(r);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(named, unlink_while_attached)
{
	const char *name = t_name("unlink");
	shmq_queue *q = t_create_named(name, NULL), *r = NULL;
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &r), 0);
	cr_assert_eq(t_put_msg(q, 0, 0, 64, 0), 0);
	cr_assert_eq(shmq_unlink(name), 0);
	char path[128];
	struct stat st;
	cr_assert_eq(stat(dev_shm(name, path, sizeof(path)), &st), -1, "the name is still there");
	cr_assert_eq(errno, ENOENT);
	shmq_queue *again = NULL;
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &again), -ENOENT);
	cr_assert_eq(shmq_unlink(name), -ENOENT);
	/* Attached handles keep working, the queued message included. */
	unsigned char buf[128];
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), 64);
	cr_assert_eq(tmsg_check_exact(buf, 64, 0, 0, 64), TMSG_OK);
	t_roundtrip(q, r, 1);
	/* The name is free for a new, different queue. */
	shmq_queue *fresh = t_create_named(name, NULL);
	cr_assert_eq(shmq_qsize(fresh), 0);
	cr_assert_eq(t_put_msg(fresh, 0, 9, 10, 0), 0);
	cr_assert_eq(shmq_qsize(q), 0, "the old queue is another queue");
	shmq_queue_close(fresh);
	shmq_queue_close(r);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

/* An opener racing the creator sees -ENOENT or a complete queue, never a
 * half-built one (-EPROTO): the creator publishes the magic last. */
static int open_as_soon_as_it_exists(void *arg)
{
	const char *name = arg;
	int64_t deadline = t_now() + LIVE;
	shmq_queue *q = NULL;
	int r;
	while ((r = shmq_queue_open(name, SHMQ_RD, &q)) == -ENOENT && t_now() < deadline)
		;
	if (r < 0)
		return r == -EPROTO ? 1 : 2;
	return shmq_queue_close(q) == 0 ? 0 : 3;
}

Test(named, open_racing_create_never_eproto, .timeout = T_TIMEOUT(60))
{
	for (int i = 0; i < 30; i++) {
		const char *name = t_name("race");
		pid_t pid = t_fork(open_as_soon_as_it_exists, (void *)name);
		shmq_queue *q = t_create_named(name, NULL);
		int st;
		int r = t_wait(pid, &st, 2 * LIVE);
		if (r < 0)
			t_kill_reap(pid);
		cr_assert_eq(r, 0);
		cr_assert(WIFEXITED(st), "opener crashed");
		cr_assert_eq(WEXITSTATUS(st), 0, "round %d: opener failed (%s)", i,
			     WEXITSTATUS(st) == 1 ? "-EPROTO on a segment being created"
						  : "other error");
		shmq_queue_close(q);
		cr_assert_eq(shmq_unlink(name), 0);
	}
}

/* --------------------------------------------------- not a shmq segment -- */

/* A /dev/shm file of `size` bytes from fill(); returns its name. */
static const char *raw_shm(const char *tag, size_t size, void (*fill)(unsigned char *, size_t))
{
	const char *name = t_name(tag);
	int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, (off_t)size), 0);
	if (size && fill) {
		unsigned char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
		cr_assert_neq(p, MAP_FAILED);
		fill(p, size);
		munmap(p, size);
	}
	close(fd);
	return name;
}

static void random_bytes(unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = tmsg_byte(0xbadc0ffee, i);
	if (p[0] == 0)
		p[0] = 1; /* a nonzero magic that is not ours */
}

static void random_with_magic(unsigned char *p, size_t n)
{
	random_bytes(p, n);
	uint64_t magic = SEG_MAGIC;
	memcpy(p, &magic, sizeof(magic));
}

/* Open by name and by fd must both give -EPROTO (and not crash), within a
 * liveness bound. */
static void expect_eproto(const char *name, const char *what)
{
	shmq_queue *q = NULL;
	int64_t t0 = t_now();
	int r = shmq_queue_open(name, SHMQ_RDWR, &q);
	int64_t el = t_now() - t0;
	cr_assert_eq(r, -EPROTO, "%s: open by name gave %d, want -EPROTO", what, r);
	cr_assert_null(q);
	cr_assert_lt(el, LIVE, "%s: open took %lld ms", what, (long long)(el / T_MS));
	cr_assert_eq(shmq_queue_open(name, 0, &q), -EPROTO, "%s: open (no roles)", what);
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	r = shmq_queue_open_fd(fd, SHMQ_RD, &q);
	cr_assert_eq(r, -EPROTO, "%s: open_fd gave %d, want -EPROTO", what, r);
	cr_assert_null(q);
	close(fd);
}

Test(hostile, random_bytes_eproto, .timeout = T_TIMEOUT(10))
{
	expect_eproto(raw_shm("rand", 1 << 20, random_bytes), "random bytes");
	expect_eproto(raw_shm("rand", 4096, random_bytes), "4 KiB of random bytes");
	expect_eproto(raw_shm("randm", 1 << 20, random_with_magic), "random bytes after our magic");
}

/* An all-zero segment looks like one whose creator has not published the
 * magic yet: open waits for it (up to 100 ms), then gives up with -EPROTO. */
Test(hostile, all_zero_and_empty_eproto, .timeout = T_TIMEOUT(10))
{
	expect_eproto(raw_shm("zero", 1 << 20, NULL), "all-zero 1 MiB");
	expect_eproto(raw_shm("empty", 0, NULL), "empty file");
	expect_eproto(raw_shm("tiny", 100, random_with_magic), "100 bytes, shorter than a header");
}

Test(hostile, open_fd_of_other_files_eproto, .timeout = T_TIMEOUT(10))
{
	int p[2];
	cr_assert_eq(pipe(p), 0);
	shmq_queue *q = NULL;
	int r = shmq_queue_open_fd(p[0], SHMQ_RD, &q);
	cr_assert(r == -EPROTO || r == -EINVAL || r == -ENODEV || r == -EACCES,
		  "open_fd(pipe): %d", r);
	cr_assert_null(q);
	close(p[0]);
	close(p[1]);
	int fd = memfd_create("notshmq", MFD_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(ftruncate(fd, 1 << 16), 0);
	cr_assert_eq(shmq_queue_open_fd(fd, SHMQ_RD, &q), -EPROTO, "zeroed memfd");
	close(fd);
}

/* ------------------------------------------------ tampered shmq segments -- */

static uint64_t geom_sum(const struct seg_geom *g)
{
	return t_fnv1a(T_FNV_INIT, g, sizeof(*g));
}

typedef void (*tamper_fn)(struct seg_hdr *h);

static void t_version(struct seg_hdr *h) { h->geom.version = SEG_VERSION + 1; }
static void t_version0(struct seg_hdr *h) { h->geom.version = 0; }
static void t_cap_npot(struct seg_hdr *h) { h->geom.capacity += 1; }
static void t_cap_npot2(struct seg_hdr *h) { h->geom.capacity = h->geom.capacity / 2 * 3; }
static void t_cap_zero(struct seg_hdr *h) { h->geom.capacity = 0; }
static void t_cap_huge(struct seg_hdr *h) { h->geom.capacity = 1u << 31; }
static void t_cap_double(struct seg_hdr *h) { h->geom.capacity *= 2; }
static void t_cap_max(struct seg_hdr *h) { h->geom.capacity = SHMQ_MAX_CAPACITY; }
static void t_msg_huge(struct seg_hdr *h) { h->geom.msg_max = 0xffffffffu; }
static void t_msg_zero(struct seg_hdr *h) { h->geom.msg_max = 0; }
static void t_msg_ring(struct seg_hdr *h) { h->geom.msg_max = h->geom.capacity * 64; }
static void t_cell_zero(struct seg_hdr *h) { h->geom.cell_size = 0; }
static void t_cell_odd(struct seg_hdr *h) { h->geom.cell_size = 100; }
static void t_cell_huge(struct seg_hdr *h) { h->geom.cell_size = 1u << 30; }
static void t_cell_small(struct seg_hdr *h) { h->geom.cell_size = 8; }
static void t_nparts_huge(struct seg_hdr *h) { h->geom.nparts = 0xffffffffu; }
static void t_nparts_zero(struct seg_hdr *h) { h->geom.nparts = 0; }
static void t_size_big(struct seg_hdr *h) { h->geom.size *= 2; }
static void t_size_small(struct seg_hdr *h) { h->geom.size = 4096; }
static void t_size_huge(struct seg_hdr *h) { h->geom.size = ~0ull; }
static void t_parts_out(struct seg_hdr *h) { h->geom.parts_off = h->geom.size; }
static void t_parts_wild(struct seg_hdr *h) { h->geom.parts_off = 1ull << 40; }
static void t_parts_zero(struct seg_hdr *h) { h->geom.parts_off = 0; }
static void t_cells_out(struct seg_hdr *h) { h->geom.cells_off = h->geom.size; }
static void t_cells_wild(struct seg_hdr *h) { h->geom.cells_off = ~0ull - 4095; }
static void t_cells_overlap(struct seg_hdr *h) { h->geom.cells_off = h->geom.parts_off; }
static void t_flags(struct seg_hdr *h) { h->geom.flags = 0xffffffffu; }
static void t_magic(struct seg_hdr *h) { h->magic = SEG_MAGIC ^ 1; }
static void t_checksum(struct seg_hdr *h) { h->checksum ^= 1; }

struct tamper {
	const char *what;
	tamper_fn fn;
	bool fix_sum; /* recompute the checksum: only validation can catch it */
};

static const struct tamper tampers[] = {
	{ "version + 1", t_version, true },
	{ "version + 1, stale checksum", t_version, false },
	{ "version 0", t_version0, true },
	{ "capacity not a power of two", t_cap_npot, true },
	{ "capacity 3/2 of itself", t_cap_npot2, true },
	{ "capacity 0", t_cap_zero, true },
	{ "capacity 2^31", t_cap_huge, true },
	{ "capacity doubled, size not", t_cap_double, true },
	{ "capacity at the maximum, size not", t_cap_max, true },
	{ "msg_max 2^32-1", t_msg_huge, true },
	{ "msg_max 0", t_msg_zero, true },
	{ "msg_max larger than the ring", t_msg_ring, true },
	{ "cell_size 0", t_cell_zero, true },
	{ "cell_size 100", t_cell_odd, true },
	{ "cell_size 2^30", t_cell_huge, true },
	{ "cell_size 8", t_cell_small, true },
	{ "nparts 2^32-1", t_nparts_huge, true },
	{ "nparts 0", t_nparts_zero, true },
	{ "size doubled (beyond the file)", t_size_big, true },
	{ "size 4096", t_size_small, true },
	{ "size 2^64-1", t_size_huge, true },
	{ "parts_off at the end", t_parts_out, true },
	{ "parts_off 2^40", t_parts_wild, true },
	{ "parts_off 0 (over the header)", t_parts_zero, true },
	{ "cells_off at the end", t_cells_out, true },
	{ "cells_off near 2^64", t_cells_wild, true },
	{ "cells_off over the participant table", t_cells_overlap, true },
	{ "magic off by one bit", t_magic, false },
	{ "checksum off by one bit", t_checksum, false },
};

/* Map a named segment's header for writing. */
static struct seg_hdr *map_hdr(const char *name, int *fdp)
{
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	struct seg_hdr *h = mmap(NULL, sizeof(*h), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(h, MAP_FAILED);
	*fdp = fd;
	return h;
}

/* The whole named segment, mapped read-write as a hostile peer would: returns
 * the mapping, with its size, the offset of the ring cells and the fd. */
static unsigned char *map_all(const char *name, size_t *size, size_t *cells_off, int *fdp)
{
	struct seg_hdr *h = map_hdr(name, fdp);
	*size = h->geom.size;
	*cells_off = h->geom.cells_off;
	munmap(h, sizeof(*h));
	unsigned char *seg = mmap(NULL, *size, PROT_READ | PROT_WRITE, MAP_SHARED, *fdp, 0);
	cr_assert_neq(seg, MAP_FAILED);
	return seg;
}

static void tamper_and_expect_eproto(const struct tamper *list, size_t count)
{
	const char *name = t_name("tamper");
	struct shmq_queue_attr a = t_attr(256, 4000);
	shmq_queue *q = t_create_named(name, &a), *o = NULL;
	cr_assert_eq(t_put_msg(q, 0, 0, 100, 0), 0);
	shmq_queue_close(q);

	int fd;
	struct seg_hdr *h = map_hdr(name, &fd);
	/* The tests below forge checksums: make sure ours is the library's,
	 * or "checksum fixed" cases would silently test the checksum only. */
	cr_assert_eq(atomic_load(&h->magic), SEG_MAGIC);
	cr_assert_eq(geom_sum(&h->geom), h->checksum,
		     "checksum algorithm changed: update geom_sum() in this test");
	struct seg_hdr saved = { 0 };
	memcpy(&saved, h, offsetof(struct seg_hdr, tail));

	for (size_t i = 0; i < count; i++) {
		const struct tamper *t = &list[i];
		t->fn(h);
		if (t->fix_sum)
			h->checksum = geom_sum(&h->geom);
		expect_eproto(name, t->what);
		memcpy(h, &saved, offsetof(struct seg_hdr, tail));
		/* Control: restored, it opens and still holds its message. */
		int r = shmq_queue_open(name, SHMQ_RD, &o);
		cr_assert_eq(r, 0, "after restoring from '%s': %d", t->what, r);
		cr_assert_eq(shmq_qsize(o), 1);
		shmq_queue_close(o);
	}
	unsigned char buf[128];
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &o), 0);
	cr_assert_eq(shmq_get(o, buf, sizeof(buf), 0), 100);
	cr_assert_eq(tmsg_check_exact(buf, 100, 0, 0, 100), TMSG_OK);
	shmq_queue_close(o);
	munmap(h, sizeof(*h));
	close(fd);
	cr_assert_eq(shmq_unlink(name), 0);
}

Test(hostile, tampered_header_fields_eproto, .timeout = T_TIMEOUT(30))
{
	tamper_and_expect_eproto(tampers, sizeof(tampers) / sizeof(tampers[0]));
}

/* Flag bits that no version of the library defines (create rejects them with
 * -EINVAL), with a matching checksum: not a segment this library made.
 * Regression test for a validation gap found by this suite (at 84974e8):
 * open copied geom.flags into the expected geometry instead of checking it,
 * so any flags were accepted. */
Test(hostile, unknown_flags_eproto, .timeout = T_TIMEOUT(30))
{
	static const struct tamper flags[] = { { "flags all ones", t_flags, true } };
	tamper_and_expect_eproto(flags, 1);
}

Test(hostile, truncated_segment_eproto, .timeout = T_TIMEOUT(10))
{
	const char *name = t_name("trunc");
	shmq_queue *q = t_create_named(name, NULL);
	shmq_queue_close(q);
	int fd = shm_open(name, O_RDWR, 0);
	cr_assert_geq(fd, 0);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	off_t sizes[] = { st.st_size - 1, st.st_size / 2, 8192, sizeof(struct seg_hdr), 64 };
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		cr_assert_eq(ftruncate(fd, sizes[i]), 0);
		char what[64];
		snprintf(what, sizeof(what), "truncated to %lld bytes", (long long)sizes[i]);
		expect_eproto(name, what);
	}
	close(fd);
	cr_assert_eq(shmq_unlink(name), 0);
}

/* A segment truncated under handles that are already attached cannot be
 * defended against (SIGBUS): anonymous segments are sealed against it. */
Test(anon, memfd_sealed_against_resizing)
{
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, NULL, &q), 0);
	int fd = shmq_queue_fd(q);
	cr_assert_geq(fd, 0);
	int seals = fcntl(fd, F_GET_SEALS);
	cr_assert_geq(seals, 0, "not a sealable memfd");
	cr_assert(seals & F_SEAL_SHRINK, "seals %#x", seals);
	cr_assert(seals & F_SEAL_GROW, "seals %#x", seals);
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_assert_eq(ftruncate(fd, st.st_size / 2), -1, "a peer could shrink the segment");
	cr_assert_eq(errno, EPERM);
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC, "fd not close-on-exec");
	t_roundtrip(q, q, 0);
	shmq_queue_close(q);
}

/* Garbage in the ring (a hostile peer scribbling over the cells): calls
 * return errors or messages, never crash or hang. */
Test(hostile, garbage_ring_cells_no_crash_no_hang, .timeout = T_TIMEOUT(30))
{
	const char *name = t_name("garbage");
	struct shmq_queue_attr a = t_attr(64, 1024);
	shmq_queue *q = t_create_named(name, &a);
	int fd;
	size_t size, off;
	unsigned char *seg = map_all(name, &size, &off, &fd);
	unsigned char buf[2048];

	for (uint64_t round = 0; round < 50; round++) {
		for (size_t i = off; i < size; i++)
			seg[i] = tmsg_byte(round * 7919 + 1, i);
		for (int k = 0; k < 20; k++) {
			int64_t t0 = t_now();
			ssize_t r = shmq_get(q, buf, sizeof(buf), k & 1 ? 5 * T_MS : 0);
			cr_assert(r >= 0 || r == -EAGAIN || r == -ETIMEDOUT || r == -EPROTO ||
					  r == -EMSGSIZE,
				  "get on garbage: %zd", r);
			int p = shmq_put(q, buf, 1 + (size_t)k * 50, k & 1 ? 5 * T_MS : 0);
			cr_assert(p == 0 || p == -EAGAIN || p == -ETIMEDOUT || p == -EPROTO,
				  "put on garbage: %d", p);
			cr_assert_lt(t_now() - t0, LIVE, "a call on a garbage ring hung");
			(void)shmq_qsize(q);
			(void)shmq_full(q);
			(void)shmq_empty(q);
		}
	}
	munmap(seg, size);
	close(fd);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

static uint64_t st_bits(uint64_t v, unsigned shift, unsigned bits)
{
	return v >> shift & ((1ull << bits) - 1);
}

/* A message whose length was corrupted is dropped with -EPROTO; the next one
 * is delivered intact. White box (ring.c): the first cell's 64-bit state word
 * holds kind (2 bits, FULL = 2) | skip (1) | cells (20) | bytes in the last
 * cell (16) | lap (25); a "last" larger than a cell's payload is impossible. */
Test(hostile, corrupted_length_dropped_eproto)
{
	const char *name = t_name("badlen");
	shmq_queue *q = t_create_named(name, NULL);
	cr_assert_eq(t_put_msg(q, 0, 0, 7, 0), 0);
	cr_assert_eq(t_put_msg(q, 0, 1, 90, 0), 0);
	int fd;
	size_t size, off;
	unsigned char *seg = map_all(name, &size, &off, &fd);
	_Atomic uint64_t *state = (_Atomic uint64_t *)(seg + off);
	uint64_t st = atomic_load(state);
	cr_assert(st_bits(st, 0, 2) == 2 && st_bits(st, 3, 20) == 1 && st_bits(st, 23, 16) == 7,
		  "cell state layout changed (%#llx): update this test", (unsigned long long)st);
	atomic_store(state, st | 0xffffull << 23);
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EPROTO);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), 90);
	cr_assert_eq(tmsg_check_exact(buf, 90, 0, 1, 90), TMSG_OK);
	t_roundtrip(q, q, 2);
	munmap(seg, size);
	close(fd);
	shmq_queue_close(q);
	cr_assert_eq(shmq_unlink(name), 0);
}

/* -------------------------------------------------- fd over a unix socket -- */

static int send_fd(int sock, int fd)
{
	char byte = 'q';
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(sock, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char byte;
	struct iovec iov = { .iov_base = &byte, .iov_len = 1 };
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
			    .msg_controllen = sizeof(u.buf) };
	if (recvmsg(sock, &m, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	if (!c || c->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(c), sizeof(int));
	return fd;
}

#define FD_MSGS 3000

/* Forked before any queue exists, so it inherits no handle: its only way in
 * is the fd it receives. */
static int fd_producer(void *arg)
{
	int sock = *(int *)arg;
	int fd = recv_fd(sock);
	if (fd < 0)
		return 1;
	shmq_queue *q = NULL;
	if (shmq_queue_open_fd(fd, SHMQ_WR, &q) < 0)
		return 2;
	close(fd); /* the handle keeps its own copy */
	for (uint32_t i = 0; i < FD_MSGS; i++)
		if (t_put_msg(q, 4, i, tmsg_len(4, i, 1, 700), LIVE) < 0)
			return 3;
	return shmq_queue_close(q) == 0 ? 0 : 4;
}

Test(anon, fd_passed_over_unix_socket, .timeout = T_TIMEOUT(30))
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	pid_t pid = t_fork(fd_producer, &sv[1]);

	struct shmq_queue_attr a = t_attr(0, 0);
	a.flags = SHMQ_NOROLES; /* the consumer waits for its first producer */
	shmq_queue *c = NULL, *r = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &c), 0);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(c), SHMQ_RD, &r), 0);
	cr_assert_eq(send_fd(sv[0], shmq_queue_fd(c)), 0);

	static unsigned char buf[TMSG_MAX];
	for (uint32_t i = 0; i < FD_MSGS; i++) {
		size_t len = tmsg_len(4, i, 1, 700);
		ssize_t n = shmq_get(r, buf, sizeof(buf), LIVE);
		cr_assert_eq(n, (ssize_t)len, "message %u: %zd", i, n);
		cr_assert_eq(tmsg_check_exact(buf, len, 4, i, len), TMSG_OK, "message %u", i);
	}
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), LIVE), -EPIPE);
	int st;
	int w = t_wait(pid, &st, LIVE);
	if (w < 0)
		t_kill_reap(pid);
	cr_assert_eq(w, 0);
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer: %x", st);
	shmq_queue_close(r);
	shmq_queue_close(c);
	close(sv[0]);
	close(sv[1]);
}

/* ------------------------------------------------ by name, other program -- */

#define PEER_MSGS 5000u

static pid_t spawn_peer(const char *mode, const char *name, uint32_t prod, uint32_t n)
{
	const char *path = getenv("SHMQ_TEST_PEER");
	if (!path)
		path = PEER_PATH;
	char sprod[16], sn[16];
	snprintf(sprod, sizeof(sprod), "%u", prod);
	snprintf(sn, sizeof(sn), "%u", n);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(path, path, mode, name, sprod, sn, "1", "600", (char *)NULL);
		_exit(127);
	}
	return pid;
}

static int peer_status(pid_t pid)
{
	int st;
	int r = t_wait(pid, &st, 10 * LIVE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "peer did not finish");
	cr_assert(WIFEXITED(st), "peer killed by signal %d", WTERMSIG(st));
	cr_assert_neq(WEXITSTATUS(st), 127, "cannot exec %s", PEER_PATH);
	return WEXITSTATUS(st);
}

Test(byname, peer_program_produces, .timeout = T_TIMEOUT(60))
{
	const char *name = t_name("peerp");
	struct shmq_queue_attr a = t_attr(0, 0);
	a.flags = SHMQ_NOROLES; /* like `shmq create`: the queue waits for both */
	shmq_queue *c = t_create_named(name, &a), *r = NULL;
	cr_assert_eq(shmq_queue_open(name, SHMQ_RD, &r), 0);
	pid_t pid = spawn_peer("produce", name, 6, PEER_MSGS);
	static unsigned char buf[TMSG_MAX];
	for (uint32_t i = 0; i < PEER_MSGS; i++) {
		size_t len = tmsg_len(6, i, 1, 600);
		ssize_t n = shmq_get(r, buf, sizeof(buf), 5 * LIVE);
		cr_assert_eq(n, (ssize_t)len, "message %u: %zd", i, n);
		cr_assert_eq(tmsg_check_exact(buf, len, 6, i, len), TMSG_OK, "message %u", i);
	}
	ssize_t end = shmq_get(r, buf, sizeof(buf), 5 * LIVE);
	cr_assert_eq(end, -EPIPE, "after the peer closed: %zd", end);
	cr_assert_eq(peer_status(pid), 0);
	shmq_queue_close(r);
	shmq_queue_close(c);
	cr_assert_eq(shmq_unlink(name), 0);
}

/* The reverse: this process produces, the exec'd peer consumes and must see
 * EOF once we close.
 * Regression test for a library bug found by this suite (at 84974e8, exec'd
 * child keeps a phantom role): fork() gives the child our producer role in a
 * participant slot of its own; after exec the close-on-exec fd is gone, but
 * the new program (same pid, same start time) took that slot for its own
 * (the liveness check short-cut "my own pid" to alive), and others could too
 * once it reopened the queue on the same fd number. The peer then waited for
 * a producer that did not exist and never saw EOF. */
Test(byname, peer_program_consumes_and_sees_eof, .timeout = T_TIMEOUT(60))
{
	const char *name = t_name("peerc");
	struct shmq_queue_attr a = t_attr(0, 0);
	a.flags = SHMQ_NOROLES;
	shmq_queue *c = t_create_named(name, &a), *w = NULL;
	cr_assert_eq(shmq_queue_open(name, SHMQ_WR, &w), 0);
	pid_t pid = spawn_peer("consume", name, 8, 300);
	for (uint32_t i = 0; i < 300; i++)
		cr_assert_eq(t_put_msg(w, 8, i, tmsg_len(8, i, 1, 600), 5 * LIVE), 0);
	cr_assert_eq(shmq_queue_close(w), 0);
	int st = peer_status(pid);
	cr_assert_neq(st, 8, "the exec'd consumer never saw EOF (its pre-exec inherited "
			     "producer slot still counts)");
	cr_assert_eq(st, 0, "peer consume: exit %d", st);
	shmq_queue_close(c);
	cr_assert_eq(shmq_unlink(name), 0);
}
