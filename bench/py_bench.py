#!/usr/bin/env python3
"""Python benchmark of the `shmq` package against `multiprocessing`.

Every case runs for shmq and for multiprocessing in the same run, interleaved
(shmq, mp, shmq, mp, ... for R rounds), with the fork start method
(get_context('fork')), the same code, the same item counts and the same
processes; only the module differs (the get_many case excepted: mp has no batch
API). Each run: fork every process, wait until all are ready, set a start Event,
and time until the last process is done; consumers end by a count (total /
consumers, the remainder spread), never by a sentinel. The harness (ready
semaphore, start Event, result pipe) is the standard library's for both systems.
Every run is bounded by --timeout: a hang is reported as a failure of that case.

    PYTHONPATH=build-py/python /usr/bin/python3 -P bench/py_bench.py --quick
    bench/py_bench.py --cases 1,2,lock --rounds 5 --json raw.json
    bench/py_bench.py --only-mp          # multiprocessing only (no shmq needed)
"""
import argparse
import ctypes
import datetime
import importlib
import json
import multiprocessing
import os
import platform
import re
import signal
import statistics
import sys
import time
import traceback

H = multiprocessing.get_context("fork")  # the harness's own primitives
clock = time.monotonic                   # CLOCK_MONOTONIC: one clock for all processes
SMALL = None                             # item kind: the tuple (i, 'abc', 3.5)
BLOBS = [bytes([b]) * 1024 for b in range(256)]  # item kind: 1 KiB bytes, blob[0] = i & 255
BATCH = 64                               # get_many / put_many batch
JOIN_CYCLE = 100                         # JoinableQueue: items put between two join()s


class Failure(Exception):
    pass


