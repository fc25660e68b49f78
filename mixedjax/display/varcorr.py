"""lme4's ``VarCorr``: the data-frame layout and the printed table."""

import numpy as np
import pandas as pd


def varcorr_frame(results) -> pd.DataFrame:
    """lme4's ``as.data.frame(VarCorr(m))``.

    One row per variance (``var2`` missing) then per covariance of each term, in lme4's
    order (variances first, then the lower triangle column by column); each variance
    component; ``Residual`` last. ``sdcor`` is the standard deviation for a variance and
    the correlation for a covariance.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> varcorr_frame(r)["sdcor"].round(3).tolist()   # SDs, the correlation, σ
        [24.74, 5.922, 0.066, 25.592]
    """
    model = results.model
    group = getattr(model, "group_name", "Group")
    cov = np.asarray(results.cov_re)
    names = list(model.re_terms)
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


def varcorr_table(results) -> pd.DataFrame:
    """lme4's ``print(VarCorr(m), comp = c("Variance", "Std.Dev."))`` as a DataFrame of strings.

    Columns ``Groups, Name, Variance, Std.Dev., Corr``: one row per term of each grouping
    factor (the factor named on its first row only), ``Residual`` last; ``Corr`` holds the
    correlations of a term with the terms before it in its factor (the lower triangle of
    lme4's correlation matrix, two decimals). Built from :func:`varcorr_frame`, so it follows
    whatever grouping structure that reports.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> table = varcorr_table(r)
        >>> table["Groups"].tolist(), table["Corr"].tolist()
        (['Subject', '', 'Residual'], ['', '0.07', ''])
        >>> table["Std.Dev."].tolist()
        ['24.740', '5.922', '25.592']
    """
    vc = results.varcorr()  # each results class gives lme4's layout
    rows = []
    for group, block in vc.groupby("group", sort=False):
        variances = block[block["var2"].isna()]
        covs = block[block["var2"].notna()]
        for k, (_, row) in enumerate(variances.iterrows()):
            corr = [
                f"{c:.2f}"
                for c in covs.loc[covs["var2"] == row["var1"], "sdcor"].to_numpy(dtype=float)
            ]
            rows.append(
                {
                    "Groups": group if k == 0 else "",
                    "Name": "" if row["var1"] is None or pd.isna(row["var1"]) else row["var1"],
                    "Variance": f"{row['vcov']:.3f}",
                    "Std.Dev.": f"{row['sdcor']:.3f}",
                    "Corr": " ".join(corr),
                }
            )
    return pd.DataFrame(rows, columns=["Groups", "Name", "Variance", "Std.Dev.", "Corr"])
