/* Shared state: Lock/RLock, Semaphore, Condition, Event, Barrier, Array (raw
 * shared memory for ctypes), Dict and List, each an object of a Heap.
 *
 * Every type is constructed as T(heap, ..., name=None): name None creates an
 * anonymous object, a name opens the existing one (how an unpickled object
 * comes back: the Python layer pickles (heap, name)). */
#include "_shmq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

/* One layout for every kind: the heap (kept alive), the handle, and what
 * some kinds add. */
typedef struct {
	PyObject_HEAD
	PyObject *heap;
	void *h;
	int recursive;          /* Lock */
	PyObject *action;       /* Barrier: run by the last to arrive */
	int64_t default_ns;     /* Barrier: its timeout */
	Py_ssize_t exports;     /* Array: buffers handed out */
} StateObject;

static shmq_heap *heap_of(PyObject *heap)
{
	if (!PyObject_TypeCheck(heap, &Heap_Type)) {
		PyErr_SetString(PyExc_TypeError, "the first argument must be a shmq Heap");
		return NULL;
	}
	return ((HeapObject *)heap)->heap;
}

static StateObject *state_alloc(PyTypeObject *type, PyObject *heap)
{
	StateObject *self = (StateObject *)type->tp_alloc(type, 0);
	if (self)
		self->heap = Py_NewRef(heap);
	return self;
}

/* The end of a constructor: the object, or NULL with the error of r. */
static PyObject *state_made(StateObject *self, int r)
{
	if (r < 0) {
		Py_DECREF(self);
		return raise_errno(r == -ENOENT ? -ENOENT : r);
	}
	return (PyObject *)self;
}

#define STATE_DEALLOC(kind)                                 \
	static void kind##_dealloc(StateObject *self)       \
	{                                                   \
		if (self->h)                                \
			shmq_##kind##_close(self->h);       \
		Py_XDECREF(self->action);                   \
		Py_XDECREF(self->heap);                     \
		Py_TYPE(self)->tp_free(self);               \
	}                                                   \
	static PyObject *kind##_name(StateObject *self, PyObject *unused) \
	{                                                   \
		return PyUnicode_FromString(shmq_##kind##_name(self->h)); \
	}
STATE_DEALLOC(lock)
STATE_DEALLOC(sem)
STATE_DEALLOC(cond)
STATE_DEALLOC(event)
STATE_DEALLOC(barrier)
STATE_DEALLOC(array)
STATE_DEALLOC(dict)
STATE_DEALLOC(list)

/* The constructor of a kind made from (heap, name=None) alone. */
#define PLAIN_NEW(kind, pyname)                                                              \
	static PyObject *kind##_new(PyTypeObject *type, PyObject *args, PyObject *kw)       \
	{                                                                                    \
		static char *names[] = { "heap", "name", NULL };                             \
		PyObject *heap;                                                              \
		const char *name = NULL;                                                     \
		if (!PyArg_ParseTupleAndKeywords(args, kw, "O|z:" pyname, names, &heap, &name)) \
			return NULL;                                                         \
		shmq_heap *h = heap_of(heap);                                                \
		StateObject *self = h ? state_alloc(type, heap) : NULL;                      \
		if (!self)                                                                   \
			return NULL;                                                         \
		int r = name ? shmq_##kind##_open(h, name, (shmq_##kind **)&self->h)         \
			     : shmq_##kind##_create(h, NULL, (shmq_##kind **)&self->h);      \
		return state_made(self, r);                                                  \
	}

static PyObject *get_heap(StateObject *self, void *unused)
{
	return Py_NewRef(self->heap);
}

static PyGetSetDef state_getset[] = {
	{ "_heap", (getter)get_heap, NULL, NULL, NULL },
	{ NULL }
};

/* A lock taken from a dead holder: warn (the data it guards may be half
 * updated), and count it as taken. Returns 0, or -1 if the warning raised. */
static int owner_died(void)
{
	return PyErr_WarnEx(refs.owner_died,
			    "the lock's previous holder died holding it: the state it guards may "
			    "be half-updated",
			    2);
}

/* ----------------------------------------------------------------- Lock -- */

static PyObject *Lock_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "heap", "recursive", "name", NULL };
	PyObject *heap;
	int recursive = 0;
	const char *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|pz:Lock", names, &heap, &recursive, &name))
		return NULL;
	shmq_heap *h = heap_of(heap);
	StateObject *self = h ? state_alloc(type, heap) : NULL;
	if (!self)
		return NULL;
	self->recursive = recursive;
	int r = name ? shmq_lock_open(h, name, (shmq_lock **)&self->h)
		     : shmq_lock_create(h, NULL, recursive ? SHMQ_RECURSIVE : 0,
					(shmq_lock **)&self->h);
	return state_made(self, r);
}

/* acquire(block=True, timeout=None) -> True if taken. */
static int lock_take(shmq_lock *l, int64_t ns)
{
	int r = shmq_lock_acquire(l, 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_lock_acquire(l, ns));
		if (interrupted(r < 0 && r != -EOWNERDEAD)) {
			if (r == 0 || r == -EOWNERDEAD)
				shmq_lock_release(l);
			return -1;
		}
	}
	if (r == -EOWNERDEAD)
		return owner_died() < 0 ? (shmq_lock_release(l), -1) : 1;
	if (r == -EAGAIN || r == -ETIMEDOUT)
		return 0;
	return r < 0 ? fail_errno(r) : 1;
}

