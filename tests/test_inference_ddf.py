"""Satterthwaite and Kenward-Roger df, KR-adjusted SEs and F tests against lmerTest/pbkrtest.

Tolerance: 1e-4 relative (the issue asks 1e-3; lmerTest's own numerical Hessian limits the
agreement to about 1e-6). The default run checks sleepstudy (correlated slopes) and the
singular Dyestuff2; the other reference cases (variance components, a single all-rows
group, 160 groups) run with ``-m slow``. The F-test numbers were computed with R 4.2,
lmerTest 3.1.3, pbkrtest 0.5.2 on the reference data (``contestMD`` / ``contest1D``; the
commands are quoted next to each number).
"""

import numpy as np
import pytest
from inference_helpers import fit_reference

RTOL = 1e-4
DEFAULT = ["sleepstudy_reml", "dyestuff2_reml"]
SLOW = [
    "dyestuff_reml",
    "orthodont_reml",
    "mathachieve_reml",
    "sleepstudy_uncorrelated_reml",
    "pastes_reml",
    "penicillin_reml",
    "sleepstudy_ml",
    "dyestuff_ml",
    "orthodont_ml",
    "pastes_ml",
    "penicillin_ml",
    "sleepstudy_uncorrelated_ml",
    "mathachieve_ml",
]
CASES = DEFAULT + [pytest.param(c, marks=pytest.mark.slow) for c in SLOW]


@pytest.mark.parametrize("case", CASES)
def test_coef_table_matches_lmertest(case):
    ref, _, res = fit_reference(case)
    fixed = ref["fixed"]
    satt = res.coef_table(ddf="satterthwaite")
    np.testing.assert_allclose(satt["df"], fixed["df_satterthwaite"], rtol=RTOL)
    np.testing.assert_allclose(satt["se"], fixed["se"], rtol=1e-3)
    if ref["reml"]:
        kr = res.coef_table(ddf="kenward-roger")
        np.testing.assert_allclose(kr["df"], fixed["df_kenward_roger"], rtol=RTOL)
        np.testing.assert_allclose(kr["se"], fixed["se_kenward_roger"], rtol=RTOL)
    else:
        with pytest.raises(ValueError, match="REML"):
            res.coef_table(ddf="kenward-roger")


def test_coef_table_columns_and_reference_distributions():
    ref, model, res = fit_reference("sleepstudy_reml")
    for ddf in ("satterthwaite", "kenward-roger", "residual", "asymptotic"):
        table = res.coef_table(ddf=ddf)
        assert list(table.columns) == ["estimate", "se", "df", "t", "p", "lower", "upper"]
        assert list(table.index) == ["Intercept", "Days"]
        np.testing.assert_allclose(table["t"], table["estimate"] / table["se"], rtol=1e-12)
    resid = res.coef_table(ddf="residual")
    np.testing.assert_allclose(resid["df"], 178)
    asym = res.coef_table(ddf="asymptotic")
    assert np.all(np.isinf(asym["df"]))
    # z-based table equals statsmodels-style pvalues and a 1.959964 * se interval
    np.testing.assert_allclose(asym["p"], res.pvalues.iloc[: res.k_fe], rtol=1e-10)
    np.testing.assert_allclose(
        asym["upper"] - asym["estimate"], 1.959963984540054 * asym["se"], rtol=1e-10
    )
    # R: 2 * pt(-36.838, 17) = 1.17105119314314e-17 ; 2 * pt(-6.77, 17) = 3.2728442648769e-06
    from mixedjax.core.distributions import t_sf_two_sided

    np.testing.assert_allclose(t_sf_two_sided(36.838, 17), 1.17105119314314e-17, rtol=1e-8)
    np.testing.assert_allclose(t_sf_two_sided(-6.77, 17), 3.2728442648769e-06, rtol=1e-9)
    satt = res.coef_table()
    np.testing.assert_allclose(satt["p"], t_sf_two_sided(satt["t"], satt["df"]), rtol=1e-12)
    # qt(0.975, 17) = 2.109815577833181
    np.testing.assert_allclose(
        satt["upper"] - satt["estimate"], 2.109815577833181 * satt["se"], rtol=1e-5
    )


