"""Fixed-effect tests: t tests, Wald/F tests, Wald intervals and the coefficient table.

Every function takes fitted results and a ``ddf`` choice for the reference distribution:

* ``"satterthwaite"`` — lmerTest's Satterthwaite df (:mod:`mixedjax.inference.ddf`);
* ``"kenward-roger"`` — pbkrtest's Kenward-Roger df *and* adjusted covariance ``Φ_A``
  (REML fits only, as in lmerTest);
* ``"residual"`` — ``n - p`` df (SAS/nlme's residual method), GLS covariance;
* ``"asymptotic"`` — normal / χ² reference (statsmodels' z tests), GLS covariance.

For a contrast ``L (q, p)`` with right-hand side ``r``: a single row gives
``t = (Lβ̂ - r)/√(L C L')``; several rows give ``F = (Lβ̂ - r)'(L C L')⁻¹(Lβ̂ - r)/q``
(scaled by pbkrtest's factor for Kenward-Roger); the χ² statistic for ``"asymptotic"`` is
``q F``.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedjax.core.distributions import f_sf, t_ppf, t_sf_two_sided
from mixedjax.inference import ddf as ddf_module
from mixedjax.inference.hypothesis import as_contrast

DDF_METHODS = ("satterthwaite", "kenward-roger", "residual", "asymptotic")
_ALIASES = {"kr": "kenward-roger", "kenward_roger": "kenward-roger", "normal": "asymptotic"}


def check_ddf(ddf: str) -> str:
    """Normalise a ``ddf`` name; ``ValueError`` for an unknown one."""
    if not isinstance(ddf, str):
        raise TypeError(f"ddf must be a string, one of {DDF_METHODS}")
    key = ddf.lower().replace(" ", "-")
    key = _ALIASES.get(key, key)
    if key not in DDF_METHODS:
        raise ValueError(f"ddf must be one of {DDF_METHODS}, got {ddf!r}")
    return key


def check_alpha(alpha: float) -> float:
    if not (isinstance(alpha, int | float | np.floating) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _vcov_for(results, ddf: str) -> np.ndarray:
    if ddf == "kenward-roger":
        return results._kenward_roger.vcov_adjusted
    return results._cov_fe


def _df_1d(results, L: np.ndarray, ddf: str) -> np.ndarray:
    if ddf == "satterthwaite":
        return ddf_module.satterthwaite_df_1d(L, results._satterthwaite)
    if ddf == "kenward-roger":
        kr = results._kenward_roger
        return np.array([ddf_module.kenward_roger_df(row[None, :], kr).df for row in L])
    if ddf == "residual":
        return np.full(L.shape[0], float(results.nobs - results.k_fe))
    return np.full(L.shape[0], np.inf)


@dataclass(frozen=True)
class ContrastTTest:
    """One t test per row of a contrast (statsmodels' ``ContrastResults`` fields).

    Attributes:
        effect: ``(m,)`` ``Lβ̂``.
        sd: ``(m,)`` standard errors ``√diag(L C L')``.
        tvalue: ``(m,)`` ``(Lβ̂ - r)/sd``.
        pvalue: ``(m,)`` two-sided p-values.
        df_denom: ``(m,)`` degrees of freedom (``inf`` for ``"asymptotic"``).
        rhs: ``(m,)`` hypothesised values ``r``.
        names: row labels.
        ddf: the df method.
    """

    effect: np.ndarray
    sd: np.ndarray
    tvalue: np.ndarray
    pvalue: np.ndarray
    df_denom: np.ndarray
    rhs: np.ndarray
    names: list
    ddf: str

    def conf_int(self, alpha: float = 0.05) -> np.ndarray:
        """``(m, 2)`` intervals ``effect ± t_{1-α/2, df} sd``."""
        crit = t_ppf(np.full(self.effect.shape, 1 - check_alpha(alpha) / 2), self.df_denom)
        return np.column_stack([self.effect - crit * self.sd, self.effect + crit * self.sd])

    def summary_frame(self, alpha: float = 0.05) -> pd.DataFrame:
        """The table: ``estimate, se, df, t, p, lower, upper``."""
        ci = self.conf_int(alpha)
        return pd.DataFrame(
            {
                "estimate": self.effect,
                "se": self.sd,
                "df": self.df_denom,
                "t": self.tvalue,
                "p": self.pvalue,
                "lower": ci[:, 0],
                "upper": ci[:, 1],
            },
            index=self.names,
        )

    def __str__(self) -> str:
        return f"Test for constraints ({self.ddf} df)\n{self.summary_frame().to_string()}"


@dataclass(frozen=True)
class ContrastFTest:
    """A joint test of ``L β = r``.

    Attributes:
        fvalue: F statistic (``statistic / df_num`` for ``"asymptotic"``).
        statistic: the χ² statistic ``q F`` for ``"asymptotic"``, else ``fvalue``.
        pvalue: upper-tail p-value.
        df_num: numerator df (rank of ``L``).
        df_denom: denominator df (``inf`` for ``"asymptotic"``).
        ddf: the df method.
    """

    fvalue: float
    statistic: float
    pvalue: float
    df_num: int
    df_denom: float
    ddf: str

    def __str__(self) -> str:
        if np.isinf(self.df_denom):
            return f"<Wald test: chi2={self.statistic:.6g}, p={self.pvalue:.4g}, df={self.df_num}>"
        return (
            f"<F test ({self.ddf}): F={self.fvalue:.6g}, p={self.pvalue:.4g}, "
            f"df_num={self.df_num}, df_denom={self.df_denom:.6g}>"
        )

    __repr__ = __str__


def _row_names(L: np.ndarray, names: list[str]) -> list[str]:
    out = []
    for row in L:
        nz = np.flatnonzero(row)
        if nz.size == 1 and row[nz[0]] == 1.0:
            out.append(names[nz[0]])
        else:
            out.append(" + ".join(f"{row[j]:g}*{names[j]}" for j in nz))
    return out


def t_test(results, r_matrix, rhs=None, ddf: str = "satterthwaite") -> ContrastTTest:
    """Row-wise t tests of ``L β = r`` (``r_matrix``: matrix, vector or string)."""
    ddf = check_ddf(ddf)
    names = list(results.model.exog_names)
    L, rhs = as_contrast(r_matrix, names, rhs)
    C = _vcov_for(results, ddf)
    effect = L @ np.asarray(results.fe_params)
    sd = np.sqrt(np.einsum("mi,ij,mj->m", L, C, L))
    df = _df_1d(results, L, ddf)
    tvalue = (effect - rhs) / sd
    pvalue = t_sf_two_sided(tvalue, df)
    return ContrastTTest(effect, sd, tvalue, pvalue, df, rhs, _row_names(L, names), ddf)


def wald_test(results, r_matrix, rhs=None, ddf: str = "satterthwaite") -> ContrastFTest:
    """Joint test of ``L β = r`` with the chosen df method (lmerTest's ``contestMD``)."""
    ddf = check_ddf(ddf)
    names = list(results.model.exog_names)
    L, rhs = as_contrast(r_matrix, names, rhs)
    beta = np.asarray(results.fe_params)
    if ddf == "satterthwaite":
        parts = ddf_module.satterthwaite_f(L, rhs, beta, results._satterthwaite)
    elif ddf == "kenward-roger":
        parts = ddf_module.kenward_roger_f(L, rhs, beta, results._kenward_roger)
    else:
        C = results._cov_fe
        diff = L @ beta - rhs
        q = int(np.linalg.matrix_rank(L))
        wald = float(diff @ np.linalg.lstsq(L @ C @ L.T, diff, rcond=None)[0])
        df_denom = float(results.nobs - results.k_fe) if ddf == "residual" else np.inf
        parts = ddf_module.FTestParts(wald / q, q, df_denom)
    pvalue = float(f_sf(parts.fvalue, parts.df_num, parts.df_denom))
    statistic = parts.fvalue * parts.df_num if np.isinf(parts.df_denom) else parts.fvalue
    return ContrastFTest(parts.fvalue, statistic, pvalue, parts.df_num, parts.df_denom, ddf)


def coef_table(results, ddf: str = "satterthwaite", alpha: float = 0.05) -> pd.DataFrame:
    """Fixed-effect table indexed by name: ``estimate, se, df, t, p, lower, upper``."""
    return (
        t_test(results, np.eye(results.k_fe), ddf=ddf)
        .summary_frame(alpha)
        .set_axis(list(results.model.exog_names))
    )


def conf_int_wald(results, alpha: float = 0.05, ddf: str = "asymptotic") -> pd.DataFrame:
    """Wald intervals for ``params`` (statsmodels' layout): fixed effects with the ``ddf``
    reference distribution, covariance parameters ``± z σ̂`` from the exact Hessian."""
    alpha = check_alpha(alpha)
    fixed = coef_table(results, ddf=ddf, alpha=alpha)[["lower", "upper"]]
    params = results._params_pd
    bse = results._bse_pd
    z = float(t_ppf(1 - alpha / 2, np.inf))
    cov_names = params.index[results.k_fe :]
    cov = pd.DataFrame(
        {
            "lower": params[cov_names] - z * bse[cov_names],
            "upper": params[cov_names] + z * bse[cov_names],
        }
    )
    out = pd.concat([fixed, cov])
    out.columns = [0, 1]
    return out


def _term_of(column: str) -> str:
    """formulaic column name -> its term: drop each ``[...]`` level suffix."""
    out, depth = [], 0
    for ch in column:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def term_f_tests(results, ddf: str = "satterthwaite") -> pd.DataFrame:
    """One F test per fixed-effect term (all its coefficients = 0), lmerTest's ``anova``
    layout: ``Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F)``.

    The intercept is left out. For terms not contained in a higher-order interaction this is
    lmerTest's type III table; with interactions present each row is the marginal test of
    that term's coefficients under the model's own (treatment) coding.
    """
    ddf = check_ddf(ddf)
    names = list(results.model.exog_names)
    terms: dict[str, list[int]] = {}
    for j, name in enumerate(names):
        term = _term_of(name)
        if term in ("Intercept", "const", "1"):
            continue
        terms.setdefault(term, []).append(j)
    rows = []
    for cols in terms.values():
        L = np.eye(len(names))[cols]
        test = wald_test(results, L, ddf=ddf)
        fvalue = test.fvalue
        # Sum Sq as lmerTest: the unscaled F times σ² times NumDF
        mean_sq = fvalue * results.scale
        rows.append(
            (mean_sq * test.df_num, mean_sq, test.df_num, test.df_denom, fvalue, test.pvalue)
        )
    return pd.DataFrame(
        rows,
        index=list(terms),
        columns=["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"],
    )
