"""Every start method (fork, spawn, forkserver): queues, pipe ends, locks, Value, Array and a
Manager dict pass to a child as Process arguments and work there.

One child per start method does all the checks and reports what it saw through a queue;
the parent compares. Every wait is bounded.
"""
import queue
import threading

import pytest

from conftest import shmq_only

TIMEOUT = 30  # seconds, for anything that should take well under one


def _child(objs, report):
    seen = {}

    def check(name, fn):
        try:
            seen[name] = fn()
        except Exception as e:  # reported to the parent, which shows it
            seen[name] = f"raised {type(e).__name__}: {e}"

    lock, go = objs["lock"], objs["go"]
    # The parent holds the lock until it has our first report.
    check("lock_held_by_parent", lambda: not lock.acquire(timeout=0.05))
    report.put(("first", dict(seen)))
    check("go", lambda: go.wait(TIMEOUT))
    check("lock_after_release", lambda: lock.acquire(timeout=TIMEOUT))
    lock.release()

    q = objs["queue"]
    check("queue", lambda: [q.get(timeout=TIMEOUT) for _ in range(3)])
    check("queue_empty", lambda: _raises(queue.Empty, lambda: q.get(timeout=0.01)))
    q.put(("from child", b"\x00" * 100_000))
    sq = objs["simplequeue"]
    check("simplequeue", lambda: sq.get())
    sq.put("sq from child")
    jq = objs["joinable"]

    def joinable():
        got = [jq.get(timeout=TIMEOUT) for _ in range(5)]
        for _ in got:
            jq.task_done()
        return got
    check("joinable", joinable)

    conn = objs["conn"]
    check("conn_poll", lambda: conn.poll(TIMEOUT))
    check("conn_recv", lambda: conn.recv())
    check("conn_recv_bytes", lambda: conn.recv_bytes())
    conn.send({"reply": [1, 2, 3]})
    conn.send_bytes(b"raw reply")
    objs["wconn"].send("one-way from child")
    objs["wconn"].close()

    def counters():
        for _ in range(300):
            with lock:
                objs["value"].value += 1
            with objs["rvalue_lock"]:
                objs["rvalue"].value += 0.5
        return True
    check("counters", counters)

    def arrays():
        a, ra, ca = objs["array"], objs["rawarray"], objs["chararray"]
        before = (list(a[:]), list(ra[:]), ca.value)
        for i in range(len(a)):
            a[i] = a[i] * 10
        ra[-1] = -1.5
        ca.value = b"world"
        return before
    check("arrays", arrays)
    sem = objs["semaphore"]
    sem.release()

    d, d2 = objs["mdict"], objs["mdict_default"]

    def mdict():
        before = (d.copy(), d2.copy())
        d["child"] = ["c", 1]
        del d["parent"]
        d2["child"] = ("c", 2)
        return before
    check("mdict", mdict)
    report.put(("last", seen))


def _raises(exc, fn):
    try:
        fn()
    except exc:
        return "raised"
    return "did not raise"


def _make(maker, manager, default_manager):
    """The objects of one check, made by `maker` (a context or the module): what the child
    gets, and what the parent keeps (the same objects, the other pipe ends)."""
    parent_conn, child_conn = maker.Pipe()
    rconn, wconn = maker.Pipe(duplex=False)
    shared = {
        "lock": maker.Lock(), "go": maker.Event(),
        "queue": maker.Queue(), "simplequeue": maker.SimpleQueue(),
        "joinable": maker.JoinableQueue(),
        "value": maker.Value("i", 0), "rvalue": maker.RawValue("d", 0.0),
        "rvalue_lock": maker.RLock(),
        "array": maker.Array("i", range(4)), "rawarray": maker.RawArray("d", 3),
        "chararray": maker.Array("c", b"hello"), "semaphore": maker.Semaphore(0),
        "mdict": manager.dict({"parent": 1}),
        "mdict_default": default_manager.dict(default=True),
    }
    return dict(shared, conn=child_conn, wconn=wconn), dict(shared, conn=parent_conn,
                                                              rconn=rconn, wconn=wconn)


