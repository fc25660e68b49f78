"""Text and HTML display: statsmodels' layout (oracle: statsmodels' own table renderer fed
the same cells), lme4's VarCorr numbers (oracle: the lme4 reference JSON), and the content
of the notebook HTML."""

import re
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from conftest import load_reference

import mixedjax
from mixedjax.display.text import TextTable, text_tables
from mixedjax.display.varcorr import varcorr_table


def _fit(name):
    ref, data = load_reference(name)
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    model = mixedjax.MixedLM.from_formula(
        f"{response.strip()} ~ {fixed}", data, groups=sm["groups"], re_formula=sm.get("re_formula")
    )
    return ref, model, model.fit(reml=ref["reml"])


@pytest.fixture(scope="module")
def sleep():
    return _fit("sleepstudy_reml")


@pytest.fixture(scope="module")
def dyestuff2():
    return _fit("dyestuff2_reml")


def _statsmodels_text(summary) -> str:
    """The same cells rendered by statsmodels' ``summary2`` (the layout oracle)."""
    summary2 = pytest.importorskip("statsmodels.iolib.summary2")
    info, coef = summary.tables
    out = summary2.Summary()
    pairs = {a: b for a, b, _, _ in info.itertuples(index=False)}
    pairs.update({c: d for _, _, c, d in info.itertuples(index=False)})
    out.add_dict(pairs)
    out.add_title("Mixed Linear Model Regression Results")
    out.add_df(coef.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"), align="r")
    return out.as_text()


@pytest.mark.parametrize("case", ["sleep", "dyestuff2"])
def test_summary_text_matches_statsmodels_layout(case, request):
    _, _, res = request.getfixturevalue(case)
    summary = res.summary()
    assert summary.as_text().rstrip("\n") == _statsmodels_text(summary).rstrip("\n")
    assert str(summary) == summary.as_text()


def test_summary_text_numbers_and_columns(sleep):
    ref, _, res = sleep
    text = res.summary().as_text()
    lines = text.splitlines()
    rule = lines[1]
    assert set(rule) == {"="} and lines[-1] == rule
    for est, se in zip(ref["fixed"]["estimate"], ref["fixed"]["se"], strict=True):
        assert f"{est:.3f}" in text and f"{se:.3f}" in text
    assert f"{ref['loglik']:.4f}" in text
    # Coefficient rows: every column right-aligned, so the decimal points of each numeric
    # column sit at the same character positions on every fixed-effect row.
    fe_rows = [ln for ln in lines if ln.split()[0] in ("Intercept", "Days") and "Var" not in ln]
    assert len(fe_rows) == 2
    dots = [[m.start() for m in re.finditer(r"\.", ln)] for ln in fe_rows]
    assert len(dots[0]) == 6 and dots[0] == dots[1]
    assert len({len(ln) for ln in lines[1:]}) == 1  # all rows as wide as the frame


def test_text_tables_pads_narrow_table():
    wide = TextTable(np.array([["1234567890", "x"]]), align="l")
    narrow = TextTable(np.array([["1"], ["2"]]), header=["v"], stubs=["a", "b"])
    text = text_tables([wide, narrow], title="t")
    lines = text.splitlines()
    assert lines[1] == "=" * 12 and lines[-1] == "=" * 12
    assert lines[-2] == "b" + " " * 10 + "2"  # stub padded so the body spans the width


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.cells, self._in_cell = [], [], False

    def handle_starttag(self, tag, attrs):
        self.open.append(tag)
        if tag in ("td", "th"):
            self._in_cell = True
            self.cells.append("")

    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"unbalanced </{tag}>"
        self.open.pop()
        self._in_cell = self._in_cell and tag not in ("td", "th")

    def handle_data(self, data):
        if self._in_cell:
            self.cells[-1] += data


def _cells(html: str) -> list[str]:
    parser = _Collect()
    parser.feed(html)
    assert parser.open == []
    return parser.cells


def test_results_html(sleep):
    ref, _, res = sleep
    html = res._repr_html_()
    assert html == res.summary()._repr_html_()
    cells = _cells(html)
    for est, se in zip(ref["fixed"]["estimate"], ref["fixed"]["se"], strict=True):
        assert f"{est:.3f}" in cells and f"{se:.3f}" in cells
    assert "P>|z|" in cells and "P&gt;|z|" in html
    sd = np.sqrt(np.diag(ref["random"][0]["cov"]))
    assert f"{sd[0]:.3f}" in cells and f"{sd[1]:.3f}" in cells
    assert f"{np.sqrt(ref['residual_variance']):.3f}" in cells
    assert f"{ref['loglik']:.4f}" in cells
    assert "Singular fit" not in html


def test_singular_fit_is_flagged_in_html(dyestuff2):
    _, _, res = dyestuff2
    assert res.is_singular
    assert "Singular fit" in res._repr_html_()


def test_varcorr_table_matches_lme4(sleep):
    ref, _, res = sleep
    table = varcorr_table(res)
    cov = np.asarray(ref["random"][0]["cov"])
    sd = np.sqrt(np.diag(cov))
    corr = cov[0, 1] / (sd[0] * sd[1])
    assert table["Groups"].tolist() == ["Subject", "", "Residual"]
    assert table["Name"].tolist() == ["(Intercept)", "Days", ""]
    np.testing.assert_allclose(table["Std.Dev."].astype(float), [*sd, 25.592], atol=2e-3)
    assert table["Corr"].tolist() == ["", f"{corr:.2f}", ""]


def test_model_repr_says_what_it_is(sleep):
    _, model, res = sleep
    text = repr(model)
    assert "Reaction ~ Days" in text and "nobs=180" in text and "groups=18" in text
    assert "groups=18" in repr(res) and "REML" in repr(res)


def test_varcorr_table_variance_components_only():
    """Crossed factors as variance components of one all-rows group (statsmodels' idiom);
    also the regression test for a model with ``vc_formula`` and no ``re_formula``."""
    ref, data = load_reference("penicillin_reml")
    data["one"] = 1
    vc = {"plate": "0 + C(plate)", "sample": "0 + C(sample)"}
    res = mixedjax.MixedLM.from_formula("diameter ~ 1", data, groups="one", vc_formula=vc).fit()
    assert res.llf >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
    table = varcorr_table(res)
    assert table["Groups"].tolist() == ["plate", "sample", "Residual"]
    lme4_sd = [np.sqrt(r["cov"][0][0]) for r in ref["random"]] + [ref["residual_variance"] ** 0.5]
    np.testing.assert_allclose(table["Std.Dev."].astype(float), lme4_sd, atol=1e-3)
    text = res.summary().as_text()
    assert "plate" in text and "sample" in text and "0.7169" in text


def test_model_reprs_name_formula_rows_and_groups(sleep):
    ref, model, _ = sleep
    re_formula = ref["statsmodels"]["re_formula"]
    assert repr(model).startswith(f"MixedLM(formula='Reaction ~ Days', re_formula={re_formula!r}, ")
    _, data = load_reference("sleepstudy_reml")
    lme4_style = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", data)
    assert "formula='Reaction ~ Days + (Days | Subject)'" in repr(lme4_style)
    assert "nobs=180, groups=18" in repr(lme4_style)
    _, data = load_reference("penicillin_reml")
    crossed = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", data)
    assert repr(crossed) == (
        "MixedLM(formula='diameter ~ 1 + (1 | plate) + (1 | sample)', nobs=144, "
        "k_fe=1, groups=[plate: 24, sample: 6])"
    )


def test_crossed_results_html():
    ref, data = load_reference("penicillin_reml")
    res = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", data).fit()
    cells = _cells(res._repr_html_())
    assert f"{ref['fixed']['estimate'][0]:.3f}" in cells
    assert f"{ref['fixed']['se'][0]:.3f}" in cells
    assert f"{ref['loglik']:.4f}" in cells and "plate 24, sample 6" in cells
    for sd in res.varcorr()["sdcor"]:
        assert f"{sd:.4f}" in cells
    # varcorr() is a DataFrame, which Jupyter renders with pandas' own HTML
    assert "<table" in res.varcorr()._repr_html_()


def test_batch_results_html(sleep, monkeypatch):
    from mixedjax.display import html as display_html

    _, model, res = sleep
    Y = model.endog[:, None] * np.array([1.0, 2.0, 3.0])
    batch = model.fit_many(Y)
    html = batch._repr_html_()
    cells = _cells(html)
    assert "Batch of 3 fits (REML)" in html and "3 of 3" in cells
    for j, factor in enumerate([1.0, 2.0, 3.0]):  # scaling y scales β, σ and the SDs
        assert f"{factor * res.fe_params['Days']:.4g}" in cells
        assert f"{factor**2 * res.scale:.4g}" in cells
        assert cells.count(str(j)) >= 1
    assert "rows not shown" not in html
    monkeypatch.setattr(display_html, "BATCH_ROWS", 2)
    monkeypatch.setattr(display_html, "BATCH_EDGE", 1)
    short = batch._repr_html_()
    assert "1 rows not shown" in short and f"{2 * res.scale:.4g}" not in _cells(short)
    assert "<table" in res.varcorr()._repr_html_()