static const char *const acquire_names[] = { "block", "timeout", NULL };

static PyObject *Lock_acquire(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			      PyObject *kwnames)
{
	PyObject *v[2] = { NULL, NULL };
	int64_t ns = PY_FOREVER_NS;
	if ((nargs || kwnames) && (parse_args("acquire", args, nargs, kwnames, acquire_names, 0, v) < 0 ||
				   timeout_of(v[0], v[1], &ns) < 0))
		return NULL;
	int r = lock_take(self->h, ns);
	return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *Lock_release(StateObject *self, PyObject *unused)
{
	int r = shmq_lock_release(self->h);
	if (r == -EPERM) {
		if (self->recursive)
			PyErr_SetString(PyExc_AssertionError,
					"attempt to release recursive lock not owned by thread");
		else
			PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
		return NULL;
	}
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_NONE;
}

static PyObject *Lock_enter(StateObject *self, PyObject *unused)
{
	int r = lock_take(self->h, PY_FOREVER_NS);
	return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *Lock_exit(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	return Lock_release(self, NULL);
}

static PyObject *Lock_is_mine(StateObject *self, PyObject *unused)
{
	return PyBool_FromLong(shmq_lock_is_mine(self->h) == 1);
}

static PyObject *Lock_held(StateObject *self, PyObject *unused)
{
	return PyBool_FromLong(shmq_lock_held(self->h) == 1);
}

#define FAST (METH_FASTCALL | METH_KEYWORDS)
#define FN(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef Lock_methods[] = {
	{ "acquire", FN(Lock_acquire), FAST, "acquire(block=True, timeout=None) -> bool" },
	{ "release", (PyCFunction)Lock_release, METH_NOARGS, "Release the lock." },
	{ "__enter__", (PyCFunction)Lock_enter, METH_NOARGS, NULL },
	{ "__exit__", FN(Lock_exit), METH_FASTCALL, NULL },
	{ "_is_mine", (PyCFunction)Lock_is_mine, METH_NOARGS, "Held by this thread?" },
	{ "_held", (PyCFunction)Lock_held, METH_NOARGS, "Held by anyone?" },
	{ "_name", (PyCFunction)lock_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ------------------------------------------------------------ Semaphore -- */

static PyObject *Sem_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "heap", "value", "max", "name", NULL };
	PyObject *heap;
	long long value = 1, max = 0;
	const char *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|LLz:Semaphore", names, &heap, &value, &max,
					 &name))
		return NULL;
	if (value < 0 || max < 0) {
		PyErr_SetString(PyExc_ValueError, "semaphore initial value must be >= 0");
		return NULL;
	}
	if (value > SHMQ_SEM_VALUE_MAX || max > SHMQ_SEM_VALUE_MAX) {
		PyErr_SetString(PyExc_OverflowError, "semaphore value too large");
		return NULL;
	}
	shmq_heap *h = heap_of(heap);
	StateObject *self = h ? state_alloc(type, heap) : NULL;
	if (!self)
		return NULL;
	int r = name ? shmq_sem_open(h, name, (shmq_sem **)&self->h)
		     : shmq_sem_create(h, NULL, (uint32_t)value, (uint32_t)max, 0,
				       (shmq_sem **)&self->h);
	return state_made(self, r);
}

static int sem_take(shmq_sem *s, int64_t ns)
{
	int r = shmq_sem_acquire(s, 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_sem_acquire(s, ns));
		if (interrupted(r < 0)) {
			if (r == 0)
				shmq_sem_release(s, 1);
			return -1;
		}
	}
	if (r == -EAGAIN || r == -ETIMEDOUT)
		return 0;
	return r < 0 ? fail_errno(r) : 1;
}

static PyObject *Sem_acquire(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	PyObject *v[2] = { NULL, NULL };
	int64_t ns;
	if (parse_args("acquire", args, nargs, kwnames, acquire_names, 0, v) < 0 ||
	    timeout_of(v[0], v[1], &ns) < 0)
		return NULL;
	int r = sem_take(self->h, ns);
	return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *Sem_release(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	long n = 1;
	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "release() takes at most 1 argument");
		return NULL;
	}
	if (nargs == 1 && ((n = PyLong_AsLong(args[0])) == -1 && PyErr_Occurred()))
		return NULL;
	if (n < 1 || n > (long)SHMQ_SEM_VALUE_MAX) {
		PyErr_SetString(PyExc_ValueError, "n must be one or more");
		return NULL;
	}
	int r = shmq_sem_release(self->h, (uint32_t)n);
	if (r == -EOVERFLOW) {
		PyErr_SetString(PyExc_ValueError, "semaphore or lock released too many times");
		return NULL;
	}
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_NONE;
}

static PyObject *Sem_enter(StateObject *self, PyObject *unused)
{
	int r = sem_take(self->h, PY_FOREVER_NS);
	return r < 0 ? NULL : PyBool_FromLong(r);
}

static PyObject *Sem_exit(StateObject *self, PyObject *args)
{
	return Sem_release(self, NULL, 0);
}

static PyObject *Sem_get_value(StateObject *self, PyObject *unused)
{
	return PyLong_FromLong(shmq_sem_value(self->h));
}

