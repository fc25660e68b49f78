"""Compiled-code reuse: shape buckets (in memory) and JAX's persistent compilation cache.

In one process, JAX caches each jitted kernel per static configuration (structure, REML/ML,
optimiser) and array shapes. :class:`~mixedjax.MixedLM` pads the group axis to
:func:`~mixedjax.model.bucket_size` (8, 12, 16, 24, 32, 48, ...), so a new data set whose
number of groups falls in the same bucket (and with the same numbers of fixed and random
effects) reuses the compiled optimiser: only the first fit of a bucket compiles.

Across processes, :func:`enable_compilation_cache` turns on JAX's persistent cache, so a new
Python process loads the compiled fit from disk instead of compiling it again (compilation
takes seconds; loading, milliseconds).
"""

import os
from pathlib import Path

import jax


def default_cache_dir() -> Path:
    """``$MIXEDJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/mixedjax/jax`` (``~/.cache/...``)."""
    if os.environ.get("MIXEDJAX_CACHE_DIR"):
        return Path(os.environ["MIXEDJAX_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mixedjax" / "jax"


def enable_compilation_cache(path: str | os.PathLike | None = None, min_compile_secs=0.5) -> Path:
    """Store compiled kernels on disk under ``path`` and reuse them in later processes.

    Sets JAX's ``jax_compilation_cache_dir`` (this affects every jitted function of the
    process, not only mixedjax's) and caches every compilation that took at least
    ``min_compile_secs`` seconds. Call it once, before the first fit. Returns the
    directory.

    Example:
        >>> import tempfile, mixedjax
        >>> path = mixedjax.enable_compilation_cache(tempfile.mkdtemp())  # doctest: +SKIP
        >>> path.is_dir()  # doctest: +SKIP
        True
    """
    path = Path(default_cache_dir() if path is None else path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    if float(min_compile_secs) < 0:
        raise ValueError(f"min_compile_secs must be >= 0, got {min_compile_secs!r}")
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", float(min_compile_secs))
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


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
):
    """``jax.jit(fun)`` with two compiled variants chosen by the size of the data.

    The argument ``data_arg`` (a :class:`~mixedjax.data.GroupedData`) decides: with at most
    ``quick_up_to`` groups (default :data:`QUICK_COMPILE_GROUPS`; ``math.inf`` for kernels
    evaluated once or twice per fit, whose run time never repays a slower compilation) the
    call goes to a variant compiled with
    :data:`QUICK_COMPILE_OPTIONS` (fast to compile; a first fit in a fresh process is mostly
    compilation), otherwise to a fully optimised one (fast to run). Inside another ``jit``
    the optimised variant is inlined (compiler options belong to the outermost ``jit``).
    The returned function keeps ``fun``'s docstring and offers ``lower``, ``clear_cache``
    and ``_cache_size`` as jitted functions do.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> from mixedjax.likelihood import profiled_deviance
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
        if data.ZtZ.shape[-3] > quick_up_to or _tracing((args, kwargs)):
            return optimised  # inside another jit the outer compilation decides
        return quick

    @functools.wraps(fun)
    def call(*args, **kwargs):
        return choose(args, kwargs)(*args, **kwargs)

    call.lower = lambda *args, **kwargs: choose(args, kwargs).lower(*args, **kwargs)
    call._cache_size = lambda: quick._cache_size() + optimised._cache_size()

    def clear_cache():
        quick.clear_cache()
        optimised.clear_cache()

    call.clear_cache = clear_cache
    return call


def _tracing(tree) -> bool:
    """Whether any leaf of ``tree`` is a JAX tracer (we are inside a transformation)."""
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(tree))
