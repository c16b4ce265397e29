"""Queue, SimpleQueue and JoinableQueue, over the C extension's Queue.

The hot paths (put, get, their batches and iteration) are C; this layer adds
multiprocessing's constructors, pickling, no-op thread controls (there is no
feeder thread: put has copied the object into shared memory when it
returns) and asyncio."""
import asyncio
import os
import weakref
from queue import Empty as _Empty

from . import _shmq
from ._reduction import FdRef, default_heap, keep_for_receivers, segment_key

_live = weakref.WeakSet()  # queues of this process, for _after_fork
_by_key = weakref.WeakValueDictionary()  # segment key -> a live queue of this process


def _after_fork_in_child():
    # A forked child holds no producer role it has not used itself: end of
    # data must not wait for every child that inherited the queue.
    for q in list(_live):
        q._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


async def wait_eventfd(fd):
    """Until an shmq eventfd is readable (then consumed), or 50 ms passed: a
    peer that dies is seen by the next get or poll, not by the eventfd."""
    loop = asyncio.get_running_loop()
    ready = loop.create_future()
    loop.add_reader(fd, ready.set_result, None)
    try:
        await asyncio.wait_for(ready, 0.05)
    except asyncio.TimeoutError:
        pass
    finally:
        loop.remove_reader(fd)
    try:
        os.read(fd, 8)
    except BlockingIOError:
        pass


class Queue(_shmq.Queue):
    """multiprocessing.Queue(maxsize=0) in shared memory. Objects of any
    size pass: up to msg_max bytes (pickled; 64 KiB by default) through the
    ring, bigger ones through the shared heap."""

    _joinable = False

    def __new__(cls, maxsize=0, *, ctx=None, msg_max=0):
        q = _shmq.Queue.__new__(cls, -1, maxsize, msg_max, cls._joinable, default_heap())
        q._register()
        return q

    def _register(self):
        _live.add(self)
        _by_key[segment_key(self._reduce_args()[0])] = self

    def __init__(self, maxsize=0, *, ctx=None, msg_max=0):
        pass

    @classmethod
    def _open(cls, ref, maxsize, msg_max, joinable, heap, slots):
        mine = _by_key.get(ref.key)
        if mine is not None:  # this process has the segment: open it again
            ref.discard()
            fd = os.dup(mine._reduce_args()[0])
        else:
            fd = ref.open()
        try:
            q = _shmq.Queue.__new__(cls, fd, maxsize, msg_max, joinable, heap, slots)
        finally:
            os.close(fd)
        q._register()
        return q

    def __reduce__(self):
        if self._closed:
            raise ValueError(f"Queue {self!r} is closed")
        fd, maxsize, msg_max, joinable, slots = self._reduce_args()
        ref = FdRef(fd)
        keep_for_receivers(("queue", ref.key), self)
        return (type(self)._open, (ref, maxsize, msg_max, joinable, self._heap, slots))

    def join_thread(self):
        """No feeder thread to join: put returns once the object is queued."""

    def cancel_join_thread(self):
        """No feeder thread: nothing to cancel."""

    def __repr__(self):
        return f"<{type(self).__module__}.{type(self).__qualname__} object at {id(self):#x}>"

    async def get_async(self):
        """get() for asyncio: waits on the queue's eventfd, not a thread."""
        fd = self._eventfd()
        while True:
            try:
                return self.get_nowait()  # an empty queue re-arms the eventfd
            except _Empty:
                await wait_eventfd(fd)


class SimpleQueue(Queue):
    """multiprocessing.SimpleQueue(): get(), put(obj), empty(), close()."""

    def __new__(cls, *, ctx=None, msg_max=0):
        return super().__new__(cls, 0, msg_max=msg_max)

    def __init__(self, *, ctx=None, msg_max=0):
        pass


class JoinableQueue(Queue):
    """multiprocessing.JoinableQueue(maxsize=0): a Queue with task_done() and
    join(). join() raises shmq.TaskLostError when consumers died holding
    items they had got (instead of waiting for them forever)."""

    _joinable = True

    def join(self, timeout=None):
        """Wait until every item put has been got and marked done. With a
        timeout: False if that did not happen in time (an shmq extra)."""
        if timeout is None:
            _shmq.Queue.join(self)
            return None
        return _shmq.Queue.join(self, timeout)

