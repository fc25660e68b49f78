"""A one-factor fit on the model's own shapes: the optimiser, then the boundary snap.

The everyday fit (:mod:`mixedjax.fit.program`) pads a problem to its size class so that
models of one class share an executable. Data that must keep its own layout run this
instead: data placed on a device mesh (the groups sharded, ``fit(devices=...)``), data in
float32 (``fit(dtype="float32")``), and the members of a ``vmap`` in :mod:`mixedjax.batch`.
It is a pure function of arrays, so it composes with ``jit``, ``vmap`` and sharding.
"""

from functools import partial

import jax
import jax.numpy as jnp

from mixedjax.core.covariance import CovStructure
from mixedjax.design.groups import GroupedData
from mixedjax.design.sizeclass import theta_layout
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit import estimation
from mixedjax.fit.optimize import OptResult
from mixedjax.fit.program import snap_to_boundary


def snap_theta(
    theta: jnp.ndarray,
    value: jnp.ndarray,
    free_mask: jnp.ndarray,
    data: GroupedData,
    structure: CovStructure,
    reml: bool,
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Vmappable equivalent of :func:`mixedjax.fit.estimation.snap_to_boundary`: the fit
    program's rule (:func:`mixedjax.fit.program.snap_to_boundary`) on the model's own
    ``θ`` layout. Each trial deviance is always evaluated (a handful of evaluations) and
    kept or discarded by a mask.

    Returns:
        ``(theta, deviance, zeroed)`` with ``zeroed`` a ``(n_theta,)`` bool mask.
    """
    free = jnp.asarray(free_mask, dtype=bool)
    return snap_to_boundary(
        theta, value, free, lambda t: profiled_deviance(t, data, structure, reml),
        *theta_layout(structure),
    )  # fmt: skip


def fit_and_snap(
    theta0: jnp.ndarray,
    free_mask: jnp.ndarray,
    data: GroupedData,
    gtol: float,
    *,
    structure: CovStructure,
    reml: bool,
    method: str = "lbfgs",
    maxiter: int = 500,
    verbose: bool = False,
) -> tuple[OptResult, jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``θ̂ = argmin d(θ)`` over the free entries from ``θ₀ (n_theta,)``, then the snap.

    Returns:
        ``(opt, theta, value, zeroed)``: the optimiser's result before the snap, ``θ̂``
        ``(n_theta,)`` after it, ``d(θ̂)`` and the ``(n_theta,)`` bool mask of entries the
        snap set to 0. Everything in the dtype of ``data``.
    """
    opt = estimation.fit_theta(
        theta0, free_mask, data, gtol, structure=structure, reml=reml, method=method,
        maxiter=maxiter, verbose=verbose,
    )  # fmt: skip
    theta, value, zeroed = snap_theta(opt.x, opt.value, free_mask, data, structure, reml)
    return opt, theta, value, zeroed


#: :func:`fit_and_snap` compiled for one model (its shapes, dtype and sharding).
fit_unpadded = jax.jit(
    fit_and_snap, static_argnames=("structure", "reml", "method", "maxiter", "verbose")
)


@partial(jax.jit, static_argnames=("structure", "reml"))
def estimates_unpadded(theta, data: GroupedData, *, structure: CovStructure, reml: bool):
    """:func:`mixedjax.fit.estimation.estimates_at` compiled for data of its own layout
    (float32 or sharded data; the tiered wrapper there is for float64 on one device)."""
    return estimation.estimates(theta, data, structure, reml)
