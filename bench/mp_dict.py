#!/usr/bin/env python3
"""Python multiprocessing peer of shmq-bench's dict and list cases.

Runs one case on a Manager().dict() or Manager().list() (fork start method),
by the rules of bench/dict.h: the same 16-byte keys (key i from splitmix64,
as dict_key), the same values (a tag, key index | stamp << 24, in the first
8 bytes and, from 16 bytes on, in the last 8), the same checks; every process
waits on a start barrier, the driver sets a stop flag after -t seconds;
timing with time.monotonic_ns. Prints one JSON line:
{"ops":..,"wall_s":..,"errors":..}.

--case dict   -n processes; each picks a key uniformly at random among --keys
              preloaded ones and gets it (--get-pct in 100) or sets a new
              value of --value-size bytes; ops = calls in all.
--case list   -n processes on a list preloaded with --keys 8-byte values;
              each appends a value, then pops one, from the front and the
              back in turn; ops = calls in all.

The manager's server process, every worker and the driver die with their
parent (PR_SET_PDEATHSIG): the harness that started the driver.
"""
import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
from multiprocessing.managers import SyncManager

from mp_peers import drive
from mp_sync import die_with_parent

clock = time.monotonic_ns
M64 = (1 << 64) - 1
IDX_BITS = 24
BATCH = 16  # operations between two looks at the stop flag


def mix(x):
    """splitmix64's finaliser (dict_mix in bench/dict.h)."""
    x ^= x >> 30
    x = (x * 0xbf58476d1ce4e5b9) & M64
    x ^= x >> 27
    x = (x * 0x94d049bb133111eb) & M64
    return x ^ (x >> 31)


def key(i):
    return mix(i).to_bytes(8, "little") + mix(i | 1 << 32).to_bytes(8, "little")


def value(size, tag, mid):
    """size bytes: the tag, mid, and the tag again from 16 bytes on."""
    t = tag.to_bytes(8, "little")
    return t + mid + t if size >= 16 else t + mid


def value_ok(v, size, idx):
    if v is None or len(v) != size or (size >= 16 and v[:8] != v[-8:]):
        return False
    return int.from_bytes(v[:8], "little") & ((1 << IDX_BITS) - 1) == idx


def w_dict(i, d, keys, a, stop):
    n, size, cut = a.keys, a.value_size, a.get_pct / 100
    mid = bytes(size - 16 if size >= 16 else size - 8)
    rnd = random.Random(0x5EED0000 + i).random
    ops = errors = 0
    stamp = i << 16
    a.barrier.wait()
    while not stop.value:
        for _ in range(BATCH):
            idx = int(rnd() * n)
            if rnd() < cut:
                try:
                    v = d[keys[idx]]
                except KeyError:
                    v = None
                errors += not value_ok(v, size, idx)
            else:
                stamp += 1
                d[keys[idx]] = value(size, idx | stamp << IDX_BITS, mid)
        ops += BATCH
    return ops, errors


def w_list(i, lst, keys, a, stop):
    append, pop = lst.append, lst.pop
    tag, end = (i + 1) << 48, (a.n + 1) << 48
    ops = errors = seq = 0
    a.barrier.wait()
    while not stop.value:
        for j in range(BATCH):
            seq += 1
            append((tag | seq).to_bytes(8, "little"))
            try:
                v = pop(-1 if j & 1 else 0)
            except IndexError:
                v = b""
            errors += len(v) != 8 or int.from_bytes(v, "little") >= end
        ops += 2 * BATCH
    return ops, errors


def child(fn, i, obj, keys, a, stop, res):
    die_with_parent(a.driver)
    ops, errors = fn(i, obj, keys, a, stop)
    res[i * 4] = ops
    res[i * 4 + 1] = clock()
    res[i * 4 + 2] = errors


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=("dict", "list"), required=True)
    ap.add_argument("-n", type=int, default=1, help="processes")
    ap.add_argument("-t", type=float, default=0.2, help="seconds")
    ap.add_argument("--get-pct", type=int, default=90)
    ap.add_argument("--value-size", type=int, default=8)
    ap.add_argument("--keys", type=int, default=100000, help="keys (list: values) preloaded")
    ap.add_argument("--parent", type=int, default=0, help="the harness's pid")
    a = ap.parse_args()
    die_with_parent(a.parent)
    a.driver = os.getpid()
    if a.n < 1 or a.n > 64 or a.value_size < 8 or not 0 < a.keys < 1 << IDX_BITS:
        sys.exit("1..64 processes, values of 8 bytes or more, 1 .. 2^24 - 1 keys")
    ctx = mp.get_context("fork")
    mgr = SyncManager(ctx=ctx)
    mgr.start(die_with_parent, (a.driver,))
    keys = None
    if a.case == "dict":
        keys = [key(i) for i in range(a.keys)]
        obj = mgr.dict()
        mid = bytes(a.value_size - 16 if a.value_size >= 16 else a.value_size - 8)
        for lo in range(0, a.keys, 10000):  # messages of a few MB at most
            obj.update({keys[i]: value(a.value_size, i, mid)
                        for i in range(lo, min(lo + 10000, a.keys))})
        fn = w_dict
    else:
        obj = mgr.list([i.to_bytes(8, "little") for i in range(a.keys)])
        fn = w_list
    a.barrier = ctx.Barrier(a.n + 1)
    stop = ctx.Value("i", 0, lock=False)
    res = ctx.RawArray("q", 4 * a.n)
    procs = [ctx.Process(target=child, args=(fn, i, obj, keys, a, stop, res), daemon=True)
             for i in range(a.n)]
    t0, bad = drive(procs, (), a.barrier, stop, a.t, lambda: False)
    t0 = int(t0 * 1e9)  # time.monotonic's clock, in clock()'s unit
    errors = len(bad) + sum(res[i * 4 + 2] for i in range(a.n))  # hung or failed: killed
    errors += len(obj) != a.keys  # no key lost or added, no value lost or duplicated
    out = {"ops": sum(res[i * 4] for i in range(a.n)),
           "wall_s": (max(res[i * 4 + 1] for i in range(a.n)) - t0) / 1e9,
           "errors": errors}
    mgr.shutdown()
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
