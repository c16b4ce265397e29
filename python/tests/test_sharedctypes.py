"""Value, Array, RawValue and RawArray, as multiprocessing documents them: ctypes
objects in shared memory, written by one process and read by another."""
import ctypes
import time

import pytest

from helpers import join_ok, start

pytestmark = pytest.mark.usefixtures("reap_children")


def run(mp, target, *args):
    join_ok(start(mp, target, *args))


class Point(ctypes.Structure):
    _fields_ = [("x", ctypes.c_int), ("y", ctypes.c_double)]


# --- child targets -----------------------------------------------------------

def increment_locked(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def set_value(v, value):
    v.value = value


def set_items(arr, pairs):
    for i, x in pairs:
        arr[i] = x


def set_slice(arr, start_, stop, values):
    arr[start_:stop] = values


def set_point(pt):
    pt.x = 11
    pt.y = -0.5


def set_chars(arr):
    arr.value = b"hi"


def add_to_first_locked(arr, n):
    for _ in range(n):
        with arr.get_lock():
            arr[0] += 1


def write_all(v, arr, raw_v, raw_arr):
    v.value += 1
    arr[0] = -1
    raw_v.value = 2.5
    raw_arr[:] = [7, 8, 9]


# --- Value -------------------------------------------------------------------

def test_value_increments_under_get_lock_reach_total(mp):
    """Value('i') += 1 under get_lock() from 3 processes loses no update."""
    v = mp.Value("i", 0)
    procs = [start(mp, increment_locked, v, 500) for _ in range(3)]
    join_ok(*procs)
    assert v.value == 1500


def test_value_typecodes_and_initial_values(mp):
    """Value(typecode, init) holds the initial value; a child's write is seen."""
    cases = [("i", -7, 2**31 - 1), ("l", 0, -(2**40)), ("d", 1.5, -2.25),
             ("b", -3, 100), ("B", 255, 0), ("q", 2**62, -(2**63)), ("c", b"a", b"z"),
             ("u", "x", "\u00e9")]
    for code, init, new in cases:
        v = mp.Value(code, init)
        assert v.value == init, code
        run(mp, set_value, v, new)
        assert v.value == new, code


def test_value_default_is_zero(mp):
    """Value(typecode) without an initial value is zero."""
    assert mp.Value("i").value == 0
    assert mp.Value("d").value == 0.0
    assert mp.Value(ctypes.c_long).value == 0


def test_value_of_ctypes_type(mp):
    """Value(ctypes type, init) works like the typecode form."""
    v = mp.Value(ctypes.c_double, 3.25)
    run(mp, set_value, v, 6.5)
    assert v.value == 6.5


def test_value_lock_false_is_shared(mp):
    """Value(..., lock=False) is still shared memory, just unsynchronised."""
    v = mp.Value("i", 5, lock=False)
    assert v.value == 5
    run(mp, set_value, v, 42)
    assert v.value == 42


def test_value_with_given_lock(mp):
    """Value(..., lock=Lock()) uses that lock: get_lock() is held while it is."""
    lock = mp.Lock()
    v = mp.Value("i", 0, lock=lock)
    with lock:
        assert v.get_lock().acquire(False) is False
    assert v.get_lock().acquire(False) is True
    v.get_lock().release()


def test_value_default_lock_is_recursive(mp):
    """get_lock() of a Value is an RLock by default: it can be taken twice."""
    v = mp.Value("i", 0)
    with v.get_lock():
        assert v.get_lock().acquire(timeout=1) is True  # a plain Lock would refuse
        v.value = 3
        v.get_lock().release()
    assert v.value == 3
    assert v.get_lock().acquire(False) is True
    v.get_lock().release()


def test_value_lock_excludes_other_processes(mp):
    """While the parent holds get_lock(), a child's locked increments wait."""
    v = mp.Value("i", 0)
    v.get_lock().acquire()
    p = start(mp, increment_locked, v, 10)
    time.sleep(0.2)
    assert v.value == 0
    v.get_lock().release()
    join_ok(p)
    assert v.value == 10


def test_raw_value(mp):
    """RawValue is shared memory without a lock."""
    v = mp.RawValue("d", 1.5)
    assert v.value == 1.5
    run(mp, set_value, v, -4.0)
    assert v.value == -4.0
    w = mp.RawValue(ctypes.c_uint, 3)
    run(mp, set_value, w, 4_000_000_000)
    assert w.value == 4_000_000_000


def test_raw_value_of_structure(mp):
    """RawValue(Structure, *fields) holds a ctypes Structure; field writes are shared."""
    pt = mp.RawValue(Point, 1, 2.5)
    assert (pt.x, pt.y) == (1, 2.5)
    run(mp, set_point, pt)
    assert (pt.x, pt.y) == (11, -0.5)


# --- Array -------------------------------------------------------------------

def test_array_of_size_is_zeroed(mp):
    """Array('i', 10) has 10 zeros; a child's item writes are seen."""
    arr = mp.Array("i", 10)
    assert len(arr) == 10 and arr[:] == [0] * 10
    run(mp, set_items, arr, [(0, 5), (9, -9), (-2, 8)])
    assert arr[:] == [5, 0, 0, 0, 0, 0, 0, 0, 8, -9]
    assert list(arr) == arr[:]


def test_array_from_sequence(mp):
    """Array('d', [1.0, 2.0]) and Array(ctypes.c_int, range(5)) hold those values."""
    d = mp.Array("d", [1.0, 2.0])
    assert len(d) == 2 and d[:] == [1.0, 2.0]
    run(mp, set_items, d, [(1, 0.25)])
    assert d[:] == [1.0, 0.25]
    c = mp.Array(ctypes.c_int, range(5))
    assert c[:] == [0, 1, 2, 3, 4]
    assert c[-1] == 4


def test_array_slicing(mp):
    """Slices read and assign like a list of the same length; a child's slice
    assignment is seen."""
    arr = mp.Array("i", range(10))
    assert arr[2:5] == [2, 3, 4]
    assert arr[::3] == [0, 3, 6, 9]
    assert arr[-3:] == [7, 8, 9]
    arr[0:3] = [10, 11, 12]
    assert arr[:4] == [10, 11, 12, 3]
    run(mp, set_slice, arr, 5, 8, [-5, -6, -7])
    assert arr[:] == [10, 11, 12, 3, 4, -5, -6, -7, 8, 9]


def test_array_bad_index_or_slice_size(mp):
    """An index out of range raises IndexError; a slice assignment of another
    length raises ValueError and changes nothing."""
    arr = mp.Array("i", 3)
    with pytest.raises(IndexError):
        arr[3]
    with pytest.raises(IndexError):
        arr[-4] = 1
    with pytest.raises(ValueError):
        arr[0:2] = [1, 2, 3]
    assert arr[:] == [0, 0, 0]


def test_char_array_value_and_raw(mp):
    """Array('c', b'hello'): .value stops at NUL, .raw is every byte."""
    arr = mp.Array("c", b"hello")
    assert len(arr) == 5
    assert arr.value == b"hello" and arr.raw == b"hello"
    run(mp, set_chars, arr)
    assert arr.value == b"hi"
    assert arr.raw == b"hi\x00lo"


def test_array_lock_and_get_obj(mp):
    """A synchronised Array has get_lock() and get_obj() (the ctypes array)."""
    arr = mp.Array("i", [1, 2, 3])
    with arr.get_lock():
        obj = arr.get_obj()
        assert list(obj) == [1, 2, 3]
        obj[0] = 9
    assert arr[0] == 9


def test_array_lock_false_is_shared(mp):
    """Array(..., lock=False) is shared memory without a lock."""
    arr = mp.Array("i", 4, lock=False)
    run(mp, set_items, arr, [(3, 33)])
    assert arr[:] == [0, 0, 0, 33]


def test_array_increments_under_lock(mp):
    """Several processes adding under the array's lock reach the exact total."""
    arr = mp.Array("i", 2)
    procs = [start(mp, add_to_first_locked, arr, 500) for _ in range(3)]
    join_ok(*procs)
    assert arr[:] == [1500, 0]


def test_raw_array(mp):
    """RawArray(typecode, size or sequence) is shared memory without a lock."""
    arr = mp.RawArray("i", 5)
    assert arr[:] == [0] * 5
    run(mp, set_items, arr, [(2, 22)])
    assert arr[:] == [0, 0, 22, 0, 0]
    dbl = mp.RawArray(ctypes.c_double, [0.5, 1.5])
    run(mp, set_slice, dbl, 0, 2, [2.5, 3.5])
    assert dbl[:] == [2.5, 3.5]
    chars = mp.RawArray("c", b"abc")
    assert chars.raw == b"abc"


def test_shared_ctypes_pass_to_child_under_every_start_method(mp, ctx):
    """Value, Array, RawValue and RawArray given as Process arguments are shared."""
    v = ctx.Value("i", 1)
    arr = ctx.Array("i", [1, 2, 3])
    raw_v = ctx.RawValue("d", 0.0)
    raw_arr = ctx.RawArray("i", 3)
    assert type(v).__module__.partition(".")[0] == mp.__name__
    assert type(arr).__module__.partition(".")[0] == mp.__name__
    join_ok(start(ctx, write_all, v, arr, raw_v, raw_arr), timeout=30)
    assert v.value == 2
    assert arr[:] == [-1, 2, 3]
    assert raw_v.value == 2.5
    assert raw_arr[:] == [7, 8, 9]
