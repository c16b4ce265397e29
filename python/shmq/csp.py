"""shmq.csp: PyCSP's API (pycsp.parallel 0.9) between OS processes, on
shmq's shared-memory channels.

    from shmq.csp import *      # instead of: from pycsp.parallel import *

    @process
    def source(cout):
        for i in range(10):
            cout(i)
        retire(cout)

    @process
    def sink(cin):
        while True:
            print(cin())

    C = Channel()
    Parallel(source(C.writer()), sink(C.reader()))

Every CSP process is an OS process (multiprocessing's Process, of the
default start method or the one given as ctx=...). Channels are any-to-any,
rendezvous by default (Channel(buffer=N): N messages may wait); a message
is any picklable object. Alternation (AltSelect, PriSelect, FairSelect,
Alternation) takes InputGuard, OutputGuard, SkipGuard and TimeoutGuard and
returns (guard's channel end or guard, message), running the guard's action
as PyCSP does. poison() and retire() end networks of processes as in PyCSP.

Counting ends: each .reader() / .writer() call is one end of the channel,
as PyCSP's join counts it. A channel is retired for readers once every
writer end is retired (and what was offered has been read) and for writers
once every reader end is. An end ends when it is retired (by any process
sharing it), and also when every process holding it has let go of it:
Parallel, Spawn and Sequence let go of the ends they pass to their
processes once those are started (as a program closes its copies of pipe
ends after fork()), and a process ending (or dying) lets go of its own.
So a network stops by itself when its sources finish, even when one is
killed; an end passed to a process cannot be used by the parent afterwards
(FatalException, as PyCSP says of an end moved to another process).

Differences from pycsp.parallel: no sockets (connect=, host and port
parameters are refused or ignored); @process, @multiprocess and Process all
make OS processes; a channel end passed to a process is moved there.
"""
import itertools
import multiprocessing
import queue
import sys
import time
import types
import uuid
import weakref

from . import _shmq
from ._queues import Queue
from ._reduction import default_heap
from . import connection
from .connection import hold_in_transit

__all__ = [
    "Skip", "SkipGuard", "Timeout", "TimeoutGuard", "InputGuard", "OutputGuard", "choice",
    "Alternation", "AltSelect", "PriSelect", "FairSelect", "Channel", "retire", "poison",
    "Process", "process", "MultiProcess", "multiprocess", "Sequence", "Parallel", "Spawn",
    "current_process_id", "shutdown", "ChannelRetireException", "ChannelPoisonException",
    "ChannelSocketException", "ChannelConnectException", "ChannelBindException",
    "ChannelLostException", "InfoException", "FatalException", "io", "Io", "version",
]

version = (0, 9, 0, "shmq")

READ, WRITE = 1, 2  # an end's _op, as the C layer's roles and guard ops


# --------------------------------------------------------------- exceptions --

class ChannelPoisonException(Exception):
    """Raised by a read, write or alternation on a poisoned channel. A CSP
    process that it ends poisons every channel end in its arguments."""

    def __init__(self, *args):
        super().__init__(*args)


class ChannelRetireException(Exception):
    """Raised by a read on a channel whose writers all retired (once it is
    drained), and by a write on one whose readers all retired. A CSP process
    that it ends retires every channel end in its arguments, and ends
    normally."""

    def __init__(self, *args):
        super().__init__(*args)


class ChannelSocketException(Exception):
    """PyCSP's socket errors: never raised here (no sockets)."""

    def __init__(self, addr, msg):
        self.msg = msg
        self.addr = addr

    def __str__(self):
        return repr(f"{self.msg} {self.addr}")


class ChannelConnectException(ChannelSocketException):
    pass


class ChannelBindException(ChannelSocketException):
    pass


class ChannelLostException(ChannelSocketException):
    pass


class FatalException(Exception):
    """A use that cannot work: an end used after it was moved to another
    process."""

    def __init__(self, msg):
        self.msg = msg

    def __str__(self):
        return repr(self.msg)


class InfoException(Exception):
    """A misuse of the API, with the likely fix."""

    def __init__(self, msg):
        self.msg = msg

    def __str__(self):
        return repr(self.msg)


_shmq._chan_setup(ChannelPoisonException, ChannelRetireException)


# --------------------------------------------------------------------- heap --

