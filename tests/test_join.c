/* JoinableQueue: task_done and join, across processes, with consumers that
 * close or die holding messages (their messages count as lost and join
 * reports -EOWNERDEAD instead of waiting for them). */
#include <criterion/criterion.h>

#include "common.h"

#include <sys/uio.h>

#define LIVE (2 * T_SEC * T_SCALE) /* "returns, not a hang" bound */

static shmq_queue *mkjq(uint32_t capacity)
{
	struct shmq_queue_attr a = t_attr(capacity, 0);
	a.flags = SHMQ_JOINABLE;
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	cr_assert_eq(r, 0, "create: %d", r);
	return q;
}

static void put_n(shmq_queue *q, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(shmq_put(q, &i, sizeof(i), 0), 0);
}

static void get_n(shmq_queue *q, unsigned n)
{
	unsigned v;
	for (unsigned i = 0; i < n; i++)
		cr_assert_eq(shmq_get(q, &v, sizeof(v), LIVE), (ssize_t)sizeof(v));
}

Test(join, fresh_queue_joins_at_once)
{
	shmq_queue *q = mkjq(64);
	cr_expect_eq(shmq_join(q, 0), 0);
	cr_expect_eq(shmq_join(q, -1), 0);
	shmq_queue_close(q);
}

Test(join, not_joinable_is_einval)
{
	struct shmq_queue_attr a = t_attr(64, 0);
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	put_n(q, 1);
	get_n(q, 1);
	cr_expect_eq(shmq_task_done(q), -EINVAL);
	cr_expect_eq(shmq_join(q, 0), -EINVAL);
	cr_expect_eq(shmq_task_done(NULL), -EINVAL);
	cr_expect_eq(shmq_join(NULL, 0), -EINVAL);
	shmq_queue_close(q);
}

Test(join, task_done_counts_gets_and_refuses_extra)
{
	shmq_queue *q = mkjq(64);
	cr_expect_eq(shmq_task_done(q), -EINVAL, "nothing got yet");
	put_n(q, 3);
	cr_expect_eq(shmq_join(q, 0), -EAGAIN);
	cr_expect_eq(shmq_join(q, 20 * T_MS), -ETIMEDOUT);
	get_n(q, 3);
	cr_expect_eq(shmq_join(q, 0), -EAGAIN, "got but not done");
	for (int i = 0; i < 3; i++)
		cr_expect_eq(shmq_task_done(q), 0);
	cr_expect_eq(shmq_task_done(q), -EINVAL, "one more than got");
	cr_expect_eq(shmq_join(q, 0), 0);
	/* The refused call changed nothing: a new message needs its own done. */
	put_n(q, 1);
	get_n(q, 1);
	cr_expect_eq(shmq_join(q, 0), -EAGAIN);
	cr_expect_eq(shmq_task_done(q), 0);
	cr_expect_eq(shmq_join(q, 0), 0);
	shmq_queue_close(q);
}

Test(join, batches_and_peeks_count_each_message)
{
	shmq_queue *q = mkjq(64);
	put_n(q, 5);
	unsigned v[4];
	struct iovec io[4];
	for (int i = 0; i < 4; i++)
		io[i] = (struct iovec){ .iov_base = &v[i], .iov_len = sizeof(v[i]) };
	cr_assert_eq(shmq_get_burst(q, io, 4, 0), 4);
	shmq_slot s;
	cr_assert_eq(shmq_get_peek(q, &s, 0), 0);
	cr_assert_eq(shmq_get_release(q, &s), 0);
	for (int i = 0; i < 5; i++) {
		cr_expect_eq(shmq_join(q, 0), -EAGAIN, "done %d of 5", i);
		cr_expect_eq(shmq_task_done(q), 0);
	}
	cr_expect_eq(shmq_task_done(q), -EINVAL);
	cr_expect_eq(shmq_join(q, 0), 0);
	shmq_queue_close(q);
}

/* ------------------------------------------------------- many processes -- */

struct jsh {
	shmq_queue *q;
	_Atomic uint32_t done;      /* task_done calls made */
	_Atomic uint32_t got;       /* messages got */
	_Atomic uint32_t go;
	_Atomic int32_t join_ret;
	_Atomic uint32_t done_at_join; /* `done` when join returned */
};

#define PRODUCERS 3
#define PER_PRODUCER 2000
#define CONSUMERS 3

static int producer(void *arg)
{
	struct jsh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD);
	for (uint32_t i = 0; i < PER_PRODUCER; i++)
		if (shmq_put(s->q, &i, sizeof(i), LIVE * 5) != 0)
			return 1;
	return 0;
}

