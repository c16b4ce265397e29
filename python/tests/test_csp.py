"""shmq.csp: PyCSP's API between OS processes. Every CSP process here is a real process;
tests observe what the processes report (return values through Parallel, messages through
channels) and bound every wait, so a broken channel fails a test instead of hanging it.

The classic CSP programs (pipeline, sieve, dining philosophers, a fair multiplexer) are tests
too. Under the standard-library target there is no csp module: the file is skipped.
"""
import collections
import os
import signal
import time

import pytest

from conftest import IS_SHMQ
from helpers import bounded

if not IS_SHMQ:
    pytest.skip("shmq.csp is an shmq extra", allow_module_level=True)

import shmq.csp as csp  # noqa: E402
from shmq.csp import (AltSelect, Channel, ChannelPoisonException,  # noqa: E402
                      ChannelRetireException, FairSelect, FatalException, InputGuard,
                      OutputGuard, Parallel, PriSelect, Sequence, SkipGuard, Spawn,
                      TimeoutGuard, choice, poison, process, retire, shutdown)

pytestmark = pytest.mark.usefixtures("reap_children")

LIMIT = 30  # seconds for any network here to finish: each takes well under one


@pytest.fixture(params=["fork", "spawn"])
def fork_spawn(request, mp):
    """A context of fork or spawn (forkserver passes ends as spawn does: the `ctx` tests
    cover it)."""
    return mp.get_context(request.param)


def par(*procs, **kw):
    """Parallel(...), failing the test instead of hanging."""
    return bounded(lambda: Parallel(*procs, **kw), timeout=LIMIT)


# --- processes used by several tests ---------------------------------------------------------

@process
def writer_of(cout, items, retire_at_end=True):
    for item in items:
        cout(item)
    if retire_at_end:
        retire(cout)
    return len(items)


@process
def reader_until_retired(cin):
    got = []
    try:
        while True:
            got.append(cin())
    except ChannelRetireException:
        return got


@process
def reader_n(cin, n):
    return [cin() for _ in range(n)]


# --- the binding: _shmq.Chan and _shmq.alt ------------------------------------------------------

def test_chan_binding_ends_roles_and_errors():
    from shmq import _shmq
    heap = csp._csp_heap()
    c = _shmq.Chan.create(heap, None, 2)
    assert (c.roles, c.buffer, c.closed) == (3, 2, False)
    r, w = _shmq.Chan.open(heap, c.name, 1), _shmq.Chan.open(heap, c.name, 2)
    assert (r.roles, w.roles, r.name) == (1, 2, c.name) and r.end_name != w.end_name
    same = _shmq.Chan.end_open(heap, w.end_name)
    assert same.end_name == w.end_name and same.roles == 2
    c.retire(3)
    assert c.roles == 0
    with pytest.raises(ValueError):
        r.write("no write role")
    with pytest.raises(TimeoutError):
        r.read(timeout=0.01)
    w.write(1)
    same.write(2)
    with pytest.raises(TimeoutError):
        w.write(3, timeout=0)  # buffer of 2: full
    assert [r.read(), r.read()] == [1, 2]
    with pytest.raises(ValueError):
        w.write(b"x" * (_shmq.CHAN_MSG_MAX + 1))
    with pytest.raises(FileNotFoundError):
        _shmq.Chan.open(heap, "no such channel", 1)
    same.retire(2)  # the end, for every handle on it
    with pytest.raises(ChannelRetireException):
        w.write(4)
    with pytest.raises(ChannelRetireException):
        r.read()
    w.close()
    assert w.closed
    with pytest.raises(ValueError):
        w.write(5)


def test_alt_binding_big_messages_and_results():
    from shmq import _shmq
    heap = csp._csp_heap()
    a, b = _shmq.Chan.create(heap, None, 1), _shmq.Chan.create(heap, None, 1)
    big = bytes(range(256)) * (4 << 10)  # 1 MiB: more than alt's first buffer
    b.write(big)
    assert _shmq.alt([(a, 1, None), (b, 1, None)], 0, 1) == (1, big)
    assert _shmq.alt([(a, 1, None), (b, 1, None)], 0, 0) is None  # SkipGuard
    assert _shmq.alt([(a, 2, big)], 0, 0) == (0, None)
    assert a.read() == big
    with pytest.raises(ValueError):
        _shmq.alt([], 0, 0)
    a.poison()
    with pytest.raises(ChannelPoisonException) as e:
        _shmq.alt([(b, 1, None), (a, 1, None)], 0, 0)
    assert e.value.index == 1


