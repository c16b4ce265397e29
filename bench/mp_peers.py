#!/usr/bin/env python3
"""Python multiprocessing peers for shmq-bench.

Runs one case: P producer and C consumer processes (fork start method) move
fixed-size bytes messages through a multiprocessing Queue, SimpleQueue,
JoinableQueue or Pipe. Same rules as the C harness: every process waits on a
start barrier; producers stop after --secs or --max-msgs; each message starts
with an 8-byte word (producer id << 48 | sequence) that consumers check (a
shorter message: its low bytes, one producer); throughput = messages received
/ time from barrier release to the last message. Prints one JSON line:
{"msgs":..,"sent":..,"wall_s":..,"errors":..}.

--case join (JoinableQueue): consumers task_done every message, each producer
join()s after its last put; the time ends when the last join returns.
--case conn (Pipe one way): 1 x 1, end of data is the writer's close (EOFError).
--case connpp (Pipe ping-pong): duplex Pipe, every round trip timed; adds
"hist": [[bucket, count], ...] in the C harness's log-linear buckets and
"max_ns"; msgs is the number of round trips, wall_s their total time.
"""
import argparse
import json
import multiprocessing as mp
import struct
import sys
import time

HDR = struct.Struct("<Q")


def fill(buf, h):
    """Write header word h into the message buffer in place (shorter than 8
    bytes: its low bytes), as bench_fill does; send_bytes takes the buffer."""
    if len(buf) >= 8:
        HDR.pack_into(buf, 0, h)
    else:
        buf[:] = HDR.pack(h)[:len(buf)]


def producer(kind, q, pid, size, max_msgs, barrier, stop, sent, end_t, join):
    pad = bytes(max(size - 8, 0))
    put = q.send_bytes if kind == "pipe" else q.put
    barrier.wait()
    seq = 1
    while not stop.value and seq <= max_msgs:
        put(HDR.pack(pid << 48 | seq) + pad)
        seq += 1
    sent[pid] = seq - 1
    if join:
        q.join()
    end_t[pid] = time.monotonic()
    put(b"E")  # end of this producer: after all its messages (per-producer FIFO)


def consumer(kind, q, cid, size, np_, nc, barrier, stop, got, errs, end_t, ends, lock):
    """Ends when it takes the last producer's end marker (then every message
    has been taken: it wakes the other consumers with one quit marker each) or
    a quit marker."""
    last = [0] * np_
    n = e = 0
    t_end = 0.0
    joinable = kind == "joinablequeue"
    get = q.recv_bytes if kind == "pipe" else q.get
    barrier.wait()
    while True:
        m = get()
        if joinable:
            q.task_done()
        if len(m) == 1:
            if m == b"Q":
                break
            with lock:
                ends.value += 1
                final = ends.value == np_
            if final:
                for _ in range(nc - 1):
                    q.put(b"Q")
                break
            continue
        n += 1
        if len(m) != size:
            e += 1
        else:
            h = HDR.unpack_from(m)[0]
            p, s = h >> 48, h & ((1 << 48) - 1)
            if p >= np_ or s <= last[p]:
                e += 1
            else:
                last[p] = s
        if stop.value:
            t_end = time.monotonic()
    got[cid] = n
    errs[cid] = e
    end_t[cid] = t_end


def conn_producer(w, r, size, max_msgs, barrier, stop, sent, end_t):
    r.close()
    buf = bytearray(size)
    barrier.wait()
    seq = 1
    while not stop.value and seq <= max_msgs:
        fill(buf, seq)
        w.send_bytes(buf)
        seq += 1
    sent[0] = seq - 1
    end_t[0] = time.monotonic()
    w.close()


def conn_consumer(r, w, size, barrier, stop, got, errs, end_t):
    w.close()
    want = bytearray(min(size, 8))
    n = e = 0
    t_end = 0.0
    barrier.wait()
    while True:
        try:
            m = r.recv_bytes()
        except EOFError:
            break
        n += 1
        fill(want, n)
        if len(m) != size or m[:8] != want:
            e += 1
        if stop.value:
            t_end = time.monotonic()
    got[0] = n
    errs[0] = e
    end_t[0] = t_end or time.monotonic()


def bucket(ns):
    """shmq-bench's histogram bucket (bench_hist_add in bench/common.c)."""
    if ns < 32:
        return ns
    lg = ns.bit_length() - 1
    return min((lg - 4) * 32 + ((ns >> (lg - 5)) & 31), 40 * 32 - 1)


def ping(a, b, size, barrier, stop, res, hist):
    b.close()
    buf = bytearray(size)
    counts = {}
    mx = 0
    e = 0
    clock = time.monotonic_ns
    barrier.wait()
    t0 = t = clock()
    i = 0
    while (i & 15) or not stop.value:
        fill(buf, i + 1)
        a.send_bytes(buf)
        if a.recv_bytes()[:8] != buf[:8]:
            e += 1
        now = clock()
        d = now - t
        t = now
        k = bucket(d)
        counts[k] = counts.get(k, 0) + 1
        mx = max(mx, d)
        i += 1
    res[0] = i
    res[1] = t - t0
    res[2] = mx
    res[3] = e
    for k, v in counts.items():
        hist[k] = v
    a.close()


def pong(a, b, barrier):
    a.close()
    barrier.wait()
    while True:
        try:
            m = b.recv_bytes()
        except EOFError:
            break
        b.send_bytes(m)


