"""shmq: the IPC half of multiprocessing, on shared memory.

    from shmq import Process, Queue      # instead of: from multiprocessing import ...

Queue, SimpleQueue, JoinableQueue, Pipe, Lock, RLock, Semaphore,
BoundedSemaphore, Condition, Event, Barrier, Value, Array, RawValue,
RawArray and Manager() behave as multiprocessing documents them, without a
feeder thread or a server process; Process, Pool and the rest are
multiprocessing's own. Extras: Queue.put_many/get_many, `for item in q`
(ends when every producer is gone), asyncio (Queue.get_async,
Connection.recv_async), OwnerDiedWarning and TaskLostError, and shmq.csp:
PyCSP's processes, channels and alternation between OS processes.
"""
import multiprocessing as _mp
from multiprocessing import (  # noqa: F401  (re-exported)
    AuthenticationError, BufferTooShort, Pool, Process, ProcessError, TimeoutError,
    active_children, allow_connection_pickling, cpu_count, current_process, freeze_support,
    get_all_start_methods, get_logger, get_start_method, log_to_stderr, parent_process,
    set_executable, set_forkserver_preload, set_start_method)
import threading as _threading
from queue import Empty, Full

from . import _reduction, _shmq, connection, sharedctypes  # noqa: F401  (submodules)
from ._context import ShmqContext, get_context  # noqa: F401
from ._managers import Manager, SyncManager  # noqa: F401
from ._queues import JoinableQueue, Queue, SimpleQueue
from ._sync import (Barrier, BoundedSemaphore, Condition, Event, Lock, OwnerDiedWarning, RLock,
                    Semaphore)
from .connection import Pipe
from .sharedctypes import Array, RawArray, RawValue, Value


class TaskLostError(RuntimeError):
    """JoinableQueue.join(): consumers died holding items they had got, so
    those items will never be marked done."""


_shmq._setup(Empty, Full, _reduction.dumps, _reduction.loads, _threading.BrokenBarrierError,
             BufferTooShort, OwnerDiedWarning, TaskLostError)

SUBDEBUG, SUBWARNING = _mp.SUBDEBUG, _mp.SUBWARNING

__all__ = [
    "Array", "AuthenticationError", "Barrier", "BoundedSemaphore", "BufferTooShort",
    "Condition", "Event", "JoinableQueue", "Lock", "Manager", "OwnerDiedWarning", "Pipe",
    "Pool", "Process", "ProcessError", "Queue", "RLock", "RawArray", "RawValue",
    "Semaphore", "SimpleQueue", "TaskLostError", "TimeoutError", "Value",
    "active_children", "allow_connection_pickling", "cpu_count", "current_process",
    "freeze_support", "get_all_start_methods", "get_context", "get_logger",
    "get_start_method", "log_to_stderr", "parent_process", "set_executable",
    "set_forkserver_preload", "set_start_method",
]
