"""RawValue, RawArray, Value and Array of multiprocessing.sharedctypes: ctypes
objects over memory of a shared heap (an Array object of the C extension,
mapped with from_buffer). They pass to children, and through Queues and
Pipes, as (heap, name)."""
import ctypes
from multiprocessing import reduction
from multiprocessing.sharedctypes import typecode_to_type

from . import _shmq
from ._reduction import default_heap
from ._sync import RLock

__all__ = ["RawValue", "RawArray", "Value", "Array", "copy", "synchronized"]


def _new_value(type_):
    wrapper = _shmq.Array(default_heap(), ctypes.sizeof(type_))
    return rebuild_ctype(type_, wrapper, None)


def RawValue(typecode_or_type, *args):
    """A ctypes object in shared memory, without a lock."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    obj = _new_value(type_)
    obj.__init__(*args)
    return obj


def RawArray(typecode_or_type, size_or_initializer):
    """A ctypes array in shared memory, without a lock."""
    type_ = typecode_to_type.get(typecode_or_type, typecode_or_type)
    if isinstance(size_or_initializer, int):
        type_ = type_ * size_or_initializer
        return _new_value(type_)  # zero-filled
    type_ = type_ * len(size_or_initializer)
    result = _new_value(type_)
    result.__init__(*size_or_initializer)
    return result


def _with_lock(obj, lock):
    if lock is False:
        return obj
    if lock in (True, None):
        lock = RLock()
    if not hasattr(lock, "acquire"):
        raise AttributeError(f"{lock!r} has no method 'acquire'")
    return synchronized(obj, lock)


def Value(typecode_or_type, *args, lock=True, ctx=None):
    """A synchronized ctypes object in shared memory (lock=False: raw)."""
    return _with_lock(RawValue(typecode_or_type, *args), lock)


def Array(typecode_or_type, size_or_initializer, *, lock=True, ctx=None):
    """A synchronized ctypes array in shared memory (lock=False: raw)."""
    return _with_lock(RawArray(typecode_or_type, size_or_initializer), lock)


def copy(obj):
    new_obj = _new_value(type(obj))
    ctypes.pointer(new_obj)[0] = obj
    return new_obj


def rebuild_ctype(type_, wrapper, length):
    if length is not None:
        type_ = type_ * length
    reduction.ForkingPickler.register(type_, reduce_ctype)
    obj = type_.from_buffer(wrapper)
    obj._wrapper = wrapper
    return obj


def reduce_ctype(obj):
    if isinstance(obj, ctypes.Array):
        return rebuild_ctype, (obj._type_, obj._wrapper, obj._length_)
    return rebuild_ctype, (type(obj), obj._wrapper, None)


# ------------------------------------------------------------- synchronized --

class SynchronizedBase:
    def __init__(self, obj, lock=None, ctx=None):
        self._obj = obj
        self._lock = lock if lock is not None else RLock()
        self.acquire = self._lock.acquire
        self.release = self._lock.release

    def __enter__(self):
        return self._lock.__enter__()

    def __exit__(self, *args):
        return self._lock.__exit__(*args)

    def __reduce__(self):
        return synchronized, (self._obj, self._lock)

    def get_obj(self):
        return self._obj

    def get_lock(self):
        return self._lock

    def __repr__(self):
        return f"<{type(self).__name__} wrapper for {self._obj}>"


def _make_property(name):
    def get(self):
        with self._lock:
            return getattr(self._obj, name)

    def set(self, value):
        with self._lock:
            setattr(self._obj, name, value)

    return property(get, set)


class Synchronized(SynchronizedBase):
    value = _make_property("value")

    def __repr__(self):
        return f"<{type(self).__name__} wrapper for {self._obj}>"


class SynchronizedArray(SynchronizedBase):
    def __len__(self):
        return len(self._obj)

    def __getitem__(self, i):
        with self._lock:
            return self._obj[i]

    def __setitem__(self, i, value):
        with self._lock:
            self._obj[i] = value

    def __getslice__(self, start, stop):
        with self._lock:
            return self._obj[start:stop]

    def __setslice__(self, start, stop, values):
        with self._lock:
            self._obj[start:stop] = values


class SynchronizedString(SynchronizedArray):
    value = _make_property("value")
    raw = _make_property("raw")


_class_cache = {}


def synchronized(obj, lock=None, ctx=None):
    if isinstance(obj, ctypes._SimpleCData):
        return Synchronized(obj, lock, ctx)
    if isinstance(obj, ctypes.Array):
        if obj._type_ is ctypes.c_char:
            return SynchronizedString(obj, lock, ctx)
        return SynchronizedArray(obj, lock, ctx)
    cls = type(obj)
    scls = _class_cache.get(cls)
    if scls is None:
        props = {name: _make_property(name) for name, *_ in cls._fields_}
        scls = _class_cache[cls] = type("Synchronized" + cls.__name__, (SynchronizedBase,), props)
    return scls(obj, lock, ctx)