def drive(procs, ends, barrier, stop, secs, done):
    """Start the processes, close this process's copies of the ends, release
    the start barrier; stop them after secs (or once done()), reap them.
    Returns the start time and the processes that failed."""
    for pr in procs:
        pr.start()
    for e in ends:
        e.close()
    barrier.wait()
    t0 = time.monotonic()
    deadline = t0 + secs
    while time.monotonic() < deadline and not done():
        time.sleep(0.002)
    stop.value = 1
    for pr in procs:
        pr.join(30)
    bad = [pr for pr in procs if pr.exitcode != 0]
    for pr in bad:
        pr.kill()
    return t0, bad


def run_conn(a, ctx):
    """Pipe cases: one way (conn) or ping-pong (connpp), 1 x 1."""
    barrier = ctx.Barrier(3)
    stop = ctx.Value("i", 0, lock=False)
    if a.case == "conn":
        r, w = ctx.Pipe(duplex=False)
        sent = ctx.Array("q", 1, lock=False)
        got = ctx.Array("q", 1, lock=False)
        errs = ctx.Array("q", 1, lock=False)
        pend = ctx.Array("d", 1, lock=False)
        cend = ctx.Array("d", 1, lock=False)
        procs = [ctx.Process(target=conn_producer, args=(w, r, a.s, a.n, barrier, stop, sent, pend)),
                 ctx.Process(target=conn_consumer, args=(r, w, a.s, barrier, stop, got, errs, cend))]
    else:
        r, w = ctx.Pipe()
        res = ctx.Array("q", 4, lock=False)
        hist = ctx.Array("q", 40 * 32, lock=False)
        procs = [ctx.Process(target=ping, args=(r, w, a.s, barrier, stop, res, hist)),
                 ctx.Process(target=pong, args=(r, w, barrier))]
    t0, bad = drive(procs, (r, w), barrier, stop, a.t, lambda: a.case == "conn" and pend[0])
    if a.case == "conn":
        msgs = got[0]
        errors = errs[0] + abs(msgs - sent[0]) + len(bad)
        out = {"msgs": msgs, "sent": sent[0], "wall_s": max(max(pend[0], cend[0]) - t0, 1e-9),
               "errors": errors}
    else:
        out = {"msgs": res[0], "wall_s": max(res[1] / 1e9, 1e-9), "errors": res[3] + len(bad),
               "max_ns": res[2], "hist": [[k, v] for k, v in enumerate(hist) if v]}
    print(json.dumps(out, separators=(",", ":")))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["queue", "simplequeue", "joinablequeue", "pipe"], required=True)
    ap.add_argument("--case", choices=["tput", "join", "conn", "connpp"], default="tput")
    ap.add_argument("-p", type=int, default=1)
    ap.add_argument("-c", type=int, default=1)
    ap.add_argument("-s", type=int, default=8)
    ap.add_argument("-t", type=float, default=0.3)
    ap.add_argument("-n", type=int, default=1 << 40)
    a = ap.parse_args()
    if a.kind == "pipe" and (a.p != 1 or a.c != 1):
        sys.exit("mp.Pipe: 1 producer x 1 consumer only")
    if a.case in ("conn", "connpp") and a.kind != "pipe":
        sys.exit("--case conn/connpp go with --kind pipe")
    if a.case == "join" and a.kind != "joinablequeue":
        sys.exit("--case join goes with --kind joinablequeue")
    if a.s < 8 and a.case not in ("conn", "connpp"):
        sys.exit("messages of at least 8 bytes")
    ctx = mp.get_context("fork")
    if a.case in ("conn", "connpp"):
        return run_conn(a, ctx)
    join = a.case == "join"
    if a.kind == "queue":
        q = ctx.Queue()
        qp = qc = q
    elif a.kind == "simplequeue":
        q = ctx.SimpleQueue()
        qp = qc = q
    elif a.kind == "joinablequeue":
        q = ctx.JoinableQueue()
        qp = qc = q
    else:
        qc, qp = ctx.Pipe(duplex=False)
    n = a.p + a.c
    barrier = ctx.Barrier(n + 1)
    stop = ctx.Value("i", 0, lock=False)
    ends = ctx.Value("i", 0, lock=False)
    lock = ctx.Lock()
    sent = ctx.Array("q", a.p, lock=False)
    got = ctx.Array("q", a.c, lock=False)
    errs = ctx.Array("q", a.c, lock=False)
    pend = ctx.Array("d", a.p, lock=False)
    cend = ctx.Array("d", a.c, lock=False)
    procs = [ctx.Process(target=producer, args=(a.kind, qp, i, a.s, a.n, barrier, stop, sent,
                                               pend, join)) for i in range(a.p)]
    procs += [ctx.Process(target=consumer, args=(a.kind, qc, i, a.s, a.p, a.c, barrier, stop, got,
                                                errs, cend, ends, lock)) for i in range(a.c)]
    t0, bad = drive(procs, (), barrier, stop, a.t, lambda: all(pend))
    msgs = sum(got)
    nsent = sum(sent)
    errors = sum(errs) + abs(msgs - nsent) + len(bad)
    # join: the time ends when the last join returns
    t_end = max(list(pend) + ([] if join else list(cend)))
    print(json.dumps({"msgs": msgs, "sent": nsent, "wall_s": max(t_end - t0, 1e-9), "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
