/* Batch (bulk / burst) and zero-copy (reserve/commit, peek/release) calls:
 * semantics in one process, exactly-once and per-producer FIFO across real
 * processes, and crash safety when a process dies holding a reservation. */
#include "common.h"

#include <criterion/criterion.h>
#include <sys/uio.h>

#define LIVE (2 * T_SEC * T_SCALE) /* "promptly", generous for a loaded box */
#define BURST 32

static shmq_queue *mkq(uint32_t capacity, uint32_t cell_size)
{
	struct shmq_queue_attr a = t_attr(capacity, 1024); /* 1 KiB: a 64-cell ring is possible */
	a.cell_size = cell_size;
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	return q;
}

/* n messages (prod, seq0 .. seq0+n-1) of lengths from tmsg_len(lo, hi). */
static void fill_batch(unsigned char (*bufs)[TMSG_MAX], struct iovec *v, unsigned n,
		       uint32_t prod, uint32_t seq0, size_t lo, size_t hi)
{
	for (unsigned i = 0; i < n; i++) {
		size_t len = tmsg_len(prod, seq0 + i, lo, hi);
		tmsg_fill(bufs[i], prod, seq0 + i, len);
		v[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = len };
	}
}

static void buffers(unsigned char (*bufs)[TMSG_MAX], struct iovec *v, unsigned n, size_t cap)
{
	for (unsigned i = 0; i < n; i++)
		v[i] = (struct iovec){ .iov_base = bufs[i], .iov_len = cap };
}

static unsigned char out[BURST][TMSG_MAX], in[BURST][TMSG_MAX];

/* ------------------------------------------------------------- semantics -- */

Test(batch, burst_roundtrip_in_order_with_exact_qsize)
{
	shmq_queue *q = mkq(0, 0);
	struct iovec v[BURST];
	fill_batch(out, v, 10, 0, 0, TMSG_HDR, 300); /* some span several cells */
	cr_assert_eq(shmq_put_burst(q, v, 10, 0), 10);
	cr_assert_eq(shmq_qsize(q), 10);
	uint32_t seq = 0;
	while (seq < 10) {
		buffers(in, v, 3, TMSG_MAX);
		int n = shmq_get_burst(q, v, 3, 0);
		cr_assert(n >= 1 && n <= 3, "get_burst: %d", n);
		for (int i = 0; i < n; i++, seq++)
			cr_assert_eq(tmsg_check_exact(in[i], v[i].iov_len, 0, seq,
						      tmsg_len(0, seq, TMSG_HDR, 300)),
				     TMSG_OK, "message %u", seq);
		cr_assert_eq(shmq_qsize(q), 10 - seq);
	}
	buffers(in, v, 3, TMSG_MAX);
	cr_assert_eq(shmq_get_burst(q, v, 3, 0), -EAGAIN);
	shmq_queue_close(q);
}

Test(batch, bulk_put_is_all_or_nothing)
{
	shmq_queue *q = mkq(64, 0); /* 64 cells of 64 bytes */
	struct iovec v[BURST];
	unsigned char small[8] = { 0 };
	for (int i = 0; i < 59; i++)
		cr_assert_eq(shmq_put(q, small, sizeof(small), 0), 0);
	fill_batch(out, v, 6, 0, 0, TMSG_HDR, TMSG_HDR); /* 6 one-cell messages */
	cr_assert_eq(shmq_put_bulk(q, v, 6, 0), -EAGAIN, "only 5 cells are free");
	cr_assert_eq(shmq_put_bulk(q, v, 6, 20 * T_MS), -ETIMEDOUT);
	cr_assert_eq(shmq_qsize(q), 59, "a failed bulk put left something behind");
	cr_assert_eq(shmq_put_burst(q, v, 6, 0), 5, "burst takes what fits");
	cr_assert_eq(shmq_qsize(q), 64);
	cr_assert_eq(shmq_full(q), 1);
	cr_assert_eq(shmq_put_burst(q, v, 6, 0), -EAGAIN);
	shmq_queue_close(q);
}

