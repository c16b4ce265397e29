/* shmq._shmq: the module, argument and error conventions, the message codec
 * and the Heap type. Queues and pipes are in _queue.c, shared state in
 * _state.c, CSP channels in _chan.c. */
#include "_shmq.h"

#include <marshal.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct py_refs refs;

/* ---------------------------------------------------------------- calls -- */

int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	       const char *const *names, int min, PyObject **vals)
{
	int n = 0;
	while (names[n])
		n++;
	if (nargs > n) {
		PyErr_Format(PyExc_TypeError, "%s() takes at most %d arguments (%zd given)", fname,
			     n, nargs);
		return -1;
	}
	for (Py_ssize_t i = 0; i < nargs; i++)
		vals[i] = args[i];
	Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
	int given = (int)nargs;
	for (Py_ssize_t k = 0; k < nkw; k++) {
		const char *key = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, k));
		if (!key)
			return -1;
		int i = 0;
		while (i < n && strcmp(names[i], key))
			i++;
		if (i == n) {
			PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%s'",
				     fname, key);
			return -1;
		}
		if (i < nargs) {
			PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'",
				     fname, key);
			return -1;
		}
		vals[i] = args[nargs + k];
		given = i + 1 > given ? i + 1 : given;
	}
	for (int i = 0; i < min; i++)
		if (i >= nargs && !vals[i]) {
			PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s'", fname,
				     names[i]);
			return -1;
		}
	return 0;
}

int timeout_ns(PyObject *timeout, int64_t *ns)
{
	if (!timeout || timeout == Py_None) {
		*ns = PY_FOREVER_NS;
		return 0;
	}
	double s = PyFloat_AsDouble(timeout);
	if (s == -1.0 && PyErr_Occurred()) {
		PyErr_Format(PyExc_TypeError, "timeout must be a number or None, not %.100s",
			     Py_TYPE(timeout)->tp_name);
		return -1;
	}
	if (s != s) {
		PyErr_SetString(PyExc_ValueError, "timeout must not be NaN");
		return -1;
	}
	*ns = s <= 0 ? 0 : s >= (double)PY_FOREVER_NS / 1e9 ? PY_FOREVER_NS : (int64_t)(s * 1e9);
	return 0;
}

int timeout_of(PyObject *block, PyObject *timeout, int64_t *ns)
{
	if (block) {
		int b = PyObject_IsTrue(block);
		if (b < 0)
			return -1;
		if (!b) {
			*ns = 0;
			return 0;
		}
	}
	return timeout_ns(timeout, ns);
}

/* Interruption: libshmq calls this in a waiting thread after a signal or a
 * liveness period (see shmq_set_interrupt_check). Only threads inside a
 * BLOCKING call of ours run the handlers: they hold a thread state. */
_Thread_local int py_in_call;

static int check_signals(void)
{
	if (!py_in_call)
		return 0;
	PyGILState_STATE g = PyGILState_Ensure();
	int raised = PyErr_CheckSignals() < 0;
	PyGILState_Release(g);
	return raised;
}

int interrupted(int result_failed)
{
	if (!shmq_interrupted() || !PyErr_Occurred())
		return 0;
	if (result_failed)
		return 1;
	/* It moved something anyway: keep that, and let the interruption
	 * surface at the next check instead of losing the result. */
	if (PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
		PyErr_Clear();
		PyErr_SetInterrupt();
	} else {
		PyErr_WriteUnraisable(NULL);
	}
	return 0;
}

PyObject *raise_errno(int err)
{
	switch (err) {
	case -EINVAL:
		PyErr_SetString(PyExc_ValueError, "invalid argument");
		break;
	case -ENOMEM:
		PyErr_NoMemory();
		break;
	case -ENOSPC:
		PyErr_SetString(PyExc_MemoryError, "the shared heap is full");
		break;
	default:
		errno = -err;
		PyErr_SetFromErrno(PyExc_OSError);
	}
	return NULL;
}

int fail_errno(int err)
{
	raise_errno(err);
	return -1;
}

/* ---------------------------------------------------------------- codec -- */

/* marshal's version 4 keeps shared references (as pickle does). */
#define MARSHAL_VERSION 4

/* obj marshalled if it is a built-in container or number that marshal
 * takes whole (exact types all the way down: a subclass makes marshal
 * refuse, and pickle then keeps its class); NULL without an exception if
 * not, NULL with one for a real error (memory). */
static PyObject *marshal_fast(PyObject *obj)
{
	PyTypeObject *t = Py_TYPE(obj);
	if (t != &PyTuple_Type && t != &PyList_Type && t != &PyDict_Type && t != &PyFloat_Type &&
	    t != &PySet_Type && t != &PyFrozenSet_Type && t != &PyComplex_Type &&
	    t != &PyLong_Type && obj != Py_None && obj != Py_True && obj != Py_False)
		return NULL;
	PyObject *b = PyMarshal_WriteObjectToString(obj, MARSHAL_VERSION);
	if (!b && (PyErr_ExceptionMatches(PyExc_ValueError) ||
		   PyErr_ExceptionMatches(PyExc_RecursionError)))
		PyErr_Clear(); /* unmarshallable inside: pickle it */
	return b;
}

