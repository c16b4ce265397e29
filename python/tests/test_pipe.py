"""Pipe, Connection and connection.wait, as multiprocessing documents them.

Every test moves data between real processes and bounds every wait with a
timeout (poll(timeout) before each recv), so a broken pipe fails, not hangs.
"""
import array
import importlib
import os
import select

import pytest

from helpers import bounded, join_ok, recv, recv_bytes, start

pytestmark = pytest.mark.usefixtures("reap_children")

BIG = 3 * (1 << 20) + 7  # larger than any ring: streamed in chunks


# --- helpers -----------------------------------------------------------------

def connection_module(mp):
    """multiprocessing.connection (or shmq.connection)."""
    return importlib.import_module(mp.__name__ + ".connection")


# --- child targets -----------------------------------------------------------

class Msg:
    def __init__(self, body):
        self.body = body

    def __eq__(self, other):
        return type(other) is Msg and other.body == self.body


def echo_objects(conn, n):
    for _ in range(n):
        conn.send(recv(conn))


def echo_bytes(conn, n):
    for _ in range(n):
        conn.send_bytes(recv_bytes(conn, 20))


def send_then_exit(other_end, conn, items):
    other_end.close()  # the child's inherited copy of the parent's end
    for item in items:
        conn.send(item)


def send_close_and_linger(conn, items, linger):
    for item in items:
        conn.send(item)
    conn.close()
    linger.wait(10)  # still alive: EOF must come from close(), not from exit


def drain_until_eof(other_end, conn, report):
    other_end.close()  # else the child itself keeps the parent's end open
    got = []
    try:
        while True:
            assert conn.poll(10)
            got.append(conn.recv())
    except EOFError:
        report.send(("eof", got))


def send_byte_slices(conn):
    data = b"0123456789"
    conn.send_bytes(data, 3)          # b"3456789"
    conn.send_bytes(data, 2, 4)       # b"2345"
    conn.send_bytes(bytearray(b"ba"))
    conn.send_bytes(data, 10)         # b""
    conn.send_bytes(array.array("i", [1, 2, 3]))


def send_bytes_list(conn, items):
    for item in items:
        conn.send_bytes(item)


def send_range(conn, n):
    for i in range(n):
        conn.send(i)


def send_when_told(conn, go):
    go.wait(10)
    conn.send("ready")


def wait_and_exit(go):
    go.wait(10)


def close_and_exit(conn):
    conn.close()


# --- Pipe ----------------------------------------------------------------------

def test_duplex_pipe_both_directions(mp):
    """Pipe() is duplex: each end sends and receives; objects arrive equal."""
    a, b = mp.Pipe()
    objs = [None, 1, -(10**40), 2.5, "ünïcode", b"\x00\xff", (1, [2, {3: 4}]), Msg("m")]
    p = start(mp, echo_objects, b, len(objs))
    for obj in objs:
        a.send(obj)
    back = [recv(a) for _ in objs]
    join_ok(p)
    assert back == objs
    assert type(back[1]) is int and type(back[-1]) is Msg


def test_messages_arrive_in_order(mp):
    """Messages from one sender are received in the order sent."""
    a, b = mp.Pipe()
    p = start(mp, send_range, b, 1000)
    got = [recv(a) for _ in range(1000)]
    join_ok(p)
    assert got == list(range(1000))


def test_one_way_pipe(mp):
    """Pipe(False): the first end only receives, the second only sends."""
    r, w = mp.Pipe(False)
    p = start(mp, send_range, w, 3)
    assert [recv(r) for _ in range(3)] == [0, 1, 2]
    join_ok(p)


def test_one_way_pipe_wrong_direction_raises_oserror(mp):
    """Pipe(False): send on the read end and recv on the write end raise OSError."""
    r, w = mp.Pipe(False)
    with pytest.raises(OSError):
        r.send(1)
    with pytest.raises(OSError):
        r.send_bytes(b"x")
    with pytest.raises(OSError):
        w.recv()
    with pytest.raises(OSError):
        w.recv_bytes()
    with pytest.raises(OSError):
        w.poll()


def test_send_bytes_offset_and_size(mp):
    """send_bytes(buf, offset, size) sends buf[offset:offset+size]; any bytes-like works."""
    a, b = mp.Pipe()
    p = start(mp, send_byte_slices, b)
    got = [recv_bytes(a) for _ in range(5)]
    join_ok(p)
    assert got[:4] == [b"3456789", b"2345", b"ba", b""]
    assert got[4] == array.array("i", [1, 2, 3]).tobytes()


def test_send_bytes_bad_offset_or_size_raises_value_error(mp):
    """send_bytes with offset/size outside the buffer raises ValueError."""
    a, b = mp.Pipe()
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", -1)
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 4)
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 2, 5)
    with pytest.raises(ValueError):
        a.send_bytes(b"abc", 0, -1)


