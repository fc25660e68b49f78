"""Safeguards after the optimiser: never report a saddle point or a maximum as converged.

The profiled deviance ``d(θ)`` depends on ``θ`` only through ``ΛΛ'``, so flipping the sign
of a column of ``Λ`` leaves it unchanged: every point with a zero column of ``Λ`` (a
variance on its boundary) is a stationary point, ``∇d = 0``, whether it is a minimum or not.
A quasi-Newton step can land on one exactly (optax's L-BFGS takes a first step of unit
length, so a one-parameter fit started at ``θ = 1`` whose deviance is lower at 0 stops at
``θ = 0`` after one iteration with a zero gradient). The gradient test cannot tell such a
point from a minimum; the Hessian can. :func:`escape_saddle` checks the smallest eigenvalue
of the exact Hessian (over the free coordinates) and, where it is negative, restarts the
optimiser from the best point found along that direction of negative curvature.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.covariance import CovStructure
from mixedjax.design.groups import GroupedData
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit import estimation
from mixedjax.fit.optimize import STATUS_CONVERGED, OptResult

#: Negative curvature below ``-NEGATIVE_CURVATURE * max(1, max |eigenvalue|)`` is a saddle.
NEGATIVE_CURVATURE = 1e-8
#: How many restarts are tried before giving up.
MAX_RESTARTS = 3
#: Step lengths tried along the direction of negative curvature (times ``max(1, |θ|)``).
_STEPS = (1.0, 0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3, 3e-4, 1e-4, 3e-5, 1e-5)


@partial(jax.jit, static_argnames=("structure", "reml"))
def deviance_hessian(theta: jnp.ndarray, data: GroupedData, *, structure: CovStructure, reml):
    """Exact Hessian ``∇²d(θ)`` ``(n_theta, n_theta)`` (autodiff)."""
    return jax.hessian(profiled_deviance)(theta, data, structure, reml)


def negative_curvature(
    theta: np.ndarray, free_mask: np.ndarray, data: GroupedData, structure: CovStructure, reml
) -> tuple[float, np.ndarray]:
    """Smallest eigenvalue of the free block of ``∇²d(θ)`` relative to the largest, and its
    eigenvector (zero in held coordinates); a negative value flags a saddle or maximum."""
    H = np.asarray(deviance_hessian(jnp.asarray(theta), data, structure=structure, reml=reml))
    free = np.flatnonzero(free_mask)
    direction = np.zeros(theta.size)
    if free.size == 0 or not np.all(np.isfinite(H)):
        return 0.0, direction
    eigval, eigvec = np.linalg.eigh(0.5 * (H + H.T)[np.ix_(free, free)])
    direction[free] = eigvec[:, 0]
    return float(eigval[0] / max(1.0, float(np.max(np.abs(eigval))))), direction


def escape_saddle(
    result: OptResult,
    free_mask: np.ndarray,
    data: GroupedData,
    gtol: float,
    *,
    structure: CovStructure,
    reml: bool,
    method: str,
    maxiter: int,
) -> tuple[OptResult, int, bool]:
    """Restart the optimiser away from a stationary point with negative curvature.

    Returns ``(result, restarts, still_saddle)``; ``result`` is the input when it already is
    a minimum, or when no step along the direction of negative curvature lowers the deviance
    (curvature within rounding). ``still_saddle`` is true when a lower point exists but
    :data:`MAX_RESTARTS` restarts did not get away from it (the caller must not call that
    fit converged).
    """
    free = jnp.asarray(free_mask)
    for restarts in range(MAX_RESTARTS + 1):  # a handful of restarts, each one jitted run
        theta = np.asarray(result.x, dtype=float)
        if int(result.status) != STATUS_CONVERGED:
            return result, restarts, False
        if restarts == 0 and method != "newton" and int(result.n_newton) > 0:
            # The Newton polish only accepts steps whose Hessian is positive definite, and
            # its last step ended here: a minimum. Skipping the check saves compiling a
            # second Hessian on a cold start.
            return result, restarts, False
        curvature, direction = negative_curvature(theta, free_mask, data, structure, reml)
        if curvature >= -NEGATIVE_CURVATURE:
            return result, restarts, False
        if restarts == MAX_RESTARTS:
            break
        best = _best_along(theta, direction, float(result.value), data, structure, reml)
        if best is None:
            # Negative curvature too slight to lower the deviance at any step tried: the
            # point is a minimum to within rounding (e.g. a variance of 1e-8 σ² reported
            # as 0), not a saddle that matters.
            return result, restarts, False
        new = estimation.fit_theta(
            jnp.asarray(best),
            free,
            data,
            gtol,
            structure=structure,
            reml=reml,
            method=method,
            maxiter=maxiter,
        )
        result = new._replace(
            n_iter=new.n_iter + result.n_iter,
            n_eval=new.n_eval + result.n_eval,
            n_newton=new.n_newton + result.n_newton,
        )
    return result, restarts, True


def _best_along(theta, direction, value, data, structure, reml):
    """The point of lowest deviance among a few steps along ``±direction``, if lower."""
    best, best_value = None, value
    size = max(1.0, float(np.max(np.abs(theta))))
    for t in _STEPS:  # a few trial points on a line
        for sign in (1.0, -1.0):
            trial = theta + sign * t * size * direction
            v = float(estimation.deviance(jnp.asarray(trial), data, structure=structure, reml=reml))
            if np.isfinite(v) and v < best_value:
                best, best_value = trial, v
    return best


def convergence_diagnosis(status: int, summary, saddle: bool, curvature: float | None = None):
    """The warning text for a fit that did not converge: which criterion failed, what to try.

    ``summary`` is the fit's :class:`~mixedjax.results.mixedlm.OptSummary`.
    """
    from mixedjax.fit.optimize import STATUS_MAXITER, STATUS_NONFINITE, STATUS_STALLED

    grad = f"scaled gradient {summary.scaled_gradient:.2e} > gtol {summary.gtol:.0e}"
    where = f"after {summary.n_iter} iterations"
    if saddle:
        return (
            "MixedLM fit did not converge: the optimiser stopped at a stationary point that "
            f"is not a minimum (the Hessian of the deviance has a negative eigenvalue) {where}, "
            f"even after {MAX_RESTARTS} restarts along the direction of negative curvature. "
            "Try other start_params or method='bfgs'."
        )
    if status == STATUS_MAXITER:
        return (
            f"MixedLM fit did not converge: it reached maxiter={summary.maxiter} with {grad}. "
            f"Try fit(maxiter={2 * summary.maxiter}), method='bfgs', or start_params from a "
            "simpler model's fit."
        )
    if status == STATUS_STALLED:
        return (
            "MixedLM fit did not converge: the line search could not lower the objective any "
            f"further while {grad} ({where}). The optimum is numerically flat, which usually "
            "means a variance at or near zero or a correlation near ±1. Try method='bfgs', a "
            "looser gtol (the estimates may already be accurate), or a simpler random-effects "
            "structure (drop a random slope or the correlation)."
        )
    if status == STATUS_NONFINITE:
        return (
            "MixedLM fit did not converge: the objective or its gradient became non-finite "
            f"({where}). The random-effects design may be (nearly) collinear or the variances "
            "unbounded; check exog_re for redundant columns, or try other start_params."
        )
    return f"MixedLM fit did not converge ({grad} {where})."


def check_finite(theta: np.ndarray, est) -> None:
    """Stop with a ``FloatingPointError`` naming the estimates that are NaN/inf.

    A fit never returns non-finite estimates: they would propagate silently.
    """
    parts = {
        "theta": theta,
        "fe_params": est.beta,
        "scale": est.scale,
        "cov_fe": est.cov_beta,
        "random effects": est.blups,
        "objective": est.objective,
    }
    bad = [name for name, v in parts.items() if not np.all(np.isfinite(np.asarray(v)))]
    if bad:
        raise FloatingPointError(
            f"MixedLM fit produced non-finite {', '.join(bad)}: the model is numerically "
            "singular for these data (e.g. collinear fixed or random effects, or a response "
            "with no variation left after the fixed effects); simplify the model"
        )
