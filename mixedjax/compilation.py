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
