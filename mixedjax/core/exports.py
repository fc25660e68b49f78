"""A disk cache of traced programs: a new process skips tracing as well as compiling.

JAX's persistent cache stores compiled executables, but every new process still traces and
lowers a function before it can look one up. For a fit's program that is most of a warm
start: measured on 2 idle cores, sleepstudy's program traces in 1.2 s, lowers in 0.3 s and
loads from the persistent cache in 0.6 s. Here the lowered program itself
(:func:`jax.export.export`: StableHLO plus its input and output trees) is stored next to
the persistent cache, one file per function, static arguments and input shapes. A later
process unpickles it and calls it through ``jax.jit(exported.call)``, whose tracing and
lowering are trivial and whose compilation the persistent cache serves.

The key of an entry is a SHA-256 of the function's name, its static arguments, the input
tree, shapes and dtypes, the compiler options, the versions of JAX and jaxlib, the default
backend, ``jax_enable_x64`` and the bytes of every mixedjax source file, so any change of
the code or the environment misses (old entries are simply never read again; at most
:data:`MAX_ENTRIES` are kept). Entries are written atomically. Any failure to export, write
or read falls back to the ordinary ``jit`` path. The cache is on where mixedjax's persistent
cache is (:func:`mixedjax.core.compilation.enable_compilation_cache`) and off with it;
``MIXEDJAX_NO_EXPORT=1`` turns this part off alone.
"""

import contextlib
import dataclasses
import functools
import hashlib
import os
import pickle
import tempfile
from pathlib import Path

import jax
import jaxlib

#: Entries kept (oldest evicted first).
MAX_ENTRIES = 256

_state: dict = {"dir": None}
_wrappers: dict[str, tuple[str, object]] = {}
_failed: set[str] = set()


def set_export_dir(path: Path | None) -> None:
    """Store exported programs under ``path`` (``None``: off). Called by
    :func:`~mixedjax.core.compilation.enable_compilation_cache` and
    :func:`~mixedjax.core.compilation.disable_compilation_cache`."""
    if os.environ.get("MIXEDJAX_NO_EXPORT", "").strip().lower() in ("1", "true", "yes"):
        path = None
    if path is not None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError:
            path = None
    _state["dir"] = None if path is None else Path(path)
    _wrappers.clear()


def export_dir() -> Path | None:
    """The directory in use, or ``None`` when exports are off."""
    return _state["dir"]


@functools.cache
def _source_fingerprint() -> str:
    """SHA-256 of every mixedjax source file (a code change invalidates every entry)."""
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _key(name: str, static: dict, dynamic: tuple, compiler_options) -> str:
    leaves, tree = jax.tree_util.tree_flatten(dynamic)
    avals = [(getattr(x, "shape", ()), str(getattr(x, "dtype", type(x)))) for x in leaves]
    parts = (
        name,
        sorted((k, repr(v)) for k, v in static.items()),
        str(tree),
        avals,
        sorted((compiler_options or {}).items()),
        jax.__version__,
        jaxlib.__version__,
        jax.default_backend(),
        bool(jax.config.jax_enable_x64),
        _source_fingerprint(),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:40]


def call_exported(name: str, fun, static: dict, dynamic: tuple, compiler_options=None):
    """``fun(*dynamic, **static)`` through a stored export of it, if exports are on.

    Returns ``(True, out)``, or ``(False, None)`` when the caller should use its ordinary
    ``jit`` (exports off, or this program could not be exported or read).

    Example:
        >>> import numpy as np
        >>> done, out = call_exported("doc", lambda x, power: x**power, {"power": 2}, (np.ones(2),))
        >>> out.tolist() if done else [1.0, 1.0]  # the same either way
        [1.0, 1.0]
    """
    directory = _state["dir"]
    if directory is None:
        return False, None
    key = _key(name, static, dynamic, compiler_options)
    if key in _failed:
        return False, None
    entry = _wrappers.get(key)
    if entry is None:
        try:
            wrapper = _load_or_export(directory, key, fun, static, dynamic, compiler_options)
        except Exception:  # a cache: any trouble means the ordinary path
            _failed.add(key)
            return False, None
        entry = _wrappers[key] = (name, wrapper)
    return True, entry[1](*dynamic)


def _load_or_export(directory: Path, key: str, fun, static, dynamic, compiler_options):
    path = directory / f"{key}.pkl"
    exported = None
    if path.exists():
        with contextlib.suppress(Exception):  # unreadable: export again and overwrite
            exported = pickle.loads(path.read_bytes())
    if exported is None:
        bound = jax.jit(functools.partial(fun, **static))
        exported = jax.export.export(bound)(*dynamic)
        # the VJP closure is not picklable (and not needed: nothing differentiates this)
        write_atomically(path, pickle.dumps(dataclasses.replace(exported, _get_vjp=None)))
        _evict(directory)
    return jax.jit(exported.call, compiler_options=compiler_options)


def wrappers_cache_size(name: str) -> int:
    """Executables this process compiled for the exported programs of ``name``."""
    return sum(w._cache_size() for n, w in _wrappers.values() if n == name)


def clear_wrappers(name: str) -> None:
    """Forget this process's exported programs of ``name`` (read again from disk)."""
    for key in [k for k, (n, _) in _wrappers.items() if n == name]:
        del _wrappers[key]


def write_atomically(path: Path, data: bytes, prefix: str = ".mixedjax-partial-") -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it into place
    (``os.replace`` is atomic on POSIX and Windows): readers see all of it or nothing."""
    fd, partial = tempfile.mkstemp(dir=path.parent, prefix=prefix)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(partial, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(partial)
        raise


def _evict(directory: Path) -> None:
    entries = sorted(directory.glob("*.pkl"), key=lambda p: p.stat().st_mtime)
    for old in entries[:-MAX_ENTRIES]:
        with contextlib.suppress(OSError):
            old.unlink()
