/* Queue (Queue, SimpleQueue, JoinableQueue), Connection (Pipe) and
 * wait_any over libshmq queues and pipes.
 *
 * Roles, as multiprocessing users expect them: every process holding a Queue
 * is a consumer for as long as it holds it (so a put never fails for want of
 * a reader, as in multiprocessing), and becomes a producer at its first put;
 * a forked child drops the producer role it inherited (_after_fork). So end
 * of data, seen by iteration, comes once every process that put has closed
 * the queue or exited, or died. get() itself keeps multiprocessing's
 * semantics: at end of data it waits for its timeout (a new producer may
 * come). */
#include "_shmq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

/* Queues made here: 4 MiB of 64-byte cells, messages of up to 64 KiB in the
 * ring; a bigger one goes into an object of the queue's heap and the ring
 * carries its name (TAG_BIG), so an object of any size passes. */
#define PY_MSG_MAX (64u << 10)
#define PY_CAPACITY (1u << 16)
#define STACK_MSG 4096  /* messages got up to this size land on the stack */
#define BATCH 256       /* put_many / get_many: messages per ring reservation */
#define BATCH_CELL 512  /* get_many: buffer per message (a bigger one comes alone) */
#define EOF_NAP_NS (20 * 1000 * 1000)

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t left_ns(int64_t deadline)
{
	int64_t left = deadline - now_ns();
	return left > 0 ? left : 0;
}

/* The deadline of a wait of ns, taken when the wait first has to block (the
 * clock costs as much as a put that does not). */
static int64_t deadline_of(int64_t *deadline, int64_t ns)
{
	if (!*deadline)
		*deadline = now_ns() + ns;
	return *deadline;
}

/* A nap of up to ns, interruptible: 0, or -1 with a signal handler's exception. */
static int nap(int64_t ns)
{
	struct timespec ts = { ns / 1000000000, ns % 1000000000 };
	Py_BEGIN_ALLOW_THREADS;
	nanosleep(&ts, NULL);
	Py_END_ALLOW_THREADS;
	return PyErr_CheckSignals();
}

/* ---------------------------------------------------------------- Queue -- */

typedef struct {
	PyObject_HEAD
	shmq_queue *rd;   /* consumer role; also joins, stats, eventfd */
	shmq_queue *wr;   /* producer role, opened at this process's first put */
	shmq_sem *slots;  /* maxsize > 0: free places, as multiprocessing counts them */
	PyObject *heap;   /* the heap of slots and big messages (or None) */
	uint32_t maxsize;
	size_t msg_max;
	int joinable;
	int closed;
} QueueObject;

static PyTypeObject Queue_Type;

static PyObject *Queue_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "fd", "maxsize", "msg_max", "joinable", "heap", "slots",
				 "capacity", NULL };
	int fd = -1, joinable = 0;
	long long maxsize = 0;
	unsigned int msg_max = 0, capacity = 0;
	PyObject *heap = Py_None;
	const char *slots = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|iLIpOzI:Queue", names, &fd, &maxsize,
					 &msg_max, &joinable, &heap, &slots, &capacity))
		return NULL;
	if (maxsize < 0 || maxsize > INT32_MAX)
		maxsize = 0; /* multiprocessing: <= 0 is unbounded */
	if ((maxsize || slots) && !PyObject_TypeCheck(heap, &Heap_Type)) {
		PyErr_SetString(PyExc_TypeError, "a bounded Queue needs heap=Heap");
		return NULL;
	}
	if (heap != Py_None && !PyObject_TypeCheck(heap, &Heap_Type)) {
		PyErr_SetString(PyExc_TypeError, "heap must be a Heap or None");
		return NULL;
	}
	QueueObject *self = (QueueObject *)type->tp_alloc(type, 0);
	if (!self)
		return NULL;
	self->maxsize = (uint32_t)maxsize;
	self->joinable = joinable;
	int r;
	if (fd < 0) {
		struct shmq_queue_attr a;
		shmq_queue_attr_init(&a);
		a.msg_max = msg_max ? msg_max : PY_MSG_MAX;
		a.capacity = capacity ? capacity : PY_CAPACITY;
		a.flags = SHMQ_NOROLES | (joinable ? SHMQ_JOINABLE : 0);
		shmq_queue *h;
		r = shmq_queue_create(NULL, &a, &h);
		if (r == 0) {
			r = shmq_queue_open_fd(shmq_queue_fd(h), SHMQ_RD, &self->rd);
			shmq_queue_close(h);
		}
	} else {
		r = shmq_queue_open_fd(fd, SHMQ_RD, &self->rd);
	}
	if (heap != Py_None)
		self->heap = Py_NewRef(heap);
	if (r == 0 && maxsize) {
		shmq_heap *h = ((HeapObject *)heap)->heap;
		r = slots ? shmq_sem_open(h, slots, &self->slots)
			  : shmq_sem_create(h, NULL, (uint32_t)maxsize, (uint32_t)maxsize, 0,
					    &self->slots);
	}
	if (r < 0) {
		Py_DECREF(self);
		return raise_errno(r);
	}
	self->msg_max = shmq_msg_max(self->rd);
	return (PyObject *)self;
}

static void Queue_dealloc(QueueObject *self)
{
	if (self->wr)
		shmq_queue_close(self->wr);
	if (self->rd)
		shmq_queue_close(self->rd);
	if (self->slots)
		shmq_sem_close(self->slots);
	Py_XDECREF(self->heap);
	Py_TYPE(self)->tp_free(self);
}

static int check_open(QueueObject *q)
{
	if (!q->closed)
		return 0;
	PyErr_Format(PyExc_ValueError, "Queue %R is closed", (PyObject *)q);
	return -1;
}

