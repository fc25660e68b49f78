"""Many GLMM fits on one design in one compiled call: ``MixedGLM.fit_many(Y)``.

The fit of :mod:`mixedjax.fit.glmm` is a pure function of the rows, so ``k`` responses on the
same design (the same groups, fixed- and random-effects columns, prior weights and offset)
are fitted by ``vmap`` over the response alone: one program, compiled once for the design's
shape, runs every fit's Newton iterations side by side (each member follows the same path
as its single fit; the batch runs until the slowest member stops). Typical uses: simulation
studies, permutation tests and many binary outcomes measured on the same subjects.

A model with several grouping factors (:mod:`mixedjax.fit.glmm_terms`) is fitted by
``lax.map`` over the responses instead: still one compiled program, the fits one after
another. (A ``vmap`` would batch the dense Cholesky factorisations of the joint modes into
batched LAPACK calls, which deadlock jaxlib 0.10's CPU thread pool:
``docs/jaxlib_lapack_deadlock.md``.)
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.engines.laplace_rows import group_rows
from mixedjax.fit import glmm as glmm_fit
from mixedjax.fit.optimize import STATUS_CONVERGED


class GLMMBatchResults:
    """``k`` GLMM fits of one design (:func:`fit_many_glmm`).

    Attributes:
        names: the ``k`` response names.
        fe_params: ``(k, p)`` DataFrame of ``β̂`` (rows: responses).
        bse_fe: ``(k, p)`` their standard errors (``2 H⁻¹``, as a single fit's).
        theta: ``(k, n_theta)`` ``θ̂`` in lme4's order, non-negative diagonal (relative to
            ``√φ̂`` for a family with a dispersion, as a single fit's).
        dispersion: ``(k,)`` ``φ̂`` (1 for the binomial and Poisson).
        llf: ``(k,)`` log-likelihoods (as the single fit's ``llf``).
        converged: ``(k,)`` whether each fit met its gradient tolerance.
        status: ``(k,)`` the optimiser's status codes.
    """

    def __init__(self, names, fe_params, bse_fe, theta, llf, status, dispersion):
        self.names = list(names)
        self.fe_params = fe_params
        self.bse_fe = bse_fe
        self.theta = theta
        self.dispersion = dispersion
        self.llf = llf
        self.status = status
        self.converged = status == STATUS_CONVERGED

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (
            f"GLMMBatchResults({len(self)} fits, {int(self.converged.sum())} converged, "
            f"fixed effects {list(self.fe_params.columns)})"
        )


@partial(jax.jit, static_argnames=("family", "structure", "n_agq", "maxiter", "gtol"))
def _fit_responses(theta0, responses, rows, *, family, structure, n_agq, maxiter, gtol):
    """``vmap`` of the single fit over ``responses (k, n_groups, n_max)``."""

    def one(y):
        member = rows._replace(y=y)
        if n_agq == 0:
            return glmm_fit.fit_glmm_nagq0(
                theta0, member, family=family, structure=structure, maxiter=maxiter, gtol=gtol
            )
        return glmm_fit.fit_glmm(
            theta0, jnp.zeros(rows.X.shape[-1], theta0.dtype), member, family=family,
            structure=structure, n_agq=n_agq, maxiter=maxiter, gtol=gtol,
        )  # fmt: skip

    out = jax.vmap(one)(responses)
    return out.opt, out.hessian, getattr(out, "fixed_information", None)


@partial(jax.jit, static_argnames=("family", "structure", "maxiter", "gtol"))
def _fit_responses_terms(theta0, responses, rows, *, family, structure, maxiter, gtol):
    """The several-factor fit of each of ``responses (k, n)``, one after another."""
    from mixedjax.fit.glmm_terms import fit_glmm_terms

    def one(y):
        out = fit_glmm_terms(
            theta0, jnp.zeros(rows.X.shape[-1], theta0.dtype), rows._replace(y=y),
            family=family, structure=structure, maxiter=maxiter, gtol=gtol,
        )  # fmt: skip
        return out.opt, out.hessian

    return jax.lax.map(one, responses)


def _fit_many_terms(model, Y: np.ndarray, maxiter: int, gtol: float):
    """``(x (k, n_theta + p), hessian, opt)`` of a several-factor model's fits; ``θ`` in
    lme4's order and sign convention already."""
    from mixedjax.engines.laplace_terms import term_rows
    from mixedjax.fit.glmm_terms import lme4_start

    rows = term_rows(
        model.endog, model.weights, model.offset, model.exog,
        [t.design for t in model.terms], [t.codes for t in model.terms], model.structure,
    )  # fmt: skip
    opt, hessian = jax.device_get(
        _fit_responses_terms(
            lme4_start(model.structure), jax.device_put(Y.T), jax.device_put(rows),
            family=model.family, structure=model.structure, maxiter=int(maxiter),
            gtol=float(gtol),
        )
    )  # fmt: skip
    return opt, hessian


def fit_many_glmm(model, Y, maxiter: int = 200, gtol: float = 1e-10) -> GLMMBatchResults:
    """Fit ``model`` (a one-factor :class:`~mixedjax.model.glmm.MixedGLM`) to each column of
    ``Y (n, k)`` (or a DataFrame, whose column names name the fits), keeping its design,
    prior weights and offset. Each column is checked against the family's support."""
    from mixedjax.results.glmm import canonical_theta

    names = list(Y.columns) if isinstance(Y, pd.DataFrame) else None
    Y = np.asarray(Y, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or Y.shape[0] != model.nobs:
        raise ValueError(f"Y must be (n, k) with n = {model.nobs} rows, got shape {Y.shape}")
    names = names or [f"y{j}" for j in range(Y.shape[1])]
    for j, name in enumerate(names):
        model.family.check_response(Y[:, j], model.weights, f"Y[{name!r}]")
    if model.engine == "crossed":
        opt, hessian = _fit_many_terms(model, Y, maxiter, gtol)
        n_theta = model.structure.n_theta
        x = np.asarray(opt.x)
        cov = 2.0 * np.linalg.pinv(np.asarray(hessian), hermitian=True)[:, n_theta:, n_theta:]
        return _batch_results(model, names, x[:, n_theta:], cov, x[:, :n_theta], opt, None)
    rows, row_index = group_rows(
        model.endog, model.weights, model.offset, model.exog, model.exog_re,
        model.group_codes, model.n_groups,
    )  # fmt: skip
    filled = row_index >= 0
    responses = np.zeros((Y.shape[1],) + row_index.shape)
    responses[:, filled] = Y[row_index[filled]].T
    structure = model.structure
    theta0 = jnp.asarray(np.where(structure.diagonal_theta_mask(), 1.0, 0.0))
    opt, hessian, fixed_information = jax.device_get(
        _fit_responses(
            theta0, jnp.asarray(responses), type(rows)(*(jnp.asarray(a) for a in rows)),
            family=model.family, structure=structure, n_agq=model.nAGQ, maxiter=int(maxiter),
            gtol=float(gtol),
        )
    )  # fmt: skip
    n_theta = structure.n_theta
    x = np.asarray(opt.x)
    theta = np.stack(
        [canonical_theta(t, structure)[model.theta_lme4_order] for t in x[:, :n_theta]]
    )
    fixed = slice(n_theta, n_theta + model.k_fe)  # then log φ for a family with a dispersion
    beta = x[:, fixed]
    dispersion = np.exp(x[:, -1]) if model.family.has_dispersion else None
    if model.nAGQ == 0:
        cov = np.linalg.pinv(np.asarray(fixed_information), hermitian=True)
    else:
        cov = 2.0 * np.linalg.pinv(np.asarray(hessian), hermitian=True)[:, fixed, fixed]
    return _batch_results(model, names, beta, cov, theta, opt, dispersion)


def _batch_results(model, names, beta, cov, theta, opt, dispersion) -> GLMMBatchResults:
    """:class:`GLMMBatchResults` from ``β (k, p)``, its covariances ``(k, p, p)``, ``θ``
    (lme4's order, absolute scale) and the optimiser's results; ``dispersion (k,)`` or
    ``None`` (1)."""
    dispersion = np.ones(len(names)) if dispersion is None else dispersion
    se = np.sqrt(np.maximum(np.diagonal(cov, axis1=1, axis2=2), 0.0))
    index = pd.Index(names, name="response")
    return GLMMBatchResults(
        names,
        pd.DataFrame(beta, index=index, columns=model.exog_names),
        pd.DataFrame(se, index=index, columns=model.exog_names),
        theta / np.sqrt(dispersion)[:, None],
        -0.5 * np.asarray(opt.value),
        np.asarray(opt.status),
        dispersion,
    )
