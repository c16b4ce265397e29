"""Manager(): dict, list, Namespace, Queue, JoinableQueue, the synchronisation primitives,
Value and Array, as multiprocessing's proxies behave, used from child processes.

Children run under fork (`fork_ctx`) except the dict and list tests that take `ctx` (every
start method). A child checks with assert: a failure shows as its exit status (and its
traceback in the captured stderr). Every wait is bounded.
"""
import queue
import threading

import pytest
from conftest import shmq_only
from helpers import bounded, join_ok, start

TIMEOUT = 30  # seconds, for anything that should take milliseconds


def finish(*procs):
    join_ok(*procs, timeout=TIMEOUT)


def run(ctx, target, *args):
    finish(start(ctx, target, *args))


# Values of many types, compared by value and type after a round trip.
VALUES = [
    None, True, False, 0, -1, 7, 2 ** 63 - 1, -2 ** 63, 2 ** 100, -(3 ** 80), 1.5, -0.0,
    float("inf"), 1e-300, 2 + 3j, "", "s", "饺子 unicode ✓", "x" * 100_000, b"", b"\x00\xff",
    b"y" * 1_000_000, bytearray(b"ba"), [], [1, [2, [3]]], (), (1, "a", b"b"),
    {"k": [1, 2], 3: None}, {1, 2, 3}, frozenset({"a"}), range(3), slice(1, 2),
]


def same(a, b):
    return type(a) is type(b) and (a == b or (a != a and b != b))


# --- dict -----------------------------------------------------------------------------------

def test_dict_item_access(mp):
    with mp.Manager() as m:
        d = m.dict()
        assert len(d) == 0 and not d
        d["a"] = 1
        d["b"] = 2
        assert d["a"] == 1 and d["b"] == 2
        assert len(d) == 2 and d
        assert "a" in d and "z" not in d
        d["a"] = "one"  # overwrite
        assert d["a"] == "one" and len(d) == 2
        del d["a"]
        assert "a" not in d and len(d) == 1
        with pytest.raises(KeyError):
            d["a"]
        with pytest.raises(KeyError):
            del d["a"]
        assert d.copy() == {"b": 2}


def test_dict_constructors(mp):
    with mp.Manager() as m:
        assert m.dict({"a": 1, 2: "b"}).copy() == {"a": 1, 2: "b"}
        assert m.dict(x=1, y=2).copy() == {"x": 1, "y": 2}
        assert m.dict([("p", 1), ("q", 2)]).copy() == {"p": 1, "q": 2}
        assert m.dict().copy() == {}


def test_dict_key_types(mp):
    keys = ["1", 1, -1, 2 ** 70, b"1", (1,), (1, ("a", b"b")), 1.5, None, frozenset({1}),
            "", b"", (), "k" * 10_000]
    with mp.Manager() as m:
        d = m.dict()
        for i, k in enumerate(keys):
            d[k] = i
        assert len(d) == len(keys)  # "1", 1 and b"1" are three keys
        for i, k in enumerate(keys):
            assert k in d
            assert d[k] == i, k
        got = d.keys()
        assert len(got) == len(keys)
        for k in keys:
            assert any(same(k, g) for g in got), k  # keys come back with their type


def test_dict_equal_keys_are_one_key(mp):
    # As in any dict, 1, 1.0 and True are equal, hash alike, so are the same key (the first
    # one stored stays the key).
    with mp.Manager() as m:
        d = m.dict()
        d[1] = "int"
        d[1.0] = "float"
        d[True] = "bool"
        assert len(d) == 1
        assert d[1] == "bool" and d[1.0] == "bool"
        [k] = d.keys()
        assert type(k) is int and k == 1


