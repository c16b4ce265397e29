"""Pickling: how shmq objects travel to other processes, and the pickler of
messages.

A heap, queue or pipe end travels as a reference to its segment's file
descriptor (FdRef), keyed by the segment's device and inode: a process that
has the segment already (a forked worker, or one that received another
object of the same heap) uses its own; a child being started (spawn,
forkserver) gets the fd passed with it, as multiprocessing's DupFd does;
any other process fetches a copy from the sender with pidfd_getfd(2),
which works however many times the pickle is read (an object stored in a
Manager dict is read by every worker). So that the fd and the object stay
there to be fetched, a sender keeps every object it pickled that way for as
long as it lives (as a Manager's server keeps what its proxies refer to).
Objects of a heap travel as (heap, name).
"""
import errno
import copyreg
import io
import os
import pickle
import threading
from multiprocessing import context, reduction

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
        _heaps[segment_key(_default.fd())] = _default
    return _default


def segment_key(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


class FdRef:
    """A picklable reference to an fd of this process (see the module's text)."""

    def __init__(self, fd):
        self.key = segment_key(fd)
        spawning = context.get_spawning_popen() is not None
        self.dup = reduction.DupFd(fd) if spawning else None
        self.pid, self.fd = os.getpid(), fd

    def open(self):
        """An fd of this process for the segment (the caller closes it)."""
        if self.dup is not None:
            return self.dup.detach()
        try:
            fd = _shmq.pidfd_getfd(self.pid, self.fd)
        except OSError as e:
            raise OSError(e.errno, f"shmq: cannot fetch the object's segment from the process "
                          f"that sent it (pid {self.pid}): {e.strerror}") from None
        if segment_key(fd) != self.key:
            os.close(fd)
            raise OSError(errno.ESRCH, f"shmq: the process that sent this object (pid "
                          f"{self.pid}) no longer has it")
        return fd

    def discard(self):
        """Not needed here (the segment is open already)."""
        if self.dup is not None:
            os.close(self.dup.detach())


_kept = {}  # what this process pickled for others to fetch: kept while it lives


def keep_for_receivers(key, obj):
    """Keep obj (and so its segment's fd) alive for the processes that will
    unpickle a reference to it, unless it goes to a child being started."""
    if context.get_spawning_popen() is None:
        _kept[key] = obj


def _reduce_heap(heap):
    return _rebuild_heap, (FdRef(heap.fd()),)


def _rebuild_heap(ref):
    heap = _heaps.get(ref.key)
    if heap is not None:
        ref.discard()
        return heap
    fd = ref.open()
    try:
        heap = _heaps[ref.key] = _shmq.Heap(fd)
        return heap
    finally:
        os.close(fd)


copyreg.pickle(_shmq.Heap, _reduce_heap)

# ------------------------------------------------------------ heap objects --


def state_name(obj):
    """The name an object of a heap travels by, keeping the object for the
    processes that will unpickle it (keep_for_receivers)."""
    name = obj._name()
    keep_for_receivers((segment_key(obj._heap.fd()), name), obj)
    return name


def reduce_state(obj, *args):
    """(rebuild, ...) for an object of a heap: its type, heap and name, and
    what its constructor takes besides."""
    return rebuild_state, (type(obj), obj._heap, state_name(obj), args)


def rebuild_state(cls, heap, name, args):
    base = next(b for b in cls.__mro__ if b.__module__ == "shmq._shmq")
    return base.__new__(cls, heap, *args, name=name)


for _t in (_shmq.Lock, _shmq.Semaphore, _shmq.Event, _shmq.Array, _shmq.Dict, _shmq.List):
    copyreg.pickle(_t, reduce_state)
