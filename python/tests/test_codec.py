"""The message codec: objects come back equal and of the same type whatever
path they take (bytes, str and int raw, built-in containers through marshal,
the rest pickled), and bytes that no shmq object wrote raise an exception,
never crash the interpreter."""
import math
import random

import pytest
from conftest import shmq_only


class Tagged(int):
    """An int subclass: must keep its class (marshal refuses it: pickle)."""


ROUND_TRIP = [
    0, -1, 2**63 - 1, -2**63, 2**64, -10**40, True, False, None, 0.0, -0.0, 1.5, math.inf,
    1j, "", "héllo ✓", "\udcff", b"", b"\x00\xff" * 100, bytearray(b"ab"),
    (), (1, "a", 2.5), [1, [2, [3]]], {"k": (1, 2), 3: None}, {1, 2}, frozenset({"x"}),
    Tagged(7), (Tagged(1), 2), {"shared": [1]},
]


@shmq_only
@pytest.mark.parametrize("obj", ROUND_TRIP, ids=repr)
def test_round_trip_keeps_value_and_type(mp, obj):
    from shmq import _shmq
    back = _shmq.decode(_shmq.encode(obj))
    assert back == obj and type(back) is type(obj)
    if isinstance(obj, tuple):
        assert [type(x) for x in back] == [type(x) for x in obj]


@shmq_only
def test_nan_and_shared_references(mp):
    from shmq import _shmq
    assert math.isnan(_shmq.decode(_shmq.encode(float("nan"))))
    inner = [1, 2]
    back = _shmq.decode(_shmq.encode([inner, inner]))
    assert back[0] is back[1], "one object twice stays one object"


@shmq_only
def test_foreign_bytes_raise_and_never_crash(mp):
    """Random messages under each tag, and valid ones cut or flipped. (A
    marshalled container whose length field is garbage may cost seconds of
    CPU before it is refused: random payloads skip that tag.)"""
    from shmq import _shmq
    rng = random.Random(15)
    valid = [_shmq.encode(o) for o in ROUND_TRIP]
    raised = 0
    for i in range(6000):
        if i % 2:
            msg = bytes([rng.choice([1, 2, 3, 5, rng.randrange(5, 128)])]) + rng.randbytes(
                rng.randrange(40))
        else:
            msg = bytearray(rng.choice(valid))
            if msg and rng.random() < 0.5:
                msg[rng.randrange(len(msg))] ^= 1 << rng.randrange(8)
            else:
                msg = msg[:rng.randrange(len(msg) + 1)]
            if msg[:1] == b"\x80":
                continue  # a pickle is trusted code, as with multiprocessing
        try:
            _shmq.decode(bytes(msg))
        except Exception:
            raised += 1
    assert raised > 1500, "garbage was taken as messages"


@shmq_only
def test_a_foreign_message_through_a_pipe_raises_and_the_pipe_goes_on(mp):
    a, b = mp.Pipe()
    a.send_bytes(b"\x05no such big object")
    with pytest.raises(ValueError):
        b.recv()
    a.send(("still", 1))
    assert b.recv() == ("still", 1)
