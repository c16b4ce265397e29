"""Manager(): multiprocessing's SyncManager without its server process.

Its dict(), list() and Namespace() are objects of a shared heap that every
process reads and writes in place (the C library's dict and list: each
operation atomic, a process killed in the middle of one leaves it done or
not done); its Queue(), Lock(), Value() ... are shmq's own. Keys and values
are pickled (str, bytes and int without pickle); keys compare by their
encoded bytes, with numbers made canonical first as a dict's hashing would
have them (True, 1 and 1.0 are one key, kept as the int 1; inside a tuple
key they are not made canonical)."""
import operator
from collections.abc import MutableMapping, MutableSequence

from . import _shmq, sharedctypes
from ._queues import JoinableQueue, Queue
from ._reduction import default_heap, reduce_state, state_name
from ._sync import Barrier, BoundedSemaphore, Condition, Event, Lock, RLock, Semaphore


class DictProxy(_shmq.Dict, MutableMapping):
    """A dict shared by every process that has it (MutableMapping)."""

    def __new__(cls, *args, heap=None, **kwargs):
        return _shmq.Dict.__new__(cls, heap or default_heap())

    def __init__(self, *args, heap=None, **kwargs):
        if args or kwargs:
            self.update(*args, **kwargs)

    def __reduce__(self):
        return reduce_state(self)

    def __iter__(self):
        """The keys in insertion order, as they were now; RuntimeError if the
        dict changes size meanwhile (in any process), as a dict's iterator
        raises."""
        return self._keys_while_unchanged(self.keys())

    def _keys_while_unchanged(self, keys):
        for key in keys:
            if len(self) != len(keys):
                raise RuntimeError("dictionary changed size during iteration")
            yield key
        if len(self) != len(keys):
            raise RuntimeError("dictionary changed size during iteration")

    def keys(self):
        return [k for k, _ in self._items()]

    def values(self):
        return [v for _, v in self._items()]

    def items(self):
        return self._items()

    def copy(self):
        return dict(self._items())

    def popitem(self):
        """Remove and return some (key, value) pair; KeyError if empty."""
        while True:
            items = self._items()
            if not items:
                raise KeyError("popitem(): dictionary is empty")
            key = items[-1][0]
            missing = object()
            value = self.pop(key, missing)
            if value is not missing:
                return key, value

    def __eq__(self, other):
        if isinstance(other, (dict, DictProxy)):
            return self.copy() == dict(other.items())
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(self.copy())

    __str__ = __repr__


class ListProxy(_shmq.List, MutableSequence):
    """A list shared by every process that has it (MutableSequence). Single
    item operations (l[i], l[i] = v, append, insert, pop, del l[i]) are
    atomic in the C library; compound ones (slices, extend, +=, sort,
    reverse, remove, index, count) hold the list's own RLock, so they are
    atomic with respect to each other. Iteration goes item by item, as a
    list's iterator does."""

    def __new__(cls, sequence=(), *, heap=None):
        return _shmq.List.__new__(cls, heap or default_heap())

    def __init__(self, sequence=(), *, heap=None):
        self._lock = RLock(heap=self._heap)
        if sequence:
            self.extend(sequence)

    @classmethod
    def _rebuild(cls, heap, name, lock):
        obj = _shmq.List.__new__(cls, heap, name=name)
        obj._lock = lock
        return obj

    def __reduce__(self):
        return (type(self)._rebuild, (self._heap, state_name(self), self._lock))

    def _snapshot(self):
        with self._lock:
            return [_shmq.List.__getitem__(self, i) for i in range(len(self))]

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self._snapshot()[index]
        return _shmq.List.__getitem__(self, index)

    def __setitem__(self, index, value):
        if not isinstance(index, slice):
            return _shmq.List.__setitem__(self, index, value)
        with self._lock:
            items = self._snapshot()
            items[index] = value
            self._replace_all(items)

    def __delitem__(self, index):
        if not isinstance(index, slice):
            return _shmq.List.__delitem__(self, index)
        with self._lock:
            items = self._snapshot()
            del items[index]
            self._replace_all(items)

    def _replace_all(self, items):
        self.clear()
        for item in items:
            self.append(item)

    def __iter__(self):
        """Item by item, as a list's iterator goes: changes made meanwhile (by
        any process) are seen; it ends at the first index past the end."""
        i = 0
        while True:
            try:
                yield _shmq.List.__getitem__(self, i)
            except IndexError:
                return
            i += 1

    def __contains__(self, value):
        return value in self._snapshot()

    def __reversed__(self):
        return reversed(self._snapshot())

    def index(self, value, start=0, stop=None):
        items = self._snapshot()
        return items.index(value, start, len(items) if stop is None else stop)

    def count(self, value):
        return self._snapshot().count(value)

    def extend(self, values):
        values = list(values)
        with self._lock:
            for v in values:
                self.append(v)

    def __iadd__(self, values):
        self.extend(values)
        return self

    def __imul__(self, n):
        with self._lock:
            self._replace_all(self._snapshot() * n)
        return self

    def remove(self, value):
        with self._lock:
            del self[self._snapshot().index(value)]

    def reverse(self):
        with self._lock:
            self._replace_all(self._snapshot()[::-1])

    def sort(self, *, key=None, reverse=False):
        with self._lock:
            items = self._snapshot()
            items.sort(key=key, reverse=reverse)
            for i, item in enumerate(items):
                self[i] = item

    def copy(self):
        return self._snapshot()

    def __add__(self, other):
        return self._snapshot() + list(other)

    def __mul__(self, n):
        return self._snapshot() * n

    __rmul__ = __mul__

    def __radd__(self, other):
        return list(other) + self._snapshot()

    def __eq__(self, other):
        if isinstance(other, (list, ListProxy)):
            return self._snapshot() == list(other)
        return NotImplemented

    __hash__ = None

    def __repr__(self):
        return repr(self._snapshot())

    __str__ = __repr__


