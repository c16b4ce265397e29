/* Multi-process exactly-once and per-producer FIFO, and handle inheritance
 * across fork(). Producers and consumers are real processes (fork); every
 * message carries producer id, sequence number, length and a checksum and is
 * checked on receipt; consumers stop on -EPIPE (no sentinel) and record what
 * they got in shared memory; the parent asserts. */
#include <criterion/criterion.h>
#include <pthread.h>

#include "common.h"
#include "seg.h"

#define LIVE (2 * T_SEC * T_SCALE)

static shmq_queue *mkq_attr(const struct shmq_queue_attr *a)
{
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, a, &q);
	cr_assert_eq(r, 0, "create: %d", r);
	return q;
}

/* One producer, one consumer: lengths from 1 byte (checked by position, the
 * stream being totally ordered) to 400 (up to 8 cells). */
Test(mp, p1c1_exactly_once_fifo_100k, .timeout = T_TIMEOUT(120))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	struct mp_cfg cfg = mp_cfg(1, 1, 100000);
	cfg.lo = 1;
	MP_RUN_AND_CHECK(mkq_attr(&a), &cfg);
}

Test(mp, p4c4_exactly_once_fifo_100k, .timeout = T_TIMEOUT(120))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	struct mp_cfg cfg = mp_cfg(4, 4, 100000);
	MP_RUN_AND_CHECK(mkq_attr(&a), &cfg);
}

Test(mp, p8c2_exactly_once_fifo_100k, .timeout = T_TIMEOUT(120))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	struct mp_cfg cfg = mp_cfg(8, 2, 100000);
	MP_RUN_AND_CHECK(mkq_attr(&a), &cfg);
}

/* A small ring (64 cells, messages up to 9 cells): producers and consumers
 * block and wake all the time, and the ring wraps thousands of times. */
Test(mp, p3c3_small_ring_wraps, .timeout = T_TIMEOUT(120))
{
	struct shmq_queue_attr a = t_attr(64, 1024);
	struct mp_cfg cfg = mp_cfg(3, 3, 30000);
	cfg.hi = 500;
	shmq_queue *q = mkq_attr(&a);
	cr_assert_eq(shmq_capacity(q), 64);
	MP_RUN_AND_CHECK(q, &cfg);
}

/* Threads of one process: each with its own handle, or all producers on one
 * handle and all consumers on another (calls on one handle may run
 * concurrently from any thread). The TSan build checks these for races. */
static void run_threads_and_check(bool shared)
{
	struct shmq_queue_attr a = t_attr(256, 2048);
	shmq_queue *q = mkq_attr(&a);
	struct mp_cfg cfg = mp_cfg(3, 3, 60000);
	cfg.hi = 600;
	struct mp_report rep;
	mp_run_threads(q, &cfg, shared, &rep);
	cr_assert_eq(rep.created, 0);
	MP_ASSERT_CLEAN(rep);
	cr_assert_eq(rep.missing, 0, "%llu messages lost", (unsigned long long)rep.missing);
	cr_assert_eq(rep.received, 3ull * cfg.per_prod);
	shmq_queue_close(q);
}

Test(threads, p3c3_threads_own_handles, .timeout = T_TIMEOUT(120))
{
	run_threads_and_check(false);
}

Test(threads, p3c3_threads_shared_handles, .timeout = T_TIMEOUT(120))
{
	run_threads_and_check(true);
}

/* Cell size read back from the segment header (the library's view). */
static uint32_t header_cell_size(shmq_queue *q)
{
	struct seg_hdr *h = mmap(NULL, sizeof(*h), PROT_READ, MAP_SHARED, shmq_queue_fd(q), 0);
	cr_assert_neq(h, MAP_FAILED);
	uint32_t cs = h->geom.cell_size;
	munmap(h, sizeof(*h));
	return cs;
}

