#!/usr/bin/env python3
"""Python multiprocessing peers of shmq-bench's synchronisation cases.

Runs one case with multiprocessing.Lock, Semaphore, Barrier or Event (fork
start method), by the rules of bench/sync.h: every process waits on a start
barrier; the driver sets a stop flag after --secs; timing with
time.monotonic_ns. Prints one JSON line:
{"ops":..,"wall_s":..,"errors":..[,"handoffs":..,"hist":[[bucket,count],..],
"max_ns":..]}.

--case lock1    one process, Lock: acquire(); release() in a loop; ops = pairs.
--case sem1     the same with Semaphore(1).
--case lockn    -n processes on one Lock: acquire, counter += 1 in a shared
                array, release; the releaser stores monotonic_ns just before
                release(), an acquirer that finds another process's stamp
                records the hand-off latency. ops = pairs in all.
--case sempp    two processes, two Semaphore(0): release(a), acquire(b) against
                acquire(a), release(b). ops = round trips.
--case barrier  -n processes: Barrier(n).wait() in a loop. ops = cycles.
--case event    one waiter: wait(), stamp, clear(), ack; one setter: waits for
                the ack, sleeps --gap-ns, stamps, set(). ops = wake-ups.

Every child dies with this driver (PR_SET_PDEATHSIG), and the driver with the
harness that started it.
"""
import argparse
import ctypes
import json
import multiprocessing as mp
import os
import signal
import sys
import time

clock = time.monotonic_ns
yield_cpu = os.sched_yield


def die_with_parent(parent):
    """SIGKILL when the parent dies; exit now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent and os.getppid() != parent:
        os._exit(1)


def bucket(ns):
    """shmq-bench's histogram bucket (bench_hist_add in bench/common.c)."""
    if ns < 32:
        return max(ns, 0)
    lg = ns.bit_length() - 1
    return min((lg - 4) * 32 + ((ns >> (lg - 5)) & 31), 40 * 32 - 1)


def save_hist(counts, mx, hist, hmax, i):
    """Into this worker's own row of the histogram array."""
    for k, v in counts.items():
        hist[i * NB + k] = v
    hmax[i] = mx


NB = 40 * 32  # buckets

# Shared words (a RawArray 'q'): the guarded data and the flags.
COUNTER, T_REL, OWNER, QUIT, T_SET, ACKS, LAST = range(7)


def w_lock1(i, obj, sh, stop, res, hist, hmax, a):
    acq, rel = obj.acquire, obj.release
    acq()
    rel()
    a.barrier.wait()
    t0 = clock()
    n = 0
    while not stop.value:
        for _ in range(256):
            acq()
            rel()
        n += 256
    res[i * 4] = n
    res[i * 4 + 1] = clock() - t0


def w_lockn(i, obj, sh, stop, res, hist, hmax, a):
    acq, rel = obj.acquire, obj.release
    acq()
    rel()
    counts = {}
    mx = n = h = 0
    a.barrier.wait()
    while not stop.value:
        acq()
        now = clock()
        prev = sh[OWNER]
        if prev >= 0 and prev != i:
            d = now - sh[T_REL]
            k = bucket(d)
            counts[k] = counts.get(k, 0) + 1
            if d > mx:
                mx = d
            h += 1
        sh[COUNTER] += 1
        sh[OWNER] = i
        sh[T_REL] = clock()
        rel()
        n += 1
    res[i * 4] = n
    res[i * 4 + 1] = clock()
    res[i * 4 + 2] = h
    save_hist(counts, mx, hist, hmax, i)


def w_sempp(i, obj, sh, stop, res, hist, hmax, a):
    sa, sb = obj
    n = 0
    a.barrier.wait()
    t0 = clock()
    if i == 0:
        while (n & 15) or not stop.value:
            sa.release()
            sb.acquire()
            n += 1
        res[1] = clock() - t0
        sh[QUIT] = 1
        sa.release()
    else:
        while True:
            sa.acquire()
            if sh[QUIT]:
                break
            sb.release()
            n += 1
    res[i * 4] = n


def w_barrier(i, obj, sh, stop, res, hist, hmax, a):
    wait = obj.wait
    marks = 0
    c = 0
    a.barrier.wait()
    while True:
        if wait() == 0:
            marks += 1
        if i == 0 and stop.value and not sh[LAST]:
            sh[LAST] = c + 1  # before the next wait: everyone sees it after it
        last = sh[LAST]
        if last and c >= last:
            c += 1
            break
        c += 1
    res[i * 4] = c
    res[i * 4 + 1] = clock()
    res[i * 4 + 2] = marks


