/* Go's channel semantics between processes, built the way Go's runtime
 * built them (runtime/chan.go, runtime/select.go before its lock-free
 * fast paths), from process-shared pthread mutexes and condvars in one
 * MAP_SHARED mapping made by the harness before it forks:
 *
 *   channel  a mutex, a ring of `buffer` message slots, a queue of waiting
 *            receivers and a queue of waiting senders (entries: waiter index
 *            and case index);
 *   waiter   one per process (Go's sudog + gopark/goready): a mutex, a condvar
 *            and a done flag to sleep on, a message buffer, and a `claimed`
 *            word (Go's selectDone): the first waker to CAS it 0 -> 1
 *            completes the wait, later ones drop the stale entry.
 *
 * send: a waiting receiver gets the message copied into its buffer and is
 * woken (the send returns: a receiver took it); else a free buffer slot takes
 * it; else the sender queues itself with the message and sleeps until a
 * receiver copied it out (unbuffered send blocks until a receiver took the
 * value). recv: a buffered message (and a waiting sender's message moves
 * into the freed slot, as in Go), else a waiting sender's message, else
 * (closed) end of data, else queue and sleep. select over receive cases:
 * lock every channel (index order), look at the cases starting after the one
 * that fired last (fair; Go shuffles instead), else queue on every channel,
 * unlock all, sleep, then lock all again to take the entries off the
 * channels that did not fire. close: wakes every waiter with -EPIPE; receivers
 * drain what is buffered first. Wake-ups happen after the channel lock is
 * released. The mutexes are not robust: a process killed inside an operation
 * deadlocks the others (the price of shmq's crash safety is not paid here). */
#include "../csp.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define GC_QMAX 64 /* queue entries per channel: waiters x cases on it */

struct gc_ent {
	int16_t w, k; /* waiter, its case index */
};

struct gc_q {
	uint32_t n;
	struct gc_ent e[GC_QMAX];
};

struct gc_chan {
	_Alignas(64) pthread_mutex_t lock;
	uint32_t cap, head, count; /* ring: count messages from head */
	int closed;
	struct gc_q recvq, sendq;
};

struct gc_waiter {
	_Alignas(64) pthread_mutex_t m;
	pthread_cond_t cv;
	int done;            /* under m: the wait is over */
	_Atomic int claimed; /* 0 while waiting: a waker CASes it to 1 */
	int fired;           /* the case that completed it */
	int rc;              /* 0, or -EPIPE (closed) */
	int64_t len;         /* the message in its buffer */
};

struct gc_shm {
	struct gc_chan ch[CSP_MAX_CHANS];
	struct gc_waiter w[CSP_MAX_PROCS];
	_Alignas(64) char data[]; /* waiter buffers, then the rings */
};

struct gc {
	struct gc_shm *s;
	size_t map_len, slot; /* slot: one message's bytes (64-byte multiple) */
	int nchan, nwait;
	int self;       /* this process's waiter (set in the worker) */
	int last_fired; /* select: the channel that fired last */
};

static char *wbuf(struct gc *x, int w)
{
	return x->s->data + (size_t)w * x->slot;
}

/* Slot j of channel ci's ring: an 8-byte length, then the message. */
static char *rslot(struct gc *x, int ci, uint32_t j)
{
	size_t per = 8 + x->slot, cap = x->s->ch[0].cap;
	return x->s->data + (size_t)x->nwait * x->slot + ((size_t)ci * cap + j) * per;
}

static void gc_teardown(void *ctx)
{
	struct gc *x = ctx;
	if (x->s) {
		for (int i = 0; i < x->nchan; i++)
			pthread_mutex_destroy(&x->s->ch[i].lock);
		for (int i = 0; i < x->nwait; i++) {
			pthread_cond_destroy(&x->s->w[i].cv);
			pthread_mutex_destroy(&x->s->w[i].m);
		}
		munmap(x->s, x->map_len);
	}
	free(x);
}

