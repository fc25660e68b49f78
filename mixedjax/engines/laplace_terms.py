"""The Laplace deviance of a GLMM with any random-effects terms (crossed or nested factors).

With several grouping factors the conditional modes no longer split into one small problem
per group: the spherical random effects ``u = (u_1, …, u_K)`` of all terms, ``u_k`` of shape
``(n_k, q_k)`` (term ``k``: ``q_k`` columns on a factor with ``n_k`` levels, level-major),
enter every row's linear predictor

.. math::
    η_t = x_t'β + o_t + Σ_k z_{tk}' T_k u_{k, c_{tk}},

(``T_k`` the term's relative factor from ``θ``, lme4's column-wise lower triangle; ``c_{tk}``
the row's level of factor ``k``). The penalised deviance ``f(u) = -2 ℓ(u) + u'u`` is
minimised over all ``N = Σ_k n_k q_k`` entries at once by Newton's method on its exact
Hessian

.. math::
    ∇²f = Λ'Z' C Z Λ + 2 I, \\qquad C = \\mathrm{diag}(-2\\, ∂²ℓ_t/∂η_t²),

assembled as a dense ``(N, N)`` matrix by one scatter-add of each row's ``(Q, Q)`` outer
product (``Q = Σ_k q_k``; no step is ``O(n N)``), then factored by a dense Cholesky. The
Laplace deviance is lme4's (``nAGQ = 1``)

.. math::
    D(θ, β) = f(û) + \\log |L|^2, \\qquad L L' = Λ'Z'WZΛ + I,

with the Fisher-scoring weights ``W`` (PIRLS's) at the mode. Derivatives: the mode carries
the implicit-function-theorem JVP ``dû = -(∇²f)⁻¹ d(∇_u f)``, written with differentiable
operations, so gradients and Hessians of ``D`` in ``(θ, β)`` are exact, as for one factor
(:mod:`mixedjax.engines.laplace`). The dense Hessian limits this engine to
:data:`MAX_RANDOM` random effects (VerbAgg, 316 subjects × 24 items, has 340).

Shapes: ``θ (n_theta,)``, ``β (p,)``, :class:`TermRows` with ``(n, ...)`` arrays, ``u (N,)``.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.families import Family
from mixedjax.design.crossed import CrossedStructure
from mixedjax.engines.crossed import term_factors
from mixedjax.engines.laplace import damped_newton

#: Largest number of random effects ``N`` (the mode problem's Hessian is dense ``(N, N)``).
MAX_RANDOM = 6000
#: Newton iterations allowed for the conditional modes.
MODE_MAX_ITER = 60
#: The iterations stop when the Newton step is below this (absolute on ``u``, relative to
#: ``1 + max|u|``).
MODE_STEP_TOL = 1e-13


class TermRows(NamedTuple):
    """Rows of a GLMM with random-effects terms (a pytree).

    Attributes:
        y: ``(n,)`` response (binomial: the proportion of successes).
        weights: ``(n,)`` prior weights (binomial: the number of trials).
        offset: ``(n,)`` known part of the linear predictor.
        X: ``(n, p)`` fixed-effects design.
        designs: per term, ``(n, q_k)`` its columns.
        columns: per term, ``(n, q_k)`` int32: the index in ``u`` of each column at the
            row's level (``start_k + c_{tk} q_k + j``).
    """

    y: jnp.ndarray
    weights: jnp.ndarray
    offset: jnp.ndarray
    X: jnp.ndarray
    designs: tuple
    columns: tuple


def term_rows(y, weights, offset, X, designs, codes, structure: CrossedStructure) -> TermRows:
    """:class:`TermRows` from host arrays; ``codes``: per term ``(n,)`` levels in
    ``[0, n_k)``, terms in ``structure``'s order."""
    n_random = n_random_effects(structure)
    if n_random > MAX_RANDOM:
        raise ValueError(
            f"the model has {n_random} random effects; the GLMM engine for several grouping "
            f"factors holds their joint Hessian densely and takes at most {MAX_RANDOM}"
        )
    starts = np.cumsum([0] + [q * n for q, n in zip(structure.q, structure.n_levels, strict=True)])
    columns = tuple(
        (starts[k] + np.asarray(c, np.int64)[:, None] * q + np.arange(q)).astype(np.int32)
        for k, (c, q) in enumerate(zip(codes, structure.q, strict=True))
    )
    f64 = partial(np.asarray, dtype=float)
    return TermRows(
        f64(y), f64(weights), f64(offset), f64(X), tuple(f64(d) for d in designs), columns
    )