def test_alt_fair_rotation_is_kept_across_plain_calls():
    from shmq import _shmq
    heap = csp._csp_heap()
    chans = [_shmq.Chan.create(heap, None, 8) for _ in range(3)]
    side = _shmq.Chan.create(heap, None, 16)
    for c in chans:
        for i in range(4):
            c.write(i)
    order = []
    for _ in range(6):
        order.append(_shmq.alt([(c, 1, None) for c in chans], 1, 0)[0])
        side.write("in between")
    assert sorted(order[:3]) == [0, 1, 2] and sorted(order[3:]) == [0, 1, 2], order


# --- the API's shape ---------------------------------------------------------------------------

def test_star_import_gives_pycsp_names():
    names = {}
    exec("from shmq.csp import *", names)
    for name in ["process", "Process", "Parallel", "Sequence", "Spawn", "Channel", "poison",
                 "retire", "ChannelPoisonException", "ChannelRetireException", "AltSelect",
                 "PriSelect", "FairSelect", "InputGuard", "OutputGuard", "TimeoutGuard",
                 "SkipGuard", "Skip", "Timeout", "choice", "Alternation", "shutdown",
                 "current_process_id", "multiprocess", "MultiProcess", "InfoException",
                 "FatalException", "io"]:
        assert name in names, name


def test_process_decorator_makes_an_unstarted_process():
    p = writer_of(None, [])
    assert isinstance(p, csp.Process)
    assert p.pid is None and not p.is_alive()


@process
def returns(x):
    return {"got": x, "pid": os.getpid()}


def test_parallel_returns_values_in_order_from_other_processes(ctx):
    values = par(*[returns(i) for i in range(3)], ctx=ctx)
    assert [v["got"] for v in values] == [0, 1, 2]
    assert os.getpid() not in {v["pid"] for v in values}
    assert len({v["pid"] for v in values}) == 3


@process
def timed(tag):
    start = time.monotonic()
    time.sleep(0.05)
    return (tag, start, time.monotonic())


def test_sequence_runs_one_after_another():
    values = bounded(lambda: Sequence(timed(0), [timed(1), timed(2)]), timeout=LIMIT)
    assert [v[0] for v in values] == [0, 1, 2]
    for (_, _, end), (_, start, _) in zip(values, values[1:]):
        assert end <= start


@process
def sink_and_report(cin, report):
    report(cin())


def test_spawn_returns_at_once_and_shutdown_waits():
    data, out = Channel(), Channel(buffer=1)
    cout, rep = data.writer(), out.reader()
    Spawn(sink_and_report(data.reader(), out.writer()))
    # Spawn returned with the child waiting for data: rendezvous with it now.
    cout("ping")
    assert bounded(rep) == "ping"
    bounded(shutdown, timeout=LIMIT)
    assert not csp._spawned


def test_channel_sugar_and_process_multiplication():
    ch = Channel("sugar")
    cin, cout = +ch, -ch
    assert cin.isReader() and cout.isWriter()
    assert "sugar" in repr(cin)
    procs = writer_of(cout, ["x"], False) * 3
    assert len(procs) == 3 and all(isinstance(p, csp.Process) for p in procs)
    # Each copy got a new writer end of the same channel.
    assert len({id(p.args[0]) for p in procs}) == 3
    values = par(procs, reader_n(cin, 3))
    assert values[-1] == ["x", "x", "x"]


# --- channels --------------------------------------------------------------------------------

@process
def timed_reader(cin, delay):
    time.sleep(delay)
    before = time.monotonic()
    return (before, cin())


@process
def timed_writer(cout, msg):
    cout(msg)
    return time.monotonic()


def test_rendezvous_write_returns_only_after_the_read_started(ctx):
    ch = Channel()
    (before_read, msg), after_write = par(timed_reader(ch.reader(), 0.5),
                                          timed_writer(ch.writer(), "hello"), ctx=ctx)
    assert msg == "hello"
    assert after_write >= before_read


