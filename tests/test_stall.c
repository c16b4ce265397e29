/* The one stall shmq.h documents: a producer that is alive but stopped
 * (SIGSTOP) between shmq_put_reserve() and shmq_put_commit() holds up every
 * consumer behind its message, since messages leave in ring order, and the
 * liveness checks must not take its cell away (it may still publish). Other
 * producers keep putting while there is room; SIGCONT resumes everything and
 * nothing is lost. (test_crash.c stops a producer inside shmq_put through a
 * test hook; this one uses the public zero-copy calls, no hook.) */
#include <criterion/criterion.h>

#include "common.h"

#define LIVE (2 * T_SEC * T_SCALE)
#define STALL (300 * T_MS) /* several liveness-check periods (50 ms) */
#define BEFORE 10u         /* the stopper's messages ahead of its reservation */
#define AFTER 10u          /* and behind it */
#define LEN 40u            /* one 64-byte cell each */

struct stall_sh {
	shmq_queue *q;
	_Atomic uint32_t ready, go_other, other_done, go_cons, cons_done;
	_Atomic uint32_t other_put;  /* messages the other producer got in */
	_Atomic int64_t other_last;  /* its put once the ring was full */
	_Atomic int64_t cons_ret;    /* the stalled consumer's get */
	_Atomic int64_t cons_qsize;  /* qsize that consumer saw */
};

/* Puts BEFORE messages, reserves one more, writes half of it and stops
 * itself; once continued, finishes and commits it, then puts AFTER more. */
static int stopper(void *arg)
{
	struct stall_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD);
	t_post(&s->ready);
	for (uint32_t i = 0; i < BEFORE; i++)
		if (t_put_msg(s->q, 0, i, LEN, LIVE) < 0)
			return 1;
	unsigned char msg[LEN];
	tmsg_fill(msg, 0, BEFORE, LEN);
	shmq_slot slot;
	if (shmq_put_reserve(s->q, LEN, &slot, LIVE) < 0 || slot.len != LEN)
		return 2;
	memcpy(slot.data, msg, LEN / 2);
	raise(SIGSTOP);
	memcpy((unsigned char *)slot.data + LEN / 2, msg + LEN / 2, LEN - LEN / 2);
	if (shmq_put_commit(s->q, &slot) < 0)
		return 3;
	for (uint32_t i = BEFORE + 1; i <= BEFORE + AFTER; i++)
		if (t_put_msg(s->q, 0, i, LEN, 10 * LIVE) < 0)
			return 4;
	return shmq_queue_close(s->q) == 0 ? 0 : 5;
}

/* Fills what room is left without waiting, then finds the ring full. */
static int other_producer(void *arg)
{
	struct stall_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_RD);
	t_post(&s->ready);
	t_await(&s->go_other, 1, -1);
	int r;
	uint32_t n = 0;
	while ((r = t_put_msg(s->q, 1, n, LEN, 0)) == 0)
		n++;
	s->other_put = n;
	s->other_last = r == -EAGAIN ? t_put_msg(s->q, 1, n, LEN, STALL) : r;
	t_post(&s->other_done);
	return shmq_queue_close(s->q) == 0 ? 0 : 1;
}

/* A consumer in its own process: stalls behind the stopped producer. */
static int stalled_consumer(void *arg)
{
	struct stall_sh *s = arg;
	shmq_queue_shutdown(s->q, SHMQ_WR);
	t_post(&s->ready);
	t_await(&s->go_cons, 1, -1);
	unsigned char buf[256];
	s->cons_ret = shmq_get(s->q, buf, sizeof(buf), STALL);
	s->cons_qsize = shmq_qsize(s->q);
	t_post(&s->cons_done);
	return shmq_queue_close(s->q) == 0 ? 0 : 1;
}

static void expect_exit0(pid_t pid, const char *who)
{
	int st;
	int r = t_wait(pid, &st, 10 * LIVE);
	if (r < 0)
		t_kill_reap(pid);
	cr_assert_eq(r, 0, "%s did not exit", who);
	char sb[32];
	cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: %s", who,
		  t_status_str(st, sb, sizeof(sb)));
}