static int gc_setup(const struct csp_case *c, void **ctx)
{
	struct gc *x = calloc(1, sizeof(*x));
	if (!x)
		return -ENOMEM;
	x->slot = (c->size + 63) & ~(size_t)63;
	x->nwait = c->nproc;
	x->last_fired = -1;
	int nchan = csp_nchans(c);
	x->map_len = sizeof(struct gc_shm) + (size_t)x->nwait * x->slot +
		     (size_t)nchan * c->buffer * (8 + x->slot);
	void *p = mmap(NULL, x->map_len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		free(x);
		return -errno;
	}
	x->s = p;
	pthread_mutexattr_t ma;
	pthread_condattr_t ca;
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
	pthread_condattr_init(&ca);
	pthread_condattr_setpshared(&ca, PTHREAD_PROCESS_SHARED);
	int e = 0;
	for (int i = 0; !e && i < nchan; i++) {
		e = pthread_mutex_init(&x->s->ch[i].lock, &ma);
		x->s->ch[i].cap = c->buffer;
		x->nchan = e ? i : i + 1;
	}
	if (e)
		x->nwait = 0;
	for (int i = 0; !e && i < x->nwait; i++) {
		e = pthread_mutex_init(&x->s->w[i].m, &ma);
		if (!e && (e = pthread_cond_init(&x->s->w[i].cv, &ca)) != 0)
			pthread_mutex_destroy(&x->s->w[i].m);
		x->nwait = e ? i : x->nwait;
	}
	pthread_condattr_destroy(&ca);
	pthread_mutexattr_destroy(&ma);
	if (e) {
		gc_teardown(x);
		return -e;
	}
	*ctx = x;
	return 0;
}

/* ---------------------------------------------------- waiting, waking -- */

static int enq(struct gc_q *q, int w, int k)
{
	if (q->n == GC_QMAX)
		return -ENOSPC;
	q->e[q->n++] = (struct gc_ent){ (int16_t)w, (int16_t)k };
	return 0;
}

/* Pop the first waiter that can still be completed; an entry whose waiter
 * was completed through another channel (a select) is dropped. -1: none. */
static int deq(struct gc *x, struct gc_q *q, int *k)
{
	while (q->n) {
		struct gc_ent e = q->e[0];
		memmove(q->e, q->e + 1, sizeof(q->e[0]) * --q->n);
		int expect = 0;
		if (atomic_compare_exchange_strong(&x->s->w[e.w].claimed, &expect, 1)) {
			*k = e.k;
			return e.w;
		}
	}
	return -1;
}

static void remove_waiter(struct gc_q *q, int w)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < q->n; i++)
		if (q->e[i].w != w)
			q->e[j++] = q->e[i];
	q->n = j;
}

/* Before queueing: a fresh wait. Under the channel lock(s). */
static void arm(struct gc_waiter *me)
{
	me->done = 0;
	me->rc = 0;
	atomic_store(&me->claimed, 0);
}

static void park(struct gc_waiter *me)
{
	pthread_mutex_lock(&me->m);
	while (!me->done)
		pthread_cond_wait(&me->cv, &me->m);
	pthread_mutex_unlock(&me->m);
}

static void wake(struct gc *x, int w)
{
	struct gc_waiter *o = &x->s->w[w];
	pthread_mutex_lock(&o->m);
	o->done = 1;
	pthread_cond_signal(&o->cv);
	pthread_mutex_unlock(&o->m);
}

/* --------------------------------------------------------- operations -- */

static int gc_send(void *ctx, int ci, const void *buf, size_t len)
{
	struct gc *x = ctx;
	struct gc_chan *c = &x->s->ch[ci];
	struct gc_waiter *me = &x->s->w[x->self];
	if (len > x->slot)
		return -EMSGSIZE;
	pthread_mutex_lock(&c->lock);
	if (c->closed) {
		pthread_mutex_unlock(&c->lock);
		return -EPIPE;
	}
	int k, w = deq(x, &c->recvq, &k);
	if (w >= 0) { /* hand it to a waiting receiver */
		struct gc_waiter *o = &x->s->w[w];
		memcpy(wbuf(x, w), buf, len);
		o->len = (int64_t)len;
		o->fired = k;
		o->rc = 0;
		pthread_mutex_unlock(&c->lock);
		wake(x, w);
		return 0;
	}
	if (c->count < c->cap) {
		char *s = rslot(x, ci, (c->head + c->count) % c->cap);
		int64_t l = (int64_t)len;
		memcpy(s, &l, 8);
		memcpy(s + 8, buf, len);
		c->count++;
		pthread_mutex_unlock(&c->lock);
		return 0;
	}
	arm(me);
	memcpy(wbuf(x, x->self), buf, len);
	me->len = (int64_t)len;
	int rc = enq(&c->sendq, x->self, 0);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	park(me); /* until a receiver took it */
	return me->rc;
}

