/* CSP channels (shmq/chan.h): the type Chan, one end of a channel of a
 * Heap, and alt(), the alternation over guards on ends. shmq.csp builds
 * PyCSP's API on them.
 *
 * An end is made by Chan.create(heap, name=None, buffer=0) (a new channel;
 * the end has both roles), Chan.open(heap, name, roles) (a new end of an
 * existing channel) or Chan.end_open(heap, end_name) (another handle on an
 * end some process holds: how an end travels). Messages are objects,
 * encoded as queue messages are (flatten/decode), of up to
 * SHMQ_CHAN_MSG_MAX bytes.
 *
 * Errors: a poisoned channel raises the class handed over by _chan_setup
 * as poison (PyCSP's ChannelPoisonException), a retired one the retire
 * class (ChannelRetireException); before _chan_setup, OSError(ECANCELED)
 * and BrokenPipeError. A timeout raises TimeoutError. */
#include "_shmq.h"

#include <shmq/chan.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A message is read into this much stack first; a bigger one is read
 * again into a buffer of SHMQ_CHAN_MSG_MAX (there is no length query). */
#define CHAN_STACK_MSG (64u << 10)

static PyObject *poison_exc, *retire_exc; /* from _chan_setup, or NULL */

typedef struct {
	PyObject_HEAD
	PyObject *heap; /* the Heap (kept alive while the end is) */
	shmq_chan *c;   /* NULL once closed */
	int users;      /* calls running without the GIL on c */
	int closing;    /* close() came while users > 0: the last one closes */
} ChanObject;

static PyTypeObject Chan_Type;

/* ---------------------------------------------------------------- state -- */

static int chan_check(ChanObject *self)
{
	if (self->c && !self->closing)
		return 0;
	PyErr_SetString(PyExc_ValueError, "the channel end is closed");
	return -1;
}

/* Around a call that releases the GIL: close() from another thread
 * meanwhile is carried out by the last call to leave. Both run with the
 * GIL held. */
static void chan_enter(ChanObject *self)
{
	self->users++;
}

static void chan_leave(ChanObject *self)
{
	if (--self->users == 0 && self->closing && self->c) {
		shmq_chan_close(self->c);
		self->c = NULL;
	}
}

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* What is left of a wait of ns that started at t0 (never negative). */
static int64_t left_ns(int64_t t0, int64_t ns)
{
	if (ns >= PY_FOREVER_NS)
		return ns;
	int64_t left = t0 + ns - now_ns();
	return left > 0 ? left : 0;
}

/* Raise the exception of a channel error r; index >= 0: the guard of an
 * alt it came from (the exception's `index` attribute). Returns NULL. */
static PyObject *chan_error(int r, Py_ssize_t index)
{
	PyObject *cls = NULL;
	switch (r) {
	case -ECANCELED:
		cls = poison_exc;
		break;
	case -EPIPE:
		cls = retire_exc;
		if (!cls) {
			errno = EPIPE;
			return PyErr_SetFromErrno(PyExc_BrokenPipeError);
		}
		break;
	case -EAGAIN:
	case -ETIMEDOUT:
		PyErr_SetString(PyExc_TimeoutError, "timed out");
		return NULL;
	case -EBADF:
		PyErr_SetString(PyExc_ValueError, "the channel end does not have that role");
		return NULL;
	case -EMSGSIZE:
		PyErr_Format(PyExc_ValueError, "a message is larger than channels accept (%u bytes)",
			     SHMQ_CHAN_MSG_MAX);
		return NULL;
	}
	if (!cls)
		return raise_errno(r);
	PyObject *e = PyObject_CallNoArgs(cls);
	if (!e)
		return NULL;
	if (index >= 0) {
		PyObject *i = PyLong_FromSsize_t(index);
		if (!i || PyObject_SetAttrString(e, "index", i) < 0) {
			Py_XDECREF(i);
			Py_DECREF(e);
			return NULL;
		}
		Py_DECREF(i);
	}
	PyErr_SetObject(cls, e);
	Py_DECREF(e);
	return NULL;
}

/* --------------------------------------------------------- constructors -- */

static shmq_heap *heap_arg(PyObject *heap)
{
	if (!PyObject_TypeCheck(heap, &Heap_Type)) {
		PyErr_SetString(PyExc_TypeError, "the first argument must be a shmq Heap");
		return NULL;
	}
	return ((HeapObject *)heap)->heap;
}

