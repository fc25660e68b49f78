"""The host never waits for ever on a compiled computation (``mixedjax.core.watchdog``).

A stand-in for a ``jax.Array`` that is never ready plays the deadlocked runtime: the wait
must end with ``ComputationStalled`` after the stall limit. While the process is busy (a
thread burning CPU, as XLA's workers do while computing) nothing times out. The slow test
runs jaxlib's own deadlock (``docs/jaxlib_lapack_deadlock.md``) in a subprocess: on an
affected jaxlib the watchdog must turn it into an error; on others it simply finishes.
"""

import subprocess
import sys
import threading
import time
from pathlib import Path

import jax.numpy as jnp
import pytest
from conftest import checkout_env

from mixedjax.core import watchdog


class NeverReady:
    def is_ready(self):
        return False


class ReadyAfter:
    def __init__(self, seconds):
        self.at = time.monotonic() + seconds

    def is_ready(self):
        return time.monotonic() >= self.at


def test_ready_arrays_pass_through():
    x = jnp.arange(4.0).sum()
    assert watchdog.wait_ready(x, "sum") is x


def test_a_computation_that_never_progresses_raises():
    start = time.monotonic()
    with pytest.raises(watchdog.ComputationStalled, match="no progress for 1 s"):
        watchdog.wait_ready([NeverReady()], "test program", limit=1.0)
    assert time.monotonic() - start < 10


def test_a_busy_process_is_not_stalled():
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            sum(i * i for i in range(1000))

    worker = threading.Thread(target=burn)
    worker.start()
    try:  # ready after 2.5 s, with a 1 s idle limit: the CPU use keeps it alive
        watchdog.wait_ready([ReadyAfter(2.5)], "busy program", limit=1.0)
    finally:
        stop.set()
        worker.join()


def test_limit_from_environment(monkeypatch):
    monkeypatch.setenv("MIXEDJAX_STALL_SECONDS", "0")
    assert watchdog.stall_seconds() == 0.0  # off: wait_ready blocks as jax does
    monkeypatch.setenv("MIXEDJAX_STALL_SECONDS", "soon")
    with pytest.raises(ValueError, match="MIXEDJAX_STALL_SECONDS"):
        watchdog.stall_seconds()
    monkeypatch.setenv("MIXEDJAX_STALL_SECONDS", "-1")
    with pytest.raises(ValueError, match=">= 0"):
        watchdog.stall_seconds()


@pytest.mark.slow
def test_jaxlib_deadlock_becomes_an_error():
    script = Path(__file__).parent / "scripts" / "lapack_deadlock.py"
    out = subprocess.run(
        [sys.executable, str(script), "--watchdog", "10"],
        capture_output=True, text=True, timeout=300, env=checkout_env(),
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] in ("finished", "stalled"), out.stdout
