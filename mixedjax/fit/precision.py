"""Fits on data placed by ``fit``'s options: float32 (``dtype="float32"``) and/or the groups
sharded over devices (``devices=...``, :mod:`mixedjax.fit.sharding`).

``MixedLM.fit(dtype="float32")`` casts the standardized per-group cross-products to float32
and runs the whole fit (optimiser, boundary snapping, estimates) in float32, which is what
GPUs execute fastest and what halves the memory of the per-group arrays. float64 stays the
default; the accuracy of float32 on the lme4 reference cases is measured in
``docs/float32.md``. Since the deviance is only resolved to about ``1e-7 |d|`` in float32, the
scaled-gradient tolerance is raised to at least :data:`FLOAT32_GTOL`, and a fit that stops
short of it converged all the same when an exact Newton step would gain less than float32
resolves (:data:`FLOAT32_RESOLUTION`).

Placed data keep their own layout, so they run :func:`mixedjax.fit.unpadded.fit_unpadded`
(the model's own shapes) rather than the size-class program.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.covariance import CovStructure
from mixedjax.core.watchdog import wait_ready
from mixedjax.design.groups import GroupedData
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit.optimize import newton_step
from mixedjax.fit.program import FitRun
from mixedjax.fit.unpadded import estimates_unpadded, fit_unpadded

#: Smallest scaled-gradient tolerance used in float32 (``max|∇d| / max(1, |d|)``).
FLOAT32_GTOL = 1e-5
#: A float32 fit that stops short of ``gtol`` still counts as converged when an exact
#: (float64) Newton step from its optimum would lower the deviance by less than this much
#: relative to ``max(1, |d|)``: 16 units of float32's rounding (``eps = 1.2e-7``), below what
#: a deviance summed over the groups in float32 can resolve. The scaled gradient reached at
#: such a point depends on the CPU's rounding (FMA, vector width): the sleepstudy float32 fit
#: stopped at 2.2e-5 > 1e-5 on one x86-64 machine and met 1e-5 on others.
FLOAT32_RESOLUTION = 16 * float(np.finfo(np.float32).eps)


def parse_dtype(dtype) -> jnp.dtype | None:
    """``None``/float64 -> ``None`` (the default path); float32 -> ``jnp.float32``."""
    if dtype is None or dtype in ("float64", np.float64, jnp.float64):
        return None
    if dtype in ("float32", np.float32, jnp.float32):
        return jnp.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}")


def run_placed(
    data: GroupedData,
    structure: CovStructure,
    theta0: np.ndarray,
    free: np.ndarray,
    reml: bool,
    gtol: float,
    method: str,
    maxiter: int,
    verbose: bool = False,
) -> FitRun:
    """The fit of ``θ`` from ``θ₀`` on standardized ``data`` in its own dtype and placement,
    then the estimates there (in that dtype). ``FitRun.information_std`` is ``None``."""
    dtype = data.ZtZ.dtype
    opt, theta, value, zeroed = fit_unpadded(
        jnp.asarray(theta0, dtype), jnp.asarray(free, dtype=bool), data, gtol,
        structure=structure, reml=reml, method=method, maxiter=maxiter, verbose=verbose,
    )  # fmt: skip
    opt, theta, value, zeroed = jax.device_get(
        wait_ready((opt, theta, value, zeroed), what="optimiser")
    )
    estimates = estimates_unpadded(jnp.asarray(theta), data, structure=structure, reml=reml)
    zeroed = tuple(int(i) for i in np.flatnonzero(zeroed))
    return FitRun(
        opt, False, np.asarray(theta), float(value), zeroed, jax.device_get(estimates), None
    )


def float32_resolution_reached(
    theta: np.ndarray, free: np.ndarray, data: GroupedData, structure, reml: bool, objective
) -> str | None:
    """A message if a float32 fit that stopped short of ``gtol`` at ``θ`` (original scale) is
    as converged as float32 resolves: an exact Newton step on the float64 ``data`` would
    lower the deviance by at most :data:`FLOAT32_RESOLUTION` ``max(1, |d|)``; else ``None``."""
    decrease = float(
        _newton_decrease(jnp.asarray(theta, jnp.float64), jnp.asarray(free, dtype=bool), data,
                         structure=structure, reml=bool(reml))
    )  # fmt: skip
    if decrease <= FLOAT32_RESOLUTION * max(1.0, abs(float(objective))):
        return (
            "converged to float32's resolution: the Newton step would lower the deviance "
            f"by {decrease:.1e}, below what float32 resolves"
        )
    return None


@partial(jax.jit, static_argnames=("structure", "reml"))
def _newton_decrease(theta, free_mask, data, *, structure, reml):
    """``½ gᵀH⁻¹g`` over the free coordinates at ``θ``: how much an exact Newton step would
    still lower the deviance; ``inf`` if ``H`` is not positive definite there. Evaluated on
    the float64 data, so it measures how far the float32 optimum is from the exact one
    (a float32 deviance that lost its digits to cancellation cannot pass)."""

    def deviance(theta):
        return profiled_deviance(theta, data, structure, reml)

    free = free_mask.astype(theta.dtype)
    grad = jax.grad(deviance)(theta) * free
    step, positive = newton_step(grad, jax.hessian(deviance)(theta), free)
    return jnp.where(positive, -0.5 * step @ grad, jnp.inf)
