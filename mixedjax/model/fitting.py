"""``MixedLM.fit``'s driver: one path from the options to the results, for every option.

A fit of a one-factor model reads, top to bottom (:func:`fit_model`):

1. the start: ``θ₀`` and the free mask over ``θ``, from statsmodels' layout
   (``start_params``, ``free``) or the data-based default;
2. the data the optimiser sees: the centred and scaled copy of the model's cross-products
   (:mod:`mixedjax.fit.conditioning`), cast to float32 and/or sharded over a device mesh
   when :class:`~mixedjax.fit.options.FitOptions` ask for it;
3. the run, one of three on those data, each returning a
   :class:`~mixedjax.fit.program.FitRun`: the penalised objective
   (:func:`mixedjax.fit.penalties.run_penalized`), the fit on placed data's own shapes
   (:func:`mixedjax.fit.precision.run_placed`), or the size-class program shared by every
   model of its class (:func:`mixedjax.fit.program.run_fit`, the everyday path);
4. back to the original scale: ``θ̂``, the objective, the estimates;
5. the verdict (converged or not, and why) with its warning, and the results.

Crossed-engine models (several grouping factors) take :func:`mixedjax.model.crossed.fit_crossed`
after the same option checks; float32, devices and penalties are one-factor options.
"""

import copy
import warnings

import jax
import numpy as np

from mixedjax.core.covariance import cov_to_theta, theta_to_cov
from mixedjax.fit import conditioning, safeguards
from mixedjax.fit.optimize import STATUS_CONVERGED, STATUS_MESSAGES
from mixedjax.fit.options import ConvergenceWarning, FitOptions
from mixedjax.fit.program import FitRun
from mixedjax.results.mixedlm import MixedLMResults, OptSummary
from mixedjax.spec.validation import check_fit_arguments


def fit_model(model, start_params, free, options: FitOptions) -> MixedLMResults:
    """Fit ``model`` (a :class:`~mixedjax.model.mixedlm.MixedLM`) as ``options`` say, from
    ``start_params`` holding the entries where ``free`` is 0 (statsmodels' layouts; ``None``:
    data-based start, everything free)."""
    if model.engine == "crossed":
        return _fit_crossed(model, start_params, free, options)
    check_fit_arguments(model, options.reml, start_params, free)
    structure, reml = model.structure, options.reml
    std = model._standardized(center_re=free is None)
    free_theta = model._free_mask(free)
    theta0 = _start_theta(model, std, start_params, free_theta, free is not None)
    fitted, data_std = _placed(model, std, options)
    if options.verbose:
        offset = conditioning.objective_to_original(std, 0.0, model.nobs, reml)
        print(
            "trace: -2 log L of the internally centred and scaled data "
            f"(add {offset:.10g} for the original data)",
            flush=True,
        )
    run = _run(model, std, data_std, conditioning.theta_to_standard(std, theta0, structure),
               free_theta, options)  # fmt: skip
    theta = conditioning.theta_to_original(std, run.theta_std, structure)
    if options.dtype is not None:
        theta = theta.astype(options.dtype)
    value = conditioning.objective_to_original(std, run.value_std, model.nobs, reml)
    summary = _summary(model, std, run, theta0, theta, value, free_theta, options)
    if options.verbose:
        jax.effects_barrier()  # the trace lines are printed before the summary
        print(summary, flush=True)
    if not summary.converged:
        diagnosis = safeguards.convergence_diagnosis(int(run.result.status), summary, run.saddle)
        if options.dtype is not None:
            diagnosis += (
                " float32 resolves the deviance to about 1e-7 relative; refit in float64 "
                "(the default) for full accuracy."
            )
        warnings.warn(diagnosis, ConvergenceWarning, stacklevel=3)
    est = conditioning.estimates_to_original(std, run.estimates_std, structure, reml)
    safeguards.check_finite(theta, est)
    cov_user = None
    if run.information_std is not None:
        cov_user = conditioning.variance_parameter_cov_from(std, model, run.information_std)
    return MixedLMResults(fitted, theta, est, summary, reml, cov_user=cov_user)


