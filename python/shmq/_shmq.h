/* The C extension shmq._shmq: what its files share. It binds libshmq; what
 * is naturally Python (pickling of handles, proxies' protocols, contexts)
 * lives in the package's .py files. */
#ifndef SHMQ_PY_H
#define SHMQ_PY_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <shmq.h>
#include <stdbool.h>
#include <stdint.h>

/* "Forever" as a finite timeout, so that a wait stays interruptible
 * (shmq_set_interrupt_check: waits with timeout -1 are never cut). */
#define PY_FOREVER_NS (INT64_MAX / 4)

/* Exceptions and helpers the Python layer hands over at import
 * (_shmq._setup): queue.Empty, queue.Full, the pickler's dumps and loads,
 * threading.BrokenBarrierError, multiprocessing.BufferTooShort and
 * shmq.OwnerDiedWarning. */
struct py_refs {
	PyObject *empty, *full, *dumps, *loads, *broken_barrier, *buffer_too_short,
		*owner_died, *task_lost;
};
extern struct py_refs refs;

/* ---------------------------------------------------------------- calls -- */

/* Arguments of a METH_FASTCALL|METH_KEYWORDS method by name: names lists
 * them in order (NULL-terminated), vals gets each one given (the others
 * untouched, so callers preset defaults). The first min are required. */
int parse_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
	       const char *const *names, int min, PyObject **vals);

/* multiprocessing's (block, timeout) as a shmq timeout in ns: block false is 0,
 * timeout None forever (PY_FOREVER_NS), a negative timeout 0.
 * Returns 0 or -1 with TypeError/ValueError set. */
int timeout_of(PyObject *block, PyObject *timeout, int64_t *ns);
/* The same for a bare timeout (None: forever). */
int timeout_ns(PyObject *timeout, int64_t *ns);

/* Run a blocking shmq call with the GIL released, interruptible by signals:
 * the expression is evaluated without the GIL; afterwards INTERRUPTED()
 * says whether a signal handler raised (its exception is then set). */
extern _Thread_local int py_in_call;
#define BLOCKING(r, call)                   \
	do {                                \
		py_in_call = 1;             \
		Py_BEGIN_ALLOW_THREADS;     \
		r = (call);                 \
		Py_END_ALLOW_THREADS;       \
		py_in_call = 0;             \
	} while (0)
/* After BLOCKING: 1 if a signal handler raised during it (exception set).
 * A call that succeeded anyway keeps its result: the exception is then
 * deferred (KeyboardInterrupt is raised again at the next check). */
int interrupted(int result_failed);

/* Raise the exception for -err (OSError with errno, ValueError for EINVAL,
 * MemoryError for ENOMEM/ENOSPC). Returns NULL. */
PyObject *raise_errno(int err);
/* The same returning -1, for int-returning helpers. */
int fail_errno(int err);

/* ---------------------------------------------------------------- codec -- */

/* An object as a message: head (a tag and small payload, or nothing for a
 * pickle, which starts with its own PROTO byte 0x80) then body.
 * bytes, str and int take a fast path without pickle; containers and floats
 * of built-in types only (tuple, list, dict, set, float ...) go through
 * marshal, 5-10 times cheaper than pickle, and anything marshal refuses
 * through pickle. TAG_BIG is a queue's: the message is in a heap object
 * (see _queue.c). */
enum { TAG_BYTES = 1, TAG_STR = 2, TAG_INT = 3, TAG_MARSHAL = 4, TAG_BIG = 5 };
struct encoded {
	unsigned char head[9];
	size_t head_len;
	const char *body;
	size_t body_len;
	PyObject *owner; /* holds body (a reference), or NULL */
};
int encode(PyObject *obj, struct encoded *e); /* 0, or -1 with an exception */
void encoded_release(struct encoded *e);
static inline size_t encoded_len(const struct encoded *e)
{
	return e->head_len + e->body_len;
}
/* head then body, into buf (encoded_len bytes). */
void encoded_copy(const struct encoded *e, void *buf);
PyObject *decode(const void *buf, size_t len);

/* An encoded object in one contiguous buffer (what shmq_put, shmq_send and
 * the dict and list take): on the stack up to its size, else malloc'ed. */
struct flat {
	char stack[4096];
	char *p;
	size_t len;
};
int flatten_encoded(const struct encoded *e, struct flat *f); /* 0, or -1: MemoryError */
int flatten(PyObject *obj, struct flat *f);                   /* 0, or -1 with an exception */
void flat_release(struct flat *f);

/* ----------------------------------------------------------------- types -- */

typedef struct {
	PyObject_HEAD
	shmq_heap *heap;
} HeapObject;
extern PyTypeObject Heap_Type;

int queue_types_init(PyObject *m); /* _queue.c: Queue, Connection, wait */
int state_types_init(PyObject *m); /* _state.c: locks ... dict, list */
int chan_types_init(PyObject *m);  /* _chan.c: Chan (CSP channel ends), alt */

#endif
