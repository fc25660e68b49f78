"""One compiled program per fit, shared by every one-factor model of a size class.

:func:`fit_program` runs everything a fit reports, on the padded problem of
:mod:`mixedjax.design.sizeclass` (the covariance pattern, REML/ML and ``p`` are data):

1. the optimiser (:func:`mixedjax.fit.optimize.minimize`) over the free entries of ``θ``;
2. the curvature check at its end: the smallest eigenvalue of the free block of ``∇²d(θ)``
   relative to the largest (a negative value flags a saddle point), on the exact Hessian
   the Newton polish computed there (no second Hessian graph);
3. the boundary snap of :func:`mixedjax.fit.estimation.snap_to_boundary` (columns of ``L``
   with a negative diagonal flipped, ``√τ₁ ≥ 0``; each small standard-deviation-like entry,
   with the rest of its column, tried at exactly 0 and kept there if ``d`` does not get
   worse by more than ``1e-10`` relative);
4. the estimates at the final ``θ``: β̂, σ̂², ``cov β̂``, BLUPs and conditional covariances;
5. the observed information ``H/2`` of the user-scale variance parameters
   ``φ = (tril Ψ, τ, σ²)`` (:mod:`mixedjax.engines.information`), behind the standard errors
   of the variance parameters in ``summary()``.

So a first fit compiles one program, later fits of the same size class (other data, other
covariance patterns, ML or REML) compile nothing, and ``summary()`` reads numbers the fit
already has.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.compilation import QUICK_COMPILE_GROUPS, tiered_jit
from mixedjax.core.covariance import CovStructure
from mixedjax.design.groups import GroupedData
from mixedjax.design.sizeclass import FactorMap, factor_map, pad_crossprods, pad_theta, size_class
from mixedjax.engines.onefactor import (
    conditional_modes,
    gls_system_relative_cov,
    objective_given_scale,
    profiled_deviance,
    relative_factor,
)
from mixedjax.fit import safeguards
from mixedjax.fit.estimation import (
    BOUNDARY_PROBE,
    Estimates,
    fixed_estimates,
)
from mixedjax.fit.optimize import STATUS_CONVERGED, OptResult, minimize


class ProgramOutput(NamedTuple):
    """What :func:`fit_program` returns (padded shapes: ``T`` θ entries, ``P`` fixed and
    ``R`` random effects, ``G`` groups, ``K = T + 1`` user-scale parameters).

    Attributes:
        opt: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` (before the snap).
        curvature: ``()`` smallest eigenvalue of the free block of ``∇²d`` at ``opt.x``
            over ``max(1, largest |eigenvalue|)`` (0 when all are non-negative; NaN when
            unknown: the Newton polish, whose Hessian it reads, did not run).
        theta: ``(T,)`` the estimate after the sign convention and the boundary snap.
        value: ``()`` ``d(θ)`` there.
        zeroed: ``(T,)`` entries the snap set to 0.
        estimates: :class:`~mixedjax.fit.estimation.Estimates` at ``theta``.
        information: ``(K, K)`` observed information of ``φ`` (σ² last; rows and columns
            of padding are 0).
    """

    opt: OptResult
    curvature: jnp.ndarray
    theta: jnp.ndarray
    value: jnp.ndarray
    zeroed: jnp.ndarray
    estimates: Estimates
    information: jnp.ndarray


def relative_curvature(hessian: jnp.ndarray, free: jnp.ndarray) -> jnp.ndarray:
    """``min(0, λ_min) / max(1, max|λ|)`` of the free block of a Hessian (NaN if it is not
    finite: unknown).

    Example:
        >>> import jax.numpy as jnp
        >>> H = jnp.array([[2.0, 0.0], [0.0, -1.0]])
        >>> float(relative_curvature(H, jnp.array([True, True])))
        -0.5
        >>> float(relative_curvature(H, jnp.array([True, False])))   # the held one ignored
        0.0
    """
    both = free[:, None] & free[None, :]
    finite = jnp.all(jnp.isfinite(hessian))
    H = jnp.where(both & finite, 0.5 * (hessian + hessian.T), 0.0)
    eigval, _ = smallmat.eigh(H)
    value = jnp.minimum(jnp.min(eigval), 0.0) / jnp.maximum(1.0, jnp.max(jnp.abs(eigval)))
    return jnp.where(finite, value, jnp.nan)


def snap_to_boundary(theta, value, free, deviance, kind, diagonal, column):
    """In-program :func:`mixedjax.fit.estimation.snap_to_boundary`: ``(θ, d(θ), zeroed)``.

    For either engine: ``deviance`` maps ``θ`` to ``d(θ)``, and ``θ``'s layout is given by
    ``kind`` (``(T,)``: 0 padding, 1 an entry of a factor ``L``, 2 a ``√τ₁``), ``diagonal``
    (the index of each ``L`` entry's column diagonal) and ``column`` (an id per column of
    ``L``). First the sign convention (columns of ``L`` with a non-negative diagonal,
    ``√τ₁ ≥ 0``; ``ΛΛ'`` is unchanged), then each free standard-deviation-like entry below
    ``BOUNDARY_PROBE``, with the free rest of its column, is tried at exactly 0 and kept
    there if ``d`` does not get worse by more than ``1e-10`` relative.
    """
    kind, diagonal, column = (jnp.asarray(a) for a in (kind, diagonal, column))
    theta = jnp.where((kind == 1) & (theta[diagonal] < 0), -theta, theta)
    theta = jnp.where(kind == 2, jnp.abs(theta), theta)
    positions = jnp.arange(theta.shape[0])
    standard_deviation = ((kind == 1) & (diagonal == positions)) | (kind == 2)
    candidate = standard_deviation & free & (jnp.abs(theta) < BOUNDARY_PROBE)

    def try_zero(t, carry):
        theta, value, zeroed = carry
        together = jnp.where(kind[t] == 1, (column == column[t]) & free, positions == t)
        trial = jnp.where(together, 0.0, theta)
        trial_value = deviance(trial)
        keep = (
            candidate[t]
            & jnp.isfinite(trial_value)
            & (trial_value <= value + 1e-10 * jnp.maximum(1.0, jnp.abs(value)))
        )
        return (
            jnp.where(keep, trial, theta),
            jnp.where(keep, jnp.minimum(value, trial_value), value),
            zeroed.at[t].set(keep),
        )

    zeroed = jnp.zeros(theta.shape, dtype=bool)
    return jax.lax.fori_loop(0, theta.shape[0], try_zero, (theta, value, zeroed))


def user_scale_parameters(theta, scale, fmap: FactorMap) -> jnp.ndarray:
    """``φ = (tril Ψ row by row, τ, padding, σ²)`` at ``θ`` and σ² (``Ψ = σ² LL'``)."""
    Lam = relative_factor(theta, fmap)
    G = scale * Lam @ Lam.T
    rows, cols = jnp.asarray(fmap.phi_rows), jnp.asarray(fmap.phi_cols)
    cov = jnp.where(rows >= 0, G[jnp.maximum(rows, 0), jnp.maximum(cols, 0)], 0.0)
    return jnp.concatenate([cov, scale[None]])


def user_objective(phi, data: GroupedData, fmap: FactorMap, reml) -> jnp.ndarray:
    """``-2 log L`` (or ``-2 log L_R``) at user-scale ``φ`` with β profiled out."""
    scale = phi[-1]
    index = jnp.asarray(fmap.cov_index)
    G = jnp.where(index >= 0, phi[jnp.maximum(index, 0)], 0.0)
    gls = gls_system_relative_cov(G / scale, data)
    return objective_given_scale(gls, scale, data.n_obs, reml, fmap.n_fe)


@partial(
    tiered_jit,
    static_argnames=("method", "maxiter", "verbose", "information"),
    export_name="fit_program",
)
def fit_program(
    theta0: jnp.ndarray,
    free_mask: jnp.ndarray,
    data: GroupedData,
    fmap: FactorMap,
    reml: jnp.ndarray,
    gtol: jnp.ndarray,
    *,
    method: str = "lbfgs",
    maxiter: int = 500,
    verbose: bool = False,
    information: bool = True,
) -> ProgramOutput:
    """A whole one-factor fit on a padded problem (see the module docstring).

    Args:
        theta0: ``(T,)`` start (padding 0).
        free_mask: ``(T,)`` entries to estimate (padding ``False``).
        data: padded cross-products (:func:`mixedjax.design.sizeclass.pad_crossprods`).
        fmap: the covariance pattern (:func:`mixedjax.design.sizeclass.factor_map`).
        reml: ``()`` 1.0 for REML, 0.0 for ML.
        gtol: ``()`` tolerance on the scaled gradient.
        information: (static) compute the information matrix (else it is all NaN). Large
            problems leave it to the first ``summary()``: at 100,000 groups its Hessian
            would triple the run time of a warm fit (0.58 s instead of 0.18 s, measured).

    Example:
        >>> import jax.numpy as jnp, numpy as np, mixedjax
        >>> from mixedjax.design import sizeclass
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> size = sizeclass.size_class(8, 1, 1)
        >>> fmap = sizeclass.factor_map(m.structure, size.random, n_fe=1)
        >>> data = sizeclass.pad_crossprods(m.data, size)
        >>> out = fit_program(jnp.array([1.0]), jnp.array([True]), data, fmap, 1.0, 1e-9)
        >>> round(float(out.theta[0]), 5), round(float(out.value), 6)   # lme4: 0.84832, 319.654277
        (0.84832, 319.654277)
    """
    free = jnp.asarray(free_mask, dtype=bool)
    reml = jnp.asarray(reml, dtype=data.yty.dtype)

    def objective(theta, data):
        return profiled_deviance(theta, data, fmap, reml)

    opt, hessian = minimize(
        objective, theta0, data, free, method=method, maxiter=maxiter, gtol=gtol,
        verbose=verbose, return_hessian=True,
    )  # fmt: skip
    curvature = relative_curvature(hessian, free)  # NaN: no Hessian (the polish did not run)
    theta, value, zeroed = snap_to_boundary(
        opt.x, opt.value, free, lambda t: objective(t, data), fmap.kind, fmap.diagonal, fmap.column
    )
    fixed = fixed_estimates(theta, data, fmap, reml)
    blups, cond_cov = conditional_modes(theta, fixed.beta, data, fmap)
    estimates = Estimates(
        fixed.beta, fixed.scale, fixed.cov_beta, blups, fixed.scale * cond_cov, fixed.objective
    )
    phi = user_scale_parameters(theta, fixed.scale, fmap)
    if information:
        info = 0.5 * jax.hessian(user_objective)(phi, data, fmap, reml)
    else:
        info = jnp.full((phi.size, phi.size), jnp.nan, phi.dtype)
    return ProgramOutput(opt, curvature, theta, value, zeroed, estimates, info)


class FitRun(NamedTuple):
    """A one-factor fit on the standardized data, at the model's own sizes.

    Attributes:
        result: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` (``θ`` of length
            ``n_theta``; restarts away from a saddle included).
        saddle: it stopped at a saddle point it could not leave.
        theta_std: ``(n_theta,)`` the estimate (after the boundary snap).
        value_std: ``d(θ)`` there.
        zeroed: ``θ`` indices the snap set to 0.
        estimates_std: :class:`~mixedjax.fit.estimation.Estimates` at ``theta_std``.
        information_std: ``(m, m)`` observed information of ``φ = (tril Ψ, τ, σ²)``, or
            ``None`` for large problems (the results then compute it when asked).
    """

    result: OptResult
    saddle: bool
    theta_std: np.ndarray
    value_std: float
    zeroed: tuple[int, ...]
    estimates_std: Estimates
    information_std: np.ndarray | None


def padded_problem(data: GroupedData, structure: CovStructure, n_fe: int, cache: dict | None):
    """``(size class, padded data on the device, FactorMap)`` of a problem (cached by the
    identity of ``data``)."""
    key = ("padded", id(data))
    if cache is not None and key in cache and cache[key][0] is data:
        return cache[key][1:]
    size = size_class(data.ZtZ.shape[0], n_fe, structure.n_random)
    padded = jax.device_put(pad_crossprods(data, size))
    fmap = jax.device_put(factor_map(structure, size.random, n_fe))
    if cache is not None:
        cache[key] = (data, size, padded, fmap)  # data kept alive: its id stays unique
    return size, padded, fmap


def run_fit(
    data: GroupedData,
    structure: CovStructure,
    theta0: np.ndarray,
    free: np.ndarray,
    reml: bool,
    gtol: float,
    method: str,
    maxiter: int,
    verbose: bool = False,
    cache: dict | None = None,
) -> FitRun:
    """Fit through :func:`fit_program` and cut the padding off.

    When the optimiser stops at a point with negative curvature (a saddle), the restarts of
    :func:`mixedjax.fit.safeguards.escape_saddle` take over (rare; they compile the model's
    own kernels), and the program runs again from where they ended for the snap, the
    estimates and the information (it starts converged there; nothing new compiles).
    """
    n_fe = data.XtX.shape[0]
    size, padded, fmap = padded_problem(data, structure, n_fe, cache)
    with_information = size.groups <= QUICK_COMPILE_GROUPS
    n, g, r = structure.n_theta, data.ZtZ.shape[0], structure.n_random

    def program(start: np.ndarray) -> ProgramOutput:
        out = fit_program(
            pad_theta(start, size),  # host arrays: jnp.asarray would compile a copy program
            pad_theta(np.asarray(free, dtype=bool), size),
            padded,
            fmap,
            1.0 if reml else 0.0,
            gtol,
            method=method,
            maxiter=maxiter,
            verbose=verbose,
            information=with_information,
        )
        return jax.device_get(out)

    out = program(theta0)
    opt = out.opt
    result = opt._replace(x=opt.x[:n], grad=opt.grad[:n])
    polished = method != "newton" and int(opt.n_newton) > 0  # Newton's last step: a minimum
    curvature = float(out.curvature)
    saddle = False
    if (
        int(opt.status) == STATUS_CONVERGED
        and not polished
        and not curvature >= -safeguards.NEGATIVE_CURVATURE  # negative, or unknown (NaN)
    ):
        result, _, saddle = safeguards.escape_saddle(
            result, np.asarray(free, dtype=bool), data, gtol, structure=structure,
            reml=reml, method=method, maxiter=maxiter,
        )  # fmt: skip
        out = program(np.asarray(result.x))
    est = out.estimates
    estimates = Estimates(
        beta=est.beta[:n_fe],
        scale=est.scale,
        cov_beta=est.cov_beta[:n_fe, :n_fe],
        blups=est.blups[:g, :r],
        cond_cov=est.cond_cov[:g, :r, :r],
        objective=est.objective,
    )
    information = None  # large problems: the results compute it when asked
    if with_information:
        keep = np.r_[np.arange(n), out.information.shape[0] - 1]  # φ's entries, then σ²
        information = np.asarray(out.information)[np.ix_(keep, keep)]
    zeroed = tuple(int(i) for i in np.flatnonzero(out.zeroed[:n]))
    return FitRun(
        result, saddle, np.asarray(out.theta[:n]), float(out.value), zeroed, estimates,
        information,
    )  # fmt: skip