int encode(PyObject *obj, struct encoded *e)
{
	e->owner = NULL;
	e->head_len = 1;
	if (PyBytes_CheckExact(obj)) {
		e->head[0] = TAG_BYTES;
		e->body = PyBytes_AS_STRING(obj);
		e->body_len = (size_t)PyBytes_GET_SIZE(obj);
		e->owner = Py_NewRef(obj);
		return 0;
	}
	if (PyUnicode_CheckExact(obj)) {
		Py_ssize_t n;
		const char *s = PyUnicode_AsUTF8AndSize(obj, &n);
		if (s) {
			e->head[0] = TAG_STR;
			e->body = s;
			e->body_len = (size_t)n;
			e->owner = Py_NewRef(obj);
			return 0;
		}
		PyErr_Clear(); /* lone surrogates: pickle keeps them */
	} else if (PyLong_CheckExact(obj)) {
		int overflow;
		long long v = PyLong_AsLongLongAndOverflow(obj, &overflow);
		if (!overflow) {
			e->head[0] = TAG_INT;
			memcpy(e->head + 1, &v, 8);
			e->head_len = 9;
			e->body = NULL;
			e->body_len = 0;
			return 0;
		}
	}
	PyObject *p = marshal_fast(obj);
	if (p) {
		e->head[0] = TAG_MARSHAL;
		e->body = PyBytes_AS_STRING(p);
		e->body_len = (size_t)PyBytes_GET_SIZE(p);
		e->owner = p;
		return 0;
	}
	if (PyErr_Occurred())
		return -1;
	p = PyObject_CallOneArg(refs.dumps, obj);
	if (!p)
		return -1;
	if (!PyBytes_Check(p) || PyBytes_GET_SIZE(p) < 1 ||
	    (unsigned char)PyBytes_AS_STRING(p)[0] != 0x80) {
		Py_DECREF(p);
		PyErr_SetString(PyExc_SystemError, "shmq: the pickler must give protocol 2+ bytes");
		return -1;
	}
	e->head_len = 0;
	e->body = PyBytes_AS_STRING(p);
	e->body_len = (size_t)PyBytes_GET_SIZE(p);
	e->owner = p;
	return 0;
}

void encoded_release(struct encoded *e)
{
	Py_CLEAR(e->owner);
}

void encoded_copy(const struct encoded *e, void *buf)
{
	memcpy(buf, e->head, e->head_len);
	if (e->body_len)
		memcpy((char *)buf + e->head_len, e->body, e->body_len);
}

int flatten_encoded(const struct encoded *e, struct flat *f)
{
	f->len = encoded_len(e);
	f->p = f->len <= sizeof(f->stack) ? f->stack : malloc(f->len);
	if (!f->p) {
		PyErr_NoMemory();
		return -1;
	}
	encoded_copy(e, f->p);
	return 0;
}

int flatten(PyObject *obj, struct flat *f)
{
	struct encoded e;
	if (encode(obj, &e) < 0)
		return -1;
	int r = flatten_encoded(&e, f);
	encoded_release(&e);
	return r;
}

void flat_release(struct flat *f)
{
	if (f->p != f->stack)
		free(f->p);
}

PyObject *decode(const void *buf, size_t len)
{
	const unsigned char *p = buf;
	if (len == 0)
		return PyBytes_FromStringAndSize("", 0); /* a raw empty message */
	switch (p[0]) {
	case TAG_BYTES:
		return PyBytes_FromStringAndSize((const char *)p + 1, (Py_ssize_t)len - 1);
	case TAG_STR:
		return PyUnicode_DecodeUTF8((const char *)p + 1, (Py_ssize_t)len - 1, "strict");
	case TAG_MARSHAL:
		return PyMarshal_ReadObjectFromString((const char *)p + 1, (Py_ssize_t)len - 1);
	case TAG_INT:
		if (len == 9) {
			long long v;
			memcpy(&v, p + 1, 8);
			return PyLong_FromLongLong(v);
		}
		break;
	case 0x80: {
		PyObject *view = PyMemoryView_FromMemory((char *)p, (Py_ssize_t)len, PyBUF_READ);
		if (!view)
			return NULL;
		PyObject *obj = PyObject_CallOneArg(refs.loads, view);
		Py_DECREF(view);
		return obj;
	}
	}
	PyErr_SetString(PyExc_ValueError, "shmq: a message that no shmq Python object wrote");
	return NULL;
}

/* ----------------------------------------------------------------- Heap -- */

/* A heap of shared objects (locks ... dicts). Heap() creates an anonymous
 * one; Heap(fd) opens the one behind fd (the caller keeps its fd). */
