"""Rich (HTML) display for notebooks: the styled summary behind ``_repr_html_``.

Jupyter calls ``_repr_html_`` on the last value of a cell. The blocks built here are
self-contained: one ``<div class="mixedjax">`` with a ``<style>`` scoped to that class (no
external CSS, no JavaScript), so they render the same in JupyterLab, VS Code and static
HTML exports. The pieces are generic (:func:`html_table`, :func:`html_block`) so batch
results and inference tables can reuse them.
"""

from html import escape

import numpy as np
import pandas as pd

from mixedjax.core.distributions import two_sided_normal_pvalue
from mixedjax.display.varcorr import varcorr_table

_STYLE = """<style>
.mixedjax {font-family: var(--jp-content-font-family, sans-serif); font-size: 13px;
  max-width: 58em}
.mixedjax h4 {margin: 0.3em 0 0.2em 0; font-size: 1.05em}
.mixedjax .mj-caption {margin: 0.6em 0 0.1em 0; font-weight: 600; color: #555}
.mixedjax table {border-collapse: collapse; margin: 0 0 0.4em 0}
.mixedjax th, .mixedjax td {padding: 0.15em 0.7em; border: none; text-align: right;
  font-variant-numeric: tabular-nums}
.mixedjax thead th {border-bottom: 1px solid #999}
.mixedjax tbody tr:nth-child(odd) {background: rgba(128, 128, 128, 0.07)}
.mixedjax th.mj-row, .mixedjax td.mj-left {text-align: left}
.mixedjax table.mj-info td {text-align: left}
.mixedjax table.mj-info td.mj-key {color: #555}
.mixedjax .mj-note {color: #a33; margin: 0.2em 0}
</style>"""


