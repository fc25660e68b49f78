"""Fit options beyond the core: single precision (``dtype="float32"``) and device placement.

``MixedLM.fit(dtype="float32")`` casts the per-group cross-products to float32 and runs the
whole fit (optimiser, boundary snapping, estimates) in float32, which is what GPUs execute
fastest and what halves the memory of the per-group arrays. float64 stays the default; the
accuracy of float32 on the lme4 reference cases is measured in ``docs/float32.md``. Since
the deviance is only resolved to about ``1e-7 |d|`` in float32, the scaled-gradient
tolerance is raised to at least :data:`FLOAT32_GTOL`, and a fit that stops short of it
converged all the same when an exact Newton step would gain less than float32 resolves
(:data:`FLOAT32_RESOLUTION`).

``MixedLM.fit(devices=...)`` delegates to :func:`mixedjax.fit.sharding.fit_on_devices`; both
options combine.
"""

import copy
import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.batch import kernels as batch
from mixedjax.core.covariance import cov_to_theta
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit import conditioning, estimation
from mixedjax.fit.optimize import STATUS_CONVERGED, newton_step

#: Smallest scaled-gradient tolerance used in float32 (``max|∇d| / max(1, |d|)``).
FLOAT32_GTOL = 1e-5
#: A float32 fit that stops short of ``gtol`` still counts as converged when an exact
#: (float64) Newton step from its optimum would lower the deviance by less than this much
#: relative to ``max(1, |d|)``: 16 units of float32's rounding (``eps = 1.2e-7``), below what
#: a deviance summed over the groups in float32 can resolve. The scaled gradient reached at
#: such a point depends on the CPU's rounding (FMA, vector width): the sleepstudy float32 fit
#: stopped at 2.2e-5 > 1e-5 on one x86-64 machine and met 1e-5 on others.
FLOAT32_RESOLUTION = 16 * float(np.finfo(np.float32).eps)

_fit_one = jax.jit(batch.fit_one, static_argnames=("structure", "reml", "method", "maxiter"))


def parse_dtype(dtype) -> jnp.dtype | None:
    """``None``/float64 -> ``None`` (the default path); float32 -> ``jnp.float32``."""
    if dtype is None or dtype in ("float64", np.float64, jnp.float64):
        return None
    if dtype in ("float32", np.float32, jnp.float32):
        return jnp.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}")


def fit_with_options(model, devices, dtype, **fit_kwargs):
    """``model.fit`` with ``devices`` and/or ``dtype`` (see the module docstring)."""
    dtype = parse_dtype(dtype)
    if dtype is None:
        if devices is None:
            return model.fit(**fit_kwargs)
        from mixedjax.fit.sharding import fit_on_devices

        return fit_on_devices(model, devices, **fit_kwargs)
    member = copy.copy(model)
    member.data = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), model.data)
    if devices is not None:
        from mixedjax.fit.sharding import group_mesh, shard_groups

        member.mesh = group_mesh(devices)
        member.data = shard_groups(member.data, member.mesh)
    return fit_float32(member, reference_data=model.data, **fit_kwargs)