def test_buffered_channel_holds_exactly_its_capacity():
    n = 4
    ch = Channel(buffer=n)
    cout = ch.writer()
    for i in range(n):
        bounded(cout, i)  # no reader yet: each returns once buffered
    g, msg = PriSelect(OutputGuard(cout, msg=n), SkipGuard())
    assert isinstance(g, SkipGuard) and msg is None  # full: the n+1-th would block
    g, _ = AltSelect(OutputGuard(cout, msg=n), TimeoutGuard(seconds=0.1))
    assert isinstance(g, TimeoutGuard)
    values = par(reader_n(ch.reader(), n + 1), writer_of(cout, [n], False))
    assert values[0] == list(range(n + 1))


def test_messages_of_any_kind_and_size():
    items = [None, 1, -2**70, "é", b"\x00" * 200_000, list(range(1000)), {"k": (1, 2.5)},
             collections.OrderedDict(a=1), "x" * (3 << 20)]
    ch = Channel()
    values = par(writer_of(ch.writer(), items), reader_until_retired(ch.reader()))
    assert values[1] == items


def test_any_to_any_delivers_each_message_exactly_once(fork_spawn):
    ch = Channel(buffer=2)
    sent = [[(w, i) for i in range(40)] for w in range(3)]
    # One writer retires, the others just end: both take its end out of the channel.
    writers = [writer_of(ch.writer(), items, w == 0) for w, items in enumerate(sent)]
    readers = [reader_until_retired(ch.reader()) for _ in range(3)]
    values = par(*writers, *readers, ctx=fork_spawn)
    received = [m for got in values[3:] for m in got]
    assert collections.Counter(received) == collections.Counter(m for s in sent for m in s)
    for got in values[3:]:  # each writer's messages in the order written
        for w in range(3):
            mine = [i for ww, i in got if ww == w]
            assert mine == sorted(mine)


# --- retire and poison -------------------------------------------------------------------------

def test_retire_of_every_writer_ends_reads_after_the_buffer_is_drained():
    ch = Channel(buffer=5)
    cout1, cout2, cin = ch.writer(), ch.writer(), ch.reader()
    cout1(1)
    cout2(2)
    retire(cout1)
    with pytest.raises(ChannelRetireException):
        cout1(3)  # this end is retired
    cout2(3)
    retire(cout2)
    assert [cin(), cin(), cin()] == [1, 2, 3]
    with pytest.raises(ChannelRetireException):
        cin()


def test_retirement_of_the_writers_is_final():
    ch = Channel(buffer=5)
    cout, cin = ch.writer(), ch.reader()
    retire(cout)
    with pytest.raises(ChannelRetireException):
        cin()
    late = ch.writer()
    with pytest.raises(ChannelRetireException):  # PyCSP: a retired channel stays retired
        late("late")
    with pytest.raises(ChannelRetireException):
        cin()


def test_retire_of_every_reader_ends_writes_in_a_waiting_writer():
    ch = Channel()
    cin1, cin2 = ch.reader(), ch.reader()

    @process
    def wait_then_retire(cin):
        time.sleep(0.2)
        retire(cin)

    values = par(writer_of(ch.writer(), ["never read"]), wait_then_retire(cin1),
                 wait_then_retire(cin2))
    # The writer's pending write raised: it ended by retire (None), retiring its end.
    assert values == [None, None, None]


@process
def blocked_reader(cin):
    try:
        cin()
    except ChannelPoisonException:
        return "poisoned"


def test_poison_raises_in_pending_and_later_calls_of_everyone():
    ch = Channel(buffer=3)
    cout, cin = ch.writer(), ch.reader()
    other = ch.writer()
    cout("dropped")

    @process
    def poisoner(end):
        time.sleep(0.3)
        poison(end)

    empty = Channel()
    values = par(blocked_reader(empty.reader()), poisoner(empty.writer()))
    assert values[0] == "poisoned"
    poison(other)
    for call in (cin, lambda: cout("x"), lambda: ch.writer()("y")):
        with pytest.raises(ChannelPoisonException):
            call()  # buffered messages are dropped, later calls raise
    with pytest.raises(ChannelPoisonException):
        AltSelect(InputGuard(cin), SkipGuard())