def split(n, k):
    """n items over k workers, the remainder spread: [n//k + 1, ..., n//k]."""
    return [n // k + (i < n % k) for i in range(k)]


def ranges(n, k):
    lo, out = 0, []
    for c in split(n, k):
        out.append((lo, lo + c))
        lo += c
    return out


# ---------------------------------------------------------------- running ---

def _child(body, ready, start, out):
    try:
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the bench
    except (OSError, AttributeError):
        pass
    try:
        ready.release()
        start.wait()
        ret = body()
        out.send((clock(), ret, None))
    except BaseException:
        out.send((clock(), None, traceback.format_exc()))


def run_procs(ctx, bodies, timeout):
    """Run each body in a process of ctx; return (seconds from the start Event
    to the last body's end, [each body's return value])."""
    ready, start = H.Semaphore(0), H.Event()
    rd, wr = H.Pipe(duplex=False)
    procs = [ctx.Process(target=_child, args=(b, ready, start, wr), daemon=True) for b in bodies]
    deadline = clock() + timeout
    try:
        for p in procs:
            p.start()
        for i in range(len(procs)):
            if not ready.acquire(timeout=max(deadline - clock(), 0)):
                raise Failure(f"hang: {i} of {len(procs)} processes ready after {timeout:g} s")
        t0 = clock()
        start.set()
        res = []
        while len(res) < len(procs):
            left = deadline - clock()
            if left <= 0:
                raise Failure(f"hang: {len(res)} of {len(procs)} processes done after {timeout:g} s")
            if rd.poll(min(left, 0.2)):
                res.append(rd.recv())
                if res[-1][2]:
                    raise Failure("exception in a process: " + brief(res[-1][2]), res[-1][2])
            elif any(p.exitcode not in (None, 0) for p in procs):
                codes = sorted({p.exitcode for p in procs if p.exitcode not in (None, 0)})
                raise Failure(f"a process died without reporting (exit codes {codes})")
        for p in procs:
            p.join(max(deadline - clock(), 0))
        if any(p.is_alive() for p in procs):
            raise Failure(f"hang at exit: {sum(p.is_alive() for p in procs)} processes "
                          f"done but not exited after {timeout:g} s")
        return max(r[0] for r in res) - t0, [r[1] for r in res]
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
        for p in procs:
            if p.pid is not None:
                p.join(5)
        rd.close()
        wr.close()


# ------------------------------------------------------------ case shapes ---
# Each takes (ctx, run, n, ...), runs once with run(bodies), checks the
# result, and returns (seconds, operations).

def produce(q, lo, hi, kind):
    put = q.put
    if kind is SMALL:
        for i in range(lo, hi):
            put((i, "abc", 3.5))
    else:
        for i in range(lo, hi):
            put(kind[i & 255])


def consume(q, count):
    get, s = q.get, 0
    for _ in range(count):
        s += get()[0]
    return s


def key_sum(n, kind):
    """Sum over the items 0..n-1 of item[0]: what the consumers' sums add up to."""
    if kind is SMALL:
        return n * (n - 1) // 2
    return n // 256 * (255 * 256 // 2) + (n % 256) * (n % 256 - 1) // 2


def check_sum(rets, n, kind):
    got = sum(r for r in rets if r is not None)
    if got != key_sum(n, kind):
        raise Failure(f"items lost or duplicated: sum of item[0] {got}, expected {key_sum(n, kind)}")


def case_queue(ctx, run, n, producers, consumers, kind):
    q = ctx.Queue()
    bodies = [lambda r=r: produce(q, *r, kind) for r in ranges(n, producers)]
    bodies += [lambda c=c: consume(q, c) for c in split(n, consumers)]
    t, rets = run(bodies)
    check_sum(rets, n, kind)
    return t, n


def case_get_many(ctx, run, n, many):
    """1x1 small tuples built in batches of BATCH; with `many` (shmq) moved by
    put_many / get_many, otherwise by put / get loops."""
    q = ctx.Queue()

    def producer():
        for j in range(0, n, BATCH):
            batch = [(i, "abc", 3.5) for i in range(j, min(j + BATCH, n))]
            if many:
                q.put_many(batch)
            else:
                for x in batch:
                    q.put(x)

    def consumer():
        if not many:
            return consume(q, n)
        left, s = n, 0
        while left > 0:
            xs = q.get_many(min(BATCH, left))
            left -= len(xs)
            for x in xs:
                s += x[0]
        if left:
            raise Failure(f"get_many returned {-left} items more than asked")
        return s

    t, rets = run([producer, consumer])
    check_sum(rets, n, SMALL)
    return t, n


def case_pipe(ctx, run, n):
    a, b = ctx.Pipe()

    def ping():
        send, recv, bad = a.send, a.recv, 0
        for i in range(n):
            send((i, "abc", 3.5))
            bad += recv()[0] != i
        return bad

    def pong():
        send, recv = b.send, b.recv
        for _ in range(n):
            send(recv())

    t, rets = run([ping, pong])
    if rets[0] or rets[1]:
        raise Failure(f"{rets[0] or rets[1]} round trips returned another object")
    return t, n


def case_lock(ctx, run, n, procs):
    lock = ctx.Lock()

    def body(k):
        acq, rel = lock.acquire, lock.release
        for _ in range(k):
            acq()
            rel()

    t, _ = run([lambda k=k: body(k) for k in split(n, procs)])
    return t, n


def case_value(ctx, run, n, procs):
    v = ctx.Value("i", 0)

    def body(k):
        for _ in range(k):
            with v.get_lock():
                v.value += 1

    t, _ = run([lambda k=k: body(k) for k in split(n, procs)])
    if v.value != n:
        raise Failure(f"lost increments: value {v.value}, expected {n}")
    return t, n


def case_dict(ctx, run, n, procs):
    """n calls: n / 2 set+get pairs over the processes, each process on 64 keys
    of its own."""
    with ctx.Manager() as m:
        d = m.dict()

        def body(p, k):
            keys, bad = [f"p{p}k{j}" for j in range(64)], 0
            for i in range(k):
                key = keys[i & 63]
                d[key] = i
                bad += d[key] != i
            return bad

        t, rets = run([lambda p=p, k=k: body(p, k) for p, k in enumerate(split(n // 2, procs))])
        if sum(rets):
            raise Failure(f"{sum(rets)} gets did not return the value just set")
    return t, n // 2 * 2


def case_join(ctx, run, n):
    """1 producer puts JOIN_CYCLE items, join()s, and again; 1 consumer gets and
    task_done()s each item; the time ends with the last join."""
    q = ctx.JoinableQueue()

    def producer():
        for j in range(0, n, JOIN_CYCLE):
            for i in range(j, min(j + JOIN_CYCLE, n)):
                q.put((i, "abc", 3.5))
            q.join()

    def consumer():
        get, done, s = q.get, q.task_done, 0
        for _ in range(n):
            s += get()[0]
            done()
        return s

    t, rets = run([producer, consumer])
    check_sum(rets, n, SMALL)
    return t, n


# ------------------------------------------------------------------ cases ---
# group: (title, unit of an op, note under its table)
GROUPS = {
    "qs": ("Queue, small tuples `(i, 'abc', 3.5)`", "items", ""),
    "qb": ("Queue, 1 KiB bytes objects", "items", ""),
    "many": ("Batches: put_many / get_many", "items", "mp has no batch API: its side is its best "
             "equivalent, put / get loops over the same batches of 64 (1 producer x 1 "
             "consumer, small tuples)."),
    "pipe": ("Pipe ping-pong", "round trips", "A duplex Pipe; one op = a round trip of `(i, 'abc', 3.5)` "
             "(send + recv on each side), 2 processes."),
    "lock": ("Lock", "pairs", "One op = acquire() + release(); 2 processes contend for one Lock."),
    "value": ("Value('i')", "increments", "One op = `with v.get_lock(): v.value += 1`; the final value is checked."),
    "dict": ("Manager().dict()", "calls", "mp: a real Manager (server process). One op = one call: "
             "`d[k] = v` or `d[k]`, in set+get pairs, each process on 64 keys of its own."),
    "join": ("JoinableQueue", "items", f"1 producer x 1 consumer, small tuples; the producer puts "
             f"{JOIN_CYCLE} items and join()s, again and again; the consumer get()s and "
             "task_done()s each; the time ends with the last join."),
}
# (id, name, group, label, ops per run in full mode, shape(ctx, run, n, system))
S = lambda fn, *args: lambda ctx, run, n, system: fn(ctx, run, n, *args)
Q = lambda p, c, kind: S(case_queue, p, c, kind)
CASES = [
    ("1", "queue-small-1x1", "qs", "1 x 1", 100_000, Q(1, 1, SMALL)),
    ("2", "queue-small-4x4", "qs", "4 x 4", 100_000, Q(4, 4, SMALL)),
    ("3", "queue-small-20x20", "qs", "20 x 20", 100_000, Q(20, 20, SMALL)),
    ("4", "queue-bytes-1x1", "qb", "1 x 1", 80_000, Q(1, 1, BLOBS)),
    ("5", "queue-bytes-4x4", "qb", "4 x 4", 80_000, Q(4, 4, BLOBS)),
    ("6", "queue-bytes-20x20", "qb", "20 x 20", 80_000, Q(20, 20, BLOBS)),
    ("7", "get-many", "many", "1 x 1, batches of 64", 100_000,
     lambda ctx, run, n, system: case_get_many(ctx, run, n, system == "shmq")),
    ("8", "pipe-pingpong", "pipe", "2 processes", 15_000, S(case_pipe)),
    ("9a", "lock-1", "lock", "1 process", 6_000_000, S(case_lock, 1)),
    ("9b", "lock-2", "lock", "2 processes", 2_000_000, S(case_lock, 2)),
    ("10", "value", "value", "2 processes", 300_000, S(case_value, 2)),
    ("11a", "dict-1", "dict", "1 process", 12_000, S(case_dict, 1)),
    ("11b", "dict-2", "dict", "2 processes", 12_000, S(case_dict, 2)),
    ("12", "joinable", "join", "1 x 1", 60_000, S(case_join)),
]
# (target, case ids, minimum shmq/mp median ratio)
TARGETS = [
    ("small objects >= 10x mp.Queue at 1x1", ["1"], 10),
    ("small objects >= 30x mp.Queue at 20x20", ["3"], 30),
    ("bytes >= 30x mp.Queue", ["4", "5", "6"], 30),
    ("dict get/set >= 50x Manager().dict()", ["11a", "11b"], 50),
    ("Lock >= 20x mp.Lock", ["9a", "9b"], 20),
    ("Pipe round trip >= 20x mp.Pipe", ["8"], 20),
]


# -------------------------------------------------------------- reporting ---

def brief(tb):
    """A traceback in one line: the exception and where it was raised."""
    where = re.findall(r'File "([^"]+)", line (\d+), in (\S+)', tb)
    last = tb.strip().splitlines()[-1]
    return f"{last} ({os.path.basename(where[-1][0])}:{where[-1][1]}, {where[-1][2]})" if where else last


def si(x):
    for div, suf in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.3g}"


def num(x):
    return f"{x:.0f}" if x >= 100 else f"{x:.3g}"


def spread(xs):
    return f"{num(statistics.median(xs))} [{num(min(xs))}..{num(max(xs))}]" if xs else "n/a"


def summarise(row):
    """Median ops/s per system; ratios paired per round where both ran."""
    med = {s: statistics.median(v) if v else None
           for s, v in ((s, [x for x in row[s] if x is not None]) for s in ("shmq", "mp"))}
    ratios = [a / b for a, b in zip(row["shmq"], row["mp"]) if a is not None and b is not None]
    return med, ratios


def report(rows, systems, meta):
    out = [f"# shmq Python benchmark ({meta['mode']}, {meta['rounds']} rounds)", "",
           f"{meta['date']}, nproc={meta['nproc']}, CPU={meta['cpu']}, Linux {meta['kernel']}, "
           f"Python {meta['python']}, fork start method, systems: {', '.join(systems)}.",
           "Rounds interleaved (shmq, mp, shmq, mp, ...); throughput = operations / time from "
           "the start Event to the last process done, median of the rounds; ratio shmq/mp per "
           "round, median [min..max]. Both systems move the same items with the same processes.", ""]
    for g, (title, unit, note) in GROUPS.items():
        grow = [r for r in rows if r["group"] == g]
        if not grow:
            continue
        out += [f"## {title}", "", "| case | shmq ops/s | mp ops/s | shmq/mp median [min..max] |",
                "| --- | --- | --- | --- |"]
        for r in grow:
            med, ratios = summarise(r)
            cell = {s: " ".join(filter(None, (si(med[s]) if med[s] else "" if r["fail"][s] else
                                              "not run", "**FAILED**" if r["fail"][s] else "")))
                    for s in ("shmq", "mp")}
            out.append(f"| {r['id']}. {r['label']}, {si(r['n'])} {unit} | {cell['shmq']} | "
                       f"{cell['mp']} | {spread(ratios)} |")
        out += ([note, ""] if note else [""])
    byid = {r["id"]: r for r in rows}
    out += ["## Targets", "", "Targets from the issue: " + "; ".join(t for t, _, _ in TARGETS)
            + ". Met when the median ratio reaches the target.", "",
            "| target | case | shmq/mp median [min..max] | |", "| --- | --- | --- | --- |"]
    for text, ids, goal in TARGETS:
        for i in ids:
            if i not in byid:
                continue
            r = byid[i]
            med, ratios = summarise(r)
            failed = r["fail"]["shmq"] or r["fail"]["mp"]
            verdict = ("not measured" if not ratios else
                       "met" if statistics.median(ratios) >= goal else "**missed**")
            if failed:
                verdict += " (**failures**)"
            out.append(f"| {text} | {i}. {r['name']} | {spread(ratios)} | {verdict} |")
    out += ["", "## Failures", ""]
    for r in rows:
        for s in ("shmq", "mp"):
            msgs = {}  # the same failure in several rounds: one line
            for rnd, msg, _ in r["fail"][s]:
                msgs.setdefault(msg, []).append(str(rnd))
            out += [f"- {r['id']}. {r['name']}, {s}, round{'s' * (len(k) > 1)} {', '.join(k)}: {m}"
                    for m, k in msgs.items()]
    if out[-1] == "":
        out.append("None.")
    return "\n".join(out)


# ------------------------------------------------------------------- main ---

def select(spec):
    if not spec:
        return CASES
    want = [w.strip() for w in spec.split(",") if w.strip()]
    hit = lambda w, c: w in (c[0], c[0].rstrip("ab"), c[1], c[2]) or c[1].startswith(w + "-")
    picked = [c for c in CASES if any(hit(w, c) for w in want)]
    unknown = [w for w in want if not any(hit(w, c) for c in CASES)]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; cases: " + ", ".join(f"{c[0]}={c[1]}" for c in CASES))
    return picked


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="3 rounds, half the items")
    ap.add_argument("--rounds", type=int, help="rounds per case (default 5, quick 3)")
    ap.add_argument("--cases", help="ids or names, comma-separated (1,2,9a,lock,dict-2,queue-small)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every item count")
    ap.add_argument("--timeout", type=float, help="seconds per run before it counts as a hang "
                    "(default 30, quick 10)")
    ap.add_argument("--only-mp", action="store_true", help="multiprocessing only")
    ap.add_argument("--json", help="write the raw numbers here")
    a = ap.parse_args()
    rounds = a.rounds or (3 if a.quick else 5)
    timeout = a.timeout or (10 if a.quick else 30)
    scale = a.scale / (2 if a.quick else 1)
    systems = ["mp"] if a.only_mp else ["shmq", "mp"]
    mods = {"mp": multiprocessing}
    if not a.only_mp:
        try:
            mods["shmq"] = importlib.import_module("shmq")
        except ImportError as e:
            sys.exit(f"cannot import shmq ({e}): set PYTHONPATH to the build's python/ "
                     "directory, or run with --only-mp")
    ctxs = {s: mods[s].get_context("fork") for s in systems}
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version(),
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
                         if l.startswith("model name")), "?"),
            "mode": "quick" if a.quick else "full", "rounds": rounds, "timeout_s": timeout,
            "shmq": getattr(mods.get("shmq"), "__file__", None)}
    rows, t_start = [], clock()
    for cid, name, group, label, count, shape in select(a.cases):
        n = max(int(count * scale), 1)
        row = {"id": cid, "name": name, "group": group, "label": label, "n": n, "unit": GROUPS[group][1],
               "shmq": [], "mp": [], "seconds": {"shmq": [], "mp": []}, "fail": {"shmq": [], "mp": []}}
        hung = set()
        for rnd in range(rounds):
            line = []
            for s in ["shmq", "mp"]:
                if s not in systems or s in hung:
                    row[s].append(None)
                    continue
                run = lambda bodies: run_procs(ctxs[s], bodies, timeout)
                try:
                    t, ops = shape(ctxs[s], run, n, s)
                    row[s].append(ops / t)
                    row["seconds"][s].append(t)
                    line.append(f"{s} {si(ops / t)}/s ({t:.3f} s)")
                except Exception as e:  # Failure, or the case's own setup failing
                    tb = e.args[1] if len(e.args) > 1 else \
                        "" if isinstance(e, Failure) else traceback.format_exc()
                    msg = e.args[0] if isinstance(e, Failure) else brief(tb)
                    if msg.startswith("hang"):
                        hung.add(s)
                        msg += "; its later rounds skipped"
                    row[s].append(None)
                    row["fail"][s].append([rnd + 1, msg, tb])
                    line.append(f"{s} FAILED ({msg})")
            print(f"[{clock() - t_start:5.1f} s] {cid} {name} round {rnd + 1}: " + ", ".join(line),
                  file=sys.stderr, flush=True)
        rows.append(row)
    meta["wall_s"] = round(clock() - t_start, 1)
    print(report(rows, systems, meta))
    print(f"\nWall time {meta['wall_s']} s.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