def n_random_effects(structure: CrossedStructure) -> int:
    """``N = Σ_k n_k q_k``."""
    return int(sum(q * n for q, n in zip(structure.q, structure.n_levels, strict=True)))


def _effective(theta, rows: TermRows, structure: CrossedStructure):
    """``(E (n, Q), I (n, Q))``: each row's ``T_k' z_{tk}`` for every term, side by side,
    and their indices in ``u`` (so ``η_random = Σ_j E[:, j] u[I[:, j]]``)."""
    factors = term_factors(theta, structure)
    E = jnp.concatenate([d @ T for d, T in zip(rows.designs, factors, strict=True)], axis=1)
    return E, jnp.concatenate(rows.columns, axis=1)


def penalized_deviance(u, theta, beta, rows: TermRows, family: Family, structure):
    """``f(u) = -2 ℓ(u) + u'u`` (scalar)."""
    E, index = _effective(theta, rows, structure)
    eta = rows.X @ beta + rows.offset + jnp.sum(E * u[index], axis=1)
    return -2.0 * jnp.sum(family.loglik(rows.y, eta, rows.weights)) + u @ u


def _linear_predictor(u, theta, beta, rows, structure):
    E, index = _effective(theta, rows, structure)
    return rows.X @ beta + rows.offset + jnp.sum(E * u[index], axis=1), E, index


def _curvature(eta, rows: TermRows, family: Family):
    """``-2 ∂²ℓ_t/∂η_t²`` per row (``(n,)``): the exact second derivative."""

    def loglik_row(e, y, w):
        return family.loglik(y, e, w)

    second = jax.vmap(jax.grad(jax.grad(loglik_row)))(eta, rows.y, rows.weights)
    return -2.0 * second


def _gram(E, index, row_weights, n_random: int, diagonal: float):
    """``Σ_t c_t (E_t)(E_t)'`` scattered into ``(N, N)`` at ``I_t × I_t``, plus ``diagonal I``."""
    outer = row_weights[:, None, None] * E[:, :, None] * E[:, None, :]
    M = jnp.zeros((n_random, n_random), E.dtype)
    M = M.at[index[:, :, None], index[:, None, :]].add(outer)
    return M + diagonal * jnp.eye(n_random, dtype=E.dtype)


def mode_hessian(u, theta, beta, rows: TermRows, family: Family, structure):
    """The exact ``∇²f (N, N)`` at ``u``."""
    eta, E, index = _linear_predictor(u, theta, beta, rows, structure)
    return _gram(E, index, _curvature(eta, rows, family), u.shape[0], 2.0)


def _newton_mode(theta, beta, rows, family, structure, n_random):
    f = partial(penalized_deviance, theta=theta, beta=beta, rows=rows, family=family,
                structure=structure)  # fmt: skip
    grad_f = jax.grad(f)

    def newton_step(u):
        grad = grad_f(u)
        L = jnp.linalg.cholesky(mode_hessian(u, theta, beta, rows, family, structure))
        return grad, -jax.scipy.linalg.cho_solve((L, True), grad)

    return damped_newton(f, newton_step, jnp.zeros(n_random, theta.dtype), MODE_MAX_ITER,
                         MODE_STEP_TOL)  # fmt: skip


@partial(jax.custom_jvp, nondiff_argnums=(0, 1))
def conditional_modes(family: Family, structure: CrossedStructure, theta, beta, rows: TermRows):
    """``û (N,)``, the minimiser of ``f``; differentiable by the implicit function theorem."""
    return _newton_mode(theta, beta, rows, family, structure, n_random_effects(structure))


