#!/usr/bin/env python3
"""Python multiprocessing peers for shmq-bench.

Runs one case: P producer and C consumer processes (fork start method) move
fixed-size bytes messages through a multiprocessing Queue, SimpleQueue,
JoinableQueue or Pipe. Same rules as the C harness: every process waits on a
start barrier; producers stop after --secs or --max-msgs; each message starts
with an 8-byte word (producer id << 48 | sequence) that consumers check;
throughput = messages received / time from barrier release to the last
message. Prints one JSON line: {"msgs":..,"sent":..,"wall_s":..,"errors":..}.
"""
import argparse
import json
import multiprocessing as mp
import struct
import sys
import time

HDR = struct.Struct("<Q")


def producer(kind, q, pid, size, max_msgs, barrier, stop, sent, end_t):
    pad = bytes(size - 8)
    put = q.send_bytes if kind == "pipe" else q.put
    barrier.wait()
    seq = 1
    while not stop.value and seq <= max_msgs:
        put(HDR.pack(pid << 48 | seq) + pad)
        seq += 1
    sent[pid] = seq - 1
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["queue", "simplequeue", "joinablequeue", "pipe"], required=True)
    ap.add_argument("-p", type=int, default=1)
    ap.add_argument("-c", type=int, default=1)
    ap.add_argument("-s", type=int, default=8)
    ap.add_argument("-t", type=float, default=0.3)
    ap.add_argument("-n", type=int, default=1 << 40)
    a = ap.parse_args()
    if a.kind == "pipe" and (a.p != 1 or a.c != 1):
        sys.exit("mp.Pipe: 1 producer x 1 consumer only")
    ctx = mp.get_context("fork")
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
                                               pend)) for i in range(a.p)]
    procs += [ctx.Process(target=consumer, args=(a.kind, qc, i, a.s, a.p, a.c, barrier, stop, got,
                                                errs, cend, ends, lock)) for i in range(a.c)]
    for pr in procs:
        pr.start()
    barrier.wait()
    t0 = time.monotonic()
    deadline = t0 + a.t
    while time.monotonic() < deadline and not all(pend):
        time.sleep(0.002)
    stop.value = 1
    for pr in procs:
        pr.join(30)
    bad = [pr for pr in procs if pr.exitcode != 0]
    for pr in bad:
        pr.kill()
    msgs = sum(got)
    nsent = sum(sent)
    errors = sum(errs) + abs(msgs - nsent) + len(bad)
    t_end = max(list(pend) + list(cend))
    print(json.dumps({"msgs": msgs, "sent": nsent, "wall_s": max(t_end - t0, 1e-9), "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
