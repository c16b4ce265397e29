/* fork() and the participant table: a child holds the parent's roles from the
 * moment fork() returns, in a slot the parent claimed for it and bound to
 * the child's pid right after the fork (src/part.c). So a child killed before
 * it ever ran is seen dead at once (no grace period), a child stopped before
 * it ran is alive for as long as it lives, and many children starting at once
 * never make a consumer see a false end of data. */
#include <criterion/criterion.h>

#include "common.h"
#include "part.h" /* PART_FORK_GRACE_S: the old way, which the test must beat */

static shmq_queue *mkq(uint32_t capacity, uint32_t msg_max)
{
	struct shmq_queue_attr a = t_attr(capacity, msg_max);
	shmq_queue *q = NULL;
	int r = shmq_queue_create(NULL, &a, &q);
	cr_assert_eq(r, 0, "create: %d", r);
	return q;
}

/* A consumer as a new user writes one: it drops the producer role and takes
 * messages until there are none. It is killed or stopped before it runs. */
static int looping_consumer(void *arg)
{
	shmq_queue *q = arg;
	unsigned char buf[256];
	shmq_queue_shutdown(q, SHMQ_WR);
	while (shmq_get(q, buf, sizeof(buf), -1) >= 0)
		;
	return 0;
}

/* The parent drops its consumer role and fills the ring: the child's slot is
 * then the only consumer left. Returns how many messages went in. */
static unsigned drop_rd_and_fill(shmq_queue *q)
{
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_RD), 0);
	unsigned n = 0;
	int r;
	while ((r = t_put_msg(q, 0, n, 20, 0)) == 0)
		n++;
	/* -EPIPE too if the dead child was already noticed (by whom? nobody
	 * waits yet: it would be a surprise, but not a wrong answer). */
	cr_assert(r == -EAGAIN || r == -EPIPE, "filling: %d", r);
	return n;
}

/* The scenario of a new user: fork a consumer, kill it at once (it never
 * ran, most likely), fill the queue: the next put must see that no consumer
 * is left, not wait for the fork grace period (PART_FORK_GRACE_S) or its own
 * timeout. A few rounds, since whether the child ran before the kill is up to
 * the scheduler. */
Test(fork, child_sigkilled_before_it_ran_is_seen_dead_at_once, .timeout = T_TIMEOUT(60))
{
	for (int round = 0; round < 3; round++) {
		shmq_queue *q = mkq(64, 64);
		pid_t pid = t_fork(looping_consumer, q);
		cr_assert_gt(pid, 0);
		kill(pid, SIGKILL); /* right after fork() returned */
		drop_rd_and_fill(q);
		int64_t t0 = t_now();
		int r = t_put_msg(q, 0, 9999, 20, 3 * T_SEC);
		int64_t took = t_now() - t0;
		int st;
		cr_assert_eq(t_wait(pid, &st, 10 * T_SEC), 0);
		cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
		cr_assert_eq(r, -EPIPE, "round %d: put with the only consumer killed: %d", round,
			     r);
		cr_assert_lt(took, T_SEC, "round %d: -EPIPE took %lld ms", round,
			     (long long)(took / T_MS));
		cr_assert_eq(shmq_queue_close(q), 0);
	}
}

/* The same child stopped instead of killed: it is alive, so a put waits out
 * its whole timeout, longer than the fork grace period (which used to end in
 * a false -EPIPE). Once killed, it is seen dead at once. */
Test(fork, child_sigstopped_before_it_ran_stays_alive, .timeout = T_TIMEOUT(60))
{
	shmq_queue *q = mkq(64, 64);
	pid_t pid = t_fork(looping_consumer, q);
	cr_assert_gt(pid, 0);
	kill(pid, SIGSTOP);
	int ws = t_wait_stopped(pid, 10 * T_SEC);
	if (ws < 0)
		t_kill_reap(pid);
	cr_assert_eq(ws, 0, "child not stopped");
	drop_rd_and_fill(q);
	int64_t timeout = PART_FORK_GRACE_S * T_SEC + 500 * T_MS;
	int64_t t0 = t_now();
	int r = t_put_msg(q, 0, 9999, 20, timeout);
	int64_t took = t_now() - t0;
	if (r != -ETIMEDOUT)
		t_kill_reap(pid);
	cr_assert_eq(r, -ETIMEDOUT, "put with a stopped (live) consumer: %d after %lld ms", r,
		     (long long)(took / T_MS));
	cr_assert_geq(took, timeout);

	kill(pid, SIGKILL);
	int st;
	cr_assert_eq(t_wait(pid, &st, 10 * T_SEC), 0);
	cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
	t0 = t_now();
	r = t_put_msg(q, 0, 9999, 20, 3 * T_SEC);
	took = t_now() - t0;
	cr_assert_eq(r, -EPIPE, "put after the consumer was killed: %d", r);
	cr_assert_lt(took, T_SEC, "-EPIPE took %lld ms", (long long)(took / T_MS));
	cr_assert_eq(shmq_queue_close(q), 0);
}