_heap = None            # the heap of this process's channels (a spawned child: its parent's)
_start_method = None    # the start method of CSP processes (None: multiprocessing's default)
_current_id = None      # current_process_id() in a CSP process
_spawned = []           # Spawn()ed processes, joined by shutdown()
_TRANSIT_WAIT_S = 2.0   # how long an ending CSP process waits for ends it sent to be opened
_ends = weakref.WeakSet()      # every end this process has: let go of when a CSP process ends
_channels = weakref.WeakSet()  # and every Channel


def _csp_heap():
    global _heap
    if _heap is None:
        _heap = default_heap()
    return _heap


def _moved():
    return FatalException("The user have tried to communicate on a channel end which have "
                          "been moved to another process")


# ------------------------------------------------------------------ channels --

def _rebuild_chan(heap, end_name, opened):
    chan = _shmq.Chan.end_open(heap, end_name)
    opened.set()
    return chan


def _reduce_chan(chan):
    """(heap, end_name, opened) for chan in transit: the sender holds a
    handle of its own until the receiver opened it (hold_in_transit)."""
    copy = _shmq.Chan.end_open(chan._heap, chan.end_name)
    return (chan._heap, chan.end_name, hold_in_transit(copy))


class Channel:
    """Channel(name=None, buffer=0): an any-to-any channel between processes.

    Ends come from .reader() and .writer() (or +chan and -chan); a write on
    a rendezvous channel (buffer 0) returns once a reader has the message,
    on a buffered one once it is in the buffer (buffer messages may wait).
    name: for repr and PyCSP compatibility (the channel itself is
    anonymous: freed with its last end)."""

    def __init__(self, name=None, buffer=0, connect=None):
        if connect is not None:
            raise InfoException("shmq.csp channels are local: connect is not supported")
        if buffer is None or buffer < 0:
            raise InfoException("buffer must be 0 or more")
        # The creator's end has both roles: until the first reader (writer)
        # end exists it stands for the readers (writers), then it retires
        # that role, so the channel counts the ends .reader()/.writer() made.
        self._chan = _shmq.Chan.create(_csp_heap(), None, buffer)
        self.name = name if name is not None else self._chan.name
        self.buffer = buffer
        _channels.add(self)

    @classmethod
    def _attach(cls, heap, chan_name, name, buffer):
        """A Channel object for a channel some end of this process is of (the
        .channel of an end that travelled): an end without roles holds it."""
        self = cls.__new__(cls)
        self._chan = _shmq.Chan.open(heap, chan_name, 0)
        self.name = name if name is not None else chan_name
        self.buffer = buffer
        _channels.add(self)
        return self

    def _open(self, op):
        if self._chan.closed:
            raise _moved()
        end = _shmq.Chan.open(self._chan._heap, self._chan.name, op)
        if self._chan.roles & op:
            self._chan.retire(op)
        return end

    def reader(self):
        """A new reading end (ChannelEndRead): cin() reads."""
        return ChannelEndRead(self, self._open(READ))

    def writer(self):
        """A new writing end (ChannelEndWrite): cout(msg) writes."""
        return ChannelEndWrite(self, self._open(WRITE))

    def __pos__(self):
        return self.reader()

    def __neg__(self):
        return self.writer()

    def __mul__(self, multiplier):
        return [self] + [Channel(buffer=self.buffer) for _ in range(int(multiplier) - 1)]

    def __rmul__(self, multiplier):
        return self.__mul__(multiplier)

    def disconnect(self):
        """PyCSP's early close of a remote channel: nothing to do here."""

    def _poison(self, direction=None):
        self._chan.poison()

    def __reduce__(self):
        return (_rebuild_channel, (_reduce_chan(self._chan), self.name, self.buffer))

    def __repr__(self):
        return f"<Channel named {self.name} (buffer {self.buffer})>"


def _rebuild_channel(chan, name, buffer):
    self = Channel.__new__(Channel)
    self._chan = _rebuild_chan(*chan)
    self.name, self.buffer = name, buffer
    _channels.add(self)
    return self