/* Gets until end of data, marking each message done after a little work. */
static int consumer(void *arg)
{
	struct jsh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_WR);
	uint32_t v;
	ssize_t r;
	while ((r = shmq_get(s->q, &v, sizeof(v), LIVE * 5)) == (ssize_t)sizeof(v)) {
		atomic_fetch_add(&s->got, 1);
		if (v % 64 == 0)
			sched_yield();
		atomic_fetch_add(&s->done, 1);
		if (shmq_task_done(s->q) != 0)
			return 2;
	}
	return r == -EPIPE ? 0 : 3;
}

Test(join, join_waits_for_every_done_across_processes)
{
	struct jsh *s = t_shared(sizeof(*s));
	s->q = mkjq(256);
	pid_t kids[PRODUCERS + CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		kids[i] = t_fork(consumer, s);
	for (int i = 0; i < PRODUCERS; i++)
		kids[CONSUMERS + i] = t_fork(producer, s);
	/* Wait until something was put, so the join below has work to wait for. */
	while (shmq_qsize(s->q) == 0 && atomic_load(&s->got) == 0)
		sched_yield();
	shmq_queue_shutdown(s->q, SHMQ_RDWR);
	for (int i = CONSUMERS; i < CONSUMERS + PRODUCERS; i++) {
		int st;
		cr_assert_eq(t_wait(kids[i], &st, 30 * T_SEC), 0);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "producer status %d", st);
	}
	int r = shmq_join(s->q, 30 * T_SEC);
	uint32_t done = atomic_load(&s->done);
	cr_expect_eq(r, 0, "join: %d", r);
	cr_expect_eq(done, PRODUCERS * PER_PRODUCER, "join returned after %u of %u done", done,
		     PRODUCERS * PER_PRODUCER);
	for (int i = 0; i < CONSUMERS; i++) {
		int st;
		cr_assert_eq(t_wait(kids[i], &st, 30 * T_SEC), 0);
		cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 0, "consumer status %d", st);
	}
	shmq_queue_close(s->q);
}

/* A joiner in another process, parked before the work is done, wakes when the
 * last task_done happens here. */
static int joiner(void *arg)
{
	struct jsh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RDWR);
	t_post(&s->go);
	int r = shmq_join(s->q, 30 * T_SEC);
	atomic_store(&s->done_at_join, atomic_load(&s->done));
	atomic_store(&s->join_ret, r);
	return 0;
}

Test(join, parked_joiner_in_another_process_wakes_at_last_done)
{
	struct jsh *s = t_shared(sizeof(*s));
	s->q = mkjq(64);
	atomic_store(&s->join_ret, 1);
	put_n(s->q, 10);
	pid_t kid = t_fork(joiner, s);
	cr_assert_eq(t_await(&s->go, 1, LIVE), 0);
	cr_assert_eq(t_wait_sleeping(kid, LIVE), 0, "joiner should park");
	get_n(s->q, 10);
	for (int i = 0; i < 10; i++) {
		t_nap(T_MS);
		atomic_fetch_add(&s->done, 1);
		cr_assert_eq(shmq_task_done(s->q), 0);
	}
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0, "joiner did not wake");
	cr_expect_eq(atomic_load(&s->join_ret), 0);
	cr_expect_eq(atomic_load(&s->done_at_join), 10);
	shmq_queue_close(s->q);
}

/* ----------------------------------------------- consumers that go away -- */

/* Gets two messages, says so, then waits to be killed (or closes). */
static int holder(void *arg)
{
	struct jsh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_WR);
	get_n(s->q, 2);
	cr_assert_eq(shmq_task_done(s->q), 0); /* one of the two is done */
	t_post(&s->got);
	if (atomic_load(&s->go) == 2) { /* the close variant */
		shmq_queue_close(s->q);
		return 0;
	}
	pause();
	return 0;
}

static void lost_consumer(uint32_t variant)
{
	struct jsh *s = t_shared(sizeof(*s));
	s->q = mkjq(64);
	atomic_store(&s->go, variant);
	put_n(s->q, 5);
	pid_t kid = t_fork(holder, s);
	cr_assert_eq(t_await(&s->got, 1, LIVE), 0);
	if (variant == 1)
		kill(kid, SIGKILL);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	/* The other three are got and done here; the holder's undone one is
	 * lost. */
	get_n(s->q, 3);
	cr_expect_eq(shmq_join(s->q, 0), -EAGAIN);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(shmq_task_done(s->q), 0);
	int64_t t0 = t_now();
	int r = shmq_join(s->q, 10 * T_SEC);
	cr_expect_eq(r, -EOWNERDEAD, "join: %d", r);
	cr_expect_lt(t_now() - t0, LIVE, "join took too long to notice");
	cr_expect_eq(shmq_join(s->q, 0), 0, "a loss is reported once per handle");
	struct shmq_stat stat;
	cr_assert_eq(shmq_queue_stat(s->q, &stat), 0);
	cr_expect_eq(stat.lost, 1);
	cr_expect_eq(stat.held, 0);
	shmq_queue_close(s->q);
}

