"""Jitted kernels of a crossed fit: the optimiser run over ``θ`` and the estimates at ``θ``.

The objective is :func:`mixedjax.engines.crossed.deviance` on cross-products computed once
(:mod:`mixedjax.design.crossed`); the optimiser is :func:`mixedjax.fit.optimize.minimize`.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from mixedjax.core.compilation import tiered_jit
from mixedjax.design.crossed import CrossedData, CrossedStructure, with_response
from mixedjax.engines import crossed
from mixedjax.engines.gls import crossed_theta_to_user
from mixedjax.engines.information import user_objective
from mixedjax.fit.optimize import OptResult, minimize
from mixedjax.fit.program import snap_to_boundary

#: A line-search stall with scaled gradient within this factor of ``gtol`` counts as
#: converged: the deviance of a large model is summed over many terms and its rounding
#: noise (about 1e-12 relative) stops the line search there (lme4 itself only warns
#: above an absolute gradient of 2e-3).
STALL_FACTOR = 1e3

#: Largest dense block (``M + p + 1``) for which the fit ends with exact Newton steps; above
#: it an autodiff Hessian costs several gradients and L-BFGS alone reaches ``gtol``.
NEWTON_MAX_DENSE = 400


@partial(jax.jit, static_argnames=("structure", "reml", "method", "maxiter", "newton_steps"))
def fit_theta(
    theta0, free_mask, data: CrossedData, gtol, *, structure, reml, method, maxiter, newton_steps
):
    """Minimise the crossed profiled deviance over the free entries of ``θ``."""

    def objective(theta, data):
        return crossed.deviance(theta, data, structure, reml)

    return minimize(
        objective,
        theta0,
        data,
        free_mask,
        method=method,
        maxiter=maxiter,
        gtol=gtol,
        newton_steps=newton_steps,
    )


class CrossedProgramOutput(NamedTuple):
    """What :func:`fit_program` returns.

    Attributes:
        opt: the optimiser's run (before the snap); theta: ``(n_theta,)`` the estimate
        after the snap; value: ``d(θ)`` there; zeroed: ``(n_theta,)`` entries set to 0;
        estimates: :class:`~mixedjax.engines.crossed.CrossedEstimates` at ``theta``;
        information: observed information ``H/2`` of the data-scale ``γ`` of
        :mod:`mixedjax.engines.gls` (each term's ``tril Ψ_k`` row by row, then σ²).
    """

    opt: OptResult
    theta: jnp.ndarray
    value: jnp.ndarray
    zeroed: jnp.ndarray
    estimates: crossed.CrossedEstimates
    information: jnp.ndarray


@partial(
    tiered_jit,
    static_argnames=("structure", "method", "maxiter", "newton_steps"),
    export_name="crossed_fit_program",
)
def fit_program(
    theta0, free_mask, data: CrossedData, reml, gtol, *, structure, method, maxiter, newton_steps
) -> CrossedProgramOutput:
    """A whole crossed fit in one program: the optimiser, the boundary snap and the
    estimates (``reml`` is data: 1.0 REML, 0.0 ML, so refitting by ML compiles nothing).

    The snap is the one-factor program's (:func:`mixedjax.fit.program.snap_to_boundary`),
    on the layout of :meth:`~mixedjax.design.crossed.CrossedStructure.theta_layout`.
    """
    reml = jnp.asarray(reml, dtype=data.n_obs.dtype)
    free = jnp.asarray(free_mask, dtype=bool)

    def objective(theta, data):
        return crossed.deviance(theta, data, structure, reml)

    opt = minimize(
        objective, theta0, data, free, method=method, maxiter=maxiter, gtol=gtol,
        newton_steps=newton_steps,
    )  # fmt: skip
    theta, value, zeroed = snap_to_boundary(
        opt.x, opt.value, free, lambda t: objective(t, data), *structure.theta_layout()
    )
    estimates = crossed.estimates(theta, data, structure, reml)
    gamma = crossed_theta_to_user(theta, estimates.scale, structure, xp=jnp)
    information = 0.5 * jax.hessian(user_objective)(gamma, data, structure, reml)
    return CrossedProgramOutput(opt, theta, value, zeroed, estimates, information)


@partial(jax.jit, static_argnames=("structure", "reml"))
def deviance_at(theta, data: CrossedData, *, structure: CrossedStructure, reml: bool):
    """Jitted :func:`mixedjax.engines.crossed.deviance`."""
    return crossed.deviance(theta, data, structure, reml)


@partial(jax.jit, static_argnames=("structure", "reml"))
def estimates_at(theta, data: CrossedData, *, structure: CrossedStructure, reml: bool):
    """Jitted :func:`mixedjax.engines.crossed.estimates`."""
    return crossed.estimates(theta, data, structure, reml)


@partial(
    jax.jit, static_argnames=("structure", "reml", "method", "maxiter", "gtol", "newton_steps")
)
def fit_responses(
    ys, theta0, free_mask, data: CrossedData, design, *, structure, reml, method, maxiter, gtol,
    newton_steps,
):  # fmt: skip
    """Fit the crossed model to every response in ``ys (k, n)`` (working rows), vmapped over
    ``k`` (the design's cross-products are shared; only those of ``y`` are formed).

    Returns:
        ``(OptResult, β (k, p), σ² (k,), cov β (k, p, p), objective (k,))``, batched.
    """

    def one(y):
        d = with_response(data, structure, design, y)
        result = minimize(
            lambda theta, d: crossed.deviance(theta, d, structure, reml),
            theta0,
            d,
            free_mask,
            method=method,
            maxiter=maxiter,
            gtol=gtol,
            newton_steps=newton_steps,
        )
        est = crossed.estimates(result.x, d, structure, reml)
        return result, est.beta, est.scale, est.cov_beta, est.objective

    return jax.vmap(one)(ys)