Test(batch, bulk_get_is_all_or_nothing)
{
	shmq_queue *q = mkq(0, 0);
	struct iovec v[BURST];
	fill_batch(out, v, 3, 0, 0, TMSG_HDR, 200);
	cr_assert_eq(shmq_put_bulk(q, v, 3, 0), 3);
	buffers(in, v, 4, TMSG_MAX);
	cr_assert_eq(shmq_get_bulk(q, v, 4, 0), -EAGAIN);
	cr_assert_eq(shmq_get_bulk(q, v, 4, 20 * T_MS), -ETIMEDOUT);
	cr_assert_eq(shmq_qsize(q), 3, "a failed bulk get took something");
	buffers(in, v, 3, TMSG_MAX);
	cr_assert_eq(shmq_get_bulk(q, v, 3, 0), 3);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(tmsg_check_exact(in[i], v[i].iov_len, 0, i, tmsg_len(0, i, TMSG_HDR, 200)),
			     TMSG_OK);
	shmq_queue_close(q);
}

Test(batch, too_small_buffer_leaves_messages_queued)
{
	shmq_queue *q = mkq(0, 0);
	struct iovec v[BURST];
	unsigned char a[10] = "0123456789", b[100];
	memset(b, 'b', sizeof(b));
	v[0] = (struct iovec){ a, sizeof(a) };
	v[1] = (struct iovec){ b, sizeof(b) };
	cr_assert_eq(shmq_put_bulk(q, v, 2, 0), 2);
	buffers(in, v, 2, 64);
	cr_assert_eq(shmq_get_bulk(q, v, 2, 0), -EMSGSIZE, "second buffer too small");
	cr_assert_eq(shmq_qsize(q), 2);
	buffers(in, v, 2, 64);
	cr_assert_eq(shmq_get_burst(q, v, 2, 0), 1, "burst stops before the big one");
	cr_assert_eq(v[0].iov_len, 10);
	cr_assert_eq(memcmp(in[0], a, 10), 0);
	buffers(in, v, 2, 64);
	cr_assert_eq(shmq_get_burst(q, v, 2, 0), -EMSGSIZE, "first one too big");
	cr_assert_eq(shmq_get(q, in[0], sizeof(in[0]), 0), 100);
	cr_assert_eq(memcmp(in[0], b, 100), 0);
	shmq_queue_close(q);
}

Test(batch, bad_arguments)
{
	shmq_queue *q = mkq(64, 0);
	struct iovec v[BURST];
	fill_batch(out, v, 2, 0, 0, TMSG_HDR, TMSG_HDR);
	cr_assert_eq(shmq_put_burst(q, v, 0, 0), -EINVAL);
	cr_assert_eq(shmq_put_bulk(NULL, v, 1, 0), -EINVAL);
	cr_assert_eq(shmq_put_bulk(q, NULL, 1, 0), -EINVAL);
	cr_assert_eq(shmq_get_burst(q, v, SHMQ_BATCH_MAX + 1, 0), -EINVAL);
	/* 65 one-cell messages can never fit 64 cells: an error, not a hang. */
	static struct iovec many[65];
	for (int i = 0; i < 65; i++)
		many[i] = v[0];
	cr_assert_eq(shmq_put_bulk(q, many, 65, -1), -EINVAL);
	v[0].iov_len = 5000; /* > msg_max */
	cr_assert_eq(shmq_put_burst(q, v, 2, 0), -EMSGSIZE);
	cr_assert_eq(shmq_qsize(q), 0);
	shmq_queue_shutdown(q, SHMQ_WR);
	fill_batch(out, v, 1, 0, 0, TMSG_HDR, TMSG_HDR);
	cr_assert_eq(shmq_put_burst(q, v, 1, 0), -EBADF);
	shmq_queue_close(q);
}

