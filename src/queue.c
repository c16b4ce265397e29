/* Queue layer: handles, roles, end-of-data, blocking with timeouts, fork. */
#include "shmq.h"
#include "part.h"
#include "ring.h"
#include "seg.h"
#include "wait.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

/* A hand-off caught while spinning costs ~0.5 µs, one that parks ~17 µs: spin
 * about one futex round trip, yielding the core now and then so that on an
 * oversubscribed machine the peer we wait for can run. */
#define SPIN_NS (20 * 1000)
#define SPIN_YIELD_NS (4 * 1000)
/* How often a waiter checks that the processes it waits for are alive; also
 * the longest a parked waiter sleeps between such checks. */
#define CHECK_NS (50 * 1000 * 1000)

#define MEMBERS_VALID (1ull << 31)

struct shmq_queue {
	struct seg seg;
	struct ring ring;
	_Atomic int roles;
	int slot;
	uint32_t tag;
	/* Cached role counts: epoch << 32 | VALID | producers << 16 | consumers. */
	_Atomic uint64_t members;
	_Atomic int64_t last_check;
	struct shmq_queue *prev, *next; /* every handle of this process, for fork */
};

/* ------------------------------------------------------------ handle list -- */

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmq_queue *handles;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void) { pthread_mutex_lock(&handles_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&handles_lock); }

/* The child holds every handle with the same roles, in a slot of its own. */
static void fork_child(void)
{
	for (struct shmq_queue *q = handles; q; q = q->next) {
		q->slot = part_claim(&q->seg, atomic_load(&q->roles));
		if (q->slot < 0)
			atomic_store(&q->roles, 0);
		else
			q->tag = part_tag(&q->seg, q->slot);
		atomic_store(&q->members, 0);
	}
	pthread_mutex_unlock(&handles_lock);
}

static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

/* Claim a participant slot and make the handle known to fork. */
static int handle_attach(struct shmq_queue *q, int roles)
{
	pthread_once(&atfork_once, register_atfork);
	ring_init(&q->ring, &q->seg);
	pthread_mutex_lock(&handles_lock);
	q->slot = part_claim(&q->seg, roles);
	if (q->slot < 0) {
		pthread_mutex_unlock(&handles_lock);
		return q->slot;
	}
	q->tag = part_tag(&q->seg, q->slot);
	atomic_store(&q->roles, roles);
	q->next = handles;
	if (handles)
		handles->prev = q;
	handles = q;
	pthread_mutex_unlock(&handles_lock);
	return 0;
}

static int handle_finish(struct shmq_queue *q, int err, shmq_queue **out)
{
	if (err == 0)
		err = handle_attach(q, atomic_load(&q->roles));
	if (err < 0) {
		if (q->seg.hdr)
			seg_close(&q->seg);
		free(q);
		return err;
	}
	*out = q;
	return 0;
}

/* -------------------------------------------------------------- lifecycle -- */

void shmq_queue_attr_init(struct shmq_queue_attr *attr)
{
	*attr = (struct shmq_queue_attr){ 0 };
}

int shmq_queue_create(const char *name, const struct shmq_queue_attr *attr, shmq_queue **out)
{
	struct shmq_queue_attr a = { 0 };
	if (attr)
		a = *attr;
	if (!out || (a.flags & ~(uint32_t)(SHMQ_JOINABLE | SHMQ_NOROLES)))
		return -EINVAL;
	struct shmq_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->roles = (a.flags & SHMQ_NOROLES) ? 0 : SHMQ_RDWR;
	int err = seg_create(&q->seg, name, a.capacity, a.msg_max, a.flags & SHMQ_JOINABLE, a.mode);
	return handle_finish(q, err, out);
}

static int open_common(int fd, const char *name, int roles, shmq_queue **out)
{
	if (!out || roles < 0 || roles > SHMQ_RDWR)
		return -EINVAL;
	struct shmq_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->roles = roles;
	int err = name ? seg_open_name(&q->seg, name) : seg_open_fd(&q->seg, fd);
	return handle_finish(q, err, out);
}

int shmq_queue_open(const char *name, int roles, shmq_queue **out)
{
	if (!name)
		return -EINVAL;
	return open_common(-1, name, roles, out);
}

int shmq_queue_open_fd(int fd, int roles, shmq_queue **out)
{
	if (fd < 0)
		return -EBADF;
	return open_common(fd, NULL, roles, out);
}

int shmq_queue_fd(shmq_queue *q)
{
	return q ? q->seg.fd : -EINVAL;
}

int shmq_queue_shutdown(shmq_queue *q, int roles)
{
	if (!q || roles <= 0 || roles > SHMQ_RDWR)
		return -EINVAL;
	int now = atomic_fetch_and(&q->roles, ~roles) & ~roles;
	if (q->slot >= 0)
		part_set_roles(&q->seg, q->slot, now);
	return 0;
}

int shmq_queue_close(shmq_queue *q)
{
	if (!q)
		return -EINVAL;
	pthread_mutex_lock(&handles_lock);
	if (q->prev)
		q->prev->next = q->next;
	else
		handles = q->next;
	if (q->next)
		q->next->prev = q->prev;
	pthread_mutex_unlock(&handles_lock);
	if (q->slot >= 0)
		part_release(&q->seg, q->slot);
	seg_close(&q->seg);
	free(q);
	return 0;
}

int shmq_unlink(const char *name)
{
	return seg_unlink(name);
}

/* ------------------------------------------------------------- membership -- */