/* Get one message of producer prod, number seq, within LIVE. */
static void expect_msg(shmq_queue *q, uint32_t *next)
{
	unsigned char buf[256];
	ssize_t n = shmq_get(q, buf, sizeof(buf), LIVE);
	cr_assert_eq(n, LEN, "get after SIGCONT: %zd", n);
	uint32_t prod, seq;
	cr_assert_eq(tmsg_check(buf, (size_t)n, 2, LEN, LEN, &prod, &seq), TMSG_OK, "torn");
	cr_assert_eq(seq, next[prod], "producer %u: seq %u, want %u", prod, seq, next[prod]);
	next[prod]++;
}

Test(stall, producer_sigstopped_between_reserve_and_commit, .timeout = T_TIMEOUT(60))
{
	struct shmq_queue_attr a = t_attr(64, 256); /* the smallest ring: 64 cells */
	shmq_queue *q = NULL;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	struct stall_sh *s = t_shared(sizeof(*s));
	s->q = q;
	pid_t stop = t_fork(stopper, s), other = t_fork(other_producer, s),
	      cons = t_fork(stalled_consumer, s);
	cr_assert_eq(t_await(&s->ready, 3, LIVE), 0);
	cr_assert_eq(shmq_queue_shutdown(q, SHMQ_WR), 0);
	int r = t_wait_stopped(stop, LIVE);
	if (r < 0) {
		t_kill_reap(stop);
		t_kill_reap(other);
		t_kill_reap(cons);
	}
	cr_assert_eq(r, 0, "the producer did not stop between reserve and commit");

	/* What was committed before the reservation is there... */
	uint32_t next[2] = { 0, 0 };
	for (uint32_t i = 0; i < BEFORE; i++)
		expect_msg(q, next);
	unsigned char buf[256];
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), 0), -EAGAIN);

	/* ...other producers fill the rest of the ring behind the reserved
	 * cell, then find it full... */
	t_set(&s->go_other, 1);
	cr_assert_eq(t_await(&s->other_done, 1, 10 * LIVE), 0);
	cr_assert_eq(s->other_put, 64 - 1, "the other producer put %u messages", s->other_put);
	cr_assert_eq(s->other_last, -ETIMEDOUT, "a put into the full ring: %lld",
		     (long long)s->other_last);

	/* ...and every consumer times out with all of that data queued. */
	t_set(&s->go_cons, 1);
	int64_t t0 = t_now();
	ssize_t n = shmq_get(q, buf, sizeof(buf), STALL);
	cr_assert_eq(n, -ETIMEDOUT, "a live (stopped) producer's reservation was skipped: %zd", n);
	cr_assert_geq(t_now() - t0, STALL);
	cr_assert_eq(t_await(&s->cons_done, 1, 10 * LIVE), 0);
	cr_assert_eq(s->cons_ret, -ETIMEDOUT, "the other consumer got %lld", (long long)s->cons_ret);
	cr_assert_geq(s->cons_qsize, 64 - 1, "qsize %lld", (long long)s->cons_qsize);
	char ps = t_proc_state(stop);
	cr_assert(ps == 'T' || ps == 't', "producer state %c, want stopped", ps);

	/* SIGCONT: its message comes first (ring order), then everything else,
	 * each producer's in order, nothing lost, then end of data. */
	kill(stop, SIGCONT);
	expect_msg(q, next);
	cr_assert_eq(next[0], BEFORE + 1, "the reserved message was not next in ring order");
	while (next[0] < BEFORE + AFTER + 1 || next[1] < s->other_put)
		expect_msg(q, next);
	cr_assert_eq(shmq_get(q, buf, sizeof(buf), LIVE), -EPIPE);
	expect_exit0(stop, "stopped producer");
	expect_exit0(other, "other producer");
	expect_exit0(cons, "stalled consumer");
	shmq_queue_close(q);
}