class Namespace:
    """multiprocessing's Namespace: attributes shared by every process."""

    def __init__(self, *, _dict=None, **kwargs):
        object.__setattr__(self, "_dict", _dict if _dict is not None else DictProxy())
        for k, v in kwargs.items():
            setattr(self, k, v)

    def __reduce__(self):
        return (_rebuild_namespace, (self._dict,))

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._dict[name]
        except KeyError:
            raise AttributeError(f"'Namespace' object has no attribute '{name}'") from None

    def __setattr__(self, name, value):
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self._dict[name] = value

    def __delattr__(self, name):
        if name.startswith("_"):
            object.__delattr__(self, name)
            return
        try:
            del self._dict[name]
        except KeyError:
            raise AttributeError(name) from None

    def __repr__(self):
        items = sorted(self._dict.items(), key=operator.itemgetter(0))
        return "Namespace(%s)" % ", ".join(f"{k}={v!r}" for k, v in items)


def _rebuild_namespace(d):
    return Namespace(_dict=d)


class ValueProxy(sharedctypes.Synchronized):
    """Manager().Value(typecode, value): .value, get() and set()."""

    def get(self):
        return self.value

    def set(self, value):
        self.value = value


class ObjectFactory:
    """The constructors that a context and a Manager share."""

    def Queue(self, maxsize=0):
        return Queue(maxsize)

    def JoinableQueue(self, maxsize=0):
        return JoinableQueue(maxsize)

    def Lock(self):
        return Lock()

    def RLock(self):
        return RLock()

    def Semaphore(self, value=1):
        return Semaphore(value)

    def BoundedSemaphore(self, value=1):
        return BoundedSemaphore(value)

    def Condition(self, lock=None):
        return Condition(lock)

    def Event(self):
        return Event()

    def Barrier(self, parties, action=None, timeout=None):
        return Barrier(parties, action, timeout)


class SyncManager(ObjectFactory):
    """What multiprocessing.Manager() returns, without a server: start(),
    shutdown(), connect() and join() have nothing to do; objects stay
    usable after shutdown (they live as long as a process holds them)."""

    def __init__(self, address=None, authkey=None, serializer="pickle", ctx=None, **kwargs):
        self._state = "initial"

    def start(self, initializer=None, initargs=()):
        if initializer is not None:
            initializer(*initargs)
        self._state = "started"

    def connect(self):
        self._state = "started"

    def shutdown(self):
        self._state = "shutdown"

    def join(self, timeout=None):
        pass

    @property
    def address(self):
        return None

    def __enter__(self):
        if self._state == "initial":
            self.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()

    def dict(self, *args, **kwargs):
        return DictProxy(*args, **kwargs)

    def list(self, sequence=()):
        return ListProxy(sequence)

    def Namespace(self, **kwargs):
        return Namespace(**kwargs)

    def Value(self, typecode, value, lock=True):
        return ValueProxy(sharedctypes.RawValue(typecode, value), RLock())

    def Array(self, typecode, sequence, lock=True):
        return sharedctypes.Array(typecode, sequence)

    def Pool(self, *args, **kwargs):
        from multiprocessing.pool import Pool
        return Pool(*args, **kwargs)


def Manager(*, ctx=None):
    """A started SyncManager (a context manager)."""
    m = SyncManager()
    m.start()
    return m
