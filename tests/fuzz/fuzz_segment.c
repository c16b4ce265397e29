/* libFuzzer target: a queue opened from a segment whose header, participant
 * table and ring cells hold bytes of the fuzzer's choosing, then used.
 *
 * Each input builds a valid small queue in a memfd (geometry and a few
 * messages chosen by the first bytes), closes it, and then runs a little
 * program read from the rest of the input: patch bytes of the header (with
 * the checksum fixed up, if the input says so, so that forged geometries get
 * past it), of the participant table or of the cells; write index and
 * eventcount words; open the segment with shmq_queue_open_fd(); call puts,
 * gets, batches, zero-copy and snapshots with timeouts of 0 or a few
 * microseconds, patching more bytes in between. The library must never
 * crash, read out of bounds, hit undefined behaviour or hang (run it with
 * -timeout). tests/torture/README.md says how to build and run it. */
#include <shmq.h>
#include "seg.h" /* the segment layout the patches aim at */

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fuzz_common.h" /* struct input, u8(), u16(), u64() */

#define MAX_OPS 48
#define BUF 8192

static uint64_t geom_sum(const struct seg_geom *g) /* FNV-1a, as seg.c */
{
	const unsigned char *p = (const unsigned char *)g;
	uint64_t h = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < sizeof(*g); i++)
		h = (h ^ p[i]) * 0x100000001b3ull;
	return h;
}

static int64_t timeout_of(unsigned b)
{
	static const int64_t t[4] = { 0, 0, 1000, 20000 }; /* ns */
	return t[b & 3];
}

/* The segment as this process maps it for patching, and the queue. */
struct fz {
	unsigned char *seg;
	size_t size;
	struct seg_geom g; /* as created: where the regions are */
	int fd;
	bool fix_sum;
	shmq_queue *q;
	bool open_failed;
	unsigned char buf[BUF];
	unsigned char bufs[4][BUF / 4];
};

/* Copy len bytes of input into the segment at off, inside [lo, hi). */
static void patch(struct fz *f, struct input *in, size_t lo, size_t hi, size_t off, size_t len)
{
	if (hi <= lo)
		return;
	off = lo + off % (hi - lo);
	for (size_t i = 0; i < len && off + i < hi; i++)
		f->seg[off + i] = (unsigned char)u8(in);
	struct seg_hdr *h = (struct seg_hdr *)f->seg;
	if (f->fix_sum)
		h->checksum = geom_sum(&h->geom);
	/* Not fuzzed: eventfd registrations make a producer write 8 bytes to
	 * the fd a registration names, even a fd of this very process (see
	 * efd.c, efd_fetch): the fuzzer would write into its own files. */
	memset((void *)h->efd_reg, 0, sizeof(h->efd_reg));
}

/* An open of a segment whose magic is 0 waits 100 ms for its creator
 * (shmq_queue_open): right, but it would make the fuzzer crawl. */
static bool creator_writing(const struct fz *f)
{
	return atomic_load(&((struct seg_hdr *)f->seg)->magic) == 0;
}

static bool ensure_open(struct fz *f, struct input *in)
{
	if (f->q)
		return true;
	if (f->open_failed || creator_writing(f))
		return false;
	static const int roles[4] = { SHMQ_RDWR, SHMQ_RDWR, SHMQ_RD, SHMQ_WR };
	int r = shmq_queue_open_fd(f->fd, roles[u8(in) & 3], &f->q);
	if (r < 0) {
		f->q = NULL;
		f->open_failed = true;
	}
	return f->q != NULL;
}

static void header_word(struct fz *f, struct input *in)
{
	struct seg_hdr *h = (struct seg_hdr *)f->seg;
	uint64_t v = u64(in);
	switch (u8(in) % 10) {
	case 0: atomic_store(&h->tail, v); break;
	case 1: atomic_store(&h->head, v); break;
	case 2: atomic_store(&h->tail_extra, (uint32_t)v); break;
	case 3: atomic_store(&h->head_extra, (uint32_t)v); break;
	case 4: atomic_store(&h->ec_data, (uint32_t)v); break;
	case 5: atomic_store(&h->ec_room, (uint32_t)v); break;
	case 6: atomic_store(&h->epoch, (uint32_t)v); break;
	case 7: atomic_store(&h->ever, (uint32_t)v); break;
	case 8: atomic_store(&h->swept, (int64_t)v); break;
	default: atomic_store(&h->recovered, (uint32_t)v); break;
	}
}