static PyObject *Sem_max(StateObject *self, PyObject *unused)
{
	return PyLong_FromLong(shmq_sem_max(self->h));
}

static PyMethodDef Sem_methods[] = {
	{ "acquire", FN(Sem_acquire), FAST, "acquire(block=True, timeout=None) -> bool" },
	{ "release", FN(Sem_release), METH_FASTCALL, "release(n=1)" },
	{ "__enter__", (PyCFunction)Sem_enter, METH_NOARGS, NULL },
	{ "__exit__", (PyCFunction)Sem_exit, METH_VARARGS, NULL },
	{ "get_value", (PyCFunction)Sem_get_value, METH_NOARGS, "The units available now." },
	{ "_max", (PyCFunction)Sem_max, METH_NOARGS, NULL },
	{ "_name", (PyCFunction)sem_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ------------------------------------------------------------ Condition -- */

static PyTypeObject Lock_Type;

/* Condition(heap, lock, name=None): over lock, a Lock of the same heap. */
static PyObject *Cond_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "heap", "lock", "name", NULL };
	PyObject *heap, *lock;
	const char *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OO!|z:Condition", names, &heap, &Lock_Type,
					 &lock, &name))
		return NULL;
	shmq_heap *h = heap_of(heap);
	StateObject *self = h ? state_alloc(type, heap) : NULL;
	if (!self)
		return NULL;
	int r = name ? shmq_cond_open(h, name, (shmq_cond **)&self->h)
		     : shmq_cond_create(h, NULL, ((StateObject *)lock)->h, (shmq_cond **)&self->h);
	return state_made(self, r);
}

static PyObject *Cond_wait(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			   PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns;
	if (parse_args("wait", args, nargs, kwnames, names, 0, v) < 0 || timeout_ns(v[0], &ns) < 0)
		return NULL;
	int r;
	BLOCKING(r, shmq_cond_wait(self->h, ns));
	if (interrupted(r != 0 && r != -EOWNERDEAD))
		return NULL;
	if (r == -EPERM) {
		PyErr_SetString(PyExc_AssertionError, "must acquire() condition before using wait()");
		return NULL;
	}
	if (r == -EOWNERDEAD) {
		if (owner_died() < 0)
			return NULL;
		Py_RETURN_TRUE;
	}
	if (r == -ETIMEDOUT || r == -EAGAIN)
		Py_RETURN_FALSE;
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_TRUE;
}

static PyObject *notified(int r)
{
	if (r == -EPERM) {
		PyErr_SetString(PyExc_AssertionError, "lock is not owned");
		return NULL;
	}
	if (r < 0)
		return raise_errno(r);
	Py_RETURN_NONE;
}

static PyObject *Cond_notify(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			     PyObject *kwnames)
{
	static const char *const names[] = { "n", NULL };
	PyObject *v[1] = { NULL };
	long n = 1;
	if (parse_args("notify", args, nargs, kwnames, names, 0, v) < 0 ||
	    (v[0] && (n = PyLong_AsLong(v[0])) == -1 && PyErr_Occurred()))
		return NULL;
	if (n < 0)
		n = 0;
	return notified(shmq_cond_notify(self->h, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n));
}

static PyObject *Cond_notify_all(StateObject *self, PyObject *unused)
{
	return notified(shmq_cond_notify_all(self->h));
}

static PyMethodDef Cond_methods[] = {
	{ "wait", FN(Cond_wait), FAST, "wait(timeout=None) -> False if it timed out" },
	{ "notify", FN(Cond_notify), FAST, "notify(n=1)" },
	{ "notify_all", (PyCFunction)Cond_notify_all, METH_NOARGS, "Wake every waiter." },
	{ "_name", (PyCFunction)cond_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ---------------------------------------------------------------- Event -- */

PLAIN_NEW(event, "Event")

static PyObject *Event_set(StateObject *self, PyObject *unused)
{
	shmq_event_set(self->h);
	Py_RETURN_NONE;
}

static PyObject *Event_clear(StateObject *self, PyObject *unused)
{
	shmq_event_clear(self->h);
	Py_RETURN_NONE;
}

static PyObject *Event_is_set(StateObject *self, PyObject *unused)
{
	return PyBool_FromLong(shmq_event_is_set(self->h) == 1);
}

static PyObject *Event_wait(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			    PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns;
	if (parse_args("wait", args, nargs, kwnames, names, 0, v) < 0 || timeout_ns(v[0], &ns) < 0)
		return NULL;
	int r = shmq_event_wait(self->h, 0);
	if (r == -EAGAIN && ns > 0) {
		BLOCKING(r, shmq_event_wait(self->h, ns));
		if (interrupted(r < 0))
			return NULL;
	}
	if (r < 0 && r != -EAGAIN && r != -ETIMEDOUT)
		return raise_errno(r);
	return PyBool_FromLong(r == 0);
}

static PyMethodDef Event_methods[] = {
	{ "set", (PyCFunction)Event_set, METH_NOARGS, "Set the flag; wake every waiter." },
	{ "clear", (PyCFunction)Event_clear, METH_NOARGS, "Clear the flag." },
	{ "is_set", (PyCFunction)Event_is_set, METH_NOARGS, "The flag." },
	{ "wait", FN(Event_wait), FAST, "wait(timeout=None) -> the flag" },
	{ "_name", (PyCFunction)event_name, METH_NOARGS, NULL },
	{ NULL }
};

/* -------------------------------------------------------------- Barrier -- */

/* Barrier(heap, parties, action=None, timeout=None, name=None). */
static PyObject *Barrier_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "heap", "parties", "action", "timeout", "name", NULL };
	PyObject *heap, *action = Py_None, *timeout = Py_None;
	long long parties = 0;
	const char *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "OL|OOz:Barrier", names, &heap, &parties,
					 &action, &timeout, &name))
		return NULL;
	if (!name && (parties < 1 || parties > SHMQ_BARRIER_MAX_PARTIES)) {
		PyErr_SetString(PyExc_ValueError, "parties must be 1 .. 1024");
		return NULL;
	}
	shmq_heap *h = heap_of(heap);
	StateObject *self = h ? state_alloc(type, heap) : NULL;
	if (!self)
		return NULL;
	self->action = action == Py_None ? NULL : Py_NewRef(action);
	if (timeout_ns(timeout, &self->default_ns) < 0) {
		Py_DECREF(self);
		return NULL;
	}
	int r = name ? shmq_barrier_open(h, name, (shmq_barrier **)&self->h)
		     : shmq_barrier_create(h, NULL, (uint32_t)parties, (shmq_barrier **)&self->h);
	return state_made(self, r);
}

