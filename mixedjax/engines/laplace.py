"""The Laplace and adaptive Gauss–Hermite deviance of a one-factor GLMM (lme4's ``glmer``).

Notation (lme4's). Group ``i`` has rows ``t`` with response ``y_t``, prior weight ``w_t``,
linear predictor

.. math::
    η_t = x_t'β + o_t + z_t' Λ(θ) u_i, \\qquad u_i \\sim N(0, I_r),

(``γ_i = Λ u_i`` are the random effects on the data scale, ``Λ = theta_to_factor(θ)``),
and conditional log-likelihood ``ℓ_i(u) = Σ_t log p(y_t | η_t)`` (with its constants,
:mod:`mixedjax.core.families`). The *penalised deviance* of a group is

.. math::
    f_i(u) = -2 ℓ_i(u) + u'u,

minimised per group by Newton's method (its Hessian is positive definite for the families
here) at the conditional mode ``û_i``. With the Fisher-scoring weights
``W_t = w_t (dμ/dη)² / V(μ_t)`` at ``û_i`` (PIRLS's weights) and the Cholesky factor
``L_i L_i' = Λ' Z_i' W_i Z_i Λ + I``, the Laplace approximation of ``-2 log`` of the
marginal likelihood is lme4's ``nAGQ = 1`` objective

.. math::
    D(θ, β) = Σ_i [ f_i(û_i) + \\log |L_i|^2 ].

For one scalar random effect per group the adaptive Gauss–Hermite rule with nodes
``z_k`` and weights ``ω_k`` (standard normal weight, ``Σ ω_k = 1``) puts ``u = û_i + z_k / L_i``:

.. math::
    D_K(θ, β) = Σ_i [ f_i(û_i) + 2 \\log L_i
        - 2 \\log Σ_k ω_k \\exp(-(f_i(û_i + z_k/L_i) - f_i(û_i))/2 + z_k^2/2) ],

which is the Laplace deviance for ``K = 1`` and the exact ``-2 log`` marginal likelihood as
``K → ∞``. (lme4 evaluates it with deviance residuals in place of ``-2 log p``, which drops
the saturated log-likelihood ``Σ_t log p(y_t | μ_t = y_t)``; the objective here keeps it, so
the Laplace and quadrature log-likelihoods are comparable.)

Derivatives. ``û(θ, β)`` is found by iterations, but it is defined by ``∇_u f_i(û_i) = 0``;
:func:`conditional_modes` carries a custom JVP from the implicit function theorem,
``dû_i = -(∇²_{uu} f_i)⁻¹ d(∇_u f_i)``, written with differentiable operations, so ``jax.grad``
and Hessians (forward over reverse) of ``D`` are exact. (``f_i`` is stationary in ``u`` but
the log-determinant and the quadrature sum are not, so ``û``'s derivative is needed.)

Shapes: ``θ (n_theta,)``, ``β (p,)``, :class:`~mixedjax.engines.laplace_rows.GroupedRows`
with ``(n_groups, n_max, ...)`` arrays, modes ``(n_groups, r)``.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlogy

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, theta_to_factor
from mixedjax.core.families import Family
from mixedjax.engines.laplace_rows import GroupedRows

#: Newton iterations allowed per conditional-mode problem (it converges quadratically:
#: 5-10 iterations from ``u = 0`` in practice).
MODE_MAX_ITER = 60
#: A group's iterations stop when its Newton step is below this (absolute, on ``u``).
MODE_STEP_TOL = 1e-13


def fixed_predictor(beta: jnp.ndarray, rows: GroupedRows) -> jnp.ndarray:
    """``X β + o``: ``(n_groups, n_max)``."""
    return jnp.einsum("gmp,p->gm", rows.X, beta) + rows.offset


def group_deviance(u, factor, eta_fixed, y, weights, Z, family: Family, dispersion=1.0):
    """One group's penalised deviance ``f_i(u) = -2 ℓ_i(u) + u'u`` (scalar).

    Args:
        u: ``(r,)`` spherical random effects; factor: ``Λ (r, r)``.
        eta_fixed: ``(n_max,)`` ``X_i β + o_i``; y, weights: ``(n_max,)``; Z: ``(n_max, r)``.
        dispersion: ``φ`` (scalar; 1 for the binomial and Poisson).
    """
    eta = eta_fixed + Z @ (factor @ u)
    return -2.0 * jnp.sum(family.loglik(y, eta, weights, dispersion)) + u @ u


def group_score_hessian(u, factor, eta_fixed, y, weights, Z, family: Family, dispersion=1.0):
    """``(∇_u f_i (r,), ∇²_u f_i (r, r))`` written out: with ``ℓ'_t, ℓ''_t`` the
    derivatives of each row's log-likelihood in ``η_t`` (elementwise autodiff),
    ``∇f = 2u - 2 (ZΛ)'ℓ'`` and ``∇²f = 2I - 2 (ZΛ)' diag(ℓ'') (ZΛ)``. (Smaller graphs than
    nested ``jax.hessian`` of :func:`group_deviance`, which matters once differentiated.)"""
    ZL = Z @ factor
    eta = eta_fixed + ZL @ u
    row_grad = jax.grad(lambda e: jnp.sum(family.loglik(y, e, weights, dispersion)))
    d1, d2 = jax.jvp(row_grad, (eta,), (jnp.ones_like(eta),))
    r = u.shape[0]
    grad = 2.0 * u - 2.0 * ZL.T @ d1
    hess = 2.0 * jnp.eye(r, dtype=u.dtype) - 2.0 * ZL.T @ (d2[:, None] * ZL)
    return grad, hess


def _per_group(fn, family, dispersion=1.0):
    """``fn(u, factor, eta_fixed, y, weights, Z)`` vmapped over groups (factor and
    dispersion shared)."""
    return jax.vmap(
        partial(fn, family=family, dispersion=dispersion), in_axes=(0, None, 0, 0, 0, 0)
    )


def damped_newton(f, newton_step, u0, max_iter: int = MODE_MAX_ITER, step_tol=MODE_STEP_TOL):
    """Minimise ``f`` from ``u0`` by Newton's method with step halving (pure; a
    ``while_loop``). ``newton_step(u)`` returns ``(∇f(u), -∇²f(u)⁻¹∇f(u))``.

    Near the mode (Newton decrement ``g'H⁻¹g`` below 1e-8) the full step is taken whatever
    the rounding of ``f`` says: ``f`` alone resolves ``u`` only to about ``√eps``. Stops when
    the step is below ``step_tol (1 + max|u|)``, when no halving lowers ``f``, or after
    ``max_iter`` steps.
    """

    def cond(state):
        _, _, k, done = state
        return (k < max_iter) & ~done

    def body(state):
        u, value, k, _ = state
        grad, step = newton_step(u)
        near = -(grad @ step) < 1e-8

        def halve_cond(s):
            t, trial, j = s
            return ~near & ~(trial <= value) & (j < 40)

        def halve_body(s):
            t, _, j = s
            return 0.5 * t, f(u + 0.5 * t * step), j + 1

        t, trial, _ = jax.lax.while_loop(halve_cond, halve_body, (1.0, f(u + step), 0))
        accept = near | (trial <= value)
        new_u = jnp.where(accept, u + t * step, u)
        small = jnp.max(jnp.abs(t * step)) <= step_tol * (1.0 + jnp.max(jnp.abs(u)))
        done = small | ~accept | ~jnp.isfinite(trial)
        return new_u, jnp.where(accept, trial, value), k + 1, done

    state = (u0, f(u0), jnp.asarray(0), jnp.asarray(False))
    u, _, _, _ = jax.lax.while_loop(cond, body, state)
    return u


def _newton_mode(u0, factor, eta_fixed, y, weights, Z, family: Family, dispersion=1.0):
    """Minimise one group's ``f_i`` (``(r,)``; :func:`damped_newton`)."""
    data = dict(factor=factor, eta_fixed=eta_fixed, y=y, weights=weights, Z=Z)
    f = partial(group_deviance, **data, family=family, dispersion=dispersion)
    derivatives = partial(group_score_hessian, **data, family=family, dispersion=dispersion)

    def newton_step(u):
        grad, hess = derivatives(u)
        return grad, -smallmat.cho_solve(smallmat.cholesky(hess), grad[:, None])[:, 0]

    return damped_newton(f, newton_step, u0)


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def conditional_modes(family: Family, structure: CovStructure, theta, beta, rows: GroupedRows):
    """Conditional modes ``û (n_groups, r)``: the minimisers of each group's ``f_i``.

    Differentiable in ``θ``, ``β`` and the data by the implicit function theorem (module
    docstring); the iterations themselves are not differentiated.
    """
    factor = theta_to_factor(theta, structure)
    eta_fixed = fixed_predictor(beta, rows)
    u0 = jnp.zeros(rows.Z.shape[:1] + (structure.n_random,), theta.dtype)
    solve = _per_group(_newton_mode, family, rows.dispersion)
    return solve(u0, factor, eta_fixed, rows.y, rows.weights, rows.Z)


@conditional_modes.defjvp
def _conditional_modes_jvp(family, structure, primals, tangents):
    u = conditional_modes(family, structure, *primals)

    def score_and_hessian(theta, beta, rows):
        factor = theta_to_factor(theta, structure)
        derivatives = _per_group(group_score_hessian, family, rows.dispersion)
        return derivatives(u, factor, fixed_predictor(beta, rows), rows.y, rows.weights, rows.Z)

    _, d_score = jax.jvp(lambda *a: score_and_hessian(*a)[0], primals, tangents)
    _, H = score_and_hessian(*primals)
    du = -smallmat.cho_solve(smallmat.cholesky(H), d_score[..., None])[..., 0]
    return u, du


class LaplaceParts(NamedTuple):
    """Pieces of the deviance at the conditional modes.

    Attributes:
        modes: ``(n_groups, r)`` ``û``.
        penalized: ``(n_groups,)`` ``f_i(û_i)``.
        chol: ``(n_groups, r, r)`` ``L_i`` with ``L_i L_i' = Λ'Z_i'W_i Z_i Λ + I``.
        factor: ``(r, r)`` ``Λ``.
    """

    modes: jnp.ndarray
    penalized: jnp.ndarray
    chol: jnp.ndarray
    factor: jnp.ndarray


def laplace_parts(theta, beta, rows: GroupedRows, family: Family, structure: CovStructure):
    """:class:`LaplaceParts` at ``(θ, β)`` (differentiable)."""
    factor = theta_to_factor(theta, structure)
    u = conditional_modes(family, structure, theta, beta, rows)
    eta_fixed = fixed_predictor(beta, rows)
    penalized = _per_group(group_deviance, family, rows.dispersion)(
        u, factor, eta_fixed, rows.y, rows.weights, rows.Z
    )
    ZL = rows.Z @ factor  # (n_groups, n_max, r)
    eta = eta_fixed + jnp.einsum("gmr,gr->gm", ZL, u)
    W = family.working_weights(eta, rows.weights) / rows.dispersion
    r = structure.n_random
    M = jnp.einsum("gmr,gm,gms->grs", ZL, W, ZL) + jnp.eye(r, dtype=theta.dtype)
    return LaplaceParts(u, penalized, smallmat.cholesky(M), factor)


def _finite_or_inf(value):
    """A non-finite deviance becomes +inf, so an optimiser backs off instead of crashing."""
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


def laplace_deviance(theta, beta, rows: GroupedRows, family: Family, structure: CovStructure):
    """lme4's Laplace deviance ``D(θ, β)`` (``nAGQ = 1``; module docstring); scalar.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from mixedjax.core.families import Poisson
        >>> from mixedjax.engines.laplace_rows import group_rows
        >>> rows, _ = group_rows(np.array([0.0, 2, 1, 3]), np.ones(4), np.zeros(4),
        ...                      np.ones((4, 1)), np.ones((4, 1)), np.array([0, 0, 1, 1]), 2)
        >>> d = laplace_deviance(jnp.array([0.5]), jnp.array([0.3]), rows, Poisson(),
        ...                      CovStructure(1))
        >>> round(float(d), 6)
        12.918074
    """
    parts = laplace_parts(theta, beta, rows, family, structure)
    logdet = 2.0 * smallmat.log_diag_sum(parts.chol)
    return _finite_or_inf(jnp.sum(parts.penalized + logdet))


def gauss_hermite(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the ``n_nodes``-point Gauss–Hermite rule for the standard
    normal density (``Σ ω_k g(z_k) ≈ E g(Z)``, ``Σ ω_k = 1``), as lme4's ``GHrule``.

    Example:
        >>> z, w = gauss_hermite(3)
        >>> z.round(6).tolist(), w.round(6).tolist()
        ([-1.732051, 0.0, 1.732051], [0.166667, 0.666667, 0.166667])
    """
    z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    return z, w / np.sqrt(2.0 * np.pi)


def agq_deviance(
    theta, beta, rows: GroupedRows, family: Family, structure: CovStructure, n_nodes: int
):
    """Adaptive Gauss–Hermite deviance ``D_K(θ, β)`` for one scalar random effect per group
    (``structure.n_random == 1``); ``n_nodes = 1`` is the Laplace deviance. Scalar."""
    if structure.n_random != 1:
        raise ValueError(
            f"adaptive Gauss-Hermite quadrature needs one scalar random effect per group; "
            f"this model has {structure.n_random}"
        )
    parts = laplace_parts(theta, beta, rows, family, structure)
    z, w = gauss_hermite(n_nodes)
    z = jnp.asarray(z, theta.dtype)
    scale = parts.chol[:, 0, 0]  # L_i
    nodes = parts.modes + z[None, :] / scale[:, None]  # (n_groups, K)
    eta_fixed = fixed_predictor(beta, rows)
    f = _per_group(group_deviance, family, rows.dispersion)

    def at_node(u_k):  # (n_groups,) -> f_i at u_k
        return f(u_k[:, None], parts.factor, eta_fixed, rows.y, rows.weights, rows.Z)

    f_nodes = jax.vmap(at_node, in_axes=1, out_axes=1)(nodes)  # (n_groups, K)
    log_terms = (
        jnp.log(jnp.asarray(w, theta.dtype))
        - 0.5 * (f_nodes - parts.penalized[:, None])
        + 0.5 * z**2
    )
    log_mult = jax.scipy.special.logsumexp(log_terms, axis=1)
    total = parts.penalized + 2.0 * jnp.log(scale) - 2.0 * log_mult
    return _finite_or_inf(jnp.sum(total))


def conditional_covariances(parts: LaplaceParts) -> jnp.ndarray:
    """``Λ (L_i L_i')⁻¹ Λ'``: ``(n_groups, r, r)``, the conditional covariance of the random
    effects ``γ_i`` at the modes (lme4's ``condVar`` for unit dispersion)."""
    r = parts.factor.shape[0]
    eye = jnp.broadcast_to(jnp.eye(r, dtype=parts.factor.dtype), parts.chol.shape)
    inv = smallmat.cho_solve(parts.chol, eye)
    return parts.factor @ inv @ parts.factor.T


def saturated_loglik(rows: GroupedRows, family: Family) -> jnp.ndarray:
    """``Σ_t log p(y_t | μ_t = y_t)``: the constant lme4's quadrature deviance leaves out
    (it sums deviance residuals, ``-2 log p(y|μ) + 2 log p(y|y)``). Binomial and Poisson."""
    if family.name == "binomial":
        successes = rows.weights * rows.y
        failures = rows.weights - successes
        log_choose = gammaln(rows.weights + 1) - gammaln(successes + 1) - gammaln(failures + 1)
        return jnp.sum(log_choose + xlogy(successes, rows.y) + xlogy(failures, 1 - rows.y))
    if family.name == "poisson":
        y = rows.y
        return jnp.sum(rows.weights * (xlogy(y, y) - y - gammaln(y + 1)))
    raise ValueError(f"saturated_loglik: family {family.name!r} is not binomial or Poisson")