Test(mp, p4c4_cell256_exactly_once_fifo_100k, .timeout = T_TIMEOUT(120))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	a.cell_size = 256;
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	if (r == -EINVAL)
		cr_skip("attr.cell_size not supported by this library (-EINVAL)");
	cr_assert_eq(r, 0, "create with cell_size 256: %d", r);
	uint32_t cs = header_cell_size(q);
	if (cs != 256) {
		shmq_queue_close(q);
		cr_skip("attr.cell_size ignored by this library (cells of %u bytes)", cs);
	}
	struct mp_cfg cfg = mp_cfg(4, 4, 100000);
	cfg.hi = 1200; /* up to 5 cells of 256 */
	MP_RUN_AND_CHECK(q, &cfg);
}

/* Batch and zero-copy APIs across processes, alone and all mixed. */
static void apis_and_check(uint32_t capacity, uint32_t cell_size, size_t hi,
			   const uint8_t prod[4], const uint8_t cons[4])
{
	struct shmq_queue_attr a = t_attr(capacity, 2048);
	a.cell_size = cell_size;
	shmq_queue *q = mkq_attr(&a);
	struct mp_cfg cfg = mp_cfg(4, 4, 100000);
	cfg.hi = hi;
	memcpy(cfg.prod_api, prod, 4);
	memcpy(cfg.cons_api, cons, 4);
	MP_RUN_AND_CHECK(q, &cfg);
}

Test(api, p4c4_bulk_put_burst_get_100k, .timeout = T_TIMEOUT(120))
{
	const uint8_t p[4] = { MP_BULK, MP_BULK, MP_BULK, MP_BULK };
	const uint8_t c[4] = { MP_BURST, MP_BURST, MP_BURST, MP_BURST };
	apis_and_check(0, 0, 400, p, c);
}

Test(api, p4c4_burst_put_bulk_get_100k, .timeout = T_TIMEOUT(120))
{
	const uint8_t p[4] = { MP_BURST, MP_BURST, MP_BURST, MP_BURST };
	const uint8_t c[4] = { MP_BULK, MP_BULK, MP_BULK, MP_BULK };
	apis_and_check(0, 0, 400, p, c);
}

Test(api, p4c4_zero_copy_100k, .timeout = T_TIMEOUT(120))
{
	const uint8_t z[4] = { MP_ZEROCOPY, MP_ZEROCOPY, MP_ZEROCOPY, MP_ZEROCOPY };
	apis_and_check(0, 256, 248, z, z); /* every message fits one cell */
}

Test(api, p4c4_all_apis_mixed_100k, .timeout = T_TIMEOUT(120))
{
	const uint8_t m[4] = { MP_COPY, MP_BULK, MP_BURST, MP_ZEROCOPY };
	const uint8_t c[4] = { MP_ZEROCOPY, MP_BURST, MP_COPY, MP_BULK };
	apis_and_check(0, 256, 248, m, c);
}

Test(api, p4c4_burst_small_ring, .timeout = T_TIMEOUT(120))
{
	const uint8_t b[4] = { MP_BURST, MP_BURST, MP_BURST, MP_BURST };
	apis_and_check(64, 0, 300, b, b);
}

/* --------------------------------------------------------- fork inheritance -- */

struct fork_sh {
	shmq_queue *q;
	_Atomic uint32_t ready, done, release;
	_Atomic int64_t r_put, r_get, r_get2;
	unsigned char buf[256];
};

static struct fork_sh *fork_sh_new(shmq_queue *q)
{
	struct fork_sh *s = t_shared(sizeof(*s));
	cr_assert_not_null(s);
	s->q = q;
	return s;
}

static void expect_exit0(pid_t pid)
{
	int st;
	int r = t_wait(pid, &st, LIVE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "child did not exit");
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s",
		  t_status_str(st, sb, sizeof(sb)));
}

/* The child uses the inherited handle without doing anything to it. */
static int use_inherited(void *arg)
{
	struct fork_sh *s = arg;
	s->r_put = t_put_msg(s->q, 1, 0, 77, 0);
	s->r_get = shmq_get(s->q, s->buf, sizeof(s->buf), 0);
	return 0;
}