def _check(ctx, child_objs, objs, report):
    lock = objs["lock"]
    assert lock.acquire(timeout=TIMEOUT)
    p = ctx.Process(target=_child, args=(child_objs, report))
    try:
        p.start()
        objs["wconn"].close()  # the child has its own: EOF once the child closes that
        tag, first = report.get(timeout=TIMEOUT)
        assert (tag, first) == ("first", {"lock_held_by_parent": True})
    finally:
        lock.release()
        objs["go"].set()

    q, sq, jq, conn = objs["queue"], objs["simplequeue"], objs["joinable"], objs["conn"]
    for item in (1, "two", [3.0, None]):
        q.put(item)
    sq.put({"sq": 1})
    for i in range(5):
        jq.put(i)
    conn.send(("hello", b"bytes", 42))
    conn.send_bytes(b"raw")
    for _ in range(300):  # racing the child's increments
        with lock:
            objs["value"].value += 1
        with objs["rvalue_lock"]:
            objs["rvalue"].value += 0.5

    try:
        tag, seen = report.get(timeout=TIMEOUT)
        # What the child put, read before joining it (a multiprocessing child does not end
        # before its queued data is taken).
        from_q = q.get(timeout=TIMEOUT)
        from_sq = sq.get()
        from_conn = conn.recv() if conn.poll(TIMEOUT) else "nothing"
        from_conn_bytes = conn.recv_bytes() if conn.poll(TIMEOUT) else "nothing"
    finally:
        p.join(TIMEOUT)
        if p.is_alive():
            p.kill()
            p.join(5)
            pytest.fail("child did not end")
    assert p.exitcode == 0
    assert tag == "last"
    assert seen == {
        "lock_held_by_parent": True, "go": True, "lock_after_release": True,
        "queue": [1, "two", [3.0, None]], "queue_empty": "raised",
        "simplequeue": {"sq": 1}, "joinable": [0, 1, 2, 3, 4],
        "conn_poll": True, "conn_recv": ("hello", b"bytes", 42), "conn_recv_bytes": b"raw",
        "counters": True,
        "arrays": ([0, 1, 2, 3], [0.0, 0.0, 0.0], b"hello"),
        "mdict": ({"parent": 1}, {"default": True}),
    }
    assert from_q == ("from child", b"\x00" * 100_000)
    assert from_sq == "sq from child"
    assert from_conn == {"reply": [1, 2, 3]}
    assert from_conn_bytes == b"raw reply"
    rconn = objs["rconn"]
    assert rconn.poll(TIMEOUT) and rconn.recv() == "one-way from child"
    assert rconn.poll(TIMEOUT)  # readable: at its end
    with pytest.raises(EOFError):  # every copy of the write end is closed
        rconn.recv()
    assert objs["value"].value == 600
    assert objs["rvalue"].value == 300.0
    assert objs["array"][:] == [0, 10, 20, 30]
    assert objs["rawarray"][:] == [0.0, 0.0, -1.5]
    assert objs["chararray"].value == b"world"
    assert objs["semaphore"].acquire(timeout=TIMEOUT)
    assert objs["mdict"].copy() == {"child": ["c", 1]}
    assert objs["mdict_default"].copy() == {"default": True, "child": ("c", 2)}
    # The child's five task_done() came before its report: join() returns at once.
    t = threading.Thread(target=jq.join, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), "JoinableQueue.join() did not return"


def test_context_objects_pass_to_child(mp, ctx):
    """Objects made by ctx (ctx.Queue(), ctx.Lock(), ...), a dict of ctx.Manager() and one
    of mp.Manager(), passed to a ctx.Process."""
    with ctx.Manager() as manager, mp.Manager() as default_manager:
        child_objs, objs = _make(ctx, manager, default_manager)
        _check(ctx, child_objs, objs, ctx.Queue())


@shmq_only
def test_module_objects_pass_to_any_start_method(mp, ctx):
    """shmq's objects belong to no context: made by the module (mp.Queue(), ...), they pass
    to a child of any start method. (multiprocessing 3.11: a Lock made in the default fork
    context cannot go to a spawn child.)"""
    with mp.Manager() as manager:
        child_objs, objs = _make(mp, manager, manager)
        _check(ctx, child_objs, objs, mp.Queue())
