"""SIGKILL at awkward moments: a process that dies never hangs or corrupts the
others (shmq's point; the tests multiprocessing passes too are not marked).

The parent kills a child with os.kill(pid, SIGKILL) once the child reported
(through a Pipe or an Event) that it reached the point under test. Every wait
is bounded.
"""
import os
import signal
import time
import warnings

import pytest

from conftest import shmq_only
from helpers import bounded, join_ok, recv, start, wait_until

pytestmark = pytest.mark.usefixtures("reap_children")


# --- helpers -----------------------------------------------------------------

def kill(p):
    """SIGKILL p and reap it."""
    os.kill(p.pid, signal.SIGKILL)
    p.join(10)
    assert p.exitcode == -signal.SIGKILL


# --- child targets -----------------------------------------------------------

def report_then_get(q, conn, n):
    conn.send("ready")
    conn.send([q.get(timeout=20) for _ in range(n)])


def hold_forever(lock, conn):
    lock.acquire()
    conn.send("held")
    time.sleep(60)


def acquire_recording_warnings(lock, conn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conn.send("waiting")
        got = lock.acquire(timeout=20)
    conn.send((got, [w.category.__name__ for w in caught]))
    if got:
        lock.release()


def barrier_wait_report(barrier, conn):
    import threading as th
    try:
        conn.send(barrier.wait(20))
    except th.BrokenBarrierError:
        conn.send("broken")


def barrier_wait_only(barrier):
    barrier.wait(60)


def dict_updates(d, lock, reached):
    for i in range(1_000_000):
        with lock:
            d[f"k{i}"] = i
            d["n"] += 1
        if i == 50:
            reached.set()


def put_many_items(q, n, size):
    q.put_many([(i, bytes([i % 251]) * size) for i in range(n)])


def put_then_sleep(q, n, conn):
    for i in range(n):
        q.put(i)
    conn.send("put")
    time.sleep(60)


def get_without_task_done(jq, n, conn):
    conn.send([jq.get(timeout=10) for _ in range(n)])
    time.sleep(60)


def get_with_task_done(jq, n, conn):
    for _ in range(n):
        jq.get(timeout=10)
        jq.task_done()
    conn.send("done")
    time.sleep(60)


def send_then_huge(other_end, conn, size):
    other_end.close()
    conn.send("a")
    conn.send("b")
    conn.send_bytes(b"x" * size)  # blocks: nobody reads it


# --- tests -------------------------------------------------------------------

@shmq_only
def test_worker_killed_in_blocking_get(mp):
    """A consumer killed while blocked in get() does not stop the others from
    getting everything put afterwards."""
    q = mp.Queue()
    (a1, b1), (a2, b2) = mp.Pipe(), mp.Pipe()
    victim = start(mp, report_then_get, q, b1, 20)
    survivor = start(mp, report_then_get, q, b2, 20)
    assert recv(a1) == "ready" and recv(a2) == "ready"
    time.sleep(0.2)  # both are now blocked in get()
    kill(victim)
    for i in range(20):
        q.put(i)
    assert recv(a2, 20) == list(range(20))
    join_ok(survivor)


@shmq_only
@pytest.mark.parametrize("kind", ["Lock", "RLock"])
def test_lock_holder_killed(mp, kind):
    """acquire() takes a lock whose holder was killed, returns True and warns
    OwnerDiedWarning, within 2 s, for the process already waiting and later ones."""
    lock = getattr(mp, kind)()
    (a, b), (wa, wb) = mp.Pipe(), mp.Pipe()
    holder = start(mp, hold_forever, lock, b)
    assert recv(a) == "held"
    waiter = start(mp, acquire_recording_warnings, lock, wb)
    assert recv(wa) == "waiting"
    time.sleep(0.1)
    kill(holder)
    got, categories = recv(wa, 2)
    assert got is True
    assert "OwnerDiedWarning" in categories
    join_ok(waiter)
    # the waiter released it normally: no warning any more
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lock.acquire(timeout=2) is True
        lock.release()


@shmq_only
def test_lock_holder_killed_no_waiter(mp):
    """With nobody waiting at the time of death, the next acquire warns and succeeds."""
    lock = mp.Lock()
    a, b = mp.Pipe()
    holder = start(mp, hold_forever, lock, b)
    assert recv(a) == "held"
    kill(holder)
    with pytest.warns(mp.OwnerDiedWarning):
        assert lock.acquire(timeout=2) is True
    lock.release()


@shmq_only
def test_barrier_party_killed_while_waiting(mp):
    """A party killed in wait() breaks the barrier: the others get
    BrokenBarrierError promptly instead of hanging."""
    import threading as th
    barrier = mp.Barrier(3)
    a, b = mp.Pipe()
    victim = start(mp, barrier_wait_only, barrier)
    survivor = start(mp, barrier_wait_report, barrier, b)
    assert wait_until(lambda: barrier.n_waiting == 2)
    kill(victim)
    assert recv(a, 5) == "broken"  # well before the survivor's 20 s timeout
    join_ok(survivor)
    assert barrier.broken
    with pytest.raises(th.BrokenBarrierError):
        barrier.wait(1)


def test_manager_dict_consistent_after_writer_killed(mp):
    """A worker killed in a tight loop of Manager().dict() updates leaves a
    readable, consistent dict: each key holds the value written for it, len()
    matches the keys iterated, and the counter matches the keys within one."""
    with mp.Manager() as m:
        d, lock, reached = m.dict(), m.Lock(), mp.Event()
        d["n"] = 0
        p = start(mp, dict_updates, d, lock, reached)
        assert reached.wait(20)
        kill(p)
        keys = list(d.keys())
        items = dict(d.items())
        assert len(d) == len(keys) == len(items)
        assert set(keys) == set(items)
        written = sorted(int(k[1:]) for k in keys if k != "n")
        assert written == list(range(len(written)))  # k0..k{m-1}, no gap
        assert len(written) >= 51
        for k in keys:
            if k != "n":
                assert d[k] == int(k[1:]) == items[k]
        assert d["n"] in (len(written) - 1, len(written))


@shmq_only
def test_manager_dict_usable_after_writer_killed_holding_lock(mp):
    """After a writer was killed, its lock is taken over (OwnerDiedWarning at
    most) and updates go on."""
    with mp.Manager() as m:
        d, lock, reached = m.dict(), m.Lock(), mp.Event()
        d["n"] = 0
        p = start(mp, dict_updates, d, lock, reached)
        assert reached.wait(20)
        kill(p)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert lock.acquire(timeout=2) is True
        assert all(issubclass(w.category, mp.OwnerDiedWarning) for w in caught)
        before = d["n"]
        d["n"] += 1
        d["after"] = "kill"
        lock.release()
        assert d["n"] == before + 1 and d["after"] == "kill"


@shmq_only
def test_producer_killed_mid_put_many(mp):
    """A producer killed in put_many leaves only whole items, in order, and
    iteration ends (the dead producer is gone)."""
    size = 64 * 1024
    for round_ in range(3):
        q = mp.Queue(8)
        p = start(mp, put_many_items, q, 300, size)  # blocks: q holds 8
        first = [q.get(timeout=10) for _ in range(10 + round_ * 7)]
        kill(p)  # the producer is most likely copying the next item now
        items = first + bounded(list, q)
        assert [i for i, _ in items] == list(range(len(items)))
        for i, payload in items:
            assert payload == bytes([i % 251]) * size, f"item {i} is damaged"


@shmq_only
def test_iteration_ends_when_producer_killed(mp):
    """kill -9 ends a process's producer role: iteration returns what it put and ends."""
    q = mp.Queue()
    a, b = mp.Pipe()
    p = start(mp, put_then_sleep, q, 5, b)
    assert recv(a) == "put"
    kill(p)
    assert bounded(list, q) == [0, 1, 2, 3, 4]


@shmq_only
def test_join_raises_task_lost_when_consumer_killed(mp):
    """JoinableQueue.join() raises TaskLostError, once the others are done, when
    a consumer was killed holding items it never marked done."""
    jq = mp.JoinableQueue()
    (a, b), (ga, gb) = mp.Pipe(), mp.Pipe()
    jq.put("lost 1")
    jq.put("lost 2")
    victim = start(mp, get_without_task_done, jq, 2, b)
    assert sorted(recv(a)) == ["lost 1", "lost 2"]
    kill(victim)
    for i in range(3):
        jq.put(i)
    good = start(mp, get_with_task_done, jq, 3, gb)
    assert recv(ga) == "done"
    with pytest.raises(mp.TaskLostError):
        bounded(jq.join)
    good.kill()
    good.join(5)


@shmq_only
def test_join_after_killed_consumer_finished_its_tasks(mp):
    """A consumer killed after marking all its items done loses nothing: join() returns."""
    jq = mp.JoinableQueue()
    a, b = mp.Pipe()
    jq.put(1)
    jq.put(2)
    victim = start(mp, get_with_task_done, jq, 2, b)
    assert recv(a) == "done"
    kill(victim)
    bounded(jq.join)


def test_pipe_peer_killed_mid_message_gives_eof(mp):
    """A sender killed in the middle of a large message: the reader gets the
    whole messages before it, then an error, never a partial message
    (multiprocessing raises OSError for the cut message; EOFError, once the
    cut message is dropped, is as good)."""
    a, b = mp.Pipe()
    p = start(mp, send_then_huge, a, b, 16 << 20)
    b.close()
    assert recv(a) == "a" and recv(a) == "b"
    time.sleep(0.2)  # let it start the large message
    kill(p)
    assert a.poll(10)
    with pytest.raises((EOFError, OSError)):
        a.recv_bytes()
