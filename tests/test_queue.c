/* Queue layer: blocking, timeouts, EOF, -EPIPE, -EMSGSIZE, roles, bad
 * arguments, size snapshots. Cross-process cases fork real children; only the
 * parent asserts. Timing: lower bounds only, plus generous liveness bounds. */
#include <criterion/criterion.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE) /* liveness bound: "not a hang" */
#define OBSERVE (200 * T_MS)        /* window in which nothing must happen */

static shmq_queue *mkq(uint32_t capacity, uint32_t msg_max)
{
	struct shmq_queue_attr a = t_attr(capacity, msg_max);
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	cr_assert_eq(r, 0, "create: %d", r);
	cr_assert_not_null(q);
	return q;
}

static shmq_queue *open_again(shmq_queue *q, int roles)
{
	shmq_queue *h = NULL;
	int r = shmq_queue_open_fd(shmq_queue_fd(q), roles, &h);
	cr_assert_eq(r, 0, "open_fd(roles %d): %d", roles, r);
	return h;
}

/* Get one message and check it is (prod, seq) of length len. */
static void expect_msg(shmq_queue *q, uint32_t prod, uint32_t seq, size_t len, int64_t timeout)
{
	static unsigned char buf[TMSG_MAX];
	ssize_t n = shmq_get(q, buf, sizeof(buf), timeout);
	cr_assert_eq(n, (ssize_t)len, "get: %zd, want message %u/%u of %zu bytes", n, prod, seq,
		     len);
	cr_assert_eq(tmsg_check_exact(buf, (size_t)n, prod, seq, len), TMSG_OK,
		     "message %u/%u corrupted", prod, seq);
}

static void put_ok(shmq_queue *q, uint32_t prod, uint32_t seq, size_t len)
{
	int r = t_put_msg(q, prod, seq, len, 0);
	cr_assert_eq(r, 0, "put %u/%u (%zu bytes): %d", prod, seq, len, r);
}

/* Fill q with one-cell messages (prod 0, seq 0..) until it is full; returns
 * how many went in. */
static uint32_t fill(shmq_queue *q, size_t len)
{
	uint32_t n = 0;
	int r;
	while ((r = t_put_msg(q, 0, n, len, 0)) == 0)
		n++;
	cr_assert_eq(r, -EAGAIN, "put on a full queue, nowait: %d", r);
	return n;
}

/* State shared with one child. */
struct kid {
	shmq_queue *q;
	_Atomic uint32_t ready, done, release;
	_Atomic int64_t ret, elapsed;
	int64_t arg; /* input: a timeout or a sequence number */
	unsigned char buf[1024];
};

static struct kid *kid_new(shmq_queue *q)
{
	struct kid *k = t_shared(sizeof(*k));
	cr_assert_not_null(k);
	k->q = q;
	return k;
}

static void kid_finish(pid_t pid, struct kid *k)
{
	int st;
	t_set(&k->release, 1000); /* past every stage */
	int r = t_wait(pid, &st, LIVE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "child did not exit");
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: %s",
		  t_status_str(st, sb, sizeof(sb)));
}

/* ------------------------------------------------------ nowait / timeout -- */

Test(timeout, get_empty_nowait_eagain)
{
	shmq_queue *q = mkq(0, 0);
	unsigned char buf[64];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);
	cr_assert_eq(shmq_qsize(q), 0);
	shmq_queue_close(q);
}

Test(timeout, get_empty_timeout_etimedout, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(0, 0);
	unsigned char buf[64];
	int64_t t0 = t_now();
	ssize_t r = shmq_get(q, buf, sizeof(buf), 50 * T_MS);
	int64_t el = t_now() - t0;
	cr_assert_eq(r, -ETIMEDOUT, "get(50 ms) on empty: %zd", r);
	cr_assert_geq(el, 50 * T_MS, "returned after %lld ns, before the timeout", (long long)el);
	shmq_queue_close(q);
}

Test(timeout, put_full_nowait_and_timeout, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(64, 1024);
	uint32_t n = fill(q, 20);
	cr_assert_eq(n, shmq_capacity(q), "one-cell messages held: %u of %zu cells", n,
		     shmq_capacity(q));
	cr_assert_eq(t_put_msg(q, 0, n, 20, 0), -EAGAIN);
	int64_t t0 = t_now();
	int r = t_put_msg(q, 0, n, 20, 50 * T_MS);
	int64_t el = t_now() - t0;
	cr_assert_eq(r, -ETIMEDOUT, "put(50 ms) on full: %d", r);
	cr_assert_geq(el, 50 * T_MS, "returned after %lld ns, before the timeout", (long long)el);
	/* Failed puts left the queue as it was. */
	cr_assert_eq(shmq_qsize(q), (ssize_t)n);
	for (uint32_t i = 0; i < n; i++)
		expect_msg(q, 0, i, 20, 0);
	cr_assert_eq(shmq_empty(q), 1);
	shmq_queue_close(q);
}

/* A waiting call restarts after signals with the remaining time: never
 * -EINTR, never early. */
static void on_usr1(int sig) { (void)sig; }

static int get_with_signals_child(void *arg)
{
	struct kid *k = arg;
	struct sigaction sa = { .sa_handler = on_usr1 }; /* no SA_RESTART */
	sigaction(SIGUSR1, &sa, NULL);
	shmq_queue_shutdown(k->q, SHMQ_WR);
	t_post(&k->ready);
	int64_t t0 = t_now();
	ssize_t r = shmq_get(k->q, k->buf, sizeof(k->buf), 300 * T_MS);
	k->elapsed = t_now() - t0;
	k->ret = r;
	t_post(&k->done);
	t_await(&k->release, 1, -1);
	return 0;
}

Test(timeout, signals_neither_interrupt_nor_shorten, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(0, 0);
	struct kid *k = kid_new(q);
	pid_t pid = t_fork(get_with_signals_child, k);
	cr_assert_eq(t_await(&k->ready, 1, LIVE), 0);
	while (t_await(&k->done, 1, 10 * T_MS) < 0)
		kill(pid, SIGUSR1);
	cr_assert_eq(k->ret, -ETIMEDOUT, "get(300 ms) under signals: %lld", (long long)k->ret);
	cr_assert_geq(k->elapsed, 300 * T_MS, "returned early, after %lld ns",
		      (long long)k->elapsed);
	kid_finish(pid, k);
	shmq_queue_close(q);
}

/* ------------------------------------------------------------ wake-ups -- */

static int blocked_get_child(void *arg)
{
	struct kid *k = arg;
	shmq_queue_shutdown(k->q, SHMQ_WR);
	t_post(&k->ready);
	k->ret = shmq_get(k->q, k->buf, sizeof(k->buf), k->arg);
	t_post(&k->done);
	t_await(&k->release, 1, -1);
	return 0;
}

