"""The GLMM fit program for several grouping factors: ``(θ, β)`` by Newton on the Laplace
deviance of :mod:`mixedjax.engines.laplace_terms`.

The same program as the one-factor fit (:mod:`mixedjax.fit.glmm`): ``β₀`` from the GLM
without random effects, lme4's ``θ₀`` (1 on each factor's diagonal), then Newton's method
with exact Hessians of ``D(θ, β)`` (:func:`mixedjax.fit.glmm.newton_minimize`); at the end,
the conditional modes of every term and the conditional covariances of each level's
random effects. One compiled program per model shape, family and ``θ`` layout.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mixedjax.core.families import Family
from mixedjax.design.crossed import CrossedStructure
from mixedjax.engines import laplace_terms
from mixedjax.engines.laplace_terms import TermRows
from mixedjax.fit.glmm import glm_start, newton_minimize
from mixedjax.fit.optimize import OptResult


class TermGLMMFitOutput(NamedTuple):
    """Result of :func:`fit_glmm_terms`.

    Attributes:
        opt: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` over ``x = (θ, β)``.
        hessian: ``(n_theta + p, n_theta + p)`` exact Hessian of the deviance at ``opt.x``.
        modes: per term, ``(n_k, q_k)`` conditional modes ``û`` (spherical scale).
        random_effects: per term, ``(n_k, q_k)`` ``γ = T_k û`` (data scale).
        cond_cov: per term, ``(n_k, q_k, q_k)`` conditional covariances of ``γ``.
        beta_start: ``(p,)`` the GLM start.
    """

    opt: OptResult
    hessian: jnp.ndarray
    modes: tuple
    random_effects: tuple
    cond_cov: tuple
    beta_start: jnp.ndarray


def deviance(x, rows: TermRows, family: Family, structure: CrossedStructure):
    """The Laplace deviance over ``x = (θ, β)``."""
    theta, beta = x[: structure.n_theta], x[structure.n_theta :]
    return laplace_terms.laplace_deviance(theta, beta, rows, family, structure)


@partial(jax.jit, static_argnames=("family", "structure", "start_from_glm", "maxiter", "gtol"))
def fit_glmm_terms(
    theta0: jnp.ndarray,
    beta0: jnp.ndarray,
    rows: TermRows,
    *,
    family: Family,
    structure: CrossedStructure,
    start_from_glm: bool = True,
    maxiter: int = 200,
    gtol: float = 1e-10,
) -> TermGLMMFitOutput:
    """Minimise the Laplace deviance over ``(θ, β)`` from ``θ₀`` and the GLM start of ``β``
    (``beta0`` unless ``start_from_glm``)."""
    beta_start = glm_start(rows, family) if start_from_glm else beta0
    x0 = jnp.concatenate([theta0, beta_start])
    objective = partial(deviance, family=family, structure=structure)
    opt, hessian = newton_minimize(objective, x0, rows, maxiter=maxiter, gtol=gtol)
    # lme4's sign convention: each factor's diagonal non-negative (flipping a column of T_k
    # and the matching entries of u leaves D unchanged)
    theta_signs = _signs(opt.x[: structure.n_theta], structure)
    signs = jnp.concatenate([theta_signs, jnp.ones(structure.p, opt.x.dtype)])
    opt = opt._replace(x=opt.x * signs, grad=opt.grad * signs)
    hessian = hessian * signs[:, None] * signs[None, :]
    theta, beta = opt.x[: structure.n_theta], opt.x[structure.n_theta :]
    parts = laplace_terms.laplace_parts(theta, beta, rows, family, structure)
    modes, start = [], 0
    for q, n in zip(structure.q, structure.n_levels, strict=True):
        modes.append(parts.modes[start : start + n * q].reshape(n, q))
        start += n * q
    return TermGLMMFitOutput(
        opt,
        hessian,
        tuple(modes),
        tuple(laplace_terms.term_modes(parts, theta, structure)),
        tuple(laplace_terms.term_conditional_covariances(parts, theta, structure)),
        beta_start,
    )


def _signs(theta, structure: CrossedStructure) -> jnp.ndarray:
    """``(n_theta,)``: per entry of ``θ``, the sign of the diagonal entry of the column of
    ``T_k`` it belongs to (``+1`` for a zero diagonal). The modes, recomputed at the
    flipped ``θ``, flip with it."""
    import numpy as np

    theta_signs = []
    for q, sl in zip(structure.q, structure.theta_slices(), strict=True):
        upper_rows, upper_cols = np.triu_indices(q)  # θ entry e is T[upper_cols[e], upper_rows[e]]
        diagonal = np.flatnonzero(upper_rows == upper_cols)  # θ index of T[j, j], j = 0..q-1
        sign = jnp.where(theta[sl][diagonal] < 0, -1.0, 1.0)
        theta_signs.append(sign[upper_rows])  # column of T of each entry
    return jnp.concatenate(theta_signs)


def lme4_start(structure: CrossedStructure) -> jnp.ndarray:
    """lme4's ``θ₀``: 1 on the diagonal of each term's factor, 0 below."""
    import numpy as np

    parts = []
    for q in structure.q:
        upper_rows, upper_cols = np.triu_indices(q)
        parts.append((upper_rows == upper_cols).astype(float))
    return jnp.asarray(np.concatenate(parts))