static int ensure_producer(QueueObject *q)
{
	if (q->wr)
		return 0;
	int r = shmq_queue_open_fd(shmq_queue_fd(q->rd), SHMQ_WR, &q->wr);
	return r < 0 ? fail_errno(r) : 0;
}

/* Take one free place (bounded queues). 0, or -1 with queue.Full. */
static int take_slot(QueueObject *q, int64_t ns)
{
	int r = shmq_sem_acquire(q->slots, 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_sem_acquire(q->slots, ns));
		if (interrupted(r < 0)) {
			if (r == 0)
				shmq_sem_release(q->slots, 1);
			return -1;
		}
	}
	if (r == -EAGAIN || r == -ETIMEDOUT) {
		PyErr_SetNone(refs.full);
		return -1;
	}
	return r < 0 ? fail_errno(r) : 0;
}

static void give_slots(QueueObject *q, uint32_t n)
{
	if (q->slots && n)
		shmq_sem_release(q->slots, n);
}

static int put_error(QueueObject *q, int r, size_t len)
{
	if (r == -EAGAIN || r == -ETIMEDOUT)
		PyErr_SetNone(refs.full);
	else if (r == -EMSGSIZE)
		PyErr_Format(PyExc_ValueError,
			     "an object of %zu bytes (pickled) is larger than the queue accepts (%zu)",
			     len, q->msg_max);
	else
		raise_errno(r);
	return -1;
}

/* Put one message of len bytes at buf. 0, or -1 with an exception. */
static int put_raw(QueueObject *q, const void *buf, size_t len, int64_t ns)
{
	if (len > q->msg_max)
		return put_error(q, -EMSGSIZE, len);
	int64_t deadline = 0;
	if (q->slots) {
		deadline_of(&deadline, ns);
		if (take_slot(q, ns) < 0)
			return -1;
	}
	int r = shmq_put(q->wr, buf, len, 0);
	if (r == -EAGAIN && ns > 0) {
		int64_t left = left_ns(deadline_of(&deadline, ns));
		BLOCKING(r, shmq_put(q->wr, buf, len, left));
		if (interrupted(r < 0)) {
			if (r < 0)
				give_slots(q, 1);
			return -1;
		}
	}
	if (r < 0) {
		give_slots(q, 1);
		return put_error(q, r, len);
	}
	return 0;
}

/* A message too big for the ring: into a named object of the queue's heap,
 * which the getter removes. Names are unique (pid, then a count, retried if
 * a dead process of the same pid left one). A producer or consumer killed
 * between the object's creation and its removal leaves it in the heap,
 * which goes away with the queue's last process. */
#define BIG_NAME 48

static int big_store(QueueObject *q, const struct encoded *e, char *name)
{
	static _Atomic unsigned long seq;
	shmq_heap *h = ((HeapObject *)q->heap)->heap;
	shmq_array *a;
	int r;
	do {
		snprintf(name, BIG_NAME, "shmq.big.%ld.%lu", (long)getpid(), ++seq);
		r = shmq_array_create(h, name, encoded_len(e), SHMQ_NOLOCK, &a);
	} while (r == -EEXIST);
	if (r < 0)
		return fail_errno(r);
	encoded_copy(e, shmq_array_data(a));
	shmq_array_close(a);
	return 0;
}

static int put_big(QueueObject *q, const struct encoded *e, int64_t ns)
{
	if (!q->heap)
		return put_error(q, -EMSGSIZE, encoded_len(e));
	char msg[1 + BIG_NAME];
	if (big_store(q, e, msg + 1) < 0)
		return -1;
	msg[0] = TAG_BIG;
	if (put_raw(q, msg, 1 + strlen(msg + 1), ns) == 0)
		return 0;
	shmq_heap_remove(((HeapObject *)q->heap)->heap, msg + 1);
	return -1;
}

/* The object a message got from the queue holds (fetching a big one). */
static PyObject *decode_msg(QueueObject *q, const char *buf, size_t len)
{
	if (len < 2 || buf[0] != TAG_BIG || !q->heap)
		return decode(buf, len);
	char name[BIG_NAME];
	if (len - 1 >= sizeof(name)) {
		PyErr_SetString(PyExc_ValueError, "shmq: a corrupted big-message name");
		return NULL;
	}
	memcpy(name, buf + 1, len - 1);
	name[len - 1] = 0;
	shmq_heap *h = ((HeapObject *)q->heap)->heap;
	shmq_array *a;
	int r = shmq_array_open(h, name, &a);
	if (r < 0)
		return raise_errno(r);
	shmq_heap_remove(h, name); /* freed at our close */
	PyObject *obj = decode(shmq_array_data(a), shmq_array_size(a));
	shmq_array_close(a);
	return obj;
}

static int put_obj(QueueObject *q, PyObject *obj, int64_t ns)
{
	if (check_open(q) < 0 || ensure_producer(q) < 0)
		return -1;
	struct encoded e;
	if (encode(obj, &e) < 0)
		return -1;
	struct flat f;
	int r;
	if (encoded_len(&e) > q->msg_max) {
		r = put_big(q, &e, ns);
	} else if ((r = flatten_encoded(&e, &f)) == 0) {
		r = put_raw(q, f.p, f.len, ns);
		flat_release(&f);
	}
	encoded_release(&e);
	return r;
}

static const char *const put_names[] = { "obj", "block", "timeout", NULL };