static void blocked_get_woken(int64_t timeout)
{
	shmq_queue *q = mkq(0, 0);
	struct kid *k = kid_new(q);
	k->arg = timeout;
	pid_t pid = t_fork(blocked_get_child, k);
	cr_assert_eq(t_await(&k->ready, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(pid, LIVE), 0, "consumer never went to sleep");
	/* Waiting means waiting: nothing comes back while the queue is empty. */
	cr_assert_eq(t_await(&k->done, 1, OBSERVE), -ETIMEDOUT,
		     "get(%lld) on an empty queue returned %lld", (long long)timeout,
		     (long long)k->ret);
	put_ok(q, 7, 1, 150); /* three cells */
	cr_assert_eq(t_await(&k->done, 1, LIVE), 0, "put did not wake the blocked get");
	cr_assert_eq(k->ret, 150, "woken get: %lld", (long long)k->ret);
	cr_assert_eq(tmsg_check_exact(k->buf, 150, 7, 1, 150), TMSG_OK);
	cr_assert_eq(shmq_qsize(q), 0);
	kid_finish(pid, k);
	shmq_queue_close(q);
}

Test(wake, blocked_get_forever_woken_by_put_from_other_process, .timeout = T_TIMEOUT(20))
{
	blocked_get_woken(-1);
}

Test(wake, blocked_get_timed_woken_by_put_from_other_process, .timeout = T_TIMEOUT(20))
{
	blocked_get_woken(60 * T_SEC);
}

static int blocked_put_child(void *arg)
{
	struct kid *k = arg;
	shmq_queue_shutdown(k->q, SHMQ_RD);
	t_post(&k->ready);
	k->ret = t_put_msg(k->q, 0, (uint32_t)k->arg, 20, -1);
	t_post(&k->done);
	t_await(&k->release, 1, -1);
	return 0;
}

Test(wake, blocked_put_woken_by_get_from_other_process, .timeout = T_TIMEOUT(20))
{
	shmq_queue *q = mkq(64, 1024);
	uint32_t n = fill(q, 20);
	cr_assert_eq(shmq_full(q), 1);
	struct kid *k = kid_new(q);
	k->arg = n; /* the child puts message n */
	pid_t pid = t_fork(blocked_put_child, k);
	cr_assert_eq(t_await(&k->ready, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(pid, LIVE), 0, "producer never went to sleep");
	cr_assert_eq(t_await(&k->done, 1, OBSERVE), -ETIMEDOUT,
		     "put(-1) on a full queue returned %lld", (long long)k->ret);
	expect_msg(q, 0, 0, 20, 0);
	cr_assert_eq(t_await(&k->done, 1, LIVE), 0, "get did not wake the blocked put");
	cr_assert_eq(k->ret, 0, "woken put: %lld", (long long)k->ret);
	for (uint32_t i = 1; i <= n; i++) /* FIFO: the child's message comes last */
		expect_msg(q, 0, i, 20, 0);
	cr_assert_eq(shmq_get(q, k->buf, sizeof(k->buf), 0), -EAGAIN);
	kid_finish(pid, k);
	shmq_queue_close(q);
}

/* One item wakes one parked waiter, not all of them (they would race for it
 * and all but one park again). Each consumer counts its returns from a futex
 * sleep that were not the end of a slice (SHMQ_HOOK_QUEUE_WOKEN). */
#define HERD 6

struct herd {
	shmq_queue *q;
	_Atomic uint32_t ready, got, release;
	_Atomic uint32_t woken[HERD];
	_Atomic int64_t ret[HERD];
};

/* A child counts into *woken_count (shared memory) each time a parked put
 * or get of its comes back woken. */
static _Atomic uint32_t *woken_count;

static void count_woken(enum shmq_hook_point where)
{
	if (where == SHMQ_HOOK_QUEUE_WOKEN)
		atomic_fetch_add(woken_count, 1);
}

static void count_woken_into(_Atomic uint32_t *count)
{
	woken_count = count;
	shmq_test_hook = count_woken;
}

static int herd_consumer(void *arg)
{
	struct herd *h = arg;
	shmq_queue_shutdown(h->q, SHMQ_WR);
	unsigned me = atomic_fetch_add(&h->ready, 1);
	count_woken_into(&h->woken[me]);
	unsigned char buf[64];
	h->ret[me] = shmq_get(h->q, buf, sizeof(buf), -1);
	t_post(&h->got);
	t_await(&h->release, 1, -1);
	return 0;
}

static uint32_t herd_woken(struct herd *h)
{
	uint32_t n = 0;
	for (int i = 0; i < HERD; i++)
		n += atomic_load(&h->woken[i]);
	return n;
}

Test(wake, one_put_wakes_one_of_many_parked_consumers, .timeout = T_TIMEOUT(30))
{
	shmq_queue *q = mkq(0, 0);
	struct herd *h = t_shared(sizeof(*h));
	cr_assert_not_null(h);
	h->q = q;
	pid_t pids[HERD];
	for (int i = 0; i < HERD; i++)
		pids[i] = t_fork(herd_consumer, h);
	cr_assert_eq(t_await(&h->ready, HERD, LIVE), 0);
	for (int i = 0; i < HERD; i++)
		cr_assert_eq(t_wait_sleeping(pids[i], LIVE), 0, "consumer %d never slept", i);
	uint32_t before = herd_woken(h);
	put_ok(q, 1, 0, 20);
	cr_assert_eq(t_await(&h->got, 1, LIVE), 0, "the put woke no consumer");
	/* Give any other woken consumer time to come back and count itself. */
	cr_assert_eq(t_await(&h->got, 2, OBSERVE), -ETIMEDOUT, "one message, two gets");
	uint32_t woken = herd_woken(h) - before;
	/* 1; 2 only if another consumer re-parked (every 50 ms) in the same
	 * microsecond as the put moved the word. Waking all would give 6. */
	cr_assert(woken >= 1 && woken <= 2, "one put woke %u of %d parked consumers", woken,
		  HERD);
	for (uint32_t i = 1; i < HERD; i++) /* one each for the others */
		put_ok(q, 1, i, 20);
	cr_assert_eq(t_await(&h->got, HERD, LIVE), 0, "a parked consumer was left behind");
	for (int i = 0; i < HERD; i++)
		cr_assert_eq(h->ret[i], 20, "consumer %d: %lld", i, (long long)h->ret[i]);
	cr_assert_eq(shmq_qsize(q), 0);
	t_set(&h->release, 1);
	for (int i = 0; i < HERD; i++) {
		int st;
		cr_assert_eq(t_wait(pids[i], &st, LIVE), 0);
	}
	shmq_queue_close(q);
}

/* A woken consumer whose buffer is too small for the message it was woken
 * for (-EMSGSIZE) hands the wake-up on: the consumer parked behind it is
 * woken at once, not at the end of its next 50 ms slice (which would not
 * count as woken). The small one parks first, so FUTEX_WAKE picks it. */
struct picky {
	shmq_queue *q;
	_Atomic uint32_t ready[2], done[2];
	_Atomic uint32_t woken[2];
	_Atomic int64_t ret[2];
	size_t cap[2];
};

static int picky_consumer(struct picky *p, unsigned me)
{
	count_woken_into(&p->woken[me]);
	shmq_queue_shutdown(p->q, SHMQ_WR);
	t_post(&p->ready[me]);
	unsigned char buf[256];
	p->ret[me] = shmq_get(p->q, buf, p->cap[me], -1);
	t_post(&p->done[me]);
	return 0;
}

static int picky_small(void *arg)
{
	return picky_consumer(arg, 0);
}

static int picky_big(void *arg)
{
	return picky_consumer(arg, 1);
}

Test(wake, woken_get_too_small_hands_the_wakeup_on, .timeout = T_TIMEOUT(30))
{
	shmq_queue *q = mkq(0, 0);
	struct picky *p = t_shared(sizeof(*p));
	cr_assert_not_null(p);
	p->q = q;
	p->cap[0] = 16;
	p->cap[1] = 256;
	pid_t small = t_fork(picky_small, p);
	cr_assert_eq(t_await(&p->ready[0], 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(small, LIVE), 0);
	pid_t big = t_fork(picky_big, p);
	cr_assert_eq(t_await(&p->ready[1], 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(big, LIVE), 0);
	put_ok(q, 2, 0, 100);
	cr_assert_eq(t_await(&p->done[1], 1, LIVE), 0, "the big consumer never got the message");
	cr_assert_eq(p->ret[1], 100, "big consumer: %lld", (long long)p->ret[1]);
	cr_assert_geq(atomic_load(&p->woken[1]), 1,
		      "the big consumer found the message at its slice's end: nobody woke it");
	int st;
	cr_assert_eq(t_wait(big, &st, LIVE), 0);
	shmq_queue_close(q); /* our producer role: the small one sees the end */
	cr_assert_eq(t_await(&p->done[0], 1, LIVE), 0);
	cr_assert(p->ret[0] == -EMSGSIZE || p->ret[0] == -EPIPE, "small consumer: %lld",
		  (long long)p->ret[0]);
	cr_assert_eq(t_wait(small, &st, LIVE), 0);
}

/* ------------------------------------------------------------------ EOF -- */

enum how_gone { BY_CLOSE, BY_SHUTDOWN };

struct eof_kid {
	struct kid k;
	enum how_gone how;
	uint32_t prod, count;
};

static int producer_then_leave(void *arg)
{
	struct eof_kid *e = arg;
	shmq_queue_shutdown(e->k.q, SHMQ_RD);
	t_post(&e->k.ready);
	t_await(&e->k.release, 1, -1); /* first release: produce */
	for (uint32_t i = 0; i < e->count; i++)
		if (t_put_msg(e->k.q, e->prod, i, 10 + 40 * i, 0) < 0)
			return 1;
	if (e->how == BY_CLOSE)
		shmq_queue_close(e->k.q);
	else
		shmq_queue_shutdown(e->k.q, SHMQ_WR);
	t_post(&e->k.done);
	t_await(&e->k.release, 2, -1); /* stay alive: EOF must come from close */
	return 0;
}

static void eof_after(enum how_gone how)
{
	shmq_queue *q = mkq(0, 0);
	struct eof_kid *e = t_shared(sizeof(*e));
	*e = (struct eof_kid){ .k.q = q, .how = how, .prod = 3, .count = 5 };
	pid_t pid = t_fork(producer_then_leave, e);
	cr_assert_eq(t_await(&e->k.ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	/* The child still holds the producer role: no EOF yet. */
	unsigned char buf[512];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);
	t_set(&e->k.release, 1);
	cr_assert_eq(t_await(&e->k.done, 1, LIVE), 0);
	cr_assert_eq(shmq_qsize(q), 5);
	for (uint32_t i = 0; i < 5; i++) /* drained first */
		expect_msg(q, 3, i, 10 + 40 * i, 0);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EPIPE);
	int64_t t0 = t_now();
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), -1), -EPIPE);
	cr_assert_lt(t_now() - t0, LIVE);
	cr_assert_eq(t_proc_state(pid) != 0 && t_proc_state(pid) != 'Z', 1,
		     "the producer must still be alive: EOF by %s, not by death",
		     how == BY_CLOSE ? "close" : "shutdown");
	t_set(&e->k.release, 2);
	kid_finish(pid, &e->k);
	shmq_queue_close(q);
}

Test(eof, after_producer_close_drain_then_epipe, .timeout = T_TIMEOUT(20))
{
	eof_after(BY_CLOSE);
}

Test(eof, after_producer_shutdown_wr_drain_then_epipe, .timeout = T_TIMEOUT(20))
{
	eof_after(BY_SHUTDOWN);
}

Test(eof, waits_for_every_producer, .timeout = T_TIMEOUT(20))
{
	shmq_queue *q = mkq(0, 0);
	struct eof_kid *a = t_shared(sizeof(*a)), *b = t_shared(sizeof(*b));
	*a = (struct eof_kid){ .k.q = q, .how = BY_CLOSE, .prod = 0, .count = 1 };
	*b = (struct eof_kid){ .k.q = q, .how = BY_SHUTDOWN, .prod = 1, .count = 1 };
	pid_t pa = t_fork(producer_then_leave, a), pb = t_fork(producer_then_leave, b);
	cr_assert_eq(t_await(&a->k.ready, 1, LIVE), 0);
	cr_assert_eq(t_await(&b->k.ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	t_set(&a->k.release, 1);
	cr_assert_eq(t_await(&a->k.done, 1, LIVE), 0);
	expect_msg(q, 0, 0, 10, 0);
	unsigned char buf[64];
	int64_t t0 = t_now();
	ssize_t r = shmq_get(q, buf, sizeof(buf), 50 * T_MS);
	cr_assert_eq(r, -ETIMEDOUT, "one producer left, queue empty: %zd (want -ETIMEDOUT)", r);
	cr_assert_geq(t_now() - t0, 50 * T_MS);
	t_set(&b->k.release, 1);
	expect_msg(q, 1, 0, 10, LIVE);
	cr_assert_eq(t_await(&b->k.done, 1, LIVE), 0);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), -EPIPE);
	t_set(&a->k.release, 2);
	t_set(&b->k.release, 2);
	kid_finish(pa, &a->k);
	kid_finish(pb, &b->k);
	shmq_queue_close(q);
}

/* A consumer of a queue no producer has attached to yet waits (a FIFO opened
 * for reading before any writer); a producer attaching later ends EOF. */
Test(eof, no_producer_yet_waits_and_late_producer_ends_eof, .timeout = T_TIMEOUT(20))
{
	struct shmq_queue_attr a = t_attr(0, 0);
	a.flags = SHMQ_NOROLES;
	shmq_queue *c = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &c), 0);
	shmq_queue *r = open_again(c, SHMQ_RD);
	unsigned char buf[128];
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), -EAGAIN, "no producer ever: not EOF");
	int64_t t0 = t_now();
	ssize_t n = shmq_get(r, buf, sizeof(buf), 50 * T_MS);
	cr_assert_eq(n, -ETIMEDOUT, "get(50 ms) before any producer: %zd", n);
	cr_assert_geq(t_now() - t0, 50 * T_MS);
	/* The creator without roles is neither producer nor consumer. */
	cr_assert_eq(shmq_put(c, "x", 1, 0), -EBADF);
	cr_assert_eq(shmq_get(c, buf, sizeof(buf), 0), -EBADF);

	shmq_queue *w = open_again(c, SHMQ_WR);
	put_ok(w, 0, 0, 30);
	cr_assert_eq(shmq_queue_close(w), 0);
	expect_msg(r, 0, 0, 30, 0);
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), -EPIPE);
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), -1), -EPIPE);

	w = open_again(c, SHMQ_WR); /* a producer again: EOF is over */
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), -EAGAIN);
	put_ok(w, 0, 1, 30);
	expect_msg(r, 0, 1, 30, 0);
	cr_assert_eq(shmq_queue_shutdown(w, SHMQ_WR), 0);
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), -EPIPE);
	shmq_queue_close(w);
	shmq_queue_close(r);
	shmq_queue_close(c);
}

