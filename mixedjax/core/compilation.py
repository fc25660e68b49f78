"""Compiled-code reuse: size classes (in memory) and JAX's persistent compilation cache.

In one process, JAX caches each jitted kernel per static configuration and array shapes.
:meth:`~mixedjax.MixedLM.fit` runs one program per *size class*
(:mod:`mixedjax.design.sizeclass`: padded groups, fixed and random effects; the covariance
pattern and REML/ML as data), so only the first fit of a class compiles.

Across processes, JAX's persistent cache (on by default from ``import mixedjax``:
:func:`configure_default_cache`, :func:`enable_compilation_cache`,
:func:`disable_compilation_cache`) lets a new Python process load the compiled fit from disk
instead of compiling it again (compilation takes seconds; loading, milliseconds).
"""

import contextlib
import os
import sys
import time
from pathlib import Path

import jax
import numpy as np

from mixedjax.core import exports
from mixedjax.core.exports import write_atomically
from mixedjax.core.program_budget import release_programs_if_needed
from mixedjax.core.watchdog import wait_ready

#: Upper bound of the on-disk cache (least recently used entries are evicted beyond it).
DEFAULT_CACHE_BYTES = 2 * 1024**3
#: Compilations that take at least this long are written to the cache.
DEFAULT_MIN_COMPILE_SECS = 0.2


def default_cache_dir() -> Path:
    """``$MIXEDJAX_CACHE_DIR``, else the platform's user cache directory plus
    ``mixedjax/jax``: ``$XDG_CACHE_HOME`` or ``~/.cache`` on Linux, ``~/Library/Caches`` on
    macOS, ``%LOCALAPPDATA%`` on Windows.

    Example:
        >>> default_cache_dir().parts[-2:]
        ('mixedjax', 'jax')
    """
    if os.environ.get("MIXEDJAX_CACHE_DIR"):
        return Path(os.environ["MIXEDJAX_CACHE_DIR"])
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mixedjax" / "jax"