@process
def doubler(cin, cout):
    while True:
        cout(2 * cin())


@process
def poison_head(cout):
    cout(1)
    poison(cout)


def test_a_process_dying_of_poison_poisons_its_channels(fork_spawn):
    a, b, c = Channel(), Channel(), Channel()
    head = a.writer()
    values = par(poison_head(head), doubler(a.reader(), b.writer()),
                 doubler(b.reader(), c.writer()), blocked_reader_twice(c.reader()),
                 ctx=fork_spawn)
    assert values[:3] == [None, None, None]
    assert values[3] == [4, "poisoned"]


@process
def blocked_reader_twice(cin):
    got = [cin()]
    try:
        cin()
    except ChannelPoisonException:
        got.append("poisoned")
    return got


def test_a_process_ending_by_retire_retires_its_channels():
    a, b = Channel(), Channel()
    values = par(writer_of(a.writer(), [1, 2, 3]), doubler(a.reader(), b.writer()),
                 reader_until_retired(b.reader()))
    assert values == [3, None, [2, 4, 6]]


def test_an_end_passed_to_a_process_is_moved():
    ch = Channel()
    cout = ch.writer()
    par(writer_of(cout, [], False), reader_until_retired(ch.reader()))
    with pytest.raises(FatalException):
        cout("late")
    with pytest.raises(FatalException):
        Parallel(writer_of(cout, []))


# --- alternation -------------------------------------------------------------------------------

@process
def fill(cout, items):
    for item in items:
        cout(item)
    return len(items)


def test_priselect_prefers_the_first_ready_guard():
    chans = [Channel(buffer=5) for _ in range(3)]
    ends = [c.reader() for c in chans]
    keep = [c.writer() for c in chans]  # a drained channel stays unretired
    par(*[fill(c.writer(), [(i, k) for k in range(5)]) for i, c in enumerate(chans)])
    order = []
    for _ in range(15):
        g, msg = PriSelect(*[InputGuard(e) for e in ends])
        assert g is ends[msg[0]]
        order.append(msg)
    assert order == [(i, k) for i in range(3) for k in range(5)]
    retire(keep)


def test_fairselect_serves_every_ready_guard_within_n_rounds():
    n, k = 4, 6
    chans = [Channel(buffer=k) for _ in range(n)]
    ends = [c.reader() for c in chans]
    keep = [c.writer() for c in chans]
    par(*[fill(c.writer(), [i] * k) for i, c in enumerate(chans)])
    order = [FairSelect(*[InputGuard(e) for e in ends])[1] for _ in range(n * k)]
    for start in range(0, n * k - n + 1):
        assert sorted(order[start:start + n]) == list(range(n)), order
    retire(keep)


@process
def mixer(cin, cout, n_in, n_out):
    """Alternates over an input and an output until each did its share; returns what
    fired, in order."""
    fired, counter = [], 0
    while fired.count("in") < n_in or fired.count("out") < n_out:
        guards = []
        if fired.count("in") < n_in:
            guards.append(InputGuard(cin))
        if fired.count("out") < n_out:
            guards.append(OutputGuard(cout, msg=counter))
        g, msg = AltSelect(*guards)
        if g is cin:
            assert msg == ("item", fired.count("in"))
            fired.append("in")
        else:
            assert g is cout and msg is None
            fired.append("out")
            counter += 1
    return fired


def test_output_and_input_guards_mixed(fork_spawn):
    a, b = Channel(), Channel()
    values = par(mixer(a.reader(), b.writer(), 5, 7),
                 writer_of(a.writer(), [("item", i) for i in range(5)], False),
                 reader_n(b.reader(), 7), ctx=fork_spawn)
    assert sorted(values[0]) == ["in"] * 5 + ["out"] * 7
    assert values[2] == list(range(7))