static int blocked_consumer_child(void *arg)
{
	struct kid *k = arg;
	shmq_queue_shutdown(k->q, SHMQ_WR);
	t_post(&k->ready);
	k->ret = shmq_get(k->q, k->buf, sizeof(k->buf), -1);
	k->elapsed = t_now();
	t_post(&k->done);
	t_await(&k->release, 1, -1);
	return 0;
}

static void blocked_consumer_sees_eof(enum how_gone how)
{
	shmq_queue *q = mkq(0, 0);
	struct kid *k = kid_new(q);
	pid_t pid = t_fork(blocked_consumer_child, k);
	cr_assert_eq(t_await(&k->ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_RD), 0);
	cr_assert_eq(t_wait_sleeping(pid, LIVE), 0);
	cr_assert_eq(t_await(&k->done, 1, OBSERVE), -ETIMEDOUT, "get returned %lld early",
		     (long long)k->ret);
	int64_t t0 = t_now();
	if (how == BY_CLOSE)
		cr_assert_eq(shmq_queue_close(q), 0);
	else
		cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	cr_assert_eq(t_await(&k->done, 1, LIVE), 0, "the last producer left, get still blocked");
	cr_assert_eq(k->ret, -EPIPE, "blocked get after the last producer left: %lld",
		     (long long)k->ret);
	cr_assert_lt(k->elapsed - t0, LIVE);
	kid_finish(pid, k);
	if (how == BY_SHUTDOWN)
		shmq_queue_close(q);
}