def test_dict_value_types(mp):
    with mp.Manager() as m:
        d = m.dict()
        for i, v in enumerate(VALUES):
            d[i] = v
        for i, v in enumerate(VALUES):
            assert same(d[i], v), (i, v if len(repr(v)) < 80 else type(v))
        # Overwrites that grow and shrink a value.
        for v in [b"a", b"b" * 100_000, b"", "c" * 50, 12, b"d" * 1_000_000, None]:
            d["o"] = v
            assert same(d["o"], v)


def test_dict_iteration_and_views(mp):
    src = {f"k{i}": i for i in range(50)}
    with mp.Manager() as m:
        d = m.dict(src)
        assert sorted(d) == sorted(src)
        assert sorted(k for k in d) == sorted(src)
        assert sorted(d.keys()) == sorted(src)
        assert sorted(d.values()) == sorted(src.values())
        assert sorted(d.items()) == sorted(src.items())
        assert len(list(d.keys())) == len(list(d.values())) == len(list(d.items())) == 50
        # keys(), values() and items() are in the same order
        assert [src[k] for k in d.keys()] == list(d.values())
        assert list(zip(d.keys(), d.values())) == list(d.items())


def test_dict_get_pop_setdefault(mp):
    with mp.Manager() as m:
        d = m.dict({"a": 1, "n": None})
        assert d.get("a") == 1
        assert d.get("zz") is None
        assert d.get("zz", 7) == 7
        assert d.get("n", 7) is None
        assert d.pop("a") == 1
        assert "a" not in d
        with pytest.raises(KeyError):
            d.pop("a")
        assert d.pop("a", "dflt") == "dflt"
        assert d.setdefault("s", 5) == 5
        assert d.setdefault("s", 6) == 5
        assert d["s"] == 5
        assert d.setdefault("t") is None and "t" in d and d["t"] is None
        assert d.copy() == {"n": None, "s": 5, "t": None}


def test_dict_popitem(mp):
    src = {i: str(i) for i in range(10)}
    with mp.Manager() as m:
        d = m.dict(src)
        seen = {}
        for left in range(9, -1, -1):
            k, v = d.popitem()
            assert k not in seen and src[k] == v
            seen[k] = v
            assert k not in d and len(d) == left
        assert seen == src
        with pytest.raises(KeyError):
            d.popitem()


def test_dict_update_clear_copy(mp):
    with mp.Manager() as m:
        d = m.dict({"a": 0})
        d.update({"a": 1, "b": 2}, c=3)
        assert d.copy() == {"a": 1, "b": 2, "c": 3}
        d.update([("d", 4), ("a", 10)])
        d.update(e=5)
        d.update({})
        c = d.copy()
        assert type(c) is dict
        assert c == {"a": 10, "b": 2, "c": 3, "d": 4, "e": 5}
        c["zz"] = 1  # a copy, not the shared dict
        assert "zz" not in d
        with pytest.raises(TypeError):
            d.update({"x": 1}, {"y": 2})
        d.clear()
        assert len(d) == 0 and d.copy() == {} and list(d.keys()) == []
        d["again"] = 1
        assert d.copy() == {"again": 1}


def test_dict_str(mp):
    with mp.Manager() as m:
        assert str(m.dict({"count": 30})) == "{'count': 30}"  # what the seeds print
        assert str(m.dict()) == "{}"


def _dict_child(d):
    assert d["from_parent"] == [1, 2, 3]
    assert sorted(d.keys()) == ["del_me", "from_parent"]
    del d["del_me"]
    d["from_child"] = {"nested": (1, b"x")}
    d["from_parent"] = d["from_parent"] + [4]
    d.update({i: i * i for i in range(100)})


def test_dict_in_child(mp, ctx):
    with mp.Manager() as m:
        d = m.dict()
        d["from_parent"] = [1, 2, 3]
        d["del_me"] = 0
        run(ctx, _dict_child, d)
        assert "del_me" not in d
        assert d["from_child"] == {"nested": (1, b"x")}
        assert d["from_parent"] == [1, 2, 3, 4]
        assert len(d) == 102
        assert all(d[i] == i * i for i in range(100))


