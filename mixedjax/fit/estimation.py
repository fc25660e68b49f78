"""Jitted fitting kernels: start values, the optimiser run, boundary handling, estimates.

These are the pure pieces behind :meth:`mixedjax.MixedLM.fit`; the functional API reuses
them. Compiled functions are cached by JAX on ``(structure, reml, method)`` and array shapes,
so refitting a model of the same shape never recompiles.
"""

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.compilation import tiered_jit
from mixedjax.core.covariance import CovStructure, lower_indices_colwise
from mixedjax.design.groups import GroupedData
from mixedjax.engines.onefactor import (  # noqa: F401  (Estimates, FixedEstimates re-exported)
    Estimates,
    FixedEstimates,
    estimates,
    fixed_estimates,
    profiled_deviance,
)
from mixedjax.fit.optimize import OptResult, minimize

#: θ entries whose lower bound is 0 and which are below this are tried at exactly 0.
BOUNDARY_PROBE = 1e-3
#: lme4's ``isSingular`` tolerance.
SINGULAR_TOL = 1e-4


@partial(jax.jit, static_argnames=("structure",))
def default_start(data: GroupedData, structure: CovStructure) -> jnp.ndarray:
    """Data-based starting ``θ``: diagonal, each random effect worth one residual variance.

    For a random-effect column ``z_j`` the start is ``θ_jj = 1/rms(z_j)`` (so ``1`` for an
    intercept, as in lme4, and a smaller value for a slope on a covariate with a large
    spread); off-diagonal entries start at 0. Jitted (vmappable); :func:`start_values` is
    the same on the host.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> default_start(m.data, m.structure).tolist()
        [1.0]
    """
    return _start_values(data, structure, jnp)


def start_values(data: GroupedData, structure: CovStructure) -> np.ndarray:
    """:func:`default_start` computed with NumPy (no compilation: a fit's start is host work).

    Example:
        >>> import mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> start_values(m.data, m.structure).tolist()
        [1.0]
    """
    host = GroupedData(*(np.asarray(a) for a in data))
    return _start_values(host, structure, np)


def _start_values(data: GroupedData, structure: CovStructure, xp):
    diag_totals = xp.sum(xp.diagonal(data.ZtZ, axis1=-2, axis2=-1), axis=0)  # (r,)
    q = structure.k_re
    re_ms = diag_totals[:q] / data.n_obs
    vc_ms = []
    start = q
    for size in structure.vc_sizes:
        vc_ms.append(xp.sum(diag_totals[start : start + size]) / data.n_obs)
        start += size
    mean_square = xp.concatenate([re_ms, xp.asarray(vc_ms, dtype=re_ms.dtype).reshape(-1)])
    scale = 1.0 / xp.sqrt(xp.where(mean_square > 0, mean_square, 1.0))
    diag_mask = xp.asarray(structure.diagonal_theta_mask())
    diag_index = xp.cumsum(diag_mask) - 1
    return xp.where(diag_mask, scale[diag_index], 0.0)


@partial(tiered_jit, static_argnames=("structure", "reml", "method", "maxiter", "verbose"))
def fit_theta(
    theta0: jnp.ndarray,
    free_mask: jnp.ndarray,
    data: GroupedData,
    gtol: float,
    *,
    structure: CovStructure,
    reml: bool,
    method: str = "lbfgs",
    maxiter: int = 500,
    verbose: bool = False,
) -> OptResult:
    """Minimise the profiled deviance over the free entries of ``θ``.

    ``verbose`` prints the optimiser's trace (:func:`mixedjax.fit.optimize.print_trace`).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> res = fit_theta(jnp.array([1.0]), jnp.array([True]), m.data, 1e-9,
        ...                 structure=m.structure, reml=True)
        >>> round(float(res.x[0]), 5), round(float(res.value), 6), int(res.status)
        (0.84832, 319.654277, 0)
    """

    def objective(theta, data):
        return profiled_deviance(theta, data, structure, reml)

    return minimize(
        objective,
        theta0,
        data,
        free_mask,
        method=method,
        maxiter=maxiter,
        gtol=gtol,
        verbose=verbose,
    )


@partial(tiered_jit, static_argnames=("structure", "reml"), quick_up_to=math.inf)
def deviance(theta: jnp.ndarray, data: GroupedData, *, structure: CovStructure, reml: bool):
    """Jitted :func:`~mixedjax.engines.onefactor.profiled_deviance`.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> round(float(deviance(theta, m.data, structure=m.structure, reml=True)), 6)
        319.654277
    """
    return profiled_deviance(theta, data, structure, reml)


def snap_to_boundary(
    theta: np.ndarray,
    value: float,
    free_mask: np.ndarray,
    data: GroupedData,
    structure: CovStructure,
    reml: bool,
) -> tuple[np.ndarray, float, tuple[int, ...]]:
    """Set near-zero standard-deviation-like entries of ``θ`` to exactly zero.

    With unconstrained ``θ`` a variance on its boundary is approached like ``θ_jj → 0``
    but never reached. Each small entry (``|θ_jj| < BOUNDARY_PROBE``), together with the
    entries below it in its column of ``L``, is set to 0 and kept there if the deviance
    does not get worse (up to 1e-10 relative). Also makes the diagonal of ``L``
    non-negative (flipping a column's sign leaves ``Λ Λ'`` unchanged).

    Returns:
        ``(theta, deviance, indices set to zero)``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> import numpy as np
        >>> theta_hat, value, zeroed = snap_to_boundary(
        ...     np.array([-0.8483]), 319.6543, np.array([True]), m.data, m.structure, reml=True)
        >>> theta_hat.tolist(), zeroed   # sign made positive; nothing near the boundary
        ([0.8483], ())
    """
    theta = np.array(theta, dtype=float)
    free_mask = np.asarray(free_mask, dtype=bool)
    k_re2 = structure.k_re2
    rows, cols = lower_indices_colwise(structure.k_re)
    # column of L each θ entry belongs to (-1 for variance components)
    column = np.concatenate([cols, np.full(structure.k_vc, -1)])
    for j in range(structure.k_re):  # sign convention: columns of L with non-negative diagonal
        diag = np.flatnonzero((cols == j) & (rows == j))[0]
        if theta[diag] < 0:
            theta[column == j] = -theta[column == j]
    theta[k_re2:] = np.abs(theta[k_re2:])

    diag_mask = structure.diagonal_theta_mask()
    candidates = np.flatnonzero(diag_mask & free_mask & (np.abs(theta) < BOUNDARY_PROBE))
    zeroed: list[int] = []
    for idx in candidates:  # loop over a handful of parameters, not groups
        trial = theta.copy()
        if idx < k_re2:
            trial[(column == column[idx]) & free_mask] = 0.0
        else:
            trial[idx] = 0.0
        trial_value = float(deviance(jnp.asarray(trial), data, structure=structure, reml=reml))
        if np.isfinite(trial_value) and trial_value <= value + 1e-10 * max(1.0, abs(value)):
            theta, value = trial, min(value, trial_value)
            zeroed.append(int(idx))
    return theta, value, tuple(zeroed)


@partial(tiered_jit, static_argnames=("structure", "reml"), quick_up_to=math.inf)
def estimates_at(theta: jnp.ndarray, data: GroupedData, *, structure: CovStructure, reml: bool):
    """Fixed effects, σ², their covariance and the BLUPs at ``θ``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> round(float(estimates_at(theta, m.data, structure=m.structure, reml=True).beta[0]), 4)
        1527.5
    """
    return estimates(theta, data, structure, reml)
