"""Shared fixtures of the Python suite.

The suite runs against the built package `shmq` (PYTHONPATH=<build>/python).
SHMQ_TEST_TARGET=multiprocessing runs the same tests against the standard
library instead: that is how a test is checked to test multiprocessing's
documented behaviour, not ours. Tests of shmq's extras (put_many, iteration
to end of data, OwnerDiedWarning, TaskLostError, asyncio) skip there.
"""
import importlib
import os

import pytest

TARGET = os.environ.get("SHMQ_TEST_TARGET", "shmq")
mpmod = importlib.import_module(TARGET)
IS_SHMQ = TARGET == "shmq"
METHODS = ["fork", "spawn", "forkserver"]

shmq_only = pytest.mark.skipif(not IS_SHMQ, reason="an shmq extra, not in multiprocessing")


@pytest.fixture(scope="session")
def mp():
    """The module under test: shmq, or multiprocessing."""
    return mpmod


@pytest.fixture(params=METHODS)
def ctx(request):
    """A context of each start method (spawn and forkserver start slowly:
    use this fixture for what must pass to a child, `fork_ctx` elsewhere)."""
    return mpmod.get_context(request.param)


@pytest.fixture
def fork_ctx():
    return mpmod.get_context("fork")


@pytest.fixture
def reap_children(mp):
    """Kill whatever child a failed test left behind (test files that start
    children use it for every test: pytestmark = usefixtures("reap_children"))."""
    yield
    for p in mp.active_children():
        p.kill()
        p.join(5)
