/* Multi-wait layer: wait until any of several queues and pipe ends is ready.
 *
 * The same eventcount protocol as a single blocking call (wait.h), over many
 * words: announce on every word the items wait for, re-check every item,
 * then park on all the words at once (ec_wait_many). A waiter that parks
 * sets the "waiters" bit on each word, so a put to any of the queues wakes
 * it; a queue's readiness changes only with a notification of its words.
 */
#include "pipe.h"
#include "queue.h"
#include "wait.h"

#include <errno.h>

static const int poll_events[2] = { SHMQ_POLLIN, SHMQ_POLLOUT };

static shmq_queue *item_queue(const struct shmq_pollitem *it, int event)
{
	return it->queue ? it->queue : conn_queue(it->conn, event);
}

/* -EINVAL / -EBADF for a bad item, else the number of words it waits on. */
static int item_check(const struct shmq_pollitem *it)
{
	if (!it->queue == !it->conn || !(it->events & (SHMQ_POLLIN | SHMQ_POLLOUT)))
		return -EINVAL;
	int words = 0;
	for (int e = 0; e < 2; e++) {
		if (!(it->events & poll_events[e]))
			continue;
		if (it->conn && !item_queue(it, poll_events[e]))
			return -EBADF;
		words++;
	}
	return words;
}

/* Set revents of every item; the number of items ready. */
static int scan(struct shmq_pollitem *items, unsigned n)
{
	int ready = 0;
	for (unsigned i = 0; i < n; i++) {
		struct shmq_pollitem *it = &items[i];
		it->revents = 0;
		for (int e = 0; e < 2; e++)
			if (it->events & poll_events[e])
				it->revents |= (short)queue_revents(item_queue(it, poll_events[e]),
								    poll_events[e]);
		if (it->conn && (it->events & SHMQ_POLLIN) && conn_stashed(it->conn))
			it->revents |= SHMQ_POLLIN;
		ready += it->revents != 0;
	}
	return ready;
}

/* Announce the wait on every word (ec_prepare) and collect the keys. */
static unsigned prepare(struct shmq_pollitem *items, unsigned n, _Atomic uint32_t **words,
			uint32_t *keys)
{
	unsigned nw = 0;
	for (unsigned i = 0; i < n; i++)
		for (int e = 0; e < 2; e++)
			if (items[i].events & poll_events[e]) {
				words[nw] = queue_ec(item_queue(&items[i], poll_events[e]),
						     poll_events[e]);
				keys[nw] = ec_prepare(words[nw]);
				nw++;
			}
	return nw;
}

static void check_all(struct shmq_pollitem *items, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		for (int e = 0; e < 2; e++)
			if (items[i].events & poll_events[e])
				queue_check(item_queue(&items[i], poll_events[e]), poll_events[e]);
}

int shmq_wait_any(struct shmq_pollitem *items, unsigned n, int64_t timeout_ns)
{
	if (!items || n == 0)
		return -EINVAL;
	unsigned total = 0;
	for (unsigned i = 0; i < n; i++) {
		int w = item_check(&items[i]);
		if (w < 0)
			return w;
		total += (unsigned)w;
	}
	if (total > SHMQ_WAIT_MAX)
		return -EINVAL;
	int ready = scan(items, n);
	if (ready || timeout_ns == 0)
		return ready;
	_Atomic uint32_t *words[SHMQ_WAIT_MAX];
	uint32_t keys[SHMQ_WAIT_MAX];
	int64_t deadline = wait_deadline(timeout_ns);
	for (;;) {
		unsigned nw = prepare(items, n, words, keys);
		if ((ready = scan(items, n)))
			return ready;
		if (wait_expired(deadline))
			return 0;
		ec_wait_many((_Atomic uint32_t *const *)words, keys, nw,
			     wait_slice(deadline, CHECK_NS));
		check_all(items, n);
	}
}