Test(eof, blocked_consumer_woken_by_last_close, .timeout = T_TIMEOUT(20))
{
	blocked_consumer_sees_eof(BY_CLOSE);
}

Test(eof, blocked_consumer_woken_by_last_shutdown, .timeout = T_TIMEOUT(20))
{
	blocked_consumer_sees_eof(BY_SHUTDOWN);
}

/* --------------------------------------------------- put: consumers gone -- */

static int consumer_then_leave(void *arg)
{
	struct eof_kid *e = arg;
	shmq_queue_shutdown(e->k.q, SHMQ_WR);
	t_post(&e->k.ready);
	ssize_t n = shmq_get(e->k.q, e->k.buf, sizeof(e->k.buf), LIVE);
	if (n != 10 || tmsg_check_exact(e->k.buf, 10, 0, 0, 10) != TMSG_OK)
		return 1;
	if (e->how == BY_CLOSE)
		shmq_queue_close(e->k.q);
	else
		shmq_queue_shutdown(e->k.q, SHMQ_RD);
	t_post(&e->k.done);
	t_await(&e->k.release, 1, -1); /* stay alive */
	return 0;
}

static void put_after_consumers_left(enum how_gone how)
{
	shmq_queue *q = mkq(0, 0);
	struct eof_kid *e = t_shared(sizeof(*e));
	*e = (struct eof_kid){ .k.q = q, .how = how };
	pid_t pid = t_fork(consumer_then_leave, e);
	cr_assert_eq(t_await(&e->k.ready, 1, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_RD), 0);
	put_ok(q, 0, 0, 10);
	cr_assert_eq(t_await(&e->k.done, 1, LIVE), 0);
	cr_assert_eq(t_put_msg(q, 0, 1, 10, 0), -EPIPE, "put, nowait, no consumer left");
	int64_t t0 = t_now();
	cr_assert_eq(t_put_msg(q, 0, 1, 10, -1), -EPIPE, "put(-1), no consumer left");
	cr_assert_lt(t_now() - t0, LIVE);
	cr_assert_eq(shmq_qsize(q), 0, "a failed put left something behind");
	cr_assert_neq(t_proc_state(pid), 'Z');
	t_set(&e->k.release, 1);
	kid_finish(pid, &e->k);
	shmq_queue_close(q);
}

Test(epipe, put_after_consumer_closed, .timeout = T_TIMEOUT(20))
{
	put_after_consumers_left(BY_CLOSE);
}

Test(epipe, put_after_consumer_shutdown_rd, .timeout = T_TIMEOUT(20))
{
	put_after_consumers_left(BY_SHUTDOWN);
}

/* A queue no consumer has attached to yet accepts puts (and waits when full):
 * -EPIPE is only for consumers that came and went. */
Test(epipe, no_consumer_yet_is_not_epipe, .timeout = T_TIMEOUT(10))
{
	struct shmq_queue_attr a = t_attr(64, 1024);
	a.flags = SHMQ_NOROLES;
	shmq_queue *c = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &c), 0);
	shmq_queue *w = open_again(c, SHMQ_WR);
	uint32_t n = fill(w, 20);
	cr_assert_eq(n, shmq_capacity(w));
	cr_assert_eq(t_put_msg(w, 0, n, 20, 30 * T_MS), -ETIMEDOUT);
	shmq_queue *r = open_again(c, SHMQ_RD);
	expect_msg(r, 0, 0, 20, 0);
	cr_assert_eq(shmq_queue_close(r), 0);
	cr_assert_eq(t_put_msg(w, 0, n, 20, 0), -EPIPE, "the only consumer closed");
	shmq_queue_close(w);
	shmq_queue_close(c);
}

/* --------------------------------------------------------------- sizes -- */

Test(msgsize, small_buffer_emsgsize_and_message_stays, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(0, 0);
	put_ok(q, 0, 0, 100); /* multi-cell */
	put_ok(q, 0, 1, 30);  /* one cell */
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, 99, 0), -EMSGSIZE);
	cr_assert_eq(shmq_get(q, buf, 99, -1), -EMSGSIZE, "must not block on a too-small buffer");
	cr_assert_eq(shmq_get(q, buf, 16, 0), -EMSGSIZE);
	cr_assert_eq(shmq_get(q, NULL, 0, 0), -EMSGSIZE);
	cr_assert_eq(shmq_qsize(q), 2, "the message must stay queued");
	expect_msg(q, 0, 0, 100, 0); /* intact, and still first */
	cr_assert_eq(shmq_get(q, buf, 29, 0), -EMSGSIZE);
	ssize_t n = shmq_get(q, buf, 30, 0); /* exact fit */
	cr_assert_eq(n, 30);
	cr_assert_eq(tmsg_check_exact(buf, 30, 0, 1, 30), TMSG_OK);
	cr_assert_eq(shmq_empty(q), 1);
	shmq_queue_close(q);
}

