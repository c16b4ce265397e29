"""Pickling: how shmq objects travel to other processes, and the pickler of
messages.

A heap, queue or pipe end travels as its segment's file descriptor, through
multiprocessing.reduction.DupFd as the standard library's own objects do:
passed to the child when a process starts (spawn, forkserver), or fetched
from the sending process (its resource sharer) when sent through a Queue or
Pipe to a process that is already running. Objects of a heap travel as
(heap, name). A process opens each heap once (heaps are keyed by their
segment's device and inode), however many of its objects it receives.
"""
import copyreg
import io
import os
import pickle
import threading
from multiprocessing import reduction

from . import _shmq

# ------------------------------------------------------------------ pickler --

_table = None
_table_key = None


def _dispatch_table():
    """copyreg's table plus multiprocessing's reducers (connections, sockets,
    bound methods, shared ctypes), rebuilt when either gains an entry."""
    global _table, _table_key
    extra = reduction.ForkingPickler._extra_reducers
    key = (len(copyreg.dispatch_table), len(extra))
    if key != _table_key:
        table = copyreg.dispatch_table.copy()
        table.update(extra)
        _table, _table_key = table, key
    return _table


_local = threading.local()  # a pickler per thread, reused: making one costs more than most dumps


def dumps(obj):
    """obj pickled with protocol 5, as multiprocessing's ForkingPickler would."""
    table = _dispatch_table()
    cached = getattr(_local, "pickler", None)
    if cached is None or cached[2] is not table:
        buf = io.BytesIO()
        p = pickle.Pickler(buf, 5)
        p.dispatch_table = table
        cached = [p, buf, table]
    _local.pickler = None  # a dumps from inside this one (a __reduce__) makes its own
    p, buf = cached[0], cached[1]
    try:
        p.dump(obj)
        return buf.getvalue()
    finally:
        buf.seek(0)
        buf.truncate()
        p.clear_memo()
        _local.pickler = cached


loads = pickle.loads

# -------------------------------------------------------------------- heaps --

_heaps = {}        # key -> Heap, every heap this process has
_default = None    # the heap of objects this process makes


def default_heap():
    """The heap that Lock(), Value(), Manager().dict() ... of this process use."""
    global _default
    if _default is None:
        _default = _shmq.Heap()
        _heaps[_default.key()] = _default
    return _default


def _reduce_heap(heap):
    return _rebuild_heap, (reduction.DupFd(heap.fd()), heap.key())


def _rebuild_heap(dupfd, key):
    fd = dupfd.detach()
    try:
        heap = _heaps.get(key)
        if heap is None:
            heap = _heaps[key] = _shmq.Heap(fd)
        return heap
    finally:
        os.close(fd)


copyreg.pickle(_shmq.Heap, _reduce_heap)

# ------------------------------------------------------------ heap objects --


def reduce_state(obj, *args):
    """(rebuild, ...) for an object of a heap: its type, heap and name, and
    what its constructor takes besides."""
    return rebuild_state, (type(obj), obj._heap, obj._name(), args)


def rebuild_state(cls, heap, name, args):
    base = next(b for b in cls.__mro__ if b.__module__ == "shmq._shmq")
    obj = base.__new__(cls, heap, *args, name=name)
    if hasattr(obj, "_rebuilt"):
        obj._rebuilt()
    return obj


for _t in (_shmq.Lock, _shmq.Semaphore, _shmq.Event, _shmq.Array, _shmq.Dict, _shmq.List):
    copyreg.pickle(_t, reduce_state)


def fd_for_child(fd):
    """An fd as something picklable that gives a dup of it where unpickled."""
    return reduction.DupFd(fd)


def fd_from(dupfd):
    return -1 if dupfd is None else dupfd.detach()
