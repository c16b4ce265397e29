"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier of
multiprocessing, as objects of a shared heap. A process that dies holding a
Lock does not deadlock the others: the next acquire takes it and warns
(shmq.OwnerDiedWarning)."""
import threading
import time
from multiprocessing import current_process

from . import _shmq
from ._reduction import default_heap, reduce_state, state_name


class OwnerDiedWarning(RuntimeWarning):
    """A lock was taken from a process that died holding it: the state it
    guards may be half-updated."""


def _owner(lock):
    """multiprocessing's way to name a lock's holder in a repr."""
    if lock._is_mine():
        name = current_process().name
        if threading.current_thread().name != "MainThread":
            name += "|" + threading.current_thread().name
        return name
    return "SomeOtherProcess" if lock._held() else None


class Lock(_shmq.Lock):
    """multiprocessing.Lock(): acquire(block=True, timeout=None), release()."""

    _recursive = False

    def __new__(cls, *, ctx=None, heap=None):
        return _shmq.Lock.__new__(cls, heap or default_heap(), cls._recursive)

    def __init__(self, *, ctx=None, heap=None):
        pass

    def __reduce__(self):
        return reduce_state(self, self._recursive)

    def __repr__(self):
        return f"<{type(self).__name__}(owner={_owner(self)})>"


class RLock(Lock):
    """multiprocessing.RLock(): a recursive lock, owned by one thread."""

    _recursive = True

    def __repr__(self):
        owner = _owner(self)
        return f"<RLock({owner}, {0 if owner is None else 'nonzero'})>"


class Semaphore(_shmq.Semaphore):
    """multiprocessing.Semaphore(value=1)."""

    def __new__(cls, value=1, *, ctx=None, heap=None):
        return _shmq.Semaphore.__new__(cls, heap or default_heap(), value, cls._bound(value))

    def __init__(self, value=1, *, ctx=None, heap=None):
        pass

    @staticmethod
    def _bound(value):
        return 0

    def release(self):
        _shmq.Semaphore.release(self)

    def __reduce__(self):
        return reduce_state(self)

    def __repr__(self):
        return f"<{type(self).__name__}(value={self.get_value()})>"


class BoundedSemaphore(Semaphore):
    """multiprocessing.BoundedSemaphore(value=1): release past the initial
    value raises ValueError."""

    @staticmethod
    def _bound(value):
        return value if value > 0 else 0

    def __repr__(self):
        return f"<{type(self).__name__}(value={self.get_value()}, maxvalue={self._max()})>"


class Condition(_shmq.Condition):
    """multiprocessing.Condition(lock=None): over a Lock or RLock (a new
    RLock by default)."""

    def __new__(cls, lock=None, *, ctx=None):
        if lock is None:
            lock = RLock()
        if not isinstance(lock, _shmq.Lock):
            raise TypeError("Condition() needs a shmq Lock or RLock")
        c = _shmq.Condition.__new__(cls, lock._heap, lock)
        c._lock = lock
        return c

    def __init__(self, lock=None, *, ctx=None):
        pass

    @classmethod
    def _rebuild(cls, heap, name, lock):
        c = _shmq.Condition.__new__(cls, heap, lock, name=name)
        c._lock = lock
        return c

    def __reduce__(self):
        return (type(self)._rebuild, (self._heap, state_name(self), self._lock))

    def acquire(self, block=True, timeout=None):
        return self._lock.acquire(block, timeout)

    def release(self):
        self._lock.release()

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def wait_for(self, predicate, timeout=None):
        result = predicate()
        if result:
            return result
        endtime = None if timeout is None else time.monotonic() + timeout
        waittime = timeout
        while not result:
            if endtime is not None:
                waittime = endtime - time.monotonic()
                if waittime <= 0:
                    break
            self.wait(waittime)
            result = predicate()
        return result

    def __repr__(self):
        return f"<Condition({self._lock!r})>"


class Event(_shmq.Event):
    """multiprocessing.Event(): set(), clear(), is_set(), wait(timeout=None)."""

    def __new__(cls, *, ctx=None, heap=None):
        return _shmq.Event.__new__(cls, heap or default_heap())

    def __init__(self, *, ctx=None, heap=None):
        pass

    def __reduce__(self):
        return reduce_state(self)

    def __repr__(self):
        return f"<{type(self).__qualname__} at {id(self):#x} {'set' if self.is_set() else 'unset'}>"


class Barrier(_shmq.Barrier):
    """multiprocessing.Barrier(parties, action=None, timeout=None). The action
    runs in the last process to arrive; a party that dies while waiting
    breaks the barrier (threading.BrokenBarrierError), as a timeout does."""

    def __new__(cls, parties, action=None, timeout=None, *, ctx=None, heap=None):
        return _shmq.Barrier.__new__(cls, heap or default_heap(), parties, action, timeout)

    def __init__(self, parties, action=None, timeout=None, *, ctx=None, heap=None):
        pass

    @classmethod
    def _rebuild(cls, heap, name, action, timeout):
        return _shmq.Barrier.__new__(cls, heap, 0, action, timeout, name=name)

    def __reduce__(self):
        return (type(self)._rebuild, (self._heap, state_name(self), self._action, self._timeout))

    def __repr__(self):
        return (f"<Barrier(parties={self.parties}, n_waiting={self.n_waiting}, "
                f"broken={self.broken})>")
