"""L1-penalised fixed effects (statsmodels' ``MixedLM.fit_regularized(method="l1")``).

As statsmodels, the covariance parameters are held at the unpenalised fit, and the fixed
effects minimise

.. math::
    (y - Xβ)'V^{-1}(y - Xβ) + \\sum_j α_j |β_j| = β'Aβ - 2c'β + \\text{const} + \\sum_j α_j|β_j|,

with ``A = X'V⁻¹X`` and ``c = X'V⁻¹y`` (``V = σ² V₁``) read off the GLS system, so no pass
over the data is needed. The minimiser is found by cyclic coordinate descent ("shooting"):
for coordinate ``j`` with ``a = A_jj`` and ``b = -2(c_j - Σ_{k≠j} A_jk β_k)``,

.. math::
    β_j = -\\frac{b - α_j}{2a} \\; (b > α_j), \\qquad -\\frac{b + α_j}{2a} \\; (b < -α_j),
    \\qquad 0 \\text{ otherwise};

coefficients below ``ceps`` in magnitude are left at zero (statsmodels' rule). Sweeps run in
a ``lax.while_loop`` until the largest change is below ``ptol``. The scale is then
``(y - Xβ)'V₁⁻¹(y - Xβ)/(n - p)`` (REML) or ``/n`` (ML), as statsmodels' ``get_scale``.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.engines.onefactor import conditional_modes, gls_system_theta, objective_given_beta
from mixedjax.fit.estimation import Estimates


@partial(jax.jit, static_argnames=("maxit",))
def lasso_coordinate_descent(A, c, alpha, beta0, ceps, ptol, *, maxit: int):
    """Minimise ``β'Aβ - 2c'β + Σ α_j|β_j|`` by cyclic coordinate descent.

    Returns:
        ``(beta (p,), n_sweeps ())``.
    """
    p = beta0.shape[0]

    def coordinate(j, beta):
        skip = jnp.abs(beta[j]) < ceps
        a = A[j, j]
        partial_fit = A[j] @ beta - a * beta[j]
        b = -2.0 * (c[j] - partial_fit)
        new = jnp.where(
            b > alpha[j],
            -(b - alpha[j]) / (2 * a),
            jnp.where(b < -alpha[j], -(b + alpha[j]) / (2 * a), 0.0),
        )
        return beta.at[j].set(jnp.where(skip, beta[j], new))

    def body(carry):
        beta, _, k = carry
        new = jax.lax.fori_loop(0, p, coordinate, beta)
        return new, jnp.max(jnp.abs(new - beta)), k + 1

    def cond(carry):
        _, change, k = carry
        return (change >= ptol) & (k < maxit)

    beta, _, sweeps = jax.lax.while_loop(cond, body, (beta0, jnp.inf, 0))
    return beta, sweeps


def _is_penalty(method) -> bool:
    """A smooth penalty object (statsmodels' ``Penalty``: ``func``, ``deriv``, ``deriv2``)."""
    return all(callable(getattr(method, a, None)) for a in ("func", "deriv", "deriv2"))


def fit_regularized(
    model,
    start_params=None,
    method="l1",
    alpha=0.0,
    ceps: float = 1e-4,
    ptol: float = 1e-6,
    maxit: int = 200,
    **fit_kwargs,
):
    """statsmodels' ``fit_regularized``; returns a ``MixedLMResults`` whose fixed effects
    are penalised, the covariance held at the unpenalised fit.

    ``method="l1"`` (any case): the lasso above, ``alpha`` a scalar or one weight per
    column (statsmodels' convention: the penalty ``Σ α_j |β_j|`` on the ``β'Aβ - 2c'β``
    scale). ``method`` a smooth penalty object (statsmodels' ``penalties.L2()``,
    ``PseudoHuber(dlt)``: ``func``, ``deriv``, ``deriv2``): its ``alpha`` is set to
    ``alpha``, as statsmodels does, and ``½(β'Aβ - 2c'β) + pen.func(β)`` is minimised by
    Newton steps. ``cov_params`` rows/columns of coefficients zeroed by L1 are NaN (not
    estimated); the others come from the (penalised) information of the selected columns.
    """
    from mixedjax.results.mixedlm import MixedLMResults

    penalty = None
    if _is_penalty(method):
        penalty = method
        penalty.alpha = alpha  # statsmodels' convention: the object carries the weights
    elif not (isinstance(method, str) and method.lower() == "l1"):
        raise ValueError(
            f"method must be 'l1' or a smooth penalty object (func, deriv, deriv2), got {method!r}"
        )
    alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (model.k_fe,)).copy()
    if np.any(alpha < 0) or not np.all(np.isfinite(alpha)):
        raise ValueError("alpha must be finite and non-negative (a scalar or one per column)")
    base = model.fit(start_params=start_params, **fit_kwargs)
    theta = jnp.asarray(base.theta)
    scale = base.scale
    system = gls_system_theta(theta, model.data, model.structure).system
    p = model.k_fe
    A = system[:p, :p] / scale
    c = system[:p, p] / scale
    beta0 = np.asarray(base.fe_params, dtype=float)
    if penalty is None:
        beta, _ = lasso_coordinate_descent(
            A, c, jnp.asarray(alpha), jnp.asarray(beta0), ceps, ptol, maxit=int(maxit)
        )
        beta = np.asarray(beta)
        selected = np.abs(beta) > ceps
        extra_information = np.zeros((p, p))
    else:
        beta = _smooth_penalty_newton(np.asarray(A), np.asarray(c), penalty, beta0, ptol, maxit)
        selected = np.ones(p, dtype=bool)
        extra_information = np.diag(np.broadcast_to(penalty.deriv2(beta), (p,))) * scale
    resid_quad = float(system[p, p] - 2 * beta @ system[:p, p] + beta @ system[:p, :p] @ beta)
    new_scale = resid_quad / (model.nobs - p if base.reml else model.nobs)
    cov_beta = np.full((p, p), np.nan)
    if selected.any():
        sub = (np.asarray(system[:p, :p]) + extra_information)[np.ix_(selected, selected)]
        cov_beta[np.ix_(selected, selected)] = new_scale * np.linalg.inv(sub)
    blups, cond_cov = conditional_modes(theta, jnp.asarray(beta), model.data, model.structure)
    gls = gls_system_theta(theta, model.data, model.structure)
    objective = objective_given_beta(gls, jnp.asarray(beta), model.data.n_obs, base.reml)
    est = Estimates(
        beta=jnp.asarray(beta),
        scale=jnp.asarray(new_scale),
        cov_beta=jnp.asarray(cov_beta),
        blups=blups,
        cond_cov=new_scale * cond_cov,
        objective=objective,
    )
    return MixedLMResults(model, np.asarray(theta), est, base.optim, base.reml)


def _smooth_penalty_newton(A, c, penalty, beta0, ptol: float, maxit: int) -> np.ndarray:
    """Minimise ``½ β'Aβ - c'β + penalty.func(β)`` (``A``: ``(p, p)``, convex penalty) by
    Newton's method with step halving; ``p`` is the number of fixed effects, so this is a
    short host loop over iterations (nothing per group or per row)."""

    def objective(b):
        return 0.5 * b @ A @ b - c @ b + float(np.sum(penalty.func(b)))

    beta = np.asarray(beta0, dtype=float).copy()
    value = objective(beta)
    for _ in range(int(maxit)):
        grad = A @ beta - c + np.asarray(penalty.deriv(beta), dtype=float)
        hess = A + np.diag(np.broadcast_to(np.asarray(penalty.deriv2(beta), float), beta.shape))
        step = np.linalg.solve(hess, grad)
        t = 1.0
        while t > 1e-10:
            trial = beta - t * step
            trial_value = objective(trial)
            if trial_value <= value:
                break
            t /= 2
        else:
            break
        change = np.max(np.abs(trial - beta), initial=0.0)
        beta, value = trial, trial_value
        if change < ptol:
            break
    return beta