def _start_theta(model, std, start_params, free_theta, held: bool) -> np.ndarray:
    """``θ₀`` on the original scale: from ``start_params``, else the data-based start, whose
    held entries (``held``: a ``free`` mask was given) start at statsmodels' identity."""
    if start_params is not None:
        sp = model._as_params(start_params)
        return cov_to_theta(sp.cov_re, sp.vcomp, model.structure)
    theta0 = model._start_theta(std)
    if held:
        identity = cov_to_theta(np.eye(model.k_re), np.ones(model.k_vc), model.structure)
        theta0 = np.where(free_theta, theta0, identity)
    return theta0


def _placed(model, std, options: FitOptions):
    """``(the model the results refer to, the standardized data the optimiser sees)``.

    Placed fits (float32, sharded) refer to a shallow copy of ``model`` whose data are placed
    the same way, so that later evaluations (standard errors, ``loglike``) run there too.
    """
    if not options.placed:
        return model, std.data
    from mixedjax.fit.sharding import shard_groups

    fitted = copy.copy(model)
    fitted.__dict__.pop("_standardized_cache", None)  # caches of the unplaced data stay there
    fitted.__dict__.pop("_program_cache", None)
    data, data_std = model.data, std.data
    if options.dtype is not None:
        data, data_std = jax.tree_util.tree_map(
            lambda a: jax.numpy.asarray(a, options.dtype), (data, data_std)
        )
    if options.mesh is not None:
        fitted.mesh = options.mesh
        data, data_std = shard_groups(data, options.mesh), shard_groups(data_std, options.mesh)
    fitted.data = data
    return fitted, data_std


def _run(model, std, data_std, theta0_std, free_theta, options: FitOptions) -> FitRun:
    """The optimiser run the options select (see the module docstring), on ``data_std``."""
    args = (data_std, model.structure, theta0_std, free_theta, options.reml, options.gtol,
            options.method, options.maxiter)  # fmt: skip
    if options.penalty is not None:
        from mixedjax.fit.penalties import run_penalized

        return run_penalized(*args, options.penalty, std.z_map.matrix, verbose=options.verbose)
    if options.placed:
        from mixedjax.fit.precision import run_placed

        return run_placed(*args, verbose=options.verbose)
    from mixedjax.fit.program import run_fit

    cache = model.__dict__.setdefault("_program_cache", {})
    return run_fit(*args, verbose=options.verbose, cache=cache)


def _summary(model, std, run: FitRun, theta0, theta, value, free_theta, options) -> OptSummary:
    """The :class:`OptSummary` of ``run``, with its verdict: converged at ``gtol``; for
    float32, also when float32 resolves no further gain; never at a saddle point."""
    status = int(run.result.status)
    converged = status == STATUS_CONVERGED and not run.saddle
    message = "stopped at a saddle point" if run.saddle else STATUS_MESSAGES[status]
    extra = {}
    if options.penalty is not None:
        cov, _ = theta_to_cov(jax.numpy.asarray(theta, float), model.structure)
        extra = {"cov_pen": options.penalty, "penalty": float(options.penalty.value(cov))}
    elif options.dtype is not None and not converged and np.isfinite(float(run.result.value)):
        from mixedjax.fit.precision import float32_resolution_reached

        x_stop = conditioning.theta_to_original(
            std, np.asarray(run.result.x, np.float64), model.structure
        )
        resolved = float32_resolution_reached(
            x_stop, free_theta, model.data, model.structure, options.reml, value
        )
        if resolved is not None:
            converged, message = True, resolved
    return OptSummary.from_opt(
        run.result, method=options.method, theta_start=theta0, theta=theta, objective=value,
        gtol=options.gtol, maxiter=options.maxiter, free_mask=free_theta,
        boundary=run.zeroed, converged=converged, message=message, **extra,
    )  # fmt: skip


def _fit_crossed(model, start_params, free, options: FitOptions) -> MixedLMResults:
    """The crossed engine's fit (:func:`mixedjax.model.crossed.fit_crossed`)."""
    from mixedjax.model.crossed import fit_crossed

    if options.placed:
        raise ValueError(
            "devices= and dtype= are options of the one-factor engine: this model (several "
            "grouping factors) is fitted by the crossed engine, in float64 on one device"
        )
    theta0, free_theta = model._crossed_start(start_params, free)
    return fit_crossed(
        model, theta0, free_theta, options.reml, options.method, options.maxiter, options.gtol
    )