Test(zerocopy, reserve_commit_peek_release)
{
	shmq_queue *q = mkq(0, 256);
	shmq_slot s;
	cr_assert_eq(shmq_put_reserve(q, 249, &s, 0), -EMSGSIZE, "one cell holds 248");
	cr_assert_eq(shmq_put_reserve(q, 200, &s, 0), 0);
	tmsg_fill(s.data, 0, 0, 200);
	cr_assert_eq(shmq_put_commit(q, &s), 0);
	cr_assert_eq(shmq_put_commit(q, &s), -EINVAL, "a slot is single-use");
	cr_assert_eq(shmq_qsize(q), 1);
	cr_assert_eq(shmq_get_peek(q, &s, 0), 0);
	cr_assert_eq(s.len, 200);
	cr_assert_eq(tmsg_check_exact(s.data, s.len, 0, 0, 200), TMSG_OK);
	cr_assert_eq(shmq_get_release(q, &s), 0);
	cr_assert_eq(shmq_get_release(q, &s), -EINVAL);
	cr_assert_eq(shmq_get_peek(q, &s, 0), -EAGAIN);
	/* A message spanning cells cannot be read in place: it stays queued. */
	cr_assert_eq(t_put_msg(q, 0, 1, 600, 0), 0);
	cr_assert_eq(shmq_get_peek(q, &s, 0), -EMSGSIZE);
	cr_assert_eq(shmq_get(q, in[0], sizeof(in[0]), 0), 600);
	cr_assert_eq(tmsg_check_exact(in[0], 600, 0, 1, 600), TMSG_OK);
	shmq_queue_close(q);
}

/* ------------------------------------------------ across real processes -- */

/* The shapes test_mp.c does not run, through the shared runner (common.h). */
static void run_processes(enum mp_api api, uint32_t nprod, uint32_t ncons, uint32_t capacity,
			  uint32_t cell_size, size_t hi)
{
	shmq_queue *q = mkq(capacity, cell_size);
	struct mp_cfg cfg = mp_cfg(nprod, ncons, 100000);
	cfg.hi = hi;
	memset(cfg.prod_api, api, sizeof(cfg.prod_api));
	memset(cfg.cons_api, api, sizeof(cfg.cons_api));
	MP_RUN_AND_CHECK(q, &cfg);
}

Test(xproc, burst_4p2c_exactly_once_fifo, .timeout = T_TIMEOUT(120))
{
	run_processes(MP_BURST, 4, 2, 0, 0, 300);
}

Test(xproc, bulk_2p2c_small_ring_exactly_once_fifo, .timeout = T_TIMEOUT(120))
{
	run_processes(MP_BULK, 2, 2, 256, 0, 200); /* bulks wrap the ring */
}

Test(xproc, zerocopy_2p2c_exactly_once_fifo, .timeout = T_TIMEOUT(120))
{
	run_processes(MP_ZEROCOPY, 2, 2, 0, 256, 248);
}

/* ------------------------------------------------------------ crash safety -- */

struct crash {
	shmq_queue *q;
	_Atomic uint32_t step;
};

/* Puts seq 0..9, then dies holding a reservation (message 10). */
static int die_after_reserve(void *arg)
{
	struct crash *c = arg;
	shmq_queue_shutdown(c->q, SHMQ_RD);
	for (uint32_t i = 0; i < 10; i++)
		if (t_put_msg(c->q, 0, i, 100, -1) < 0)
			return 1;
	shmq_slot s;
	if (shmq_put_reserve(c->q, 40, &s, -1) < 0)
		return 2;
	tmsg_fill(s.data, 0, 10, 40);
	raise(SIGKILL);
	return 3;
}

/* Puts seq 11..20 once the other producer is dead, then exits. */
static int put_after(void *arg)
{
	struct crash *c = arg;
	shmq_queue_shutdown(c->q, SHMQ_RD);
	t_await(&c->step, 1, -1);
	for (uint32_t i = 11; i <= 20; i++)
		if (t_put_msg(c->q, 0, i, 100, -1) < 0)
			return 1;
	return 0;
}