static PyObject *Queue_put(QueueObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	PyObject *v[3] = { NULL, NULL, NULL };
	int64_t ns;
	if (parse_args("put", args, nargs, kwnames, put_names, 1, v) < 0 ||
	    timeout_of(v[1], v[2], &ns) < 0 || put_obj(self, v[0], ns) < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Queue_put_nowait(QueueObject *self, PyObject *obj)
{
	if (put_obj(self, obj, 0) < 0)
		return NULL;
	Py_RETURN_NONE;
}

/* A message got, on the stack or in a malloc'ed buffer. */
struct got {
	char stack[STACK_MSG];
	char *buf; /* stack or malloc'ed */
	ssize_t len;
};

static void got_release(struct got *g)
{
	if (g->buf != g->stack)
		free(g->buf);
}

/* Get one message into g, waiting up to ns. eof_ends: at end of data return
 * -EPIPE (iteration); else keep multiprocessing's semantics and wait out the
 * timeout for a new producer. Returns the length, or -1 with an exception
 * (queue.Empty at the timeout), or -EPIPE. */
static ssize_t get_raw(QueueObject *q, struct got *g, int64_t ns, bool eof_ends)
{
	int64_t deadline = 0;
	g->buf = g->stack;
	for (;;) {
		ssize_t r = shmq_get(q->rd, g->buf, STACK_MSG, 0);
		if (r == -EAGAIN && ns > 0) {
			int64_t left = left_ns(deadline_of(&deadline, ns));
			BLOCKING(r, shmq_get(q->rd, g->buf, STACK_MSG, left));
			if (interrupted(r < 0)) {
				/* A message got while the handler ran stays ours. */
				if (r >= 0)
					return g->len = r;
				return -1;
			}
		}
		if (r == -EMSGSIZE) { /* larger than the stack: it waits for us */
			g->buf = malloc(q->msg_max);
			if (!g->buf) {
				g->buf = g->stack;
				PyErr_NoMemory();
				return -1;
			}
			r = shmq_get(q->rd, g->buf, q->msg_max, 0);
			if (r == -EAGAIN) { /* another consumer took it first */
				free(g->buf);
				g->buf = g->stack;
				continue;
			}
		}
		if (r >= 0)
			return g->len = r;
		if (r == -EPIPE && eof_ends)
			return -EPIPE;
		if (r == -EPIPE && ns > 0 && left_ns(deadline_of(&deadline, ns)) > 0) {
			int64_t left = left_ns(deadline);
			if (nap(left < EOF_NAP_NS ? left : EOF_NAP_NS) < 0)
				return -1;
			continue;
		}
		if (r == -EAGAIN || r == -ETIMEDOUT || r == -EPIPE)
			PyErr_SetNone(refs.empty);
		else
			raise_errno((int)r);
		return -1;
	}
}

static PyObject *get_obj(QueueObject *q, int64_t ns)
{
	if (check_open(q) < 0)
		return NULL;
	struct got g;
	if (get_raw(q, &g, ns, false) < 0)
		return NULL;
	give_slots(q, 1);
	PyObject *obj = decode_msg(q, g.buf, (size_t)g.len);
	got_release(&g);
	return obj;
}

static const char *const get_names[] = { "block", "timeout", NULL };

static PyObject *Queue_get(QueueObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	PyObject *v[2] = { NULL, NULL };
	int64_t ns;
	if (parse_args("get", args, nargs, kwnames, get_names, 0, v) < 0 ||
	    timeout_of(v[0], v[1], &ns) < 0)
		return NULL;
	return get_obj(self, ns);
}

static PyObject *Queue_get_nowait(QueueObject *self, PyObject *unused)
{
	return get_obj(self, 0);
}

/* Iteration: the next item, waiting as long as it takes; the end once every
 * producer is gone and the queue is drained. */
static PyObject *Queue_iternext(QueueObject *self)
{
	if (check_open(self) < 0)
		return NULL;
	struct got g;
	ssize_t r = get_raw(self, &g, PY_FOREVER_NS, true);
	if (r == -EPIPE || r == -1)
		return NULL; /* StopIteration, or the exception */
	give_slots(self, 1);
	PyObject *obj = decode_msg(self, g.buf, (size_t)g.len);
	got_release(&g);
	return obj;
}

/* Put every item of an iterable, in order, BATCH per ring reservation. On
 * an error (queue.Full at the timeout, an unpicklable item) the items
 * before the failing one are queued, the rest not. */
static PyObject *Queue_put_many(QueueObject *self, PyObject *const *args, Py_ssize_t nargs,
				PyObject *kwnames)
{
	static const char *const names[] = { "items", "block", "timeout", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	int64_t ns;
	if (parse_args("put_many", args, nargs, kwnames, names, 1, v) < 0 ||
	    timeout_of(v[1], v[2], &ns) < 0 || check_open(self) < 0 || ensure_producer(self) < 0)
		return NULL;
	PyObject *seq = PySequence_Fast(v[0], "put_many() needs an iterable");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject **items = PySequence_Fast_ITEMS(seq);
	int64_t deadline = now_ns() + ns;
	if (self->slots) { /* places are counted one by one */
		for (Py_ssize_t i = 0; i < n; i++)
			if (put_obj(self, items[i], ns ? left_ns(deadline) : 0) < 0)
				goto fail;
		Py_DECREF(seq);
		Py_RETURN_NONE;
	}
	struct encoded e[BATCH];
	struct iovec iov[BATCH];
	for (Py_ssize_t at = 0; at < n;) {
		unsigned k = 0;
		size_t bytes = 0;
		bool big = false;
		for (; k < BATCH && at + k < n; k++) {
			if (encode(items[at + k], &e[k]) < 0)
				break;
			if (encoded_len(&e[k]) > self->msg_max) { /* it goes alone, after these */
				encoded_release(&e[k]);
				big = true;
				break;
			}
			bytes += encoded_len(&e[k]);
		}
		char *flat = PyErr_Occurred() ? NULL : malloc(bytes ? bytes : 1);
		if (flat) {
			char *p = flat;
			for (unsigned i = 0; i < k; i++) {
				encoded_copy(&e[i], p);
				iov[i] = (struct iovec){ p, encoded_len(&e[i]) };
				p += encoded_len(&e[i]);
			}
		} else if (!PyErr_Occurred()) {
			PyErr_NoMemory();
		}
		for (unsigned i = 0; i < k; i++)
			encoded_release(&e[i]);
		unsigned done = 0;
		while (flat && done < k) {
			int r = shmq_put_burst(self->wr, iov + done, k - done, 0);
			if (r == -EAGAIN && left_ns(deadline) > 0) {
				int64_t left = left_ns(deadline);
				BLOCKING(r, shmq_put_burst(self->wr, iov + done, k - done, left));
				if (interrupted(r < 0)) {
					done += r > 0 ? (unsigned)r : 0;
					break;
				}
			}
			if (r < 0) {
				put_error(self, r, 0);
				break;
			}
			done += (unsigned)r;
		}
		free(flat);
		if (PyErr_Occurred())
			goto fail;
		at += k;
		if (big && put_obj(self, items[at++], left_ns(deadline)) < 0)
			goto fail;
	}
	Py_DECREF(seq);
	Py_RETURN_NONE;
fail:
	Py_DECREF(seq);
	return NULL;
}

/* Up to n items: waits (as get does) for the first only. */
static PyObject *Queue_get_many(QueueObject *self, PyObject *const *args, Py_ssize_t nargs,
				PyObject *kwnames)
{
	static const char *const names[] = { "n", "block", "timeout", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	int64_t ns;
	if (parse_args("get_many", args, nargs, kwnames, names, 1, v) < 0 ||
	    timeout_of(v[1], v[2], &ns) < 0)
		return NULL;
	Py_ssize_t n = PyLong_AsSsize_t(v[0]);
	if (n == -1 && PyErr_Occurred())
		return NULL;
	if (n < 1) {
		PyErr_SetString(PyExc_ValueError, "get_many() needs n >= 1");
		return NULL;
	}
	PyObject *first = get_obj(self, ns);
	if (!first)
		return NULL;
	PyObject *list = PyList_New(1);
	if (!list) {
		Py_DECREF(first);
		return NULL;
	}
	PyList_SET_ITEM(list, 0, first);
	unsigned want = n - 1 < BATCH ? (unsigned)(n - 1) : BATCH;
	char *bufs = want ? malloc((size_t)want * BATCH_CELL) : NULL;
	struct iovec iov[BATCH];
	while (bufs && PyList_GET_SIZE(list) < n) {
		Py_ssize_t more = n - PyList_GET_SIZE(list);
		unsigned k = more < want ? (unsigned)more : want;
		for (unsigned i = 0; i < k; i++)
			iov[i] = (struct iovec){ bufs + (size_t)i * BATCH_CELL, BATCH_CELL };
		int r = shmq_get_burst(self->rd, iov, k, 0);
		if (r == -EMSGSIZE) { /* a big one: alone */
			PyObject *obj = get_obj(self, 0);
			if (!obj || PyList_Append(list, obj) < 0) {
				Py_XDECREF(obj);
				PyErr_Clear(); /* Empty: another consumer took it */
				break;
			}
			Py_DECREF(obj);
			continue;
		}
		if (r <= 0)
			break;
		give_slots(self, (uint32_t)r);
		for (int i = 0; i < r; i++) {
			PyObject *obj = decode_msg(self, iov[i].iov_base, iov[i].iov_len);
			if (!obj || PyList_Append(list, obj) < 0) {
				Py_XDECREF(obj);
				free(bufs);
				Py_DECREF(list);
				return NULL;
			}
			Py_DECREF(obj);
		}
		if ((unsigned)r < k)
			break;
	}
	free(bufs);
	return list;
}

static PyObject *Queue_qsize(QueueObject *self, PyObject *unused)
{
	ssize_t r = shmq_qsize(self->rd);
	return r < 0 ? raise_errno((int)r) : PyLong_FromSsize_t(r);
}

static PyObject *Queue_empty(QueueObject *self, PyObject *unused)
{
	return PyBool_FromLong(shmq_empty(self->rd) == 1);
}

static PyObject *Queue_full(QueueObject *self, PyObject *unused)
{
	if (self->slots)
		return PyBool_FromLong(shmq_sem_value(self->slots) == 0);
	return PyBool_FromLong(shmq_full(self->rd) == 1);
}

/* multiprocessing's close(): this process puts and gets no more. */
static PyObject *Queue_close(QueueObject *self, PyObject *unused)
{
	if (!self->closed) {
		self->closed = 1;
		if (self->wr) {
			shmq_queue_close(self->wr);
			self->wr = NULL;
		}
		shmq_queue_shutdown(self->rd, SHMQ_RDWR);
	}
	Py_RETURN_NONE;
}

/* In a forked child: drop the producer role it inherited. */
static PyObject *Queue_after_fork(QueueObject *self, PyObject *unused)
{
	if (self->wr) {
		shmq_queue_close(self->wr);
		self->wr = NULL;
	}
	Py_RETURN_NONE;
}

static PyObject *Queue_task_done(QueueObject *self, PyObject *unused)
{
	int r = shmq_task_done(self->rd);
	if (r == -EINVAL) {
		PyErr_SetString(PyExc_ValueError, self->joinable
							  ? "task_done() called too many times"
							  : "task_done() of a queue that is not joinable");
		return NULL;
	}
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_NONE;
}

static PyObject *Queue_join(QueueObject *self, PyObject *const *args, Py_ssize_t nargs,
			    PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns;
	if (parse_args("join", args, nargs, kwnames, names, 0, v) < 0 || timeout_ns(v[0], &ns) < 0)
		return NULL;
	int r;
	BLOCKING(r, shmq_join(self->rd, ns));
	if (interrupted(r < 0 && r != -EOWNERDEAD))
		return NULL;
	if (r == -EOWNERDEAD || r == -EPIPE) {
		PyErr_SetString(refs.task_lost, r == -EPIPE
							? "items are queued and every consumer is gone"
							: "consumers died holding items they had got");
		return NULL;
	}
	if (r == -ETIMEDOUT || r == -EAGAIN)
		Py_RETURN_FALSE;
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_TRUE;
}

static PyObject *Queue_eventfd(QueueObject *self, PyObject *unused)
{
	if (check_open(self) < 0)
		return NULL;
	int r = shmq_queue_eventfd(self->rd);
	return r < 0 ? raise_errno(r) : PyLong_FromLong(r);
}

/* What pickling needs: (fd, maxsize, msg_max, joinable, slots' name). */
static PyObject *Queue_reduce_args(QueueObject *self, PyObject *unused)
{
	return Py_BuildValue("(iIkiz)", shmq_queue_fd(self->rd), self->maxsize,
			     (unsigned long)self->msg_max, self->joinable,
			     self->slots ? shmq_sem_name(self->slots) : NULL);
}

static PyObject *Queue_get_closed(QueueObject *self, void *unused)
{
	return PyBool_FromLong(self->closed);
}

static PyObject *Queue_get_heap(QueueObject *self, void *unused)
{
	return Py_NewRef(self->heap ? self->heap : Py_None);
}

#define FAST (METH_FASTCALL | METH_KEYWORDS)
static PyMethodDef Queue_methods[] = {
	{ "put", (PyCFunction)(void (*)(void))Queue_put, FAST, "put(obj, block=True, timeout=None)" },
	{ "get", (PyCFunction)(void (*)(void))Queue_get, FAST, "get(block=True, timeout=None)" },
	{ "put_nowait", (PyCFunction)Queue_put_nowait, METH_O, "put(obj, False)" },
	{ "get_nowait", (PyCFunction)Queue_get_nowait, METH_NOARGS, "get(False)" },
	{ "put_many", (PyCFunction)(void (*)(void))Queue_put_many, FAST,
	  "put_many(items, block=True, timeout=None): every item, in order." },
	{ "get_many", (PyCFunction)(void (*)(void))Queue_get_many, FAST,
	  "get_many(n, block=True, timeout=None): a list of 1..n items; waits for the first." },
	{ "qsize", (PyCFunction)Queue_qsize, METH_NOARGS, "Items queued now (a snapshot)." },
	{ "empty", (PyCFunction)Queue_empty, METH_NOARGS, "True if empty now." },
	{ "full", (PyCFunction)Queue_full, METH_NOARGS, "True if full now." },
	{ "close", (PyCFunction)Queue_close, METH_NOARGS, "This process puts and gets no more." },
	{ "task_done", (PyCFunction)Queue_task_done, METH_NOARGS, "JoinableQueue: one item done." },
	{ "join", (PyCFunction)(void (*)(void))Queue_join, FAST,
	  "JoinableQueue: wait until every item put is done." },
	{ "_after_fork", (PyCFunction)Queue_after_fork, METH_NOARGS, NULL },
	{ "_eventfd", (PyCFunction)Queue_eventfd, METH_NOARGS, NULL },
	{ "_reduce_args", (PyCFunction)Queue_reduce_args, METH_NOARGS, NULL },
	{ NULL }
};

static PyGetSetDef Queue_getset[] = {
	{ "_closed", (getter)Queue_get_closed, NULL, NULL, NULL },
	{ "_heap", (getter)Queue_get_heap, NULL, NULL, NULL },
	{ NULL }
};

static PyTypeObject Queue_Type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmq._shmq.Queue",
	.tp_basicsize = sizeof(QueueObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "A multi-producer multi-consumer queue in shared memory.",
	.tp_new = Queue_new,
	.tp_dealloc = (destructor)Queue_dealloc,
	.tp_iter = PyObject_SelfIter,
	.tp_iternext = (iternextfunc)Queue_iternext,
	.tp_methods = Queue_methods,
	.tp_getset = Queue_getset,
};

/* ----------------------------------------------------------- Connection -- */

typedef struct {
	PyObject_HEAD
	shmq_conn *c;
	int readable, writable;
} ConnObject;

static PyTypeObject Conn_Type;

static PyObject *conn_wrap(PyTypeObject *type, shmq_conn *c, int readable, int writable)
{
	ConnObject *self = (ConnObject *)type->tp_alloc(type, 0);
	if (!self) {
		shmq_conn_close(c);
		return NULL;
	}
	self->c = c;
	self->readable = readable;
	self->writable = writable;
	return (PyObject *)self;
}

/* Connection(rfd, wfd): an end opened from the fds of another's
 * (shmq_conn_fds), -1 for a missing direction. */
static PyObject *Conn_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "rfd", "wfd", NULL };
	int rfd = -1, wfd = -1;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "ii:Connection", names, &rfd, &wfd))
		return NULL;
	shmq_conn *c;
	int r = shmq_conn_open_fds(rfd, wfd, &c);
	if (r < 0)
		return raise_errno(r);
	return conn_wrap(type, c, rfd >= 0, wfd >= 0);
}

