"""Penalised fits: statsmodels' ``MixedLM.fit(cov_pen=...)``, the JAX way.

statsmodels maximises the profile log-likelihood minus a penalty on the *profile-scale*
random-effects covariance ``Ψ₁ = Ψ/σ²`` (``cov_re_unscaled``; variance components are not
penalised, and nothing is penalised when ``k_re = 0``):

.. math::
    \\ell_{pen}(θ) = \\ell(θ) - \\mathrm{pen}(Ψ_1(θ)), \\qquad\\text{i.e. here}\\qquad
    \\min_θ \\; d(θ) + 2\\,\\mathrm{pen}(Ψ_1(θ)),

with ``d = -2ℓ`` the profiled deviance of :mod:`mixedjax.engines.onefactor`. Here ``pen`` is a
pure JAX function of ``Ψ₁ (q, q)``; the penalised objective is minimised inside ``jit`` by
the core optimiser, and its gradient (and the Newton polish's Hessian) come from autodiff —
no hand-derived score. The fit runs on the internally standardized data
(:mod:`mixedjax.fit.conditioning`): there ``Ψ₁ = B Ψ₁^* B'`` with the fixed ``B`` of the
``exog_re`` columns, so the penalty is evaluated on the original scale exactly.

:class:`PSD` is statsmodels' ``statsmodels.base._penalties.PSD``:
``pen(Ψ₁) = -w log|Ψ₁|``, which tends to ``+∞`` as ``Ψ₁`` approaches singularity and so keeps
the estimate off the boundary (for a random intercept it is a gamma-type prior
``∝ ψ₁^w`` on the relative variance). A statsmodels ``PSD`` object passed as ``cov_pen`` is
translated; other penalties subclass :class:`CovariancePenalty` with a JAX ``value``.
Instances are frozen dataclasses (hashable: the compiled fit is cached per penalty).

The results' ``llf`` is the *unpenalised* log-likelihood at the penalised estimate (so
information criteria and tests keep their meaning); ``results.optim.objective`` is the
penalised objective that was minimised and ``results.optim.penalty`` the penalty's value.
(statsmodels' ``llf`` of a penalised fit includes the penalty.)
"""

import abc
import warnings
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, theta_to_cov
from mixedjax.core.watchdog import wait_ready
from mixedjax.design.groups import GroupedData
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit.optimize import minimize
from mixedjax.fit.program import FitRun
from mixedjax.fit.unpadded import estimates_unpadded


@dataclass(frozen=True)
class CovariancePenalty(abc.ABC):
    """A penalty ``pen(Ψ₁)`` on the profile-scale random-effects covariance.

    Subclasses define :meth:`value` with ``jax.numpy`` (it is traced and differentiated
    twice). :meth:`func` and :meth:`deriv` give statsmodels' ``CovariancePenalty``
    interface, so a mixedjax penalty can also be passed to statsmodels' ``MixedLM.fit``.

    Attributes:
        weight: the (scalar, non-negative) weight.
    """

    weight: float = 1.0

    def __post_init__(self):
        weight = self.weight
        if isinstance(weight, bool) or not isinstance(weight, int | float | np.floating):
            raise TypeError(f"weight must be a number, got {weight!r}")
        if not (np.isfinite(weight) and weight >= 0):
            raise ValueError(f"weight must be finite and non-negative, got {weight!r}")
        object.__setattr__(self, "weight", float(weight))

    @abc.abstractmethod
    def value(self, cov: jnp.ndarray) -> jnp.ndarray:
        """``pen(Ψ₁)`` for ``cov (q, q)``; ``+inf`` outside the penalty's domain."""

    def func(self, mat, mat_inv=None) -> float:
        """statsmodels' ``CovariancePenalty.func``."""
        return float(self.value(jnp.asarray(mat, dtype=float)))

    def deriv(self, mat, mat_inv=None) -> np.ndarray:
        """statsmodels' ``CovariancePenalty.deriv``: the gradient with respect to the lower
        triangle of the symmetric ``mat`` (row-major; an off-diagonal entry moves both
        ``mat[i, j]`` and ``mat[j, i]``), by autodiff."""
        mat = jnp.asarray(mat, dtype=float)
        rows, cols = np.tril_indices(mat.shape[0])

        def of_lower(lower):
            M = jnp.zeros_like(mat).at[rows, cols].set(lower)
            return self.value(M + M.T - jnp.diag(jnp.diag(M)))

        return np.asarray(jax.grad(of_lower)(mat[rows, cols]))


@dataclass(frozen=True)
class PSD(CovariancePenalty):
    """statsmodels' ``PSD`` penalty: ``pen(Ψ₁) = -w log|Ψ₁|`` (``+inf`` if not positive
    definite).

    Example:
        >>> import numpy as np
        >>> pen = PSD(2.0)
        >>> round(pen.func(np.diag([1.0, np.e])), 12)   # -2 log|diag(1, e)|
        -2.0
        >>> pen.deriv(np.diag([1.0, 2.0])).round(12).tolist()   # -w Ψ⁻¹, off-diagonal doubled
        [-2.0, 0.0, -1.0]
    """

    def value(self, cov: jnp.ndarray) -> jnp.ndarray:
        chol = smallmat.cholesky(cov)
        out = -2.0 * self.weight * jnp.sum(jnp.log(jnp.diag(chol)))
        return jnp.where(jnp.isfinite(out), out, jnp.inf)