def test_guard_actions_run_as_pycsp_runs_them():
    a, b = Channel(buffer=2), Channel(buffer=2)
    cin, cout = a.reader(), b.writer()
    a_out = a.writer()
    a_out("first")
    log = []

    @choice
    def on_input(tag, channel_input=None):
        log.append((tag, channel_input))

    g, msg = AltSelect(InputGuard(cin, action=on_input("choice")))
    assert (g, msg) == (cin, "first") and log == [("choice", "first")]
    g, msg = AltSelect(OutputGuard(cout, msg="out", action=lambda: log.append("sent")))
    assert (g, msg) == (cout, None) and log[-1] == "sent"
    g, msg = AltSelect(InputGuard(cin), SkipGuard(action="log.append(('skip', channel_input))"))
    assert isinstance(g, SkipGuard) and msg is None and log[-1] == ("skip", None)
    t0 = time.monotonic()
    g, msg = AltSelect(InputGuard(cin), TimeoutGuard(seconds=0.2,
                                                     action=lambda channel_input: log.append(
                                                         ("timeout", channel_input))))
    assert isinstance(g, TimeoutGuard) and msg is None and log[-1] == ("timeout", None)
    assert time.monotonic() - t0 >= 0.19
    assert b.reader()() == "out"


def test_skip_and_timeout_guards_lose_to_a_ready_channel():
    ch = Channel(buffer=1)
    cin, cout = ch.reader(), ch.writer()
    cout("ready")
    assert PriSelect(InputGuard(cin), SkipGuard()) == (cin, "ready")
    cout("again")
    assert AltSelect(TimeoutGuard(seconds=5), InputGuard(cin)) == (cin, "again")
    # A SkipGuard first is always chosen, as in a PyCSP PriSelect.
    cout("kept")
    g, _ = PriSelect(SkipGuard(), InputGuard(cin))
    assert isinstance(g, SkipGuard)
    assert cin() == "kept"


@process
def alt_forever(cin1, cin2, ready):
    ready(True)
    AltSelect(InputGuard(cin1), InputGuard(cin2))


def test_sigkill_of_a_process_blocked_in_altselect_hangs_nobody():
    c1, c2, sync = Channel(), Channel(), Channel(buffer=1)
    ready = sync.reader()
    later_reader = c1.reader()
    victim = alt_forever(c1.reader(), c2.reader(), sync.writer())
    victim.start()
    assert bounded(ready) is True
    time.sleep(0.2)  # let it reach its wait: nothing can be observed from outside
    os.kill(victim.pid, signal.SIGKILL)
    victim._proc.join(10)
    assert victim.exitcode == -signal.SIGKILL

    @process
    def write_both(cout1, cout2):
        for i in range(10):
            cout1(i)
        try:
            cout2("nobody reads this")
        except ChannelRetireException:
            return "retired"

    values = par(write_both(c1.writer(), c2.writer()), reader_until_retired(later_reader))
    # Its end of c2 died with it: the write there ends. It died well before the writes (more
    # than the millisecond chan.h allows for noticing): it is handed nothing.
    assert values == ["retired", list(range(10))]


# --- ends that travel --------------------------------------------------------------------------

@process
def server(requests, n):
    for _ in range(n):
        reply, x = requests()
        reply(x * x)
        retire(reply)


@process
def client(requests, x):
    ch = Channel()
    requests((ch.writer(), x))  # the writer end travels to the server
    return ch.reader()()


def test_a_channel_end_sent_through_a_channel(ctx):
    req = Channel()
    values = par(server(req.reader(), 3), *[client(req.writer(), x) for x in (2, 3, 4)],
                 ctx=ctx)
    assert values == [None, 4, 9, 16]


@process
def use_channel(channel, items):
    cout = channel.writer()
    for item in items:
        cout(item)


def test_a_channel_object_passed_to_a_process(ctx):
    ch = Channel(buffer=1)
    cin = ch.reader()
    values = par(use_channel(ch, ["a", "b"]), reader_until_retired(cin), ctx=ctx)
    assert values[1] == ["a", "b"]


# --- classic CSP programs ---------------------------------------------------------------------

@process
def successor(cin, cout):
    while True:
        cout(cin() + 1)


def test_pipeline_of_processes(fork_spawn):
    n = 8
    chans = [Channel() for _ in range(n + 1)]
    values = par(writer_of(chans[0].writer(), list(range(20))),
                 [successor(chans[i].reader(), chans[i + 1].writer()) for i in range(n)],
                 reader_until_retired(chans[n].reader()), ctx=fork_spawn)
    assert values[-1] == [i + n for i in range(20)]


@process
def numbers(cout, below):
    for i in range(2, below):
        cout(i)
    retire(cout)