/* A zero-length message, put from and got into a NULL buffer (allowed: only
 * NULL with len > 0 is -EINVAL), between two others.
 * Regression test for a library bug found by this suite (at 84974e8): ring.c
 * copy_in/copy_out called memcpy with a NULL pointer and size 0, undefined
 * behaviour that the ASan+UBSan build reports (UBSAN_OPTIONS has
 * halt_on_error=1, so it fails the test there). */
Test(msgsize, zero_length_message_null_buffer)
{
	shmq_queue *q = mkq(0, 0);
	put_ok(q, 0, 0, 20);
	cr_assert_eq(shmq_put(q, NULL, 0, 0), 0);
	put_ok(q, 0, 2, 20);
	cr_assert_eq(shmq_qsize(q), 3);
	expect_msg(q, 0, 0, 20, 0);
	cr_assert_eq(shmq_get(q, NULL, 0, 0), 0);
	expect_msg(q, 0, 2, 20, 0);
	cr_assert_eq(shmq_put(q, "", 0, 0), 0);
	unsigned char buf[8];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), 0);
	cr_assert_eq(shmq_empty(q), 1);
	shmq_queue_close(q);
}

/* -EMSGSIZE wins over EOF: the message is there, the buffer is too small. */
Test(msgsize, small_buffer_after_eof_still_emsgsize, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(0, 0);
	shmq_queue *r = open_again(q, SHMQ_RD);
	put_ok(q, 0, 0, 200);
	cr_assert_eq(shmq_queue_close(q), 0); /* the only producer */
	unsigned char buf[256];
	cr_assert_eq(shmq_get(r, buf, 100, 0), -EMSGSIZE);
	expect_msg(r, 0, 0, 200, 0);
	cr_assert_eq(shmq_get(r, buf, sizeof(buf), 0), -EPIPE);
	shmq_queue_close(r);
}

Test(msgsize, put_larger_than_msg_max_leaves_queue_unchanged, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(64, 1000);
	cr_assert_eq(shmq_msg_max(q), 1000);
	put_ok(q, 0, 0, 40);
	put_ok(q, 0, 1, 300);
	unsigned char *big = calloc(1, 70000);
	cr_assert_eq(shmq_put(q, big, 1001, 0), -EMSGSIZE);
	cr_assert_eq(shmq_put(q, big, 1001, -1), -EMSGSIZE);
	cr_assert_eq(shmq_put(q, big, 70000, 0), -EMSGSIZE);
	cr_assert_eq(shmq_qsize(q), 2, "a failed put changed the queue");
	put_ok(q, 0, 2, 1000); /* exactly msg_max is fine */
	cr_assert_eq(shmq_qsize(q), 3);
	expect_msg(q, 0, 0, 40, 0);
	expect_msg(q, 0, 1, 300, 0);
	expect_msg(q, 0, 2, 1000, 0);
	cr_assert_eq(shmq_empty(q), 1);
	/* A full ring still says -EMSGSIZE for an oversize message, at once. */
	fill(q, 20);
	cr_assert_eq(shmq_put(q, big, 1001, -1), -EMSGSIZE);
	free(big);
	shmq_queue_close(q);
}

/* --------------------------------------------------------------- roles -- */

Test(roles, missing_role_is_ebadf)
{
	shmq_queue *q = mkq(0, 0);
	shmq_queue *r = open_again(q, SHMQ_RD), *w = open_again(q, SHMQ_WR);
	shmq_queue *none = open_again(q, 0);
	unsigned char buf[64];

	cr_assert_eq(shmq_put(r, "abc", 3, 0), -EBADF);
	cr_assert_eq(shmq_put(none, "abc", 3, 0), -EBADF);
	cr_assert_eq(shmq_get(w, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(shmq_get(none, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(shmq_qsize(q), 0, "a refused put changed the queue");
	put_ok(w, 0, 0, 20);
	cr_assert_eq(shmq_qsize(none), 1, "a role-less handle still sees the size");
	cr_assert_eq(shmq_empty(none), 0);
	cr_assert_eq(shmq_get(w, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(shmq_qsize(q), 1, "a refused get took a message");
	expect_msg(r, 0, 0, 20, 0);

	/* Dropping a role takes it away. */
	cr_assert_eq(shmq_queue_shutdown(w, SHMQ_WR), 0);
	cr_assert_eq(shmq_put(w, "abc", 3, 0), -EBADF);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_RD), 0);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EBADF);
	cr_assert_eq(shmq_put(q, "abc", 3, 0), 0, "the creator kept SHMQ_WR");
	shmq_queue_close(none);
	shmq_queue_close(w);
	shmq_queue_close(r);
	shmq_queue_close(q);
}

Test(args, bad_arguments_are_einval)
{
	shmq_queue *q = mkq(0, 0), *h = NULL;
	unsigned char buf[16];
	struct shmq_queue_attr a;

	cr_assert_eq(shmq_put(NULL, "x", 1, 0), -EINVAL);
	cr_assert_eq(shmq_get(NULL, buf, sizeof(buf), 0), -EINVAL);
	cr_assert_eq(shmq_put(q, NULL, 5, 0), -EINVAL);
	cr_assert_eq(shmq_get(q, NULL, 5, 0), -EINVAL);
	cr_assert_eq(shmq_qsize(q), 0);
	cr_assert_eq(shmq_qsize(NULL), -EINVAL);
	cr_assert_eq(shmq_empty(NULL), -EINVAL);
	cr_assert_eq(shmq_full(NULL), -EINVAL);
	cr_assert_eq(shmq_queue_close(NULL), -EINVAL);
	cr_assert_eq(shmq_queue_shutdown(NULL, SHMQ_WR), -EINVAL);

	/* Roles. */
	cr_assert_eq(shmq_queue_shutdown(q, 0), -EINVAL);
	cr_assert_eq(shmq_queue_shutdown(q, 4), -EINVAL);
	cr_assert_eq(shmq_queue_shutdown(q, -1), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), 4, &h), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), -1, &h), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(shmq_queue_fd(q), SHMQ_RD, NULL), -EINVAL);
	cr_assert_eq(shmq_queue_open_fd(-1, SHMQ_RD, &h), -EBADF);
	cr_assert_null(h);
	const char *name = t_name("args");
	cr_assert_eq(shmq_queue_open(name, 7, &h), -EINVAL);
	cr_assert_eq(shmq_queue_open(NULL, SHMQ_RD, &h), -EINVAL);
	cr_assert_null(h);

	/* Attributes and names. */
	shmq_queue_attr_init(&a);
	a.flags = 0x80;
	cr_assert_eq(shmq_queue_create(NULL, &a, &h), -EINVAL, "unknown flag");
	shmq_queue_attr_init(&a);
	a.mode = 010000;
	cr_assert_eq(shmq_queue_create(name, &a, &h), -EINVAL, "mode beyond 07777");
	shmq_queue_attr_init(&a);
	a.capacity = SHMQ_MAX_CAPACITY + 1;
	cr_assert_eq(shmq_queue_create(NULL, &a, &h), -EINVAL, "capacity too large");
	shmq_queue_attr_init(&a);
	a.msg_max = SHMQ_MAX_MSG_MAX + 1;
	cr_assert_eq(shmq_queue_create(NULL, &a, &h), -EINVAL, "msg_max too large");
	cr_assert_eq(shmq_queue_create(NULL, NULL, NULL), -EINVAL);
	cr_assert_eq(shmq_queue_create("", NULL, &h), -EINVAL);
	cr_assert_eq(shmq_queue_create("/", NULL, &h), -EINVAL);
	cr_assert_eq(shmq_queue_create("/a/b", NULL, &h), -EINVAL);
	cr_assert_null(h);
	cr_assert_eq(shmq_unlink(NULL), -EINVAL);
	cr_assert_eq(shmq_unlink(""), -EINVAL);

	/* Nothing above disturbed the good handle. */
	put_ok(q, 0, 0, 20);
	expect_msg(q, 0, 0, 20, 0);
	shmq_queue_close(q);
}

