"""The GLS system of either likelihood engine, as a pure function of the variance parameters.

Everything inference needs at the estimate — the Wald information of the variance
parameters, Satterthwaite's and Kenward-Roger's df, the convergence diagnostics — is a
derivative of a function of the profile-scale GLS system
(:class:`~mixedjax.engines.onefactor.GLSSystem`: ``log|V₁|`` and ``A = [X y]'V₁⁻¹[X y]``). This
module gives that system for both engines through the engine protocol
(:func:`mixedjax.engines.protocol.engine_for`, on the static structure):

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

from mixedjax.engines.crossed import (  # noqa: F401  (re-exported: the crossed γ <-> θ maps)
    crossed_gls_system,
    crossed_theta_to_user,
    crossed_user_to_theta,
)
from mixedjax.engines.onefactor import GLSSystem, profiled_objective
from mixedjax.engines.protocol import CROSSED, engine_for


def is_crossed(structure) -> bool:
    """Whether ``structure`` belongs to the crossed engine."""
    return engine_for(structure) is CROSSED


def gls_from_theta(theta: jnp.ndarray, data, structure) -> GLSSystem:
    """Profile-scale :class:`GLSSystem` at ``θ`` for either engine."""
    return engine_for(structure).gls_system(theta, data, structure)


def profiled_deviance(theta: jnp.ndarray, data, structure, reml: bool) -> jnp.ndarray:
    """``d(θ)``: ``-2 log L`` (or the REML criterion), β and σ² profiled out."""
    return profiled_objective(gls_from_theta(theta, data, structure), data.n_obs, reml)


def n_user_params(structure) -> int:
    """Length of ``γ`` (σ² included)."""
    return engine_for(structure).n_user_params(structure)


def gls_from_user(gamma: jnp.ndarray, data, structure) -> tuple[GLSSystem, jnp.ndarray]:
    """``(profile-scale GLSSystem, σ²)`` at user-scale ``γ`` for either engine."""
    return engine_for(structure).user_gls_system(gamma, data, structure)