struct barrier_action {
	PyObject *action;
	shmq_barrier *b;
	PyObject *exc[3]; /* what the action raised: type, value, traceback */
};

/* Runs in the last arriver, without the GIL: an action that raises breaks
 * the barrier, and its exception goes to that caller (as in threading). */
static void run_action(void *arg)
{
	struct barrier_action *a = arg;
	PyGILState_STATE g = PyGILState_Ensure();
	PyObject *r = PyObject_CallNoArgs(a->action);
	if (r)
		Py_DECREF(r);
	else
		PyErr_Fetch(&a->exc[0], &a->exc[1], &a->exc[2]);
	PyGILState_Release(g);
	if (!r)
		shmq_barrier_abort(a->b);
}

static PyObject *Barrier_wait(StateObject *self, PyObject *const *args, Py_ssize_t nargs,
			      PyObject *kwnames)
{
	static const char *const names[] = { "timeout", NULL };
	PyObject *v[1] = { NULL };
	int64_t ns = self->default_ns;
	if (parse_args("wait", args, nargs, kwnames, names, 0, v) < 0 ||
	    (v[0] && v[0] != Py_None && timeout_ns(v[0], &ns) < 0))
		return NULL;
	struct barrier_action a = { self->action, self->h, { NULL, NULL, NULL } };
	int r;
	BLOCKING(r, a.action ? shmq_barrier_wait_action(self->h, run_action, &a, ns)
			     : shmq_barrier_wait(self->h, ns));
	if (a.exc[0]) {
		shmq_interrupted();
		PyErr_Restore(a.exc[0], a.exc[1], a.exc[2]);
		return NULL;
	}
	if (interrupted(r < 0))
		return NULL;
	if (r == -ECANCELED || r == -ETIMEDOUT || r == -EAGAIN) {
		PyErr_SetNone(refs.broken_barrier);
		return NULL;
	}
	return r < 0 ? raise_errno(r) : PyLong_FromLong(r);
}

static PyObject *Barrier_abort(StateObject *self, PyObject *unused)
{
	shmq_barrier_abort(self->h);
	Py_RETURN_NONE;
}

static PyObject *Barrier_reset(StateObject *self, PyObject *unused)
{
	shmq_barrier_reset(self->h);
	Py_RETURN_NONE;
}

static PyObject *Barrier_parties(StateObject *self, void *unused)
{
	return PyLong_FromLong(shmq_barrier_parties(self->h));
}

static PyObject *Barrier_n_waiting(StateObject *self, void *unused)
{
	return PyLong_FromLong(shmq_barrier_n_waiting(self->h));
}

static PyObject *Barrier_broken(StateObject *self, void *unused)
{
	return PyBool_FromLong(shmq_barrier_broken(self->h) == 1);
}

static PyObject *Barrier_action(StateObject *self, void *unused)
{
	return Py_NewRef(self->action ? self->action : Py_None);
}

static PyObject *Barrier_timeout(StateObject *self, void *unused)
{
	if (self->default_ns >= PY_FOREVER_NS)
		Py_RETURN_NONE;
	return PyFloat_FromDouble((double)self->default_ns / 1e9);
}

static PyMethodDef Barrier_methods[] = {
	{ "wait", FN(Barrier_wait), FAST, "wait(timeout=None) -> this party's index" },
	{ "abort", (PyCFunction)Barrier_abort, METH_NOARGS, "Break the barrier." },
	{ "reset", (PyCFunction)Barrier_reset, METH_NOARGS, "Make it usable again." },
	{ "_name", (PyCFunction)barrier_name, METH_NOARGS, NULL },
	{ NULL }
};