def test_recv_bytes_maxlength_too_short_raises_oserror(mp):
    """recv_bytes(maxlength) raises OSError when the message is longer."""
    a, b = mp.Pipe()
    p = start(mp, send_bytes_list, b, [b"x" * 100])
    assert a.poll(10)
    with pytest.raises(OSError):
        a.recv_bytes(10)
    join_ok(p)


def test_recv_bytes_maxlength_large_enough(mp):
    """recv_bytes(maxlength) returns a message that fits."""
    a, b = mp.Pipe()
    p = start(mp, send_bytes_list, b, [b"y" * 100])
    assert a.poll(10)
    assert a.recv_bytes(100) == b"y" * 100
    join_ok(p)


def test_recv_bytes_into(mp):
    """recv_bytes_into(buf[, offset]) writes the message at offset and returns its length."""
    a, b = mp.Pipe()
    p = start(mp, send_bytes_list, b, [b"abc", b"defg", b"\x01\x00\x00\x00\x02\x00\x00\x00"])
    buf = bytearray(10)
    assert a.poll(10) and a.recv_bytes_into(buf) == 3
    assert buf == b"abc" + bytes(7)
    assert a.poll(10) and a.recv_bytes_into(buf, 5) == 4
    assert buf == b"abc\x00\x00defg\x00"
    arr = array.array("i", [0, 0, 0])
    assert a.poll(10) and a.recv_bytes_into(arr) == 8
    assert arr.tolist() == [1, 2, 0]
    join_ok(p)


def test_recv_bytes_into_too_small_raises_buffer_too_short(mp):
    """A buffer too small raises BufferTooShort carrying the whole message in
    e.args[0]; the next call gets the next message."""
    a, b = mp.Pipe()
    p = start(mp, send_bytes_list, b, [b"hello world", b"next", b"abc"])
    assert a.poll(10)
    with pytest.raises(mp.BufferTooShort) as info:
        a.recv_bytes_into(bytearray(5))
    assert info.value.args[0] == b"hello world"
    assert recv_bytes(a) == b"next"
    assert a.poll(10)
    with pytest.raises(mp.BufferTooShort) as info:
        a.recv_bytes_into(bytearray(10), 8)  # 2 bytes of room left after offset
    assert info.value.args[0] == b"abc"
    join_ok(p)


def test_poll_with_timeout(mp):
    """poll() is False with nothing to read (at once, or after timeout), True once data came."""
    a, b = mp.Pipe()
    assert a.poll() is False
    assert a.poll(0.1) is False
    go = mp.Event()
    p = start(mp, send_when_told, b, go)
    assert a.poll(0.1) is False
    go.set()
    assert a.poll(10) is True
    assert a.poll() is True  # still there until received
    assert a.recv() == "ready"
    assert a.poll(0) is False
    join_ok(p)


