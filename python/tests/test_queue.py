"""Queue, SimpleQueue and JoinableQueue, as multiprocessing documents them.

Every test moves data between real processes (fork unless it is about the start
methods) and bounds every wait, so a broken queue fails instead of hanging.
"""
import collections
import math
import queue

import pytest

from helpers import bounded, join_ok, start, wait_until

pytestmark = pytest.mark.usefixtures("reap_children")


# --- helpers -----------------------------------------------------------------

def made_by(mp, obj):
    """Whether `obj` is an object of the module under test (not the stdlib's
    multiprocessing when testing shmq)."""
    return type(obj).__module__.partition(".")[0] == mp.__name__


# --- picklable payloads and child targets ------------------------------------

class Point:
    """A module-level class: instances must travel by pickle."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __eq__(self, other):
        return type(other) is Point and (self.x, self.y) == (other.x, other.y)


class MyInt(int):
    pass


class MyStr(str):
    pass


OBJECTS = [
    None, True, False, 0, 1, -1, 2**63 - 1, 2**63, -(2**63) - 1, 10**100, -(7**300),
    MyInt(5), 0.0, -0.0, 1.5, -2.25e-300, float("inf"), 3 + 4j,
    "", "ascii", "héllo wörld ✓ 日本語 \U0001F600", "\x00nul\x00", MyStr("sub"),
    b"", b"\x00\xff bytes", bytearray(b"mutable"), (), (1, "two", 3.0),
    [1, [2, [3, [4]]]], {"a": 1, "b": [2, 3], 4: {"nested": (5, 6)}}, {1, 2, 3},
    frozenset({"x"}), Point(1, 2), [Point(3, 4), {"p": Point(5, 6)}], range(3),
]
NEG_ZERO = next(i for i, o in enumerate(OBJECTS)
                if type(o) is float and o == 0 and math.copysign(1, o) < 0)


def put_range(q, n):
    for i in range(n):
        q.put(i)


def echo(inq, outq, n):
    for _ in range(n):
        outq.put(inq.get(timeout=10))


def produce(q, tag, n):
    for i in range(n):
        q.put((tag, i))


def consume_until_none(q, results):
    got = []
    while True:
        item = q.get(timeout=20)
        if item is None:
            break
        got.append(item)
    results.put(got)


def put_blob_and_exit(q, size, count):
    q.cancel_join_thread()
    for i in range(count):
        q.put(bytes([i]) * size)


def put_one(q, value):
    q.put(value)


def get_one_and_report(q, conn):
    conn.send(q.get(timeout=10))


def jq_consume(jq, n, done):
    for _ in range(n):
        done.put(jq.get(timeout=10) * 10)
        jq.task_done()


def jq_join_then_report(jq, conn):
    jq.join()
    conn.send("joined")


def simple_echo(inq, outq, n):
    for _ in range(n):
        outq.put(inq.get())


def count_and_sum(q, n, conn):
    got = [q.get(timeout=10) for _ in range(n)]
    conn.send((len(got), sum(got), got == sorted(got)))


# --- Queue ---------------------------------------------------------------------

def test_put_get_fifo_from_one_producer(mp):
    """Items put by one process come out in the order they were put."""
    q = mp.Queue()
    p = start(mp, put_range, q, 500)
    got = [q.get(timeout=10) for _ in range(500)]
    join_ok(p)
    assert got == list(range(500))


def test_objects_of_many_types_round_trip(mp):
    """Any picklable object survives the trip (value and exact type)."""
    inq, outq = mp.Queue(), mp.Queue()
    p = start(mp, echo, inq, outq, len(OBJECTS))
    for obj in OBJECTS:
        inq.put(obj)
    back = [outq.get(timeout=10) for _ in OBJECTS]
    join_ok(p)
    assert back == OBJECTS
    assert [type(o) for o in back] == [type(o) for o in OBJECTS]
    assert math.copysign(1.0, back[NEG_ZERO]) == -1.0


def test_large_objects(mp):
    """A 1 MiB bytes object and a dict holding a larger bytearray arrive intact."""
    blob = bytes(range(256)) * 4096
    big = {"data": bytearray(b"xyz" * 700_001), "n": 1}
    inq, outq = mp.Queue(), mp.Queue()
    p = start(mp, echo, inq, outq, 2)
    inq.put(blob)
    inq.put(big)
    first, second = outq.get(timeout=20), outq.get(timeout=20)
    join_ok(p)
    assert len(first) == 1 << 20 and first == blob
    assert second == big


def test_many_producers_many_consumers_exactly_once(mp):
    """Every item of 3 producers reaches exactly one of 2 consumers."""
    n, producers, consumers = 300, 3, 2
    q, results = mp.Queue(), mp.Queue()
    cons = [start(mp, consume_until_none, q, results) for _ in range(consumers)]
    prods = [start(mp, produce, q, tag, n) for tag in range(producers)]
    join_ok(*prods)
    for _ in cons:
        q.put(None)
    got = [results.get(timeout=20) for _ in cons]
    join_ok(*cons)
    everything = [item for part in got for item in part]
    assert len(everything) == n * producers
    assert collections.Counter(everything) == collections.Counter(
        (tag, i) for tag in range(producers) for i in range(n))
    for part in got:  # each producer's items stay in order within a consumer
        for tag in range(producers):
            mine = [i for t, i in part if t == tag]
            assert mine == sorted(mine)


def test_get_nonblocking_and_timeout_raise_empty(mp):
    """get(False), get_nowait() and get(timeout=) on an empty queue raise queue.Empty."""
    q = mp.Queue()
    with pytest.raises(queue.Empty):
        q.get(False)
    with pytest.raises(queue.Empty):
        q.get_nowait()
    with pytest.raises(queue.Empty):
        q.get(timeout=0.1)
    with pytest.raises(queue.Empty):
        q.get(True, 0.05)


def test_put_on_full_queue_raises_full(mp):
    """Queue(maxsize): put(False), put_nowait() and put(timeout=) raise queue.Full."""
    q = mp.Queue(2)
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(queue.Full):
        q.put(3, False)
    with pytest.raises(queue.Full):
        q.put_nowait(3)
    with pytest.raises(queue.Full):
        q.put(3, timeout=0.1)
    assert q.get(timeout=5) == 1
    q.put(3, timeout=5)  # room again
    assert [q.get(timeout=5), q.get(timeout=5)] == [2, 3]


def test_blocking_put_waits_for_a_consumer(mp):
    """A put on a full queue blocks until another process makes room."""
    q = mp.Queue(1)
    p = start(mp, put_range, q, 5)  # blocks on every put after the first
    got = [q.get(timeout=10) for _ in range(5)]
    join_ok(p)
    assert got == list(range(5))


def test_qsize_empty_full(mp):
    """qsize(), empty() and full() report the items put and not yet got."""
    q = mp.Queue(3)
    assert q.empty() and not q.full() and q.qsize() == 0
    p = start(mp, put_range, q, 3)
    join_ok(p)
    assert wait_until(lambda: q.qsize() == 3 and q.full() and not q.empty(), timeout=5.0)
    assert q.get(timeout=5) == 0
    assert q.qsize() == 2 and not q.full()
    q.get(timeout=5)
    q.get(timeout=5)
    assert q.qsize() == 0 and q.empty()


def test_unbounded_queue_never_blocks_put(mp):
    """Queue() (maxsize 0) is infinite: many puts with no consumer all return."""
    q = mp.Queue()
    bounded(put_range, q, 5000)  # a put that blocked would never return
    assert not q.full()
    a, b = mp.Pipe()
    p = start(mp, count_and_sum, q, 5000, b)
    assert a.poll(20) and a.recv() == (5000, sum(range(5000)), True)
    join_ok(p)


def test_close_then_put_or_get_raises_value_error(mp):
    """After close(), put() and get() on that queue raise ValueError."""
    q = mp.Queue()
    q.put(1)
    q.close()
    with pytest.raises(ValueError):
        q.put(2)
    with pytest.raises(ValueError):
        q.get()
    with pytest.raises(ValueError):
        q.get_nowait()
    bounded(q.join_thread)


def test_close_in_one_process_leaves_others_working(mp):
    """close() only closes the calling process's handle: a child still receives."""
    q = mp.Queue()
    a, b = mp.Pipe()
    p = start(mp, get_one_and_report, q, b)
    q.put("still open")
    q.close()
    bounded(q.join_thread)  # flushed: the child can read what was put before close
    assert a.poll(10) and a.recv() == "still open"
    join_ok(p)


