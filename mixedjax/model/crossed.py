"""``CrossedMixedLM``: models with several grouping factors (crossed or nested).

Built by :func:`mixedjax.mixedlm` / ``MixedLM.from_formula`` from an lme4 formula such as
``y ~ x + (1 | f1) + (1 | f2)``, or from statsmodels' spelling of crossed effects (one
all-rows group plus indicator variance components). The likelihood is the blocked Cholesky
of :mod:`mixedjax.engines.crossed`; cross-products are computed once by
:mod:`mixedjax.design.crossed`; the fit runs the core optimiser
(:func:`mixedjax.fit.optimize.minimize`) under ``jit``.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.watchdog import wait_ready
from mixedjax.design.crossed import crossed_crossprods
from mixedjax.design.weights import PriorWeights, row_weights
from mixedjax.fit.crossed import (
    NEWTON_MAX_DENSE,
    STALL_FACTOR,
    CrossedProgramOutput,
    deviance_at,
    fit_program,
)
from mixedjax.fit.optimize import STATUS_CONVERGED, STATUS_MESSAGES, STATUS_STALLED
from mixedjax.spec.offsets import OffsetSpec
from mixedjax.spec.terms import RandomTerm
from mixedjax.spec.validation import check_full_rank


class CrossedMixedLM(PriorWeights):
    """Linear mixed model with any number of random-effects terms on any grouping factors.

    Args:
        endog: ``(n,)`` response.
        exog: ``(n, p)`` fixed-effects design.
        terms: the random-effects terms (:class:`~mixedjax.spec.terms.RandomTerm`), any order.
        exog_names: names of the fixed effects.
        endog_name: name of the response.

    Usually built from an lme4 formula with crossed factors:

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("penicillin")
        >>> m = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
        >>> type(m).__name__
        'CrossedMixedLM'
        >>> round(m.fit().llf, 3)  # lme4: -165.430
        -165.43
    """

    def __init__(
        self,
        endog,
        exog,
        terms: list[RandomTerm],
        exog_names=None,
        endog_name="y",
        weights=None,
        offset=None,
    ):
        self.endog = np.asarray(endog, dtype=float)
        self.exog = np.asarray(exog, dtype=float)
        n = self.endog.shape[0]
        if self.exog.ndim != 2 or self.exog.shape[0] != n:
            raise ValueError(f"exog must be (n, p) with n = {n}, got {self.exog.shape}")
        self.exog_names = list(exog_names or [f"x{j}" for j in range(self.exog.shape[1])])
        check_full_rank(self.exog, self.exog_names)
        if np.ptp(self.endog) == 0:
            raise ValueError("endog is constant: a mixed model needs a varying response")
        order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
        self.terms = [terms[k] for k in order]
        #: position in ``terms`` of each term as given (statsmodels' ``vcomp`` order)
        self.input_order = [order.index(k) for k in range(len(terms))]
        self.endog_names = str(endog_name)
        self.nobs = n
        self.k_fe = self.exog.shape[1]
        self.rows = row_weights(weights, offset, n)
        self.offset_spec = OffsetSpec((), None, self.rows.offset_or_none)
        for name, values in (("weights", self.rows.weights), ("offset", self.rows.offset)):
            if values.ndim and not np.all(np.isfinite(values)):
                raise ValueError(f"missing or non-finite values in {name}")
        # the likelihood sees the working rows W^{1/2}(y - o), W^{1/2}X, W^{1/2}Z
        self._working_exog = self.rows.working_design(self.exog)
        self._working_endog = self.rows.working_response(self.endog)
        working_terms = [t._replace(design=self.rows.working_design(t.design)) for t in self.terms]
        self._working_terms = working_terms
        self.structure, self.data = crossed_crossprods(
            working_terms, self._working_exog, self._working_endog
        )

    @property
    def n_theta(self) -> int:
        """Length of ``θ`` (all terms' covariance factors)."""
        return self.structure.n_theta

    def default_theta(self) -> np.ndarray:
        """Start: each term's factor diagonal, ``1/rms`` of its column (1 for an intercept);
        intercept-only terms get a moment estimate instead (:meth:`moment_start`)."""
        parts = []
        moments = self.moment_start()
        for t, moment in zip(self.terms, moments, strict=True):
            rms = np.sqrt(np.mean(t.design**2, axis=0))
            rms = np.where(rms > 0, rms, 1.0)
            T = np.diag(1.0 / rms) if moment is None else np.array([[moment]])
            upper_rows, upper_cols = np.triu_indices(t.q)
            parts.append(T[upper_cols, upper_rows])
        return np.concatenate(parts)

    def moment_start(self) -> list:
        """Relative SDs ``√(v_k/σ²)`` of intercept-only terms from one-way moments (``None``
        for other terms): ``v_k`` = weighted variance of the level means of the OLS
        residuals minus their sampling variance, ``σ²`` = what is left of the residual
        variance. Clipped to ``[0.1, 10]`` (a start at 0 is a stationary point). One pass
        over the rows; it cuts the quasi-Newton iterations of large crossed fits."""
        beta, *_ = np.linalg.lstsq(self._working_exog, self._working_endog, rcond=None)
        resid = self._working_endog - self._working_exog @ beta
        total = float(resid @ resid) / max(self.nobs - self.k_fe, 1)
        out, variances = [], []
        for t in self.terms:
            if t.names != ("(Intercept)",) or not np.all(t.design == 1):
                out.append(None)
                continue
            counts = np.bincount(t.codes, minlength=t.n_levels).astype(float)
            sums = np.bincount(t.codes, weights=resid, minlength=t.n_levels)
            within = np.bincount(t.codes, weights=resid**2, minlength=t.n_levels)
            used = counts > 0
            means = sums[used] / counts[used]
            within_var = (within.sum() - (sums[used] * means).sum()) / max(
                self.nobs - used.sum(), 1
            )
            between = np.average(means**2, weights=counts[used]) - within_var * np.mean(
                1.0 / counts[used]
            )
            variances.append(max(between, 0.0))
            out.append(len(variances) - 1)
        sigma2 = max(total - sum(variances), 0.1 * total)
        return [
            None if o is None else float(np.clip(np.sqrt(variances[o] / sigma2), 0.1, 10.0))
            for o in out
        ]

    def deviance(self, theta, reml: bool = True) -> float:
        """Profiled objective (``-2 log L`` or the REML criterion) at ``θ`` (lme4 layout;
        with prior weights it includes lme4's ``-Σ log w``)."""
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.size != self.n_theta:
            raise ValueError(f"theta has length {theta.size}; expected {self.n_theta}")
        working = deviance_at(jnp.asarray(theta), self.data, structure=self.structure, reml=reml)
        return float(working) - 2.0 * self.rows.loglik_jacobian

    def loglike(self, theta, reml: bool = True) -> float:
        """Profiled log-likelihood at ``θ``."""
        return -0.5 * self.deviance(theta, reml)

    def fit(
        self,
        start_params=None,
        reml: bool = True,
        free=None,
        method=None,
        *,
        maxiter: int = 500,
        gtol: float = 1e-9,
        **kwargs,
    ):
        """Fit by REML (default) or ML; returns ``CrossedMixedLMResults``.

        ``start_params`` and ``free`` are vectors over ``θ`` (lme4's ``theta`` layout);
        statsmodels' optimiser keywords are accepted and ignored.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("penicillin")
            >>> m = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
            >>> r = m.fit()
            >>> round(r.llf, 3), r.varcorr()["group"].tolist()  # lme4 REML criterion 330.8606
            (-165.43, ['plate', 'sample', 'Residual'])
        """
        from mixedjax.fit.options import _IGNORED_FIT_KWARGS, ConvergenceWarning, _choose_method
        from mixedjax.results.crossed import CrossedMixedLMResults
        from mixedjax.results.mixedlm import OptSummary

        if kwargs.pop("fe_pen", None) is not None:
            raise ValueError("fe_pen (a fixed-effects penalty inside fit) is not supported")
        cov_pen = kwargs.pop("cov_pen", None)
        if cov_pen is not None:  # no correlated random effects (k_re = 0, as statsmodels'
            from mixedjax.model.penalties import as_cov_penalty  # spelling): warn, no effect

            as_cov_penalty(cov_pen, 0)
        unknown = set(kwargs) - _IGNORED_FIT_KWARGS
        if unknown:
            raise TypeError(f"fit got unexpected keyword argument(s) {sorted(unknown)}")
        method = _choose_method(method)
        theta0 = self.default_theta() if start_params is None else np.asarray(start_params, float)
        free_mask = np.ones(self.n_theta, bool) if free is None else np.asarray(free) != 0
        if theta0.shape != (self.n_theta,) or free_mask.shape != (self.n_theta,):
            raise ValueError(f"start_params and free must have length {self.n_theta} (theta)")
        out: CrossedProgramOutput = fit_program(
            theta0,  # host arrays: jnp.asarray would compile a copy program per shape
            free_mask,
            self.data,
            1.0 if reml else 0.0,
            gtol,
            structure=self.structure,
            method=method,
            maxiter=int(maxiter),
            newton_steps=8 if self.structure.n_dense + self.k_fe < NEWTON_MAX_DENSE else 0,
        )
        out = jax.device_get(wait_ready(out, what="crossed optimiser"))
        result = out.opt
        theta, value = np.asarray(out.theta, dtype=float), float(out.value)
        zeroed = tuple(int(i) for i in np.flatnonzero(out.zeroed))
        status = int(result.status)
        converged = status == STATUS_CONVERGED
        message = STATUS_MESSAGES[status]
        if status == STATUS_STALLED and float(result.scaled_grad) <= STALL_FACTOR * gtol:
            # the line search met the objective's rounding noise: as converged as it gets
            converged = True
            message = (
                f"converged: the line search stalled at rounding noise with scaled gradient "
                f"{float(result.scaled_grad):.1e} <= {STALL_FACTOR:g} * gtol"
            )
        summary = OptSummary.from_opt(
            result, method=method, theta_start=theta0, theta=theta, objective=value, gtol=gtol,
            maxiter=maxiter, free_mask=free_mask, boundary=zeroed, converged=converged,
            message=message,
        )  # fmt: skip
        if not converged:
            warnings.warn(
                f"crossed MixedLM fit did not converge: {message} (scaled "
                f"gradient {summary.scaled_gradient:.2e} > gtol {gtol:.0e}).",
                ConvergenceWarning,
                stacklevel=2,
            )
        return CrossedMixedLMResults(
            self, theta, out.estimates, summary, bool(reml), information=out.information
        )

    def fit_many(self, Y, reml: bool = True, **kwargs):
        """Fit ``k`` responses ``Y (n, k)`` on this design in one compiled call; a
        :class:`~mixedjax.batch.results.BatchResults` (see
        :func:`mixedjax.batch.results.fit_many_crossed`; keywords ``method``, ``maxiter``,
        ``gtol``, ``progress``)."""
        from mixedjax.batch.results import fit_many_crossed

        return fit_many_crossed(self, Y, reml, **kwargs)

    def __repr__(self) -> str:
        groups = ", ".join(f"{t.group}: {t.n_levels}" for t in self.terms)
        formula = getattr(self, "formula", None)
        what = f"formula={formula!r}, " if formula else ""
        return f"CrossedMixedLM({what}nobs={self.nobs}, k_fe={self.k_fe}, groups=[{groups}])"
