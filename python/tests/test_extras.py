"""shmq's additions to multiprocessing (marked shmq_only), and behaviour both
share that the other files do not cover (SIGINT interrupting a blocking call).

- put_many(iterable, block=True, timeout=None) / get_many(n, block=True, timeout=None)
- `for item in q` ends once every producer process is gone and q is drained
- OwnerDiedWarning / TaskLostError exist (their triggers are in test_kill.py)
- await q.get_async() / await conn.recv_async() let other coroutines run
- Lock, Queue and Value sent to an already running process work there
"""
import asyncio
import os
import queue
import signal
import time

import pytest

from conftest import shmq_only
from helpers import bounded, join_ok, recv, start

pytestmark = pytest.mark.usefixtures("reap_children")


# --- child targets -----------------------------------------------------------

def put_many_range(q, n):
    q.put_many(range(n))


def put_one_then_wait(q, go):
    q.put("first")
    go.wait(10)
    q.put("second")


def put_range(q, n):
    for i in range(n):
        q.put(i)


def put_close_linger(q, n, linger):
    for i in range(n):
        q.put(i)
    q.close()
    linger.wait(10)


def idle(q, linger):
    linger.wait(10)


def iterate_and_report(q, conn):
    conn.send(sorted(q))


def put_wait_put(q, attached, go, base):
    q.put(base)
    attached.set()  # a producer from here on
    go.wait(10)
    q.put(base + 1)


def put_range_together(q, n, barrier):
    q.put(0)
    barrier.wait(10)  # every producer attached before any leaves
    for i in range(1, n):
        q.put(i)


def put_when_told(q, go):
    told = go.wait(5)
    q.put(("item", told))


def send_when_told(conn, go):
    told = go.wait(5)
    conn.send(("msg", told))