/* ----------------------------------------------------------- snapshots -- */

Test(snapshot, qsize_empty_full_exact_when_quiescent)
{
	shmq_queue *q = mkq(64, 1024);
	shmq_queue *look = open_again(q, 0);
	cr_assert_eq(shmq_qsize(q), 0);
	cr_assert_eq(shmq_empty(q), 1);
	cr_assert_eq(shmq_full(q), 0);
	put_ok(q, 0, 0, 20);
	put_ok(q, 0, 1, 300); /* multi-cell: still one message */
	put_ok(q, 0, 2, 1);
	cr_assert_eq(shmq_qsize(q), 3);
	cr_assert_eq(shmq_qsize(look), 3);
	cr_assert_eq(shmq_empty(q), 0);
	cr_assert_eq(shmq_full(q), 0);
	expect_msg(q, 0, 0, 20, 0);
	cr_assert_eq(shmq_qsize(q), 2);
	expect_msg(q, 0, 1, 300, 0);
	expect_msg(q, 0, 2, 1, 0);
	cr_assert_eq(shmq_qsize(q), 0);
	cr_assert_eq(shmq_empty(look), 1);

	uint32_t n = fill(q, 40); /* one cell in every layout */
	cr_assert_eq(n, shmq_capacity(q));
	cr_assert_eq(shmq_full(q), 1);
	cr_assert_eq(shmq_full(look), 1);
	cr_assert_eq(shmq_qsize(q), (ssize_t)n);
	cr_assert_eq(shmq_empty(q), 0);
	expect_msg(q, 0, 0, 40, 0);
	cr_assert_eq(shmq_full(q), 0);
	cr_assert_eq(shmq_qsize(q), (ssize_t)n - 1);
	put_ok(q, 0, n, 20);
	cr_assert_eq(shmq_full(q), 1);
	shmq_queue_close(look);
	shmq_queue_close(q);
}

/* The ring wraps many times with mixed sizes; sizes stay exact throughout. */
Test(snapshot, wraparound_single_process)
{
	shmq_queue *q = mkq(64, 1024);
	uint32_t put = 0, got = 0;
	for (int round = 0; round < 200; round++) {
		for (int i = 0; i < 5; i++, put++) {
			int r = t_put_msg(q, 0, put, tmsg_len(0, put, 1, 500), 0);
			cr_assert_eq(r, 0, "put %u: %d", put, r);
		}
		cr_assert_eq(shmq_qsize(q), (ssize_t)(put - got));
		for (; got < put - (round & 1); got++)
			expect_msg(q, 0, got, tmsg_len(0, got, 1, 500), 0);
	}
	cr_assert_eq(shmq_qsize(q), (ssize_t)(put - got));
	shmq_queue_close(q);
}

/* ------------------------------------------------------------- batches -- */

#include <sys/uio.h>

#define NB 8
struct batch {
	struct iovec iov[NB];
	unsigned char buf[NB][1024];
};

/* iov[i] = message (prod, seq0 + i) of len[i] bytes. */
static void batch_fill(struct batch *b, uint32_t prod, uint32_t seq0, const size_t *len, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		tmsg_fill(b->buf[i], prod, seq0 + i, len[i]);
		b->iov[i] = (struct iovec){ .iov_base = b->buf[i], .iov_len = len[i] };
	}
}

/* iov[i] = buffer of cap[i] bytes. */
static void batch_bufs(struct batch *b, const size_t *cap, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		b->iov[i] = (struct iovec){ .iov_base = b->buf[i], .iov_len = cap[i] };
}

static const size_t L20[NB] = { 20, 20, 20, 20, 20, 20, 20, 20 };
static const size_t C1K[NB] = { 1024, 1024, 1024, 1024, 1024, 1024, 1024, 1024 };

Test(batch, bad_arguments)
{
	shmq_queue *q = mkq(64, 1024), *r = open_again(q, SHMQ_RD);
	struct batch b;
	batch_fill(&b, 0, 0, L20, NB);
	cr_assert_eq(shmq_put_bulk(q, b.iov, 0, 0), -EINVAL);
	cr_assert_eq(shmq_put_burst(q, b.iov, 0, 0), -EINVAL);
	cr_assert_eq(shmq_get_bulk(q, b.iov, 0, 0), -EINVAL);
	cr_assert_eq(shmq_get_burst(q, b.iov, 0, 0), -EINVAL);
	cr_assert_eq(shmq_put_bulk(q, NULL, 1, 0), -EINVAL);
	cr_assert_eq(shmq_get_burst(q, NULL, 1, 0), -EINVAL);
	cr_assert_eq(shmq_put_bulk(NULL, b.iov, 1, 0), -EINVAL);
	struct iovec *many = calloc(SHMQ_BATCH_MAX + 1, sizeof(*many));
	cr_assert_eq(shmq_put_burst(q, many, SHMQ_BATCH_MAX + 1, 0), -EINVAL);
	cr_assert_eq(shmq_get_burst(q, many, SHMQ_BATCH_MAX + 1, 0), -EINVAL);
	free(many);
	b.iov[3].iov_base = NULL;
	cr_assert_eq(shmq_put_bulk(q, b.iov, NB, 0), -EINVAL, "NULL buffer, len > 0");
	b.iov[3].iov_base = b.buf[3];
	b.iov[5].iov_len = 1025;
	cr_assert_eq(shmq_put_burst(q, b.iov, NB, 0), -EMSGSIZE, "one message over msg_max");
	cr_assert_eq(shmq_qsize(q), 0, "a failed batch put changed the queue");
	/* A bulk that no ring of this size could ever hold: 8 x 19 cells. */
	static unsigned char big[NB][1024];
	struct iovec bigv[NB];
	for (unsigned i = 0; i < NB; i++)
		bigv[i] = (struct iovec){ .iov_base = big[i], .iov_len = 1000 };
	cr_assert_eq(shmq_put_bulk(q, bigv, NB, -1), -EINVAL);
	cr_assert_eq(shmq_qsize(q), 0);
	/* Roles. */
	batch_fill(&b, 0, 0, L20, NB);
	cr_assert_eq(shmq_put_bulk(r, b.iov, 2, 0), -EBADF);
	shmq_queue *w = open_again(q, SHMQ_WR);
	cr_assert_eq(shmq_get_burst(w, b.iov, 2, 0), -EBADF);
	shmq_queue_close(w);
	shmq_queue_close(r);
	shmq_queue_close(q);
}