def test_large_messages_both_ways(mp):
    """Messages over 1 MiB (bytes and pickled objects) pass whole, both directions."""
    a, b = mp.Pipe()
    blob = bytes(range(251)) * (BIG // 251)
    obj = {"blob": bytearray(blob[:2_500_000]), "tail": list(range(1000))}
    p = start(mp, echo_bytes, b, 1)
    bounded(a.send_bytes, blob, timeout=20)
    assert recv_bytes(a, 20) == blob
    join_ok(p)
    a, b = mp.Pipe()
    p = start(mp, echo_objects, b, 1)
    bounded(a.send, obj, timeout=20)
    assert recv(a, 20) == obj
    join_ok(p)


def test_eof_after_child_exits(mp):
    """recv() drains what was sent, then raises EOFError once every copy of the
    other end is closed (the parent's closed here, the child's at exit)."""
    a, b = mp.Pipe()
    p = start(mp, send_then_exit, a, b, ["x", "y", "z"])
    b.close()
    join_ok(p)
    assert [recv(a) for _ in range(3)] == ["x", "y", "z"]
    assert a.poll(10)
    with pytest.raises(EOFError):
        a.recv()
    with pytest.raises(EOFError):
        a.recv_bytes()


def test_eof_after_explicit_close_while_sender_lives(mp):
    """close() in the child (still running) is enough for the reader's EOFError."""
    a, b = mp.Pipe()
    linger = mp.Event()
    p = start(mp, send_close_and_linger, b, [1, 2], linger)
    b.close()
    assert [recv(a), recv(a)] == [1, 2]
    assert a.poll(10)
    with pytest.raises(EOFError):
        a.recv()
    assert p.is_alive()
    linger.set()
    join_ok(p)


def test_eof_in_child_when_parent_closes(mp):
    """The child gets EOFError once the parent closed its end (the child
    closed its own inherited copy of that end)."""
    a, b = mp.Pipe()
    rep_r, rep_w = mp.Pipe(False)
    p = start(mp, drain_until_eof, a, b, rep_w)
    b.close()
    a.send("one")
    a.send("two")
    a.close()
    assert recv(rep_r) == ("eof", ["one", "two"])
    join_ok(p)


def test_send_to_closed_peer_raises_oserror(mp):
    """send() after every copy of the other end was closed raises OSError."""
    a, b = mp.Pipe()
    p = start(mp, close_and_exit, b)
    b.close()
    join_ok(p)
    with pytest.raises(OSError):
        for _ in range(100):  # a buffered transport may accept a little first
            a.send_bytes(b"z" * 1024)


def test_closed_connection_raises_oserror(mp):
    """Any operation on a closed Connection raises OSError; close() twice is harmless."""
    a, b = mp.Pipe()
    a.send("unread")
    b.close()
    for op in (lambda: b.send(1), lambda: b.recv(), lambda: b.send_bytes(b"x"),
               lambda: b.recv_bytes(), lambda: b.poll(), lambda: b.fileno()):
        with pytest.raises(OSError):
            op()
    b.close()


def test_fileno_is_a_selectable_descriptor(mp):
    """fileno() is a file descriptor that select() reports readable once data arrived."""
    a, b = mp.Pipe()
    fd = a.fileno()
    assert isinstance(fd, int) and fd >= 0
    os.fstat(fd)  # an open descriptor
    assert select.select([fd], [], [], 0)[0] == []
    go = mp.Event()
    p = start(mp, send_when_told, b, go)
    go.set()
    assert select.select([a], [], [], 10)[0] == [a]
    assert a.recv() == "ready"
    join_ok(p)


def test_pipe_passes_to_child_under_every_start_method(mp, ctx):
    """Both ends given as Process arguments work in the child."""
    a, b = ctx.Pipe()
    r, w = ctx.Pipe(False)
    assert type(a).__module__.partition(".")[0] == mp.__name__
    p = start(ctx, echo_objects, b, 2)
    q = start(ctx, send_range, w, 2)
    a.send(Msg("über"))
    bounded(a.send, b"x" * 200_000, timeout=30)
    assert recv(a, 30) == Msg("über")
    assert recv(a, 30) == b"x" * 200_000
    assert [recv(r, 30), recv(r, 30)] == [0, 1]
    join_ok(p, q, timeout=30)


# --- connection.wait -------------------------------------------------------------

def test_wait_returns_ready_connections(mp):
    """wait(list, timeout) returns [] when none is ready, else exactly the ready ones."""
    wait = connection_module(mp).wait
    pipes = [mp.Pipe() for _ in range(3)]
    readers = [a for a, _ in pipes]
    go = mp.Event()
    p = start(mp, send_when_told, pipes[1][1], go)
    assert wait(readers, timeout=0.1) == []
    go.set()
    assert wait(readers, timeout=10) == [readers[1]]
    assert readers[1].recv() == "ready"
    pipes[2][1].send("direct")
    pipes[0][1].send("direct")
    assert sorted(wait(readers, timeout=10), key=readers.index) == [readers[0], readers[2]]
    join_ok(p)


def test_wait_reports_closed_other_end(mp):
    """A connection whose other end was closed is ready (recv then raises EOFError)."""
    wait = connection_module(mp).wait
    a, b = mp.Pipe()
    c, d = mp.Pipe()
    p = start(mp, close_and_exit, b)
    b.close()
    assert wait([a, c], timeout=10) == [a]
    with pytest.raises(EOFError):
        a.recv()
    join_ok(p)


def test_wait_on_process_sentinels(mp):
    """wait() over Process sentinels returns those of the processes that ended."""
    wait = connection_module(mp).wait
    go = mp.Event()
    quick = start(mp, close_and_exit, mp.Pipe()[0])
    slow = start(mp, wait_and_exit, go)
    assert wait([quick.sentinel, slow.sentinel], timeout=10) == [quick.sentinel]
    assert wait([slow.sentinel], timeout=0.1) == []
    go.set()
    assert wait([slow.sentinel], timeout=10) == [slow.sentinel]
    join_ok(quick, slow)


def test_wait_on_connections_and_sentinels_mixed(mp):
    """wait() accepts Connections and sentinels together."""
    wait = connection_module(mp).wait
    a, b = mp.Pipe()
    go = mp.Event()
    p = start(mp, wait_and_exit, go)
    b.send("data")
    assert wait([p.sentinel, a], timeout=10) == [a]
    a.recv()
    go.set()
    assert wait([p.sentinel, a], timeout=10) == [p.sentinel]
    join_ok(p)
