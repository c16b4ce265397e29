/* Queue layer: handles, roles, end-of-data, blocking with timeouts, fork. */
#include "queue.h"
#include "efd.h"
#include "part.h"
#include "ring.h"
#include "seg.h"
#include "testhook.h"
#include "wait.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <unistd.h>

/* A hand-off caught while spinning costs ~0.5 us, one that parks ~17 us: spin
 * about one futex round trip before parking. Between polls, yield the core:
 * when the peer we wait for shares our core (oversubscription, or the
 * scheduler's choice on 2 cores) it can run at once, and when it does not,
 * sched_yield returns at once. Measured blocking ping-pong round trip, 8 B:
 * same core 2.0 us (15 us when yielding every 4 us), two cores 0.6 us.
 *
 * But spinning before a park that comes anyway is costly twice over: the
 * time, and (measured on a KVM guest) a wake-up after a busy spin takes
 * ~9 us instead of ~1.5 us. So the spin adapts, per handle and direction: a
 * wait that ended while spinning keeps the full spin, one that had to park
 * halves it, down to none; with none, every SPIN_PROBE-th wait spins fully to
 * find out whether hand-offs have become catchable again. */
#define SPIN_NS (20 * 1000)
#define SPIN_MIN_NS 500 /* below this, do not spin at all */
#define SPIN_PROBE 16
#define SPIN_POLLS 16 /* polls between yields */

#define MEMBERS_VALID (1ull << 31)

struct shmq_queue {
	struct seg seg;
	struct ring ring;
	_Atomic int roles;
	int slot;
	int child_slot; /* claimed in fork_prepare for the child to adopt */
	uint32_t tag;
	/* Cached role counts: epoch << 32 | VALID | producers << 16 | consumers. */
	_Atomic uint64_t members;
	_Atomic int64_t last_check;
	_Atomic int32_t spin_ns[2]; /* learned spin budget: [0] put, [1] get */
	_Atomic uint32_t waits;     /* waits that needed a spin or a park */
	bool joinable;
	int efd; /* shmq_queue_eventfd(), or -1 */
	_Atomic uint64_t lost_seen; /* JoinableQueue: losses already reported */
	struct shmq_queue *prev, *next; /* every handle of this process, for fork */
};

static void efd_arm(struct shmq_queue *q);

/* ------------------------------------------------------------ handle list -- */

static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct shmq_queue *handles;
static pthread_once_t hooks_once = PTHREAD_ONCE_INIT;

/* The child holds every handle with the same roles, in a slot of its own.
 * The parent claims those slots before fork() so that the child's roles exist
 * by the time fork() returns in the parent: a consumer must not see a moment
 * with no producer (a false end of data) while the child starts. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&handles_lock);
	for (struct shmq_queue *q = handles; q; q = q->next)
		q->child_slot = part_claim(&q->seg.pt, atomic_load(&q->roles), true);
}

/* part.c's parent handler ran just before this one and found the child's
 * pid if it could: the slots name the child from now on, so a child killed
 * before it ever ran is seen dead like any other process. */
static void fork_parent(void)
{
	for (struct shmq_queue *q = handles; q; q = q->next)
		if (q->child_slot >= 0)
			part_fork_resolve(&q->seg.pt, q->child_slot);
	pthread_mutex_unlock(&handles_lock);
}

static void fork_child(void)
{
	for (struct shmq_queue *q = handles; q; q = q->next) {
		q->slot = q->child_slot;
		/* The slot may have been reaped before we ran (the parent took
		 * us for dead): then we hold none, as when the claim failed. */
		if (q->slot >= 0 && !part_adopt(&q->seg.pt, q->slot))
			q->slot = -1;
		if (q->slot < 0)
			atomic_store(&q->roles, 0);
		else
			q->tag = part_tag(&q->seg.pt, q->slot);
		if (q->efd >= 0) { /* registered for the parent's handle, not ours */
			close(q->efd);
			q->efd = -1;
		}
		atomic_store(&q->members, 0);
	}
	pthread_mutex_unlock(&handles_lock);
}