Test(batch, bulk_all_or_nothing_burst_as_many_as_fit, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(64, 1024);
	struct batch b;
	uint32_t seq = 0;
	for (; seq < 60; seq++)
		put_ok(q, 0, seq, 20);
	batch_fill(&b, 0, seq, L20, 5);
	cr_assert_eq(shmq_put_bulk(q, b.iov, 5, 0), -EAGAIN, "5 one-cell messages, room for 4");
	int64_t t0 = t_now();
	cr_assert_eq(shmq_put_bulk(q, b.iov, 5, 50 * T_MS), -ETIMEDOUT);
	cr_assert_geq(t_now() - t0, 50 * T_MS);
	cr_assert_eq(shmq_qsize(q), 60, "a failed bulk put changed the queue");
	cr_assert_eq(shmq_put_burst(q, b.iov, 5, 0), 4, "burst takes what fits");
	seq += 4;
	cr_assert_eq(shmq_qsize(q), 64);
	cr_assert_eq(shmq_full(q), 1);
	cr_assert_eq(shmq_put_burst(q, b.iov + 4, 1, 0), -EAGAIN);

	batch_bufs(&b, C1K, NB);
	cr_assert_eq(shmq_get_burst(q, b.iov, NB, 0), NB);
	for (unsigned i = 0; i < NB; i++) {
		cr_assert_eq(b.iov[i].iov_len, 20, "iov_len set to the message length");
		cr_assert_eq(tmsg_check_exact(b.buf[i], 20, 0, i, 20), TMSG_OK, "message %u", i);
	}
	cr_assert_eq(shmq_qsize(q), 64 - NB);
	for (uint32_t got = NB; got < 64; got += 7) {
		unsigned n = 64 - got < 7 ? 64 - got : 7;
		batch_bufs(&b, C1K, n);
		cr_assert_eq(shmq_get_bulk(q, b.iov, n, 0), (int)n);
		for (unsigned i = 0; i < n; i++)
			cr_assert_eq(tmsg_check_exact(b.buf[i], b.iov[i].iov_len, 0, got + i, 20),
				     TMSG_OK, "message %u", got + i);
	}
	cr_assert_eq(shmq_empty(q), 1);
	batch_bufs(&b, C1K, 3);
	cr_assert_eq(shmq_get_burst(q, b.iov, 3, 0), -EAGAIN);
	t0 = t_now();
	cr_assert_eq(shmq_get_burst(q, b.iov, 3, 50 * T_MS), -ETIMEDOUT);
	cr_assert_geq(t_now() - t0, 50 * T_MS);
	/* Bulk get waits for all n: with 2 there, nowait says -EAGAIN and takes
	 * nothing. */
	put_ok(q, 1, 0, 30);
	put_ok(q, 1, 1, 30);
	cr_assert_eq(shmq_get_bulk(q, b.iov, 3, 0), -EAGAIN);
	cr_assert_eq(shmq_qsize(q), 2);
	cr_assert_eq(shmq_get_bulk(q, b.iov, 2, 0), 2);
	shmq_queue_close(q);
}

Test(batch, qsize_counts_messages_of_a_batch)
{
	shmq_queue *q = mkq(0, 0);
	struct batch b;
	const size_t lens[NB] = { 1, 60, 200, 7, 500, 33, 64, 1000 };
	batch_fill(&b, 2, 0, lens, NB);
	cr_assert_eq(shmq_put_bulk(q, b.iov, NB, 0), NB);
	cr_assert_eq(shmq_qsize(q), NB);
	batch_fill(&b, 2, NB, lens, 3);
	cr_assert_eq(shmq_put_burst(q, b.iov, 3, 0), 3);
	cr_assert_eq(shmq_qsize(q), NB + 3);
	batch_bufs(&b, C1K, 5);
	cr_assert_eq(shmq_get_burst(q, b.iov, 5, 0), 5);
	cr_assert_eq(shmq_qsize(q), NB + 3 - 5);
	for (unsigned i = 0; i < 5; i++)
		cr_assert_eq(tmsg_check_exact(b.buf[i], b.iov[i].iov_len, 2, i, lens[i]), TMSG_OK);
	for (unsigned i = 5; i < NB + 3; i++)
		expect_msg(q, 2, i, lens[i % NB], 0);
	cr_assert_eq(shmq_qsize(q), 0);
	shmq_queue_close(q);
}

/* A batch get stops before a message larger than its buffer; when that is
 * the first one, -EMSGSIZE, and the message stays queued either way. */
Test(batch, get_stops_before_a_message_too_big_for_its_buffer)
{
	shmq_queue *q = mkq(0, 0);
	const size_t lens[4] = { 30, 30, 300, 30 };
	struct batch b;
	batch_fill(&b, 0, 0, lens, 4);
	cr_assert_eq(shmq_put_bulk(q, b.iov, 4, 0), 4);
	const size_t caps[4] = { 64, 64, 64, 64 };
	batch_bufs(&b, caps, 4);
	cr_assert_eq(shmq_get_burst(q, b.iov, 4, 0), 2);
	cr_assert_eq(shmq_qsize(q), 2);
	batch_bufs(&b, caps, 4);
	cr_assert_eq(shmq_get_burst(q, b.iov, 4, 0), -EMSGSIZE);
	cr_assert_eq(shmq_get_bulk(q, b.iov, 2, 0), -EMSGSIZE);
	cr_assert_eq(shmq_qsize(q), 2, "a too-small buffer must leave the message queued");
	const size_t caps2[4] = { 300, 29, 64, 64 };
	batch_bufs(&b, caps2, 2);
	cr_assert_eq(shmq_get_bulk(q, b.iov, 2, 0), -EMSGSIZE, "bulk: second buffer too small");
	cr_assert_eq(shmq_qsize(q), 2);
	cr_assert_eq(shmq_get_burst(q, b.iov, 2, 0), 1);
	cr_assert_eq(tmsg_check_exact(b.buf[0], b.iov[0].iov_len, 0, 2, 300), TMSG_OK);
	expect_msg(q, 0, 3, 30, 0);
	shmq_queue_close(q);
}

