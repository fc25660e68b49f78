"""Results of a :class:`~mixedjax.model.crossed.CrossedMixedLM` fit.

The interface follows :class:`~mixedjax.results.mixedlm.MixedLMResults` where it has a meaning
with several grouping factors: ``fe_params``, ``bse_fe``, ``tvalues``, ``pvalues``,
``scale``, ``llf``, ``aic``, ``bic``, ``theta``, ``is_singular``, ``optim``,
``fittedvalues``, ``resid``, ``ranef()``, ``varcorr()``, ``summary()``, and the inference
of :class:`~mixedjax.results.common.InferenceMixin` (``params``/``bse``/``cov_params()``
in statsmodels' packed layout, ``bse_re``, ``t_test``, ``wald_test``, ``coef_table`` with
Satterthwaite/Kenward-Roger df, ``conf_int``, ``check_convergence``). Random effects
are per factor: ``random_effects[factor]`` is a DataFrame (levels x terms) and
``cov_re[group]`` the covariance of each term (keys as in ``varcorr()``).

Variance parameters in ``params`` (profile scale, divided by σ²) and ``bse_re`` (data
scale) come term by term in the order the terms were given (statsmodels' ``vc_formula``
order), each term's covariance as its row-major lower triangle, named ``"{group} Var"`` for
an intercept-only term and ``"{group} {a} Var"`` / ``"{group} {a} x {b} Cov"`` otherwise.
A term whose covariance is exactly zero (on the boundary) is held at zero in the
information matrix; its Wald standard errors are NaN (with a warning).
"""

import warnings
from functools import cached_property

import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.distributions import two_sided_normal_pvalue
from mixedjax.engines.crossed import CrossedEstimates
from mixedjax.engines.gls import crossed_theta_to_user
from mixedjax.fit.estimation import SINGULAR_TOL
from mixedjax.results.common import InferenceMixin
from mixedjax.results.features import PostFitMethods
from mixedjax.results.layout import (
    TermEstimate,
    random_effects_by_factor,
    ranef_frame,
    varcorr_frame,
    varcorr_names,
)
from mixedjax.results.mixedlm import OptSummary