def test_join_thread_after_close(mp):
    """join_thread() after close() returns once the data is flushed."""
    q = mp.Queue()
    for i in range(10):
        q.put(i)
    q.close()
    bounded(q.join_thread)


def test_cancel_join_thread_lets_a_producer_exit(mp):
    """A child that called cancel_join_thread() exits although nobody read what it put."""
    q = mp.Queue()
    p = start(mp, put_blob_and_exit, q, 64 * 1024, 4)
    join_ok(p)


def test_context_objects_belong_to_the_module(mp):
    """get_context(method).Queue() etc. make the module's own objects."""
    for method in ("fork", "spawn", "forkserver"):
        c = mp.get_context(method)
        for obj in (c.Queue(), c.SimpleQueue(), c.JoinableQueue()):
            assert made_by(mp, obj), (method, type(obj))


def test_queue_passes_to_child_under_every_start_method(mp, ctx):
    """A Queue given as a Process argument works in the child both ways."""
    inq, outq = ctx.Queue(), ctx.Queue()
    p = start(ctx, echo, inq, outq, 2)
    inq.put("héllo")
    inq.put(Point(7, 8))
    assert [outq.get(timeout=30), outq.get(timeout=30)] == ["héllo", Point(7, 8)]
    join_ok(p, timeout=30)