@process
def drop_multiples(cin, cout, p):
    while True:
        x = cin()
        if x % p:
            cout(x)


@process
def sieve(cin, primes):
    try:
        p = cin()
    except ChannelRetireException:
        retire(primes)
        return
    primes(p)
    rest = Channel()
    Parallel(drop_multiples(cin, rest.writer(), p), sieve(rest.reader(), primes))


def test_sieve_of_eratosthenes():
    nums, primes = Channel(), Channel()
    values = par(numbers(nums.writer(), 100), sieve(nums.reader(), primes.writer()),
                 reader_until_retired(primes.reader()))
    assert values[2] == [p for p in range(2, 100) if all(p % d for d in range(2, p))]


@process
def fork_keeper(left_up, left_down, right_up, right_down, meals):
    """A fork: taken by either neighbour (up), then given back (down) by the same one."""
    used = [0, 0]
    while min(used) < meals:
        guards = [InputGuard(up) for up, u in ((left_up, used[0]), (right_up, used[1]))
                  if u < meals]
        g, _ = AltSelect(*guards)
        side = 0 if g is left_up else 1
        used[side] += 1
        (left_down, right_down)[side]()
    return used


@process
def philosopher(i, first, second, meals, log):
    """Takes its lower-numbered fork first: no cycle of waits, no deadlock."""
    for _ in range(meals):
        first[0](i)
        second[0](i)
        log(("eat", i))
        log(("done", i))
        second[1](i)
        first[1](i)
    return meals


def test_dining_philosophers_eat_without_deadlock():
    n, meals = 5, 6
    up = [(Channel(), Channel()) for _ in range(n)]    # fork i: its left and right user
    down = [(Channel(), Channel()) for _ in range(n)]
    log = Channel(buffer=4 * n * meals)
    forks = [fork_keeper(up[i][0].reader(), down[i][0].reader(), up[i][1].reader(),
                         down[i][1].reader(), meals) for i in range(n)]
    phils = []
    for i in range(n):
        # Philosopher i sits between fork i (its right user slot 0) and fork i+1 (slot 1).
        mine = [(i, 0), ((i + 1) % n, 1)]
        ends = {f: (up[f][s].writer(), down[f][s].writer()) for f, s in mine}
        first, second = sorted(ends)
        phils.append(philosopher(i, ends[first], ends[second], meals, log.writer()))
    values = par(*forks, *phils)
    assert values[:n] == [[meals, meals]] * n
    assert values[n:] == [meals] * n
    cin = log.reader()
    eating = set()
    for _ in range(2 * n * meals):
        what, i = cin()
        if what == "eat":
            assert (i - 1) % n not in eating and (i + 1) % n not in eating, (i, eating)
            eating.add(i)
        else:
            eating.remove(i)


@process
def producer(cout, ready, me, k, buffered):
    for i in range(k):
        if i == buffered:
            ready(me)  # its first items wait in the channel's buffer
        cout((me, i))


@process
def fair_mux(cins, ready, cout, k):
    for _ in cins:  # every producer runs
        ready()
    count = [0] * len(cins)
    while min(count) < k:
        guards = [InputGuard(cin) for cin, c in zip(cins, count) if c < k]
        g, msg = FairSelect(*guards)
        count[cins.index(g)] += 1
        cout(msg)
    retire(cout)


def test_producer_consumer_through_a_fair_multiplexer(fork_spawn):
    p, k, buffered = 4, 40, 4
    chans = [Channel(buffer=buffered) for _ in range(p)]
    ready, out = Channel(), Channel()
    values = par(*[producer(c.writer(), ready.writer(), me, k, buffered)
                   for me, c in enumerate(chans)],
                 fair_mux([c.reader() for c in chans], ready.reader(), out.writer(), k),
                 reader_until_retired(out.reader()), ctx=fork_spawn)
    got = values[-1]
    assert sorted(got) == [(me, i) for me in range(p) for i in range(k)]
    for me in range(p):
        assert [i for m, i in got if m == me] == list(range(k))  # each producer's order
    # None starved: while every producer has items waiting, each is served in turn (what a
    # producer adds later depends on when it runs).
    assert collections.Counter(m for m, _ in got[:p * buffered]) == {me: buffered
                                                                     for me in range(p)}
