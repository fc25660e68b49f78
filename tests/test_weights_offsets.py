"""Prior weights and offsets (lme4's semantics: ``ε_j ~ N(0, σ²/w_j)``, ``η = Xβ + Zb + o``).

Oracles: the lme4 references with weights and an offset (tests/reference/make_reference.R:
lmerTest's Satterthwaite df at 1e-4 relative, as test_inference_ddf); the
dense multivariate-normal log-density with ``V = ZGZ' + σ² W⁻¹`` (1e-9 relative); and
invariances that hold exactly in the model (an offset is a shift of the response; constant
weights rescale σ² only; fit_many's members equal the single fits), compared at 1e-7.
The estimates themselves are checked against lme4 in test_structure_reference.
"""

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax

SLEEP = "Reaction ~ Days + (Days | Subject)"
SLEEP_OFFSET = "Reaction ~ Days + offset(100 * log(expo)) + (Days | Subject)"


@pytest.fixture(scope="module")
def sleep_weighted():
    return load_reference("sleepstudy_weights_reml")[1]


@pytest.fixture(scope="module")
def weighted_fit(sleep_weighted):
    return mixedjax.mixedlm(SLEEP, sleep_weighted, weights="w").fit()


@pytest.mark.parametrize("case", ["sleepstudy_weights_reml", "penicillin_weights_reml"])
def test_satterthwaite_df_match_lmertest(case):
    ref, data = load_reference(case)
    res = mixedjax.mixedlm(ref["lme4_formula"], data, weights=ref["weights"]).fit()
    np.testing.assert_allclose(
        res.coef_table(ddf="satterthwaite")["df"], ref["fixed"]["df_satterthwaite"], rtol=1e-4
    )


def test_kenward_roger_uses_the_weighted_covariance(sleep_weighted):
    """pbkrtest is no oracle here: its Σ has the residual block σ² I whatever the weights
    (``pbkrtest:::.get_SigmaG`` builds it from ``sparseMatrix(1:n, 1:n, x = 1)``), so its
    df for the weighted reference (30.19, 23.45) belong to another model. With constant
    weights ``c`` the model is the unweighted one (σ² → cσ²), so KR must not move; a KR
    that ignored the weights would see a residual variance c times too large."""
    plain = mixedjax.mixedlm(SLEEP, sleep_weighted).fit()
    heavy = mixedjax.mixedlm(SLEEP, sleep_weighted.assign(c=4.0), weights="c").fit()
    a, b = plain.coef_table(ddf="kenward-roger"), heavy.coef_table(ddf="kenward-roger")
    np.testing.assert_allclose(b["df"], a["df"], rtol=1e-6)
    np.testing.assert_allclose(b["se"], a["se"], rtol=1e-6)


def _dense_loglik(y, X, Z, beta, G, scale, weights, offset):
    """log N(y; Xβ + o, Z G Z' + σ² W⁻¹) by a dense Cholesky (small problems only)."""
    V = Z @ G @ Z.T + np.diag(scale / weights)
    L = np.linalg.cholesky(V)
    r = np.linalg.solve(L, y - X @ beta - offset)
    return -0.5 * (len(y) * np.log(2 * np.pi) + 2 * np.log(np.diag(L)).sum() + r @ r)


def test_ml_loglik_is_the_dense_density(sleep_weighted):
    data = sleep_weighted
    res = mixedjax.mixedlm(SLEEP_OFFSET, data, weights="w").fit(reml=False)
    m = res.model
    n = len(data)
    G_block = res.cov_re.to_numpy()
    codes = m.group_codes
    Z = np.zeros((n, 2 * m.n_groups))
    Z[np.arange(n), 2 * codes] = 1.0
    Z[np.arange(n), 2 * codes + 1] = data["Days"].to_numpy()
    G = np.kron(np.eye(m.n_groups), G_block)
    offset = 100 * np.log(data["expo"].to_numpy())
    dense = _dense_loglik(
        data["Reaction"].to_numpy(), m.exog, Z, res.fe_params.to_numpy(), G, res.scale,
        data["w"].to_numpy(), offset,
    )  # fmt: skip
    np.testing.assert_allclose(res.llf, dense, rtol=1e-9)