/* A str argument (NULL or None: NULL, no error). */
static int str_arg(PyObject *o, const char *what, const char **out)
{
	*out = NULL;
	if (!o || o == Py_None)
		return 0;
	if (!PyUnicode_Check(o)) {
		PyErr_Format(PyExc_TypeError, "%s must be a str, not %.100s", what,
			     Py_TYPE(o)->tp_name);
		return -1;
	}
	*out = PyUnicode_AsUTF8(o);
	return *out ? 0 : -1;
}

static int int_arg(PyObject *o, const char *what, long lo, long hi, long *out)
{
	if (!o)
		return 0;
	long v = PyLong_AsLong(o);
	if (v == -1 && PyErr_Occurred())
		return -1;
	if (v < lo || v > hi) {
		PyErr_Format(PyExc_ValueError, "%s must be %ld .. %ld", what, lo, hi);
		return -1;
	}
	*out = v;
	return 0;
}

static PyObject *chan_made(PyTypeObject *cls, PyObject *heap, shmq_chan *c)
{
	ChanObject *self = (ChanObject *)cls->tp_alloc(cls, 0);
	if (!self) {
		shmq_chan_close(c);
		return NULL;
	}
	self->heap = Py_NewRef(heap);
	self->c = c;
	return (PyObject *)self;
}

/* Chan.create(heap, name=None, buffer=0): a new channel; the end has both roles. */
static PyObject *Chan_create(PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "heap", "name", "buffer", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	const char *name;
	long buffer = 0;
	if (parse_args("create", args, nargs, kwnames, names, 1, v) < 0 ||
	    str_arg(v[1], "name", &name) < 0 ||
	    int_arg(v[2], "buffer", 0, SHMQ_CHAN_BUFFER_MAX, &buffer) < 0)
		return NULL;
	shmq_heap *h = heap_arg(v[0]);
	if (!h)
		return NULL;
	shmq_chan *c;
	int r = shmq_chan_create(h, name, (uint32_t)buffer, &c);
	return r < 0 ? raise_errno(r) : chan_made(cls, v[0], c);
}

/* Chan.open(heap, name, roles): a new end of the channel name. */
static PyObject *Chan_open(PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	static const char *const names[] = { "heap", "name", "roles", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	const char *name;
	long roles = 0;
	if (parse_args("open", args, nargs, kwnames, names, 3, v) < 0 ||
	    str_arg(v[1], "name", &name) < 0 || int_arg(v[2], "roles", 0, SHMQ_RDWR, &roles) < 0)
		return NULL;
	if (!name) {
		PyErr_SetString(PyExc_TypeError, "open() needs the channel's name");
		return NULL;
	}
	shmq_heap *h = heap_arg(v[0]);
	if (!h)
		return NULL;
	shmq_chan *c;
	int r = shmq_chan_open(h, name, (int)roles, &c);
	return r < 0 ? raise_errno(r) : chan_made(cls, v[0], c);
}

/* Chan.end_open(heap, end_name): another handle on an end a process holds. */
static PyObject *Chan_end_open(PyTypeObject *cls, PyObject *const *args, Py_ssize_t nargs,
			       PyObject *kwnames)
{
	static const char *const names[] = { "heap", "end_name", NULL };
	PyObject *v[2] = { NULL, NULL };
	const char *name;
	if (parse_args("end_open", args, nargs, kwnames, names, 2, v) < 0 ||
	    str_arg(v[1], "end_name", &name) < 0)
		return NULL;
	if (!name) {
		PyErr_SetString(PyExc_TypeError, "end_open() needs the end's name");
		return NULL;
	}
	shmq_heap *h = heap_arg(v[0]);
	if (!h)
		return NULL;
	shmq_chan *c;
	int r = shmq_chan_end_open(h, name, &c);
	return r < 0 ? raise_errno(r) : chan_made(cls, v[0], c);
}

static void Chan_dealloc(ChanObject *self)
{
	if (self->c)
		shmq_chan_close(self->c);
	Py_XDECREF(self->heap);
	Py_TYPE(self)->tp_free(self);
}

/* ------------------------------------------------------------ messages -- */

/* write(obj, timeout=None): returns once a reader took obj (a buffered
 * channel: once it is in the buffer). */
static PyObject *Chan_write(ChanObject *self, PyObject *const *args, Py_ssize_t nargs,
			    PyObject *kwnames)
{
	static const char *const names[] = { "obj", "timeout", NULL };
	PyObject *v[2] = { NULL, NULL };
	int64_t ns;
	if (parse_args("write", args, nargs, kwnames, names, 1, v) < 0 ||
	    timeout_ns(v[1], &ns) < 0 || chan_check(self) < 0)
		return NULL;
	struct flat f;
	if (flatten(v[0], &f) < 0)
		return NULL;
	if (f.len > SHMQ_CHAN_MSG_MAX) {
		flat_release(&f);
		return chan_error(-EMSGSIZE, -1);
	}
	chan_enter(self);
	int r = shmq_chan_write(self->c, f.p, f.len, 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_chan_write(self->c, f.p, f.len, ns));
		if (interrupted(r < 0)) {
			chan_leave(self);
			flat_release(&f);
			return NULL;
		}
	}
	chan_leave(self);
	flat_release(&f);
	return r < 0 ? chan_error(r, -1) : Py_NewRef(Py_None);
}

