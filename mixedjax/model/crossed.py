"""The crossed engine's side of :class:`~mixedjax.model.mixedlm.MixedLM`: models with
several grouping factors (crossed or nested), or statsmodels' one-group crossed spelling.

A model whose random-effects terms do not fit the one-factor engine (one grouping factor,
nested factors as variance components) is a ``MixedLM`` built by
:meth:`MixedLM.from_terms <mixedjax.model.mixedlm.MixedLM.from_terms>`: its ``structure``
is a :class:`~mixedjax.design.crossed.CrossedStructure` and its ``data`` the cross-products
of :mod:`mixedjax.design.crossed`, computed once here. The likelihood is the blocked
Cholesky of :mod:`mixedjax.engines.crossed`; the fit is one compiled program
(:func:`mixedjax.fit.crossed.fit_program`). These functions are what ``MixedLM``'s methods
call for such a model; nothing here is public.
"""

import warnings

import jax
import numpy as np

from mixedjax.core.watchdog import wait_ready
from mixedjax.design.crossed import crossed_crossprods
from mixedjax.design.weights import row_weights
from mixedjax.fit.crossed import (
    NEWTON_MAX_DENSE,
    STALL_FACTOR,
    CrossedProgramOutput,
    deviance_at,
    fit_program,
)
from mixedjax.fit.optimize import STATUS_CONVERGED, STATUS_MESSAGES, STATUS_STALLED
from mixedjax.spec.offsets import OffsetSpec
from mixedjax.spec.terms import RandomTerm
from mixedjax.spec.validation import check_full_rank


def init_terms(
    model,
    endog,
    exog,
    terms: list[RandomTerm],
    exog_names=None,
    endog_name="y",
    weights=None,
    offset=None,
) -> None:
    """Set the crossed engine's attributes on ``model``.

    Args:
        endog: ``(n,)`` response.
        exog: ``(n, p)`` fixed-effects design.
        terms: the random-effects terms (:class:`~mixedjax.spec.terms.RandomTerm`), any
            order; they are kept sorted by decreasing number of levels (lme4's order),
            ``model.input_order`` giving each given term's position.
        weights, offset: ``(n,)`` prior weights and offset (or ``None``).
    """
    model.endog = np.asarray(endog, dtype=float)
    model.exog = np.asarray(exog, dtype=float)
    n = model.endog.shape[0]
    if model.exog.ndim != 2 or model.exog.shape[0] != n:
        raise ValueError(f"exog must be (n, p) with n = {n}, got {model.exog.shape}")
    model.exog_names = list(exog_names or [f"x{j}" for j in range(model.exog.shape[1])])
    check_full_rank(model.exog, model.exog_names)
    if np.ptp(model.endog) == 0:
        raise ValueError("endog is constant: a mixed model needs a varying response")
    order = sorted(range(len(terms)), key=lambda k: -terms[k].n_levels)
    model.terms = [terms[k] for k in order]
    #: position in ``terms`` of each term as given (statsmodels' ``vcomp`` order)
    model.input_order = [order.index(k) for k in range(len(terms))]
    model.endog_names = str(endog_name)
    model.nobs = model.n_totobs = n
    model.k_fe = model.exog.shape[1]
    model.rows = row_weights(weights, offset, n)
    model.offset_spec = OffsetSpec((), None, model.rows.offset_or_none)
    for name, values in (("weights", model.rows.weights), ("offset", model.rows.offset)):
        if values.ndim and not np.all(np.isfinite(values)):
            raise ValueError(f"missing or non-finite values in {name}")
    # the likelihood sees the working rows W^{1/2}(y - o), W^{1/2}X, W^{1/2}Z
    model._working_exog = model.rows.working_design(model.exog)
    model._working_endog = model.rows.working_response(model.endog)
    model._working_terms = [
        t._replace(design=model.rows.working_design(t.design)) for t in model.terms
    ]
    model.structure, model.data = crossed_crossprods(
        model._working_terms, model._working_exog, model._working_endog
    )


def term_crossprods(model) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per term (model order), ``(Z_t'Z_t (n_t, q_t, q_t), Z_t'W (n_t, q_t, p+1))`` per level
    (working rows, ``W = [X y]``), read back from the cross-products: the first term's are
    ``diag1``/``w1``, the others' are diagonal blocks and border rows of ``dense``."""
    data, st = jax.device_get(model.data), model.structure
    dense, M = np.asarray(data.dense), st.n_dense
    out = [(np.asarray(data.diag1), np.asarray(data.w1))]
    for k, (q, n) in enumerate(zip(st.q[1:], st.n_levels[1:], strict=True)):
        own = st.offsets[k] + np.arange(n)[:, None] * q + np.arange(q)  # (n_t, q_t)
        out.append((dense[own[:, :, None], own[:, None, :]], dense[own, M:]))
    return out


def default_theta(model) -> np.ndarray:
    """Start: each term's factor diagonal, ``1/rms`` of its column (1 for an intercept);
    intercept-only terms get a moment estimate instead (:func:`moment_start`). Both come
    from the cross-products, not the rows."""
    parts = []
    crossprods = term_crossprods(model)
    for (zz, _), q, moment in zip(crossprods, model.structure.q, moment_start(model, crossprods),
                                  strict=True):  # fmt: skip
        rms = np.sqrt(np.einsum("ljj->j", zz) / model.nobs)
        rms = np.where(rms > 0, rms, 1.0)
        T = np.diag(1.0 / rms) if moment is None else np.array([[moment]])
        upper_rows, upper_cols = np.triu_indices(q)
        parts.append(T[upper_cols, upper_rows])
    return np.concatenate(parts)


