"""Lock, RLock, Semaphore, BoundedSemaphore, Condition, Event and Barrier across
processes, as multiprocessing documents them.

Children report through a Pipe; every wait has a timeout, so a broken primitive
fails a test instead of hanging it.
"""
import contextlib
import functools
import threading
import time

import pytest

from helpers import join_ok, recv, start, wait_until

pytestmark = pytest.mark.usefixtures("reap_children")


# --- helpers -----------------------------------------------------------------

@contextlib.contextmanager
def holding(lock, timeout=10):
    """`with lock:` that fails instead of hanging when the lock stays taken."""
    assert lock.acquire(timeout=timeout), "could not acquire within the timeout"
    try:
        yield
    finally:
        lock.release()


def pipes(mp, n):
    """n one-way pipes: (readers, writers). One per child, since two processes
    must not write to the same end at once."""
    ends = [mp.Pipe(False) for _ in range(n)]
    return [r for r, _ in ends], [w for _, w in ends]


def gather(readers, count, timeout=10.0):
    """Receive `count` reports from any of `readers` within `timeout` seconds."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        ready = [r for r in readers if r.poll()]
        if not ready:
            assert time.monotonic() < deadline, f"only {len(got)} of {count} reports"
            time.sleep(0.005)
        for r in ready:
            got.append(r.recv())
    return got


def ready_count(readers):
    return sum(1 for r in readers if r.poll())


# --- child targets -----------------------------------------------------------

def hold_until_told(lock, conn, times=1):
    """Acquire `times` times, report, wait for the word, release as often."""
    for _ in range(times):
        lock.acquire()
    conn.send("held")
    assert conn.poll(10)
    conn.recv()
    for _ in range(times):
        lock.release()
    conn.send("released")


def try_acquire(lock, conn, timeout):
    got = lock.acquire(timeout=timeout)
    conn.send(got)
    if got:
        lock.release()


def release_it(lock):
    lock.release()


def release_not_owned(lock, conn):
    try:
        lock.release()
    except AssertionError:
        conn.send("AssertionError")
    except Exception as e:  # reported for the assertion message
        conn.send(type(e).__name__)
    else:
        conn.send("no error")


def locked_increments(lock, counter, n):
    for _ in range(n):
        with lock:
            v = counter.value
            time.sleep(0)  # invite a switch inside the critical section
            counter.value = v + 1


def cond_wait(cond, ready, conn, timeout):
    with cond:
        ready.value += 1
        result = cond.wait(timeout)
        conn.send(result)


def cond_wait_for(cond, flag, conn):
    with cond:
        conn.send("waiting")
        ok = cond.wait_for(lambda: flag.value == 3, timeout=10)
        conn.send((ok, flag.value))


def event_wait(event, conn, timeout):
    conn.send(event.wait(timeout))


def barrier_wait(barrier, conn, cycles=1, timeout=10):
    for _ in range(cycles):
        try:
            conn.send(barrier.wait(timeout))
        except threading.BrokenBarrierError:
            conn.send("broken")


def barrier_wait_reads(barrier, counter, conn, cycles):
    for _ in range(cycles):
        barrier.wait(10)
        conn.send(counter.value)


def set_event(ev):
    ev.set()


def bump(counter):
    counter.value += 1


# --- Lock ------------------------------------------------------------------------

def test_lock_excludes_other_processes(mp):
    """A Lock held by a child cannot be acquired by the parent until released."""
    lock = mp.Lock()
    a, b = mp.Pipe()
    p = start(mp, hold_until_told, lock, b)
    assert recv(a) == "held"
    assert lock.acquire(False) is False
    assert lock.acquire(block=False) is False
    assert lock.acquire(timeout=0.2) is False
    a.send("release")
    assert recv(a) == "released"
    assert lock.acquire(timeout=10) is True
    lock.release()
    join_ok(p)


def test_lock_negative_timeout_and_nonblocking(mp):
    """acquire(timeout<0) means zero; with block=False the timeout is ignored."""
    lock = mp.Lock()
    assert lock.acquire(timeout=-1) is True  # free: taken
    assert lock.acquire(timeout=-1) is False
    t0 = time.monotonic()
    assert lock.acquire(False, 30) is False
    assert time.monotonic() - t0 < 10  # did not wait the 30 s
    lock.release()
    assert lock.acquire(False) is True
    lock.release()


def test_lock_may_be_released_by_another_process(mp):
    """Any process may release a Lock (it has no owner)."""
    lock = mp.Lock()
    lock.acquire()
    p = start(mp, release_it, lock)
    join_ok(p)
    assert lock.acquire(timeout=10) is True
    lock.release()


def test_release_of_unheld_lock_raises_value_error(mp):
    """Lock.release() on an unlocked Lock raises ValueError."""
    lock = mp.Lock()
    with pytest.raises(ValueError):
        lock.release()
    lock.acquire()
    lock.release()
    with pytest.raises(ValueError):
        lock.release()


def test_lock_context_manager(mp):
    """`with lock:` holds the lock inside the block and releases it on exit,
    also when the block raises; a child sees it held meanwhile."""
    lock = mp.Lock()
    a, b = mp.Pipe()
    with lock:
        assert lock.acquire(False) is False
        p = start(mp, try_acquire, lock, b, 0.1)
        assert recv(a) is False
        join_ok(p)
    assert lock.acquire(False) is True
    lock.release()
    with pytest.raises(ZeroDivisionError):
        with lock:
            1 / 0
    assert lock.acquire(False) is True
    lock.release()


def test_lock_serialises_read_modify_write(mp):
    """Increments of a shared raw value under a Lock from 3 processes all count."""
    lock = mp.Lock()
    counter = mp.RawValue("i", 0)
    procs = [start(mp, locked_increments, lock, counter, 300) for _ in range(3)]
    join_ok(*procs)
    assert counter.value == 900


# --- RLock -------------------------------------------------------------------

def test_rlock_is_recursive_and_exclusive(mp):
    """The owner may acquire an RLock again; others wait until every level is released."""
    rlock = mp.RLock()
    a, b = mp.Pipe()
    assert rlock.acquire() is True
    assert rlock.acquire(False) is True
    assert rlock.acquire(timeout=0.1) is True
    rlock.release()
    rlock.release()
    p = start(mp, try_acquire, rlock, b, 0.2)
    assert recv(a) is False  # still held one level
    join_ok(p)
    rlock.release()
    p = start(mp, try_acquire, rlock, b, 10)
    assert recv(a) is True
    join_ok(p)


def test_rlock_held_by_child_blocks_parent(mp):
    """An RLock acquired twice by a child is free only after both releases."""
    rlock = mp.RLock()
    a, b = mp.Pipe()
    p = start(mp, hold_until_told, rlock, b, 2)
    assert recv(a) == "held"
    assert rlock.acquire(timeout=0.2) is False
    a.send("release")
    assert recv(a) == "released"
    assert rlock.acquire(timeout=10) is True
    rlock.release()
    join_ok(p)


def test_rlock_release_by_non_owner_raises_assertion_error(mp):
    """RLock.release() by a process that does not own it, or when it is unowned,
    raises AssertionError (multiprocessing documents this type)."""
    rlock = mp.RLock()
    with pytest.raises(AssertionError):
        rlock.release()
    a, b = mp.Pipe()
    rlock.acquire()
    p = start(mp, release_not_owned, rlock, b)
    assert recv(a) == "AssertionError"
    join_ok(p)
    rlock.release()  # the owner still can
    with pytest.raises(AssertionError):
        rlock.release()


# --- Semaphore / BoundedSemaphore ----------------------------------------------

def test_semaphore_counts_across_processes(mp):
    """Semaphore(2): two units; a third acquire in a child waits until a release."""
    sem = mp.Semaphore(2)
    a, b = mp.Pipe()
    assert sem.get_value() == 2
    assert sem.acquire() is True
    assert sem.acquire(timeout=1) is True
    assert sem.get_value() == 0
    assert sem.acquire(False) is False
    p = start(mp, try_acquire, sem, b, 0.2)
    assert recv(a) is False
    join_ok(p)
    sem.release()
    p = start(mp, try_acquire, sem, b, 10)
    assert recv(a) is True  # the child took and gave back one unit
    join_ok(p)
    assert sem.get_value() == 1


def test_semaphore_released_in_child_seen_by_parent(mp):
    """A release in another process adds a unit the parent can take."""
    sem = mp.Semaphore(0)
    assert sem.acquire(timeout=0.05) is False
    p = start(mp, release_it, sem)
    join_ok(p)
    assert sem.get_value() == 1
    assert sem.acquire(timeout=10) is True


def test_semaphore_unbounded_release(mp):
    """A plain Semaphore may be released past its initial value."""
    sem = mp.Semaphore(1)
    sem.release()
    sem.release()
    assert sem.get_value() == 3
    with sem:
        assert sem.get_value() == 2
    assert sem.get_value() == 3


def test_bounded_semaphore_release_past_bound_raises_value_error(mp):
    """BoundedSemaphore.release() past its initial value raises ValueError and changes nothing."""
    sem = mp.BoundedSemaphore(2)
    with pytest.raises(ValueError):
        sem.release()
    assert sem.get_value() == 2
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError):
        sem.release()
    assert sem.get_value() == 2
    assert sem.acquire(False) and sem.acquire(False) and not sem.acquire(False)


# --- Condition ---------------------------------------------------------------

def test_condition_wait_notify_across_processes(mp):
    """wait() in a child returns True once the parent notifies."""
    cond = mp.Condition()
    ready = mp.RawValue("i", 0)
    a, b = mp.Pipe()
    p = start(mp, cond_wait, cond, ready, b, 10)
    assert wait_until(lambda: ready.value == 1)
    with holding(cond):  # the child released the lock inside wait()
        cond.notify()
    assert recv(a) is True
    join_ok(p)


def test_condition_wait_timeout_returns_false(mp):
    """wait(timeout) with no notify returns False, holding the lock again."""
    cond = mp.Condition()
    with cond:
        assert cond.wait(0.1) is False
        assert cond.wait_for(lambda: False, timeout=0.1) is False
        assert cond.wait_for(lambda: True, timeout=0.1) is True
    # released properly after the with block
    assert cond.acquire(False) is True
    cond.release()


def test_condition_notify_one_wakes_one(mp):
    """notify() wakes one of two waiters; notify_all() wakes the rest."""
    cond = mp.Condition()
    ready = mp.RawValue("i", 0)
    readers, writers = pipes(mp, 2)
    procs = [start(mp, cond_wait, cond, ready, w, 10) for w in writers]
    assert wait_until(lambda: ready.value == 2)
    with holding(cond):
        cond.notify()
    assert gather(readers, 1) == [True]
    time.sleep(0.3)
    assert ready_count(readers) == 0  # the second waiter still sleeps
    with holding(cond):
        cond.notify_all()
    assert gather(readers, 1) == [True]
    join_ok(*procs)


def test_condition_notify_all_wakes_every_waiter(mp):
    """notify_all() wakes all three waiters."""
    cond = mp.Condition()
    ready = mp.RawValue("i", 0)
    readers, writers = pipes(mp, 3)
    procs = [start(mp, cond_wait, cond, ready, w, 10) for w in writers]
    assert wait_until(lambda: ready.value == 3)
    with holding(cond):
        cond.notify_all()
    assert gather(readers, 3) == [True] * 3
    join_ok(*procs)


def test_condition_notify_n(mp):
    """notify(n=2) wakes two of three waiters."""
    cond = mp.Condition()
    ready = mp.RawValue("i", 0)
    readers, writers = pipes(mp, 3)
    procs = [start(mp, cond_wait, cond, ready, w, 10) for w in writers]
    assert wait_until(lambda: ready.value == 3)
    with holding(cond):
        cond.notify(2)
    assert gather(readers, 2) == [True, True]
    time.sleep(0.3)
    assert ready_count(readers) == 0  # the third waiter still sleeps
    with holding(cond):
        cond.notify()
    assert gather(readers, 1) == [True]
    join_ok(*procs)


def test_condition_wait_for_predicate(mp):
    """wait_for(predicate) returns once the predicate holds, rechecked on each notify."""
    cond = mp.Condition()
    flag = mp.RawValue("i", 0)
    a, b = mp.Pipe()
    p = start(mp, cond_wait_for, cond, flag, b)
    assert recv(a) == "waiting"
    for i in range(1, 4):
        with holding(cond):
            flag.value = i
            cond.notify_all()
    assert recv(a) == (True, 3)
    join_ok(p)


def test_condition_with_given_lock(mp):
    """Condition(lock) uses that lock: holding the condition holds the lock."""
    lock = mp.Lock()
    cond = mp.Condition(lock)
    a, b = mp.Pipe()
    with cond:
        assert lock.acquire(False) is False
        p = start(mp, try_acquire, lock, b, 0.1)
        assert recv(a) is False
        join_ok(p)
    assert lock.acquire(False) is True
    lock.release()


def test_condition_default_lock_is_recursive(mp):
    """The default lock of a Condition is an RLock: nested `with` works."""
    cond = mp.Condition()
    with cond:
        assert cond.acquire(timeout=1) is True  # a plain Lock would refuse
        assert cond.wait(0.01) is False  # releases and retakes both levels
        cond.release()
    assert cond.acquire(False) is True
    cond.release()


# --- Event -------------------------------------------------------------------

def test_event_set_clear_is_set(mp):
    """is_set() follows set() and clear(), also as seen from a child."""
    ev = mp.Event()
    a, b = mp.Pipe()
    assert ev.is_set() is False
    ev.set()
    assert ev.is_set() is True
    p = start(mp, event_wait, ev, b, 0)
    assert recv(a) is True
    join_ok(p)
    ev.clear()
    assert ev.is_set() is False
    p = start(mp, event_wait, ev, b, 0.05)
    assert recv(a) is False
    join_ok(p)


def test_event_wait_timeout(mp):
    """wait(timeout) returns False when not set in time, True at once when set."""
    ev = mp.Event()
    assert ev.wait(0.1) is False
    ev.set()
    assert ev.wait(0) is True
    assert ev.wait() is True


def test_event_set_wakes_all_waiting_processes(mp):
    """set() releases every process blocked in wait()."""
    ev = mp.Event()
    readers, writers = pipes(mp, 3)
    procs = [start(mp, event_wait, ev, w, 10) for w in writers]
    time.sleep(0.2)
    assert ready_count(readers) == 0
    ev.set()
    assert gather(readers, 3) == [True] * 3
    join_ok(*procs)


def test_event_set_in_child(mp):
    """An Event set by a child releases the parent's wait."""
    ev = mp.Event()
    p = start(mp, set_event, ev)
    assert ev.wait(10) is True
    join_ok(p)


