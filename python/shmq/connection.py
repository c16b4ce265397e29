"""Pipe ends (Connection) and wait(), as in multiprocessing.connection.

Listener and Client (sockets between unrelated processes) are the standard
library's, re-exported."""
import os
import threading
import time
from multiprocessing import connection as _mpc
from multiprocessing import context as _mpcontext
from multiprocessing.connection import Client, Listener, families  # noqa: F401

from . import _shmq
from ._queues import wait_eventfd
from ._reduction import FdRef

__all__ = ["Client", "Listener", "Pipe", "wait", "Connection"]


class Connection(_shmq.Connection):
    """One end of a Pipe: send/recv (objects), send_bytes/recv_bytes/
    recv_bytes_into, poll, close, fileno (an fd readable when data waits)."""

    def __init__(self, *args):
        pass

    @classmethod
    def _open(cls, rref, wref, opened=None):
        rfd = rref.open() if rref is not None else -1
        wfd = wref.open() if wref is not None else -1
        try:
            conn = _shmq.Connection.__new__(cls, rfd, wfd)
        finally:
            for fd in (rfd, wfd):
                if fd >= 0:
                    os.close(fd)
        if opened is not None:
            opened.set()
        return conn

    def __reduce__(self):
        # The references are to the copy held in transit: the sender may
        # close this end as soon as it has sent it.
        copy, opened = _hold_until_opened(self)
        rfd, wfd = copy._fds()
        return (type(self)._open,
                (FdRef(rfd) if rfd >= 0 else None, FdRef(wfd) if wfd >= 0 else None, opened))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        state = "closed" if self.closed else ("r" if self.readable else "") + (
            "w" if self.writable else "")
        return f"<shmq.connection.Connection ({state}) at {id(self):#x}>"

    async def recv_async(self):
        """recv() for asyncio: waits on the end's eventfd, not a thread."""
        fd = self.fileno()
        while not self.poll():
            await wait_eventfd(fd)
        return self.recv()


# An end in transit: an OS pipe's fd keeps its end open in the kernel while
# it travels; a shmq end is held by the processes that opened it. So that
# closing the sender's copy right after sending (as multiprocessing programs
# do) is not seen as end of file, the sender holds a copy of its own until
# the receiver has opened the end (it sets `opened`), or the child it was
# passed to at start died without doing so. CSP channel ends (shmq.csp)
# travel the same way.
_in_transit = []  # (copy, opened, popen or None)
_in_transit_lock = threading.Lock()
_TRANSIT_POLL_S = 0.005


def hold_in_transit(copy):
    """Hold copy (anything with close(): a handle of this process on an end
    being pickled) until the receiver sets the returned Event, or the child
    being started that it goes to dies first; then close it."""
    from ._sync import Event
    opened = Event()
    with _in_transit_lock:
        _in_transit.append((copy, opened, _mpcontext.get_spawning_popen()))
        if len(_in_transit) == 1:
            threading.Thread(target=_release_when_opened, daemon=True,
                             name="shmq-pipe-transit").start()
    return opened


def _hold_until_opened(conn):
    """(copy, opened): a copy of conn held until `opened` is set."""
    rfd, wfd = conn._fds()
    copy = _shmq.Connection(rfd, wfd)
    return copy, hold_in_transit(copy)


def _child_gone(popen):
    return popen is not None and getattr(popen, "pid", None) and popen.poll() is not None


def _release_when_opened():
    while True:
        with _in_transit_lock:
            for entry in list(_in_transit):
                copy, opened, popen = entry
                if opened.is_set() or _child_gone(popen):
                    copy.close()
                    _in_transit.remove(entry)
            if not _in_transit:
                return
        time.sleep(_TRANSIT_POLL_S)


def _forget_transit_in_child():
    # The copies are the parent's to hold: a forked child drops its own.
    global _in_transit_lock
    _in_transit_lock = threading.Lock()
    for copy, _, _ in _in_transit:
        copy.close()
    _in_transit.clear()


os.register_at_fork(after_in_child=_forget_transit_in_child)


def Pipe(duplex=True):
    """Two connected ends (duplex: both ways; else the first receives and
    the second sends)."""
    return _shmq._pipe(duplex, Connection)


_POLL_S = 0.005  # waiting on shmq objects and others together: look this often


def wait(object_list, timeout=None):
    """The objects of object_list that are ready: shmq Queues and Connections
    with data or at end of file, and anything multiprocessing.connection.wait
    takes (its connections, sockets, Process sentinels, fds)."""
    ours = [o for o in object_list if isinstance(o, (_shmq.Queue, _shmq.Connection))]
    if len(ours) == len(object_list):
        return _shmq.wait_any(ours, timeout)
    others = [o for o in object_list if not isinstance(o, (_shmq.Queue, _shmq.Connection))]
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        ready = _shmq.wait_any(ours, 0) if ours else []
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready += _mpc.wait(others, 0 if ready else _POLL_S if left is None else min(left, _POLL_S))
        if ready or (left is not None and left <= 0):
            return [o for o in object_list if o in ready]