/* ------------------------------------- many children starting at once -- */

#define KIDS 50

struct start_sh {
	shmq_queue *q;
	_Atomic uint32_t ready, done, got;
	_Atomic uint32_t seen[KIDS];
	_Atomic int64_t ret;
	_Atomic uint32_t bad; /* messages that were not one of ours */
};

static int counting_consumer(void *arg)
{
	struct start_sh *s = arg;
	unsigned char buf[256];
	shmq_queue_shutdown(s->q, SHMQ_WR);
	t_post(&s->ready);
	for (;;) {
		ssize_t n = shmq_get(s->q, buf, sizeof(buf), 10 * T_SEC * T_SCALE);
		if (n < 0) {
			s->ret = n;
			break;
		}
		uint32_t prod, seq;
		if (tmsg_check(buf, (size_t)n, 1, 24, 24, &prod, &seq) != TMSG_OK || seq >= KIDS)
			atomic_fetch_add(&s->bad, 1);
		else
			atomic_fetch_add(&s->seen[seq], 1);
		atomic_fetch_add(&s->got, 1);
	}
	t_post(&s->done);
	return 0;
}

struct kid_arg {
	struct start_sh *s;
	uint32_t idx;
};

/* Puts one message with the producer role it got from fork, and exits
 * without closing: its slot ends by death (the liveness check). */
static int one_shot_producer(void *arg)
{
	struct kid_arg *a = arg;
	return t_put_msg(a->s->q, 0, a->idx, 24, 10 * T_SEC * T_SCALE) == 0 ? 0 : 1;
}

/* A producer forks KIDS children in a row and closes its own handle right
 * after: each child's producer role exists from fork() on, so the consumer
 * gets every message and only then -EPIPE, never a false end of data while
 * children start (or a child that finds its slot gone). */
Test(fork, many_children_starting_no_false_end_of_data, .timeout = T_TIMEOUT(120))
{
	for (int round = 0; round < 4; round++) {
		struct start_sh *s = t_shared(sizeof(*s));
		cr_assert_not_null(s);
		s->q = mkq(64, 64);
		pid_t cons = t_fork(counting_consumer, s);
		cr_assert_eq(t_await(&s->ready, 1, 10 * T_SEC * T_SCALE), 0);
		cr_assert_eq(shmq_queue_shutdown(s->q, SHMQ_RD), 0); /* a producer only */
		pid_t kids[KIDS];
		struct kid_arg args[KIDS];
		for (uint32_t i = 0; i < KIDS; i++) {
			args[i] = (struct kid_arg){ .s = s, .idx = i };
			kids[i] = t_fork(one_shot_producer, &args[i]);
			cr_assert_gt(kids[i], 0);
		}
		cr_assert_eq(shmq_queue_close(s->q), 0);
		int bad_kids = 0;
		for (uint32_t i = 0; i < KIDS; i++) {
			int st;
			if (t_wait(kids[i], &st, 20 * T_SEC * T_SCALE) < 0) {
				t_kill_reap(kids[i]);
				bad_kids++;
			} else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
				bad_kids++;
			}
		}
		int r = t_await(&s->done, 1, 20 * T_SEC * T_SCALE);
		if (r < 0)
			t_kill_reap(cons);
		else
			t_wait(cons, NULL, 10 * T_SEC);
		cr_assert_eq(r, 0, "round %d: consumer still waiting", round);
		cr_assert_eq(bad_kids, 0, "round %d: %d children failed to put", round, bad_kids);
		cr_assert_eq(s->bad, 0);
		cr_assert_eq(s->ret, -EPIPE, "round %d: consumer ended with %lld", round,
			     (long long)s->ret);
		cr_assert_eq(s->got, KIDS, "round %d: end of data after %u of %d messages", round,
			     s->got, KIDS);
		for (uint32_t i = 0; i < KIDS; i++)
			cr_assert_eq(s->seen[i], 1, "round %d: message %u seen %u times", round, i,
				     s->seen[i]);
		munmap(s, sizeof(*s));
	}
}