static struct part_counts members(struct shmq_queue *q)
{
	uint64_t epoch = atomic_load_explicit(&q->seg.hdr->epoch, memory_order_acquire);
	uint64_t m = atomic_load_explicit(&q->members, memory_order_relaxed);
	if (!(m & MEMBERS_VALID) || m >> 32 != epoch) {
		struct part_counts c = part_count(&q->seg);
		m = epoch << 32 | MEMBERS_VALID | (uint64_t)c.producers << 16 | c.consumers;
		atomic_store_explicit(&q->members, m, memory_order_relaxed);
	}
	return (struct part_counts){ .producers = m >> 16 & 0x7fff, .consumers = m & 0xffff };
}

/* Every handle that ever held role is gone. */
static bool role_gone(struct shmq_queue *q, int role)
{
	if (!(atomic_load_explicit(&q->seg.hdr->ever, memory_order_acquire) & (uint32_t)role))
		return false;
	struct part_counts c = members(q);
	return (role == SHMQ_WR ? c.producers : c.consumers) == 0;
}

/* --------------------------------------------------------------- data path -- */

struct op {
	bool put;
	const void *src;
	void *dst;
	size_t len; /* put: message length; get: buffer capacity */
};

static ssize_t attempt(struct shmq_queue *q, const struct op *op, struct ring_block *b)
{
	struct seg_hdr *h = q->seg.hdr;
	if (op->put) {
		if (role_gone(q, SHMQ_RD))
			return -EPIPE;
		int r = ring_try_put(&q->ring, q->tag, op->src, op->len, b);
		if (r == 0)
			ec_notify(&h->ec_data);
		return r;
	}
	ssize_t r = ring_try_get(&q->ring, q->tag, op->dst, op->len, b);
	if (r == -EAGAIN && role_gone(q, SHMQ_WR)) {
		/* The last producer's final put may have landed after our look
		 * at the ring: look again now that its exit is visible. */
		r = ring_try_get(&q->ring, q->tag, op->dst, op->len, b);
		if (r == -EAGAIN)
			return -EPIPE;
	}
	if (r >= 0 || r == -EPROTO) /* a dropped corrupt message frees room too */
		ec_notify(&h->ec_room);
	return r;
}

/* Busy-wait for up to SPIN_NS (or the deadline), yielding now and then. */
static ssize_t spin(struct shmq_queue *q, const struct op *op, struct ring_block *b,
		    int64_t deadline)
{
	int64_t start = wait_now(), now = start, last_yield = start;
	int64_t end = deadline < start + SPIN_NS ? deadline : start + SPIN_NS;
	for (;;) {
		for (int i = 0; i < 16; i++) {
			wait_pause();
			ssize_t r = attempt(q, op, b);
			if (r != -EAGAIN)
				return r;
		}
		now = wait_now();
		if (now >= end)
			return -EAGAIN;
		if (now - last_yield >= SPIN_YIELD_NS) {
			sched_yield();
			last_yield = now;
		}
	}
}

/* Waits that drag on: reap dead participants (which may end the wait with
 * -EPIPE) and take back the cell we are blocked on if its owner is gone. */
static void check_peers(struct shmq_queue *q, const struct ring_block *b)
{
	int64_t now = wait_now(), last = atomic_load(&q->last_check);
	if (now - last < CHECK_NS || !atomic_compare_exchange_strong(&q->last_check, &last, now))
		return;
	part_reap_dead(&q->seg);
	if (ring_recover(&q->ring, &q->seg, b)) {
		ec_notify(&q->seg.hdr->ec_data);
		ec_notify(&q->seg.hdr->ec_room);
	}
}

static ssize_t queue_wait(struct shmq_queue *q, const struct op *op, int64_t timeout_ns)
{
	struct ring_block b;
	ssize_t r = attempt(q, op, &b);
	if (r != -EAGAIN || timeout_ns == 0)
		return r;
	_Atomic uint32_t *ec = op->put ? &q->seg.hdr->ec_room : &q->seg.hdr->ec_data;
	int64_t deadline = wait_deadline(timeout_ns);
	for (;;) {
		r = spin(q, op, &b, deadline);
		if (r != -EAGAIN)
			return r;
		check_peers(q, &b);
		uint32_t key = ec_prepare(ec);
		r = attempt(q, op, &b);
		if (r != -EAGAIN)
			return r;
		if (wait_expired(deadline))
			return -ETIMEDOUT;
		int64_t slice = wait_now() + CHECK_NS;
		ec_wait(ec, key, deadline < slice ? deadline : slice);
	}
}

int shmq_put(shmq_queue *q, const void *buf, size_t len, int64_t timeout_ns)
{
	if (!q || (!buf && len))
		return -EINVAL;
	if (!(atomic_load_explicit(&q->roles, memory_order_relaxed) & SHMQ_WR))
		return -EBADF;
	if (len > q->ring.msg_max)
		return -EMSGSIZE;
	struct op op = { .put = true, .src = buf, .len = len };
	return (int)queue_wait(q, &op, timeout_ns);
}

ssize_t shmq_get(shmq_queue *q, void *buf, size_t cap, int64_t timeout_ns)
{
	if (!q || (!buf && cap))
		return -EINVAL;
	if (!(atomic_load_explicit(&q->roles, memory_order_relaxed) & SHMQ_RD))
		return -EBADF;
	struct op op = { .put = false, .dst = buf, .len = cap };
	return queue_wait(q, &op, timeout_ns);
}

ssize_t shmq_qsize(shmq_queue *q)
{
	return q ? (ssize_t)ring_count(&q->ring) : -EINVAL;
}

int shmq_empty(shmq_queue *q)
{
	return q ? ring_count(&q->ring) == 0 : -EINVAL;
}

int shmq_full(shmq_queue *q)
{
	return q ? ring_full(&q->ring) : -EINVAL;
}

size_t shmq_msg_max(shmq_queue *q)
{
	return q ? q->ring.msg_max : 0;
}

size_t shmq_capacity(shmq_queue *q)
{
	return q ? q->ring.mask + 1 : 0;
}