static void Conn_dealloc(ConnObject *self)
{
	if (self->c)
		shmq_conn_close(self->c);
	Py_TYPE(self)->tp_free(self);
}

/* _pipe(duplex, type): the two ends, as instances of type. */
static PyObject *make_pipe(PyObject *m, PyObject *args)
{
	int duplex = 1;
	PyTypeObject *type = &Conn_Type;
	if (!PyArg_ParseTuple(args, "|pO!:_pipe", &duplex, &PyType_Type, &type))
		return NULL;
	if (!PyType_IsSubtype(type, &Conn_Type)) {
		PyErr_SetString(PyExc_TypeError, "_pipe() needs a Connection type");
		return NULL;
	}
	shmq_conn *a, *b;
	int r = shmq_pipe(&a, &b, duplex ? 0 : SHMQ_SIMPLEX);
	if (r < 0)
		return raise_errno(r);
	PyObject *ca = conn_wrap(type, a, 1, duplex);
	PyObject *cb = conn_wrap(type, b, duplex, 1);
	if (!ca || !cb) {
		Py_XDECREF(ca);
		Py_XDECREF(cb);
		return NULL;
	}
	return Py_BuildValue("(NN)", ca, cb);
}

static int conn_check(ConnObject *self, int need_read, int need_write)
{
	if (!self->c) {
		PyErr_SetString(PyExc_OSError, "handle is closed");
		return -1;
	}
	if (need_read && !self->readable) {
		PyErr_SetString(PyExc_OSError, "connection is write-only");
		return -1;
	}
	if (need_write && !self->writable) {
		PyErr_SetString(PyExc_OSError, "connection is read-only");
		return -1;
	}
	return 0;
}