@conditional_modes.defjvp
def _conditional_modes_jvp(family, structure, primals, tangents):
    u = conditional_modes(family, structure, *primals)

    def score(theta, beta, rows):
        return jax.grad(penalized_deviance)(u, theta, beta, rows, family, structure)

    _, d_score = jax.jvp(score, primals, tangents)
    H = mode_hessian(u, *primals, family, structure)
    du = -jax.scipy.linalg.cho_solve((jnp.linalg.cholesky(H), True), d_score)
    return u, du


class TermLaplaceParts(NamedTuple):
    """Pieces of the deviance at the conditional modes.

    Attributes:
        modes: ``(N,)`` ``û``.
        penalized: ``()`` ``f(û)``.
        chol: ``(N, N)`` ``L`` with ``L L' = Λ'Z'WZΛ + I``.
    """

    modes: jnp.ndarray
    penalized: jnp.ndarray
    chol: jnp.ndarray


def laplace_parts(theta, beta, rows: TermRows, family: Family, structure: CrossedStructure):
    """:class:`TermLaplaceParts` at ``(θ, β)`` (differentiable)."""
    u = conditional_modes(family, structure, theta, beta, rows)
    eta, E, index = _linear_predictor(u, theta, beta, rows, structure)
    penalized = -2.0 * jnp.sum(family.loglik(rows.y, eta, rows.weights)) + u @ u
    W = family.working_weights(eta, rows.weights)
    return TermLaplaceParts(u, penalized, jnp.linalg.cholesky(_gram(E, index, W, u.shape[0], 1.0)))


def laplace_deviance(theta, beta, rows: TermRows, family: Family, structure: CrossedStructure):
    """lme4's Laplace deviance ``D(θ, β)`` (module docstring); non-finite values become
    ``+inf``. Scalar.

    Example:
        >>> import jax.numpy as jnp, numpy as np
        >>> from mixedjax.core.families import Poisson
        >>> st = CrossedStructure(q=(1, 1), n_levels=(2, 2), p=1)
        >>> codes = [np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1])]  # two crossed factors
        >>> rows = term_rows(np.array([0.0, 2, 1, 3]), np.ones(4), np.zeros(4), np.ones((4, 1)),
        ...                  [np.ones((4, 1))] * 2, codes, st)
        >>> round(float(laplace_deviance(jnp.array([0.5, 0.3]), jnp.array([0.3]), rows,
        ...                              Poisson(), st)), 6)
        12.719411
    """
    parts = laplace_parts(theta, beta, rows, family, structure)
    value = parts.penalized + 2.0 * jnp.sum(jnp.log(jnp.diagonal(parts.chol)))
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


def term_conditional_covariances(parts: TermLaplaceParts, theta, structure):
    """Per term, ``(n_k, q_k, q_k)``: the diagonal blocks of ``Λ (L L')⁻¹ Λ'``, the
    conditional covariance of each level's random effects (lme4's ``condVar``)."""
    inverse = jax.scipy.linalg.cho_solve((parts.chol, True), jnp.eye(parts.chol.shape[0]))
    out, start = [], 0
    for T, q, n in zip(term_factors(theta, structure), structure.q, structure.n_levels,
                       strict=True):  # fmt: skip
        idx = start + jnp.arange(n)[:, None] * q + jnp.arange(q)  # (n, q)
        blocks = inverse[idx[:, :, None], idx[:, None, :]]  # (n, q, q)
        out.append(T @ blocks @ T.T)
        start += n * q
    return out


def term_modes(parts: TermLaplaceParts, theta, structure):
    """Per term, ``(n_k, q_k)`` random effects ``γ = T_k u`` on the data scale."""
    out, start = [], 0
    for T, q, n in zip(term_factors(theta, structure), structure.q, structure.n_levels,
                       strict=True):  # fmt: skip
        out.append(parts.modes[start : start + n * q].reshape(n, q) @ T.T)
        start += n * q
    return out