# --- list -----------------------------------------------------------------------------------

def test_list_append_extend_insert(mp):
    with mp.Manager() as m:
        l = m.list()
        assert len(l) == 0 and not l and list(l) == []
        l.append(1)
        l.extend([2, 3])
        l.extend(iter((4,)))
        l.extend([])
        assert list(l) == [1, 2, 3, 4] and len(l) == 4 and l
        l.insert(0, "first")
        l.insert(2, "mid")
        l.insert(-1, "neg")
        l.insert(100, "end")   # clamps, as list.insert does
        l.insert(-100, "start")
        assert list(l) == ["start", "first", 1, "mid", 2, 3, "neg", 4, "end"]
        assert m.list(range(5))[:] == [0, 1, 2, 3, 4]
        assert list(m.list("abc")) == ["a", "b", "c"]


def test_list_iadd_imul_add_mul(mp):
    with mp.Manager() as m:
        l = m.list([1, 2])
        same_l = l
        l += [3]
        l += (4,)
        assert l is same_l  # in place, still the shared list
        assert list(l) == [1, 2, 3, 4]
        l *= 2
        assert l is same_l
        assert list(l) == [1, 2, 3, 4, 1, 2, 3, 4]
        s = m.list([1, 2])
        assert s + [3] == [1, 2, 3] and type(s + [3]) is list
        assert s * 2 == [1, 2, 1, 2] and type(s * 2) is list
        assert 2 * s == [1, 2, 1, 2]
        assert list(s) == [1, 2]  # unchanged


def test_list_indexing(mp):
    with mp.Manager() as m:
        l = m.list(["a", "b", "c", "d"])
        assert l[0] == "a" and l[3] == "d"
        assert l[-1] == "d" and l[-4] == "a"
        for bad in (4, 100, -5, -100):
            with pytest.raises(IndexError):
                l[bad]
        l[0] = "A"
        l[-1] = "D"
        assert list(l) == ["A", "b", "c", "D"]
        with pytest.raises(IndexError):
            l[4] = "x"
        with pytest.raises(IndexError):
            l[-5] = "x"
        with pytest.raises(IndexError):
            m.list()[0]
        assert list(l) == ["A", "b", "c", "D"]


def test_list_slicing(mp):
    with mp.Manager() as m:
        ref = list(range(10))
        l = m.list(ref)
        for s in [slice(None), slice(2, 5), slice(-3, None), slice(None, -7), slice(None, None, 2),
                  slice(None, None, -1), slice(8, 1, -3), slice(20, 30), slice(5, 2)]:
            assert l[s] == ref[s], s
            assert type(l[s]) is list
        l[1:3] = ["a", "b", "c"]        # a slice of another length
        ref[1:3] = ["a", "b", "c"]
        assert list(l) == ref
        l[::2] = ["x"] * len(ref[::2])  # an extended slice
        ref[::2] = ["x"] * len(ref[::2])
        assert list(l) == ref
        with pytest.raises(ValueError):
            l[::2] = ["too", "few"]
        assert list(l) == ref
        del l[0]
        del ref[0]
        del l[-1]
        del ref[-1]
        del l[1:3]
        del ref[1:3]
        del l[::3]
        del ref[::3]
        assert list(l) == ref
        with pytest.raises(IndexError):
            del l[100]
        l[:] = []
        assert list(l) == [] and len(l) == 0


def test_list_pop_remove_index_count(mp):
    with mp.Manager() as m:
        l = m.list([1, 2, 3, 2, 1, 2])
        assert l.count(2) == 3 and l.count(9) == 0
        assert l.index(2) == 1
        assert l.index(2, 2) == 3
        with pytest.raises(ValueError):
            l.index(9)
        l.remove(2)  # the first one
        assert list(l) == [1, 3, 2, 1, 2]
        with pytest.raises(ValueError):
            l.remove(9)
        assert l.pop() == 2
        assert l.pop(0) == 1
        assert l.pop(-2) == 2
        assert list(l) == [3, 1]
        with pytest.raises(IndexError):
            l.pop(5)
        assert l.pop() == 1 and l.pop() == 3
        with pytest.raises(IndexError):
            l.pop()
        assert len(l) == 0


