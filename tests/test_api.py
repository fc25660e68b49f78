"""statsmodels-compatible API: parameters, fit keywords, free masks, variance components, CLI."""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

import mixedjax
from mixedjax import MixedLMParams
from mixedjax.cli import main as cli_main

sm_mixed = pytest.importorskip("statsmodels.regression.mixed_linear_model")


@pytest.fixture(scope="module")
def sleep():
    return mixedjax.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def sleep_model(sleep):
    return mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", sleep, groups="Subject", re_formula="~Days"
    )


@pytest.fixture(scope="module")
def sleep_fit(sleep_model):
    return sleep_model.fit()


@pytest.mark.parametrize("use_sqrt", [True, False])
@pytest.mark.parametrize("has_fe", [True, False])
def test_params_packing_matches_statsmodels(use_sqrt, has_fe):
    rng = np.random.default_rng(0)
    A = rng.normal(size=(3, 3))
    cov = A @ A.T
    fe, vc = rng.normal(size=2), rng.uniform(0.1, 2, size=2)
    ours = MixedLMParams.from_components(fe, cov_re=cov, vcomp=vc)
    theirs = sm_mixed.MixedLMParams.from_components(fe, cov_re=cov, vcomp=vc)
    packed = ours.get_packed(use_sqrt=use_sqrt, has_fe=has_fe)
    np.testing.assert_allclose(
        packed, theirs.get_packed(use_sqrt=use_sqrt, has_fe=has_fe), rtol=1e-12
    )
    back = MixedLMParams.from_packed(packed, 2, 3, use_sqrt, has_fe)
    np.testing.assert_allclose(back.cov_re, cov, rtol=1e-12)
    np.testing.assert_allclose(back.vcomp, vc, rtol=1e-12)
    if has_fe:
        np.testing.assert_allclose(back.fe_params, fe)
    sqrt = np.linalg.cholesky(cov)
    via_sqrt = MixedLMParams.from_components(cov_re_sqrt=sqrt)
    np.testing.assert_allclose(via_sqrt.cov_re, cov, rtol=1e-12)