/* read(timeout=None) -> the next object. */
static PyObject *Chan_read(ChanObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns;
	if (parse_args("read", args, nargs, kwnames, names, 0, v) < 0 ||
	    timeout_ns(v[0], &ns) < 0 || chan_check(self) < 0)
		return NULL;
	char stack[CHAN_STACK_MSG];
	char *buf = stack;
	size_t cap = sizeof(stack);
	int64_t t0 = 0;
	PyObject *obj = NULL;
	chan_enter(self);
	ssize_t r = shmq_chan_read(self->c, buf, cap, 0);
	for (;;) {
		if (r == -EMSGSIZE && buf == stack) {
			/* Bigger than the stack: read it (or whatever comes first)
			 * again into room for any message. */
			if (!(buf = malloc(SHMQ_CHAN_MSG_MAX))) {
				PyErr_NoMemory();
				goto out;
			}
			cap = SHMQ_CHAN_MSG_MAX;
			r = shmq_chan_read(self->c, buf, cap, 0);
			continue;
		}
		if (r != -EAGAIN || ns == 0 || (t0 && left_ns(t0, ns) == 0))
			break;
		if (!t0)
			t0 = now_ns();
		BLOCKING(r, shmq_chan_read(self->c, buf, cap, left_ns(t0, ns)));
		if (interrupted(r < 0))
			goto out;
		if (r == -ETIMEDOUT)
			break;
	}
	obj = r < 0 ? chan_error((int)r, -1) : decode(buf, (size_t)r);
out:
	chan_leave(self);
	if (buf != stack)
		free(buf);
	return obj;
}

/* ---------------------------------------------------------------- roles -- */

static PyObject *Chan_retire(ChanObject *self, PyObject *arg)
{
	long roles = 0;
	if (int_arg(arg, "roles", 0, SHMQ_RDWR, &roles) < 0 || chan_check(self) < 0)
		return NULL;
	int r = shmq_chan_retire(self->c, (int)roles);
	return r < 0 ? raise_errno(r) : Py_NewRef(Py_None);
}

static PyObject *Chan_poison(ChanObject *self, PyObject *unused)
{
	if (chan_check(self) < 0)
		return NULL;
	int r = shmq_chan_poison(self->c);
	return r < 0 ? raise_errno(r) : Py_NewRef(Py_None);
}

/* close(): this process lets go of the end (again: nothing). */
static PyObject *Chan_close(ChanObject *self, PyObject *unused)
{
	if (self->c && !self->closing) {
		self->closing = 1;
		if (self->users == 0) {
			shmq_chan_close(self->c);
			self->c = NULL;
		}
	}
	Py_RETURN_NONE;
}

static PyObject *Chan_get_name(ChanObject *self, void *unused)
{
	if (chan_check(self) < 0)
		return NULL;
	return PyUnicode_FromString(shmq_chan_name(self->c));
}

static PyObject *Chan_get_end_name(ChanObject *self, void *unused)
{
	if (chan_check(self) < 0)
		return NULL;
	return PyUnicode_FromString(shmq_chan_end_name(self->c));
}

static PyObject *Chan_get_roles(ChanObject *self, void *unused)
{
	if (chan_check(self) < 0)
		return NULL;
	int r = shmq_chan_roles(self->c);
	return r < 0 ? raise_errno(r) : PyLong_FromLong(r);
}

static PyObject *Chan_get_buffer(ChanObject *self, void *unused)
{
	if (chan_check(self) < 0)
		return NULL;
	int r = shmq_chan_buffer(self->c);
	return r < 0 ? raise_errno(r) : PyLong_FromLong(r);
}

static PyObject *Chan_get_closed(ChanObject *self, void *unused)
{
	return PyBool_FromLong(!self->c || self->closing);
}

static PyObject *Chan_get_heap(ChanObject *self, void *unused)
{
	return Py_NewRef(self->heap);
}

/* ------------------------------------------------------------------ alt -- */