Test(fork, child_inherits_handle_with_same_roles, .timeout = T_TIMEOUT(20))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	shmq_queue *q = mkq_attr(&a);
	struct fork_sh *s = fork_sh_new(q);
	cr_assert_eq(t_put_msg(q, 0, 0, 33, 0), 0);
	expect_exit0(t_fork(use_inherited, s));
	cr_assert_eq(s->r_put, 0, "put through the inherited RDWR handle: %lld",
		     (long long)s->r_put);
	cr_assert_eq(s->r_get, 33, "get through the inherited RDWR handle: %lld",
		     (long long)s->r_get);
	cr_assert_eq(tmsg_check_exact(s->buf, 33, 0, 0, 33), TMSG_OK);
	/* The child's message is in the shared queue. */
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), 77);
	cr_assert_eq(tmsg_check_exact(buf, 77, 1, 0, 77), TMSG_OK);

	/* Roles are inherited as they are: a read-only handle stays one. */
	shmq_queue *r = NULL;
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD, &r), 0);
	s->q = r;
	cr_assert_eq(t_put_msg(q, 0, 1, 33, 0), 0);
	expect_exit0(t_fork(use_inherited, s));
	cr_assert_eq(s->r_put, -EBADF, "put through an inherited RD handle: %lld",
		     (long long)s->r_put);
	cr_assert_eq(s->r_get, 33, "get through an inherited RD handle: %lld",
		     (long long)s->r_get);
	shmq_queue_close(r);
	shmq_queue_close(q);
}

/* The inherited handle counts as a producer of its own: when the parent drops
 * its producer role, the child still holds one, so no EOF yet. */
static int inherited_producer(void *arg)
{
	struct fork_sh *s = arg;
	t_post(&s->ready);
	t_await(&s->release, 1, -1);
	s->r_put = t_put_msg(s->q, 1, 0, 60, 0);
	t_post(&s->done);
	t_await(&s->release, 2, -1);
	return shmq_queue_close(s->q);
}

Test(fork, inherited_handle_counts_as_producer, .timeout = T_TIMEOUT(20))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	shmq_queue *q = mkq_attr(&a);
	struct fork_sh *s = fork_sh_new(q);
	pid_t pid = t_fork(inherited_producer, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	unsigned char buf[256];
	ssize_t n = shmq_get(q, buf, sizeof(buf), 30 * T_MS);
	cr_assert_eq(n, -ETIMEDOUT, "the child still produces; got %zd", n);
	t_set(&s->release, 1);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), 60);
	cr_assert_eq(tmsg_check_exact(buf, 60, 1, 0, 60), TMSG_OK);
	cr_assert_eq(t_await(&s->done, 1, LIVE), 0);
	cr_assert_eq(s->r_put, 0);
	t_set(&s->release, 2);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), -EPIPE);
	expect_exit0(pid);
	shmq_queue_close(q);
}

/* A child that exits without closing its inherited handle is gone: EOF by
 * death (exit, no SIGKILL needed) after what it put is drained. */
static int put_and_exit_without_close(void *arg)
{
	struct fork_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD); /* a producer only; leaves the handle open */
	t_post(&s->ready);
	t_await(&s->release, 1, -1);
	for (uint32_t i = 0; i < 3; i++)
		if (t_put_msg(s->q, 2, i, 100, 0) < 0)
			return 1;
	return 0; /* _exit without shmq_queue_close */
}

Test(fork, child_exit_without_close_is_eof, .timeout = T_TIMEOUT(20))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	shmq_queue *q = mkq_attr(&a);
	struct fork_sh *s = fork_sh_new(q);
	pid_t pid = t_fork(put_and_exit_without_close, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	t_set(&s->release, 1);
	unsigned char buf[256];
	for (uint32_t i = 0; i < 3; i++) {
		cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), 100);
		cr_assert_eq(tmsg_check_exact(buf, 100, 2, i, 100), TMSG_OK);
	}
	/* Not reaped yet: a zombie is gone too. */
	int64_t t0 = t_now();
	ssize_t n = shmq_get(q, buf, sizeof(buf), -1);
	cr_assert_eq(n, -EPIPE, "after the producer exited: %zd", n);
	cr_assert_lt(t_now() - t0, LIVE);
	expect_exit0(pid);
	shmq_queue_close(q);
}

/* Same for a consumer that exits without closing: put gets -EPIPE. */
static int get_and_exit_without_close(void *arg)
{
	struct fork_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_WR);
	t_post(&s->ready);
	s->r_get = shmq_get(s->q, s->buf, sizeof(s->buf), LIVE);
	return 0;
}

