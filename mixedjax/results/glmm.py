"""Results of a GLMM fit: lme4's numbers and layouts (``glmer``'s ``summary``).

* ``llf = -D/2`` with ``D`` the minimised deviance (Laplace or quadrature,
  :mod:`mixedjax.engines.laplace`), constants included as lme4's Laplace ``logLik``;
  ``aic = -2 llf + 2 k``, ``bic = -2 llf + k log n`` with ``k = n_theta + p`` and ``n`` the
  number of rows (lme4's ``AIC``/``BIC``).
* ``deviance``: lme4's ``deviance()`` of a GLMM, the sum of the squared deviance residuals
  at the conditional modes; ``-2 llf`` is ``minus2loglik``.
* ``bse_fe``: from ``2 H⁻¹`` with ``H`` the exact Hessian of ``D`` over ``(θ, β)`` (lme4's
  ``vcov`` uses a finite-difference Hessian of the same function); for ``nAGQ = 0`` from
  lme4's ``RX'RX`` (given ``θ``, :mod:`mixedjax.engines.laplace_nagq0`);
* ``theta``: lme4's order (per term, the column-wise lower triangle of its relative factor),
  with non-negative diagonal;
* ``ranef()``: ``γ̂ = Λ û`` and the conditional SDs from ``Λ (L L')⁻¹ Λ'``.

For ``nAGQ > 1`` the log-likelihood here is the full marginal one (comparable with the
Laplace fit's); lme4 reports it without the saturated log-likelihood
(``llf_lme4 = llf - saturated_llf``).
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.covariance import psd_cholesky, theta_to_factor
from mixedjax.core.distributions import two_sided_normal_pvalue
from mixedjax.display.text import TextTable, text_tables
from mixedjax.display.varcorr import varcorr_table
from mixedjax.engines import laplace
from mixedjax.engines.laplace_rows import group_rows
from mixedjax.fit import glmm as glmm_fit
from mixedjax.fit.optimize import STATUS_CONVERGED, STATUS_MESSAGES
from mixedjax.fit.options import ConvergenceWarning
from mixedjax.results.layout import TermEstimate, ranef_frame, varcorr_frame
from mixedjax.spec.evaluation import in_namespace_of

#: lme4's ``isSingular`` tolerance.
SINGULAR_TOL = 1e-4


def canonical_theta(theta: np.ndarray, structure) -> np.ndarray:
    """``θ`` with the same ``Λ Λ'`` and a non-negative diagonal (the deviance depends on
    ``Λ`` only through ``Λ Λ'``; lme4 bounds the diagonal below by 0)."""
    factor = np.asarray(theta_to_factor(jnp.asarray(theta), structure))
    q = structure.k_re
    L = psd_cholesky(factor[:q, :q] @ factor[:q, :q].T) if q else np.zeros((0, 0))
    cols, rows = np.triu_indices(q)
    return np.concatenate([L[rows, cols], np.abs(theta[structure.k_re2 :])])


def fit_results(model, maxiter: int = 200, gtol: float = 1e-10) -> "MixedGLMResults":
    """Run :func:`mixedjax.fit.glmm.fit_glmm` on ``model`` and wrap the output."""
    structure = model.structure
    rows, row_index = group_rows(
        model.endog, model.weights, model.offset, model.exog, model.exog_re,
        model.group_codes, model.n_groups,
    )  # fmt: skip
    rows = type(rows)(*(jnp.asarray(a) for a in rows))
    theta0 = jnp.asarray(np.where(structure.diagonal_theta_mask(), 1.0, 0.0))
    kw = dict(family=model.family, structure=structure, maxiter=maxiter, gtol=gtol)
    if model.nAGQ == 0:
        out = glmm_fit.fit_glmm_nagq0(theta0, rows, **kw)
        return MixedGLMResults(model, out, np.asarray(out.hessian), rows, row_index)
    out = glmm_fit.fit_glmm(theta0, jnp.zeros(model.k_fe), rows, n_agq=model.nAGQ, **kw)
    hessian = np.asarray(out.hessian)
    if not np.all(np.isfinite(hessian)):
        hessian = np.asarray(
            glmm_fit.deviance_hessian(
                out.opt.x, rows, family=model.family, structure=structure, n_agq=model.nAGQ
            )
        )
    return MixedGLMResults(model, out, hessian, rows, row_index)


