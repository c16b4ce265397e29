"""Contexts: multiprocessing's (start method, Process, ...) with shmq's IPC
objects in place of the standard library's."""
import multiprocessing
from multiprocessing import context as _mpctx

from . import connection, sharedctypes
from ._managers import Manager, ObjectFactory
from ._queues import SimpleQueue

_OURS = ["Queue", "SimpleQueue", "JoinableQueue", "Pipe", "Lock", "RLock", "Semaphore",
         "BoundedSemaphore", "Condition", "Event", "Barrier", "Value", "Array", "RawValue",
         "RawArray", "Manager"]


class ShmqContext(ObjectFactory):
    """A multiprocessing context (get_context(method)) whose IPC objects are
    shmq's. Everything else (Process, Pool, cpu_count, ...) is the wrapped
    context's."""

    def __init__(self, mpctx):
        self._ctx = mpctx

    def __getattr__(self, name):
        return getattr(self._ctx, name)

    def get_context(self, method=None):
        return ShmqContext(self._ctx.get_context(method))

    def get_start_method(self, allow_none=False):
        return self._ctx.get_start_method(allow_none)

    def set_start_method(self, method, force=False):
        self._ctx.set_start_method(method, force)

    @property
    def Process(self):
        return self._ctx.Process

    def SimpleQueue(self):
        return SimpleQueue()

    def Pipe(self, duplex=True):
        return connection.Pipe(duplex)

    def Value(self, typecode_or_type, *args, lock=True):
        return sharedctypes.Value(typecode_or_type, *args, lock=lock)

    def Array(self, typecode_or_type, size_or_initializer, *, lock=True):
        return sharedctypes.Array(typecode_or_type, size_or_initializer, lock=lock)

    def RawValue(self, typecode_or_type, *args):
        return sharedctypes.RawValue(typecode_or_type, *args)

    def RawArray(self, typecode_or_type, size_or_initializer):
        return sharedctypes.RawArray(typecode_or_type, size_or_initializer)

    def Manager(self):
        return Manager()

    def __repr__(self):
        return f"<shmq context over {self._ctx!r}>"


default_context = ShmqContext(_mpctx._default_context)


def get_context(method=None):
    """The shmq context of a start method ('fork', 'spawn', 'forkserver'), or
    of the default one."""
    return ShmqContext(multiprocessing.get_context(method))