def test_offset_is_a_shift_of_the_response(sleep_weighted):
    data = sleep_weighted
    offset = 100 * np.log(data["expo"].to_numpy())
    with_offset = mixedjax.mixedlm(SLEEP_OFFSET, data, weights="w").fit()
    shifted = mixedjax.mixedlm(SLEEP, data.assign(Reaction=data["Reaction"] - offset), weights="w")
    shifted = shifted.fit()
    for a, b in [
        (with_offset.llf, shifted.llf),
        (with_offset.fe_params, shifted.fe_params),
        (with_offset.theta, shifted.theta),
        (with_offset.bse_fe, shifted.bse_fe),
        (with_offset.resid, shifted.resid),
    ]:
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(with_offset.fittedvalues, shifted.fittedvalues + offset, rtol=1e-9)
    # the same offset given as an array and as a column name
    by_column = mixedjax.mixedlm(SLEEP, data.assign(o=offset), weights="w", offset="o").fit()
    np.testing.assert_allclose(by_column.llf, with_offset.llf, rtol=1e-10)


def test_constant_weights_only_rescale_sigma(sleep_weighted):
    plain = mixedjax.mixedlm(SLEEP, sleep_weighted).fit()
    heavy = mixedjax.mixedlm(SLEEP, sleep_weighted.assign(c=4.0), weights="c").fit()
    np.testing.assert_allclose(heavy.llf, plain.llf, rtol=1e-9)
    np.testing.assert_allclose(heavy.scale, 4.0 * plain.scale, rtol=1e-7)
    np.testing.assert_allclose(heavy.cov_re.to_numpy(), plain.cov_re.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(heavy.fe_params, plain.fe_params, rtol=1e-9)


def test_array_api_and_statsmodels_formula_agree(sleep_weighted, weighted_fit):
    data = sleep_weighted
    X = np.column_stack([np.ones(len(data)), data["Days"]])
    arrays = mixedjax.MixedLM(
        data["Reaction"], X, data["Subject"], exog_re=X, weights=data["w"].to_numpy()
    ).fit()
    np.testing.assert_allclose(arrays.llf, weighted_fit.llf, rtol=1e-10)
    np.testing.assert_array_equal(arrays.model.weights, data["w"].to_numpy())
    assert weighted_fit.model.offset is None


def test_predict_includes_the_offset(sleep_weighted):
    data = sleep_weighted
    res = mixedjax.mixedlm(SLEEP_OFFSET, data, weights="w").fit()
    np.testing.assert_allclose(res.predict(), res.fittedvalues, rtol=1e-12)
    new = data.iloc[:5]
    np.testing.assert_allclose(res.predict(new), res.fittedvalues[:5], rtol=1e-12)
    population = res.predict(new, include_random=False)
    expected = res.model.exog[:5] @ res.fe_params.to_numpy() + 100 * np.log(new["expo"])
    np.testing.assert_allclose(population, expected, rtol=1e-12)
    arrays = {"exog": res.model.exog[:5], "exog_re": res.model.exog_re[:5]}
    arrays["groups"] = new["Subject"].to_numpy()
    with pytest.raises(ValueError, match="offset"):
        res.predict(include_random=False, **arrays)
    by_array = res.predict(include_random=False, offset=100 * np.log(new["expo"]), **arrays)
    np.testing.assert_allclose(by_array, expected, rtol=1e-12)


def test_prediction_interval_uses_the_row_weights(weighted_fit):
    frame = weighted_fit.predict(interval="prediction")
    confidence = weighted_fit.predict(interval="confidence")
    w = weighted_fit.model.weights
    np.testing.assert_allclose(
        frame["se"] ** 2 - confidence["se"] ** 2, weighted_fit.scale / w, rtol=1e-9
    )


def test_simulate_follows_the_weights(weighted_fit):
    res = weighted_fit
    sims = res.simulate(4000, seed=3)
    m = res.model
    mean = m.exog @ res.fe_params.to_numpy()
    Z = m.exog_re
    expected_var = np.einsum("ni,ij,nj->n", Z, res.cov_re.to_numpy(), Z) + res.scale / m.weights
    # 4,000 draws: the sample mean is within 5 standard errors of Xβ on every row, and the
    # sample variances agree with z'Gz + σ²/w to 3% on average (its standard error is ~2.2%
    # per row; the mean over 180 rows is much tighter)
    se = np.sqrt(expected_var / sims.shape[0])
    assert np.all(np.abs(sims.mean(axis=0) - mean) < 5 * se)
    ratio = sims.var(axis=0) / expected_var
    assert abs(ratio.mean() - 1) < 0.03
    # the residual part scales with 1/w: heavy rows vary less than light ones of a subject
    light, heavy = m.weights < 0.8, m.weights > 3.0
    assert sims.var(axis=0)[heavy].mean() < sims.var(axis=0)[light].mean()


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_fit_many_members_equal_single_weighted_fits(sleep_weighted):
    data = sleep_weighted
    model = mixedjax.mixedlm(SLEEP_OFFSET, data, weights="w")
    y = data["Reaction"].to_numpy()
    Y = np.column_stack([y, y + 3 * data["Days"].to_numpy()])
    batch = model.fit_many(Y)
    single = [
        model.fit(),
        mixedjax.mixedlm(SLEEP_OFFSET, data.assign(Reaction=Y[:, 1]), weights="w").fit(),
    ]
    for k, fit in enumerate(single):
        np.testing.assert_allclose(batch.llf[k], fit.llf, rtol=1e-8)
        np.testing.assert_allclose(np.asarray(batch.fe_params)[k], fit.fe_params, rtol=1e-6)
        np.testing.assert_allclose(batch.result(k).llf, fit.llf, rtol=1e-8)


@pytest.mark.slow  # heavy (>10 s on 2 cores): the default suite stays under 5 minutes
def test_bootstrap_with_weights(weighted_fit):
    boot = weighted_fit.parametric_bootstrap(40, seed=2)
    assert boot.converged.all()
    est = boot.estimate
    spread = boot.replicates.std()
    assert np.all(np.abs(boot.replicates.median() - est) < 3 * spread)
    assert np.all(spread > 0)


def test_crossed_weights_predict_and_simulate():
    ref, data = load_reference("penicillin_weights_reml")
    res = mixedjax.mixedlm(ref["lme4_formula"], data, weights="w").fit()
    assert res.model.weights is not None
    np.testing.assert_allclose(res.resid, data["diameter"] - res.fittedvalues)


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "weights, error, match",
    [
        (-1.0, ValueError, "weights must be positive"),
        (0.0, ValueError, "weights must be positive"),
        (np.nan, ValueError, "weights"),
        ("short", ValueError, "weights has 179 entries"),
        ("text", TypeError, "weights"),
        ("nocolumn", ValueError, "weights: column 'nocolumn' is not in data"),
    ],
)
def test_bad_weights_are_named(sleep_weighted, weights, error, match):
    data = sleep_weighted.copy()
    w = data["w"].to_numpy().copy()
    if weights == "short":
        arg = w[:-1]
    elif weights == "text":
        arg = "label"
        data["label"] = "a"
    elif weights == "nocolumn":
        arg = "nocolumn"
    else:
        w[7] = weights
        arg = w
    with pytest.raises(error, match=match):
        mixedjax.mixedlm(SLEEP, data, weights=arg)