/* End of data with fewer messages queued than a bulk get asks for: it
 * cannot be satisfied, so it must not wait forever; nothing is lost. */
Test(batch, bulk_get_at_eof_with_fewer_left_loses_nothing, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq(0, 0), *r = open_again(q, SHMQ_RD);
	for (uint32_t i = 0; i < 3; i++)
		put_ok(q, 0, i, 40);
	cr_assert_eq(shmq_queue_close(q), 0);
	struct batch b;
	batch_bufs(&b, C1K, 5);
	int64_t t0 = t_now();
	int n = shmq_get_bulk(r, b.iov, 5, -1);
	cr_assert_eq(n, -EPIPE, "bulk of 5, 3 left, no producer: %d", n);
	cr_assert_lt(t_now() - t0, LIVE);
	cr_assert_eq(shmq_qsize(r), 3, "the 3 messages must stay queued");
	batch_bufs(&b, C1K, 5);
	cr_assert_eq(shmq_get_burst(r, b.iov, 5, -1), 3);
	for (unsigned i = 0; i < 3; i++)
		cr_assert_eq(tmsg_check_exact(b.buf[i], b.iov[i].iov_len, 0, i, 40), TMSG_OK);
	cr_assert_eq(shmq_get_burst(r, b.iov, 5, -1), -EPIPE);
	shmq_queue_close(r);
}

/* ----------------------------------------------------------- zero-copy -- */

static shmq_queue *mkq_cells(uint32_t capacity, uint32_t cell_size)
{
	struct shmq_queue_attr a = t_attr(capacity, 1024);
	a.cell_size = cell_size;
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	cr_assert_eq(r, 0, "create with cell_size %u: %d", cell_size, r);
	cr_assert_eq(shmq_cell_size(q), cell_size);
	return q;
}

Test(zerocopy, reserve_commit_peek_release)
{
	shmq_queue *q = mkq_cells(64, 128);
	size_t one_cell = shmq_cell_size(q) - 8;
	shmq_slot w, r;
	cr_assert_eq(shmq_put_reserve(q, 100, &w, 0), 0);
	cr_assert_not_null(w.data);
	cr_assert_eq(w.len, 100);
	tmsg_fill(w.data, 3, 0, 100);
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EAGAIN, "visible before commit");
	cr_assert_eq(shmq_put_commit(q, &w), 0);
	cr_assert_eq(shmq_put_commit(q, &w), -EINVAL, "committed twice");
	put_ok(q, 3, 1, 40);
	cr_assert_eq(shmq_qsize(q), 2);

	cr_assert_eq(shmq_get_peek(q, &r, 0), 0);
	cr_assert_eq(r.len, 100);
	cr_assert_eq(tmsg_check_exact(r.data, r.len, 3, 0, 100), TMSG_OK);
	cr_assert_eq(shmq_get_release(q, &r), 0);
	cr_assert_eq(shmq_get_release(q, &r), -EINVAL, "released twice");
	expect_msg(q, 3, 1, 40, 0);
	cr_assert_eq(shmq_get_peek(q, &r, 0), -EAGAIN);

	/* Only what fits in one cell. */
	cr_assert_eq(shmq_put_reserve(q, one_cell + 1, &w, 0), -EMSGSIZE);
	cr_assert_eq(shmq_put_reserve(q, one_cell, &w, 0), 0);
	memset(w.data, 0x5a, one_cell);
	cr_assert_eq(shmq_put_commit(q, &w), 0);
	cr_assert_eq(shmq_get_peek(q, &r, 0), 0);
	cr_assert_eq(r.len, one_cell);
	cr_assert_eq(((unsigned char *)r.data)[one_cell - 1], 0x5a);
	cr_assert_eq(shmq_get_release(q, &r), 0);
	/* A multi-cell message cannot be peeked: -EMSGSIZE, and it stays. */
	put_ok(q, 3, 2, 300);
	cr_assert_eq(shmq_get_peek(q, &r, 0), -EMSGSIZE);
	expect_msg(q, 3, 2, 300, 0);
	/* Not a live slot. */
	shmq_slot junk;
	memset(&junk, 0, sizeof(junk));
	cr_assert_eq(shmq_put_commit(q, &junk), -EINVAL);
	cr_assert_eq(shmq_get_release(q, &junk), -EINVAL);
	cr_assert_eq(shmq_put_commit(NULL, &w), -EINVAL);
	cr_assert_eq(shmq_put_reserve(q, 10, NULL, 0), -EINVAL);
	cr_assert_eq(shmq_get_peek(q, NULL, 0), -EINVAL);
	cr_assert_eq(shmq_empty(q), 1);
	shmq_queue_close(q);
}

/* "commit/release return -EINVAL (not a live slot of this handle)": a slot
 * reserved or peeked through one handle is not another handle's.
 * LIBRARY BUG (at 0b83ff7..b497ef9): ring_span_held() only compares the
 * cell's state with the slot's, never the owner tag with the handle's, so
 * shmq_put_commit()/shmq_get_release() through another handle succeed. */
Test(zerocopy, slot_belongs_to_its_handle)
{
	shmq_queue *q = mkq_cells(64, 128);
	shmq_queue *w2 = open_again(q, SHMQ_WR), *r2 = open_again(q, SHMQ_RD);
	shmq_slot w, r;
	cr_assert_eq(shmq_put_reserve(q, 20, &w, 0), 0);
	tmsg_fill(w.data, 0, 0, 20);
	cr_assert_eq(shmq_put_commit(w2, &w), -EINVAL, "committed through another handle");
	cr_assert_eq(shmq_put_commit(q, &w), 0);
	cr_assert_eq(shmq_get_peek(q, &r, 0), 0);
	cr_assert_eq(shmq_get_release(r2, &r), -EINVAL, "released through another handle");
	cr_assert_eq(shmq_get_release(q, &r), 0);
	shmq_queue_close(r2);
	shmq_queue_close(w2);
	shmq_queue_close(q);
}

/* Producers behind an uncommitted slot wait for it, consumers too. */
Test(zerocopy, uncommitted_slot_holds_back_later_messages, .timeout = T_TIMEOUT(10))
{
	shmq_queue *q = mkq_cells(64, 128);
	shmq_slot w;
	cr_assert_eq(shmq_put_reserve(q, 30, &w, 0), 0);
	put_ok(q, 1, 0, 30); /* behind the slot */
	unsigned char buf[64];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 30 * T_MS), -ETIMEDOUT);
	tmsg_fill(w.data, 0, 0, 30);
	cr_assert_eq(shmq_put_commit(q, &w), 0);
	expect_msg(q, 0, 0, 30, 0);
	expect_msg(q, 1, 0, 30, 0);
	shmq_queue_close(q);
}