static PyGetSetDef Barrier_getset[] = {
	{ "parties", (getter)Barrier_parties, NULL, "Parties needed to pass.", NULL },
	{ "n_waiting", (getter)Barrier_n_waiting, NULL, "Parties waiting now.", NULL },
	{ "broken", (getter)Barrier_broken, NULL, "True if broken.", NULL },
	{ "_action", (getter)Barrier_action, NULL, NULL, NULL },
	{ "_timeout", (getter)Barrier_timeout, NULL, NULL, NULL },
	{ "_heap", (getter)get_heap, NULL, NULL, NULL },
	{ NULL }
};

/* ---------------------------------------------------------------- Array -- */

/* Array(heap, size, name=None): size bytes of zero-filled shared memory,
 * exported through the buffer protocol (ctypes' from_buffer maps types on
 * it). No lock: the Python layer pairs it with an RLock as it asks. */
static PyObject *Array_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
	static char *names[] = { "heap", "size", "name", NULL };
	PyObject *heap;
	Py_ssize_t size = 0;
	const char *name = NULL;
	if (!PyArg_ParseTupleAndKeywords(args, kw, "O|nz:Array", names, &heap, &size, &name))
		return NULL;
	if (!name && size < 0) {
		PyErr_SetString(PyExc_ValueError, "negative size");
		return NULL;
	}
	shmq_heap *h = heap_of(heap);
	StateObject *self = h ? state_alloc(type, heap) : NULL;
	if (!self)
		return NULL;
	/* A zero-length ctypes array still needs memory of its own. */
	int r = name ? shmq_array_open(h, name, (shmq_array **)&self->h)
		     : shmq_array_create(h, NULL, size ? (size_t)size : 1, SHMQ_NOLOCK,
					 (shmq_array **)&self->h);
	return state_made(self, r);
}

static int Array_getbuffer(StateObject *self, Py_buffer *view, int flags)
{
	int r = PyBuffer_FillInfo(view, (PyObject *)self, shmq_array_data(self->h),
				  (Py_ssize_t)shmq_array_size(self->h), 0, flags);
	if (r == 0)
		self->exports++;
	return r;
}

static void Array_releasebuffer(StateObject *self, Py_buffer *view)
{
	self->exports--;
}

static PyBufferProcs Array_as_buffer = {
	.bf_getbuffer = (getbufferproc)Array_getbuffer,
	.bf_releasebuffer = (releasebufferproc)Array_releasebuffer,
};

static Py_ssize_t Array_len(StateObject *self)
{
	return (Py_ssize_t)shmq_array_size(self->h);
}

static PySequenceMethods Array_as_sequence = { .sq_length = (lenfunc)Array_len };

static PyMethodDef Array_methods[] = {
	{ "_name", (PyCFunction)array_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ----------------------------------------------------------------- Dict -- */

PLAIN_NEW(dict, "Dict")

/* A dict key: a bool or an integral float as the int it equals (Python's
 * dict makes True, 1 and 1.0 one key; encoded bytes would not). */
static int flatten_key(PyObject *key, struct flat *f)
{
	PyObject *canon = NULL;
	if (PyBool_Check(key)) {
		canon = PyLong_FromLong(key == Py_True);
	} else if (PyFloat_CheckExact(key)) {
		double v = PyFloat_AS_DOUBLE(key);
		if (v == v && v - v == 0 && v == (double)(long long)v && v > -9.2e18 && v < 9.2e18)
			canon = PyLong_FromLongLong((long long)v);
	}
	if (!canon)
		return PyErr_Occurred() ? -1 : flatten(key, f);
	int r = flatten(canon, f);
	Py_DECREF(canon);
	return r;
}


/* A value read by fetch(ctx, buf, cap) -> length or -errno, retried with a
 * bigger buffer while it says -EMSGSIZE. Returns the decoded object, or NULL
 * with the error of the last call in *err (0: a Python exception is set). */
typedef ssize_t (*fetch_fn)(void *ctx, void *buf, size_t cap);

static PyObject *fetch_value(fetch_fn fetch, void *ctx, int *err)
{
	char stack[4096];
	char *buf = stack;
	size_t cap = sizeof(stack);
	ssize_t r;
	while ((r = fetch(ctx, buf, cap)) == -EMSGSIZE) {
		if (buf != stack)
			free(buf);
		cap *= 4;
		buf = malloc(cap);
		if (!buf) {
			*err = 0;
			return PyErr_NoMemory();
		}
	}
	PyObject *obj = NULL;
	*err = r < 0 ? (int)r : 0;
	if (r >= 0)
		obj = decode(buf, (size_t)r);
	if (buf != stack)
		free(buf);
	return obj;
}

struct dict_op {
	shmq_dict *d;
	struct flat *k;
	int pop;
};

static ssize_t dict_fetch(void *arg, void *buf, size_t cap)
{
	struct dict_op *o = arg;
	return (o->pop ? shmq_dict_pop : shmq_dict_get)(o->d, o->k->p, o->k->len, buf, cap);
}

/* d[key], or dflt (a new reference; NULL: raise KeyError) if absent. */
static PyObject *dict_read(StateObject *self, PyObject *key, PyObject *dflt, int pop)
{
	struct flat k;
	if (flatten_key(key, &k) < 0)
		return NULL;
	struct dict_op o = { self->h, &k, pop };
	int err;
	PyObject *v = fetch_value(dict_fetch, &o, &err);
	flat_release(&k);
	if (v || !err)
		return v;
	if (err == -ENOENT) {
		if (dflt)
			return Py_NewRef(dflt);
		PyErr_SetObject(PyExc_KeyError, key);
		return NULL;
	}
	return raise_errno(err);
}

static PyObject *Dict_subscript(StateObject *self, PyObject *key)
{
	return dict_read(self, key, NULL, 0);
}

/* set (insert: only if absent, returns 1 if it was, 0 if not). */
static int dict_write(StateObject *self, PyObject *key, PyObject *value, int insert)
{
	struct flat k, v;
	if (flatten_key(key, &k) < 0)
		return -1;
	if (flatten(value, &v) < 0) {
		flat_release(&k);
		return -1;
	}
	int r = (insert ? shmq_dict_insert : shmq_dict_set)(self->h, k.p, k.len, v.p, v.len);
	flat_release(&k);
	flat_release(&v);
	if (insert && r == -EEXIST)
		return 0;
	return r < 0 ? fail_errno(r) : 1;
}

static int Dict_ass_subscript(StateObject *self, PyObject *key, PyObject *value)
{
	if (value)
		return dict_write(self, key, value, 0) < 0 ? -1 : 0;
	struct flat k;
	if (flatten_key(key, &k) < 0)
		return -1;
	int r = shmq_dict_del(self->h, k.p, k.len);
	flat_release(&k);
	if (r == -ENOENT) {
		PyErr_SetObject(PyExc_KeyError, key);
		return -1;
	}
	return r < 0 ? fail_errno(r) : 0;
}

static Py_ssize_t Dict_len(StateObject *self)
{
	ssize_t r = shmq_dict_len(self->h);
	return r < 0 ? fail_errno((int)r) : r;
}

static int Dict_contains(StateObject *self, PyObject *key)
{
	struct flat k;
	if (flatten_key(key, &k) < 0)
		return -1;
	ssize_t r = shmq_dict_get(self->h, k.p, k.len, NULL, 0);
	flat_release(&k);
	if (r == -ENOENT)
		return 0;
	return r >= 0 || r == -EMSGSIZE ? 1 : fail_errno((int)r);
}

static PyObject *Dict_get(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs < 1 || nargs > 2) {
		PyErr_SetString(PyExc_TypeError, "get() takes a key and an optional default");
		return NULL;
	}
	return dict_read(self, args[0], nargs > 1 ? args[1] : Py_None, 0);
}

static PyObject *Dict_pop(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs < 1 || nargs > 2) {
		PyErr_SetString(PyExc_TypeError, "pop() takes a key and an optional default");
		return NULL;
	}
	return dict_read(self, args[0], nargs > 1 ? args[1] : NULL, 1);
}