class MixedGLMResults:
    """A fitted :class:`~mixedjax.model.glmm.MixedGLM` (see the module docstring).

    Attributes:
        model: the model.
        fe_params: ``β̂`` (Series by fixed-effect name).
        bse_fe: their standard errors.
        theta: ``θ̂`` in lme4's order.
        llf, aic, bic, deviance, minus2loglik, df_resid: as lme4 reports them.
        converged: whether the optimiser met its gradient tolerance.
    """

    def __init__(self, model, out, hessian, rows, row_index):
        structure = model.structure
        self.model = model
        self.family = model.family
        self._out = out
        self._rows = rows
        self._row_index = row_index
        x = np.asarray(out.opt.x)
        n_theta = structure.n_theta
        self._theta_structure = canonical_theta(x[:n_theta], structure)
        fixed = slice(n_theta, n_theta + model.k_fe)  # x = (θ, β) or (θ, β, log φ)
        self.fe_params = pd.Series(x[fixed], index=model.exog_names)
        #: ``φ̂`` (Gamma, inverse Gaussian: estimated with ``θ, β``; otherwise 1)
        self.dispersion = float(np.exp(x[-1])) if self.family.has_dispersion else 1.0
        # lme4's θ is relative to the residual scale: Σ = φ Λ(θ)Λ(θ)' (φ = 1 without one)
        relative = self._theta_structure / np.sqrt(self.dispersion)
        self.theta = relative[model.theta_lme4_order]
        self.hessian = hessian
        self._fit_statistics(out.opt, n_theta)
        if model.nAGQ == 0:  # β given θ (lme4's RX'RX); the Hessian is over θ only
            self._covariance(hessian)  # warns if θ̂ is not at a minimum
            cov_fe = np.linalg.inv(np.asarray(out.fixed_information))
        else:
            cov_fe = self._covariance(hessian)[fixed, fixed]
        self._fixed_covariance(cov_fe)
        self._factor = np.asarray(theta_to_factor(jnp.asarray(self._theta_structure), structure))
        self._modes = np.asarray(out.modes)
        self._gamma = self._modes @ np.asarray(theta_to_factor(out.opt.x[:n_theta], structure)).T
        self._cond_cov = np.asarray(out.cond_cov)

    def _fit_statistics(self, opt, n_theta: int) -> None:
        """``objective``, ``llf``, ``aic``, ``bic``, ``df_resid``, ``minus2loglik``,
        ``status`` and ``converged`` from the optimiser's result (a warning if it did not
        converge)."""
        n = self.model.nobs
        self.objective = float(opt.value)
        self.llf = -0.5 * self.objective
        self.n_params = n_theta + self.model.k_fe + int(self.family.has_dispersion)
        self.aic = -2.0 * self.llf + 2.0 * self.n_params
        self.bic = -2.0 * self.llf + np.log(n) * self.n_params
        self.df_resid = n - self.n_params
        self.minus2loglik = -2.0 * self.llf
        self.status = int(opt.status)
        self.converged = self.status == STATUS_CONVERGED
        if not self.converged:
            warnings.warn(
                f"GLMM fit: {STATUS_MESSAGES[self.status]} (scaled gradient "
                f"{float(opt.scaled_grad):.2e})",
                ConvergenceWarning,
                stacklevel=4,
            )

    def _fixed_covariance(self, cov_fe: np.ndarray) -> None:
        """``cov_fe`` and ``bse_fe`` (named by the fixed effects)."""
        names = self.model.exog_names
        self.cov_fe = pd.DataFrame(cov_fe, index=names, columns=names)
        self.bse_fe = pd.Series(np.sqrt(np.maximum(np.diag(cov_fe), 0.0)), index=names)

    def _covariance(self, hessian: np.ndarray) -> np.ndarray:
        """``2 H⁻¹`` (lme4's ``vcov`` of ``(θ, β)``), with a warning if ``H`` is not
        positive definite (then the pseudo-inverse of its positive part)."""
        H = 0.5 * (hessian + hessian.T)
        eigval, eigvec = np.linalg.eigh(H)
        if not np.all(np.isfinite(eigval)):
            warnings.warn("GLMM fit: the Hessian of the deviance is not finite; standard "
                          "errors are NaN", RuntimeWarning, stacklevel=4)  # fmt: skip
            return np.full_like(H, np.nan)
        tol = 1e-10 * max(1.0, np.abs(eigval).max())
        if np.any(eigval <= tol):
            warnings.warn(
                "GLMM fit: the Hessian of the deviance over (theta, beta) is not positive "
                f"definite (smallest eigenvalue {eigval.min():.3g}); the fit may be singular "
                "or not at a minimum, and standard errors use its positive part",
                RuntimeWarning,
                stacklevel=4,
            )
        inv = np.where(eigval > tol, 1.0 / np.where(eigval > tol, eigval, 1.0), 0.0)
        return 2.0 * (eigvec * inv) @ eigvec.T

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular(tol = 1e-4)``: a standard-deviation-like ``θ`` entry (a diagonal
        entry of a relative factor) below 1e-4."""
        mask = self.model.structure.diagonal_theta_mask()
        relative = self._theta_structure[mask] / np.sqrt(self.dispersion)
        return bool(np.any(np.abs(relative) < SINGULAR_TOL))

    # ----------------------------------------------------------------- random effects
    def _term_estimates(self) -> list[TermEstimate]:
        model = self.model
        cov = self._factor @ self._factor.T
        sd = np.sqrt(np.maximum(np.diagonal(self._cond_cov, axis1=1, axis2=2), 0.0))
        columns, start = {}, 0
        for t in model.structure_terms:
            columns[id(t)] = np.arange(start, start + t.q)
            start += t.q
        out = []
        for t in model.terms:
            cols = columns[id(t)]
            out.append(
                TermEstimate(
                    t.group, t.names, cov[np.ix_(cols, cols)], model.group_labels,
                    self._gamma[:, cols], sd[:, cols],
                )
            )  # fmt: skip
        return out

    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: a ``Residual`` row (variance ``φ̂``) for the
        families with a dispersion, none for the binomial and Poisson (``φ = 1``)."""
        frame = varcorr_frame(self._term_estimates(), self.dispersion)
        if self.family.has_dispersion:
            return frame
        return frame[frame["group"] != "Residual"].reset_index(drop=True)

    def ranef(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(ranef(m, condVar = TRUE))``: grpvar, term, grp, condval,
        condsd."""
        return ranef_frame(self._term_estimates())

    @property
    def random_effects(self) -> dict:
        """``{group label: Series of γ̂}`` (statsmodels' layout)."""
        names = [n for t in self.model.structure_terms for n in t.names]
        return {
            label: pd.Series(self._gamma[i], index=names)
            for i, label in enumerate(self.model.group_labels)
        }

    # ----------------------------------------------------------------- fitted values
    def _per_row(self, values: np.ndarray) -> np.ndarray:
        out = np.empty(self.model.nobs)
        mask = self._row_index >= 0
        out[self._row_index[mask]] = np.asarray(values)[mask]
        return out

    def linear_predictor(self, conditional: bool = True) -> np.ndarray:
        """``η̂ = Xβ̂ + o (+ Zγ̂)`` per row."""
        model = self.model
        eta = model.exog @ self.fe_params.to_numpy() + model.offset
        if conditional:
            eta = eta + np.einsum("nr,nr->n", model.exog_re, self._gamma[model.group_codes])
        return eta

    @property
    def fittedvalues(self) -> np.ndarray:
        """Conditional means ``g⁻¹(η̂)`` per row (lme4's ``fitted``)."""
        return np.asarray(self.family.mean(jnp.asarray(self.linear_predictor())))

    def resid_deviance(self) -> np.ndarray:
        """Deviance residuals at the conditional modes (lme4's ``residuals(type="deviance")``)."""
        m = self.model
        mu = jnp.asarray(self.fittedvalues)
        return np.asarray(
            self.family.deviance_residuals(jnp.asarray(m.endog), mu, jnp.asarray(m.weights))
        )

    def resid_pearson(self) -> np.ndarray:
        """Pearson residuals (lme4's ``residuals(type="pearson")``)."""
        m = self.model
        mu = jnp.asarray(self.fittedvalues)
        return np.asarray(
            self.family.pearson_residuals(jnp.asarray(m.endog), mu, jnp.asarray(m.weights))
        )

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()`` of a GLMM: the sum of the squared deviance residuals at the
        conditional modes (not ``-2 llf``: that is :attr:`minus2loglik`)."""
        return float(np.sum(self.resid_deviance() ** 2))

    @property
    def saturated_llf(self) -> float:
        """``Σ_t log p(y_t | μ_t = y_t)`` (lme4's quadrature log-likelihood leaves it out)."""
        return float(laplace.saturated_loglik(self._rows, self.family))

    @property
    def llf_lme4(self) -> float:
        """The log-likelihood as lme4 prints it: ``llf`` for Laplace fits, ``llf -
        saturated_llf`` for binomial and Poisson quadrature (``nAGQ > 1``) fits."""
        if self.model.nAGQ <= 1 or self.family.has_dispersion:
            return self.llf
        return self.llf - self.saturated_llf

    # ----------------------------------------------------------------- prediction
    def predict(self, newdata: pd.DataFrame | None = None, type: str = "response",  # noqa: A002
                re_form: str | None = "conditional") -> np.ndarray:  # fmt: skip
        """Predictions on the training rows or on ``newdata`` (formula models).

        Args:
            newdata: rows to predict (the training rows when ``None``); levels of the
                grouping factor the fit never saw get zero random effects (lme4's
                ``allow.new.levels = TRUE``).
            type: ``"response"`` (``g⁻¹(η)``) or ``"link"`` (``η``).
            re_form: ``"conditional"`` (with the random effects) or ``None`` (population
                level, lme4's ``re.form = NA``).
        """
        if type not in ("response", "link"):
            raise ValueError(f"type must be 'response' or 'link', got {type!r}")
        if re_form not in ("conditional", None):
            raise ValueError(f"re_form must be 'conditional' or None, got {re_form!r}")
        conditional = re_form == "conditional"
        if newdata is None:
            eta = self.linear_predictor(conditional)
        else:
            eta = self._eta_newdata(newdata, conditional)
        return eta if type == "link" else np.asarray(self.family.mean(jnp.asarray(eta)))

    @in_namespace_of(lambda results: results.model)
    def _eta_newdata(self, newdata: pd.DataFrame, conditional: bool) -> np.ndarray:
        from mixedjax.spec.formula import spec_matrix
        from mixedjax.spec.lme4_formula import parse_formula
        from mixedjax.spec.terms import terms_on_newdata

        model = self.model
        if model.formula is None:
            raise ValueError("predict(newdata=...) needs a model built from a formula")
        if not isinstance(newdata, pd.DataFrame):
            raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
        fixed = parse_formula(model._model_formula).fixed
        rhs = fixed.partition("~")[2]
        X = spec_matrix(rhs, model.data, newdata, "the fixed part")
        eta = X @ self.fe_params.to_numpy()
        offset = model._offset_spec.evaluate(newdata, training=False)
        if offset is not None:
            eta = eta + offset
        if not conditional:
            return eta
        random_rhs = model._model_formula.partition("~")[2]
        blocks = terms_on_newdata("y ~ " + random_rhs, model.data, newdata, model.terms)
        estimates = self._term_estimates()
        for (design, codes), est in zip(blocks, estimates, strict=True):
            known = codes >= 0
            values = np.where(known[:, None], est.condval[np.maximum(codes, 0)], 0.0)
            eta = eta + np.einsum("nq,nq->n", design, values)
        return eta

    # ----------------------------------------------------------------- display
    def summary(self) -> "GLMMSummary":
        """lme4-style summary (``str()`` for text; ``tables`` for the DataFrames)."""
        return GLMMSummary(self)

    def __repr__(self) -> str:
        return str(self.summary())


class GLMMSummary:
    """``summary(glmer fit)``: fit statistics, random effects, fixed effects (z tests)."""

    def __init__(self, results: MixedGLMResults):
        self.results = r = results
        fe, se = r.fe_params, r.bse_fe
        z = fe / se
        self.coefficients = pd.DataFrame(
            {
                "Estimate": fe,
                "Std. Error": se,
                "z value": z,
                "Pr(>|z|)": two_sided_normal_pvalue(z.to_numpy()),
            }
        )
        self.fit_statistics = pd.DataFrame(
            [[r.aic, r.bic, r.llf_lme4, r.minus2loglik, r.df_resid]],
            columns=["AIC", "BIC", "logLik", "-2*log(L)", "df.resid"],
        )
        self.random_effects = varcorr_table(r)[["Groups", "Name", "Variance", "Std.Dev.", "Corr"]]
        self.tables = [self.fit_statistics, self.random_effects, self.coefficients]

    def as_text(self) -> str:
        r, m = self.results, self.results.model
        method = {0: "Laplace, fixed effects by PIRLS (nAGQ = 0)", 1: "Laplace"}.get(
            m.nAGQ, f"adaptive Gauss-Hermite ({m.nAGQ} nodes)"
        )
        info = np.array(
            [
                ["Family:", f"{m.family.name} ({m.family.link.name})"],
                ["Approximation:", method],
                ["Formula:", str(m.formula or m.endog_names)],
                ["No. Observations:", str(m.nobs)],
                [f"Groups ({m.group_name}):", str(m.n_groups)],
                ["Converged:", "Yes" if r.converged else "No"],
                ["Singular:", "Yes" if r.is_singular else "No"],
            ]
        )
        stats = self.fit_statistics.map(lambda v: f"{v:.1f}" if isinstance(v, float) else str(v))
        ranef = self.random_effects
        coef = self.coefficients.map(lambda v: f"{v:.4g}" if abs(v) < 1e-3 else f"{v:.4f}")
        return text_tables(
            [
                TextTable(info, align="l"),
                TextTable(stats.to_numpy(dtype=str), header=list(stats.columns)),
                TextTable(ranef.to_numpy(dtype=str), header=list(ranef.columns), align="l"),
                TextTable(
                    coef.to_numpy(dtype=str),
                    header=list(coef.columns),
                    stubs=[str(i) for i in coef.index],
                ),
            ],
            title="Generalized Linear Mixed Model fit by maximum likelihood",
        )

    def __str__(self) -> str:
        return self.as_text()

    __repr__ = __str__