def test_list_sort_reverse(mp):
    with mp.Manager() as m:
        l = m.list([3, -1, 1, -3, 2, 0])
        l.sort()
        assert list(l) == [-3, -1, 0, 1, 2, 3]
        l.sort(reverse=True)
        assert list(l) == [3, 2, 1, 0, -1, -3]
        l2 = m.list([3, -1, 1, -3, 2])
        l2.sort(key=abs)  # stable: -1 before 1, 3 before -3
        assert list(l2) == [-1, 1, 2, 3, -3]
        l2.sort(key=abs, reverse=True)
        assert list(l2) == [3, -3, 2, -1, 1]
        l2.reverse()
        assert list(l2) == [1, -1, 2, -3, 3]
        s = m.list(["b", "C", "a"])
        s.sort(key=str.lower)
        assert list(s) == ["a", "b", "C"]
        with pytest.raises(TypeError):
            m.list([1, "a"]).sort()


def test_list_iteration_contains(mp):
    with mp.Manager() as m:
        l = m.list(["a", 1, (2, 3), None])
        assert [x for x in l] == ["a", 1, (2, 3), None]
        assert list(reversed(l)) == [None, (2, 3), 1, "a"]
        assert "a" in l and (2, 3) in l and None in l
        assert "b" not in l and 2 not in l
        assert str(l) == str(["a", 1, (2, 3), None])


def test_list_value_types(mp):
    with mp.Manager() as m:
        l = m.list()
        for v in VALUES:
            l.append(v)
        assert len(l) == len(VALUES)
        for i, v in enumerate(VALUES):
            assert same(l[i], v), (i, v if len(repr(v)) < 80 else type(v))
        got = list(l)
        assert all(same(a, b) for a, b in zip(got, VALUES))


def _list_child(l):
    assert list(l) == ["p0", "p1", "p2"]
    l.append("c0")
    l.extend(["c1", "c2"])
    l.insert(0, "c-first")
    assert l.pop(1) == "p0"
    l[1] = "P1"
    del l[2]


def test_list_in_child(ctx):
    with ctx.Manager() as m:
        l = m.list(["p0", "p1", "p2"])
        run(ctx, _list_child, l)
        assert list(l) == ["c-first", "P1", "c0", "c1", "c2"]


# --- Namespace ------------------------------------------------------------------------------

def _ns_child(ns, q):
    try:
        ns.missing
    except AttributeError:
        q.put("AttributeError")
    else:
        q.put("no error")
    q.put((ns.x, ns.name))
    ns.x += 5
    ns.y = [1, 2]
    ns.from_child = "c"
    del ns.gone


def test_namespace(mp, fork_ctx):
    with mp.Manager() as m:
        ns = m.Namespace()
        with pytest.raises(AttributeError):
            ns.x
        ns.x = 1
        ns.name = "饺子"
        ns.gone = True
        q = m.Queue()
        run(fork_ctx, _ns_child, ns, q)
        assert q.get(timeout=TIMEOUT) == "AttributeError"
        assert q.get(timeout=TIMEOUT) == (1, "饺子")
        assert ns.x == 6 and ns.y == [1, 2] and ns.from_child == "c"
        with pytest.raises(AttributeError):
            ns.gone
        with pytest.raises(AttributeError):
            ns.missing
        assert m.Namespace(a=1, b="two").b == "two"


# --- Value and Array ------------------------------------------------------------------------

def _value_array_child(v, f, a):
    assert v.value == 5 and f.value == 1.5
    assert len(a) == 5 and a[0] == 0 and a[-1] == 4
    v.value = v.value * 10
    f.value = -2.25
    for i in range(len(a)):
        a[i] = -a[i] * 2
    a[-1] = 99