/* setdefault(key, default=None): one atomic insert-if-absent, then a read. */
static PyObject *Dict_setdefault(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs < 1 || nargs > 2) {
		PyErr_SetString(PyExc_TypeError, "setdefault() takes a key and an optional default");
		return NULL;
	}
	PyObject *dflt = nargs > 1 ? args[1] : Py_None;
	for (;;) {
		int r = dict_write(self, args[0], dflt, 1);
		if (r < 0)
			return NULL;
		if (r == 1)
			return Py_NewRef(dflt);
		PyObject *v = dict_read(self, args[0], NULL, 0);
		if (v || !PyErr_ExceptionMatches(PyExc_KeyError))
			return v;
		PyErr_Clear(); /* deleted meanwhile: insert again */
	}
}

/* _replace(key, old, new): set key to new only if it holds old now (compare
 * and swap on the encoded bytes). True if it did. */
static PyObject *Dict_replace(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 3) {
		PyErr_SetString(PyExc_TypeError, "_replace() takes key, old, new");
		return NULL;
	}
	struct flat k, o, n;
	if (flatten_key(args[0], &k) < 0)
		return NULL;
	if (flatten(args[1], &o) < 0) {
		flat_release(&k);
		return NULL;
	}
	if (flatten(args[2], &n) < 0) {
		flat_release(&k);
		flat_release(&o);
		return NULL;
	}
	int r = shmq_dict_cas(self->h, k.p, k.len, o.p, o.len, n.p, n.len);
	flat_release(&k);
	flat_release(&o);
	flat_release(&n);
	if (r == -ENOENT) {
		PyErr_SetObject(PyExc_KeyError, args[0]);
		return NULL;
	}
	if (r == -EAGAIN)
		Py_RETURN_FALSE;
	return r < 0 ? raise_errno(r) : Py_NewRef(Py_True);
}

static PyObject *Dict_clear(StateObject *self, PyObject *unused)
{
	int r = shmq_dict_clear(self->h);
	return r < 0 ? raise_errno(r) : Py_NewRef(Py_None);
}

/* _items(): a list of (key, value) pairs in insertion order, as a Python
 * dict gives them: a walk that sees every key present throughout exactly
 * once, sorted by the keys' insertion sequence. */
struct item {
	uint64_t seq;
	PyObject *pair;
};

static int item_order(const void *a, const void *b)
{
	uint64_t x = ((const struct item *)a)->seq, y = ((const struct item *)b)->seq;
	return x < y ? -1 : x > y;
}