def test_results_layout_matches_statsmodels(sleep, sleep_fit):
    sm = sm_mixed.MixedLM.from_formula(
        "Reaction ~ Days", sleep, groups="Subject", re_formula="~Days"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sm_res = sm.fit(reml=True)
    assert list(sleep_fit.params.index) == list(sm_res.params.index)
    # statsmodels stops at a looser tolerance; both are the same optimum to ~1e-4
    np.testing.assert_allclose(sleep_fit.params.to_numpy(), sm_res.params.to_numpy(), rtol=1e-3)
    assert sleep_fit.llf >= sm_res.llf - 1e-8
    np.testing.assert_allclose(sleep_fit.cov_re.to_numpy(), sm_res.cov_re.to_numpy(), rtol=2e-3)
    np.testing.assert_allclose(sleep_fit.bse_fe.to_numpy(), sm_res.bse_fe.to_numpy(), rtol=1e-3)
    for g in ("308", "372"):
        np.testing.assert_allclose(
            sleep_fit.random_effects[g].to_numpy(),
            sm_res.random_effects[g].to_numpy(),
            rtol=2e-3,
            atol=1e-3,
        )
    np.testing.assert_allclose(sleep_fit.fittedvalues, sm_res.fittedvalues, rtol=1e-4)
    np.testing.assert_allclose(sleep_fit.resid, sm_res.resid, rtol=1e-3, atol=1e-2)
    # statsmodels' loglike at its own packed params equals ours at the same params
    packed = sm_res.params.to_numpy()
    p = MixedLMParams.from_packed(packed, 2, 2, use_sqrt=False, has_fe=True)
    p_sm = sm_mixed.MixedLMParams.from_packed(packed, 2, 2, use_sqrt=False, has_fe=True)
    np.testing.assert_allclose(sleep_fit.model.loglike(p), sm.loglike(p_sm), rtol=1e-10)


def test_fit_keywords(sleep_model, sleep_fit):
    res = sleep_model.fit(
        niter_sa=0, do_cg=True, full_output=True, disp=False, method=["bfgs", "lbfgs"]
    )
    np.testing.assert_allclose(res.llf, sleep_fit.llf, rtol=1e-10)
    assert res.optim.method == "bfgs"
    newton = sleep_model.fit(method="newton")
    np.testing.assert_allclose(newton.llf, sleep_fit.llf, rtol=1e-12)
    np.testing.assert_allclose(newton.theta, sleep_fit.theta, rtol=1e-5)
    assert newton.optim.n_newton == newton.optim.n_iter > 0
    with pytest.raises(TypeError, match="bogus"):
        sleep_model.fit(bogus=1)
    with pytest.raises(ValueError, match="method"):
        sleep_model.fit(method="nelder-mead")
    with pytest.raises(TypeError, match="cov_pen"):
        sleep_model.fit(cov_pen=object())


def test_start_params_round_trip(sleep_model, sleep_fit):
    res = sleep_model.fit(start_params=sleep_fit.params.to_numpy()[2:] * 0 + [1.0, 0.0, 1.0])
    np.testing.assert_allclose(res.llf, sleep_fit.llf, rtol=1e-10)
    start = MixedLMParams.from_components(cov_re=np.diag([2.0, 0.5]))
    res = sleep_model.fit(start_params=start)
    np.testing.assert_allclose(res.llf, sleep_fit.llf, rtol=1e-10)


def test_free_mask_gives_diagonal_covariance(sleep, sleep_model):
    free = MixedLMParams.from_components(cov_re=np.eye(2))
    res = sleep_model.fit(free=free)
    assert res.cov_re.iloc[0, 1] == 0.0
    # same as the uncorrelated model written with a variance component (lme4 reference)
    from conftest import load_reference

    ref, _ = load_reference("sleepstudy_uncorrelated_reml")
    np.testing.assert_allclose(-2 * res.llf, ref["objective"], rtol=1e-8)
    assert res.df_modelwc == 2 + 2 + 1
    packed_free = sleep_model.fit(free=np.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(packed_free.llf, res.llf, rtol=1e-10)


def test_exog_vc_forms_agree(sleep):
    """vc_formula, the dict form and a VCSpec-like object give the same fit."""
    from conftest import load_reference

    ref, data = load_reference("pastes_reml")
    by_formula = mixedjax.MixedLM.from_formula(
        "strength ~ 1", data, groups="batch", re_formula="~1", vc_formula={"cask": "0 + C(cask)"}
    ).fit()
    assert -2 * by_formula.llf <= ref["objective"] * (1 + 1e-6)
    labels = sorted(data["batch"].unique())
    mats = {b: pd.get_dummies(data.loc[data.batch == b, "cask"]).to_numpy(float) for b in labels}
    y = data["strength"].to_numpy()
    X = np.ones((len(y), 1))
    by_dict = mixedjax.MixedLM(y, X, data["batch"], exog_re=X, exog_vc={"cask": mats}).fit()
    np.testing.assert_allclose(by_dict.llf, by_formula.llf, rtol=1e-10)

    class Spec:
        names = ["cask"]
        colnames = [[["a", "b", "c"]] * len(labels)]
        mats_ = [[mats[b] for b in labels]]

        @property
        def mats(self):
            return self.mats_

    by_spec = mixedjax.MixedLM(y, X, data["batch"], exog_re=X, exog_vc=Spec()).fit()
    np.testing.assert_allclose(by_spec.llf, by_formula.llf, rtol=1e-10)
    np.testing.assert_allclose(by_formula.vcomp, [ref["random"][0]["cov"][0][0]], rtol=1e-3)


def test_immutable_results(sleep_fit):
    with pytest.raises(AttributeError, match="immutable"):
        sleep_fit.scale = 1.0


def test_summary_text(sleep_fit):
    text = str(sleep_fit.summary())
    for token in (
        "Mixed Linear Model Regression Results",
        "Reaction",
        "REML",
        "654.9410",
        "-871.8141",
        "Subject x Days Cov",
        "251.405",
    ):
        assert token in text
    vc = sleep_fit.varcorr()
    assert list(vc.columns) == ["group", "var1", "var2", "vcov", "sdcor"]
    assert vc.iloc[-1]["group"] == "Residual"
    np.testing.assert_allclose(
        vc["vcov"],
        [612.089748274669, 35.0716623442135, 9.60433547475486, 654.941040681969],
        rtol=1e-4,
    )


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_cli_demo_and_errors(capsys, tmp_path):
    assert cli_main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "Mixed Linear Model Regression Results" in out and "-871.8141" in out
    csv = tmp_path / "d.csv"
    mixedjax.datasets.load("dyestuff").to_csv(csv, index=False)
    assert cli_main(["fit", str(csv), "--formula", "Yield ~ 1", "--groups", "Batch", "--ml"]) == 0
    assert "ML" in capsys.readouterr().out
    assert cli_main(["fit", str(csv), "--formula", "Yield ~ 1", "--groups", "Nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Nope" in err
    assert cli_main(["fit", str(csv), "--formula", "Yield ~ zz", "--groups", "Batch"]) == 2
    proc = subprocess.run([sys.executable, "-m", "mixedjax", "fit"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_import_is_light_and_the_api_loads_on_first_use():
    """``import mixedjax`` loads JAX and its configuration only (issue "Interactive speed",
    deliverable 4); pandas, formulaic and the model code load with the first public name.
    Checked in a fresh process by what is imported, not by a clock."""
    from conftest import checkout_env

    code = (
        "import sys, mixedjax, jax\n"
        "names = ('pandas', 'formulaic', 'mixedjax.model.mixedlm')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "assert jax.config.jax_enable_x64\n"
        "assert mixedjax.MixedLM.__module__ == 'mixedjax.model.mixedlm'\n"
        "assert 'pandas' in sys.modules and 'MixedLM' in dir(mixedjax)\n"
        "from mixedjax import mixedlm, penalties\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
        env=checkout_env(),
    )  # fmt: skip
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        mixedjax.nothing  # noqa: B018