def test_missing_weights_are_dropped_and_counted(sleep_weighted):
    data = sleep_weighted.copy()
    data.loc[[3, 50], "w"] = np.nan
    with pytest.warns(UserWarning, match="dropped 2 of 180 rows.*weights: 2"):
        model = mixedjax.mixedlm(SLEEP, data, weights="w", missing="drop")
    assert model.nobs == 178
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = mixedjax.mixedlm(SLEEP, data.dropna(), weights="w")
    np.testing.assert_allclose(model.fit().llf, ref.fit().llf, rtol=1e-10)


def test_bad_offset_is_named(sleep_weighted):
    with pytest.raises(ValueError, match=r"offset\(log\(nothere\)\)"):
        mixedjax.mixedlm("Reaction ~ Days + offset(log(nothere)) + (1 | Subject)", sleep_weighted)
    with pytest.raises(ValueError, match="offset has shape"):
        mixedjax.mixedlm(SLEEP, sleep_weighted, offset=np.zeros(3))


def test_offset_in_newdata_needs_its_columns(sleep_weighted):
    res = mixedjax.mixedlm(SLEEP_OFFSET, sleep_weighted).fit()
    with pytest.raises(ValueError, match="offset"):
        res.predict(pd.DataFrame({"Days": [1.0], "Subject": ["308"]}))