static PyObject *Dict_items(StateObject *self, PyObject *unused)
{
	size_t kcap = 1024, vcap = 4096, n = 0, cap = 0;
	char *kb = malloc(kcap), *vb = malloc(vcap);
	struct item *items = NULL;
	PyObject *list = NULL;
	uint64_t cursor = 0;
	if (!kb || !vb)
		goto nomem;
	for (;;) {
		struct iovec k = { kb, kcap }, v = { vb, vcap };
		uint64_t seq;
		int r = shmq_dict_next_seq(self->h, &cursor, &k, &v, &seq);
		if (r == 0)
			break;
		if (r == -EMSGSIZE) {
			if (k.iov_len > kcap) {
				free(kb);
				kcap = k.iov_len;
				kb = malloc(kcap);
			}
			if (v.iov_len > vcap) {
				free(vb);
				vcap = v.iov_len;
				vb = malloc(vcap);
			}
			if (!kb || !vb)
				goto nomem;
			continue;
		}
		if (r < 0) {
			raise_errno(r);
			goto out;
		}
		if (n == cap) {
			struct item *more = realloc(items, (cap = cap ? cap * 2 : 64) * sizeof(*items));
			if (!more)
				goto nomem;
			items = more;
		}
		PyObject *key = decode(kb, k.iov_len);
		PyObject *val = key ? decode(vb, v.iov_len) : NULL;
		items[n].pair = val ? PyTuple_Pack(2, key, val) : NULL;
		items[n].seq = seq;
		Py_XDECREF(key);
		Py_XDECREF(val);
		if (!items[n].pair)
			goto out;
		n++;
	}
	if (n)
		qsort(items, n, sizeof(*items), item_order);
	if (!(list = PyList_New((Py_ssize_t)n)))
		goto out;
	for (size_t i = 0; i < n; i++)
		PyList_SET_ITEM(list, (Py_ssize_t)i, items[i].pair); /* steals it */
	n = 0;
	goto out;
nomem:
	PyErr_NoMemory();
out:
	for (size_t i = 0; i < n; i++)
		Py_DECREF(items[i].pair);
	free(items);
	free(kb);
	free(vb);
	return list;
}

static PyMappingMethods Dict_as_mapping = {
	.mp_length = (lenfunc)Dict_len,
	.mp_subscript = (binaryfunc)Dict_subscript,
	.mp_ass_subscript = (objobjargproc)Dict_ass_subscript,
};

static PySequenceMethods Dict_as_sequence = { .sq_contains = (objobjproc)Dict_contains };