def moment_start(model, crossprods=None) -> list:
    """Relative SDs ``√(v_k/σ²)`` of intercept-only terms from one-way moments (``None``
    for other terms, and for all under non-unit prior weights): ``v_k`` = weighted variance
    of the level means of the OLS residuals minus their sampling variance, ``σ²`` = what is
    left of the residual variance. Clipped to ``[0.1, 10]`` (a start at 0 is a stationary
    point). It cuts the quasi-Newton iterations of large crossed fits.

    Everything is a function of the cross-products: with ``β`` the OLS fit, the residual
    sum of squares is ``y'y - β'X'y`` and a level's residual sum ``Z_t'y - Z_t'X β``.
    """
    crossprods = term_crossprods(model) if crossprods is None else crossprods
    dense, M, p = np.asarray(jax.device_get(model.data.dense)), model.structure.n_dense, model.k_fe
    XtX, Xty, yty = dense[M : M + p, M : M + p], dense[M : M + p, -1], dense[-1, -1]
    beta, *_ = np.linalg.lstsq(XtX, Xty, rcond=None)
    rss = max(float(yty - beta @ Xty), 0.0)
    total = rss / max(model.nobs - p, 1)
    unit_rows = not model.rows.weighted or bool(np.all(model.rows.weights == 1))
    out, variances = [], []
    for t, (zz, zw) in zip(model.terms, crossprods, strict=True):
        if t.names != ("(Intercept)",) or not unit_rows:
            out.append(None)
            continue
        counts = zz[:, 0, 0]
        sums = zw[:, 0, -1] - zw[:, 0, :p] @ beta
        used = counts > 0
        means = sums[used] / counts[used]
        within_var = (rss - (sums[used] * means).sum()) / max(model.nobs - used.sum(), 1)
        between = np.average(means**2, weights=counts[used]) - within_var * np.mean(
            1.0 / counts[used]
        )
        variances.append(max(between, 0.0))
        out.append(len(variances) - 1)
    sigma2 = max(total - sum(variances), 0.1 * total)
    return [
        None if o is None else float(np.clip(np.sqrt(variances[o] / sigma2), 0.1, 10.0))
        for o in out
    ]


def deviance(model, theta, reml: bool = True) -> float:
    """Profiled objective (``-2 log L`` or the REML criterion) at ``θ`` (lme4 layout;
    with prior weights it includes lme4's ``-Σ log w``)."""
    theta = np.asarray(theta, dtype=float).reshape(-1)
    if theta.size != model.structure.n_theta:
        raise ValueError(f"theta has length {theta.size}; expected {model.structure.n_theta}")
    working = deviance_at(theta, model.data, structure=model.structure, reml=reml)
    return float(working) - 2.0 * model.rows.loglik_jacobian


def fit_crossed(model, theta0, free_mask, reml: bool, method: str, maxiter: int, gtol: float):
    """Fit ``model`` by the crossed engine's program from ``θ₀`` (``None``: the default
    start), holding the entries where ``free_mask`` is false; a ``MixedLMResults``."""
    from mixedjax.fit.options import ConvergenceWarning
    from mixedjax.results.mixedlm import MixedLMResults, OptSummary

    n_theta = model.structure.n_theta
    theta0 = default_theta(model) if theta0 is None else np.asarray(theta0, dtype=float)
    free_mask = np.ones(n_theta, bool) if free_mask is None else np.asarray(free_mask) != 0
    if theta0.shape != (n_theta,) or free_mask.shape != (n_theta,):
        raise ValueError(f"start_params and free must have length {n_theta} (theta)")
    out: CrossedProgramOutput = fit_program(
        theta0,  # host arrays: jnp.asarray would compile a copy program per shape
        free_mask,
        model.data,
        1.0 if reml else 0.0,
        gtol,
        structure=model.structure,
        method=method,
        maxiter=int(maxiter),
        newton_steps=8 if model.structure.n_dense + model.k_fe < NEWTON_MAX_DENSE else 0,
    )
    out = jax.device_get(wait_ready(out, what="crossed optimiser"))
    result = out.opt
    theta, value = np.asarray(out.theta, dtype=float), float(out.value)
    zeroed = tuple(int(i) for i in np.flatnonzero(out.zeroed))
    status = int(result.status)
    converged = status == STATUS_CONVERGED
    message = STATUS_MESSAGES[status]
    if status == STATUS_STALLED and float(result.scaled_grad) <= STALL_FACTOR * gtol:
        # the line search met the objective's rounding noise: as converged as it gets
        converged = True
        message = (
            f"converged: the line search stalled at rounding noise with scaled gradient "
            f"{float(result.scaled_grad):.1e} <= {STALL_FACTOR:g} * gtol"
        )
    summary = OptSummary.from_opt(
        result, method=method, theta_start=theta0, theta=theta, objective=value, gtol=gtol,
        maxiter=maxiter, free_mask=free_mask, boundary=zeroed, converged=converged,
        message=message,
    )  # fmt: skip
    if not converged:
        warnings.warn(
            f"crossed MixedLM fit did not converge: {message} (scaled "
            f"gradient {summary.scaled_gradient:.2e} > gtol {gtol:.0e}).",
            ConvergenceWarning,
            stacklevel=3,
        )
    return MixedLMResults(
        model, theta, out.estimates, summary, bool(reml), information=out.information
    )