def fit_float32(
    model,
    start_params=None,
    reml: bool = True,
    free=None,
    method=None,
    maxiter: int = 500,
    gtol: float = 1e-9,
    fe_pen=None,
    cov_pen=None,
    reference_data=None,
    **ignored,
):
    """The fit of :meth:`mixedjax.MixedLM.fit` in the dtype of ``model.data`` (float32).

    ``reference_data``: the float64 :class:`~mixedjax.design.groups.GroupedData` of the same model,
    against which a fit that stops short of ``gtol`` is checked (:data:`FLOAT32_RESOLUTION`).
    """
    from mixedjax.batch.results import _check_fit_options
    from mixedjax.fit.options import _IGNORED_FIT_KWARGS, ConvergenceWarning
    from mixedjax.results.mixedlm import MixedLMResults, OptSummary

    unknown = set(ignored) - _IGNORED_FIT_KWARGS
    if unknown:
        raise TypeError(f"fit got unexpected keyword argument(s) {sorted(unknown)}")
    if fe_pen is not None or cov_pen is not None:
        raise ValueError("fe_pen/cov_pen (penalised fits) are not supported by fit()")
    method = _check_fit_options(method, maxiter, gtol)
    gtol = max(float(gtol), FLOAT32_GTOL)
    dtype = model.data.ZtZ.dtype
    structure = model.structure
    free_theta = model._free_mask(free)
    # As the float64 fit: optimise on the centred and scaled design (mixedjax.fit.conditioning),
    # whose well-conditioned cross-products keep float32's digits; report on the original.
    std = model._standardized(center_re=free is None)
    std_data = jax.tree_util.tree_map(lambda a: jnp.asarray(a, dtype), std.data)
    if getattr(model, "mesh", None) is not None:
        from mixedjax.fit.sharding import shard_groups

        std_data = shard_groups(std_data, model.mesh)
    default_theta = conditioning.theta_to_original(
        std, np.asarray(estimation.default_start(std.data, structure)), structure
    )
    if start_params is not None:
        sp = model._as_params(start_params)
        theta0 = cov_to_theta(sp.cov_re, sp.vcomp, structure)
    else:
        theta0 = default_theta
        if free is not None:
            identity = cov_to_theta(np.eye(model.k_re), np.ones(model.k_vc), structure)
            theta0 = np.where(free_theta, theta0, identity)
    theta0_std = conditioning.theta_to_standard(std, theta0, structure)
    out_std = _fit_one(
        jnp.asarray(theta0_std, dtype), jnp.asarray(free_theta), std_data, gtol,
        structure=structure, reml=bool(reml), method=method, maxiter=int(maxiter),
    )  # fmt: skip
    theta = conditioning.theta_to_original(
        std, np.asarray(out_std.theta, np.float64), structure
    ).astype(dtype)
    x_stop = conditioning.theta_to_original(std, np.asarray(out_std.opt.x, np.float64), structure)
    objective = conditioning.objective_to_original(
        std, float(out_std.objective), model.nobs, bool(reml)
    )
    out = out_std._replace(theta=theta)
    converged, message = None, None
    if (
        reference_data is not None
        and int(out.opt.status) != STATUS_CONVERGED
        and np.isfinite(float(out.opt.value))
    ):
        decrease = float(
            _newton_decrease(jnp.asarray(x_stop, jnp.float64), jnp.asarray(free_theta),
                             reference_data, structure=structure, reml=bool(reml))
        )  # fmt: skip
        if decrease <= FLOAT32_RESOLUTION * max(1.0, abs(objective)):
            converged = True
            message = (
                "converged to float32's resolution: the Newton step would lower the deviance "
                f"by {decrease:.1e}, below what float32 resolves"
            )
    summary = OptSummary.from_opt(
        out.opt, method=method, theta_start=theta0, theta=theta, objective=objective,
        gtol=gtol, maxiter=maxiter, free_mask=free_theta,
        boundary=np.flatnonzero(np.asarray(out.zeroed)), converged=converged, message=message,
    )  # fmt: skip
    if not summary.converged:
        warnings.warn(
            f"MixedLM float32 fit did not converge: {summary.message} (scaled gradient "
            f"{summary.scaled_gradient:.2e} > gtol {gtol:.0e}). float32 resolves the deviance "
            "to about 1e-7 relative; refit in float64 (the default) for full accuracy.",
            ConvergenceWarning,
            stacklevel=3,
        )
    est = _estimates(jnp.asarray(theta), model.data, structure=structure, reml=bool(reml))
    return MixedLMResults(model, theta, est, summary, bool(reml))


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


@partial(jax.jit, static_argnames=("structure", "reml"))
def _estimates(theta, data, *, structure, reml):
    return estimation.estimates_at(theta, data, structure=structure, reml=reml)
