"""The GLMM fit program: a GLM start, then ``(θ, β)`` jointly by quasi-Newton on the deviance.

lme4's ``glmer`` (``nAGQ >= 1``) minimises the Laplace (or quadrature) deviance
``D(θ, β)`` of :mod:`mixedjax.engines.laplace` over ``x = (θ, β)`` with a derivative-free
optimiser. Here the gradient and Hessian are exact (autodiff through the conditional
modes) and ``x`` is short, so the run is Newton's method inside one ``jit``:

1. ``β₀`` from the GLM without random effects (Fisher scoring, a fixed number of steps;
   R's ``glm.fit`` start ``μ₀``), ``θ₀`` from the caller (lme4's: 1 on the diagonal);
2. Newton iterations on ``D`` (:func:`newton_minimize`); the exact Hessian at the end
   gives the standard errors (``2 H⁻¹``'s ``β`` block, as lme4's ``vcov``);
3. the conditional modes and covariances at the optimum.

Compile time: the deviance's value, gradient and Hessian (through the conditional-mode
iterations and their implicit derivatives) is a large graph, so the Newton loop is written
to hold one copy of it: every iteration evaluates ``(D, ∇D, ∇²D)`` at one candidate point,
and a rejected candidate halves the step for the next iteration (a backtracking line
search spread over iterations).

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
from mixedjax.engines import laplace, laplace_nagq0
from mixedjax.engines.laplace_rows import GroupedRows
from mixedjax.fit.optimize import OptResult

#: Fisher-scoring steps of the GLM start (it converges in 5-10; a few more are cheap).
GLM_STEPS = 25


class GLMMFitOutput(NamedTuple):
    """Result of :func:`fit_glmm`.

    Attributes:
        opt: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` over ``x = (θ, β)``.
        hessian: ``(n_theta + p, n_theta + p)`` exact Hessian of the deviance at ``opt.x``.
        modes: ``(n_groups, r)`` conditional modes ``û`` (spherical scale).
        cond_cov: ``(n_groups, r, r)`` conditional covariances of ``γ_i = Λ u_i``.
        beta_start: ``(p,)`` the GLM start.
        fixed_information: ``(p, p)`` for ``nAGQ = 0``, lme4's ``RX'RX`` (the information
            of ``β`` given ``θ``; :mod:`mixedjax.engines.laplace_nagq0`); NaN otherwise.
    """

    opt: OptResult
    hessian: jnp.ndarray
    modes: jnp.ndarray
    cond_cov: jnp.ndarray
    beta_start: jnp.ndarray
    fixed_information: jnp.ndarray


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


def glm_dispersion(rows: GroupedRows, family: Family, beta: jnp.ndarray) -> jnp.ndarray:
    """The GLM's Pearson estimate ``φ₀ = Σ_t w_t (y_t - μ_t)² / V(μ_t) / (n - p)`` at ``β``
    (R's ``summary.glm`` dispersion): the start of ``φ`` for the Gamma and inverse Gaussian
    families. Scalar; padding rows (weight 0) do not count."""
    eta = laplace.fixed_predictor(beta, rows)
    mu = family.mean(eta)
    pearson = rows.weights * (rows.y - mu) ** 2 / family.variance(jnp.maximum(mu, 1e-300))
    n = jnp.sum(rows.weights > 0)
    return jnp.sum(pearson) / jnp.maximum(n - beta.shape[0], 1)


def split_parameters(x, rows: GroupedRows, family: Family, structure: CovStructure):
    """``(θ, β, rows)`` from the optimiser's ``x``: ``x = (θ, β)``, or ``(θ, β, log φ)`` for
    a family with a dispersion, whose ``φ`` goes into the returned ``rows``."""
    n_theta = structure.n_theta
    if family.has_dispersion:
        return x[:n_theta], x[n_theta:-1], rows._replace(dispersion=jnp.exp(x[-1]))
    return x[:n_theta], x[n_theta:], rows


def deviance(x, rows: GroupedRows, family: Family, structure: CovStructure, n_agq: int):
    """The objective over ``x = (θ, β)`` (``(θ, β, log φ)`` with a dispersion): Laplace
    (``n_agq = 1``) or adaptive Gauss–Hermite deviance."""
    theta, beta, rows = split_parameters(x, rows, family, structure)
    if n_agq == 1:
        return laplace.laplace_deviance(theta, beta, rows, family, structure)
    return laplace.agq_deviance(theta, beta, rows, family, structure, n_agq)


@partial(jax.jit, static_argnames=("family", "structure", "n_agq"))
def deviance_hessian(x, rows, *, family, structure, n_agq):
    """Exact ``∇²D`` at ``x`` (fallback when the optimiser did not leave one)."""
    return jax.hessian(deviance)(x, rows, family, structure, n_agq)


def newton_direction(grad, hess):
    """``-H̃⁻¹ g`` with ``H̃`` the Hessian with eigenvalues ``|λ|`` floored at 1e-10 of the
    largest, so the direction always descends; and whether ``H`` is positive definite."""
    eigval, eigvec = smallmat.eigh(0.5 * (hess + hess.T))
    floor = 1e-10 * jnp.maximum(1.0, jnp.max(jnp.abs(eigval)))
    positive = jnp.min(eigval) > floor
    eigval = jnp.maximum(jnp.abs(eigval), floor)
    return -eigvec @ ((eigvec.T @ grad) / eigval), positive


class _NewtonState(NamedTuple):
    x: jnp.ndarray  # (n,) accepted point
    value: jnp.ndarray  # () D(x)
    grad: jnp.ndarray  # (n,)
    hess: jnp.ndarray  # (n, n)
    direction: jnp.ndarray  # (n,) Newton direction at x
    step: jnp.ndarray  # () step length of the next candidate
    n_iter: jnp.ndarray  # () evaluations so far
    n_accept: jnp.ndarray  # () accepted steps
    status: jnp.ndarray  # () -1 while running, else a STATUS_* code


def newton_minimize(fun, x0, args, maxiter: int = 200, gtol: float = 1e-10):
    """Minimise ``fun(x, args)`` by Newton's method with exact Hessians (pure; under ``jit``).

    Candidate ``x + t d`` (``d``: :func:`newton_direction`) is accepted when it satisfies
    Armijo's condition, or, within rounding of ``f`` (1e-11 relative), lowers the scaled
    gradient ``max |∇f| / max(1, |f|)``; otherwise ``t`` halves. Stops when the scaled
    gradient is at most ``gtol`` (converged), when ``t < 1e-12`` (stalled), on a non-finite
    start, or after ``maxiter`` evaluations.

    Returns ``(OptResult, hessian at x)``.

    Example:
        >>> import jax.numpy as jnp
        >>> res, H = newton_minimize(lambda x, a: jnp.sum(jnp.cosh(x - a)), jnp.zeros(2),
        ...                          jnp.array([1.0, -2.0]))
        >>> res.x.round(10).tolist(), int(res.status), H.round(6).tolist()
        ([1.0, -2.0], 0, [[1.0, 0.0], [0.0, 1.0]])
    """
    from mixedjax.fit.optimize import (
        STATUS_CONVERGED,
        STATUS_MAXITER,
        STATUS_NONFINITE,
        STATUS_STALLED,
        _value_grad_hessian,
    )

    evaluate = _value_grad_hessian(lambda x: fun(x, args))
    n = x0.shape[0]

    def scaled(value, grad):
        return jnp.max(jnp.abs(grad), initial=0.0) / jnp.maximum(1.0, jnp.abs(value))

    def body(s: _NewtonState) -> _NewtonState:
        started = s.n_iter > 0
        candidate = jnp.where(started, s.x + s.step * s.direction, s.x)
        value, grad, hess = evaluate(candidate)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(grad)) & jnp.all(jnp.isfinite(hess))
        slope = s.direction @ s.grad
        armijo = value <= s.value + 1e-4 * s.step * slope
        noise = 1e-11 * jnp.maximum(1.0, jnp.abs(s.value))
        flat = (value <= s.value + noise) & (scaled(value, grad) < scaled(s.value, s.grad))
        accept = finite & (~started | armijo | flat)
        direction, _ = newton_direction(grad, hess)
        x = jnp.where(accept, candidate, s.x)
        new_value = jnp.where(accept, value, s.value)
        new_grad = jnp.where(accept, grad, s.grad)
        step = jnp.where(accept, 1.0, 0.5 * s.step)
        status = jnp.where(accept & (scaled(new_value, new_grad) <= gtol), STATUS_CONVERGED, -1)
        status = jnp.where(~started & ~finite, STATUS_NONFINITE, status)
        status = jnp.where((status < 0) & (step < 1e-12), STATUS_STALLED, status)
        return _NewtonState(
            x,
            new_value,
            new_grad,
            jnp.where(accept, hess, s.hess),
            jnp.where(accept, direction, s.direction),
            step,
            s.n_iter + 1,
            s.n_accept + (accept & started),
            status,
        )

    def cond(s: _NewtonState):
        return (s.status < 0) & (s.n_iter < maxiter)

    zero = jnp.zeros((), x0.dtype)
    state = _NewtonState(
        x0, zero, jnp.zeros(n, x0.dtype), jnp.zeros((n, n), x0.dtype), jnp.zeros(n, x0.dtype),
        jnp.ones((), x0.dtype), jnp.asarray(0), jnp.asarray(0), jnp.asarray(-1),
    )  # fmt: skip
    s = jax.lax.while_loop(cond, body, state)
    status = jnp.where(s.status < 0, STATUS_MAXITER, s.status)
    result = OptResult(
        s.x, s.value, s.grad, s.n_accept, s.n_iter, s.n_accept, scaled(s.value, s.grad), status
    )
    return result, s.hess


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
    maxiter: int = 200,
    gtol: float = 1e-10,
) -> GLMMFitOutput:
    """Minimise the deviance over ``(θ, β)``, and ``log φ`` for a family with a dispersion
    (started at the GLM's Pearson estimate; see the module docstring).

    ``beta0`` is used as the start of ``β`` unless ``start_from_glm``.
    """
    beta_start = glm_start(rows, family) if start_from_glm else beta0
    start = [theta0, beta_start]
    if family.has_dispersion:
        start.append(jnp.log(glm_dispersion(rows, family, beta_start))[None])
    x0 = jnp.concatenate(start)
    objective = partial(deviance, family=family, structure=structure, n_agq=n_agq)
    opt, hessian = newton_minimize(objective, x0, rows, maxiter=maxiter, gtol=gtol)
    theta, beta, rows = split_parameters(opt.x, rows, family, structure)
    parts = laplace.laplace_parts(theta, beta, rows, family, structure)
    p = beta.shape[0]
    return GLMMFitOutput(
        opt, hessian, parts.modes, laplace.conditional_covariances(parts), beta_start,
        jnp.full((p, p), jnp.nan, beta.dtype),
    )  # fmt: skip


def _nagq0_objective(theta, args, family, structure):
    rows, beta_start = args
    return laplace_nagq0.nagq0_deviance(theta, rows, beta_start, family, structure)


@partial(jax.jit, static_argnames=("family", "structure", "maxiter", "gtol"))
def fit_glmm_nagq0(
    theta0: jnp.ndarray,
    rows: GroupedRows,
    *,
    family: Family,
    structure: CovStructure,
    maxiter: int = 200,
    gtol: float = 1e-10,
) -> GLMMFitOutput:
    """lme4's ``nAGQ = 0``: minimise ``D_0(θ) = D(θ, β̃(θ))`` over ``θ`` alone, ``β̃`` from
    the joint penalised IRLS (:mod:`mixedjax.engines.laplace_nagq0`). The returned
    ``opt.x`` is ``(θ̂, β̃(θ̂))`` (``opt.grad``: zero in the ``β`` part, which is not
    optimised over); ``hessian`` is over ``θ`` only."""
    beta_start = glm_start(rows, family)
    objective = partial(_nagq0_objective, family=family, structure=structure)
    opt, hessian = newton_minimize(objective, theta0, (rows, beta_start), maxiter, gtol)
    theta = opt.x
    beta = laplace_nagq0.profiled_fixed_effects(family, structure, theta, rows, beta_start)
    parts = laplace.laplace_parts(theta, beta, rows, family, structure)
    info = laplace_nagq0.fixed_effects_information(theta, beta, rows, family, structure)
    opt = opt._replace(
        x=jnp.concatenate([theta, beta]), grad=jnp.concatenate([opt.grad, jnp.zeros_like(beta)])
    )
    return GLMMFitOutput(
        opt, hessian, parts.modes, laplace.conditional_covariances(parts), beta_start, info
    )
