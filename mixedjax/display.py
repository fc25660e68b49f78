"""Text and table display of results: the summary table and lme4's ``VarCorr`` layout."""

import numpy as np
import pandas as pd

from mixedjax.results import _lme4_term, _norm_pvalue


def varcorr_frame(results) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(m))``.

    One row per variance (``var2`` missing) then per covariance of each term, in lme4's
    order (variances first, then the lower triangle column by column); each variance
    component; ``Residual`` last. ``sdcor`` is the standard deviation for a variance and
    the correlation for a covariance.
    """
    model = results.model
    group = getattr(model, "group_name", "Group")
    cov = results.cov_re.to_numpy()
    names = [_lme4_term(n) for n in model.exog_re_names]
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    rows = [(group, names[i], None, cov[i, i], sd[i]) for i in range(len(names))]
    for j in range(len(names)):
        for i in range(j + 1, len(names)):
            denom = sd[i] * sd[j]
            corr = cov[i, j] / denom if denom > 0 else 0.0
            rows.append((group, names[j], names[i], cov[i, j], corr))
    for name, var in zip(model.vc_names, results.vcomp, strict=True):
        rows.append((name, "(Intercept)", None, var, np.sqrt(max(var, 0.0))))
    rows.append(("Residual", None, None, results.scale, np.sqrt(results.scale)))
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])


class Summary:
    """statsmodels-style summary; ``str()`` gives the text, ``tables`` the DataFrames."""

    def __init__(self, results, alpha: float = 0.05):
        self.results = results
        self.alpha = alpha
        self.tables = [self._info_table(), self._coef_table()]

    def _info_table(self) -> pd.DataFrame:
        r, m = self.results, self.results.model
        sizes = m.group_sizes
        left = [
            ("Model:", "MixedLM"),
            ("No. Observations:", f"{m.nobs}"),
            ("No. Groups:", f"{m.n_groups}"),
            ("Min. group size:", f"{sizes.min()}"),
            ("Max. group size:", f"{sizes.max()}"),
            ("Mean group size:", f"{sizes.mean():.1f}"),
            ("Rows dropped:", f"{getattr(m, 'n_dropped', 0)}"),
        ]
        right = [
            ("Dependent Variable:", m.endog_names),
            ("Method:", r.method),
            ("Scale:", f"{r.scale:.4f}"),
            ("Log-Likelihood:", f"{r.llf:.4f}"),
            ("Converged:", "Yes" if r.converged else "No"),
            ("Singular:", "Yes" if r.is_singular else "No"),
            ("Iterations:", f"{r.optim.n_iter}"),
        ]
        return pd.DataFrame([[a, b, c, d] for (a, b), (c, d) in zip(left, right, strict=True)])

    def _coef_table(self) -> pd.DataFrame:
        r = self.results
        from statistics import NormalDist

        crit = NormalDist().inv_cdf(1 - self.alpha / 2)
        fe, se = r.fe_params, r.bse_fe
        z = fe / se
        lo, hi = 1 - self.alpha / 2, self.alpha / 2
        table = pd.DataFrame(
            {
                "Coef.": fe,
                "Std.Err.": se,
                "z": z,
                "P>|z|": _norm_pvalue(z.to_numpy()),
                f"[{hi:.3f}": fe - crit * se,
                f"{lo:.3f}]": fe + crit * se,
            }
        )
        names = r.model.param_names[r.k_fe :]
        rows, cols = np.tril_indices(r.k_re)
        values = np.concatenate([r.cov_re.to_numpy()[rows, cols], r.vcomp])
        bse_re = r.bse_re.to_numpy()
        re_table = pd.DataFrame({"Coef.": values, "Std.Err.": bse_re}, index=names)
        return pd.concat([table, re_table])

    def as_text(self) -> str:
        info, coef = self.tables
        w0 = max(len(s) for s in info[0]) + 1
        w1 = max(len(s) for s in info[1]) + 2
        w2 = max(len(s) for s in info[2]) + 1
        info_lines = [
            f"{a:<{w0}}{b:<{w1}}{c:<{w2}}{d}" for a, b, c, d in info.itertuples(index=False)
        ]
        formatted = coef.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        name_w = max(len(str(i)) for i in formatted.index) + 1
        col_w = [max(len(c), formatted[c].str.len().max()) + 1 for c in formatted.columns]
        header = " " * name_w + "".join(
            f"{c:>{w}}" for c, w in zip(formatted.columns, col_w, strict=True)
        )
        body = [
            f"{str(idx):<{name_w}}" + "".join(f"{v:>{w}}" for v, w in zip(row, col_w, strict=True))
            for idx, row in zip(formatted.index, formatted.itertuples(index=False), strict=True)
        ]
        width = max(len(header), *(len(s) for s in info_lines))
        title = "Mixed Linear Model Regression Results".center(width)
        return "\n".join(
            [title, "=" * width, *info_lines, "-" * width, header, "-" * width, *body, "=" * width]
        )

    def as_html(self) -> str:
        info, coef = self.tables
        return info.to_html(index=False, header=False) + coef.to_html(float_format="%.3f")

    def __str__(self) -> str:
        return self.as_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.as_html()