/* A process that exits without closing its handles drops their roles at once;
 * one that dies is noticed by the liveness checks instead. */
static void release_at_exit(void)
{
	pthread_mutex_lock(&handles_lock);
	for (struct shmq_queue *q = handles; q; q = q->next) {
		if (q->slot >= 0)
			part_release(&q->seg.pt, q->slot);
		q->slot = -1; /* a close after this must not release it twice */
		atomic_store(&q->roles, 0);
	}
	pthread_mutex_unlock(&handles_lock);
}

static void register_process_hooks(void)
{
	part_fork_init(); /* first: its handlers must wrap ours */
	pthread_atfork(fork_prepare, fork_parent, fork_child);
	atexit(release_at_exit);
}

/* The segment of a participant table (struct seg.pt). */
static struct seg *table_seg(struct part_table *t)
{
	return (struct seg *)((char *)t - offsetof(struct seg, pt));
}

/* Membership changed (part.c bumped the epoch already): waiters that may now
 * see the other side gone are woken. */
static void members_changed(struct part_table *t, int dropped)
{
	struct seg *s = table_seg(t);
	if (dropped & SHMQ_WR)
		efd_notify_data(s, EFD_ALL); /* end of data, for eventfd users too */
	if (dropped & SHMQ_RD) {
		ec_notify(&s->hdr->ec_room);
		ec_notify(&s->hdr->ec_done); /* a departed consumer's items are now lost */
	}
}

static const struct part_hooks queue_part_hooks = {
	.changed = members_changed,
	.reaped = NULL, /* a dead owner's cells are taken back by ring_recover */
};

/* Claim a participant slot and make the handle known to fork. */
static int handle_attach(struct shmq_queue *q, int roles)
{
	pthread_once(&hooks_once, register_process_hooks);
	ring_init(&q->ring, &q->seg);
	efd_init(&q->seg);
	q->seg.pt.hooks = &queue_part_hooks;
	q->efd = -1;
	pthread_mutex_lock(&handles_lock);
	q->slot = part_claim(&q->seg.pt, roles, false);
	if (q->slot < 0) {
		pthread_mutex_unlock(&handles_lock);
		return q->slot;
	}
	q->tag = part_tag(&q->seg.pt, q->slot);
	q->joinable = q->seg.geom.flags & SHMQ_JOINABLE;
	if (q->joinable) { /* report only losses from now on */
		uint64_t lost;
		part_held(&q->seg.pt, &lost);
		atomic_store(&q->lost_seen, lost);
	}
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
		if (q->ring.hdr)
			efd_fini(&q->seg);
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
	struct seg_geom g;
	int err = seg_geometry(a.capacity, a.msg_max, a.cell_size, a.flags & SHMQ_JOINABLE, &g);
	if (err == 0)
		err = seg_create(&q->seg, name, &g, a.mode);
	return handle_finish(q, err, out);
}