/* alt(guards, flags=0, timeout=None) -> (index, value) or None.
 * guards: a sequence of (chan, op, obj): op 1 reads (obj ignored), 2 writes
 * obj. Exactly one guard fires: its index, and the object read (None for a
 * write). None: nothing was ready within timeout (0: SkipGuard). flags 0
 * prefers the first ready guard, 1 rotates the preference (fair). A guard
 * on a poisoned or retired channel raises the poison or retire exception,
 * with the guard's index as its `index` attribute. */
static PyObject *py_alt(PyObject *m, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
	static const char *const names[] = { "guards", "flags", "timeout", NULL };
	PyObject *v[3] = { NULL, NULL, NULL };
	long flags = SHMQ_ALT_PRI;
	int64_t ns;
	if (parse_args("alt", args, nargs, kwnames, names, 1, v) < 0 ||
	    int_arg(v[1], "flags", 0, SHMQ_ALT_FAIR, &flags) < 0 || timeout_ns(v[2], &ns) < 0)
		return NULL;
	PyObject *seq = PySequence_Fast(v[0], "alt() needs a sequence of guards");
	if (!seq)
		return NULL;
	Py_ssize_t n = PySequence_Fast_GET_SIZE(seq), i, ready = 0;
	PyObject **items = PySequence_Fast_ITEMS(seq);
	PyObject *res = NULL;
	if (n < 1 || n > (Py_ssize_t)SHMQ_ALT_MAX) {
		PyErr_Format(PyExc_ValueError, "alt() takes 1 .. %u guards", SHMQ_ALT_MAX);
		Py_DECREF(seq);
		return NULL;
	}
	struct shmq_guard g[SHMQ_ALT_MAX];
	ChanObject *chans[SHMQ_ALT_MAX];
	struct flat *wf = PyMem_Calloc((size_t)n, sizeof(*wf)); /* write guards' messages */
	char stack[CHAN_STACK_MSG], *rbuf = stack;               /* every read guard's: one fires */
	size_t rcap = sizeof(stack);
	if (!wf) {
		PyErr_NoMemory();
		Py_DECREF(seq);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		PyObject *t = items[i];
		long op = 0;
		if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 3) {
			PyErr_SetString(PyExc_TypeError, "a guard is a tuple (chan, op, obj)");
			goto out;
		}
		if (!PyObject_TypeCheck(PyTuple_GET_ITEM(t, 0), &Chan_Type)) {
			PyErr_Format(PyExc_TypeError, "a guard's channel must be a Chan, not %.100s",
				     Py_TYPE(PyTuple_GET_ITEM(t, 0))->tp_name);
			goto out;
		}
		chans[i] = (ChanObject *)PyTuple_GET_ITEM(t, 0);
		if (chan_check(chans[i]) < 0 ||
		    int_arg(PyTuple_GET_ITEM(t, 1), "op", SHMQ_GUARD_READ, SHMQ_GUARD_WRITE, &op) < 0)
			goto out;
		memset(&g[i], 0, sizeof(g[i]));
		g[i].chan = chans[i]->c;
		g[i].op = (int)op;
		if (op == SHMQ_GUARD_WRITE) {
			if (flatten(PyTuple_GET_ITEM(t, 2), &wf[i]) < 0)
				goto out;
			g[i].wbuf = wf[i].p;
			g[i].wlen = wf[i].len;
			if (wf[i].len > SHMQ_CHAN_MSG_MAX) {
				chan_error(-EMSGSIZE, -1);
				ready = i + 1;
				goto out;
			}
		}
		ready = i + 1;
	}
	for (i = 0; i < n; i++)
		chan_enter(chans[i]);
	int64_t t0 = 0;
	int r;
	for (;;) {
		for (i = 0; i < n; i++)
			if (g[i].op == SHMQ_GUARD_READ) {
				g[i].rbuf = rbuf;
				g[i].rcap = rcap;
			}
		r = shmq_alt(g, (unsigned)n, (int)flags, 0);
		if (r == -EAGAIN && ns > 0) {
			if (!t0)
				t0 = now_ns();
			BLOCKING(r, shmq_alt(g, (unsigned)n, (int)flags, left_ns(t0, ns)));
			if (interrupted(r < 0))
				break;
		}
		if (r >= 0 && g[r].result == -EMSGSIZE && g[r].op == SHMQ_GUARD_READ &&
		    rbuf == stack) {
			/* A message bigger than the stack: nothing moved; again
			 * with room for any message. */
			if (!(rbuf = malloc(SHMQ_CHAN_MSG_MAX))) {
				PyErr_NoMemory();
				break;
			}
			rcap = SHMQ_CHAN_MSG_MAX;
			continue;
		}
		if (r == -EAGAIN || r == -ETIMEDOUT)
			res = Py_NewRef(Py_None);
		else if (r < 0)
			raise_errno(r);
		else if (g[r].result < 0)
			chan_error((int)g[r].result, r);
		else if (g[r].op == SHMQ_GUARD_READ) {
			PyObject *obj = decode(rbuf, (size_t)g[r].result);
			res = obj ? Py_BuildValue("(iN)", r, obj) : NULL;
		} else {
			res = Py_BuildValue("(iO)", r, Py_None);
		}
		break;
	}
	for (i = 0; i < n; i++)
		chan_leave(chans[i]);