Test(zerocopy, producer_killed_between_reserve_and_commit, .timeout = T_TIMEOUT(30))
{
	struct crash *c = t_shared(sizeof(*c));
	c->q = mkq(0, 256);
	pid_t dies = t_fork(die_after_reserve, c), later = t_fork(put_after, c);
	shmq_queue_shutdown(c->q, SHMQ_WR);
	int st;
	cr_assert_eq(t_wait(dies, &st, LIVE), 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
	t_set(&c->step, 1);
	/* 0..9, then the reservation is skipped (lost, never torn), then 11..20. */
	for (uint32_t want = 0; want <= 20; want++) {
		if (want == 10)
			continue;
		ssize_t n = shmq_get(c->q, in[0], sizeof(in[0]), LIVE);
		cr_assert_eq(n, 100, "message %u: %zd", want, n);
		cr_assert_eq(tmsg_check_exact(in[0], 100, 0, want, 100), TMSG_OK, "message %u", want);
	}
	cr_assert_eq(shmq_get(c->q, in[0], sizeof(in[0]), LIVE), -EPIPE);
	cr_assert_eq(t_wait(later, &st, LIVE), 0);
	cr_assert_eq(st, 0);
	shmq_queue_close(c->q);
}

/* Peeks the first message and dies before releasing it. */
static int die_after_peek(void *arg)
{
	struct crash *c = arg;
	shmq_queue_shutdown(c->q, SHMQ_WR);
	shmq_slot s;
	if (shmq_get_peek(c->q, &s, -1) < 0)
		return 1;
	raise(SIGKILL);
	return 2;
}

Test(zerocopy, consumer_killed_between_peek_and_release_small_ring, .timeout = T_TIMEOUT(30))
{
	struct crash *c = t_shared(sizeof(*c));
	c->q = mkq(64, 256); /* 64 one-message cells: the ring wraps onto the dead one */
	cr_assert_eq(t_put_msg(c->q, 0, 0, 100, 0), 0);
	pid_t dies = t_fork(die_after_peek, c);
	int st;
	cr_assert_eq(t_wait(dies, &st, LIVE), 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
	/* Message 0 died with its reader. Put 3 ringfuls through: the producer
	 * must get the dead reader's cell back instead of blocking for good. */
	for (uint32_t i = 1; i <= 192; i++) {
		cr_assert_eq(t_put_msg(c->q, 0, i, 100, LIVE), 0, "put %u", i);
		ssize_t n = shmq_get(c->q, in[0], sizeof(in[0]), LIVE);
		cr_assert_eq(n, 100, "get %u: %zd", i, n);
		cr_assert_eq(tmsg_check_exact(in[0], 100, 0, i, 100), TMSG_OK, "message %u", i);
	}
	cr_assert_eq(shmq_qsize(c->q), 0);
	shmq_queue_close(c->q);
}

/* Dies inside a bulk put of 8, after claiming the cells. */
static int die_in_bulk(void *arg)
{
	struct crash *c = arg;
	static unsigned char bufs[BURST][TMSG_MAX];
	struct iovec v[BURST];
	shmq_queue_shutdown(c->q, SHMQ_RD);
	fill_batch(bufs, v, 4, 0, 0, 100, 100);
	if (shmq_put_bulk(c->q, v, 4, -1) != 4)
		return 1;
	shmq_test_hook = mp_hook;
	mp_hook_point = SHMQ_HOOK_PUT_CLAIMED;
	mp_hook_left = 0;
	fill_batch(bufs, v, 8, 0, 4, 100, 100);
	shmq_put_bulk(c->q, v, 8, -1);
	return 2;
}

Test(batch, producer_killed_inside_bulk_loses_the_whole_bulk, .timeout = T_TIMEOUT(30))
{
	struct crash *c = t_shared(sizeof(*c));
	c->q = mkq(0, 0);
	pid_t dies = t_fork(die_in_bulk, c);
	shmq_queue_shutdown(c->q, SHMQ_WR);
	int st;
	cr_assert_eq(t_wait(dies, &st, LIVE), 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "status %d", st);
	for (uint32_t i = 0; i < 4; i++) {
		cr_assert_eq(shmq_get(c->q, in[0], sizeof(in[0]), LIVE), 100);
		cr_assert_eq(tmsg_check_exact(in[0], 100, 0, i, 100), TMSG_OK, "message %u", i);
	}
	/* None of the dead bulk, not even part of it: end of data. */
	ssize_t n = shmq_get(c->q, in[0], sizeof(in[0]), LIVE);
	cr_assert_eq(n, -EPIPE, "got %zd", n);
	cr_assert_eq(shmq_qsize(c->q), 0);
	shmq_queue_close(c->q);
}