# --- Barrier -------------------------------------------------------------------

def test_barrier_wait_returns_distinct_indexes(mp):
    """wait() returns each index 0..parties-1 once per cycle."""
    barrier = mp.Barrier(3)
    assert barrier.parties == 3
    readers, writers = pipes(mp, 3)
    procs = [start(mp, barrier_wait, barrier, w, 2) for w in writers]
    got = gather(readers, 6)
    join_ok(*procs)
    assert sorted(got) == [0, 0, 1, 1, 2, 2]
    assert not barrier.broken


def test_barrier_action_runs_once_before_release(mp):
    """The action runs once per cycle, before any party is released."""
    counter = mp.Value("i", 0)
    barrier = mp.Barrier(2, action=functools.partial(bump, counter))
    readers, writers = pipes(mp, 2)
    procs = [start(mp, barrier_wait_reads, barrier, counter, w, 2) for w in writers]
    seen = gather(readers, 4)
    join_ok(*procs)
    assert counter.value == 2
    assert sorted(seen) == [1, 1, 2, 2]


def test_barrier_n_waiting(mp):
    """n_waiting counts the processes blocked in wait()."""
    barrier = mp.Barrier(3)
    readers, writers = pipes(mp, 2)
    assert barrier.n_waiting == 0
    p1 = start(mp, barrier_wait, barrier, writers[0])
    assert wait_until(lambda: barrier.n_waiting == 1)
    p2 = start(mp, barrier_wait, barrier, writers[1])
    assert wait_until(lambda: barrier.n_waiting == 2)
    idx = barrier.wait(10)
    assert sorted([idx] + gather(readers, 2)) == [0, 1, 2]
    join_ok(p1, p2)
    assert barrier.n_waiting == 0