static int conn_error(int r)
{
	if (r == -EPIPE) {
		errno = EPIPE;
		PyErr_SetFromErrno(PyExc_BrokenPipeError);
		return -1;
	}
	return fail_errno(r);
}

/* Send len bytes, waiting as long as it takes. 0, or -1 with an exception. */
static int conn_send_raw(ConnObject *self, const void *buf, size_t len)
{
	int r = len < shmq_conn_chunk(self->c) ? shmq_send(self->c, buf, len, 0) : -EAGAIN;
	if (r == -EAGAIN) {
		BLOCKING(r, shmq_send(self->c, buf, len, PY_FOREVER_NS));
		if (interrupted(r < 0))
			return -1;
	}
	return r < 0 ? conn_error(r) : 0;
}

/* A message received: on the stack, or in a bytes object (big). */
struct recvd {
	char stack[16384];
	char *buf;
	PyObject *big;
	ssize_t len;
};

/* Receive the next message into m. timeout_ns: how long to wait. Returns its
 * length, -1 with an exception (EOFError at end of file), or -EAGAIN
 * (nothing by the deadline; no exception). */
static ssize_t conn_recv_raw(ConnObject *self, struct recvd *m, int64_t ns)
{
	m->buf = m->stack;
	m->big = NULL;
	ssize_t r = shmq_recv(self->c, m->stack, sizeof(m->stack), 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_recv(self->c, m->stack, sizeof(m->stack), ns));
		if (interrupted(r < 0)) {
			if (r >= 0)
				return m->len = r;
			return -1;
		}
	}
	if (r == -EMSGSIZE) {
		ssize_t len = shmq_recv_len(self->c);
		if (len < 0)
			return fail_errno((int)len);
		m->big = PyBytes_FromStringAndSize(NULL, len);
		if (!m->big)
			return -1;
		m->buf = PyBytes_AS_STRING(m->big);
		BLOCKING(r, shmq_recv(self->c, m->buf, (size_t)len, 0));
	}
	if (r >= 0)
		return m->len = r;
	Py_CLEAR(m->big);
	if (r == -EAGAIN || r == -ETIMEDOUT)
		return -EAGAIN;
	if (r == -EPIPE)
		PyErr_SetNone(PyExc_EOFError);
	else
		raise_errno((int)r);
	return -1;
}