static PyObject *Heap_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "fd", "max_size", NULL };
	int fd = -1;
	unsigned long long max_size = 0;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "|iK:Heap", names, &fd, &max_size))
		return NULL;
	HeapObject *self = (HeapObject *)type->tp_alloc(type, 0);
	if (!self)
		return NULL;
	int r;
	if (fd < 0) {
		struct shmq_heap_attr a;
		shmq_heap_attr_init(&a);
		a.max_size = max_size;
		r = shmq_heap_create(NULL, &a, &self->heap);
	} else {
		r = shmq_heap_open_fd(fd, 0, &self->heap);
	}
	if (r < 0) {
		Py_DECREF(self);
		return raise_errno(r);
	}
	return (PyObject *)self;
}

static void Heap_dealloc(HeapObject *self)
{
	if (self->heap)
		shmq_heap_close(self->heap);
	Py_TYPE(self)->tp_free(self);
}

static PyObject *Heap_fd(HeapObject *self, PyObject *unused)
{
	return PyLong_FromLong(shmq_heap_fd(self->heap));
}

static PyMethodDef Heap_methods[] = {
	{ "fd", (PyCFunction)Heap_fd, METH_NOARGS, "The heap's segment fd (owned by the heap)." },
	{ NULL }
};

PyTypeObject Heap_Type = {
	PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmq._shmq.Heap",
	.tp_basicsize = sizeof(HeapObject),
	.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
	.tp_doc = "Heap(fd=-1, max_size=0): a shared heap of named objects.",
	.tp_new = Heap_new,
	.tp_dealloc = (destructor)Heap_dealloc,
	.tp_methods = Heap_methods,
};

/* --------------------------------------------------------------- module -- */

static PyObject *setup(PyObject *m, PyObject *args)
{
	struct py_refs r;
	if (!PyArg_ParseTuple(args, "OOOOOOOO:_setup", &r.empty, &r.full, &r.dumps, &r.loads,
			      &r.broken_barrier, &r.buffer_too_short, &r.owner_died, &r.task_lost))
		return NULL;
	PyObject **dst = (PyObject **)&refs, **src = (PyObject **)&r;
	for (size_t i = 0; i < sizeof(refs) / sizeof(PyObject *); i++)
		Py_XSETREF(dst[i], Py_NewRef(src[i]));
	Py_RETURN_NONE;
}

static PyObject *py_decode(PyObject *m, PyObject *arg)
{
	Py_buffer b;
	if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0)
		return NULL;
	PyObject *r = decode(b.buf, (size_t)b.len);
	PyBuffer_Release(&b);
	return r;
}

static PyObject *py_encode(PyObject *m, PyObject *obj)
{
	struct encoded e;
	if (encode(obj, &e) < 0)
		return NULL;
	PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)encoded_len(&e));
	if (b)
		encoded_copy(&e, PyBytes_AS_STRING(b));
	encoded_release(&e);
	return b;
}

/* pidfd_getfd(pid, fd): a copy of another process's fd (close-on-exec),
 * as pidfd_getfd(2) gives it: the caller needs the permission to ptrace
 * that process (same user without Yama restrictions, or CAP_SYS_PTRACE). */
static PyObject *py_pidfd_getfd(PyObject *m, PyObject *args)
{
	int pid, fd;
	if (!PyArg_ParseTuple(args, "ii:pidfd_getfd", &pid, &fd))
		return NULL;
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0)
		return PyErr_SetFromErrno(PyExc_OSError);
	int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
	int err = errno;
	close(pidfd);
	if (got < 0) {
		errno = err;
		return PyErr_SetFromErrno(PyExc_OSError);
	}
	return PyLong_FromLong(got);
}

static PyMethodDef module_methods[] = {
	{ "pidfd_getfd", py_pidfd_getfd, METH_VARARGS, "pidfd_getfd(pid, fd): a copy of its fd." },
	{ "_setup", setup, METH_VARARGS, "Hand over the exceptions and the pickler." },
	{ "encode", py_encode, METH_O, "An object as a message (bytes)." },
	{ "decode", py_decode, METH_O, "A message (bytes-like) as an object." },
	{ NULL }
};

static struct PyModuleDef module = {
	PyModuleDef_HEAD_INIT,
	.m_name = "shmq._shmq",
	.m_doc = "Bindings of libshmq (shared-memory queues, pipes and shared state).",
	.m_size = -1,
	.m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__shmq(void)
{
	PyObject *m = PyModule_Create(&module);
	if (!m)
		return NULL;
	if (PyType_Ready(&Heap_Type) < 0 || PyModule_AddObjectRef(m, "Heap", (PyObject *)&Heap_Type) < 0 ||
	    queue_types_init(m) < 0 || state_types_init(m) < 0 || chan_types_init(m) < 0) {
		Py_DECREF(m);
		return NULL;
	}
	shmq_set_interrupt_check(check_signals);
	return m;
}
