"""The crossed engine's layout of a fit's results (several grouping factors, or
statsmodels' one-group crossed spelling): what :class:`~mixedjax.results.mixedlm.MixedLMResults`
asks of :data:`CROSSED` when its model's ``structure`` is a
:class:`~mixedjax.design.crossed.CrossedStructure`.

Random effects are per factor: ``random_effects[factor]`` is a DataFrame (levels x terms)
and ``cov_re[group]`` the covariance of each term (keys as in ``varcorr()``).

Variance parameters in ``params`` (profile scale, divided by σ²) and ``bse_re`` (data
scale) come term by term in the order the terms were given (statsmodels' ``vc_formula``
order), each term's covariance as its row-major lower triangle, named ``"{group} Var"`` for
an intercept-only term and ``"{group} {a} Var"`` / ``"{group} {a} x {b} Cov"`` otherwise.
A term whose covariance is exactly zero (on the boundary) is held at zero in the
information matrix; its Wald standard errors are NaN (with a warning).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.distributions import two_sided_normal_pvalue
from mixedjax.engines.crossed import CrossedEstimates
from mixedjax.engines.gls import crossed_theta_to_user
from mixedjax.results.layout import (
    TermEstimate,
    random_effects_by_factor,
    ranef_frame,
    varcorr_frame,
    varcorr_names,
)


class CrossedLayout:
    """Results layout of the crossed engine (stateless; every method takes the results)."""

    def populate(self, r, est: CrossedEstimates) -> None:
        """Set the per-term estimates on the (not yet frozen) results ``r``:
        ``term_estimates`` (lme4's order), ``_cond_cov`` (per term ``(levels, q, q)``),
        ``cov_re`` and ``vcomp``."""
        model = r.model
        factors = _term_factors(r.theta, model.structure)
        terms = []
        for t, T, blups, cc in zip(model.terms, factors, est.blups, est.cond_cov, strict=True):
            cov = r.scale * T @ T.T
            sd = np.sqrt(np.maximum(np.diagonal(np.asarray(cc), axis1=1, axis2=2), 0.0))
            terms.append(TermEstimate(t.group, t.names, cov, t.levels, np.asarray(blups), sd))
        r.term_estimates = terms
        r._cond_cov = [np.asarray(c) for c in est.cond_cov]
        #: ``{group: covariance DataFrame}`` per term (keys as lme4's ``VarCorr``)
        r._cov_re_pd = {
            name: pd.DataFrame(t.cov, index=list(t.names), columns=list(t.names))
            for name, t in zip(varcorr_names(terms), terms, strict=True)
        }
        #: variances of the terms, one per term and column (data scale), terms in the
        #: order they were given (statsmodels' ``vc_formula`` order)
        r.vcomp = np.concatenate([np.diag(terms[k].cov) for k in model.input_order])

    # ------------------------------------------------------------------ parameters
    def theta_names(self, r) -> list[str]:
        """lme4's names of the entries of ``θ``: ``sd_`` on each factor's diagonal, ``cor_``
        below it (column-wise lower triangle per term, θ order)."""
        names = []
        for key, t in zip(varcorr_names(r.term_estimates), r.term_estimates, strict=True):
            upper_rows, upper_cols = np.triu_indices(len(t.names))
            for i, j in zip(upper_cols, upper_rows, strict=True):
                a, b = t.names[i], t.names[j]
                names.append(f"sd_{a}|{key}" if i == j else f"cor_{a}.{b}|{key}")
        return names

    def _phi_permutation(self, r) -> np.ndarray:
        """Indices into the engine's ``γ`` (θ order) giving ``_phi`` (``params`` order)."""
        starts = np.cumsum([0] + [q * (q + 1) // 2 for q in r.model.structure.q])
        blocks = [np.arange(starts[k], starts[k + 1]) for k in r.model.input_order]
        return np.concatenate(blocks + [[starts[-1]]]).astype(int)

    def engine_phi(self, r) -> np.ndarray:
        """Data-scale ``γ`` of :mod:`mixedjax.engines.gls` (terms in θ order, then σ²)."""
        return crossed_theta_to_user(r.theta, r.scale, r.model.structure)

    def phi(self, r) -> np.ndarray:
        return r._engine_phi[self._phi_permutation(r)]

    def _variance_names(self, r) -> list[str]:
        keys = varcorr_names(r.term_estimates)
        names = []
        for k in r.model.input_order:
            key, t = keys[k], r.term_estimates[k]
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

    def params(self, r) -> pd.Series:
        """statsmodels' packed parameters: β, then each term's ``tril(Ψ_k)/σ²`` row-major
        (terms in the order given)."""
        values = np.concatenate([r._fe_params_pd.to_numpy(), r._phi[:-1] / r.scale])
        return pd.Series(values, index=list(r._fe_params_pd.index) + self._variance_names(r))

    def cov_user(self, r, information) -> np.ndarray:
        """Inverse observed information of ``_phi`` (exact autodiff Hessian of the full
        likelihood, β profiled out; :func:`mixedjax.engines.information.variance_information`),
        from the fit program's ``information`` where it computed it."""
        from mixedjax.engines.information import invert_information, variance_information

        structure = r.model.structure
        info = information
        if info is None:
            info = variance_information(
                jnp.asarray(r._engine_phi), r.model.data, structure=structure, reml=r.reml
            )
        info = np.array(info)
        held = np.zeros(info.shape[0], dtype=bool)
        starts = np.cumsum([0] + [q * (q + 1) // 2 for q in structure.q])
        zero_terms = []
        for k, t in enumerate(r.term_estimates):
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
                stacklevel=4,
            )
            return np.full(info.shape, np.nan)
        cov = invert_information(info)
        if zero_terms:
            warnings.warn(
                f"variance parameters of {zero_terms} are on the boundary (zero): they are "
                "held at zero in the information matrix and their Wald standard errors are NaN",
                UserWarning,
                stacklevel=4,
            )
            cov[held, :] = np.nan
            cov[:, held] = np.nan
        perm = self._phi_permutation(r)
        return cov[np.ix_(perm, perm)]

    # ------------------------------------------------------------------ random effects
    def random_effects(self, r) -> dict[str, pd.DataFrame]:
        """``{factor: DataFrame}`` of BLUPs (levels x terms, data scale)."""
        return random_effects_by_factor(r.term_estimates)

    def ranef(self, r) -> pd.DataFrame:
        return ranef_frame(r.term_estimates)

    def varcorr(self, r) -> pd.DataFrame:
        return varcorr_frame(r.term_estimates, r.scale)

    def fittedvalues(self, r) -> np.ndarray:
        """``X β̂ + Z b̂ + offset`` per row."""
        model = r.model
        fitted = model.exog @ r._fe_params_pd.to_numpy() + model.rows.offset
        for t, est in zip(model.terms, r.term_estimates, strict=True):
            fitted = fitted + np.einsum("nq,nq->n", t.design, est.condval[t.codes])
        return fitted

    # ------------------------------------------------------------------ display
    def summary(self, r, alpha: float = 0.05, **names) -> "CrossedSummary":
        """The crossed summary; of statsmodels' names only ``title`` applies."""
        return CrossedSummary(r, alpha, title=names.get("title"))

    def html(self, r) -> str:
        """Notebook display (:func:`mixedjax.display.html.crossed_summary_html`)."""
        from mixedjax.display.html import crossed_summary_html

        return crossed_summary_html(r)

    def groups(self, r) -> str:
        """The grouping factors for ``repr``: ``"[plate: 24, sample: 6]"``."""
        return "[" + ", ".join(f"{t.group}: {t.levels.size}" for t in r.term_estimates) + "]"


#: The crossed engine's results layout.
CROSSED = CrossedLayout()


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
    fe, se = r._fe_params_pd, r._bse_fe_pd
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

    def __init__(self, results, alpha: float = 0.05, title: str | None = None):
        self.results = results
        self.alpha = alpha
        self.title = "Mixed Linear Model Regression Results" if title is None else str(title)

    def as_text(self) -> str:
        """The summary as plain text (statsmodels' ``Summary.as_text``)."""
        return summary_text(self.results, self.title)

    __str__ = as_text
    __repr__ = as_text
