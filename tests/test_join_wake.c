/* JoinableQueue: join must not miss the wake-up that ends its wait.
 *
 * Found by examples/crawler.c: about one crawl in eight took 50 ms longer
 * than its work, the joiner waking only at its periodic re-check
 * (CHECK_NS). A consumer's get counts the message it is about to take as
 * held before it claims (try_get, so that a joiner that sees the ring
 * drained also sees the count), and takes the count back when the ring was
 * empty, without notifying ec_done. A joiner that reads the count inside
 * that window parks, and nothing wakes it. Polling consumers, or consumers
 * spinning in a blocking get, open the window all the time. */
#include <criterion/criterion.h>

#include "common.h"

#define JOINS 20000
#define SLOW (45 * T_MS) /* just under the joiner's 50 ms re-check */

static shmq_queue *q;

/* A consumer that polls an empty queue without pause. */
static int poller(void *arg)
{
	(void)arg;
	shmq_queue_shutdown(q, SHMQ_WR);
	int v;
	for (;;)
		shmq_get(q, &v, sizeof(v), 0);
	return 0;
}

Test(join, returns_at_once_while_a_consumer_polls, .timeout = T_TIMEOUT(60))
{
	struct shmq_queue_attr a = t_attr(64, 0);
	a.flags = SHMQ_JOINABLE;
	cr_assert_eq(shmq_queue_create(NULL, &a, &q), 0);
	pid_t kid = t_fork(poller, NULL);
	/* Nothing was ever put: every join holds at once. */
	int slow = 0, bad = 0;
	int64_t worst = 0;
	for (int i = 0; i < JOINS; i++) {
		int64_t t0 = t_now();
		bad += shmq_join(q, -1) != 0;
		int64_t d = t_now() - t0;
		slow += d >= SLOW * T_SCALE;
		worst = d > worst ? d : worst;
	}
	t_kill_reap(kid);
	shmq_queue_close(q);
	cr_expect_eq(bad, 0, "join failed %d times", bad);
	cr_expect_eq(slow, 0, "%d of %d joins with nothing outstanding slept out the re-check"
			      " (worst %lld ms)", slow, JOINS, (long long)(worst / T_MS));
}