def as_cov_penalty(cov_pen, k_re: int, stacklevel: int = 3) -> CovariancePenalty | None:
    """Normalise ``fit``'s ``cov_pen``: ``None``, a :class:`CovariancePenalty`, or a
    statsmodels ``PSD`` (translated). ``None`` is returned, with a warning, for a model
    without ``exog_re`` columns (statsmodels ignores the penalty there too).

    Example:
        >>> from statsmodels.base._penalties import PSD as StatsmodelsPSD
        >>> as_cov_penalty(StatsmodelsPSD(2.0), k_re=1)
        PSD(weight=2.0)
    """
    if cov_pen is None:
        return None
    if not isinstance(cov_pen, CovariancePenalty):
        cls = type(cov_pen)
        if cls.__name__ == "PSD" and cls.__module__.startswith("statsmodels"):
            cov_pen = PSD(float(cov_pen.weight))
        else:
            raise TypeError(
                "cov_pen must be a mixedjax.penalties.CovariancePenalty (e.g. PSD(weight)) or "
                f"statsmodels' PSD penalty, got {cls.__module__}.{cls.__name__}; write other "
                "penalties as a CovariancePenalty subclass whose value(cov) uses jax.numpy"
            )
    if k_re == 0:
        warnings.warn(
            "cov_pen penalises cov_re, but this model has no exog_re columns (k_re = 0): "
            "the penalty has no effect (as in statsmodels)",
            UserWarning,
            stacklevel=stacklevel,
        )
        return None
    return cov_pen


def penalised_deviance(theta, data, B, structure: CovStructure, reml: bool, penalty):
    """``d(θ) + 2 pen(B Ψ₁(θ) B')``; non-finite values become ``+inf``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta, B = jnp.array([0.848323767332081]), jnp.eye(1)   # lme4's REML θ̂
        >>> value = penalised_deviance(theta, m.data, B, m.structure, True, PSD(1.0))
        >>> round(float(value), 6)   # 319.654277 + 2 (-log θ²)
        320.312249
    """
    cov, _ = theta_to_cov(theta, structure)
    value = profiled_deviance(theta, data, structure, reml) + 2.0 * penalty.value(B @ cov @ B.T)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


@partial(jax.jit, static_argnames=("structure", "reml", "penalty", "method", "maxiter", "verbose"))
def fit_theta_penalized(
    theta0, free_mask, data, B, gtol, *, structure, reml, penalty, method, maxiter, verbose
):
    """Minimise :func:`penalised_deviance` over the free entries of ``θ`` (one ``jit``)."""

    def objective(theta, args):
        data, B = args
        return penalised_deviance(theta, data, B, structure, reml, penalty)

    return minimize(
        objective,
        theta0,
        (data, B),
        free_mask,
        method=method,
        maxiter=maxiter,
        gtol=gtol,
        verbose=verbose,
    )


def run_penalized(
    data: GroupedData,
    structure: CovStructure,
    theta0: np.ndarray,
    free: np.ndarray,
    reml: bool,
    gtol: float,
    method: str,
    maxiter: int,
    penalty: CovariancePenalty,
    B: np.ndarray,
    verbose: bool = False,
) -> FitRun:
    """Minimise :func:`penalised_deviance` from ``θ₀`` on the standardized ``data`` (in its
    own dtype and placement), then the estimates there.

    As the unpenalised fit, except that no boundary snapping or saddle escape is done (a
    penalty such as :class:`PSD` is infinite on the boundary; a smooth one moves the optimum
    off the unpenalised stationary points). ``FitRun.value_std`` is the penalised objective.

    Example:
        >>> import mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff2"),
        ...                                   groups="Batch")
        >>> m.fit().is_singular, m.fit(cov_pen=PSD(1.0)).is_singular   # off the boundary
        (True, False)
    """
    dtype = data.ZtZ.dtype
    B = jnp.asarray(B, dtype)
    theta0 = jnp.asarray(theta0, dtype)
    start_value = penalised_deviance(theta0, data, B, structure, reml, penalty)
    if not np.isfinite(float(start_value)):
        raise ValueError(
            "cov_pen is infinite at the start (cov_re is singular there): give start_params "
            "with a positive definite cov_re"
        )
    result = fit_theta_penalized(
        theta0, jnp.asarray(free), data, B, gtol, structure=structure, reml=reml,
        penalty=penalty, method=method, maxiter=maxiter, verbose=verbose,
    )  # fmt: skip
    result = jax.device_get(wait_ready(result, what="penalised optimiser"))
    theta_std = np.asarray(result.x)
    estimates = estimates_unpadded(jnp.asarray(theta_std), data, structure=structure, reml=reml)
    return FitRun(
        result, False, theta_std, float(result.value), (), jax.device_get(estimates), None
    )