def interrupted(what, obj, conn):
    """Block in `what` on obj; report whether SIGINT raised KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        conn.send("ready")
        if what == "Queue.get":
            obj.get()
        elif what == "Lock.acquire":
            obj.acquire()
        elif what == "Event.wait":
            obj.wait()
        elif what == "JoinableQueue.join":
            obj.join()
        conn.send("returned")
    except KeyboardInterrupt:
        conn.send("KeyboardInterrupt")


def use_lock_from_queue(q, conn):
    lock = q.get(timeout=10)
    conn.send(lock.acquire(timeout=10))
    assert conn.poll(10)
    conn.recv()
    lock.release()
    conn.send("released")


def use_queue_from_pipe(conn):
    assert conn.poll(10)
    q = conn.recv()
    for i in range(5):
        q.put(i * i)
    q.close()
    conn.send("done")


def use_value_from_queue(q, conn):
    v = q.get(timeout=10)
    with v.get_lock():
        v.value += 5
    conn.send("done")


# --- put_many / get_many -----------------------------------------------------

@shmq_only
def test_put_many_get_many_in_order(mp):
    """put_many puts every item in order; get_many(n) returns 1..n items, FIFO."""
    q = mp.Queue()
    p = start(mp, put_many_range, q, 50)
    got = []
    while len(got) < 50:
        chunk = q.get_many(8, timeout=10)
        assert isinstance(chunk, list) and 1 <= len(chunk) <= 8
        got.extend(chunk)
    join_ok(p)
    assert got == list(range(50))


@shmq_only
def test_put_many_any_iterable_and_types(mp):
    """put_many takes any iterable (a generator too); objects keep type and value."""
    q = mp.Queue()
    objs = [None, 10**30, -1, "é", b"\x00", (1, 2), {"k": [1]}, 2.5]
    q.put_many(o for o in objs)
    q.put_many([])
    got = []
    while len(got) < len(objs):
        got.extend(q.get_many(len(objs), timeout=10))
    assert got == objs
    with pytest.raises(queue.Empty):
        q.get_many(1, block=False)


@shmq_only
def test_get_many_waits_only_for_the_first_item(mp):
    """get_many(5) returns the one item there instead of waiting for five."""
    q = mp.Queue()
    go = mp.Event()
    p = start(mp, put_one_then_wait, q, go)
    assert q.get_many(5, timeout=10) == ["first"]
    go.set()
    assert q.get_many(5, timeout=10) == ["second"]
    join_ok(p)


@shmq_only
def test_get_many_on_empty_queue_raises_empty(mp):
    """get_many raises queue.Empty with block=False and after a timeout."""
    q = mp.Queue()
    with pytest.raises(queue.Empty):
        q.get_many(3, block=False)
    with pytest.raises(queue.Empty):
        q.get_many(3, timeout=0.1)


@shmq_only
def test_put_many_on_full_queue_raises_full(mp):
    """put_many on a full Queue(maxsize) raises queue.Full with block=False and on timeout."""
    q = mp.Queue(2)
    q.put_many([1, 2])
    with pytest.raises(queue.Full):
        q.put_many([3], block=False)
    with pytest.raises(queue.Full):
        q.put_many([3], timeout=0.1)
    got = q.get_many(5, timeout=5)
    if len(got) == 1:
        got += q.get_many(5, timeout=5)
    assert got == [1, 2]


@shmq_only
def test_put_many_blocks_until_room(mp):
    """put_many into a small bounded queue completes as a consumer makes room."""
    q = mp.Queue(4)
    p = start(mp, put_many_range, q, 40)
    got = []
    while len(got) < 40:
        got.extend(q.get_many(3, timeout=10))
    join_ok(p)
    assert got == list(range(40))


# --- iteration to the end of data ----------------------------------------------

@shmq_only
def test_iteration_ends_when_the_producer_exits(mp):
    """list(q) returns what a producer child put and ends once it exited."""
    q = mp.Queue()
    p = start(mp, put_range, q, 100)
    assert bounded(list, q) == list(range(100))
    join_ok(p)


@shmq_only
def test_iteration_ends_when_the_producer_closes(mp):
    """q.close() in a producer that keeps running ends its role: iteration ends."""
    q = mp.Queue()
    linger = mp.Event()
    p = start(mp, put_close_linger, q, 3, linger)
    assert bounded(list, q) == [0, 1, 2]
    assert p.is_alive()
    linger.set()
    join_ok(p)


@shmq_only
def test_forked_child_that_never_puts_is_no_producer(mp):
    """A child that inherited q but never put does not keep iteration going."""
    q = mp.Queue()
    linger = mp.Event()
    bystander = start(mp, idle, q, linger)
    p = start(mp, put_range, q, 10)
    assert bounded(list, q) == list(range(10))
    assert bystander.is_alive()
    linger.set()
    join_ok(p, bystander)


@shmq_only
def test_iteration_waits_for_every_producer(mp):
    """With two producers, iteration ends only after both are gone."""
    q = mp.Queue()
    attached, go = mp.Event(), mp.Event()
    a, b = mp.Pipe()
    consumer = start(mp, iterate_and_report, q, b)
    slow = start(mp, put_wait_put, q, attached, go, 100)
    assert attached.wait(10)
    quick = start(mp, put_range, q, 3)
    join_ok(quick)
    assert not a.poll(0.3)  # the slow producer is still there: no end yet
    go.set()
    assert recv(a) == [0, 1, 2, 100, 101]
    join_ok(consumer, slow)


@shmq_only
def test_iteration_consumer_gets_everything(mp):
    """A consumer child iterating q sees every item of two producers once."""
    q = mp.Queue()
    a, b = mp.Pipe()
    barrier = mp.Barrier(2)
    consumer = start(mp, iterate_and_report, q, b)
    producers = [start(mp, put_range_together, q, 30, barrier) for _ in range(2)]
    got = recv(a, 20)
    join_ok(consumer, *producers)
    assert got == sorted(list(range(30)) * 2)


# --- exceptions and warnings ----------------------------------------------------

@shmq_only
def test_extra_exception_types(mp):
    """OwnerDiedWarning is a Warning and TaskLostError an Exception."""
    assert issubclass(mp.OwnerDiedWarning, Warning)
    assert issubclass(mp.TaskLostError, Exception)


# --- asyncio -------------------------------------------------------------------

@shmq_only
def test_get_async_lets_other_coroutines_run(mp):
    """await q.get_async() gets an item from another process while other
    coroutines keep running (one of them tells the producer to put)."""
    q = mp.Queue()
    go = mp.Event()
    p = start(mp, put_when_told, q, go)
    ticks = 0

    async def ticker(done):
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            go.set()  # only reachable while get_async waits without blocking the loop
            await asyncio.sleep(0.01)

    async def main():
        done = asyncio.Event()

        async def getter():
            item = await q.get_async()
            done.set()
            return item

        item, _ = await asyncio.wait_for(asyncio.gather(getter(), ticker(done)), 20)
        return item

    assert asyncio.run(main()) == ("item", True)
    assert ticks >= 1
    join_ok(p)


@shmq_only
def test_get_async_returns_at_once_when_item_present(mp):
    """get_async() on a non-empty queue returns its first item."""
    q = mp.Queue()
    p = start(mp, put_range, q, 2)
    join_ok(p)

    async def main():
        return [await asyncio.wait_for(q.get_async(), 10) for _ in range(2)]

    assert asyncio.run(main()) == [0, 1]


@shmq_only
def test_recv_async_lets_other_coroutines_run(mp):
    """await conn.recv_async() receives from another process while other
    coroutines keep running."""
    a, b = mp.Pipe()
    go = mp.Event()
    p = start(mp, send_when_told, b, go)

    async def ticker(done):
        while not done.is_set():
            go.set()
            await asyncio.sleep(0.01)

    async def main():
        done = asyncio.Event()

        async def receiver():
            msg = await a.recv_async()
            done.set()
            return msg

        msg, _ = await asyncio.wait_for(asyncio.gather(receiver(), ticker(done)), 20)
        return msg

    assert asyncio.run(main()) == ("msg", True)
    join_ok(p)


# --- SIGINT interrupts blocking calls -------------------------------------------

@pytest.mark.parametrize("what", ["Queue.get", "Lock.acquire", "Event.wait",
                                  "JoinableQueue.join"])
def test_sigint_interrupts_blocking_call(mp, what):
    """SIGINT to a child blocked in get/acquire/wait/join raises
    KeyboardInterrupt there within 2 s."""
    if what == "Queue.get":
        obj = mp.Queue()
    elif what == "Lock.acquire":
        obj = mp.Lock()
        obj.acquire()
    elif what == "Event.wait":
        obj = mp.Event()
    else:
        obj = mp.JoinableQueue()
        obj.put("never done")
    a, b = mp.Pipe()
    p = start(mp, interrupted, what, obj, b)
    assert recv(a) == "ready"
    time.sleep(0.2)  # let it block
    os.kill(p.pid, signal.SIGINT)
    assert a.poll(2), "SIGINT did not interrupt the blocking call within 2 s"
    assert a.recv() == "KeyboardInterrupt"
    join_ok(p)


# --- objects sent to a running process ----------------------------------------

@shmq_only
def test_lock_sent_through_queue_to_running_child(mp):
    """A Lock created after the child started, sent through a Queue, is the same lock there."""
    q = mp.Queue()
    a, b = mp.Pipe()
    p = start(mp, use_lock_from_queue, q, b)
    lock = mp.Lock()
    q.put(lock)
    assert recv(a) is True
    assert lock.acquire(timeout=0.2) is False  # the child holds it
    a.send("release")
    assert recv(a) == "released"
    assert lock.acquire(timeout=10) is True
    lock.release()
    join_ok(p)


@shmq_only
def test_queue_sent_through_pipe_to_running_child(mp):
    """A Queue created after the child started, sent through a Pipe, works there."""
    a, b = mp.Pipe()
    p = start(mp, use_queue_from_pipe, b)
    q = mp.Queue()
    a.send(q)
    assert recv(a) == "done"
    assert [q.get(timeout=10) for _ in range(5)] == [0, 1, 4, 9, 16]
    join_ok(p)


@shmq_only
def test_value_sent_through_queue_to_running_child(mp):
    """A Value sent through a Queue to a running child: its write is seen here."""
    q = mp.Queue()
    a, b = mp.Pipe()
    p = start(mp, use_value_from_queue, q, b)
    v = mp.Value("i", 1)
    q.put(v)
    assert recv(a) == "done"
    assert v.value == 6
    join_ok(p)