static ssize_t conn_recv_wait(ConnObject *self, struct recvd *m)
{
	ssize_t r;
	while ((r = conn_recv_raw(self, m, PY_FOREVER_NS)) == -EAGAIN)
		; /* 73 years passed */
	return r;
}

/* The message as bytes (its own object if it was big). */
static PyObject *recvd_bytes(struct recvd *m)
{
	if (m->big)
		return m->big;
	return PyBytes_FromStringAndSize(m->buf, m->len);
}

static PyObject *Conn_send(ConnObject *self, PyObject *obj)
{
	if (conn_check(self, 0, 1) < 0)
		return NULL;
	struct flat f;
	if (flatten(obj, &f) < 0)
		return NULL;
	int r = conn_send_raw(self, f.p, f.len);
	flat_release(&f);
	if (r < 0)
		return NULL;
	Py_RETURN_NONE;
}

static PyObject *Conn_recv(ConnObject *self, PyObject *unused)
{
	if (conn_check(self, 1, 0) < 0)
		return NULL;
	struct recvd m;
	if (conn_recv_wait(self, &m) < 0)
		return NULL;
	PyObject *obj = decode(m.buf, (size_t)m.len);
	Py_XDECREF(m.big);
	return obj;
}

static PyObject *Conn_send_bytes(ConnObject *self, PyObject *const *args, Py_ssize_t nargs,
				 PyObject *kwnames)
{
	static const char *const names[] = { "buf", "offset", "size", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	if (parse_args("send_bytes", args, nargs, kwnames, names, 1, v) < 0 ||
	    conn_check(self, 0, 1) < 0)
		return NULL;
	Py_buffer b;
	if (PyObject_GetBuffer(v[0], &b, PyBUF_SIMPLE) < 0)
		return NULL;
	Py_ssize_t offset = 0, size = -1;
	PyObject *res = NULL;
	if (v[1] && (offset = PyLong_AsSsize_t(v[1])) == -1 && PyErr_Occurred())
		goto out;
	if (v[2] && v[2] != Py_None && (size = PyLong_AsSsize_t(v[2])) == -1 && PyErr_Occurred())
		goto out;
	if (offset < 0) {
		PyErr_SetString(PyExc_ValueError, "offset is negative");
		goto out;
	}
	if (b.len < offset) {
		PyErr_SetString(PyExc_ValueError, "buffer length < offset");
		goto out;
	}
	if (size < 0 && v[2] && v[2] != Py_None) {
		PyErr_SetString(PyExc_ValueError, "size is negative");
		goto out;
	}
	if (size < 0)
		size = b.len - offset;
	else if (offset + size > b.len) {
		PyErr_SetString(PyExc_ValueError, "buffer length < offset + size");
		goto out;
	}
	if (conn_send_raw(self, (char *)b.buf + offset, (size_t)size) == 0)
		res = Py_NewRef(Py_None);
out:
	PyBuffer_Release(&b);
	return res;
}

static PyObject *Conn_recv_bytes(ConnObject *self, PyObject *const *args, Py_ssize_t nargs,
				 PyObject *kwnames)
{
	static const char *const names[] = { "maxlength", NULL };
	PyObject *v[1] = { NULL };
	Py_ssize_t maxlength = -1;
	if (parse_args("recv_bytes", args, nargs, kwnames, names, 0, v) < 0)
		return NULL;
	if (v[0] && v[0] != Py_None) {
		maxlength = PyLong_AsSsize_t(v[0]);
		if (maxlength == -1 && PyErr_Occurred())
			return NULL;
		if (maxlength < 0) {
			PyErr_SetString(PyExc_ValueError, "negative maxlength");
			return NULL;
		}
	}
	if (conn_check(self, 1, 0) < 0)
		return NULL;
	struct recvd m;
	if (conn_recv_wait(self, &m) < 0)
		return NULL;
	if (maxlength >= 0 && m.len > maxlength) {
		Py_XDECREF(m.big);
		PyErr_SetString(PyExc_OSError, "bad message length");
		return NULL;
	}
	return recvd_bytes(&m);
}

static PyObject *Conn_recv_bytes_into(ConnObject *self, PyObject *const *args,
				      Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = { "buf", "offset", NULL };
	PyObject *v[2] = { NULL, NULL };
	if (parse_args("recv_bytes_into", args, nargs, kwnames, names, 1, v) < 0 ||
	    conn_check(self, 1, 0) < 0)
		return NULL;
	Py_buffer b;
	if (PyObject_GetBuffer(v[0], &b, PyBUF_WRITABLE) < 0)
		return NULL;
	PyObject *res = NULL;
	Py_ssize_t offset = 0;
	if (v[1] && (offset = PyLong_AsSsize_t(v[1])) == -1 && PyErr_Occurred())
		goto out;
	if (offset < 0) {
		PyErr_SetString(PyExc_ValueError, "negative offset");
		goto out;
	}
	if (offset > b.len) {
		PyErr_SetString(PyExc_ValueError, "offset too large");
		goto out;
	}
	struct recvd m;
	if (conn_recv_wait(self, &m) < 0)
		goto out;
	if (m.len > b.len - offset) {
		PyObject *whole = recvd_bytes(&m);
		if (whole) {
			PyErr_SetObject(refs.buffer_too_short, whole);
			Py_DECREF(whole);
		}
		goto out;
	}
	memcpy((char *)b.buf + offset, m.buf, (size_t)m.len);
	Py_XDECREF(m.big);
	res = PyLong_FromSsize_t(m.len);
out:
	PyBuffer_Release(&b);
	return res;
}

static PyObject *Conn_poll(ConnObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns = 0;
	if (parse_args("poll", args, nargs, kwnames, names, 0, v) < 0 ||
	    (v[0] && timeout_ns(v[0], &ns) < 0) || conn_check(self, 1, 0) < 0)
		return NULL;
	int r = shmq_poll(self->c, 0);
	if (r == 0 && ns > 0) {
		BLOCKING(r, shmq_poll(self->c, ns));
		if (interrupted(r <= 0))
			return NULL;
	}
	if (r < 0)
		return raise_errno(r);
	return PyBool_FromLong(r);
}

static PyObject *Conn_close(ConnObject *self, PyObject *unused)
{
	if (self->c) {
		shmq_conn_close(self->c);
		self->c = NULL;
	}
	Py_RETURN_NONE;
}

/* An fd that is readable when a message (or end of file) waits: for
 * select/epoll loops and asyncio. */
static PyObject *Conn_fileno(ConnObject *self, PyObject *unused)
{
	if (conn_check(self, 0, 0) < 0)
		return NULL;
	int r = self->readable ? shmq_conn_eventfd(self->c) : -EBADF;
	if (r == -EBADF) { /* a send-only end: its segment's fd */
		int rfd, wfd;
		shmq_conn_fds(self->c, &rfd, &wfd);
		r = wfd;
	}
	return r < 0 ? raise_errno(r) : PyLong_FromLong(r);
}

static PyObject *Conn_fds(ConnObject *self, PyObject *unused)
{
	if (conn_check(self, 0, 0) < 0)
		return NULL;
	int rfd, wfd;
	int r = shmq_conn_fds(self->c, &rfd, &wfd);
	return r < 0 ? raise_errno(r) : Py_BuildValue("(ii)", rfd, wfd);
}

static PyObject *Conn_get_closed(ConnObject *self, void *unused)
{
	return PyBool_FromLong(self->c == NULL);
}

static PyObject *Conn_get_readable(ConnObject *self, void *unused)
{
	return PyBool_FromLong(self->readable);
}

static PyObject *Conn_get_writable(ConnObject *self, void *unused)
{
	return PyBool_FromLong(self->writable);
}

static PyMethodDef Conn_methods[] = {
	{ "send", (PyCFunction)Conn_send, METH_O, "Send an object (pickled unless bytes, str, int)." },
	{ "recv", (PyCFunction)Conn_recv, METH_NOARGS, "Receive an object; EOFError at end of file." },
	{ "send_bytes", (PyCFunction)(void (*)(void))Conn_send_bytes, FAST,
	  "send_bytes(buf, offset=0, size=None)" },
	{ "recv_bytes", (PyCFunction)(void (*)(void))Conn_recv_bytes, FAST,
	  "recv_bytes(maxlength=None)" },
	{ "recv_bytes_into", (PyCFunction)(void (*)(void))Conn_recv_bytes_into, FAST,
	  "recv_bytes_into(buf, offset=0)" },
	{ "poll", (PyCFunction)(void (*)(void))Conn_poll, FAST,
	  "poll(timeout=0.0): True if recv would not block." },
	{ "close", (PyCFunction)Conn_close, METH_NOARGS, "Close this end." },
	{ "fileno", (PyCFunction)Conn_fileno, METH_NOARGS, "An fd readable when data waits." },
	{ "_fds", (PyCFunction)Conn_fds, METH_NOARGS, NULL },
	{ NULL }
};

static PyGetSetDef Conn_getset[] = {
	{ "closed", (getter)Conn_get_closed, NULL, "True if closed.", NULL },
	{ "readable", (getter)Conn_get_readable, NULL, "True if this end receives.", NULL },
	{ "writable", (getter)Conn_get_writable, NULL, "True if this end sends.", NULL },
	{ NULL }
};

static PyTypeObject Conn_Type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmq._shmq.Connection",
	.tp_basicsize = sizeof(ConnObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "One end of a Pipe.",
	.tp_new = Conn_new,
	.tp_dealloc = (destructor)Conn_dealloc,
	.tp_methods = Conn_methods,
	.tp_getset = Conn_getset,
};

/* ------------------------------------------------------------- wait_any -- */

/* wait_any(objects, timeout=None): the Queues and Connections of objects
 * that are ready to read (an item, or end of data), waiting up to timeout
 * for one. */
static PyObject *wait_any(PyObject *m, PyObject *const *args, Py_ssize_t nargs,
			  PyObject *kwnames)
{
	static const char *const names[] = { "objects", "timeout", NULL };
	PyObject *v[2] = { NULL, NULL };
	int64_t ns;
	if (parse_args("wait_any", args, nargs, kwnames, names, 1, v) < 0 ||
	    timeout_ns(v[1], &ns) < 0)
		return NULL;
	PyObject *seq = PySequence_Fast(v[0], "wait_any() needs a sequence");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
	PyObject **objs = PySequence_Fast_ITEMS(seq);
	PyObject *res = NULL;
	struct shmq_pollitem *items = n ? PyMem_Calloc((size_t)n, sizeof(*items)) : NULL;
	if (n && !items) {
		PyErr_NoMemory();
		goto out;
	}
	for (Py_ssize_t i = 0; i < n; i++) {
		items[i].events = SHMQ_POLLIN;
		if (PyObject_TypeCheck(objs[i], &Queue_Type)) {
			QueueObject *q = (QueueObject *)objs[i];
			if (check_open(q) < 0)
				goto out;
			items[i].queue = q->rd;
		} else if (PyObject_TypeCheck(objs[i], &Conn_Type)) {
			ConnObject *c = (ConnObject *)objs[i];
			if (conn_check(c, 1, 0) < 0)
				goto out;
			items[i].conn = c->c;
		} else {
			PyErr_Format(PyExc_TypeError, "wait_any() takes shmq Queues and Connections, not %.100s",
				     Py_TYPE(objs[i])->tp_name);
			goto out;
		}
	}
	int r = n ? shmq_wait_any(items, (unsigned)n, 0) : 0;
	if (r == 0 && ns > 0 && n) {
		BLOCKING(r, shmq_wait_any(items, (unsigned)n, ns));
		if (interrupted(r <= 0))
			goto out;
	}
	if (r < 0) {
		raise_errno(r);
		goto out;
	}
	res = PyList_New(0);
	for (Py_ssize_t i = 0; res && i < n; i++)
		if (items[i].revents && PyList_Append(res, objs[i]) < 0)
			Py_CLEAR(res);
out:
	PyMem_Free(items);
	Py_DECREF(seq);
	return res;
}

static PyMethodDef queue_functions[] = {
	{ "_pipe", make_pipe, METH_VARARGS, "_pipe(duplex=True, type=Connection): two ends." },
	{ "wait_any", (PyCFunction)(void (*)(void))wait_any, FAST,
	  "wait_any(objects, timeout=None): the ready ones." },
	{ NULL }
};

int queue_types_init(PyObject *m)
{
	if (PyType_Ready(&Queue_Type) < 0 || PyType_Ready(&Conn_Type) < 0 ||
	    PyModule_AddObjectRef(m, "Queue", (PyObject *)&Queue_Type) < 0 ||
	    PyModule_AddObjectRef(m, "Connection", (PyObject *)&Conn_Type) < 0)
		return -1;
	return PyModule_AddFunctions(m, queue_functions);
}
