"""Jitted kernels of a crossed fit: the optimiser run over ``θ`` and the estimates at ``θ``.

The objective is :func:`mixedjax.engines.crossed.deviance` on cross-products computed once
(:mod:`mixedjax.design.crossed`); the optimiser is :func:`mixedjax.fit.optimize.minimize`.
"""

from functools import partial

import jax

from mixedjax.design.crossed import CrossedData, CrossedStructure, with_response
from mixedjax.engines import crossed
from mixedjax.fit.optimize import minimize

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
