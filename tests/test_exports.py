"""Stored exports of traced programs (mixedjax.core.exports): a new process neither traces
nor compiles a fit it has seen; the numbers are those of the ordinary jit path."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from conftest import checkout_env

import mixedjax
from mixedjax.core import exports
from mixedjax.fit.program import fit_program


@pytest.fixture
def export_dir(tmp_path):
    previous = exports.export_dir()
    exports.set_export_dir(tmp_path / "exports")
    yield tmp_path / "exports"
    exports.set_export_dir(previous)


def _square(x, power):
    return x**power


def test_an_export_is_written_once_and_read_back(export_dir):
    x = np.arange(3.0)
    done, out = exports.call_exported("square", _square, {"power": 2}, (x,))
    assert done and out.tolist() == [0.0, 1.0, 4.0]
    files = list(export_dir.glob("*.pkl"))
    assert len(files) == 1
    exports.clear_wrappers("square")  # as a new process: read from disk
    done, out = exports.call_exported("square", _square, {"power": 2}, (x + 1,))
    assert done and out.tolist() == [1.0, 4.0, 9.0]
    assert list(export_dir.glob("*.pkl")) == files  # same key: nothing new written
    exports.call_exported("square", _square, {"power": 3}, (x,))  # other static: other key
    exports.call_exported("square", _square, {"power": 2}, (np.arange(4.0),))  # other shape
    assert len(list(export_dir.glob("*.pkl"))) == 3


def test_a_corrupt_entry_is_exported_again(export_dir):
    x = np.arange(3.0)
    exports.call_exported("square", _square, {"power": 2}, (x,))
    (entry,) = export_dir.glob("*.pkl")
    entry.write_bytes(b"not a pickle")
    exports.clear_wrappers("square")
    done, out = exports.call_exported("square", _square, {"power": 2}, (x,))
    assert done and out.tolist() == [0.0, 1.0, 4.0]


def test_exports_off_means_the_ordinary_path():
    previous = exports.export_dir()
    exports.set_export_dir(None)
    try:
        assert exports.call_exported("square", _square, {"power": 2}, (np.ones(2),)) == (
            False,
            None,
        )
    finally:
        exports.set_export_dir(previous)


def test_fit_through_an_export_equals_the_jit_path(export_dir):
    df = mixedjax.datasets.load("sleepstudy")
    model = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", df)
    exported = model.fit()
    assert any(export_dir.glob("*.pkl"))
    exports.set_export_dir(None)
    fit_program.clear_cache()
    direct = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", df).fit()
    np.testing.assert_allclose(exported.theta, direct.theta, rtol=1e-12)
    np.testing.assert_allclose(exported.bse.to_numpy(), direct.bse.to_numpy(), rtol=1e-10)
    assert abs(exported.llf - direct.llf) < 1e-9


SCRIPT = textwrap.dedent(
    """
    import json, jax
    traced = []
    def listen(event, duration, **kw):
        if event.endswith("trace_duration"):
            traced.append(kw.get("fun_name"))
    jax.monitoring.register_event_duration_secs_listener(listen)
    import mixedjax
    df = mixedjax.datasets.load("dyestuff")
    r = mixedjax.mixedlm("Yield ~ 1 + (1 | Batch)", df).fit()
    print(json.dumps({"llf": r.llf, "traced": traced}))
    """
)


@pytest.mark.slow  # two fresh processes, one of them compiling (>10 s on 2 cores)
def test_a_second_process_does_not_trace_the_fit(tmp_path):
    env = checkout_env(MIXEDJAX_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("MIXEDJAX_NO_CACHE", None)
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    first, second = runs
    assert "fit_program" in first["traced"]
    assert "fit_program" not in second["traced"]
    assert second["llf"] == first["llf"]