class ChannelEnd:
    """One end of a Channel, with the role of its class."""

    _op = None

    def __init__(self, channel, chan=None):
        if chan is None:  # PyCSP's ChannelEndRead(channel): a new end of it
            chan = channel._open(self._op)
        self._channel = channel
        self._pname = None  # the channel's name, for one that travelled
        self._chan = chan
        self._isretired = False
        self._ispoisoned = False
        _ends.add(self)

    def _h(self):
        chan = self._chan
        if chan is None or chan.closed:
            raise _moved()
        return chan

    @property
    def channel(self):
        """The Channel this end belongs to."""
        if self._channel is None:
            chan = self._h()
            self._channel = Channel._attach(chan._heap, chan.name, self._name, chan.buffer)
        return self._channel

    def poison(self):
        """Poison the channel: every pending and later call on it, by anyone,
        raises ChannelPoisonException."""
        if not self._ispoisoned:
            self._h().poison()
            self._ispoisoned = True

    def retire(self):
        """Retire this end, for every process that shares it. Once every
        reader (writer) end of the channel retired, writes (reads, after the
        channel is drained) raise ChannelRetireException."""
        if not self._isretired:
            self._h().retire(self._op)
            self._isretired = True

    def _let_go(self):
        """This process lets go of the end (it was passed to a process)."""
        chan, self._chan = self._chan, None
        if chan is not None:
            chan.close()

    def isWriter(self):
        return self._op == WRITE

    def isReader(self):
        return self._op == READ

    def disconnect(self):
        """PyCSP's early close of a mobile end: nothing to do here."""

    def __lt__(self, other):
        return id(self) < id(other)

    @property
    def _name(self):
        channel = self._channel
        return self._pname if channel is None else channel.name

    def __reduce__(self):
        chan = self._h()
        return (_rebuild_end, (type(self), _reduce_chan(chan), self._name))

    def __repr__(self):
        name = self._name
        if name is None and self._chan is not None and not self._chan.closed:
            name = self._chan.name
        return f"<{type(self).__name__} on channel named {name}>"


def _rebuild_end(cls, chan, name):
    self = cls.__new__(cls)
    self._channel, self._pname = None, name
    self._chan = _rebuild_chan(*chan)
    self._isretired = self._ispoisoned = False
    _ends.add(self)
    return self


class ChannelEndWrite(ChannelEnd):
    """The writing end of a channel: cout(msg) writes msg. Raises
    ChannelPoisonException, ChannelRetireException."""

    _op = WRITE

    def __call__(self, msg):
        return self._h().write(msg)


class ChannelEndRead(ChannelEnd):
    """The reading end of a channel: cin() reads a message. Raises
    ChannelPoisonException, ChannelRetireException."""

    _op = READ

    def __call__(self):
        return self._h().read()


def _ends_in(args, found=None, seen=None):
    """The channel ends in args (lists, tuples, sets and dicts walked), each
    once, in order."""
    if found is None:
        found, seen = [], set()
    for arg in args:
        if isinstance(arg, ChannelEnd):
            if id(arg) not in seen:
                seen.add(id(arg))
                found.append(arg)
        elif isinstance(arg, (list, tuple, set, frozenset)):
            _ends_in(arg, found, seen)
        elif isinstance(arg, dict):
            _ends_in(arg.keys(), found, seen)
            _ends_in(arg.values(), found, seen)
    return found


def retire(*list_of_channelEnds):
    """retire(C1, [C2, .. , CN]): retire channel ends (lists of them too)."""
    for end in list_of_channelEnds:
        if isinstance(end, list):
            retire(*end)
        elif isinstance(end, Channel):
            raise InfoException("Tried to retire a channel object. Only channel end objects "
                                "may be retired.")
        else:
            end.retire()


def poison(*list_of_channelEnds):
    """poison(C1, [C2, .. , CN]): poison the channels of these ends (lists of
    them too)."""
    for end in list_of_channelEnds:
        if isinstance(end, list):
            poison(*end)
        elif isinstance(end, Channel):
            raise InfoException("Tried to poison a channel object. Only channel end objects "
                                "may be poisoned.")
        else:
            end.poison()


# --------------------------------------------------------------- alternation --

def choice(func):
    """@choice: func(*args, **kwargs) makes a Choice, an action for a guard;
    an InputGuard's gets the message as channel_input=."""
    def __choice_fn(*args, **kwargs):
        return Choice(func, *args, **kwargs)
    return __choice_fn


