"""The GLS system of either likelihood engine, as a pure function of the variance parameters.

Everything inference needs at the estimate — the Wald information of the variance
parameters, Satterthwaite's and Kenward-Roger's df, the convergence diagnostics — is a
derivative of a function of the profile-scale GLS system
(:class:`~mixedjax.engines.onefactor.GLSSystem`: ``log|V₁|`` and ``A = [X y]'V₁⁻¹[X y]``). This
module gives that system for both engines, dispatching on the (static) structure:

* :class:`~mixedjax.core.covariance.CovStructure`: one grouping factor
  (:mod:`mixedjax.engines.onefactor`, batched per group);
* :class:`~mixedjax.design.crossed.CrossedStructure`: several grouping factors
  (:mod:`mixedjax.engines.crossed`, blocked Cholesky). With ``Ω = L L'`` the factored system of
  that module and ``M`` the number of dense random effects, the trailing ``(p+1)`` block of
  ``L`` is the Cholesky factor of ``A`` and
  ``log|V₁| = 2 Σ log diag L₁₁ + 2 Σ_{i<M} log L_ii``.

Two parameterizations:

* **θ** (lme4's relative Cholesky factors; any engine's optimiser coordinates);
* **user** ``γ`` (data scale, ``Σ = σ²I + Z G Z'`` linear in ``γ``): for one factor
  ``γ = (tril Ψ row-major, τ, σ²)`` as :mod:`mixedjax.engines.information`; for crossed factors
  ``γ = (tril Ψ_k row-major for each term in θ order, σ²)``. The crossed engine needs a
  factor of ``Ψ_k/σ²``: the Cholesky factor, which is differentiable where ``Ψ_k`` is
  positive definite. A term whose covariance is exactly zero (a variance on the boundary)
  gets a zero factor and zero derivatives, i.e. it is held at zero.
"""

import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, user_to_profile
from mixedjax.design.crossed import CrossedStructure
from mixedjax.design.sizeclass import FactorMap
from mixedjax.engines import crossed
from mixedjax.engines.onefactor import (
    GLSSystem,
    gls_system_cov,
    gls_system_theta,
    profiled_objective,
)


def is_crossed(structure) -> bool:
    """Whether ``structure`` belongs to the crossed engine."""
    if isinstance(structure, CrossedStructure):
        return True
    if isinstance(structure, CovStructure | FactorMap):
        return False
    raise TypeError(f"structure must be a CovStructure or CrossedStructure, got {structure!r}")


def crossed_gls_system(theta: jnp.ndarray, data, structure: CrossedStructure) -> GLSSystem:
    """:class:`GLSSystem` of the crossed engine at ``θ`` (see the module docstring)."""
    f = crossed.factorize(theta, data, structure)
    M = structure.n_dense
    L = jnp.linalg.cholesky(f.dense)
    W = L[M:, M:]
    logdet_V = 2.0 * jnp.sum(smallmat.log_diag_sum(f.chol1)) + 2.0 * jnp.sum(
        jnp.log(jnp.diagonal(L)[:M])
    )
    return GLSSystem(logdet_V, W @ W.T)


def gls_from_theta(theta: jnp.ndarray, data, structure) -> GLSSystem:
    """Profile-scale :class:`GLSSystem` at ``θ`` for either engine."""
    if is_crossed(structure):
        return crossed_gls_system(theta, data, structure)
    return gls_system_theta(theta, data, structure)


def profiled_deviance(theta: jnp.ndarray, data, structure, reml: bool) -> jnp.ndarray:
    """``d(θ)``: ``-2 log L`` (or the REML criterion), β and σ² profiled out."""
    return profiled_objective(gls_from_theta(theta, data, structure), data.n_obs, reml)


def n_user_params(structure) -> int:
    """Length of ``γ`` (σ² included)."""
    if is_crossed(structure):
        return sum(q * (q + 1) // 2 for q in structure.q) + 1
    return structure.k_re2 + structure.k_vc + 1


def _safe_cholesky(cov: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factor; exactly zero (with zero derivatives) for a zero matrix."""
    zero = jnp.all(cov == 0)
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)
    return jnp.where(zero, 0.0, smallmat.cholesky(jnp.where(zero, eye, cov)))


def crossed_user_to_theta(gamma: jnp.ndarray, structure: CrossedStructure):
    """``(θ, σ²)`` from crossed user-scale ``γ``: ``T_k = chol(Ψ_k/σ²)``."""
    scale = gamma[-1]
    parts, start = [], 0
    for q in structure.q:
        rows, cols = np.tril_indices(q)
        M = jnp.zeros((q, q), gamma.dtype).at[rows, cols].set(gamma[start : start + rows.size])
        cov = (M + M.T - jnp.diag(jnp.diag(M))) / scale
        T = _safe_cholesky(cov)
        upper_rows, upper_cols = np.triu_indices(q)
        parts.append(T[upper_cols, upper_rows])  # column-wise lower triangle (lme4)
        start += rows.size
    return jnp.concatenate(parts), scale


def crossed_theta_to_user(theta, scale, structure: CrossedStructure, xp=np):
    """Inverse of :func:`crossed_user_to_theta`: ``γ (n_user_params,)``. With ``xp=jnp``
    it runs inside a compiled program (the crossed fit's information matrix)."""
    theta = xp.asarray(theta, dtype=float)
    parts = []
    for q, sl in zip(structure.q, structure.theta_slices(), strict=True):
        upper_rows, upper_cols = np.triu_indices(q)
        index = np.full((q, q), -1)
        index[upper_cols, upper_rows] = np.arange(upper_rows.size)  # T[i, j] = θ[index[i, j]]
        T = xp.where(index >= 0, theta[sl][np.maximum(index, 0)], 0.0)
        rows, cols = np.tril_indices(q)
        parts.append((scale * T @ T.T)[rows, cols])
    return xp.concatenate(parts + [xp.reshape(xp.asarray(scale, dtype=float), (1,))])


def gls_from_user(gamma: jnp.ndarray, data, structure) -> tuple[GLSSystem, jnp.ndarray]:
    """``(profile-scale GLSSystem, σ²)`` at user-scale ``γ`` for either engine."""
    if is_crossed(structure):
        theta, scale = crossed_user_to_theta(gamma, structure)
        return crossed_gls_system(theta, data, structure), scale
    cov, vc, scale = user_to_profile(gamma, structure)
    return gls_system_cov(cov, vc, data, structure), scale
