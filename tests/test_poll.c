/* Waiting on many: shmq_wait_any over 64 queues made ready by other
 * processes (with futex_waitv and with its fallback), writability, end of
 * data, bad arguments; and the eventfd of a queue or pipe end inside epoll,
 * signalled by producers in other processes. */
#include <criterion/criterion.h>

#include "common.h"

#include <sys/epoll.h>

#define LIVE (2 * T_SEC * T_SCALE)
#define NQ 64

static shmq_queue *mkq(uint32_t capacity)
{
	struct shmq_queue_attr a = t_attr(capacity, 0);
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	return q;
}

struct many {
	shmq_queue *q[NQ];
	_Atomic uint32_t go;
};

/* Child k puts one message, its queue index, on queues k, k+4, k+8, ...
 * with pauses, so readiness comes from several processes at different times. */
static int put_spread(void *arg)
{
	struct many *m = arg;
	unsigned k = atomic_fetch_add(&m->go, 1);
	for (unsigned i = k; i < NQ; i += 4) {
		t_nap((int64_t)((i * 7919) % 5) * T_MS);
		if (shmq_put(m->q[i], &i, sizeof(i), LIVE) != 0)
			return 1;
	}
	return 0;
}

static void wait_on_64(void)
{
	struct many *m = t_shared(sizeof(*m));
	for (int i = 0; i < NQ; i++)
		m->q[i] = mkq(64);
	struct shmq_pollitem items[NQ];
	for (int i = 0; i < NQ; i++)
		items[i] = (struct shmq_pollitem){ .queue = m->q[i], .events = SHMQ_POLLIN };
	cr_expect_eq(shmq_wait_any(items, NQ, 0), 0, "nothing ready yet");
	pid_t kids[4];
	for (int k = 0; k < 4; k++)
		kids[k] = t_fork(put_spread, m);
	bool seen[NQ] = { false };
	for (int got = 0; got < NQ;) {
		int n = shmq_wait_any(items, NQ, 5 * LIVE);
		cr_assert_gt(n, 0, "wait_any: %d after %d messages", n, got);
		int ready = 0;
		for (int i = 0; i < NQ; i++) {
			if (!items[i].revents)
				continue;
			ready++;
			cr_assert_eq(items[i].revents, SHMQ_POLLIN, "queue %d: %#x", i,
				     items[i].revents);
			unsigned v;
			cr_assert_eq(shmq_get(m->q[i], &v, sizeof(v), 0), (ssize_t)sizeof(v),
				     "queue %d said readable", i);
			cr_assert_eq(v, (unsigned)i);
			cr_assert(!seen[i]);
			seen[i] = true;
			got++;
		}
		cr_assert_eq(ready, n, "return value counts the ready items");
	}
	for (int k = 0; k < 4; k++) {
		int st;
		cr_assert_eq(t_wait(kids[k], &st, LIVE), 0);
	}
	for (int i = 0; i < NQ; i++)
		shmq_queue_close(m->q[i]);
}

Test(poll, sixty_four_queues_readied_by_other_processes)
{
	wait_on_64();
}

Test(poll, sixty_four_queues_without_futex_waitv)
{
	shmq_test_no_waitv = true;
	wait_on_64();
	shmq_test_no_waitv = false;
}

Test(poll, timeout_returns_zero_after_the_timeout)
{
	shmq_queue *q = mkq(64);
	struct shmq_pollitem it = { .queue = q, .events = SHMQ_POLLIN };
	int64_t t0 = t_now();
	cr_expect_eq(shmq_wait_any(&it, 1, 30 * T_MS), 0);
	cr_expect_geq(t_now() - t0, 30 * T_MS);
	cr_expect_eq(it.revents, 0);
	it.events = SHMQ_POLLOUT;
	cr_expect_eq(shmq_wait_any(&it, 1, 0), 1, "an empty queue has room");
	cr_expect_eq(it.revents, SHMQ_POLLOUT);
	shmq_queue_close(q);
}

