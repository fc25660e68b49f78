"""lme4's ``nAGQ = 0``: the fixed effects come from the penalised IRLS, only ``θ`` is optimised.

For fixed ``θ``, ``(û, β̃)`` jointly minimise the penalised deviance
``F(u, β) = Σ_i f_i(u_i, β)`` (:mod:`mixedjax.engines.laplace`). With the modes profiled
out, ``h(β) = Σ_i f_i(û_i(β), β)`` has gradient ``Σ_i ∂_β f_i`` (the modes are stationary)
and Hessian the Schur complement

.. math::
    S = Σ_i [H_{ββ,i} - H_{βu,i} H_{uu,i}^{-1} H_{uβ,i}] \\quad (p, p)

of each group's joint Hessian of ``f_i``; Newton's method on ``h`` (with step halving)
finds ``β̃(θ)``. The objective is the Laplace deviance there,

.. math::
    D_0(θ) = D(θ, β̃(θ)),

which lme4 minimises over ``θ`` alone. :func:`profiled_fixed_effects` carries the implicit
derivative ``dβ̃ = -S⁻¹ d(∇_β h)``, so ``D_0`` has exact gradients and Hessians.

lme4's standard errors for ``nAGQ = 0`` are conditional on ``θ``: ``S_F⁻¹`` with ``S_F`` the
same Schur complement built from the Fisher weights ``W`` (lme4's ``RX'RX``),
``X'WX - X'WZΛ (Λ'Z'WZΛ + I)⁻¹ Λ'Z'WX`` (:func:`fixed_effects_information`).
"""

from functools import partial

import jax
import jax.numpy as jnp

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, theta_to_factor
from mixedjax.core.families import Family
from mixedjax.engines import laplace
from mixedjax.engines.laplace_rows import GroupedRows

#: Newton iterations for ``β̃`` (quadratic convergence: a handful from the GLM start).
BETA_MAX_ITER = 50


def _group_joint(v, factor, X, offset, y, weights, Z, r: int, family: Family):
    """``f_i`` as a function of ``v = (u_i, β)`` (scalar)."""
    u, beta = v[:r], v[r:]
    return laplace.group_deviance(u, factor, X @ beta + offset, y, weights, Z, family)


def _schur_and_gradient(theta, beta, rows, family, structure):
    """``(S (p, p), ∇_β h (p,), h)`` at ``β`` with the modes at ``(θ, β)``."""
    r = structure.n_random
    factor = theta_to_factor(theta, structure)
    u = laplace.conditional_modes(family, structure, theta, beta, rows)
    v = jnp.concatenate([u, jnp.broadcast_to(beta, u.shape[:1] + beta.shape)], axis=1)
    joint = partial(_group_joint, r=r, family=family)
    in_axes = (0, None, 0, 0, 0, 0, 0)
    args = (factor, rows.X, rows.offset, rows.y, rows.weights, rows.Z)
    value = jax.vmap(joint, in_axes=in_axes)(v, *args)
    grad = jax.vmap(jax.grad(joint), in_axes=in_axes)(v, *args)
    hess = jax.vmap(jax.hessian(joint), in_axes=in_axes)(v, *args)
    H_uu, H_ub, H_bb = hess[:, :r, :r], hess[:, :r, r:], hess[:, r:, r:]
    solved = smallmat.cho_solve(smallmat.cholesky(H_uu), H_ub)  # (n_groups, r, p)
    S = jnp.sum(H_bb - jnp.swapaxes(H_ub, 1, 2) @ solved, axis=0)
    return 0.5 * (S + S.T), jnp.sum(grad[:, r:], axis=0), jnp.sum(value)


def _solve_beta(family, structure, theta, rows, beta0):
    def h(beta):
        u = laplace.conditional_modes(family, structure, theta, beta, rows)
        factor = theta_to_factor(theta, structure)
        f = jax.vmap(partial(laplace.group_deviance, family=family), in_axes=(0, None, 0, 0, 0, 0))
        return jnp.sum(f(u, factor, laplace.fixed_predictor(beta, rows), rows.y, rows.weights,
                         rows.Z))  # fmt: skip

    def cond(state):
        _, _, k, done = state
        return (k < BETA_MAX_ITER) & ~done

    def body(state):
        beta, value, k, _ = state
        S, grad, _ = _schur_and_gradient(theta, beta, rows, family, structure)
        step = -smallmat.cho_solve(smallmat.cholesky(S), grad[:, None])[:, 0]
        near = -(grad @ step) < 1e-8  # in the quadratic region: the full step

        def halve_cond(s):
            t, trial, j = s
            return ~near & ~(trial <= value) & (j < 40)

        def halve_body(s):
            t, _, j = s
            return 0.5 * t, h(beta + 0.5 * t * step), j + 1

        t, trial, _ = jax.lax.while_loop(halve_cond, halve_body, (1.0, h(beta + step), 0))
        accept = near | (trial <= value)
        new_beta = jnp.where(accept, beta + t * step, beta)
        small = jnp.max(jnp.abs(t * step)) <= 1e-13 * (1.0 + jnp.max(jnp.abs(beta)))
        done = small | ~accept | ~jnp.isfinite(trial)
        return new_beta, jnp.where(accept, trial, value), k + 1, done

    state = (beta0, h(beta0), jnp.asarray(0), jnp.asarray(False))
    return jax.lax.while_loop(cond, body, state)[0]


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def profiled_fixed_effects(family: Family, structure: CovStructure, theta, rows, beta0):
    """``β̃(θ) (p,)``: the fixed effects of the joint penalised-IRLS mode at ``θ``, found by
    Newton's method from ``beta0`` (the result does not depend on the start)."""
    return _solve_beta(family, structure, theta, rows, beta0)


@profiled_fixed_effects.defjvp
def _profiled_fixed_effects_jvp(family, structure, primals, tangents):
    theta, rows, beta0 = primals
    beta = profiled_fixed_effects(family, structure, theta, rows, beta0)

    def beta_score(theta, rows):
        return _schur_and_gradient(theta, beta, rows, family, structure)[1]

    _, d_score = jax.jvp(beta_score, (theta, rows), tangents[:2])
    S, _, _ = _schur_and_gradient(theta, beta, rows, family, structure)
    d_beta = -smallmat.cho_solve(smallmat.cholesky(S), d_score[:, None])[:, 0]
    return beta, d_beta


def nagq0_deviance(theta, rows: GroupedRows, beta0, family: Family, structure: CovStructure):
    """``D_0(θ) = D(θ, β̃(θ))`` (module docstring); scalar."""
    beta = profiled_fixed_effects(family, structure, theta, rows, beta0)
    return laplace.laplace_deviance(theta, beta, rows, family, structure)


def fixed_effects_information(theta, beta, rows, family: Family, structure: CovStructure):
    """lme4's ``RX'RX`` for ``nAGQ = 0`` (module docstring): ``(p, p)``."""
    parts = laplace.laplace_parts(theta, beta, rows, family, structure)
    ZL = rows.Z @ parts.factor
    eta = laplace.fixed_predictor(beta, rows) + jnp.einsum("gmr,gr->gm", ZL, parts.modes)
    W = family.working_weights(eta, rows.weights)
    ZWX = jnp.einsum("gmr,gm,gmp->grp", ZL, W, rows.X)
    XWX = jnp.einsum("gmp,gm,gmq->pq", rows.X, W, rows.X)
    solved = smallmat.cho_solve(parts.chol, ZWX)
    S = XWX - jnp.sum(jnp.swapaxes(ZWX, 1, 2) @ solved, axis=0)
    return 0.5 * (S + S.T)
