"""Helpers shared by the test files: start a child process, join it within a
bound (a child that hangs fails the test), receive a child's report through a
Connection, and bound a call that takes no timeout of its own.

Every wait here is bounded, so a broken primitive fails a test instead of
hanging the suite.
"""
import threading
import time

JOIN_TIMEOUT = 20


def start(factory, target, *args):
    """Start `target(*args)` in a process of `factory` (the module or a context)."""
    p = factory.Process(target=target, args=args)
    p.start()
    return p


def join_ok(*procs, timeout=JOIN_TIMEOUT):
    """Join every process within `timeout` seconds; each must have exited 0."""
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [p for p in procs if p.is_alive()]
    for p in hung:
        p.kill()
        p.join(5)
    assert not hung, "child process hung"
    assert [p.exitcode for p in procs] == [0] * len(procs)


def recv(conn, timeout=10):
    """conn.recv(), failing instead of hanging when nothing comes."""
    assert conn.poll(timeout), "child did not report"
    return conn.recv()


def recv_bytes(conn, timeout=10):
    """conn.recv_bytes(), failing instead of hanging when nothing comes."""
    assert conn.poll(timeout), "nothing received"
    return conn.recv_bytes()


def bounded(fn, *args, timeout=10):
    """Call `fn(*args)` (a call without a timeout of its own) in a thread; fail
    if it has not returned within `timeout` seconds. Returns its result."""
    out = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"{fn} did not return within {timeout} s"
    if "error" in out:
        raise out["error"]
    return out.get("value")


def wait_until(pred, timeout=10.0):
    """Poll `pred` until it is true; False if `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