# --- SimpleQueue ---------------------------------------------------------------

def test_simple_queue_put_get_empty(mp):
    """SimpleQueue put/get between processes, empty() before and after."""
    inq, outq = mp.SimpleQueue(), mp.SimpleQueue()
    assert inq.empty() and outq.empty()
    p = start(mp, simple_echo, inq, outq, len(OBJECTS))
    for obj in OBJECTS:
        inq.put(obj)
    back = [bounded(outq.get) for _ in OBJECTS]
    join_ok(p)
    assert back == OBJECTS
    assert outq.empty()
    outq.put(1)
    assert not outq.empty()
    assert bounded(outq.get) == 1


def test_simple_queue_close(mp):
    """SimpleQueue.close() releases it; using it afterwards raises."""
    q = mp.SimpleQueue()
    q.put("x")
    assert q.get() == "x"
    q.close()
    with pytest.raises((OSError, ValueError)):
        q.put("y")
    with pytest.raises((OSError, ValueError)):
        q.get()


def test_simple_queue_passes_to_child_under_every_start_method(mp, ctx):
    """A SimpleQueue given as a Process argument works in the child."""
    q = ctx.SimpleQueue()
    p = start(ctx, put_one, q, {"k": [1, 2]})
    assert bounded(q.get, timeout=30) == {"k": [1, 2]}
    join_ok(p, timeout=30)


# --- JoinableQueue ---------------------------------------------------------------

def test_task_done_too_many_times_raises_value_error(mp):
    """task_done() called more times than items were got raises ValueError."""
    jq = mp.JoinableQueue()
    with pytest.raises(ValueError):
        jq.task_done()
    jq.put(1)
    assert jq.get(timeout=5) == 1
    jq.task_done()
    with pytest.raises(ValueError):
        jq.task_done()


def test_join_waits_for_task_done_across_processes(mp):
    """join() returns once a consumer process marked every put item done."""
    jq, done = mp.JoinableQueue(), mp.Queue()
    for i in range(20):
        jq.put(i)
    p = start(mp, jq_consume, jq, 20, done)
    bounded(jq.join)
    # every item was processed before join returned
    assert sorted(done.get(timeout=5) for _ in range(20)) == [i * 10 for i in range(20)]
    join_ok(p)


def test_join_blocks_while_tasks_are_pending(mp):
    """join() in another process does not return while an item is not done."""
    jq = mp.JoinableQueue()
    a, b = mp.Pipe()
    jq.put("job")
    p = start(mp, jq_join_then_report, jq, b)
    assert not a.poll(0.3)  # still waiting: the item is not done
    assert jq.get(timeout=5) == "job"
    assert not a.poll(0.1)  # got but not done: still waiting
    jq.task_done()
    assert a.poll(10) and a.recv() == "joined"
    join_ok(p)


def test_join_on_empty_queue_returns(mp):
    """join() with nothing ever put returns at once."""
    jq = mp.JoinableQueue()
    bounded(jq.join)


def test_joinable_queue_passes_to_child_under_every_start_method(mp, ctx):
    """A JoinableQueue given as a Process argument: the child's task_done releases join()."""
    jq, done = ctx.JoinableQueue(), ctx.Queue()
    jq.put(4)
    jq.put(5)
    p = start(ctx, jq_consume, jq, 2, done)
    bounded(jq.join, timeout=30)
    assert sorted([done.get(timeout=30), done.get(timeout=30)]) == [40, 50]
    join_ok(p, timeout=30)
