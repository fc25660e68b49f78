"""Results of a GLMM on several grouping factors (crossed or nested), fitted by
:mod:`mixedjax.fit.glmm_terms`.

:class:`CrossedGLMMResults` is a :class:`~mixedjax.results.glmm.MixedGLMResults`: everything
whose meaning does not depend on the structure (``llf``, ``aic``, ``bic``, ``deviance``,
residuals, ``varcorr()``, ``ranef()``, ``summary()``, ``predict`` on new data with new
levels at zero) is the one-factor code; this module supplies what does: the per-term
estimates (``T_k T_k'`` and each level's conditional mode and SD), ``random_effects`` keyed
by factor (a DataFrame of levels x terms each, as the crossed LMM), and the linear
predictor ``Xβ̂ + o + Σ_k Z_k γ̂_k`` on the training rows.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.design.crossed import CrossedStructure
from mixedjax.engines.crossed import term_factors
from mixedjax.engines.laplace_terms import term_rows
from mixedjax.fit.glmm_terms import fit_glmm_terms, lme4_start
from mixedjax.results.glmm import MixedGLMResults
from mixedjax.results.layout import TermEstimate


def fit_crossed_results(model, maxiter: int = 200, gtol: float = 1e-10) -> "CrossedGLMMResults":
    """Fit a several-factor :class:`~mixedjax.model.glmm.MixedGLM` and wrap the output."""
    structure: CrossedStructure = model.structure
    rows = term_rows(
        model.endog, model.weights, model.offset, model.exog,
        [t.design for t in model.terms], [t.codes for t in model.terms], structure,
    )  # fmt: skip
    rows = jax.device_put(rows)
    out = fit_glmm_terms(
        lme4_start(structure), jnp.zeros(model.k_fe), rows, family=model.family,
        structure=structure, maxiter=int(maxiter), gtol=float(gtol),
    )  # fmt: skip
    return CrossedGLMMResults(model, out, rows)


class CrossedGLMMResults(MixedGLMResults):
    """A fitted several-factor GLMM (see the module docstring); attributes as
    :class:`~mixedjax.results.glmm.MixedGLMResults`."""

    def __init__(self, model, out, rows):  # noqa: D107  (a different fit output)
        structure = model.structure
        self.model = model
        self.family = model.family
        self._out = out
        self._rows = rows
        x = np.asarray(out.opt.x)
        n_theta = structure.n_theta
        self.theta = x[:n_theta]  # lme4's order and sign convention already
        self._theta_structure = self.theta
        self.fe_params = pd.Series(x[n_theta:], index=model.exog_names)
        self.dispersion = 1.0  # the crossed engine fits families without a dispersion
        self.hessian = np.asarray(out.hessian)
        self._fit_statistics(out.opt, n_theta)
        self._fixed_covariance(self._covariance(self.hessian)[n_theta:, n_theta:])
        self._factors = [np.asarray(T) for T in term_factors(jnp.asarray(self.theta), structure)]
        self._gammas = [np.asarray(g) for g in out.random_effects]
        self._cond_covs = [np.asarray(c) for c in out.cond_cov]

    def _term_estimates(self) -> list[TermEstimate]:
        out = []
        for t, T, gamma, cc in zip(
            self.model.terms, self._factors, self._gammas, self._cond_covs, strict=True
        ):
            sd = np.sqrt(np.maximum(np.diagonal(cc, axis1=1, axis2=2), 0.0))
            out.append(TermEstimate(t.group, t.names, T @ T.T, t.levels, gamma, sd))
        return out

    @property
    def random_effects(self) -> dict:
        """``{factor: DataFrame (levels x terms)}``; a factor with several terms (``||``)
        gets one column per term's column."""
        out: dict[str, pd.DataFrame] = {}
        for est in self._term_estimates():
            frame = pd.DataFrame(est.condval, index=list(est.levels), columns=list(est.names))
            out[est.group] = frame if est.group not in out else out[est.group].join(frame)
        return out

    def linear_predictor(self, conditional: bool = True) -> np.ndarray:
        """``η̂ = Xβ̂ + o (+ Σ_k Z_k γ̂_k)`` per row."""
        model = self.model
        eta = model.exog @ self.fe_params.to_numpy() + model.offset
        if conditional:
            for t, gamma in zip(model.terms, self._gammas, strict=True):
                eta = eta + np.einsum("nq,nq->n", t.design, gamma[t.codes])
        return eta