/* Receive without waiting, under c's lock: the length, -EPIPE (closed and
 * drained), -EAGAIN (nothing); *woke: a sender to wake after unlocking. */
static ssize_t try_recv(struct gc *x, int ci, void *buf, size_t cap, int *woke)
{
	struct gc_chan *c = &x->s->ch[ci];
	int k, w;
	*woke = -1;
	if (c->count) {
		char *s = rslot(x, ci, c->head);
		int64_t l;
		memcpy(&l, s, 8);
		if ((size_t)l > cap)
			return -EMSGSIZE;
		memcpy(buf, s + 8, (size_t)l);
		c->head = (c->head + 1) % c->cap;
		c->count--;
		if ((w = deq(x, &c->sendq, &k)) >= 0) { /* its message into the freed slot */
			struct gc_waiter *o = &x->s->w[w];
			char *t = rslot(x, ci, (c->head + c->count) % c->cap);
			memcpy(t, &o->len, 8);
			memcpy(t + 8, wbuf(x, w), (size_t)o->len);
			c->count++;
			o->rc = 0;
			*woke = w;
		}
		return (ssize_t)l;
	}
	if ((w = deq(x, &c->sendq, &k)) >= 0) { /* unbuffered: take it from the sender */
		struct gc_waiter *o = &x->s->w[w];
		*woke = w;
		if ((size_t)o->len > cap) {
			o->rc = -EMSGSIZE;
			return -EMSGSIZE;
		}
		memcpy(buf, wbuf(x, w), (size_t)o->len);
		o->rc = 0;
		return (ssize_t)o->len;
	}
	return c->closed ? -EPIPE : -EAGAIN;
}

/* What a parked reader was handed: the writer's error, or the message it
 * copied into our buffer. */
static ssize_t delivered(struct gc *x, struct gc_waiter *me, void *buf, size_t cap)
{
	if (me->rc < 0)
		return me->rc;
	if ((size_t)me->len > cap)
		return -EMSGSIZE;
	memcpy(buf, wbuf(x, x->self), (size_t)me->len);
	return (ssize_t)me->len;
}

static ssize_t gc_recv(void *ctx, int ci, void *buf, size_t cap)
{
	struct gc *x = ctx;
	struct gc_chan *c = &x->s->ch[ci];
	struct gc_waiter *me = &x->s->w[x->self];
	int woke;
	pthread_mutex_lock(&c->lock);
	ssize_t r = try_recv(x, ci, buf, cap, &woke);
	if (r != -EAGAIN) {
		pthread_mutex_unlock(&c->lock);
		if (woke >= 0)
			wake(x, woke);
		return r;
	}
	arm(me);
	int rc = enq(&c->recvq, x->self, 0);
	pthread_mutex_unlock(&c->lock);
	if (rc < 0)
		return rc;
	park(me);
	return delivered(x, me, buf, cap);
}

static int gc_close(void *ctx, int ci)
{
	struct gc *x = ctx;
	struct gc_chan *c = &x->s->ch[ci];
	int list[2 * GC_QMAX], n = 0, k, w;
	pthread_mutex_lock(&c->lock);
	if (!c->closed) {
		c->closed = 1;
		while ((w = deq(x, &c->recvq, &k)) >= 0 || (w = deq(x, &c->sendq, &k)) >= 0) {
			x->s->w[w].rc = -EPIPE;
			x->s->w[w].fired = k;
			list[n++] = w;
		}
	}
	pthread_mutex_unlock(&c->lock);
	for (int i = 0; i < n; i++)
		wake(x, list[i]);
	return 0;
}