class CrossedMixedLMResults(InferenceMixin, PostFitMethods):
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

    def __init__(
        self, model, theta, est: CrossedEstimates, opt: OptSummary, reml: bool, information=None
    ):
        object.__setattr__(self, "_frozen", False)
        # the fit's program computed the information (bse and summary() compile nothing)
        object.__setattr__(self, "_engine_information", information)
        self.model = model
        self.reml = reml
        self.method = "REML" if reml else "ML"
        self.optim = opt.attach(self.check_convergence, self._theta_names)
        self.theta = np.asarray(theta)
        self.scale = float(est.scale)
        self.fe_params = pd.Series(np.asarray(est.beta), index=model.exog_names)
        self._cov_fe = np.asarray(est.cov_beta)
        self.bse_fe = pd.Series(np.sqrt(np.diag(self._cov_fe)), index=model.exog_names)
        self.llf = -0.5 * float(est.objective) + model.rows.loglik_jacobian
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
    def _theta_names(self) -> list[str]:
        """lme4's names of the entries of ``θ``: ``sd_`` on each factor's diagonal, ``cor_``
        below it (column-wise lower triangle per term, θ order)."""
        names = []
        for key, t in zip(varcorr_names(self.term_estimates), self.term_estimates, strict=True):
            upper_rows, upper_cols = np.triu_indices(len(t.names))
            for i, j in zip(upper_cols, upper_rows, strict=True):
                a, b = t.names[i], t.names[j]
                names.append(f"sd_{a}|{key}" if i == j else f"cor_{a}.{b}|{key}")
        return names

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

    # ------------------------------------------------------------------ inference
    @cached_property
    def _term_order(self) -> list[int]:
        """Position in θ order of each term, in ``params`` order (the order given)."""
        return list(self.model.input_order)

    @cached_property
    def _phi_permutation(self) -> np.ndarray:
        """Indices into the engine's ``γ`` (θ order) giving ``_phi`` (``params`` order)."""
        starts = np.cumsum([0] + [q * (q + 1) // 2 for q in self.model.structure.q])
        blocks = [np.arange(starts[k], starts[k + 1]) for k in self._term_order]
        return np.concatenate(blocks + [[starts[-1]]]).astype(int)

    @cached_property
    def _engine_phi(self) -> np.ndarray:
        """Data-scale ``γ`` of :mod:`mixedjax.engines.gls` (terms in θ order, then σ²)."""
        return crossed_theta_to_user(self.theta, self.scale, self.model.structure)

    @property
    def _phi(self) -> np.ndarray:
        return self._engine_phi[self._phi_permutation]

    @cached_property
    def _variance_names(self) -> list[str]:
        keys = varcorr_names(self.term_estimates)
        names = []
        for k in self._term_order:
            key, t = keys[k], self.term_estimates[k]
            if t.names == ("(Intercept)",):
                names.append(f"{key} Var")
                continue
            rows, cols = np.tril_indices(len(t.names))
            for i, j in zip(rows, cols, strict=True):
                if i == j:
                    names.append(f"{key} {t.names[i]} Var")
                else:
                    names.append(f"{key} {t.names[j]} x {t.names[i]} Cov")
        return names

    @property
    def params(self) -> pd.Series:
        """statsmodels' packed parameters: β, then each term's ``tril(Ψ_k)/σ²`` row-major
        (terms in the order given)."""
        values = np.concatenate([self.fe_params.to_numpy(), self._phi[:-1] / self.scale])
        return pd.Series(values, index=list(self.fe_params.index) + self._variance_names)

    @cached_property
    def _cov_user(self) -> np.ndarray:
        """Inverse observed information of ``_phi`` (exact autodiff Hessian of the full
        likelihood, β profiled out; :func:`mixedjax.engines.information.variance_information`)."""
        from mixedjax.engines.information import invert_information, variance_information

        structure = self.model.structure
        info = self._engine_information
        if info is None:
            info = variance_information(
                jnp.asarray(self._engine_phi), self.model.data, structure=structure,
                reml=self.reml,
            )  # fmt: skip
        info = np.array(info)
        held = np.zeros(info.shape[0], dtype=bool)
        starts = np.cumsum([0] + [q * (q + 1) // 2 for q in structure.q])
        zero_terms = []
        for k, t in enumerate(self.term_estimates):
            if np.all(np.asarray(t.cov) == 0):
                held[starts[k] : starts[k + 1]] = True
                zero_terms.append(t.group)
        info[held, :] = 0.0
        info[:, held] = 0.0
        if not np.all(np.isfinite(info)):
            warnings.warn(
                "the information matrix of the variance parameters is not finite (a term's "
                "covariance is singular but not zero): their Wald standard errors are NaN",
                UserWarning,
                stacklevel=3,
            )
            return np.full(info.shape, np.nan)
        cov = invert_information(info)
        if zero_terms:
            warnings.warn(
                f"variance parameters of {zero_terms} are on the boundary (zero): they are "
                "held at zero in the information matrix and their Wald standard errors are NaN",
                UserWarning,
                stacklevel=3,
            )
            cov[held, :] = np.nan
            cov[:, held] = np.nan
        perm = self._phi_permutation
        return cov[np.ix_(perm, perm)]

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
        """``X β̂ + Z b̂ + offset`` per row."""
        fitted = self.model.exog @ self.fe_params.to_numpy() + self.model.rows.offset
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
        """Notebook display (:func:`mixedjax.display.html.crossed_summary_html`)."""
        from mixedjax.display.html import crossed_summary_html

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
            "P>|z|": two_sided_normal_pvalue(z.to_numpy()),
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