def test_barrier_abort_breaks_waiters(mp):
    """abort() makes waiting and later wait() calls raise BrokenBarrierError;
    reset() makes the barrier usable again."""
    barrier = mp.Barrier(2)
    a, b = mp.Pipe()
    p = start(mp, barrier_wait, barrier, b)
    assert wait_until(lambda: barrier.n_waiting == 1)
    barrier.abort()
    assert recv(a) == "broken"
    join_ok(p)
    assert barrier.broken is True
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(1)
    barrier.reset()
    assert barrier.broken is False
    p = start(mp, barrier_wait, barrier, b)
    assert barrier.wait(10) in (0, 1)
    assert recv(a) in (0, 1)
    join_ok(p)


def test_barrier_reset_breaks_current_waiters(mp):
    """reset() while a party waits: that wait raises BrokenBarrierError."""
    barrier = mp.Barrier(2)
    a, b = mp.Pipe()
    p = start(mp, barrier_wait, barrier, b)
    assert wait_until(lambda: barrier.n_waiting == 1)
    barrier.reset()
    assert recv(a) == "broken"
    join_ok(p)
    assert barrier.broken is False


def test_barrier_timeout_breaks_it(mp):
    """A wait that times out raises BrokenBarrierError, breaks the barrier, and
    the other waiting parties get BrokenBarrierError too."""
    barrier = mp.Barrier(3)
    a, b = mp.Pipe()
    p = start(mp, barrier_wait, barrier, b)
    assert wait_until(lambda: barrier.n_waiting == 1)
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait(0.2)
    assert barrier.broken is True
    assert recv(a) == "broken"
    join_ok(p)


