"""Compiled-code reuse: refits in the same shape bucket do not recompile; the persistent
cache serves a fresh process from disk.

Compilations are counted with the jitted kernels' own cache sizes (``_cache_size()``), which
grow by one per new compilation.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import mixedjax
from mixedjax.fit import estimation, program

ROOT = Path(__file__).parents[1]


def _kernels():
    return {
        "fit_program": program.fit_program._cache_size(),
        "fit_theta": estimation.fit_theta._cache_size(),
        "estimates_at": estimation.estimates_at._cache_size(),
        "deviance": estimation.deviance._cache_size(),
    }


def _subset_model(df, n_subjects, drop_rows=0, formula="Reaction ~ Days"):
    keep = df["Subject"].isin(np.sort(df["Subject"].unique())[:n_subjects])
    sub = df[keep].iloc[drop_rows:]
    return mixedjax.MixedLM.from_formula(formula, sub, groups="Subject", re_formula="~Days")


def test_refit_in_same_size_class_does_not_recompile():
    df = mixedjax.datasets.load("sleepstudy")
    first = _subset_model(df, 17)
    first.fit()
    before = _kernels()
    for n_subjects, drop in [(18, 0), (18, 5), (17, 3), (10, 0), (4, 2)]:  # other groups, rows
        model = _subset_model(df, n_subjects, drop)
        model.fit()
        model.fit(reml=False)
        assert _kernels() == before, (n_subjects, _kernels(), before)
    # Another size class (three fixed effects: padded to four) compiles one program: the
    # counter can move. (Other tests in this process may have compiled that class already:
    # start from a clear cache.)
    program.fit_program.clear_cache()
    _subset_model(df, 10, formula="Reaction ~ Days + I(Days**2)").fit()
    assert _kernels() == dict(before, fit_program=1)


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import mixedjax
    from mixedjax.core.compilation import enable_compilation_cache

    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    path = enable_compilation_cache(sys.argv[1], min_compile_secs=0.0)
    df = mixedjax.datasets.load("dyestuff")
    model = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
    llf = model.fit().llf
    print(json.dumps({"llf": llf, "files": len(list(path.iterdir())),
                      "hits": events.count("/jax/compilation_cache/cache_hits")}))
    """
)


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_persistent_cache_serves_a_new_process(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, str(tmp_path / "cache")],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    cold, warm = runs
    assert cold["files"] > 0
    # The second process finds (nearly) every compilation of the first on disk.
    assert warm["hits"] >= cold["hits"] + cold["files"] // 2, runs
    assert warm["llf"] == cold["llf"]


DEFAULT_CACHE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import mixedjax

    events = []
    jax.monitoring.register_event_listener(lambda name, **kw: events.append(name))
    if len(sys.argv) > 1 and sys.argv[1] == "off":
        mixedjax.disable_compilation_cache()
    df = mixedjax.datasets.load("dyestuff")
    model = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
    llf = model.fit().llf
    print(json.dumps({"llf": llf, "dir": jax.config.jax_compilation_cache_dir,
                      "hits": events.count("/jax/compilation_cache/cache_hits")}))
    """
)


def _run_default_cache(cache_dir, *args, **env_extra):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("MIXEDJAX_NO_CACHE", None)
    env.update(MIXEDJAX_CACHE_DIR=str(cache_dir), **env_extra)
    proc = subprocess.run(
        [sys.executable, "-c", DEFAULT_CACHE_SCRIPT, *args],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_cache_is_on_by_default_and_can_be_turned_off(tmp_path):
    """``import mixedjax`` turns JAX's persistent cache on in ``MIXEDJAX_CACHE_DIR`` (else the
    user's cache directory); a second process loads the fit from it. ``MIXEDJAX_NO_CACHE=1``
    and :func:`mixedjax.disable_compilation_cache` keep the disk out of it."""
    cache = tmp_path / "default"
    cold = _run_default_cache(cache)
    assert cold["dir"] == str(cache) and any(cache.iterdir())
    warm = _run_default_cache(cache)
    assert warm["hits"] > cold["hits"] and warm["llf"] == cold["llf"]

    no_env = tmp_path / "env_off"
    _run_default_cache(no_env, MIXEDJAX_NO_CACHE="1")
    assert not no_env.exists() or not any(no_env.iterdir())
    no_call = tmp_path / "call_off"
    _run_default_cache(no_call, "off")
    assert not any(f.is_file() and f.name != ".lockfile" for f in no_call.rglob("*"))


def test_default_cache_directory_follows_platform(monkeypatch):
    from mixedjax.core.compilation import default_cache_dir

    monkeypatch.delenv("MIXEDJAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "/tmp/xdg-test")
    if sys.platform.startswith("linux"):
        assert default_cache_dir() == Path("/tmp/xdg-test/mixedjax/jax")
    monkeypatch.setenv("MIXEDJAX_CACHE_DIR", "/tmp/elsewhere")
    assert default_cache_dir() == Path("/tmp/elsewhere")


def test_cache_entries_appear_whole_or_not_at_all(tmp_path, monkeypatch):
    """A writer killed in the middle of a cache entry leaves no entry under its final name
    (JAX's own put wrote straight to it, and a truncated entry crashes the reader), only a
    partial file that is removed later; a normal write leaves the entry and no partial."""
    from jax._src import lru_cache

    from mixedjax.core import compilation

    assert compilation.make_cache_writes_atomic()
    cache = lru_cache.LRUCache(str(tmp_path), max_size=1 << 20)
    cache.put("whole", b"x" * 1000)
    assert cache.get("whole") == b"x" * 1000
    assert not list(tmp_path.glob(f"{compilation.PARTIAL_PREFIX}*"))

    def killed(src, dst):  # the process dies between writing and renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(compilation.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        cache.put("torn", b"y" * 1000)
    monkeypatch.undo()
    assert cache.get("torn") is None  # a miss: the next process compiles again
    assert cache.get("whole") == b"x" * 1000