static void one_op(struct fz *f, struct input *in, int depth)
{
	unsigned op = u8(in) % 15;
	size_t ring = (size_t)f->g.capacity * f->g.cell_size;
	if (op == 0) {
		size_t off = u8(in), len = 1 + u8(in) % 8;
		patch(f, in, 0, offsetof(struct seg_hdr, end), off, len);
		return;
	}
	if (op == 1) {
		size_t off = u16(in), len = 1 + u8(in) % 8;
		patch(f, in, f->g.parts_off, f->g.parts_off + (size_t)f->g.nparts * 64, off, len);
		return;
	}
	if (op == 2) {
		size_t off = u16(in), len = 1 + u8(in) % 16;
		patch(f, in, f->g.cells_off, f->g.cells_off + ring, off, len);
		return;
	}
	if (op == 3) { /* a whole cell state word */
		size_t c = u16(in) % f->g.capacity;
		_Atomic uint64_t *st = (_Atomic uint64_t *)(f->seg + f->g.cells_off + c * f->g.cell_size);
		atomic_store(st, u64(in));
		return;
	}
	if (op == 4) {
		header_word(f, in);
		return;
	}
	if (!ensure_open(f, in))
		return;
	shmq_queue *q = f->q;
	unsigned a = u8(in);
	int64_t t = timeout_of(a);
	struct iovec iov[4];
	unsigned n = 1 + (a >> 2) % 4;
	switch (op) {
	case 5: {
		size_t len = u16(in) % BUF;
		memset(f->buf, (int)a, len);
		shmq_put(q, f->buf, len, t);
		break;
	}
	case 6:
		shmq_get(q, f->buf, u16(in) % (BUF + 1), t);
		break;
	case 7:
		for (unsigned i = 0; i < n; i++)
			iov[i] = (struct iovec){ f->bufs[i], u16(in) % (BUF / 4) };
		if (a & 64)
			shmq_put_bulk(q, iov, n, t);
		else
			shmq_put_burst(q, iov, n, t);
		break;
	case 8:
		for (unsigned i = 0; i < n; i++)
			iov[i] = (struct iovec){ f->bufs[i], u16(in) % (BUF / 4 + 1) };
		if (a & 64)
			shmq_get_bulk(q, iov, n, t);
		else
			shmq_get_burst(q, iov, n, t);
		break;
	case 9: {
		shmq_slot s;
		if (shmq_put_reserve(q, u8(in) % 130, &s, t) == 0) {
			memset(s.data, (int)a, s.len);
			if ((a & 128) && depth < 3) /* scribbled over before commit */
				one_op(f, in, depth + 1);
			shmq_put_commit(q, &s);
		}
		break;
	}
	case 10: {
		shmq_slot s;
		if (shmq_get_peek(q, &s, t) == 0) {
			memcpy(f->buf, s.data, s.len < BUF ? s.len : BUF);
			if ((a & 128) && depth < 3)
				one_op(f, in, depth + 1);
			shmq_get_release(q, &s);
		}
		break;
	}
	case 11: {
		struct shmq_stat st;
		shmq_qsize(q);
		shmq_empty(q);
		shmq_full(q);
		shmq_queue_stat(q, &st);
		/* Readiness: looks past claimed messages (ring_readable). */
		struct shmq_pollitem it = { .queue = q, .events = SHMQ_POLLIN | SHMQ_POLLOUT };
		shmq_wait_any(&it, 1, t);
		break;
	}
	case 12:
		shmq_task_done(q);
		shmq_join(q, t);
		break;
	case 13:
		shmq_queue_shutdown(q, 1 + (int)(a & 1));
		break;
	default: /* a second handle on the same segment, at once closed */
	{
		shmq_queue *o = NULL;
		if (!creator_writing(f) && shmq_queue_open_fd(f->fd, (int)(a & 3), &o) == 0)
			shmq_queue_close(o);
		break;
	}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz f;
	struct input in = { data, size };
	unsigned g = u8(&in), pre = u8(&in), flags = u8(&in);
	static const uint32_t msg_max[4] = { 40, 200, 1000, 4000 };
	struct shmq_queue_attr a;
	shmq_queue_attr_init(&a);
	a.cell_size = 16u << (g & 3);
	a.capacity = 64u << (g >> 2 & 1);
	a.msg_max = msg_max[g >> 3 & 3];
	a.flags = g & 32 ? SHMQ_JOINABLE : 0;
	shmq_queue *c = NULL;
	if (shmq_queue_create(NULL, &a, &c) < 0)
		return 0;
	/* Some traffic first, so that the ring holds messages at several laps. */
	for (unsigned i = 0; i < (pre & 15); i++) {
		memset(f.buf, (int)i, sizeof(f.buf));
		shmq_put(c, f.buf, (i * 37u + pre) % (a.msg_max + 1), 0);
	}
	for (unsigned i = 0; i < (pre >> 4); i++)
		shmq_get(c, f.buf, sizeof(f.buf), 0);
	f.fd = dup(shmq_queue_fd(c));
	shmq_queue_close(c);
	struct stat st;
	if (f.fd < 0 || fstat(f.fd, &st) < 0) {
		if (f.fd >= 0)
			close(f.fd);
		return 0;
	}
	f.size = (size_t)st.st_size;
	f.seg = mmap(NULL, f.size, PROT_READ | PROT_WRITE, MAP_SHARED, f.fd, 0);
	if (f.seg == MAP_FAILED) {
		close(f.fd);
		return 0;
	}
	f.g = ((struct seg_hdr *)f.seg)->geom;
	f.fix_sum = flags & 1;
	f.q = NULL;
	f.open_failed = false;
	for (int i = 0; i < MAX_OPS && in.n; i++)
		one_op(&f, &in, 0);
	if (f.q)
		shmq_queue_close(f.q);
	munmap(f.seg, f.size);
	close(f.fd);
	return 0;
}