Test(poll, bad_arguments)
{
	shmq_queue *q = mkq(64);
	shmq_conn *a, *b;
	cr_assert_eq(shmq_pipe(&a, &b, SHMQ_SIMPLEX), 0);
	struct shmq_pollitem it = { .queue = q, .events = SHMQ_POLLIN };
	cr_expect_eq(shmq_wait_any(NULL, 1, 0), -EINVAL);
	cr_expect_eq(shmq_wait_any(&it, 0, 0), -EINVAL);
	it.conn = a;
	cr_expect_eq(shmq_wait_any(&it, 1, 0), -EINVAL, "queue and conn");
	it = (struct shmq_pollitem){ .queue = q, .events = 0 };
	cr_expect_eq(shmq_wait_any(&it, 1, 0), -EINVAL, "no events");
	it = (struct shmq_pollitem){ .conn = b, .events = SHMQ_POLLIN };
	cr_expect_eq(shmq_wait_any(&it, 1, 0), -EBADF, "b only sends");
	it = (struct shmq_pollitem){ .conn = a, .events = SHMQ_POLLOUT };
	cr_expect_eq(shmq_wait_any(&it, 1, 0), -EBADF, "a only receives");
	struct shmq_pollitem many[SHMQ_WAIT_MAX / 2 + 1];
	for (unsigned i = 0; i < SHMQ_WAIT_MAX / 2 + 1; i++)
		many[i] = (struct shmq_pollitem){ .queue = q, .events = SHMQ_POLLIN | SHMQ_POLLOUT };
	cr_expect_eq(shmq_wait_any(many, SHMQ_WAIT_MAX / 2 + 1, 0), -EINVAL, "too many words");
	shmq_conn_close(a);
	shmq_conn_close(b);
	shmq_queue_close(q);
}

struct room {
	shmq_queue *q;
	_Atomic uint32_t go;
};

static int drain_one_later(void *arg)
{
	struct room *r = arg;
	shmq_queue_shutdown(r->q, SHMQ_WR);
	t_await(&r->go, 1, LIVE);
	t_nap(20 * T_MS);
	char buf[64];
	return shmq_get(r->q, buf, sizeof(buf), LIVE) >= 0 ? 0 : 1;
}

Test(poll, full_queue_becomes_writable_when_another_process_gets)
{
	struct room *r = t_shared(sizeof(*r));
	r->q = mkq(64);
	pid_t kid = t_fork(drain_one_later, r);
	while (shmq_put(r->q, "x", 1, 0) == 0)
		;
	shmq_queue_shutdown(r->q, SHMQ_RD);
	struct shmq_pollitem it = { .queue = r->q, .events = SHMQ_POLLOUT };
	cr_expect_eq(shmq_wait_any(&it, 1, 0), 0, "full");
	t_post(&r->go);
	cr_expect_eq(shmq_wait_any(&it, 1, LIVE), 1);
	cr_expect_eq(it.revents, SHMQ_POLLOUT);
	cr_expect_eq(shmq_put(r->q, "y", 1, 0), 0);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	shmq_queue_close(r->q);
}

static int hold_then_die(void *arg)
{
	struct room *r = arg;
	shmq_queue_shutdown(r->q, SHMQ_RD);
	t_post(&r->go);
	pause();
	return 0;
}

Test(poll, producer_death_is_readable_end_of_data)
{
	struct room *r = t_shared(sizeof(*r));
	r->q = mkq(64);
	pid_t kid = t_fork(hold_then_die, r);
	cr_assert_eq(t_await(&r->go, 1, LIVE), 0);
	shmq_queue_shutdown(r->q, SHMQ_WR);
	struct shmq_pollitem it = { .queue = r->q, .events = SHMQ_POLLIN };
	cr_expect_eq(shmq_wait_any(&it, 1, 50 * T_MS), 0, "a live producer holds it");
	kill(kid, SIGKILL);
	int64_t t0 = t_now();
	cr_expect_eq(shmq_wait_any(&it, 1, 10 * T_SEC), 1);
	cr_expect_lt(t_now() - t0, LIVE);
	cr_expect_eq(it.revents, SHMQ_POLLIN | SHMQ_POLLHUP);
	char buf[8];
	cr_expect_eq(shmq_get(r->q, buf, sizeof(buf), 0), -EPIPE);
	t_kill_reap(kid);
	shmq_queue_close(r->q);
}

/* ----------------------------------------------------------------- eventfd -- */

struct efd_sh {
	shmq_queue *q;
	shmq_conn *a, *b;
	_Atomic uint32_t step;
};

/* Puts a burst, waits, puts again, then closes: end of data. */
static int efd_producer(void *arg)
{
	struct efd_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD);
	t_await(&s->step, 1, LIVE);
	for (int i = 0; i < 10; i++)
		if (shmq_put(s->q, &i, sizeof(i), LIVE) != 0)
			return 1;
	t_await(&s->step, 2, LIVE);
	int i = 10;
	if (shmq_put(s->q, &i, sizeof(i), LIVE) != 0)
		return 2;
	t_await(&s->step, 3, LIVE);
	shmq_queue_close(s->q);
	return 0;
}

