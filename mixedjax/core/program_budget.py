"""Keep a long session's compiled programs within the kernel's limit on memory mappings.

XLA's CPU backend loads every kernel of a compiled program as its own object, with its own
code, read-only and data pages: a fit's program maps about 2,000 regions (measured here,
jaxlib 0.10). Linux caps the regions of a process at ``vm.max_map_count`` (65,530 by
default), and JAX keeps every program it compiled or loaded from the persistent cache alive
in its in-memory caches. A process that builds a few dozen distinct programs (a long
notebook session, a test run) therefore reaches the cap, and the next program fails inside
LLVM with "Unable to allocate section memory", which aborts the process. Size classes
(:mod:`mixedjax.design.sizeclass`) make such sessions rare; this module makes them safe.

Each time JAX is about to build an executable (compile it or load it from disk), a
listener compares the process's mappings with the cap. Above :data:`HIGH_WATER` of it,
:func:`release_programs_if_needed` (called by mixedjax's compiled kernels before they run,
never inside a compilation) drops JAX's in-memory caches, which unmaps the programs no
caller holds; later calls load them again from the persistent cache. Where
``/proc/self/maps`` does not exist (not Linux) nothing is done.
"""

import gc
import threading
from pathlib import Path

import jax

#: Fraction of ``vm.max_map_count`` above which the in-memory program caches are dropped.
#: A program adds up to a few thousand regions and one call may build several.
HIGH_WATER = 0.6

_MAPS = Path("/proc/self/maps")
_LIMIT = Path("/proc/sys/vm/max_map_count")
_state = {"pressure": False, "releases": 0}
_lock = threading.Lock()


def memory_map_usage() -> tuple[int, int] | None:
    """``(regions mapped by this process, the kernel's cap)``, or ``None`` where unknown.

    Example:
        >>> usage = memory_map_usage()
        >>> usage is None or 0 < usage[0] < usage[1]
        True
    """
    try:
        used = _MAPS.read_bytes().count(b"\n")
        limit = int(_LIMIT.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return used, limit


def _before_build(event: str, value: float, **kwargs) -> None:
    """JAX's scalar event at the start of every compilation or cache load."""
    if event != "/jax/core/compile/backend_compile_duration" or _state["pressure"]:
        return
    usage = memory_map_usage()
    if usage is not None and usage[0] > HIGH_WATER * usage[1]:
        _state["pressure"] = True


def release_programs_if_needed() -> bool:
    """Drop JAX's in-memory program caches if the mappings passed :data:`HIGH_WATER`
    (checked at each build); returns whether it did. Cheap when there is no pressure.

    Example:
        >>> release_programs_if_needed()
        False
    """
    if not _state["pressure"]:
        return False
    with _lock:
        if not _state["pressure"]:
            return False
        jax.clear_caches()
        gc.collect()  # the executables go with their last Python references
        _state["pressure"] = False
        _state["releases"] += 1
    return True


def releases() -> int:
    """How many times this process dropped its program caches (for tests and reports)."""
    return _state["releases"]


jax.monitoring.register_scalar_listener(_before_build)
