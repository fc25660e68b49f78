"""``fit_many`` for GLMMs: ``k`` responses on one design in one program (vmapped for one
grouping factor, mapped for several).

Oracle: the single fit of each response (``MixedGLM`` with the same design, weights and
offset): fixed effects, their SEs, ``θ`` and the log-likelihood to 1e-9 (the same Newton
path, evaluated side by side).
"""

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax.batch.glmm import fit_many_glmm


@pytest.fixture(scope="module")
def cbpp():
    from pathlib import Path

    df = pd.read_csv(Path(__file__).parent / "reference" / "data" / "cbpp.csv")
    return df.astype({"period": str, "herd": str})


@pytest.mark.slow  # ~20 s: the batched GLMM program
def test_fit_many_equals_single_fits(cbpp):
    model = mixedjax.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    rng = np.random.default_rng(0)
    size = cbpp["size"].to_numpy()
    Y = pd.DataFrame({
        "observed": model.endog,
        "sim_a": rng.binomial(size, 0.2) / size,
        "sim_b": rng.binomial(size, 0.1) / size,
    })  # fmt: skip
    batch = model.fit_many(Y)
    assert batch.names == ["observed", "sim_a", "sim_b"] and batch.converged.all()
    for j, name in enumerate(batch.names):
        single = mixedjax.MixedGLM(
            Y[name].to_numpy(), model.exog, cbpp["herd"], family="binomial",
            weights=model.weights,
        ).fit()  # fmt: skip
        np.testing.assert_allclose(
            batch.fe_params.loc[name], single.fe_params, rtol=1e-9, atol=1e-12
        )
        np.testing.assert_allclose(batch.bse_fe.loc[name], single.bse_fe, rtol=1e-7)
        np.testing.assert_allclose(batch.theta[j], single.theta, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(batch.llf[j], single.llf, rtol=1e-12)


def test_fit_many_checks_each_response(cbpp):
    model = mixedjax.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    Y = np.column_stack([model.endog, model.endog + 2.0])  # proportions above 1
    with pytest.raises(ValueError, match=r"Y\['y1'\]"):
        fit_many_glmm(model, Y)
    with pytest.raises(ValueError, match="n = 56 rows"):
        fit_many_glmm(model, Y[:10])


@pytest.mark.slow  # ~15 s: the several-factor fit program, mapped over the responses
def test_fit_many_on_crossed_factors_equals_single_fits():
    """Several grouping factors: the mapped fits equal the single fit (1e-9), and flipping a
    binary response (y -> 1 - y) flips the signs of the logit fixed effects and leaves θ and
    the log-likelihood unchanged (an exact symmetry of the logit link)."""
    from pathlib import Path

    df = pd.read_csv(Path(__file__).parent / "reference" / "data" / "crossed_binary.csv")
    model = mixedjax.glmer("y ~ x + (1 | subj) + (1 | item)", df, family="binomial")
    assert model.engine == "crossed"
    single = model.fit()
    batch = model.fit_many(np.column_stack([model.endog, 1.0 - model.endog]))
    assert batch.converged.all()
    np.testing.assert_allclose(batch.llf, [single.llf, single.llf], rtol=1e-9)
    np.testing.assert_allclose(batch.fe_params.iloc[0], single.fe_params, rtol=1e-7)
    np.testing.assert_allclose(batch.fe_params.iloc[1], -single.fe_params, rtol=1e-7)
    np.testing.assert_allclose(batch.bse_fe.iloc[0], single.bse_fe, rtol=1e-7)
    np.testing.assert_allclose(batch.theta, [single.theta, single.theta], rtol=1e-6)
