"""No leak over many operations in one process: Queue put+get, Pipe send+recv, Manager dict
set+get.

Three measures, taken after a warm-up, before and after the loop:
- tracemalloc's current traced memory (Python objects and buffers: a result or an argument
  never freed grows it by one object per operation);
- sys.getrefcount of sentinel objects that are put/sent/stored many times (a reference
  kept to an argument grows it by one per operation);
- the process's private resident memory, RssAnon (a C-level malloc never freed; shared
  memory is RssShmem and is not counted).
A leak of a few bytes per operation over the counts below is far beyond the bounds.

Against multiprocessing (a feeder thread, a socket, a manager server round trip per
operation: much slower) the counts are smaller.
"""
import gc
import os
import sys
import tracemalloc

from conftest import IS_SHMQ
QUEUE_N = 1_000_000 if IS_SHMQ else 20_000
PIPE_N = 100_000 if IS_SHMQ else 20_000
DICT_N = 200_000 if IS_SHMQ else 5_000
BATCH = 1000
TIMEOUT = 30

TRACED_BOUND = 512 * 1024        # bytes of traced Python memory
RSS_BOUND = 24 * 1024 * 1024     # bytes of private resident memory
REFS_BOUND = 2


def rss_anon():
    """Private resident memory of this process, in bytes (None where not available,
    or under AddressSanitizer, whose quarantine holds freed memory on purpose)."""
    if "libasan" in os.environ.get("LD_PRELOAD", ""):
        return None
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def make_sentinels():
    # Built at run time: not interned, not cached small ints, so only we hold them.
    return {
        "int": 10 ** 40 + 7,
        "bytes": bytes(range(256)) * 3,
        "str": "sentinel-" + "饺子" * 50 + str(os.getpid()),
        "obj": ("a tuple", [1, 2], {"k": b"v"}),
    }


def payloads(sentinels):
    """One batch's items: small ints, bytes and str of several sizes, and the sentinels."""
    items = []
    for i in range(BATCH):
        kind = i % 8
        if kind == 0:
            items.append(i)
        elif kind == 1:
            items.append(-i * 1_000_003)
        elif kind == 2:
            items.append(b"b" * (i % 200))
        elif kind == 3:
            items.append("s%d" % i)
        elif kind == 4:
            items.append("é" * (i % 100))
        else:
            items.append(sentinels[("int", "bytes", "str", "obj")[i % 4]])
    return items


def measure(step, n_steps):
    """Run step() n_steps times after a warm-up; assert no growth of the three measures."""
    for _ in range(3):
        step()
    gc.collect()
    tracemalloc.start()
    try:
        traced0 = tracemalloc.get_traced_memory()[0]
        rss0 = rss_anon()
        for _ in range(n_steps):
            step()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - traced0
        rss = None if rss0 is None else rss_anon() - rss0
    finally:
        tracemalloc.stop()
    assert traced < TRACED_BOUND, f"traced Python memory grew by {traced} bytes"
    if rss is not None:
        assert rss < RSS_BOUND, f"private resident memory grew by {rss} bytes"


def check_refcounts(sentinels, before):
    after = {k: sys.getrefcount(v) for k, v in sentinels.items()}
    for k in sentinels:
        assert after[k] - before[k] <= REFS_BOUND, (k, before[k], after[k])


def test_queue_put_get(mp):
    q = mp.Queue()
    sentinels = make_sentinels()
    items = payloads(sentinels)
    refs = {k: sys.getrefcount(v) for k, v in sentinels.items()}
    mismatches = []

    def step():
        for x in items:
            q.put(x)
        for x in items:
            y = q.get(timeout=TIMEOUT)
            if y != x:
                mismatches.append((x, y))
                break
    measure(step, QUEUE_N // BATCH)
    assert not mismatches, mismatches[:3]
    check_refcounts(sentinels, refs)
    assert q.empty()


def test_simplequeue_put_get(mp):
    q = mp.SimpleQueue()
    sentinels = make_sentinels()
    items = payloads(sentinels)[:100]
    refs = {k: sys.getrefcount(v) for k, v in sentinels.items()}
    bad = []

    def step():
        for x in items:
            q.put(x)
        for x in items:
            if q.get() != x:
                bad.append(x)
    measure(step, (QUEUE_N // 10) // len(items))
    assert not bad, bad[:3]
    check_refcounts(sentinels, refs)


def test_pipe_send_recv(mp):
    a, b = mp.Pipe()
    sentinels = make_sentinels()
    # A batch small enough for a socket buffer (multiprocessing's Pipe is a socketpair).
    items = payloads(sentinels)[:100]
    raw = [bytes([i]) * (i * 3) for i in range(20)]
    refs = {k: sys.getrefcount(v) for k, v in sentinels.items()}
    bad = []

    def step():
        for x in items:
            a.send(x)
        for x in items:
            if b.recv() != x:
                bad.append(x)
        for r in raw:  # and the other way, as bytes
            b.send_bytes(r)
        for r in raw:
            if a.recv_bytes() != r:
                bad.append(r)
        assert not a.poll() and not b.poll()
    measure(step, PIPE_N // (len(items) + len(raw)))
    assert not bad, bad[:3]
    check_refcounts(sentinels, refs)
    a.close()
    b.close()


def test_manager_dict_set_get(mp):
    sentinels = make_sentinels()
    refs = {k: sys.getrefcount(v) for k, v in sentinels.items()}
    keys = [f"k{i}" for i in range(100)] + list(range(100))
    sizes = [0, 1, 17, 100, 1000, 8000]
    bad = []
    with mp.Manager() as m:
        d = m.dict()
        state = {"round": 0}

        def step():
            r = state["round"]
            state["round"] += 1
            for j, k in enumerate(keys):  # overwrites: old values must be reclaimed
                if j % 4 == 0:
                    v = sentinels[("int", "bytes", "str", "obj")[(j // 4) % 4]]
                else:
                    v = bytes([r % 256]) * sizes[(r + j) % len(sizes)]
                d[k] = v
                if d[k] != v:
                    bad.append((k, r))
            assert len(d) == len(keys)
        measure(step, DICT_N // len(keys))
        assert not bad, bad[:3]
    check_refcounts(sentinels, refs)