def test_manager_value_array(mp, fork_ctx):
    with mp.Manager() as m:
        v = m.Value("i", 5)
        f = m.Value("d", 1.5)
        a = m.Array("i", range(5))
        run(fork_ctx, _value_array_child, v, f, a)
        assert v.value == 50
        assert f.value == -2.25
        assert len(a) == 5
        assert [a[i] for i in range(5)] == [0, -2, -4, -6, 99]
        assert a[-2] == -6
        assert list(a[1:3]) == [-2, -4]
        with pytest.raises(IndexError):
            a[5]
        v.value = 7
        assert v.value == 7


# --- Queue and JoinableQueue ----------------------------------------------------------------

def _queue_child(q, n):
    for i in range(n):
        q.put(i)
    q.put({"obj": [b"x", "y"]})
    q.put(None)


def test_manager_queue(mp, fork_ctx):
    with mp.Manager() as m:
        q = m.Queue()
        assert q.empty() and q.qsize() == 0
        with pytest.raises(queue.Empty):
            q.get(timeout=0.05)
        with pytest.raises(queue.Empty):
            q.get_nowait()
        run(fork_ctx, _queue_child, q, 100)
        assert q.qsize() == 102
        assert [q.get(timeout=TIMEOUT) for _ in range(100)] == list(range(100))
        assert q.get(timeout=TIMEOUT) == {"obj": [b"x", "y"]}
        assert q.get(timeout=TIMEOUT) is None
        assert q.empty()
        b = m.Queue(2)
        b.put(1)
        b.put_nowait(2)
        assert b.full()
        with pytest.raises(queue.Full):
            b.put(3, timeout=0.05)
        with pytest.raises(queue.Full):
            b.put_nowait(3)
        assert b.get() == 1 and b.get() == 2


def _joinable_child(q, out):
    while True:
        item = q.get(timeout=TIMEOUT)
        if item is None:
            q.task_done()
            return
        out.put(item * 2)
        q.task_done()


def test_manager_joinable_queue(mp, fork_ctx):
    with mp.Manager() as m:
        q = m.JoinableQueue()
        out = m.Queue()
        p = start(fork_ctx, _joinable_child, q, out)
        for i in range(20):
            q.put(i)
        q.put(None)
        bounded(q.join, timeout=TIMEOUT)  # every task_done arrived
        finish(p)
        assert sorted(out.get(timeout=TIMEOUT) for _ in range(20)) == [i * 2 for i in range(20)]
        with pytest.raises(ValueError):
            q.task_done()  # more task_done() than items


# --- Lock, RLock, Semaphore, BoundedSemaphore -----------------------------------------------

def _holder(obj, times, got, release):
    """Take obj `times` times, say so, wait to be told, give it back as often."""
    for _ in range(times):
        assert obj.acquire(timeout=TIMEOUT)
    got.set()
    assert release.wait(TIMEOUT)
    for _ in range(times):
        obj.release()


def _check_held_then_free(m, fork_ctx, obj, times):
    got, release = m.Event(), m.Event()
    p = start(fork_ctx, _holder, obj, times, got, release)
    try:
        assert got.wait(TIMEOUT)
        assert not obj.acquire(timeout=0.1)   # held by the child
        assert not obj.acquire(False)
    finally:
        release.set()
    finish(p)
    assert obj.acquire(timeout=TIMEOUT)        # free again
    obj.release()


def test_manager_lock(mp, fork_ctx):
    with mp.Manager() as m:
        lock = m.Lock()
        _check_held_then_free(m, fork_ctx, lock, 1)
        with lock:
            assert not lock.acquire(False)  # not recursive
        assert lock.acquire(False)
        lock.release()