static int open_common(int fd, const char *name, int roles, shmq_queue **out)
{
	bool foreign = roles & SHMQ_FOREIGN;
	roles &= ~SHMQ_FOREIGN;
	if (!out || roles < 0 || roles > SHMQ_RDWR)
		return -EINVAL;
	struct shmq_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->roles = roles;
	int err = name ? seg_open_name(&q->seg, name, foreign) : seg_open_fd(&q->seg, fd, foreign);
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
		part_set_roles(&q->seg.pt, q->slot, now);
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
	if (q->efd >= 0) {
		efd_unregister(&q->seg, q->slot, q->tag);
		close(q->efd);
	}
	if (q->slot >= 0)
		part_release(&q->seg.pt, q->slot);
	efd_fini(&q->seg);
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
		struct part_counts c = part_count(&q->seg.pt);
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

enum op_kind { OP_PUT, OP_GET, OP_RESERVE, OP_PEEK };

struct op {
	enum op_kind kind;
	struct iovec *msgs; /* put/get: n messages or buffers */
	unsigned n;
	bool all;              /* bulk: all n or nothing */
	size_t len;            /* reserve: message length */
	struct ring_span *sp;  /* reserve/peek: the claimed cell */
	size_t *peek_len;      /* peek: message length */
};

static bool op_produces(const struct op *op)
{
	return op->kind == OP_PUT || op->kind == OP_RESERVE;
}

/* JoinableQueue: a consumer counts what it takes as held before it claims, so
 * a joiner that sees the ring drained also sees the count (ring_drained). */
static int try_get(struct shmq_queue *q, const struct op *op, struct ring_block *b)
{
	struct ring *r = &q->ring;
	_Atomic uint32_t *held = q->joinable ? &q->seg.parts[q->slot].held : NULL;
	unsigned want = op->kind == OP_PEEK ? 1 : op->n;
	if (held) {
		/* Polling an empty queue must not flash a count that keeps a
		 * joiner waiting (and wakes it for nothing). */
		if (!ring_readable(r, b))
			return -EAGAIN;
		atomic_fetch_add(held, want);
	}
	int res = op->kind == OP_PEEK ? ring_try_peek(r, q->tag, op->sp, op->peek_len, b)
				      : ring_try_get(r, q->tag, op->msgs, op->n, op->all, b);
	int got = op->kind == OP_PEEK ? (res == 0) : (res > 0 ? res : 0);
	/* Taking back what we did not get may complete a join that saw it. */
	if (held && want - got && atomic_fetch_sub(held, want - got) == want - got)
		ec_notify(&q->seg.hdr->ec_done);
	return res;
}

static int attempt(struct shmq_queue *q, const struct op *op, struct ring_block *b)
{
	struct ring *r = &q->ring;
	struct seg_hdr *h = q->seg.hdr;
	int res;

	if (op_produces(op)) {
		if (role_gone(q, SHMQ_RD))
			return -EPIPE;
		if (op->kind == OP_RESERVE)
			return ring_try_reserve(r, q->tag, op->len, op->sp, b);
		res = ring_try_put(r, q->tag, op->msgs, op->n, op->all, b);
		if (res > 0)
			efd_notify_data(&q->seg, res);
		return res;
	}
	for (int look = 0;; look++) {
		res = try_get(q, op, b);
		/* At end of data, look once more: the last producer's final put
		 * may have landed after our first look at the ring. */
		if (res != -EAGAIN || !role_gone(q, SHMQ_WR))
			break;
		/* A producer that died holding a claim holds back every message
		 * put behind it: take its cells back (its message becomes a
		 * skipped one) and look again, before calling it the end. Each
		 * recovery changes a cell for good, so this ends. */
		if (ring_recover(r, &q->seg, b)) {
			look = -1;
			continue;
		}
		if (look)
			return -EPIPE;
	}
	if (res > 0 && op->kind == OP_GET)
		ec_notify_n(&h->ec_room, res);
	else if (res == -EPROTO) /* a dropped message frees room */
		ec_notify_n(&h->ec_room, 1);
	return res;
}

/* Busy-wait for up to budget_ns (or the deadline), yielding between polls. */
static int spin(struct shmq_queue *q, const struct op *op, struct ring_block *b, int64_t deadline,
		int64_t budget_ns)
{
	int64_t start = wait_now();
	int64_t end = deadline - start < budget_ns ? deadline : start + budget_ns;
	for (;;) {
		for (int i = 0; i < SPIN_POLLS; i++) {
			wait_pause();
			int r = attempt(q, op, b);
			if (r != -EAGAIN)
				return r;
		}
		if (wait_now() >= end)
			return -EAGAIN;
		sched_yield();
	}
}

/* Waits that drag on: reap dead participants of the role we wait for (which
 * may end the wait with -EPIPE) and take back the cell we are blocked on if
 * its owner is gone. */
static void check_peers(struct shmq_queue *q, const struct op *op, const struct ring_block *b)
{
	int64_t now = wait_now(), last = atomic_load(&q->last_check);
	if (now - last < CHECK_NS || !atomic_compare_exchange_strong(&q->last_check, &last, now))
		return;
	part_sweep(&q->seg.pt, op_produces(op) ? SHMQ_RD : SHMQ_WR, CHECK_NS);
	if (ring_recover(&q->ring, &q->seg, b)) {
		efd_notify_data(&q->seg, EFD_ALL);
		ec_notify(&q->seg.hdr->ec_room);
		ec_notify(&q->seg.hdr->ec_done);
	}
}

/* The spin budget for this wait (see SPIN_NS). */
static int64_t spin_budget(struct shmq_queue *q, _Atomic int32_t *learned)
{
	int32_t ns = atomic_load_explicit(learned, memory_order_relaxed);
	uint32_t n = atomic_fetch_add_explicit(&q->waits, 1, memory_order_relaxed);
	return ns >= SPIN_MIN_NS || n % SPIN_PROBE == 0 ? SPIN_NS : 0;
}

static void spin_learn(_Atomic int32_t *learned, bool caught)
{
	int32_t ns = atomic_load_explicit(learned, memory_order_relaxed);
	atomic_store_explicit(learned, caught ? SPIN_NS : ns / 2, memory_order_relaxed);
}

static int queue_wait_body(struct shmq_queue *q, const struct op *op, int64_t timeout_ns);

/* Blocking calls, and the eventfd's arming when a get finds nothing. */
static int queue_wait(struct shmq_queue *q, const struct op *op, int64_t timeout_ns)
{
	int r = queue_wait_body(q, op, timeout_ns);
	if ((r == -EAGAIN || r == -ETIMEDOUT) && !op_produces(op) && q->efd >= 0)
		efd_arm(q);
	return r;
}

/* A parked waiter that was woken for an item and leaves without taking it
 * (a get whose buffer is too small for the message, say) hands the wake-up
 * on: only one waiter is woken per item (ec_prepare_one). */
static int leave_woken(_Atomic uint32_t *ec, bool woken, int r)
{
	if (woken && r < 0 && r != -ETIMEDOUT)
		ec_notify_n(ec, 1);
	return r;
}

/* Try, spin, then park on the eventcount of our direction until the op
 * succeeds, fails for good, or the deadline passes. */
static int queue_wait_body(struct shmq_queue *q, const struct op *op, int64_t timeout_ns)
{
	struct ring_block b;
	int r = attempt(q, op, &b);
	if (r != -EAGAIN || timeout_ns == 0) {
		if (r == -EAGAIN && q->efd >= 0) /* event-loop users never block */
			check_peers(q, op, &b);
		return r;
	}
	_Atomic uint32_t *ec = op_produces(op) ? &q->seg.hdr->ec_room : &q->seg.hdr->ec_data;
	_Atomic int32_t *learned = &q->spin_ns[!op_produces(op)];
	int64_t deadline = wait_deadline(timeout_ns);
	r = spin(q, op, &b, deadline, spin_budget(q, learned));
	spin_learn(learned, r != -EAGAIN);
	for (bool woken = false;; woken = true) {
		if (r != -EAGAIN)
			return leave_woken(ec, woken, r);
		check_peers(q, op, &b);
		uint32_t key = ec_prepare_one(ec);
		r = attempt(q, op, &b);
		if (r != -EAGAIN)
			return leave_woken(ec, woken, r);
		if (wait_expired(deadline))
			return -ETIMEDOUT;
		if (ec_wait(ec, key, wait_slice(deadline, CHECK_NS)) == 0)
			TEST_HOOK(SHMQ_HOOK_QUEUE_WOKEN);
		r = spin(q, op, &b, deadline, spin_budget(q, learned));
	}
}

/* ---------------------------------------------------------------- eventfd -- */

/* The queue looked empty: have the next put signal our eventfd, unless data
 * (or end of data) came in meanwhile, then signal it now. */
static void efd_arm(struct shmq_queue *q)
{
	ec_prepare(&q->seg.hdr->ec_data);
	if (queue_revents(q, SHMQ_POLLIN))
		efd_kick(q->efd);
}

int shmq_queue_eventfd(shmq_queue *q)
{
	if (!q)
		return -EINVAL;
	if (!(atomic_load(&q->roles) & SHMQ_RD))
		return -EBADF;
	if (q->efd >= 0)
		return q->efd;
	int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	int err = efd_register(&q->seg, q->slot, q->tag, fd);
	if (err < 0) {
		close(fd);
		return err;
	}
	q->efd = fd;
	efd_arm(q);
	return fd;
}

/* ------------------------------------------------------------- readiness -- */

int queue_revents(shmq_queue *q, int events)
{
	struct ring_block b;
	int rev = 0;
	if (events & SHMQ_POLLIN) {
		bool eof = role_gone(q, SHMQ_WR);
		if (ring_readable(&q->ring, &b) || eof)
			rev |= SHMQ_POLLIN;
		if (eof)
			rev |= SHMQ_POLLHUP;
	}
	if (events & SHMQ_POLLOUT) {
		bool gone = role_gone(q, SHMQ_RD);
		if (!ring_full(&q->ring, &b) || gone)
			rev |= SHMQ_POLLOUT;
		if (gone)
			rev |= SHMQ_POLLHUP;
	}
	return rev;
}

_Atomic uint32_t *queue_ec(shmq_queue *q, int event)
{
	return event == SHMQ_POLLIN ? &q->seg.hdr->ec_data : &q->seg.hdr->ec_room;
}

void queue_check(shmq_queue *q, int event)
{
	struct ring_block b;
	bool blocked = event == SHMQ_POLLIN ? !ring_readable(&q->ring, &b)
					    : ring_full(&q->ring, &b);
	struct op op = { .kind = event == SHMQ_POLLIN ? OP_GET : OP_PUT };
	if (blocked)
		check_peers(q, &op, &b);
}

static bool has_role(shmq_queue *q, int role)
{
	return atomic_load_explicit(&q->roles, memory_order_relaxed) & role;
}

/* Common checks of put-like calls: -EINVAL, -EBADF, -EMSGSIZE or 0. */
static int check_put(shmq_queue *q, const struct iovec *msgs, unsigned n)
{
	if (!q || !msgs || n == 0 || n > SHMQ_BATCH_MAX)
		return -EINVAL;
	if (!has_role(q, SHMQ_WR))
		return -EBADF;
	for (unsigned i = 0; i < n; i++) {
		if (!msgs[i].iov_base && msgs[i].iov_len)
			return -EINVAL;
		if (msgs[i].iov_len > q->ring.msg_max)
			return -EMSGSIZE;
	}
	return 0;
}

static int check_get(shmq_queue *q, const struct iovec *bufs, unsigned n)
{
	if (!q || !bufs || n == 0 || n > SHMQ_BATCH_MAX)
		return -EINVAL;
	if (!has_role(q, SHMQ_RD))
		return -EBADF;
	for (unsigned i = 0; i < n; i++)
		if (!bufs[i].iov_base && bufs[i].iov_len)
			return -EINVAL;
	return 0;
}

static int put_many(shmq_queue *q, const struct iovec *msgs, unsigned n, bool all,
		    int64_t timeout_ns)
{
	int err = check_put(q, msgs, n);
	if (err)
		return err;
	if (all) { /* a bulk that could never fit is a bad argument */
		uint64_t cells = 0;
		for (unsigned i = 0; i < n; i++)
			cells += seg_cells_for(msgs[i].iov_len, q->ring.cell_size);
		if (cells > q->ring.mask + 1)
			return -EINVAL;
	}
	struct op op = { .kind = OP_PUT, .msgs = (struct iovec *)msgs, .n = n, .all = all };
	return queue_wait(q, &op, timeout_ns);
}

static int get_many(shmq_queue *q, struct iovec *bufs, unsigned n, bool all, int64_t timeout_ns)
{
	int err = check_get(q, bufs, n);
	if (err)
		return err;
	struct op op = { .kind = OP_GET, .msgs = bufs, .n = n, .all = all };
	return queue_wait(q, &op, timeout_ns);
}

int shmq_put(shmq_queue *q, const void *buf, size_t len, int64_t timeout_ns)
{
	struct iovec one = { .iov_base = (void *)buf, .iov_len = len };
	int r = put_many(q, &one, 1, true, timeout_ns);
	return r < 0 ? r : 0;
}

ssize_t shmq_get(shmq_queue *q, void *buf, size_t cap, int64_t timeout_ns)
{
	struct iovec one = { .iov_base = buf, .iov_len = cap };
	int r = get_many(q, &one, 1, true, timeout_ns);
	return r < 0 ? r : (ssize_t)one.iov_len;
}

int shmq_put_bulk(shmq_queue *q, const struct iovec *msgs, unsigned n, int64_t timeout_ns)
{
	return put_many(q, msgs, n, true, timeout_ns);
}

int shmq_put_burst(shmq_queue *q, const struct iovec *msgs, unsigned n, int64_t timeout_ns)
{
	return put_many(q, msgs, n, false, timeout_ns);
}

int shmq_get_bulk(shmq_queue *q, struct iovec *msgs, unsigned n, int64_t timeout_ns)
{
	return get_many(q, msgs, n, true, timeout_ns);
}

int shmq_get_burst(shmq_queue *q, struct iovec *msgs, unsigned n, int64_t timeout_ns)
{
	return get_many(q, msgs, n, false, timeout_ns);
}

/* ------------------------------------------------------------- zero-copy -- */

static struct ring_span *slot_span(shmq_slot *slot)
{
	_Static_assert(sizeof(slot->priv) >= sizeof(struct ring_span), "slot too small");
	return (struct ring_span *)slot->priv;
}

int shmq_put_reserve(shmq_queue *q, size_t len, shmq_slot *slot, int64_t timeout_ns)
{
	if (!q || !slot)
		return -EINVAL;
	if (!has_role(q, SHMQ_WR))
		return -EBADF;
	if (len > q->ring.msg_max || len > q->ring.cell_size - CELL_HEAD)
		return -EMSGSIZE;
	struct op op = { .kind = OP_RESERVE, .len = len, .sp = slot_span(slot) };
	int r = queue_wait(q, &op, timeout_ns);
	if (r < 0)
		return r;
	slot->data = ring_payload(&q->ring, op.sp);
	slot->len = len;
	return 0;
}

int shmq_put_commit(shmq_queue *q, shmq_slot *slot)
{
	if (!q || !slot || !ring_span_held(&q->ring, slot_span(slot), q->tag, true) ||
	    slot->len > q->ring.cell_size - CELL_HEAD || slot->len > q->ring.msg_max)
		return -EINVAL;
	ring_commit(&q->ring, slot_span(slot), slot->len);
	efd_notify_data(&q->seg, 1);
	slot->data = NULL;
	return 0;
}

int shmq_get_peek(shmq_queue *q, shmq_slot *slot, int64_t timeout_ns)
{
	if (!q || !slot)
		return -EINVAL;
	if (!has_role(q, SHMQ_RD))
		return -EBADF;
	struct op op = { .kind = OP_PEEK, .sp = slot_span(slot), .peek_len = &slot->len };
	int r = queue_wait(q, &op, timeout_ns);
	if (r < 0)
		return r;
	slot->data = ring_payload(&q->ring, op.sp);
	return 0;
}

int shmq_get_release(shmq_queue *q, shmq_slot *slot)
{
	if (!q || !slot || !ring_span_held(&q->ring, slot_span(slot), q->tag, false))
		return -EINVAL;
	ring_release(&q->ring, slot_span(slot));
	ec_notify_n(&q->seg.hdr->ec_room, 1);
	slot->data = NULL;
	return 0;
}

/* -------------------------------------------------------- JoinableQueue -- */

/* Take one from a held count; false if it is zero. */
static bool held_take(_Atomic uint32_t *held)
{
	uint32_t h = atomic_load(held);
	do {
		if (h == 0)
			return false;
	} while (!atomic_compare_exchange_weak(held, &h, h - 1));
	return true;
}

int shmq_task_done(shmq_queue *q)
{
	if (!q || !q->joinable || q->slot < 0)
		return -EINVAL;
	/* Ours first; then, as Python counts task_done over the whole queue, a
	 * message another live handle got (handed over to us, say). */
	bool done = held_take(&q->seg.parts[q->slot].held);
	for (uint32_t i = 0; !done && i < q->seg.geom.nparts; i++)
		done = atomic_load(&q->seg.parts[i].id) && held_take(&q->seg.parts[i].held);
	if (!done)
		return -EINVAL;
	ec_notify(&q->seg.hdr->ec_done);
	return 0;
}

/* 0: every message put was done; -EOWNERDEAD: so, but some were lost since
 * the last report; -EPIPE: messages wait and no consumer is left; -EAGAIN. */
static int join_state(struct shmq_queue *q)
{
	if (!ring_drained(&q->ring))
		return role_gone(q, SHMQ_RD) ? -EPIPE : -EAGAIN;
	uint64_t lost;
	if (part_held(&q->seg.pt, &lost))
		return -EAGAIN;
	uint64_t seen = atomic_load(&q->lost_seen);
	if (lost > seen && atomic_compare_exchange_strong(&q->lost_seen, &seen, lost))
		return -EOWNERDEAD;
	return 0;
}

int shmq_join(shmq_queue *q, int64_t timeout_ns)
{
	if (!q || !q->joinable)
		return -EINVAL;
	_Atomic uint32_t *ec = &q->seg.hdr->ec_done;
	int64_t deadline = wait_deadline(timeout_ns), last_reap = wait_now();
	for (;;) {
		uint32_t key = ec_prepare(ec);
		int r = join_state(q);
		if (r != -EAGAIN)
			return r;
		if (timeout_ns == 0)
			return -EAGAIN;
		if (wait_expired(deadline))
			return -ETIMEDOUT;
		/* Consumers that died holding messages: reap them ourselves (not
		 * part_sweep, whose period other waiters may keep taking). */
		int64_t now = wait_now();
		if (now - last_reap >= CHECK_NS) {
			part_reap_dead(&q->seg.pt, SHMQ_RD);
			last_reap = now;
		}
		ec_wait(ec, key, wait_slice(deadline, CHECK_NS));
	}
}

/* ------------------------------------------------------------- snapshots -- */

int shmq_queue_stat(shmq_queue *q, struct shmq_stat *st)
{
	if (!q || !st)
		return -EINVAL;
	part_reap_dead(&q->seg.pt, 0);
	struct part_counts c = part_count(&q->seg.pt);
	*st = (struct shmq_stat){
		.size = q->seg.geom.size,
		.capacity = q->seg.geom.capacity,
		.cell_size = q->seg.geom.cell_size,
		.msg_max = q->seg.geom.msg_max,
		.flags = q->seg.geom.flags,
		.producers = c.producers,
		.consumers = c.consumers,
		.depth = ring_count(&q->ring),
	};
	ring_counters(&q->ring, &st->puts, &st->gets);
	if (q->joinable)
		st->held = part_held(&q->seg.pt, &st->lost);
	return 0;
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
	struct ring_block b;
	return q ? ring_full(&q->ring, &b) : -EINVAL;
}

size_t shmq_msg_max(shmq_queue *q)
{
	return q ? q->ring.msg_max : 0;
}

size_t shmq_capacity(shmq_queue *q)
{
	return q ? q->ring.mask + 1 : 0;
}

size_t shmq_cell_size(shmq_queue *q)
{
	return q ? q->ring.cell_size : 0;
}
