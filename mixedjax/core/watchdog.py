"""Waiting for a compiled computation without waiting for ever.

JAX dispatches a jitted computation asynchronously; the host blocks when it first reads the
result (``np.asarray``, ``float``). If the XLA runtime deadlocks (jaxlib 0.10.0-0.10.2 do so
with batched LAPACK calls on the CPU: ``docs/jaxlib_lapack_deadlock.md``), that read never
returns and a notebook kernel hangs at 0% CPU with no message.

:func:`wait_ready` is the host side of every fit's first read. It polls the arrays'
``is_ready()`` and watches the CPU time of the whole process (every thread's, XLA's workers
included): a computation on the CPU that is still running uses CPU time, a deadlocked one
does not. After :func:`stall_seconds` of waiting with (almost) no CPU time used, it raises
:class:`ComputationStalled` with the diagnosis instead of hanging. Nothing is timed out
while the computation makes progress, however long it takes, and arrays on an accelerator
are waited for as usual (a GPU kernel keeps the host idle by design).
"""

import os
import time

import jax

from mixedjax.core.program_budget import release_programs_if_needed

#: Default seconds of waiting at (almost) zero CPU before a computation counts as stalled.
DEFAULT_STALL_SECONDS = 60.0
#: Fraction of one core below which the process counts as idle.
IDLE_CPU_FRACTION = 0.01


class ComputationStalled(RuntimeError):
    """A compiled computation made no progress (no CPU time used) for too long."""


def stall_seconds() -> float:
    """``$MIXEDJAX_STALL_SECONDS`` (``0`` turns the watchdog off), else
    :data:`DEFAULT_STALL_SECONDS`."""
    raw = os.environ.get("MIXEDJAX_STALL_SECONDS")
    if raw is None or raw.strip() == "":
        return DEFAULT_STALL_SECONDS
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(
            f"MIXEDJAX_STALL_SECONDS must be a number of seconds, got {raw!r}"
        ) from None
    if value < 0:
        raise ValueError(f"MIXEDJAX_STALL_SECONDS must be >= 0, got {raw!r}")
    return value


def _jaxlib_version() -> str:
    try:
        import jaxlib

        return jaxlib.__version__
    except (ImportError, AttributeError):
        return "(unknown version)"


def _on_cpu(leaf) -> bool:
    try:
        return all(d.platform == "cpu" for d in leaf.devices())
    except AttributeError:  # not a jax.Array (e.g. a test double): treat as host work
        return True


def wait_ready(tree, what: str = "computation", limit: float | None = None):
    """Block until every array in ``tree`` is ready and return ``tree``.

    Raises :class:`ComputationStalled` if, while waiting, the process used less than
    :data:`IDLE_CPU_FRACTION` of a core for ``limit`` seconds in a row (default
    :func:`stall_seconds`; ``0`` waits without a watchdog).

    Example:
        >>> import jax.numpy as jnp
        >>> float(wait_ready(jnp.ones(3).sum(), "a sum"))
        3.0
    """
    release_programs_if_needed()  # between calls: never inside a compilation
    limit = stall_seconds() if limit is None else float(limit)
    leaves = [leaf for leaf in jax.tree_util.tree_leaves(tree) if hasattr(leaf, "is_ready")]
    if limit <= 0 or not all(_on_cpu(leaf) for leaf in leaves):
        return jax.block_until_ready(tree)
    pause = 1e-4
    window_start, cpu_start = time.monotonic(), time.process_time()
    while not all(leaf.is_ready() for leaf in leaves):
        time.sleep(pause)
        pause = min(2 * pause, 0.05)
        now, cpu = time.monotonic(), time.process_time()
        if cpu - cpu_start > IDLE_CPU_FRACTION * (now - window_start):
            window_start, cpu_start = now, cpu  # progress: start a new idle window
        elif now - window_start >= limit:
            raise ComputationStalled(
                f"mixedjax: the compiled {what} has made no progress for {limit:.0f} s "
                "(the process used no CPU time while waiting for it): the XLA runtime is "
                f"deadlocked. jaxlib {_jaxlib_version()} is installed; jaxlib 0.10.0-0.10.2 "
                "deadlock this way when batched LAPACK calls run concurrently on the CPU "
                "(see docs/jaxlib_lapack_deadlock.md). "
                "The stuck threads cannot be recovered: restart the Python process, and "
                "install another jaxlib (pip install 'jaxlib!=0.10.0,!=0.10.1,!=0.10.2'). "
                "Set MIXEDJAX_STALL_SECONDS to change this limit (0 turns it off)."
            )
    return tree