Test(join, consumer_killed_holding_a_message_is_reported_not_waited_for)
{
	lost_consumer(1);
}

Test(join, consumer_closing_with_undone_messages_counts_them_lost)
{
	lost_consumer(2);
}

/* Gets two messages and waits: another process marks them done. */
static int get_two_and_wait(void *arg)
{
	struct jsh *s = arg;
	get_n(s->q, 2);
	t_post(&s->got);
	t_await(&s->go, 1, LIVE);
	return 0;
}

Test(join, task_done_for_messages_another_process_got)
{
	struct jsh *s = t_shared(sizeof(*s));
	s->q = mkjq(64);
	put_n(s->q, 2);
	pid_t kid = t_fork(get_two_and_wait, s);
	cr_assert_eq(t_await(&s->got, 1, LIVE), 0);
	cr_expect_eq(shmq_join(s->q, 0), -EAGAIN);
	cr_expect_eq(shmq_task_done(s->q), 0, "counted over the queue, as in Python");
	cr_expect_eq(shmq_task_done(s->q), 0);
	cr_expect_eq(shmq_task_done(s->q), -EINVAL, "more than were got");
	cr_expect_eq(shmq_join(s->q, 0), 0);
	t_set(&s->go, 1);
	int st;
	cr_assert_eq(t_wait(kid, &st, LIVE), 0);
	cr_expect_eq(shmq_join(s->q, 0), 0, "nothing lost: the child's count was done");
	shmq_queue_close(s->q);
}

Test(join, queued_messages_with_every_consumer_gone_is_epipe)
{
	struct jsh *s = t_shared(sizeof(*s));
	s->q = mkjq(64);
	put_n(s->q, 2);
	shmq_queue_shutdown(s->q, SHMQ_RD); /* the only consumer leaves */
	cr_expect_eq(shmq_join(s->q, LIVE), -EPIPE);
	shmq_queue_close(s->q);
}

Test(join, stat_reports_geometry_depth_and_members)
{
	shmq_queue *q = mkjq(64);
	put_n(q, 3);
	get_n(q, 1);
	struct shmq_stat st;
	cr_assert_eq(shmq_queue_stat(q, &st), 0);
	cr_expect_eq(st.capacity, shmq_capacity(q));
	cr_expect_eq(st.cell_size, shmq_cell_size(q));
	cr_expect_eq(st.msg_max, shmq_msg_max(q));
	cr_expect_eq(st.flags & SHMQ_JOINABLE, SHMQ_JOINABLE);
	cr_expect_eq(st.depth, 2);
	cr_expect_eq(st.producers, 1);
	cr_expect_eq(st.consumers, 1);
	cr_expect_eq(st.puts, 3);
	cr_expect_eq(st.gets, 1);
	cr_expect_eq(st.held, 1);
	cr_expect_eq(st.lost, 0);
	cr_expect_eq(shmq_queue_stat(q, NULL), -EINVAL);
	shmq_queue_close(q);
}

/* ------------------------------------------------- no lost wake-up -- */
/* Found by examples/crawler.c: a consumer's get counts what it is about to
 * take as held before it claims (so a joiner that sees the ring drained sees
 * the count) and took the count back without notifying ec_done when the
 * ring was empty: a joiner that read the count in that window slept out its
 * 50 ms re-check. Polling consumers opened the window all the time. */
#define JOINS 20000
#define SLOW (45 * T_MS) /* just under the joiner's 50 ms re-check */

static shmq_queue *poll_q;

/* A consumer that polls an empty queue without pause. */
static int poller(void *arg)
{
	(void)arg;
	shmq_queue_shutdown(poll_q, SHMQ_WR);
	int v;
	for (;;)
		shmq_get(poll_q, &v, sizeof(v), 0);
	return 0;
}

Test(join, returns_at_once_while_a_consumer_polls, .timeout = T_TIMEOUT(60))
{
	struct shmq_queue_attr a = t_attr(64, 0);
	a.flags = SHMQ_JOINABLE;
	cr_assert_eq(shmq_queue_create(NULL, &a, &poll_q), 0);
	pid_t kid = t_fork(poller, NULL);
	/* Nothing was ever put: every join holds at once. */
	int slow = 0, bad = 0;
	int64_t worst = 0;
	for (int i = 0; i < JOINS; i++) {
		int64_t t0 = t_now();
		bad += shmq_join(poll_q, -1) != 0;
		int64_t d = t_now() - t0;
		slow += d >= SLOW * T_SCALE;
		worst = d > worst ? d : worst;
	}
	t_kill_reap(kid);
	shmq_queue_close(poll_q);
	cr_expect_eq(bad, 0, "join failed %d times", bad);
	cr_expect_eq(slow, 0, "%d of %d joins with nothing outstanding slept out the re-check"
			      " (worst %lld ms)", slow, JOINS, (long long)(worst / T_MS));
}