out:
	for (i = 0; i < ready; i++)
		if (g[i].op == SHMQ_GUARD_WRITE)
			flat_release(&wf[i]);
	PyMem_Free(wf);
	if (rbuf != stack)
		free(rbuf);
	Py_DECREF(seq);
	return res;
}

/* _chan_setup(poison, retire): the exception classes of poisoned and
 * retired channels (shmq.csp's ChannelPoisonException and
 * ChannelRetireException). */
static PyObject *chan_setup(PyObject *m, PyObject *args)
{
	PyObject *p, *r;
	if (!PyArg_ParseTuple(args, "OO:_chan_setup", &p, &r))
		return NULL;
	Py_XSETREF(poison_exc, Py_NewRef(p));
	Py_XSETREF(retire_exc, Py_NewRef(r));
	Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- types -- */

#define FAST (METH_FASTCALL | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)

static PyMethodDef Chan_methods[] = {
	{ "create", FN(Chan_create), FAST | METH_CLASS,
	  "create(heap, name=None, buffer=0): a new channel (name None: anonymous, freed with its "
	  "last end); the end has both roles." },
	{ "open", FN(Chan_open), FAST | METH_CLASS,
	  "open(heap, name, roles): a new end of channel name (roles 1 read, 2 write, 3 both, 0 "
	  "an end that only poisons)." },
	{ "end_open", FN(Chan_end_open), FAST | METH_CLASS,
	  "end_open(heap, end_name): another handle on the end end_name, held by a process." },
	{ "write", FN(Chan_write), FAST, "write(obj, timeout=None)" },
	{ "read", FN(Chan_read), FAST, "read(timeout=None) -> obj" },
	{ "retire", (PyCFunction)Chan_retire, METH_O, "retire(roles): for every holder of the end." },
	{ "poison", (PyCFunction)Chan_poison, METH_NOARGS, "Poison the channel." },
	{ "close", (PyCFunction)Chan_close, METH_NOARGS, "This process lets go of the end." },
	{ NULL }
};

static PyGetSetDef Chan_getset[] = {
	{ "name", (getter)Chan_get_name, NULL, "The channel's name.", NULL },
	{ "end_name", (getter)Chan_get_end_name, NULL, "The end's name (for end_open).", NULL },
	{ "roles", (getter)Chan_get_roles, NULL, "The end's roles now (retired ones gone).", NULL },
	{ "buffer", (getter)Chan_get_buffer, NULL, "The channel's buffer size.", NULL },
	{ "closed", (getter)Chan_get_closed, NULL, "True once closed here.", NULL },
	{ "_heap", (getter)Chan_get_heap, NULL, NULL, NULL },
	{ NULL }
};

static PyTypeObject Chan_Type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmq._shmq.Chan",
	.tp_basicsize = sizeof(ChanObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "An end of a CSP channel of a Heap: Chan.create, Chan.open, Chan.end_open.",
	.tp_dealloc = (destructor)Chan_dealloc,
	.tp_methods = Chan_methods,
	.tp_getset = Chan_getset,
};

static PyMethodDef chan_functions[] = {
	{ "alt", FN(py_alt), FAST,
	  "alt(guards, flags=0, timeout=None) -> (index, value), or None if nothing was ready." },
	{ "_chan_setup", chan_setup, METH_VARARGS, "Hand over the poison and retire exceptions." },
	{ NULL }
};

int chan_types_init(PyObject *m)
{
	if (PyType_Ready(&Chan_Type) < 0 ||
	    PyModule_AddObjectRef(m, "Chan", (PyObject *)&Chan_Type) < 0 ||
	    PyModule_AddIntConstant(m, "CHAN_MSG_MAX", SHMQ_CHAN_MSG_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "CHAN_BUFFER_MAX", SHMQ_CHAN_BUFFER_MAX) < 0 ||
	    PyModule_AddIntConstant(m, "ALT_MAX", SHMQ_ALT_MAX) < 0)
		return -1;
	return PyModule_AddFunctions(m, chan_functions);
}