def test_f_tests_match_lmertest_contestMD():
    _, _, res = fit_reference("sleepstudy_reml")
    L = np.array([[0.0, 1.0], [1.0, 0.0]])
    # contestMD(m, L, rhs = c(0, 250), ddf = "Satterthwaite"): F 23.5857356148, DenDF 17.0000021
    f = res.wald_test(L, [0, 250])
    np.testing.assert_allclose([f.fvalue, f.df_denom], [23.5857356148, 17.0000020672], rtol=1e-5)
    np.testing.assert_allclose(f.pvalue, 1.24855764176e-05, rtol=1e-4)
    assert f.df_num == 2
    # the same hypothesis as a string
    g = res.wald_test("Days = 0, Intercept = 250")
    np.testing.assert_allclose(g.fvalue, f.fvalue, rtol=1e-12)
    # ddf = "Kenward-Roger": F 22.1983394021, DenDF 16, p 2.4258022852e-05
    k = res.wald_test(L, [0, 250], ddf="kenward-roger")
    np.testing.assert_allclose([k.fvalue, k.df_denom], [22.1983394021, 16.0], rtol=1e-5)
    np.testing.assert_allclose(k.pvalue, 2.4258022852e-05, rtol=1e-4)
    # contestMD(m, rbind(c(1,1), c(1,-1))): F 749.959724795, p 2.6341035357e-17
    s = res.wald_test("Intercept + Days = 0, Intercept - Days = 0")
    np.testing.assert_allclose(s.fvalue, 749.959724795, rtol=1e-5)
    np.testing.assert_allclose(s.pvalue, 2.6341035357e-17, rtol=1e-3)
    # contest1D(m, c(1, 3), rhs = 280): t 0.364285235008, df 17.0000043, p 0.720136591328
    t = res.t_test([1.0, 3.0], 280.0)
    np.testing.assert_allclose(t.tvalue, 0.364285235008, rtol=1e-6)
    np.testing.assert_allclose(t.df_denom, 17.0000042874, rtol=1e-5)
    np.testing.assert_allclose(t.pvalue, 0.720136591328, rtol=1e-6)
    # a one-row F test is the square of the t test
    one = res.wald_test([1.0, 3.0], 280.0)
    np.testing.assert_allclose(one.fvalue, t.tvalue[0] ** 2, rtol=1e-10)
    np.testing.assert_allclose(one.pvalue, t.pvalue[0], rtol=1e-8)
    # asymptotic: chi-square Wald statistic q F
    w = res.wald_test(L, [0, 250], ddf="asymptotic")
    assert np.isinf(w.df_denom)
    np.testing.assert_allclose(w.statistic, 2 * w.fvalue, rtol=1e-12)


@pytest.mark.slow
def test_f_tests_orthodont():
    _, _, res = fit_reference("orthodont_reml")
    L = np.eye(3)[1:]
    # contestMD(m2, L): Satterthwaite F 46.9347257322, DenDF 25.4893648073
    f = res.wald_test(L)
    np.testing.assert_allclose([f.fvalue, f.df_denom], [46.9347257322, 25.4893648073], rtol=1e-5)
    # Kenward-Roger F 45.725618656, DenDF 33.2876840312
    k = res.wald_test(L, ddf="kenward-roger")
    np.testing.assert_allclose([k.fvalue, k.df_denom], [45.725618656, 33.2876840312], rtol=1e-5)
    # anova(m2, ddf = "Kenward-Roger") row Sex: F 7.42877
    np.testing.assert_allclose(
        res.t_test("Sex[T.Male] = 0", ddf="kr").tvalue ** 2, 7.42877, rtol=1e-5
    )


def test_t_test_string_and_errors():
    _, _, res = fit_reference("sleepstudy_reml")
    a = res.t_test("Intercept = 2*Days")
    b = res.t_test([1.0, -2.0])
    np.testing.assert_allclose(a.tvalue, b.tvalue, rtol=1e-12)
    assert a.names == ["1*Intercept + -2*Days"]
    ci = res.t_test("Days = 10").conf_int(0.1)
    table = res.coef_table(alpha=0.1)
    np.testing.assert_allclose(ci[0], table.loc["Days", ["lower", "upper"]], rtol=1e-12)
    with pytest.raises(ValueError, match="ddf"):
        res.coef_table(ddf="bogus")
    with pytest.raises(ValueError, match="columns"):
        res.t_test(np.ones(3))
    with pytest.raises(ValueError, match="linear"):
        res.t_test("Days * Intercept = 0")
    with pytest.raises(ValueError, match="alpha"):
        res.coef_table(alpha=1.5)


def test_anova_terms_match_lmertest():
    _, _, res = fit_reference("sleepstudy_reml")
    # anova(m): Days  Sum Sq 30031.0140043  F 45.8530037651  DenDF 16.9999990263
    table = res.anova()
    assert list(table.index) == ["Days"]
    np.testing.assert_allclose(table.loc["Days", "F value"], 45.8530037651, rtol=1e-6)
    np.testing.assert_allclose(table.loc["Days", "Sum Sq"], 30031.0140043, rtol=1e-6)
    np.testing.assert_allclose(table.loc["Days", "DenDF"], 16.9999990263, rtol=1e-5)
    np.testing.assert_allclose(table.loc["Days", "Pr(>F)"], 3.26379001974e-06, rtol=1e-4)


@pytest.mark.slow
def test_anova_terms_orthodont():
    _, _, res = fit_reference("orthodont_reml")
    # anova(m2): age F 85.84638 DenDF 26.0000045; Sex F 8.02307 DenDF 25.0000018
    table = res.anova()
    assert list(table.index) == ["age", "Sex"]
    np.testing.assert_allclose(table["F value"], [85.84638, 8.02307], rtol=1e-5)
    np.testing.assert_allclose(table["DenDF"], [26.0000045455, 25.0000017796], rtol=1e-5)
    # anova(m2, ddf = "Kenward-Roger"): Sex F 7.42877, DenDF 25
    kr = res.anova(ddf="kenward-roger")
    np.testing.assert_allclose(kr.loc["Sex", ["F value", "DenDF"]], [7.42877, 25.0], rtol=1e-5)
