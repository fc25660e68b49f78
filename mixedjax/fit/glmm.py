"""The GLMM fit program: a GLM start, then ``(θ, β)`` jointly by quasi-Newton on the deviance.

lme4's ``glmer`` (``nAGQ >= 1``) minimises the Laplace (or quadrature) deviance
``D(θ, β)`` of :mod:`mixedjax.engines.laplace` over ``x = (θ, β)`` with a derivative-free
optimiser. Here the gradient is exact (autodiff through the conditional modes), so the run
is :func:`mixedjax.fit.optimize.minimize` (BFGS with a strong-Wolfe line search, polished
by exact Newton steps) inside one ``jit``:

1. ``β₀`` from the GLM without random effects (Fisher scoring, a fixed number of steps;
   R's ``glm.fit`` start ``μ₀``), ``θ₀`` from the caller (lme4's: 1 on the diagonal);
2. ``minimize(D, (θ₀, β₀))``; the exact Hessian of ``D`` at the end comes back with it
   (the standard errors are ``2 H⁻¹``'s ``β`` block, as lme4's ``vcov``);
3. the conditional modes and covariances at the optimum.

Everything is one compiled program per model shape (``n_groups, n_max, p, r``), family
and number of quadrature nodes.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure
from mixedjax.core.families import Family
from mixedjax.engines import laplace
from mixedjax.engines.laplace_rows import GroupedRows
from mixedjax.fit.optimize import OptResult, minimize

#: Fisher-scoring steps of the GLM start (it converges in 5-10; a few more are cheap).
GLM_STEPS = 25


class GLMMFitOutput(NamedTuple):
    """Result of :func:`fit_glmm`.

    Attributes:
        opt: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` over ``x = (θ, β)``.
        hessian: ``(n_theta + p, n_theta + p)`` exact Hessian of the deviance at ``opt.x``
            (NaN if the optimiser's polish did not evaluate it; see :func:`deviance_hessian`).
        modes: ``(n_groups, r)`` conditional modes ``û`` (spherical scale).
        cond_cov: ``(n_groups, r, r)`` conditional covariances of ``γ_i = Λ u_i``.
        beta_start: ``(p,)`` the GLM start.
    """

    opt: OptResult
    hessian: jnp.ndarray
    modes: jnp.ndarray
    cond_cov: jnp.ndarray
    beta_start: jnp.ndarray


def glm_start(rows: GroupedRows, family: Family) -> jnp.ndarray:
    """``β (p,)`` of the GLM without random effects by Fisher scoring from R's ``μ₀``
    (binomial ``(w y + 1/2)/(w + 1)``, otherwise ``y + 0.1``); padding rows have weight 0."""
    y, w, off = rows.y, rows.weights, rows.offset
    X = rows.X.reshape(-1, rows.X.shape[-1])
    if family.name == "binomial":
        mu0 = (w * y + 0.5) / (w + 1.0)
    else:
        mu0 = jnp.maximum(y, 0.0) + 0.1
    eta0 = family.link(mu0).reshape(-1)
    y, w, off = y.reshape(-1), w.reshape(-1), off.reshape(-1)
    p = X.shape[1]

    def step(_, eta):
        mu = family.mean(eta)
        working = eta - off + (y - mu) / family.link.mu_eta(eta)
        W = family.working_weights(eta, w)
        A = X.T @ (W[:, None] * X) + 1e-12 * jnp.eye(p, dtype=X.dtype)
        b = X.T @ (W * working)
        beta = smallmat.cho_solve(smallmat.cholesky(A), b[:, None])[:, 0]
        return X @ beta + off

    eta = jax.lax.fori_loop(0, GLM_STEPS, step, eta0)
    A = X.T @ X + 1e-12 * jnp.eye(p, dtype=X.dtype)
    return smallmat.cho_solve(smallmat.cholesky(A), (X.T @ (eta - off))[:, None])[:, 0]


def deviance(x, rows: GroupedRows, family: Family, structure: CovStructure, n_agq: int):
    """The objective over ``x = (θ, β)``: Laplace (``n_agq = 1``) or adaptive
    Gauss–Hermite deviance."""
    theta, beta = x[: structure.n_theta], x[structure.n_theta :]
    if n_agq == 1:
        return laplace.laplace_deviance(theta, beta, rows, family, structure)
    return laplace.agq_deviance(theta, beta, rows, family, structure, n_agq)


@partial(jax.jit, static_argnames=("family", "structure", "n_agq"))
def deviance_hessian(x, rows, *, family, structure, n_agq):
    """Exact ``∇²D`` at ``x`` (fallback when the optimiser did not leave one)."""
    return jax.hessian(deviance)(x, rows, family, structure, n_agq)


@partial(
    jax.jit,
    static_argnames=("family", "structure", "n_agq", "start_from_glm", "maxiter", "gtol"),
)
def fit_glmm(
    theta0: jnp.ndarray,
    beta0: jnp.ndarray,
    rows: GroupedRows,
    *,
    family: Family,
    structure: CovStructure,
    n_agq: int = 1,
    start_from_glm: bool = True,
    maxiter: int = 500,
    gtol: float = 1e-10,
) -> GLMMFitOutput:
    """Minimise the deviance over ``(θ, β)`` (see the module docstring).

    ``beta0`` is used as the start of ``β`` unless ``start_from_glm``.
    """
    beta_start = glm_start(rows, family) if start_from_glm else beta0
    x0 = jnp.concatenate([theta0, beta_start])
    free = jnp.ones(x0.shape, dtype=bool)
    objective = partial(deviance, family=family, structure=structure, n_agq=n_agq)
    opt, hessian = minimize(
        objective, x0, rows, free, method="bfgs", maxiter=maxiter, gtol=gtol, return_hessian=True
    )
    theta, beta = opt.x[: structure.n_theta], opt.x[structure.n_theta :]
    parts = laplace.laplace_parts(theta, beta, rows, family, structure)
    return GLMMFitOutput(
        opt, hessian, parts.modes, laplace.conditional_covariances(parts), beta_start
    )