def w_event(i, obj, sh, stop, res, hist, hmax, a):
    n = 0
    a.barrier.wait()
    if i == 0:
        gap = a.gap_ns / 1e9
        while True:
            while sh[ACKS] != n and not sh[QUIT]:
                yield_cpu()
            if stop.value:
                break
            time.sleep(gap)
            sh[T_SET] = clock()
            obj.set()
            n += 1
        sh[QUIT] = 1
        obj.set()
    else:
        counts = {}
        mx = 0
        wait, clear = obj.wait, obj.clear
        while True:
            wait()
            now = clock()
            if sh[QUIT]:
                break
            d = now - sh[T_SET]
            k = bucket(d)
            counts[k] = counts.get(k, 0) + 1
            if d > mx:
                mx = d
            n += 1
            clear()
            sh[ACKS] = n
        save_hist(counts, mx, hist, hmax, i)
    res[i * 4] = n
    res[i * 4 + 1] = clock()


WORKERS = {"lock1": w_lock1, "sem1": w_lock1, "lockn": w_lockn, "sempp": w_sempp,
           "barrier": w_barrier, "event": w_event}


def child(fn, i, obj, sh, stop, res, hist, hmax, a):
    die_with_parent(a.driver)
    fn(i, obj, sh, stop, res, hist, hmax, a)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(WORKERS), required=True)
    ap.add_argument("-n", type=int, default=1, help="processes")
    ap.add_argument("-t", type=float, default=0.2, help="seconds")
    ap.add_argument("--gap-ns", type=int, default=100000)
    ap.add_argument("--parent", type=int, default=0, help="the harness's pid")
    a = ap.parse_args()
    die_with_parent(a.parent)
    a.driver = os.getpid()
    n = {"lock1": 1, "sem1": 1, "sempp": 2, "event": 2}.get(a.case, a.n)
    if n < 1 or n > 64:
        sys.exit("1..64 processes")
    ctx = mp.get_context("fork")
    if a.case in ("lock1", "lockn"):
        obj = ctx.Lock()
    elif a.case == "sem1":
        obj = ctx.Semaphore(1)
    elif a.case == "sempp":
        obj = (ctx.Semaphore(0), ctx.Semaphore(0))
    elif a.case == "barrier":
        obj = ctx.Barrier(n)
    else:
        obj = ctx.Event()
    a.barrier = ctx.Barrier(n + 1)
    stop = ctx.Value("i", 0, lock=False)
    sh = ctx.RawArray("q", 8)
    sh[OWNER] = -1
    res = ctx.RawArray("q", 4 * n)
    hist = ctx.RawArray("q", NB * n)
    hmax = ctx.RawArray("q", n)
    fn = WORKERS[a.case]
    procs = [ctx.Process(target=child, args=(fn, i, obj, sh, stop, res, hist, hmax, a),
                         daemon=True) for i in range(n)]
    for p in procs:
        p.start()
    a.barrier.wait()
    t0 = clock()
    time.sleep(a.t)
    stop.value = 1
    for p in procs:
        p.join(10)
    bad = [p for p in procs if p.exitcode != 0]
    for p in bad:  # hung or failed: ended here, reported as errors
        p.kill()
        p.join(1)
    ops = [res[i * 4] for i in range(n)]
    errors = len(bad)
    out = {}
    if a.case in ("lock1", "sem1"):
        out = {"ops": ops[0], "wall_s": res[1] / 1e9}
    elif a.case == "lockn":
        total = sum(ops)
        errors += abs(sh[COUNTER] - total)  # lost updates
        out = {"ops": total, "wall_s": (max(res[i * 4 + 1] for i in range(n)) - t0) / 1e9,
               "handoffs": sum(res[i * 4 + 2] for i in range(n))}
    elif a.case == "sempp":
        errors += ops[0] != ops[1]
        out = {"ops": ops[0], "wall_s": res[1] / 1e9}
    elif a.case == "barrier":
        errors += sum(1 for c in ops if c != ops[0])
        errors += sum(res[i * 4 + 2] for i in range(n)) != ops[0]
        out = {"ops": ops[0], "wall_s": (max(res[i * 4 + 1] for i in range(n)) - t0) / 1e9}
    else:
        errors += ops[0] != ops[1]
        out = {"ops": ops[1], "wall_s": (max(res[1], res[5]) - t0) / 1e9}
    if a.case in ("lockn", "event"):
        merged = [sum(hist[i * NB + k] for i in range(n)) for k in range(NB)]
        out["hist"] = [[k, v] for k, v in enumerate(merged) if v]
        out["max_ns"] = max(hmax)
    out["errors"] = errors
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
