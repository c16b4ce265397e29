/* Concurrency Kit ck_ring across fork(), in MAP_SHARED memory.
 *
 * ck-mpmc: the lock-free MPMC message queue one builds from ck: a ck_ring of
 * slot indices carrying messages plus a free-list ck_ring of empty slots; the
 * payload is copied into and out of the slot buffers (ck_ring itself moves
 * pointer-sized values only). ck has no blocking: an empty or full ring is
 * retried with pause, then sched_yield (bench_backoff). No end of data: a
 * consumer stops once every producer is done and the ring is empty.
 *
 * ck-spsc: reference row, the raw SPSC hand-off of 8-byte values (no payload
 * buffers at all), the cheapest inter-core hand-off a ring can do. */
#include "../peer.h"

#include <ck_ring.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

struct ckq {
	ck_ring_t data, free;
	unsigned ring_size, slots;
	size_t size, map_len;
	ck_ring_buffer_t *dbuf, *fbuf; /* offsets are the same in every process: */
	char *slot;                    /* the mapping is inherited at one address */
};

static unsigned pow2_above(size_t n)
{
	unsigned p = 2;
	while (p <= n)
		p <<= 1;
	return p;
}

static int setup(const struct bench_case *c, void **ctx)
{
	size_t slots = bench_depth(c->size);
	unsigned rs = pow2_above(slots);
	size_t len = sizeof(struct ckq) + 64 + 2 * rs * sizeof(ck_ring_buffer_t) + slots * c->size;
	char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED)
		return -errno;
	struct ckq *q = (struct ckq *)m;
	q->ring_size = rs;
	q->slots = (unsigned)slots;
	q->size = c->size;
	q->map_len = len;
	q->dbuf = (ck_ring_buffer_t *)(m + ((sizeof(*q) + 63) & ~(size_t)63));
	q->fbuf = q->dbuf + rs;
	q->slot = (char *)(q->fbuf + rs);
	ck_ring_init(&q->data, rs);
	ck_ring_init(&q->free, rs);
	for (unsigned i = 0; i < slots; i++)
		ck_ring_enqueue_mpmc(&q->free, q->fbuf, (void *)(uintptr_t)i);
	*ctx = q;
	return 0;
}

static void teardown(void *ctx)
{
	struct ckq *q = ctx;
	munmap(q, q->map_len);
}

static int producer(void *ctx, struct bench_worker *w)
{
	struct ckq *q = ctx;
	size_t size = q->size;
	char *buf = bench_buf(size);
	bench_ready(w);
	while (bench_more(w)) {
		bench_fill(w, buf);
		void *v;
		unsigned spins = 0;
		while (!ck_ring_dequeue_mpmc(&q->free, q->fbuf, &v))
			bench_backoff(&spins);
		memcpy(q->slot + (uintptr_t)v * size, buf, size);
		while (!ck_ring_enqueue_mpmc(&q->data, q->dbuf, v))
			bench_backoff(&spins);
	}
	bench_producer_done(w);
	return 0;
}

static int consumer(void *ctx, struct bench_worker *w)
{
	struct ckq *q = ctx;
	size_t size = q->size;
	char *buf = bench_buf(size);
	uint32_t np = (uint32_t)w->c->np;
	bench_ready(w);
	for (;;) {
		void *v;
		unsigned spins = 0;
		bool ok;
		while (!(ok = ck_ring_dequeue_mpmc(&q->data, q->dbuf, &v))) {
			if (atomic_load(&w->sh->prod_done) == np) {
				ok = ck_ring_dequeue_mpmc(&q->data, q->dbuf, &v);
				break;
			}
			bench_backoff(&spins);
		}
		if (!ok)
			break;
		memcpy(buf, q->slot + (uintptr_t)v * size, size);
		while (!ck_ring_enqueue_mpmc(&q->free, q->fbuf, v))
			bench_backoff(&spins);
		bench_got(w, buf, size);
	}
	if (!w->t_end)
		w->t_end = bench_now();
	bench_consumer_done(w);
	return 0;
}

const struct bench_peer peer_ck_mpmc = {
	.name = "ck-mpmc",
	.label = "ck_ring MPMC (spin)",
	.flags = PF_MAIN | PF_NOEOF,
	.setup = setup,
	.producer = producer,
	.consumer = consumer,
	.teardown = teardown,
};

/* ---------------------------------------------------------------- SPSC -- */

static const char *spsc_skip(const struct bench_case *c)
{
	return c->size != 8 ? "8-byte values only" : NULL;
}

static int spsc_producer(void *ctx, struct bench_worker *w)
{
	struct ckq *q = ctx;
	bench_ready(w);
	while (bench_more(w)) {
		char m[24];
		uint64_t h;
		bench_fill(w, m);
		memcpy(&h, m, 8);
		unsigned spins = 0;
		while (!ck_ring_enqueue_spsc(&q->data, q->dbuf, (void *)(uintptr_t)h))
			bench_backoff(&spins);
	}
	bench_producer_done(w);
	return 0;
}

static int spsc_consumer(void *ctx, struct bench_worker *w)
{
	struct ckq *q = ctx;
	bench_ready(w);
	for (;;) {
		void *v;
		unsigned spins = 0;
		bool ok;
		while (!(ok = ck_ring_dequeue_spsc(&q->data, q->dbuf, &v))) {
			if (atomic_load(&w->sh->prod_done) == 1) {
				ok = ck_ring_dequeue_spsc(&q->data, q->dbuf, &v);
				break;
			}
			bench_backoff(&spins);
		}
		if (!ok)
			break;
		uint64_t h = (uint64_t)(uintptr_t)v;
		char m[24];
		memcpy(m, &h, 8);
		bench_got(w, m, 8);
	}
	if (!w->t_end)
		w->t_end = bench_now();
	bench_consumer_done(w);
	return 0;
}

const struct bench_peer peer_ck_spsc = {
	.name = "ck-spsc",
	.label = "ref: ck_ring SPSC 8B",
	.flags = PF_MAIN | PF_REF | PF_MAX_1X1 | PF_TPUT_ONLY | PF_NOEOF,
	.skip = spsc_skip,
	.setup = setup,
	.producer = spsc_producer,
	.consumer = spsc_consumer,
	.teardown = teardown,
};
