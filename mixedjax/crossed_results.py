"""Results of a :class:`~mixedjax.crossed_model.CrossedMixedLM` fit.

The interface follows :class:`~mixedjax.results.MixedLMResults` where it has a meaning
with several grouping factors: ``fe_params``, ``bse_fe``, ``tvalues``, ``pvalues``,
``scale``, ``llf``, ``aic``, ``bic``, ``theta``, ``is_singular``, ``optim``,
``fittedvalues``, ``resid``, ``ranef()``, ``varcorr()``, ``summary()``. Random effects
are per factor: ``random_effects[factor]`` is a DataFrame (levels x terms) and
``cov_re[group]`` the covariance of each term (keys as in ``varcorr()``).
"""

import math
from functools import cached_property

import numpy as np
import pandas as pd

from mixedjax.crossed import CrossedEstimates
from mixedjax.estimation import SINGULAR_TOL
from mixedjax.layout import (
    TermEstimate,
    random_effects_by_factor,
    ranef_frame,
    varcorr_frame,
    varcorr_names,
)
from mixedjax.results import OptSummary, _norm_pvalue


class CrossedMixedLMResults:
    """Read-only results of :class:`~mixedjax.CrossedMixedLM`; see the module docstring.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("penicillin")
        >>> r = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df).fit()
        >>> r.varcorr()["group"].tolist()
        ['plate', 'sample', 'Residual']
        >>> round(float(r.varcorr()["vcov"].iloc[1]), 3)  # lme4: 3.731
        3.731
    """

    def __init__(self, model, theta, est: CrossedEstimates, opt: OptSummary, reml: bool):
        object.__setattr__(self, "_frozen", False)
        self.model = model
        self.reml = reml
        self.method = "REML" if reml else "ML"
        self.optim = opt
        self.theta = np.asarray(theta)
        self.scale = float(est.scale)
        self.fe_params = pd.Series(np.asarray(est.beta), index=model.exog_names)
        self._cov_fe = np.asarray(est.cov_beta)
        self.bse_fe = pd.Series(np.sqrt(np.diag(self._cov_fe)), index=model.exog_names)
        self.llf = -0.5 * float(est.objective)
        self.converged = opt.converged
        self.nobs = model.nobs
        self.k_fe = model.k_fe
        self.df_modelwc = model.k_fe + int(np.sum(opt.free_mask)) + 1
        factors = _term_factors(self.theta, model.structure)
        terms = []
        for t, T, blups, cc in zip(model.terms, factors, est.blups, est.cond_cov, strict=True):
            cov = self.scale * T @ T.T
            sd = np.sqrt(np.maximum(np.diagonal(np.asarray(cc), axis1=1, axis2=2), 0.0))
            terms.append(TermEstimate(t.group, t.names, cov, t.levels, np.asarray(blups), sd))
        self.term_estimates = terms
        self._cond_cov = [np.asarray(c) for c in est.cond_cov]
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False) and not name.startswith("_"):
            raise AttributeError(f"CrossedMixedLMResults is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ likelihood
    @property
    def aic(self) -> float:
        """``-2 llf + 2 k`` (from the REML criterion for REML fits, as lme4)."""
        return -2.0 * self.llf + 2.0 * self.df_modelwc

    @property
    def bic(self) -> float:
        """``-2 llf + k log(n)`` (as lme4)."""
        return -2.0 * self.llf + self.df_modelwc * math.log(self.nobs)

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a factor diagonal entry of ``θ`` below 1e-4."""
        mask = self.model.structure.diagonal_theta_mask()
        return bool(np.any(np.abs(self.theta[mask]) < SINGULAR_TOL))

    # ------------------------------------------------------------------ parameters
    @property
    def cov_re(self) -> dict[str, pd.DataFrame]:
        """``{group: covariance DataFrame}`` per term (keys as lme4's ``VarCorr``)."""
        return {
            name: pd.DataFrame(t.cov, index=list(t.names), columns=list(t.names))
            for name, t in zip(varcorr_names(self.term_estimates), self.term_estimates, strict=True)
        }

    @property
    def vcomp(self) -> np.ndarray:
        """Variances of the terms, one per term and column (data scale), with the terms in
        the order they were given (statsmodels' ``vc_formula`` order)."""
        terms = [self.term_estimates[k] for k in self.model.input_order]
        return np.concatenate([np.diag(t.cov) for t in terms])

    def cov_params(self) -> pd.DataFrame:
        """Covariance of the fixed effects (lme4's ``vcov``)."""
        names = list(self.fe_params.index)
        return pd.DataFrame(self._cov_fe, index=names, columns=names)

    @property
    def tvalues(self) -> pd.Series:
        """z statistics of the fixed effects, ``fe_params / bse_fe``."""
        return self.fe_params / self.bse_fe

    @property
    def pvalues(self) -> pd.Series:
        """Two-sided normal p-values of the fixed effects (z-tests, as statsmodels)."""
        return pd.Series(_norm_pvalue(self.tvalues.to_numpy()), index=self.fe_params.index)

    # ------------------------------------------------------------------ random effects
    @property
    def random_effects(self) -> dict[str, pd.DataFrame]:
        """``{factor: DataFrame}`` of BLUPs (levels x terms, data scale)."""
        return random_effects_by_factor(self.term_estimates)

    def ranef(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(ranef(m, condVar=TRUE))``: grpvar, term, grp, condval, condsd."""
        return ranef_frame(self.term_estimates)

    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: group, var1, var2, vcov, sdcor."""
        return varcorr_frame(self.term_estimates, self.scale)

    @cached_property
    def fittedvalues(self) -> np.ndarray:
        """``X β̂ + Z b̂`` per row."""
        fitted = self.model.exog @ self.fe_params.to_numpy()
        for t, est in zip(self.model.terms, self.term_estimates, strict=True):
            fitted = fitted + np.einsum("nq,nq->n", t.design, est.condval[t.codes])
        return fitted

    @property
    def resid(self) -> np.ndarray:
        """Conditional residuals ``y - fittedvalues``."""
        return self.model.endog - self.fittedvalues

    def summary(self, alpha: float = 0.05) -> "CrossedSummary":
        """Summary table of all factors (``print(result.summary())``)."""
        return CrossedSummary(self, alpha)

    def _repr_html_(self) -> str:
        """Notebook display (:func:`mixedjax.display_html.crossed_summary_html`)."""
        from mixedjax.display_html import crossed_summary_html

        return crossed_summary_html(self)

    def __repr__(self) -> str:
        groups = ", ".join(f"{t.group}: {t.levels.size}" for t in self.term_estimates)
        return (
            f"<CrossedMixedLMResults {self.method}: llf={self.llf:.4f}, nobs={self.nobs}, "
            f"groups=[{groups}], converged={self.converged}>"
        )


def _term_factors(theta: np.ndarray, structure) -> list[np.ndarray]:
    out = []
    for q, sl in zip(structure.q, structure.theta_slices(), strict=True):
        upper_rows, upper_cols = np.triu_indices(q)
        T = np.zeros((q, q))
        T[upper_cols, upper_rows] = theta[sl]
        out.append(T)
    return out


def summary_text(results, title: str = "Mixed Linear Model Regression Results") -> str:
    """Text summary: model info, fixed effects (z-tests), random effects (lme4 ``VarCorr``)."""
    from statistics import NormalDist

    r = results
    info = [
        f"Dependent Variable: {r.model.endog_names}   Method: {r.method}   "
        f"No. Observations: {r.nobs}",
        f"Log-Likelihood: {r.llf:.4f}   Scale: {r.scale:.4f}   "
        f"Converged: {'Yes' if r.converged else 'No'}   "
        f"Singular: {'Yes' if r.is_singular else 'No'}",
        "Groups: "
        + ", ".join(f"{t.group} {len(t.levels)}" for t in _unique_groups(r.term_estimates)),
    ]
    crit = NormalDist().inv_cdf(0.975)
    fe, se = r.fe_params, r.bse_fe
    z = fe / se
    coef = pd.DataFrame(
        {
            "Coef.": fe,
            "Std.Err.": se,
            "z": z,
            "P>|z|": _norm_pvalue(z.to_numpy()),
            "[0.025": fe - crit * se,
            "0.975]": fe + crit * se,
        }
    )
    vc = r.varcorr()
    vc[["var1", "var2"]] = (
        vc[["var1", "var2"]].astype(object).where(vc[["var1", "var2"]].notna(), "")
    )
    vc_text = vc.to_string(index=False, float_format=lambda v: f"{v:.4f}")
    coef_text = coef.to_string(float_format=lambda v: f"{v:.4f}")
    width = max(len(line) for line in [*info, *coef_text.splitlines(), *vc_text.splitlines()])
    return "\n".join(
        [title.center(width), "=" * width, *info, "-" * width, "Fixed effects:", coef_text]
        + ["-" * width, "Random effects:", vc_text, "=" * width]
    )


def _unique_groups(terms: list[TermEstimate]) -> list[TermEstimate]:
    seen, out = set(), []
    for t in terms:
        if t.group not in seen:
            seen.add(t.group)
            out.append(t)
    return out


class CrossedSummary:
    """Summary of a crossed fit; ``str()`` gives the text."""

    def __init__(self, results, alpha: float = 0.05):
        self.results = results
        self.alpha = alpha

    def as_text(self) -> str:
        """The summary as plain text (statsmodels' ``Summary.as_text``)."""
        return summary_text(self.results)

    __str__ = as_text
    __repr__ = as_text