def test_manager_rlock(mp, fork_ctx):
    with mp.Manager() as m:
        rl = m.RLock()
        _check_held_then_free(m, fork_ctx, rl, 3)
        with rl:
            with rl:  # recursive in its owner
                assert rl.acquire(False)
                rl.release()


def test_manager_semaphore(mp, fork_ctx):
    with mp.Manager() as m:
        s = m.Semaphore(2)
        _check_held_then_free(m, fork_ctx, s, 2)
        assert s.acquire(timeout=1) and s.acquire(timeout=1)
        assert not s.acquire(False)
        s.release()
        s.release()
        s.release()  # a Semaphore may go above its start value
        for _ in range(3):
            assert s.acquire(False)
        assert not s.acquire(False)


def test_manager_bounded_semaphore(mp, fork_ctx):
    with mp.Manager() as m:
        s = m.BoundedSemaphore(2)
        _check_held_then_free(m, fork_ctx, s, 2)
        with pytest.raises(ValueError):
            s.release()  # above its start value
        assert s.acquire(False)
        s.release()


# --- Condition, Event, Barrier --------------------------------------------------------------

def _cond_child(cond, ns, q):
    with cond:
        q.put("waiting")
        ok = cond.wait_for(lambda: ns.ready, timeout=TIMEOUT)
        q.put(("woke", ok, ns.value))


def test_manager_condition(mp, fork_ctx):
    with mp.Manager() as m:
        cond = m.Condition()
        ns = m.Namespace(ready=False, value=None)
        q = m.Queue()
        p = start(fork_ctx, _cond_child, cond, ns, q)
        assert q.get(timeout=TIMEOUT) == "waiting"
        with cond:  # the child is inside wait(): it released the lock
            ns.value = 42
            ns.ready = True
            cond.notify_all()
        assert q.get(timeout=TIMEOUT) == ("woke", True, 42)
        finish(p)
        with cond:
            assert cond.wait(0.05) is False  # nobody notifies: times out
            cond.notify()  # with nobody waiting: nothing happens


def _event_child(ev, q):
    q.put(("waited", ev.wait(TIMEOUT)))


def test_manager_event(mp, fork_ctx):
    with mp.Manager() as m:
        ev = m.Event()
        assert not ev.is_set()
        assert ev.wait(0.05) is False
        q = m.Queue()
        p = start(fork_ctx, _event_child, ev, q)
        ev.set()
        assert q.get(timeout=TIMEOUT) == ("waited", True)
        finish(p)
        assert ev.is_set() and ev.wait(0) is True
        ev.clear()
        assert not ev.is_set()


def _barrier_child(b, q):
    q.put(b.wait(TIMEOUT))


def test_manager_barrier(mp, fork_ctx):
    with mp.Manager() as m:
        b = m.Barrier(3)
        assert b.parties == 3 and b.n_waiting == 0 and not b.broken
        q = m.Queue()
        ps = [start(fork_ctx, _barrier_child, b, q) for _ in range(2)]
        mine = b.wait(TIMEOUT)
        finish(*ps)
        assert sorted([mine, q.get(timeout=TIMEOUT), q.get(timeout=TIMEOUT)]) == [0, 1, 2]
        b2 = m.Barrier(2)
        b2.abort()
        assert b2.broken
        with pytest.raises(threading.BrokenBarrierError):
            b2.wait(TIMEOUT)
        b2.reset()
        assert not b2.broken


# --- concurrency ----------------------------------------------------------------------------

def _locked_adder(d, lock, key, n):
    for _ in range(n):
        with lock:
            d[key] += 1


def test_locked_counter_from_4_processes(mp, fork_ctx):
    with mp.Manager() as m:
        d = m.dict({"n": 0})
        lock = m.Lock()
        ps = [start(fork_ctx, _locked_adder, d, lock, "n", 200) for _ in range(4)]
        finish(*ps)
        assert d["n"] == 800


def _appender(l, who, n):
    for j in range(n):
        l.append((who, j))