Test(fork, consumer_exit_without_close_is_epipe, .timeout = T_TIMEOUT(20))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	shmq_queue *q = mkq_attr(&a);
	struct fork_sh *s = fork_sh_new(q);
	pid_t pid = t_fork(get_and_exit_without_close, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_RD), 0);
	cr_assert_eq(t_put_msg(q, 0, 0, 40, 0), 0);
	expect_exit0(pid);
	cr_assert_eq(s->r_get, 40);
	/* Death is noticed at the latest when a put has to wait (a put that
	 * finds room may still succeed): keep putting until it would block. */
	int64_t t0 = t_now();
	uint32_t ok = 0;
	int r;
	while ((r = t_put_msg(q, 0, 1 + ok, 40, -1)) == 0 && ok <= shmq_capacity(q))
		ok++;
	cr_assert_eq(r, -EPIPE, "put after the only consumer exited: %d", r);
	cr_assert_leq(ok, shmq_capacity(q), "a put with no consumer left succeeded on a full ring");
	cr_assert_lt(t_now() - t0, LIVE);
	shmq_queue_close(q);
}

/* fork() must make the child a holder at once, like a pipe's fd: a parent that
 * forks a producer and then closes its own handle must not end the stream
 * before the child runs. The child is held back (an atfork handler registered
 * before the library's, so it runs first in the child) to make the window
 * that scheduling opens anyway deterministic.
 * Regression test for a library bug found by this suite (fork EOF window, at
 * 84974e8): the child claimed its participant slot in its pthread_atfork
 * child handler, i.e. only once it ran; until then the producer count could
 * be 0 and a consumer got -EPIPE although a producer held the handle. */
static _Atomic uint32_t *hold_child; /* shared: 1 while the next child must wait */
static void atfork_hold_child(void)
{
	if (hold_child && atomic_load(hold_child) == 1)
		t_await(hold_child, 2, 10 * T_SEC);
}

static int early_consumer(void *arg)
{
	struct fork_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_WR);
	t_post(&s->ready);
	s->r_get = shmq_get(s->q, s->buf, sizeof(s->buf), -1);
	t_post(&s->done);
	s->r_get2 = shmq_get(s->q, s->buf + 128, 128, LIVE);
	return 0;
}

static int late_producer(void *arg)
{
	struct fork_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD);
	s->r_put = t_put_msg(s->q, 5, 0, 50, LIVE);
	return shmq_queue_close(s->q);
}

Test(fork, child_holds_handle_from_fork_return, .timeout = T_TIMEOUT(30))
{
	/* Before the library registers its own handlers (first handle). */
	hold_child = t_shared(sizeof(*hold_child));
	cr_assert_not_null(hold_child);
	cr_assert_eq(pthread_atfork(NULL, NULL, atfork_hold_child), 0);

	struct shmq_queue_attr a = t_attr(0, 0);
	shmq_queue *q = mkq_attr(&a);
	struct fork_sh *s = fork_sh_new(q);
	pid_t c = t_fork(early_consumer, s);
	cr_assert_eq(t_await(&s->ready, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(c, LIVE), 0);

	t_set(hold_child, 1);
	pid_t p = t_fork(late_producer, s);
	/* fork() returned: the child holds q as a producer. Drop ours. */
	cr_assert_eq(shmq_queue_close(q), 0);
	/* The consumer must keep waiting for the held-back producer. */
	int early = t_await(&s->done, 1, 300 * T_MS) == 0;
	t_set(hold_child, 2);
	expect_exit0(p);
	expect_exit0(c);
	cr_assert_eq(early, 0,
		     "fork EOF window: consumer got %lld while a forked producer held the "
		     "queue (the child only counted once its atfork handler ran)",
		     (long long)s->r_get);
	cr_assert_eq(s->r_put, 0);
	cr_assert_eq(s->r_get, 50);
	cr_assert_eq(tmsg_check_exact(s->buf, 50, 5, 0, 50), TMSG_OK);
	cr_assert_eq(s->r_get2, -EPIPE);
}
