"""Progress bars (on/off rules, text rendering) and the optimiser trace of ``fit(verbose=True)``."""

import io
import re

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.core import progress as progress_module
from mixedjax.core.progress import Progress, TextBar, progress, progress_enabled, set_progress


class _TTY(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture(autouse=True)
def _reset_default():
    yield
    set_progress(None)


def test_off_by_default_under_pytest(capsys):
    with progress(total=5, desc="work") as bar:
        for _ in range(5):
            bar.update()
    assert bar.n == 5 and not bar.enabled
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""


def test_automatic_choice_follows_the_stream(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("MIXEDJAX_PROGRESS", raising=False)
    assert progress_enabled(None, _TTY()) is True
    assert progress_enabled(None, io.StringIO()) is False  # a pipe or log file
    monkeypatch.setenv("MIXEDJAX_PROGRESS", "0")
    assert progress_enabled(None, _TTY()) is False
    monkeypatch.setenv("MIXEDJAX_PROGRESS", "1")
    assert progress_enabled(None, io.StringIO()) is True
    set_progress(False)
    assert progress_enabled(None, _TTY()) is False
    assert progress_enabled(True, io.StringIO()) is True
    assert not progress_module.in_notebook()


def test_text_bar_output():
    out = io.StringIO()
    items = list(progress(range(4), desc="chunks", enabled=True, file=out))
    assert items == [0, 1, 2, 3]
    text = out.getvalue()
    frames = [f for f in text.split("\r") if f]
    assert frames[0].startswith("chunks:   0%|" + "-" * 24 + "| 0/4")
    assert frames[-1].startswith("chunks: 100%|" + "#" * 24 + "| 4/4") and text.endswith("\n")


def test_text_bar_unknown_total_and_rate_limit():
    out = io.StringIO()
    bar = TextBar(desc="rows", file=out, min_interval=3600.0)
    for _ in range(100):
        bar.update(10)
    bar.close()
    frames = [f for f in out.getvalue().split("\r") if f]
    assert len(frames) == 2  # the first draw and the final one; the rest were throttled
    assert frames[-1].startswith("rows: 1000 done [")


def test_bad_arguments():
    with pytest.raises(ValueError, match="total"):
        Progress(total=-1, enabled=False)
    with pytest.raises(TypeError, match="iterable"):
        iter(Progress(total=2, enabled=False)).__next__()
    with pytest.raises(TypeError, match="enabled"):
        set_progress("yes")


_LINE = re.compile(r"^(start|iter|newton)\s+(\d+)\s+objective\s+(\S+)\s+scaled gradient (\S+)")


def test_fit_verbose_prints_trace(capsys):
    df = mixedjax.datasets.load("dyestuff")
    model = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
    quiet = model.fit()
    assert capsys.readouterr().out == ""
    loud = model.fit(verbose=True)
    out = capsys.readouterr().out
    np.testing.assert_array_equal(loud.theta, quiet.theta)
    trace = [m.groups() for m in map(_LINE.match, out.splitlines()) if m]
    stages = [t[0] for t in trace]
    assert stages[0] == "start" and "iter" in stages
    iters = [int(t[1]) for t in trace if t[0] == "iter"]
    assert iters == list(range(1, loud.optim.n_iter + 1))
    objectives = [float(t[2]) for t in trace]  # rejected Newton steps repeat the value
    assert all(b <= a + 1e-9 for a, b in zip(objectives, objectives[1:], strict=False))
    offset = float(re.search(r"add (\S+) for the original data", out).group(1))
    assert float(trace[-1][2]) + offset == pytest.approx(-2 * loud.llf, rel=1e-9)
    assert "result          converged" in out  # the OptSummary follows the trace
    assert out.index("start") < out.index("optimizer")


# ------------------------------------------------------------------ bars of long operations
def _final_frame(err: str) -> str:
    """The last redraw of a text bar (frames are separated by carriage returns)."""
    return [f for f in err.replace("\n", "\r").split("\r") if f.strip()][-1]


@pytest.fixture(scope="module")
def dyestuff_fit():
    df = mixedjax.datasets.load("dyestuff")
    return mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_bootstrap_progress_per_block(dyestuff_fit, capsys, monkeypatch):
    from mixedjax.inference import bootstrap

    quiet = dyestuff_fit.parametric_bootstrap(6, seed=3)  # one block, silent by default
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(bootstrap, "BOOTSTRAP_BLOCK", 4)  # two blocks, the last padded
    loud = dyestuff_fit.parametric_bootstrap(6, seed=3, progress=True)
    err = capsys.readouterr().err
    assert _final_frame(err).startswith("bootstrap: 100%|" + "#" * 24 + "| 6/6 replicates")
    assert err.count("\n") == 1  # one bar, closed once
    # blocking changes nothing: the same replicates refitted in other batches
    np.testing.assert_allclose(loud.replicates, quiet.replicates, rtol=1e-7, atol=1e-9)
    np.testing.assert_array_equal(loud.converged, quiet.converged)


def test_profile_progress_per_parameter(dyestuff_fit, capsys):
    quiet = dyestuff_fit.conf_int(method="profile")
    assert capsys.readouterr() == ("", "")
    loud = dyestuff_fit.conf_int(method="profile", progress=True)
    err = capsys.readouterr().err
    frame = _final_frame(err)
    assert frame.startswith("profile CIs (") and "100%" in frame
    assert "3/3 parameters" in frame  # sd of Batch, sigma, intercept
    pd.testing.assert_frame_equal(loud, quiet)


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_fit_many_and_fit_models_progress(dyestuff_fit, capsys, monkeypatch):
    from mixedjax.batch import kernels as batch

    model = dyestuff_fit.model
    monkeypatch.setattr(batch, "STREAM_SLOTS", 2)  # 4 responses through 2 slots
    Y = model.endog[:, None] * np.array([1.0, 2.0, 0.5, 3.0])
    quiet = model.fit_many(Y)
    assert capsys.readouterr() == ("", "")
    loud = model.fit_many(Y, progress=True)
    frame = _final_frame(capsys.readouterr().err)
    assert frame.startswith("fit_many: 100%|") and "| 4/4 fits [" in frame
    np.testing.assert_array_equal(loud.llf, quiet.llf)
    np.testing.assert_allclose(loud.llf[0], dyestuff_fit.llf, rtol=1e-10)
    mixedjax.fit_models([model, model], progress=True)
    assert "fit_models: 100%" in _final_frame(capsys.readouterr().err)


def test_set_progress_turns_every_bar_on(dyestuff_fit, capsys):
    set_progress(True)
    dyestuff_fit.parametric_bootstrap(6, seed=3)
    assert "bootstrap: 100%" in capsys.readouterr().err
    set_progress(False)
    dyestuff_fit.parametric_bootstrap(6, seed=3, progress=None)
    assert capsys.readouterr() == ("", "")


def test_notebook_bar_without_tqdm_writes_text_to_stdout(capsys, monkeypatch):
    """In a Jupyter kernel the bar goes to stdout (the cell's output); without tqdm and
    ipywidgets it is the text bar, whose carriage returns the notebook front end honours."""
    import builtins

    real_import = builtins.__import__

    def no_widgets(name, *args, **kwargs):
        if name in ("tqdm", "tqdm.notebook", "ipywidgets"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(progress_module, "in_notebook", lambda: True)
    monkeypatch.setattr(builtins, "__import__", no_widgets)
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    monkeypatch.delenv("MIXEDJAX_PROGRESS", raising=False)
    with progress(total=2, desc="fits", unit="fits") as bar:
        assert bar.enabled  # automatic choice: on in a notebook
        bar.update(2)
    out, err = capsys.readouterr()
    assert err == "" and _final_frame(out).startswith("fits: 100%|" + "#" * 24 + "| 2/2 fits")
