"""Convergence diagnostics at the optimum: gradient, Hessian eigenvalues, lme4's checks.

At ``θ̂`` the exact gradient ``g`` and Hessian ``H`` of the profiled deviance ``d(θ)``
(autodiff; either engine, :mod:`mixedjax.engines.gls`; plus twice the penalty of a penalised fit,
:mod:`mixedjax.penalties`) over the estimated (free, not on the boundary) coordinates give

* the Hessian's eigenvalues: all positive at a strict local minimum; a (near) zero one
  means a flat direction (an unidentified parameter), a negative one a saddle point;
* lme4's relative gradient ``H⁻¹g`` (``checkConv``: ``max |H⁻¹g| < 0.002``) and the
  scaled gradient the optimiser stops on.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.covariance import theta_to_cov
from mixedjax.engines.gls import profiled_deviance


class OptimumDiagnostics(NamedTuple):
    """Derivatives of ``d(θ)`` at ``θ̂``.

    Attributes:
        gradient: ``(n_theta,)`` ``∇d(θ̂)`` (0 in held coordinates).
        hessian: ``(n_theta, n_theta)`` ``∇²d(θ̂)``.
        hessian_eigenvalues: ``(m,)`` ascending, over the ``m`` interior free coordinates.
        relative_gradient: ``(m,)`` lme4's ``H⁻¹g`` over the same coordinates.
        positive_definite: all eigenvalues above ``1e-8 · max(1, max |eigenvalue|)``.
        converged: lme4's rule ``max |H⁻¹g| < 0.002`` and positive definite.
    """

    gradient: np.ndarray
    hessian: np.ndarray
    hessian_eigenvalues: np.ndarray
    relative_gradient: np.ndarray
    positive_definite: bool
    converged: bool


def _objective(theta, data, structure, reml, penalty):
    value = profiled_deviance(theta, data, structure, reml)
    if penalty is not None:  # a penalised fit (mixedjax.penalties) minimised d + 2 pen(Ψ₁)
        value = value + 2.0 * penalty.value(theta_to_cov(theta, structure)[0])
    return value


@partial(jax.jit, static_argnames=("structure", "reml", "penalty"))
def _derivatives(theta, data, *, structure, reml, penalty=None):
    g = jax.grad(_objective)(theta, data, structure, reml, penalty)
    H = jax.hessian(_objective)(theta, data, structure, reml, penalty)
    return g, H


def optimum_diagnostics(results) -> OptimumDiagnostics:
    """:class:`OptimumDiagnostics` of a fit (either engine: :mod:`mixedjax.engines.gls`)."""
    model = results.model
    g, H = _derivatives(
        jnp.asarray(results.theta),
        model.data,
        structure=model.structure,
        reml=results.reml,
        penalty=getattr(results.optim, "cov_pen", None),
    )
    g, H = np.asarray(g), np.asarray(H)
    interior = np.asarray(results.optim.free_mask, dtype=bool).copy()
    interior[list(results.optim.boundary)] = False
    g = np.where(np.asarray(results.optim.free_mask, dtype=bool), g, 0.0)
    Hi = H[np.ix_(interior, interior)]
    eig = np.linalg.eigvalsh(0.5 * (Hi + Hi.T)) if interior.any() else np.zeros(0)
    scale = max(1.0, float(np.max(np.abs(eig), initial=0.0)))
    pd_ok = bool(np.all(eig > 1e-8 * scale))
    rel = (
        np.linalg.solve(Hi, g[interior]) if pd_ok and interior.any() else np.full(eig.shape, np.nan)
    )
    converged = pd_ok and bool(np.all(np.abs(rel) < 0.002))
    return OptimumDiagnostics(g, H, eig, rel, pd_ok, converged)