static ssize_t gc_select(void *ctx, const int *chs, int n, void *buf, size_t cap, int *fired)
{
	struct gc *x = ctx;
	struct gc_waiter *me = &x->s->w[x->self];
	*fired = -1;
	if (n < 1 || n > CSP_MAX_CHANS)
		return -EINVAL;
	/* Lock order: channel index, each channel once. */
	bool in[CSP_MAX_CHANS] = { false };
	for (int i = 0; i < n; i++)
		in[chs[i]] = true;
	int start = 0; /* the case after the channel that fired last */
	for (int i = 0; i < n; i++)
		if (chs[i] == x->last_fired)
			start = i + 1 == n ? 0 : i + 1;
	for (int ci = 0; ci < CSP_MAX_CHANS; ci++)
		if (in[ci])
			pthread_mutex_lock(&x->s->ch[ci].lock);
	ssize_t r = -EAGAIN;
	int woke = -1, hit = -1;
	for (int j = 0; j < n && r == -EAGAIN; j++) {
		hit = (start + j) % n;
		r = try_recv(x, chs[hit], buf, cap, &woke);
	}
	int rc = 0;
	if (r == -EAGAIN) {
		arm(me);
		for (int i = 0; i < n && rc == 0; i++)
			rc = enq(&x->s->ch[chs[i]].recvq, x->self, i);
		if (rc < 0)
			for (int i = 0; i < n; i++)
				remove_waiter(&x->s->ch[chs[i]].recvq, x->self);
	}
	for (int ci = CSP_MAX_CHANS - 1; ci >= 0; ci--)
		if (in[ci])
			pthread_mutex_unlock(&x->s->ch[ci].lock);
	if (rc < 0)
		return rc;
	if (r != -EAGAIN) {
		if (woke >= 0)
			wake(x, woke);
		*fired = hit;
		x->last_fired = chs[hit];
		return r;
	}
	park(me);
	/* Off the queues of the channels that did not fire. */
	for (int ci = 0; ci < CSP_MAX_CHANS; ci++)
		if (in[ci]) {
			pthread_mutex_lock(&x->s->ch[ci].lock);
			remove_waiter(&x->s->ch[ci].recvq, x->self);
			pthread_mutex_unlock(&x->s->ch[ci].lock);
		}
	*fired = me->fired;
	x->last_fired = chs[me->fired];
	return delivered(x, me, buf, cap);
}

static int gc_worker(void *ctx, struct csp_worker *w)
{
	struct gc *x = ctx;
	x->self = w->id;
	return csp_worker_run(w, ctx, gc_send, gc_recv, gc_close, gc_select);
}

static const char *gc_models(const struct csp_case *c)
{
	switch (c->kind) {
	case CSP_ALT_TPUT:
	case CSP_ALT_RTT:
		return "select over receive cases as Go's runtime did before lock-free select: lock "
		       "all channels, check (rotating start), else queue on all, sleep on the "
		       "process's condvar, lock all to dequeue";
	default:
		return c->buffer ? "Go chan, buffer 64: a ring under the channel mutex; a full "
				   "channel queues the sender (process-shared mutex + condvar per "
				   "waiter, not robust)"
				 : "Go chan, unbuffered: direct hand-off to a queued receiver, else the "
				   "sender queues and sleeps until a receiver copied its value "
				   "(process-shared mutex + condvar per waiter, not robust)";
	}
}

const struct csp_peer csp_gochan = {
	.name = "csp-gochan",
	.label = "Go-style chan (mutex+cv)",
	.kinds = CSP_KIND(CSP_RTT) | CSP_KIND(CSP_TPUT) | CSP_KIND(CSP_ALT_TPUT) |
		 CSP_KIND(CSP_ALT_RTT),
	.setup = gc_setup,
	.worker = gc_worker,
	.teardown = gc_teardown,
	.models = gc_models,
};