def test_barrier_default_timeout(mp):
    """Barrier(parties, timeout=t): wait() without a timeout uses t."""
    barrier = mp.Barrier(2, timeout=0.2)
    assert barrier.parties == 2
    with pytest.raises(threading.BrokenBarrierError):
        barrier.wait()
    assert barrier.broken is True


# --- every kind passes to a child under every start method -------------------

def ctx_child(kind, obj, conn):
    """The child's half of test_sync_object_passes_to_child."""
    if kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        hold_until_told(obj, conn)
    elif kind == "Condition":
        with obj:
            conn.send("waiting")
            conn.send(obj.wait(30))
    elif kind == "Event":
        conn.send("waiting")
        conn.send(obj.wait(30))
    elif kind == "Barrier":
        conn.send("waiting")
        conn.send(obj.wait(30))


@pytest.mark.parametrize("kind", ["Lock", "RLock", "Semaphore", "BoundedSemaphore",
                                  "Condition", "Event", "Barrier"])
def test_sync_object_passes_to_child(mp, ctx, kind):
    """Each primitive given as a Process argument is the same object in the child."""
    obj = {"Semaphore": lambda: ctx.Semaphore(1),
           "BoundedSemaphore": lambda: ctx.BoundedSemaphore(1),
           "Barrier": lambda: ctx.Barrier(2)}.get(kind, getattr(ctx, kind))()
    assert type(obj).__module__.partition(".")[0] == mp.__name__
    a, b = ctx.Pipe()
    p = start(ctx, ctx_child, kind, obj, b)
    first = recv(a, 30)
    if kind in ("Lock", "RLock", "Semaphore", "BoundedSemaphore"):
        assert first == "held"
        assert obj.acquire(timeout=0.2) is False
        a.send("release")
        assert recv(a, 30) == "released"
        assert obj.acquire(timeout=10) is True
        obj.release()
    elif kind == "Condition":
        with holding(obj):
            obj.notify()
        assert recv(a, 30) is True
    elif kind == "Event":
        obj.set()
        assert recv(a, 30) is True
    else:
        assert sorted([obj.wait(30), recv(a, 30)]) == [0, 1]
    join_ok(p, timeout=30)