/* epoll_wait on one fd; returns the number of events. */
static int epoll_once(int ep, int64_t timeout_ns)
{
	struct epoll_event ev;
	return epoll_wait(ep, &ev, 1, (int)(timeout_ns / T_MS));
}

static int epoll_on(int fd)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN };
	cr_assert_eq(epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev), 0);
	return ep;
}

static void drain_efd(int fd)
{
	uint64_t v;
	cr_assert_eq(read(fd, &v, sizeof(v)), (ssize_t)sizeof(v));
}

Test(eventfd, queue_in_epoll_with_a_producer_in_another_process)
{
	struct efd_sh *s = t_shared(sizeof(*s));
	s->q = mkq(64);
	pid_t kid = t_fork(efd_producer, s);
	shmq_queue_shutdown(s->q, SHMQ_WR);
	int fd = shmq_queue_eventfd(s->q);
	cr_assert_geq(fd, 0, "eventfd: %d", fd);
	cr_expect_eq(shmq_queue_eventfd(s->q), fd, "one per handle");
	int ep = epoll_on(fd);
	cr_expect_eq(epoll_once(ep, 50 * T_MS), 0, "empty: not readable");

	t_set(&s->step, 1);
	cr_assert_eq(epoll_once(ep, LIVE), 1, "a put from another process signals it");
	drain_efd(fd);
	int v, want = 0;
	/* Wait for the whole burst, taking what is there each time. */
	while (want < 10) {
		ssize_t r;
		while ((r = shmq_get(s->q, &v, sizeof(v), 0)) == (ssize_t)sizeof(v))
			cr_assert_eq(v, want++);
		cr_assert_eq(r, -EAGAIN);
		if (want < 10) {
			cr_assert_eq(epoll_once(ep, LIVE), 1);
			drain_efd(fd);
		}
	}
	cr_expect_eq(epoll_once(ep, 50 * T_MS), 0, "drained and re-armed: quiet");

	t_set(&s->step, 2);
	cr_assert_eq(epoll_once(ep, LIVE), 1, "re-armed by the -EAGAIN");
	drain_efd(fd);
	cr_expect_eq(shmq_get(s->q, &v, sizeof(v), 0), (ssize_t)sizeof(v));
	cr_expect_eq(v, 10);
	cr_expect_eq(shmq_get(s->q, &v, sizeof(v), 0), -EAGAIN);

	t_set(&s->step, 3);
	cr_assert_eq(epoll_once(ep, LIVE), 1, "end of data signals it too");
	cr_expect_eq(shmq_get(s->q, &v, sizeof(v), 0), -EPIPE);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(ep);
	shmq_queue_close(s->q);
}

static int conn_sender(void *arg)
{
	struct efd_sh *s = arg;
	shmq_conn_close(s->a);
	t_await(&s->step, 1, LIVE);
	return shmq_send(s->b, "ping", 4, LIVE) == 0 ? 0 : 1;
}

Test(eventfd, pipe_end_in_epoll)
{
	struct efd_sh *s = t_shared(sizeof(*s));
	cr_assert_eq(shmq_pipe(&s->a, &s->b, SHMQ_SIMPLEX), 0);
	cr_expect_eq(shmq_conn_eventfd(s->b), -EBADF, "b only sends");
	pid_t kid = t_fork(conn_sender, s);
	shmq_conn_close(s->b);
	int fd = shmq_conn_eventfd(s->a);
	cr_assert_geq(fd, 0);
	int ep = epoll_on(fd);
	cr_expect_eq(epoll_once(ep, 20 * T_MS), 0);
	t_set(&s->step, 1);
	cr_assert_eq(epoll_once(ep, LIVE), 1);
	char buf[8];
	cr_expect_eq(shmq_recv(s->a, buf, sizeof(buf), 0), 4);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	close(ep);
	shmq_conn_close(s->a);
}

Test(eventfd, needs_the_consumer_role)
{
	shmq_queue *q = mkq(64);
	shmq_queue_shutdown(q, SHMQ_RD);
	cr_expect_eq(shmq_queue_eventfd(q), -EBADF);
	cr_expect_eq(shmq_queue_eventfd(NULL), -EINVAL);
	shmq_queue_close(q);
}