def enable_compilation_cache(
    path: str | os.PathLike | None = None,
    min_compile_secs: float = DEFAULT_MIN_COMPILE_SECS,
    max_bytes: int = DEFAULT_CACHE_BYTES,
) -> Path:
    """Store compiled kernels on disk under ``path`` and reuse them in later processes.

    mixedjax calls this on import (see :func:`configure_default_cache`); call it yourself to
    choose another directory or limits. Sets JAX's ``jax_compilation_cache_dir`` (this
    affects every jitted function of the process, not only mixedjax's), caches every
    compilation that took at least ``min_compile_secs`` seconds, and keeps the directory
    under ``max_bytes`` by evicting the least recently used entries (``-1``: no bound).
    JAX guards reads, writes and eviction with a file lock, so concurrent processes
    (pytest-xdist workers, notebook kernels) can share one directory, and mixedjax makes
    each entry appear atomically (:func:`make_cache_writes_atomic`). Returns the
    directory.

    Example:
        >>> import tempfile, mixedjax
        >>> path = mixedjax.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
        >>> path.is_dir()  # doctest: +SKIP
        True
    """
    path = Path(default_cache_dir() if path is None else path).expanduser()
    if float(min_compile_secs) < 0:
        raise ValueError(f"min_compile_secs must be >= 0, got {min_compile_secs!r}")
    if not (isinstance(max_bytes, int) and (max_bytes > 0 or max_bytes == -1)):
        raise ValueError(f"max_bytes must be a positive integer or -1, got {max_bytes!r}")
    path.mkdir(parents=True, exist_ok=True)
    make_cache_writes_atomic()
    _remove_stale_partial_entries(path)
    _reset_jax_cache()
    jax.config.update("jax_enable_compilation_cache", True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", int(max_bytes))
    exports.set_export_dir(path.with_name(path.name + "-exports"))
    return path


#: Prefix of an entry being written (:func:`make_cache_writes_atomic`).
PARTIAL_PREFIX = ".mixedjax-partial-"


def make_cache_writes_atomic() -> bool:
    """Make each new entry of JAX's on-disk cache appear whole or not at all.

    JAX's ``LRUCache.put`` writes an entry straight to its final name. A process killed
    during that write (an interrupted kernel, a test run stopped by a timeout) leaves a
    truncated file, which every later process reads, fails to decompress (a warning) and
    compiles again. (The aborts once blamed on such files came from the cap on memory
    mappings: :mod:`mixedjax.core.program_budget`.) The replacement writes the bytes to a
    temporary file in the same
    directory and renames it into place (``os.replace``, atomic on POSIX and Windows), with
    the same lock, size check, eviction and access-time record as JAX's. It only replaces a
    ``put`` whose cache has the attributes it relies on (JAX's private ``lru_cache``
    module); otherwise JAX's own method runs. Returns whether writes are atomic now.

    Example:
        >>> from mixedjax.core.compilation import make_cache_writes_atomic
        >>> make_cache_writes_atomic()
        True
    """
    try:
        from jax._src import lru_cache
    except ImportError:
        return False
    cls = getattr(lru_cache, "LRUCache", None)
    suffixes = (
        getattr(lru_cache, "_CACHE_SUFFIX", None),
        getattr(lru_cache, "_ATIME_SUFFIX", None),
    )
    if cls is None or None in suffixes or not hasattr(cls, "_evict_if_needed"):
        return False
    if getattr(cls.put, "_mixedjax_atomic", False):
        return True
    jax_put = cls.put
    cache_suffix, atime_suffix = suffixes

    def put(self, key: str, value: bytes) -> None:
        needed = ("path", "eviction_enabled", "lock", "lock_timeout_secs", "max_size")
        if not all(hasattr(self, a) for a in needed) or not isinstance(self.path, Path):
            return jax_put(self, key, value)  # e.g. a remote (non-local) cache
        if not key or (self.eviction_enabled and len(value) > self.max_size):
            return jax_put(self, key, value)  # JAX raises or warns and skips
        final = self.path / f"{key}{cache_suffix}"
        if self.eviction_enabled:
            self.lock.acquire(timeout=self.lock_timeout_secs)
        try:
            if final.exists():
                return None
            self._evict_if_needed(additional_size=len(value))
            write_atomically(final, value, PARTIAL_PREFIX)
            if self.eviction_enabled:
                stamp = time.time_ns().to_bytes(8, "little")
                write_atomically(self.path / f"{key}{atime_suffix}", stamp, PARTIAL_PREFIX)
        finally:
            if self.eviction_enabled:
                self.lock.release()
        return None

    put._mixedjax_atomic = True
    cls.put = put
    return True


def _remove_stale_partial_entries(path: Path, older_than_secs: float = 3600.0) -> None:
    """Delete what killed writers left behind (never read: JAX only loads final names)."""
    now = time.time()
    for partial in path.glob(f"{PARTIAL_PREFIX}*"):
        with contextlib.suppress(OSError):
            if now - partial.stat().st_mtime > older_than_secs:
                partial.unlink()


def disable_compilation_cache() -> None:
    """Stop reading and writing the on-disk cache in this process (also for compilations
    already configured by :func:`enable_compilation_cache`). The environment variable
    ``MIXEDJAX_NO_CACHE=1`` keeps mixedjax from turning it on at import.

    Example:
        >>> import mixedjax
        >>> mixedjax.disable_compilation_cache()  # doctest: +SKIP
    """
    _reset_jax_cache()
    jax.config.update("jax_enable_compilation_cache", False)
    exports.set_export_dir(None)


def configure_default_cache() -> Path | None:
    """Turn the persistent cache on at import, unless told otherwise.

    Does nothing when ``MIXEDJAX_NO_CACHE`` is ``1``/``true``, when the process already
    configured a JAX cache directory of its own (``jax_compilation_cache_dir``), or when
    the directory cannot be created (a read-only home: mixedjax then only compiles in
    memory). Returns the directory in use, or ``None``.
    """
    if os.environ.get("MIXEDJAX_NO_CACHE", "").strip().lower() in ("1", "true", "yes"):
        return None
    if jax.config.jax_compilation_cache_dir:
        return None
    try:
        return enable_compilation_cache()
    except OSError:
        return None


def _reset_jax_cache() -> None:
    """Forget JAX's cache decision of this process (it is taken once, at the first
    compilation), so that a new directory or an on/off switch takes effect."""
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


#: Problems with at most this many (padded) groups are compile-bound: their kernels are
#: compiled with :data:`QUICK_COMPILE_OPTIONS` (see :func:`tiered_jit`).
QUICK_COMPILE_GROUPS = 4096
#: XLA's backend (LLVM) optimisation off. Measured (2 cores, fresh process): compiling the
#: optimiser at 1,000 groups takes 2.4 s instead of 3.3 s; the compiled fit runs 2-2.5x
#: slower (8 -> 20 ms at 1,000 groups, 27 -> 44 ms at 10,000), so only small problems,
#: where that costs a few milliseconds, use it. (Compilation is slowest for small arrays:
#: at 100,000 groups the optimised build compiles in 2.2 s.)
QUICK_COMPILE_OPTIONS = {"xla_backend_optimization_level": 0}


def tiered_jit(
    fun,
    *,
    static_argnames: tuple[str, ...],
    data_arg: str = "data",
    quick_up_to: float = QUICK_COMPILE_GROUPS,
    export_name: str | None = None,
):
    """``jax.jit(fun)`` with two compiled variants chosen by the size of the data.

    The argument ``data_arg`` (a :class:`~mixedjax.design.groups.GroupedData`) decides: with at most
    ``quick_up_to`` groups (default :data:`QUICK_COMPILE_GROUPS`; ``math.inf`` for kernels
    evaluated once or twice per fit, whose run time never repays a slower compilation) the
    call goes to a variant compiled with
    :data:`QUICK_COMPILE_OPTIONS` (fast to compile; a first fit in a fresh process is mostly
    compilation), otherwise to a fully optimised one (fast to run). Inside another ``jit``
    the optimised variant is inlined (compiler options belong to the outermost ``jit``).
    The returned function keeps ``fun``'s docstring and offers ``lower``, ``clear_cache``
    and ``_cache_size`` as jitted functions do. Called from the host it returns once the
    result is ready, through :func:`mixedjax.core.watchdog.wait_ready` (a deadlocked runtime
    raises instead of hanging).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> from mixedjax.engines.onefactor import profiled_deviance
        >>> dev = tiered_jit(lambda theta, data, structure: profiled_deviance(
        ...     theta, data, structure, True), static_argnames=("structure",))
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> round(float(dev(jnp.array([0.848323767332081]), m.data, structure=m.structure)), 6)
        319.654277
    """
    import functools
    import inspect

    signature = inspect.signature(fun)
    quick = jax.jit(fun, static_argnames=static_argnames, compiler_options=QUICK_COMPILE_OPTIONS)
    optimised = jax.jit(fun, static_argnames=static_argnames)

    def choose(args, kwargs):
        data = signature.bind_partial(*args, **kwargs).arguments[data_arg]
        ZtZ = getattr(data, "ZtZ", None)  # other engines' data: always the optimised build
        if ZtZ is None or ZtZ.shape[-3] > quick_up_to or _tracing((args, kwargs)):
            return optimised  # inside another jit the outer compilation decides
        return quick

    def exported(args, kwargs):
        """``(True, out)`` through :mod:`mixedjax.core.exports`, else ``(False, None)``."""
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        static = {k: v for k, v in bound.arguments.items() if k in static_argnames}
        if static.get("verbose"):  # host callbacks: not exportable
            return False, None
        dynamic = tuple(v for k, v in bound.arguments.items() if k not in static_argnames)
        options = QUICK_COMPILE_OPTIONS if choose(args, kwargs) is quick else None
        return exports.call_exported(export_name, fun, static, dynamic, options)

    @functools.wraps(fun)
    def call(*args, **kwargs):
        tracing = _tracing((args, kwargs))
        if not tracing:
            release_programs_if_needed()  # a long session stays under the mapping cap
        done = False
        if export_name is not None and not tracing:
            done, out = exported(args, kwargs)
        if not done:
            out = choose(args, kwargs)(*args, **kwargs)
        if _tracing((args, kwargs)):
            return out
        # the host reads the result next: never wait for a deadlocked runtime for ever
        return wait_ready(out, what=f"{fun.__name__} program")

    call.lower = lambda *args, **kwargs: choose(args, kwargs).lower(*args, **kwargs)
    call._cache_size = lambda: (
        quick._cache_size()
        + optimised._cache_size()
        + (exports.wrappers_cache_size(export_name) if export_name else 0)
    )

    def clear_cache():
        quick.clear_cache()
        optimised.clear_cache()
        if export_name:
            exports.clear_wrappers(export_name)

    call.clear_cache = clear_cache
    return call


def on_device(tree):
    """Host arrays (and Python numbers) of a pytree as device arrays.

    ``jax.device_put`` copies without compiling anything; ``jnp.asarray`` of a NumPy array
    compiles a small program per new shape (JAX 0.10), tens of milliseconds each.

    Example:
        >>> import numpy as np
        >>> on_device({"a": np.ones(2), "n": 3.0})["n"].dtype
        dtype('float64')
    """
    return jax.device_put(jax.tree_util.tree_map(np.asarray, tree))


def _tracing(tree) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer (we are inside a transformation)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))