def test_appends_from_4_processes(mp, fork_ctx):
    with mp.Manager() as m:
        l = m.list()
        ps = [start(fork_ctx, _appender, l, i, 100) for i in range(4)]
        finish(*ps)
        got = list(l)
        assert len(got) == 400
        assert sorted(got) == [(i, j) for i in range(4) for j in range(100)]
        for i in range(4):  # each process's appends in its order
            assert [j for w, j in got if w == i] == list(range(100))


# ------------------------------------------------- objects inside containers --
# A Queue, Lock or dict stored in a Manager dict or list is read back by any
# number of readers, any number of times, after its maker dropped it.

def _use_stored(d, i):
    with d["lock"]:
        d["q"].put(i)
        d["inner"][i] = d["inner"]["a"]


def test_objects_stored_in_containers_are_read_many_times(mp, fork_ctx):
    m = mp.Manager()
    d = m.dict()
    d["lock"], d["q"], d["inner"] = m.Lock(), m.Queue(), m.dict()
    d["inner"]["a"] = 1
    assert d["inner"]["a"] == 1 and d["inner"]["a"] == 1, "a second read works too"
    procs = [start(fork_ctx, _use_stored, d, i) for i in range(3)]
    finish(*procs)
    q = d["q"]
    assert sorted(q.get(timeout=TIMEOUT) for _ in range(3)) == [0, 1, 2]
    assert dict(d["inner"].items()) == {"a": 1, 0: 1, 1: 1, 2: 1}


def test_nested_lists_outlive_their_temporaries(mp):
    import gc
    m = mp.Manager()
    outer = m.list([m.list(range(3)) for _ in range(3)])
    gc.collect()  # the inner lists' own handles are gone
    assert [inner[:] for inner in outer] == [[0, 1, 2]] * 3


@shmq_only
def test_object_of_a_heap_the_receiver_never_had(mp):
    """A spawned child makes a Lock in its own heap and sends it; the parent,
    which never had that heap, fetches it from the child."""
    ctx = mp.get_context("spawn")
    q, done = ctx.Queue(), ctx.Event()
    p = start(ctx, _make_and_send_lock, q, done)
    tag, lock = q.get(timeout=TIMEOUT)
    assert tag == "lock" and lock.acquire(timeout=TIMEOUT)
    lock.release()
    done.set()
    finish(p)


def _make_and_send_lock(q, done):
    import shmq
    q.put(("lock", shmq.Lock()))
    done.wait(TIMEOUT)


def test_dict_keeps_insertion_order(mp):
    """As a dict does: setting a present key keeps its place, deleting and
    setting it again moves it to the end; popitem takes the last."""
    m = mp.Manager()
    d = m.dict()
    keys = [66, 67, 69, 68, 65, "b", "a", (1, 2)]
    for k in keys:
        d[k] = 0
    assert list(d) == keys and list(d.keys()) == keys
    d[69] = "again"
    del d[67]
    d[67] = "back"
    want = [66, 69, 68, 65, "b", "a", (1, 2), 67]
    assert list(d) == want and [k for k, _ in d.items()] == want
    assert d.popitem() == (67, "back")
    assert str(d) == str(dict.fromkeys(want[:-1], 0) | {69: "again"})


def test_iterators_see_changes_as_builtin_ones_do(mp):
    """A dict iterator raises RuntimeError once the dict changed size; a list
    iterator goes index by index and sees later stores."""
    m = mp.Manager()
    d = m.dict({i: chr(i) for i in range(65, 70)})
    it = iter(d)
    assert list(it) == list(range(65, 70)) and list(it) == []
    it = iter(d)
    d.clear()
    with pytest.raises(RuntimeError):
        next(it)
    lst = m.list(range(5))
    it = iter(lst)
    assert next(it) == 0
    lst[1] = 100
    assert next(it) == 100
    del lst[2:]
    assert list(it) == []