def html_table(frame: pd.DataFrame, *, index: bool = True, left: tuple[str, ...] = ()) -> str:
    """A DataFrame of strings/numbers as a plain HTML table (cells escaped).

    Args:
        frame: the table; non-string cells are formatted with ``str``; NaN shows as blank.
        index: show the row labels as a left-aligned first column.
        left: names of columns to left-align (numbers are right-aligned).

    Example:
        >>> html_table(pd.DataFrame({"a": ["<1>"]}, index=["r"]))[:7]
        '<table>'
    """

    def cell(v) -> str:
        return "" if (not isinstance(v, str) and pd.isna(v)) else escape(str(v))

    head = "".join(f"<th>{escape(str(c))}</th>" for c in frame.columns)
    if index:
        head = "<th></th>" + head
    body = []
    for label, row in zip(frame.index, frame.itertuples(index=False), strict=True):
        tds = "".join(
            f'<td class="mj-left">{cell(v)}</td>' if c in left else f"<td>{cell(v)}</td>"
            for c, v in zip(frame.columns, row, strict=True)
        )
        stub = f'<th class="mj-row">{escape(str(label))}</th>' if index else ""
        body.append(f"<tr>{stub}{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def info_table(pairs: list[tuple[str, str]], n_columns: int = 2) -> str:
    """Key/value pairs laid out in ``n_columns`` side-by-side column pairs (HTML).

    Example:
        >>> html = info_table([("Model", "MixedLM"), ("Method", "REML")])
        >>> html.count("<tr>"), "REML" in html
        (1, True)
    """
    n_rows = -(-len(pairs) // n_columns)
    rows = []
    for i in range(n_rows):
        cells = []
        for j in range(n_columns):
            k = j * n_rows + i
            key, value = pairs[k] if k < len(pairs) else ("", "")
            cells.append(f'<td class="mj-key">{escape(key)}</td><td>{escape(value)}</td>')
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="mj-info"><tbody>{"".join(rows)}</tbody></table>'


def html_block(title: str, sections: list[tuple[str, str]], notes: list[str] = ()) -> str:
    """Wrap ``(caption, html)`` sections under a title in one styled ``div``.

    Example:
        >>> html = html_block("Title", [("A table", html_table(pd.DataFrame({"x": [1]})))])
        >>> html.startswith("<style>") and "A table" in html
        True
    """
    parts = [_STYLE, '<div class="mixedjax">', f"<h4>{escape(title)}</h4>"]
    for caption, body in sections:
        if caption:
            parts.append(f'<div class="mj-caption">{escape(caption)}</div>')
        parts.append(body)
    parts.extend(f'<div class="mj-note">{escape(n)}</div>' for n in notes)
    parts.append("</div>")
    return "\n".join(parts)


def summary_html(summary) -> str:
    """HTML for a :class:`mixedjax.display.text.Summary`: model information, the coefficient
    table (fixed effects with z-tests and intervals, then the variance parameters as in
    statsmodels), and lme4's variance-component table.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> html = summary_html(r.summary())   # what r._repr_html_() shows in Jupyter
        >>> "Random effects (lme4 VarCorr)" in html and "10.467" in html
        True
    """

    results = summary.results
    info, coef = summary.tables
    pairs = [(a, b) for a, b, _, _ in info.itertuples(index=False)]
    pairs += [(c, d) for _, _, c, d in info.itertuples(index=False)]
    pairs = [(k.rstrip(":"), v) for k, v in pairs if k]
    formatted = coef.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    k_fe = results.k_fe
    notes = []
    if not results.converged:
        notes.append(f"Not converged: {results.optim.message}")
    if results.is_singular:
        notes.append("Singular fit: a variance parameter is on its boundary (zero).")
    vc = varcorr_table(results)
    return html_block(
        "Mixed Linear Model Regression Results",
        [
            ("", info_table(pairs)),
            ("Fixed effects", html_table(formatted.iloc[:k_fe])),
            (
                "Variance parameters (statsmodels layout, data scale)",
                html_table(formatted.iloc[k_fe:, :2]),
            ),
            (
                "Random effects (lme4 VarCorr)",
                html_table(vc, index=False, left=("Groups", "Name", "Corr")),
            ),
        ],
        notes,
    )


def _number(v) -> str:
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return str(v)
    return "" if pd.isna(v) else f"{v:.4g}"


#: Rows of a batch shown in full; larger batches show the first and last :data:`BATCH_EDGE`.
BATCH_ROWS = 20
BATCH_EDGE = 5


def batch_html(batch) -> str:
    """HTML for a :class:`mixedjax.BatchResults`: counts (fits, converged, singular) and
    one row per fit of :meth:`~mixedjax.BatchResults.frame` (the first and last
    :data:`BATCH_EDGE` rows when there are more than :data:`BATCH_ROWS`).

    Example:
        >>> import numpy as np, mixedjax
        >>> df = mixedjax.datasets.load("dyestuff")
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
        >>> html = batch_html(m.fit_many(np.column_stack([df["Yield"], 2 * df["Yield"]])))
        >>> "2 fits" in html and "1528" in html   # the intercept of the first fit
        True
    """
    frame = batch.frame()
    k = len(frame)
    singular = int(np.sum(batch.is_singular))
    pairs = [
        ("Fits", str(k)),
        ("Method", "REML" if batch.reml else "ML"),
        ("Converged", f"{int(np.sum(batch.converged))} of {k}"),
        ("Singular", f"{singular} of {k}"),
        ("Optimizer", batch.method),
        ("Median iterations", f"{float(np.median(batch.n_iter)):g}"),
    ]
    notes = []
    if k > BATCH_ROWS:
        frame = pd.concat([frame.iloc[:BATCH_EDGE], frame.iloc[-BATCH_EDGE:]])
        notes.append(f"{k - 2 * BATCH_EDGE} rows not shown; BatchResults.frame() has all {k}.")
    if not np.all(batch.converged):
        notes.append("Some fits did not converge: see BatchResults.status and result(i).optim.")
    shown = frame.apply(lambda col: col.map(_number))
    title = f"Batch of {k} fits ({'REML' if batch.reml else 'ML'})"
    return html_block(
        title, [("", info_table(pairs)), ("One row per fit", html_table(shown))], notes
    )


def crossed_summary_html(results) -> str:
    """HTML for a crossed-engine :class:`mixedjax.MixedLMResults`: model information, fixed effects
    (z-tests) and lme4's variance-component table.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("penicillin")
        >>> r = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df).fit()
        >>> html = crossed_summary_html(r)
        >>> "plate" in html and "sample" in html and "22.97" in html
        True
    """
    from statistics import NormalDist

    r = results
    groups = {t.group: len(t.levels) for t in r.term_estimates}
    pairs = [
        ("Dependent Variable", str(r.model.endog_names)),
        ("Method", r.method),
        ("No. Observations", str(r.nobs)),
        ("Groups", ", ".join(f"{g} {n}" for g, n in groups.items())),
        ("Log-Likelihood", f"{r.llf:.4f}"),
        ("Scale", f"{r.scale:.4f}"),
        ("Converged", "Yes" if r.converged else "No"),
        ("Singular", "Yes" if r.is_singular else "No"),
    ]
    crit = NormalDist().inv_cdf(0.975)
    fe, se = r._fe_params_pd, r._bse_fe_pd
    coef = pd.DataFrame(
        {
            "Coef.": fe,
            "Std.Err.": se,
            "z": fe / se,
            "P>|z|": two_sided_normal_pvalue((fe / se).to_numpy()),
            "[0.025": fe - crit * se,
            "0.975]": fe + crit * se,
        }
    ).map(lambda v: f"{v:.3f}")
    vc = r.varcorr()
    vc[["var1", "var2"]] = (
        vc[["var1", "var2"]].astype(object).where(vc[["var1", "var2"]].notna(), "")
    )
    vc[["vcov", "sdcor"]] = vc[["vcov", "sdcor"]].map(lambda v: f"{v:.4f}")
    notes = []
    if not r.converged:
        notes.append(f"Not converged: {r.optim.message}")
    if r.is_singular:
        notes.append("Singular fit: a variance parameter is on its boundary (zero).")
    return html_block(
        "Mixed Linear Model Regression Results (crossed random effects)",
        [
            ("", info_table(pairs)),
            ("Fixed effects", html_table(coef)),
            (
                "Random effects (lme4 as.data.frame(VarCorr))",
                html_table(vc, index=False, left=("group", "var1", "var2")),
            ),
        ],
        notes,
    )