class Choice:
    """Choice(func, *args, **kwargs): see choice."""

    def __init__(self, fn, *args, **kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs

    def invoke_on_input(self, channel_input):
        self.kwargs["channel_input"] = channel_input
        try:
            self.fn(*self.args, **self.kwargs)
        finally:
            del self.kwargs["channel_input"]

    def invoke_on_output(self):
        self.fn(*self.args, **self.kwargs)


class Guard:
    """A guard that is not a channel end (SkipGuard, TimeoutGuard)."""

    def __init__(self, action=None):
        self.g = (self, action)


class SkipGuard(Guard):
    """SkipGuard(action=None): chosen at once when no guard before it (in a
    PriSelect: before it in the list) is ready."""


class TimeoutGuard(Guard):
    """TimeoutGuard(seconds, action=None): chosen when no other guard became
    ready within seconds."""

    def __init__(self, seconds, action=None):
        super().__init__(action)
        self.seconds = seconds


Skip = SkipGuard
Timeout = TimeoutGuard


class InputGuard:
    """InputGuard(ch_end_read, action=None): a read in an alternation; the
    action gets the message (channel_input=)."""

    def __init__(self, ch_end_read, action=None):
        if not isinstance(ch_end_read, ChannelEnd):
            raise InfoException(f"Can not use {ch_end_read} as ch_end_read. InputGuard requires "
                                "a ChannelEndRead object")
        if ch_end_read._op != READ:
            raise InfoException("Can not use ChannelEndWrite object. InputGuard requires a "
                                "ChannelEndRead object")
        self.g = (ch_end_read, action)


class OutputGuard:
    """OutputGuard(ch_end_write, msg, action=None): a write of msg in an
    alternation."""

    def __init__(self, ch_end_write, msg, action=None):
        if not isinstance(ch_end_write, ChannelEnd):
            raise InfoException(f"Can not use {ch_end_write} as ch_end_write. OutputGuard "
                                "requires a ChannelEndWrite object")
        if ch_end_write._op != WRITE:
            raise InfoException("Can not use ChannelEndRead object. OutputGuard requires a "
                                "ChannelEndWrite object")
        self.g = (ch_end_write, msg, action)


_PRI = 0  # the C layer's SHMQ_ALT_PRI


class Alternation:
    """Alternation(guards, ensurePriority=False): PyCSP's alternation over
    a list of dicts {cin: action, (cout, msg): action, SkipGuard(): action}
    or tuples (cin, action), (cout, msg, action). execute() performs one
    guard and runs its action; select() only performs it. Both return
    (channel end or guard, message read or None)."""

    def __init__(self, guards, ensurePriority=False):
        self._flags = _PRI
        self.guards = []
        for g in guards:
            if isinstance(g, tuple):
                self.guards.append(g)
            elif isinstance(g, dict):
                for elem, action in g.items():
                    if isinstance(elem, tuple):
                        self.guards.append((elem[0], elem[1], action))
                    else:
                        self.guards.append((elem, action))
            else:
                raise InfoException(f"Cannot use {g} as guard")

    def _choose(self):
        """(index, end or guard, msg, op) of the guard performed."""
        ops, where = [], []
        timeout, timer = None, None
        for idx, g in enumerate(self.guards):
            c = g[0]
            if isinstance(c, SkipGuard):
                timeout, timer = 0, idx
                if self._flags == _PRI:
                    break  # always ready: no guard after it can be chosen
            elif isinstance(c, TimeoutGuard):
                if timeout is None or c.seconds < timeout:
                    timeout, timer = max(0.0, float(c.seconds)), idx
            elif isinstance(c, ChannelEnd) and len(g) == 2 and c._op == READ:
                chan = c._h()
                ops.append((chan, READ, None))
                where.append(idx)
            elif isinstance(c, ChannelEnd) and len(g) == 3 and c._op == WRITE:
                chan = c._h()
                ops.append((chan, WRITE, g[1]))
                where.append(idx)
            else:
                raise InfoException(f"Cannot use {c} as guard")
        if any(op[0]._heap is not ops[0][0]._heap for op in ops):
            raise InfoException("the channels of one alternation must be of one heap")
        if not ops:
            if timer is None:
                raise InfoException("an alternation needs a guard")
            if timeout:
                time.sleep(timeout)
            return timer, self.guards[timer][0], None, READ
        if len(ops) > _shmq.ALT_MAX:
            raise InfoException(f"an alternation takes at most {_shmq.ALT_MAX} channel guards")
        got = _shmq.alt(ops, self._flags, timeout)
        if got is None:
            return timer, self.guards[timer][0], None, READ
        i, msg = got
        idx = where[i]
        end = self.guards[idx][0]
        return idx, end, msg, end._op

    def execute(self, _frame=None):
        """Choose a guard, perform it and run its action: a Choice, a
        callable (an input's called with channel_input=msg, others with no
        argument) or a string executed in the caller's namespace (with
        channel_input). Returns (channel end or guard, msg)."""
        idx, c, msg, op = self._choose()
        action = self.guards[idx][-1]
        if isinstance(action, Choice):
            if op == WRITE:
                action.invoke_on_output()
            else:
                action.invoke_on_input(msg)
        elif isinstance(action, str):
            frame = _frame if _frame is not None else sys._getframe(1)
            code = compile(action, f"{frame.f_code.co_filename} line {frame.f_lineno} in string",
                           "exec")
            f_locals = frame.f_locals
            if op == READ:
                f_locals.update({"channel_input": msg})
            exec(code, frame.f_globals, f_locals)
        elif callable(action):
            if getattr(action, "__name__", None) == "__choice_fn":
                raise InfoException("@choice function is not instantiated. Please use action() "
                                    "and not just action")
            if op == WRITE:
                action()
            else:
                action(channel_input=msg)
        elif action is not None:
            raise Exception(f"Failed executing action: {action}")
        return (c, msg)

    def select(self):
        """Choose a guard and perform it, without its action: (end or
        guard, msg)."""
        _, c, msg, _ = self._choose()
        return (c, msg)


def _guards(guards, what):
    out = []
    for item in guards:
        for g in (item if isinstance(item, list) else [item]):
            try:
                out.append(g.g)
            except AttributeError:
                raise InfoException(f"Cannot use {g} as guard. Only use *Guard types for "
                                    f"{what}") from None
    return out


def _select(guards, flags, what, frame):
    a = Alternation(_guards(guards, what), ensurePriority=True)
    a._flags = flags
    return a.execute(_frame=frame)


def AltSelect(*guards):
    """AltSelect(G1, [G2, .. ,GN]): wait for one of the guards, perform it
    and its action; returns (channel end or guard, message read or None)."""
    return _select(guards, _PRI, "AltSelect", sys._getframe(1))


def PriSelect(*guards):
    """PriSelect(G1, [G2, .. ,GN]): AltSelect that chooses the first ready
    guard in the order given."""
    return _select(guards, _PRI, "PriSelect", sys._getframe(1))


_history = {}  # FairSelect's: (file, line) of the call -> {channel name: times chosen}


def FairSelect(*guards):
    """FairSelect(G1, [G2, .. ,GN]): as PyCSP's, a PriSelect over the guards
    ordered by how often each channel was chosen at this FairSelect (the
    call's place in the source) in this process, least first: every guard
    that stays ready is chosen within N selects. Skip and timeout guards
    come last."""
    frame = sys._getframe(1)
    history = _history.setdefault((frame.f_code.co_filename, frame.f_lineno), {})
    ranked, last = [], []
    for g in _guards(guards, "FairSelect"):
        if isinstance(g[0], ChannelEnd):
            ranked.append((history.get(g[0]._h().name, 0), len(ranked), g))
        else:
            last.append(g)
    ranked.sort(key=lambda r: r[:2])
    a = Alternation([r[2] for r in ranked] + last, ensurePriority=True)
    result = a.execute(_frame=frame)
    if isinstance(result[0], ChannelEnd):
        name = result[0]._chan.name
        history[name] = history.get(name, 0) + 1
    return result


# ---------------------------------------------------------------- processes --

def process(func):
    """@process: func(*args, **kwargs) makes a Process (not started) that
    runs func as an OS process."""
    def _call(*args, **kwargs):
        return Process(func, *args, **kwargs)
    _call.__name__ = func.__name__
    _call.__qualname__ = func.__qualname__
    _call.__module__ = func.__module__
    _call.__doc__ = func.__doc__
    _call._csp_fn = func
    return _call


def multiprocess(func=None, pycsp_host="", pycsp_port=None):
    """@multiprocess or @multiprocess(pycsp_host=..., pycsp_port=...):
    as @process (every CSP process here is an OS process)."""
    if func is not None:
        return process(func)
    return process


def io(func):
    """@io: no effect (PyCSP's marker of blocking io)."""
    return func


class Io:
    pass


class _FnRef:
    """A process's function, pickled by module and name (a @process function's
    module attribute is its factory: the function is found through it)."""

    def __init__(self, fn):
        self.fn = fn

    def __reduce__(self):
        return (_resolve_fn, (self.fn.__module__, self.fn.__qualname__))


def _resolve_fn(module, qualname):
    __import__(module)
    obj = sys.modules[module]
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return _FnRef(getattr(obj, "_csp_fn", obj))


def _context(method):
    return multiprocessing.get_context(method)


class _Batch:
    """Processes started together, their return values coming back through a
    queue; a process that dies returns None."""

    _POLL_S = 0.05

    def __init__(self, procs, want_result):
        self.procs = procs
        self.results = Queue() if want_result else None
        self.pending = set()

    def start(self, i, others):
        p = self.procs[i]
        if p._proc is not None:
            raise InfoException(f"{p!r} was started already")
        ctx = _context(p._method)
        fork = ctx.get_start_method() == "fork"
        p._proc = ctx.Process(
            target=_child_main, name=p.name,
            args=(_FnRef(p.fn), p.args, p.kwargs, _csp_heap(), self.results, i,
                  others if fork else (), ctx.get_start_method(), p.id))
        p._batch = self
        p._proc.start()
        if self.results is not None:
            self.pending.add(i)

    def _got(self, msg):
        _, i, value = msg
        self.procs[i].return_value = value
        self.pending.discard(i)

    def wait(self, which):
        """Until every process of which (indexes) has ended."""
        while self.pending & which:
            try:
                self._got(self.results.get(timeout=self._POLL_S))
                continue
            except queue.Empty:
                pass
            dead = [i for i in self.pending if self.procs[i]._proc.exitcode is not None]
            if dead:  # a value put before it ended is there by now
                while True:
                    try:
                        self._got(self.results.get_nowait())
                    except queue.Empty:
                        break
                self.pending.difference_update(dead)
        for i in which:
            self.procs[i]._proc.join()


class Process:
    """Process(fn, *args, **kwargs): a CSP process, run as an OS process by
    Parallel, Sequence or Spawn (or start() and join()); @process makes
    these. Its return value comes back (return_value, join_report()); a
    ChannelPoisonException that ends it poisons every channel end among its
    arguments, a ChannelRetireException retires them (then it returns None).
    update(ctx=...) chooses the start method (a context or its name)."""

    _ids = itertools.count(1)

    def __init__(self, fn, *args, **kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.return_value = None
        self.id = f"{uuid.uuid1().hex}.{fn.__name__[:31]}"
        self.name = f"CSP-{fn.__name__}-{next(self._ids)}"
        self.maintained = True
        self._method = _start_method
        self._proc = None
        self._batch = None

    def update(self, ctx=None, start_method=None, pycsp_host=None, pycsp_port=None, **kwargs):
        """Set how the process starts: ctx, a multiprocessing (or shmq)
        context or a start method's name. Returns self."""
        if kwargs:
            raise InfoException(f"Parameters {sorted(kwargs)} not valid for Process")
        if self._proc is not None:
            raise FatalException("Can not update process settings after it has been started")
        method = ctx if ctx is not None else start_method
        if method is not None:
            self._method = method if isinstance(method, str) else method.get_start_method()
        return self

    def start(self):
        """Start it alone (Parallel, Sequence and Spawn start many)."""
        _launch([self], want_result=True)

    def join(self, timeout=None):
        if self._proc is None:
            raise InfoException("can only join a started process")
        if timeout is None and self._batch is not None and self._batch.results is not None:
            self._batch.wait({self._batch.procs.index(self)})
        else:
            self._proc.join(timeout)

    def join_report(self):
        """Wait for it to end; its return value."""
        self.join()
        return self.return_value

    def is_alive(self):
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self):
        return None if self._proc is None else self._proc.pid

    @property
    def exitcode(self):
        return None if self._proc is None else self._proc.exitcode

    def terminate(self):
        self._proc.terminate()

    def kill(self):
        self._proc.kill()

    def __mul__(self, multiplier):
        """Process(...) * N: N processes, the others with new ends of the
        same channels."""
        return [self] + [Process(self.fn, *_new_ends(self.args), **_new_ends(self.kwargs))
                         for _ in range(int(multiplier) - 1)]

    def __rmul__(self, multiplier):
        return self.__mul__(multiplier)

    def __repr__(self):
        return f"<csp Process {self.name}>"


MultiProcess = Process


def _new_ends(args):
    if isinstance(args, dict):
        return {_new_ends(k): _new_ends(v) for k, v in args.items()}
    if isinstance(args, (list, tuple)):
        return type(args)(_new_ends(a) for a in args)
    if isinstance(args, ChannelEnd):
        return args.channel.reader() if args.isReader() else args.channel.writer()
    return args


def _propagate(args, kwargs, how):
    """PyCSP's end of a process by poison (retire): poison (retire) every
    channel end found in its arguments."""
    def walk(items):
        for arg in items:
            if isinstance(arg, (list, tuple)):
                walk(arg)
            elif isinstance(arg, dict):
                walk(list(arg.keys()))
                walk(list(arg.values()))
            else:
                method = getattr(arg, how, None)
                if isinstance(method, types.MethodType):
                    try:
                        method()
                    except (ChannelPoisonException, ChannelRetireException, FatalException):
                        pass
    walk(args)
    walk(list(kwargs.values()))


def _child_main(fnref, args, kwargs, heap, results, index, others, method, pid_id):
    global _heap, _start_method, _current_id
    if _heap is None:
        _heap = heap  # a spawned child: its parent's heap, for channels it makes
    _start_method = method
    _current_id = pid_id
    # Forked: the ends the parent passes to the other processes it starts
    # are not this one's to hold.
    for end in others:
        end._let_go()
    try:
        value = None
        try:
            value = fnref.fn(*args, **kwargs)
        except ChannelPoisonException:
            _propagate(args, kwargs, "poison")
        except ChannelRetireException:
            _propagate(args, kwargs, "retire")
        if results is not None:
            results.put(("done", index, value))
    finally:
        # Let go of every end now, not once the exit is noticed.
        for end in list(_ends):
            end._let_go()
        for channel in list(_channels):
            channel._chan.close()
        # Ends this process sent (in messages, or as its value) are held
        # until their receivers opened them: give them a moment.
        deadline = time.monotonic() + _TRANSIT_WAIT_S
        while connection._in_transit and time.monotonic() < deadline:
            time.sleep(0.005)


def _flatten(plist):
    procs = []
    for p in plist:
        if isinstance(p, list):
            procs.extend(p)
        else:
            procs.append(p)
    for p in procs:
        if not isinstance(p, Process):
            raise InfoException(f"{p!r} is not a CSP Process (made by a @process function)")
    return procs


def _launch(procs, want_result, sequential=False):
    """Start procs (one after another, each ended before the next starts, if
    sequential); this process lets go of the ends passed to them once the
    processes that take them have started."""
    mine = [_ends_in(list(p.args) + list(p.kwargs.values())) for p in procs]
    every = _ends_in(mine)
    for end in every:
        end._h()  # moved already: FatalException before anything starts
    batch = _Batch(procs, want_result)
    for i, p in enumerate(procs):
        own = {id(e) for e in mine[i]}
        batch.start(i, [e for e in every if id(e) not in own])
        if sequential:
            later = {id(e) for ends in mine[i + 1:] for e in ends}
            for end in mine[i]:
                if id(end) not in later:
                    end._let_go()
            batch.wait({i})
    for end in every:
        end._let_go()
    return batch


def Parallel(*plist, **kwargs):
    """Parallel(P1, [P2, .. ,PN]): run the processes concurrently, each an OS
    process; returns the list of their return values once all ended.
    Keyword arguments go to each process's update() (ctx=...)."""
    procs = _flatten(plist)
    for p in procs:
        p.update(**kwargs)
    batch = _launch(procs, want_result=True)
    batch.wait(set(range(len(procs))))
    return [p.return_value for p in procs]


def Sequence(*plist, **kwargs):
    """Sequence(P1, [P2, .. ,PN]): run the processes one after another, each
    an OS process; returns the list of their return values."""
    procs = _flatten(plist)
    for p in procs:
        p.update(**kwargs)
    _launch(procs, want_result=True, sequential=True)
    return [p.return_value for p in procs]


def Spawn(*plist, **kwargs):
    """Spawn(P1, [P2, .. ,PN]): start the processes and return at once
    (shutdown(), or this process's exit, waits for them)."""
    procs = _flatten(plist)
    for p in procs:
        p.update(**kwargs)
    _launch(procs, want_result=False)
    _spawned.extend(procs)


def current_process_id():
    """The id of the running CSP process ('__main__' outside one)."""
    return _current_id if _current_id is not None else "__main__"


def shutdown():
    """Wait for the processes Spawn() started."""
    while _spawned:
        p = _spawned.pop(0)
        if p._proc is not None:
            p._proc.join()