static PyMethodDef Dict_methods[] = {
	{ "get", FN(Dict_get), METH_FASTCALL, "get(key, default=None)" },
	{ "pop", FN(Dict_pop), METH_FASTCALL, "pop(key[, default]): remove and return." },
	{ "setdefault", FN(Dict_setdefault), METH_FASTCALL, "setdefault(key, default=None)" },
	{ "clear", (PyCFunction)Dict_clear, METH_NOARGS, "Remove every key." },
	{ "_replace", FN(Dict_replace), METH_FASTCALL, "_replace(key, old, new) -> swapped?" },
	{ "_items", (PyCFunction)Dict_items, METH_NOARGS, "(key, value) pairs, in insertion order." },
	{ "_name", (PyCFunction)dict_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ----------------------------------------------------------------- List -- */

PLAIN_NEW(list, "List")

static int list_error(int r)
{
	if (r == -ERANGE) {
		PyErr_SetString(PyExc_IndexError, "list index out of range");
		return -1;
	}
	return fail_errno(r);
}

static Py_ssize_t List_len(StateObject *self)
{
	ssize_t r = shmq_list_len(self->h);
	return r < 0 ? fail_errno((int)r) : r;
}

struct list_op {
	shmq_list *l;
	int64_t index;
	int pop;
};

static ssize_t list_fetch(void *arg, void *buf, size_t cap)
{
	struct list_op *o = arg;
	return (o->pop ? shmq_list_pop : shmq_list_get)(o->l, o->index, buf, cap);
}

static PyObject *list_read(StateObject *self, Py_ssize_t index, int pop)
{
	struct list_op o = { self->h, index, pop };
	int err;
	PyObject *v = fetch_value(list_fetch, &o, &err);
	if (!v && err)
		list_error(err);
	return v;
}

/* The sequence protocol adds len() to negative indexes first: the list may
 * have changed since, so take indexes as given through the mapping protocol. */
static PyObject *List_subscript(StateObject *self, PyObject *index)
{
	Py_ssize_t i = PyNumber_AsSsize_t(index, PyExc_IndexError);
	if (i == -1 && PyErr_Occurred())
		return NULL;
	return list_read(self, i, 0);
}

static int List_ass_subscript(StateObject *self, PyObject *index, PyObject *value)
{
	Py_ssize_t i = PyNumber_AsSsize_t(index, PyExc_IndexError);
	if (i == -1 && PyErr_Occurred())
		return -1;
	int r;
	if (!value) {
		r = shmq_list_del(self->h, i);
	} else {
		struct flat v;
		if (flatten(value, &v) < 0)
			return -1;
		r = shmq_list_set(self->h, i, v.p, v.len);
		flat_release(&v);
	}
	return r < 0 ? list_error(r) : 0;
}

static PyObject *List_append(StateObject *self, PyObject *value)
{
	struct flat v;
	if (flatten(value, &v) < 0)
		return NULL;
	int r = shmq_list_append(self->h, v.p, v.len);
	flat_release(&v);
	return r < 0 ? (list_error(r), NULL) : Py_NewRef(Py_None);
}

static PyObject *List_insert(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	if (nargs != 2) {
		PyErr_SetString(PyExc_TypeError, "insert() takes an index and a value");
		return NULL;
	}
	Py_ssize_t i = PyNumber_AsSsize_t(args[0], PyExc_OverflowError);
	if (i == -1 && PyErr_Occurred())
		return NULL;
	struct flat v;
	if (flatten(args[1], &v) < 0)
		return NULL;
	int r = shmq_list_insert(self->h, i, v.p, v.len);
	flat_release(&v);
	return r < 0 ? (list_error(r), NULL) : Py_NewRef(Py_None);
}

static PyObject *List_pop(StateObject *self, PyObject *const *args, Py_ssize_t nargs)
{
	Py_ssize_t i = -1;
	if (nargs > 1) {
		PyErr_SetString(PyExc_TypeError, "pop() takes at most 1 argument");
		return NULL;
	}
	if (nargs == 1 && (i = PyNumber_AsSsize_t(args[0], PyExc_IndexError)) == -1 &&
	    PyErr_Occurred())
		return NULL;
	PyObject *v = list_read(self, i, 1);
	if (!v && PyErr_ExceptionMatches(PyExc_IndexError) && shmq_list_len(self->h) == 0) {
		PyErr_Clear();
		PyErr_SetString(PyExc_IndexError, "pop from empty list");
	}
	return v;
}

static PyObject *List_clear(StateObject *self, PyObject *unused)
{
	int r = shmq_list_clear(self->h);
	return r < 0 ? raise_errno(r) : Py_NewRef(Py_None);
}

static PyMappingMethods List_as_mapping = {
	.mp_length = (lenfunc)List_len,
	.mp_subscript = (binaryfunc)List_subscript,
	.mp_ass_subscript = (objobjargproc)List_ass_subscript,
};

static PyMethodDef List_methods[] = {
	{ "append", (PyCFunction)List_append, METH_O, "Append a value." },
	{ "insert", FN(List_insert), METH_FASTCALL, "insert(index, value)" },
	{ "pop", FN(List_pop), METH_FASTCALL, "pop(index=-1)" },
	{ "clear", (PyCFunction)List_clear, METH_NOARGS, "Remove every value." },
	{ "_name", (PyCFunction)list_name, METH_NOARGS, NULL },
	{ NULL }
};

/* ---------------------------------------------------------------- types -- */

#define STATE_TYPE(var, pyname, newf, kind, doc)                 \
	static PyTypeObject var = {                              \
		PyVarObject_HEAD_INIT(NULL, 0).tp_name = "shmq._shmq." pyname, \
		.tp_basicsize = sizeof(StateObject),             \
		.tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, \
		.tp_doc = doc,                                   \
		.tp_new = newf,                                  \
		.tp_dealloc = (destructor)kind##_dealloc,        \
		.tp_getset = state_getset,                       \
	}
STATE_TYPE(Lock_Type, "Lock", Lock_new, lock, "Lock(heap, recursive=False, name=None)");
STATE_TYPE(Sem_Type, "Semaphore", Sem_new, sem, "Semaphore(heap, value=1, max=0, name=None)");
STATE_TYPE(Cond_Type, "Condition", Cond_new, cond, "Condition(heap, lock, name=None)");
STATE_TYPE(Event_Type, "Event", event_new, event, "Event(heap, name=None)");
STATE_TYPE(Barrier_Type, "Barrier", Barrier_new, barrier,
	   "Barrier(heap, parties, action=None, timeout=None, name=None)");
STATE_TYPE(Array_Type, "Array", Array_new, array, "Array(heap, size, name=None): shared bytes");
STATE_TYPE(Dict_Type, "Dict", dict_new, dict, "Dict(heap, name=None)");
STATE_TYPE(List_Type, "List", list_new, list, "List(heap, name=None)");

int state_types_init(PyObject *m)
{
	Lock_Type.tp_methods = Lock_methods;
	Sem_Type.tp_methods = Sem_methods;
	Cond_Type.tp_methods = Cond_methods;
	Event_Type.tp_methods = Event_methods;
	Barrier_Type.tp_methods = Barrier_methods;
	Barrier_Type.tp_getset = Barrier_getset;
	Array_Type.tp_methods = Array_methods;
	Array_Type.tp_as_buffer = &Array_as_buffer;
	Array_Type.tp_as_sequence = &Array_as_sequence;
	Dict_Type.tp_methods = Dict_methods;
	Dict_Type.tp_as_mapping = &Dict_as_mapping;
	Dict_Type.tp_as_sequence = &Dict_as_sequence;
	List_Type.tp_methods = List_methods;
	List_Type.tp_as_mapping = &List_as_mapping;
	PyTypeObject *types[] = { &Lock_Type,  &Sem_Type,   &Cond_Type, &Event_Type,
				  &Barrier_Type, &Array_Type, &Dict_Type, &List_Type };
	for (size_t i = 0; i < sizeof(types) / sizeof(*types); i++) {
		const char *dot = strrchr(types[i]->tp_name, '.');
		if (PyType_Ready(types[i]) < 0 ||
		    PyModule_AddObjectRef(m, dot + 1, (PyObject *)types[i]) < 0)
			return -1;
	}
	return 0;
}
