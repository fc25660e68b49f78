"""Many fits in one jitted, vmapped call: pure kernels.

A fit is ``θ̂ = argmin d(θ; data)`` followed by boundary snapping and the estimates at
``θ̂`` (see :mod:`mixedjax.fit.estimation`). :func:`fit_one` writes that pipeline for *one*
data set as a pure, vmappable function; :func:`fit_batch` vmaps it over a batch of
:class:`~mixedjax.design.groups.GroupedData` whose batched fields are named statically:

* many responses on one design (:meth:`mixedjax.MixedLM.fit_many`): only ``Zty``, ``Xty``
  and ``yty`` carry a leading batch axis ``(k, ...)``; ``ZtZ``, ``ZtX``, ``XtX`` and
  ``n_obs`` are shared (``in_axes=None``), so memory grows with ``k`` only through the
  response cross-products;
* many independent data sets (:func:`mixedjax.batch.results.fit_models`): every field is
  batched; data sets with fewer groups are padded with empty groups, which contribute
  exactly nothing to the deviance (``log|I| = 0``, zero cross-products).

Under ``vmap`` the optimiser's ``while_loop`` runs until the slowest member has stopped;
members that stopped earlier keep their state (``vmap`` of a ``while_loop`` selects on each
member's own condition), so every member follows the same path as its single fit.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.covariance import CovStructure
from mixedjax.core.progress import report_done
from mixedjax.design.groups import GroupedData
from mixedjax.engines.onefactor import profiled_deviance
from mixedjax.fit import estimation
from mixedjax.fit.optimize import OptResult, _scaled_grad
from mixedjax.fit.stream import minimize_stream
from mixedjax.fit.unpadded import fit_and_snap, snap_theta


class FitOutput(NamedTuple):
    """One fit (or, batched, ``k`` fits with a leading axis on every field).

    Attributes:
        opt: the optimiser's :class:`~mixedjax.fit.optimize.OptResult` (before snapping).
        theta_start: ``(n_theta,)`` starting ``θ``.
        theta: ``(n_theta,)`` ``θ̂`` after boundary snapping.
        objective: ``()`` ``-2 log L`` at ``θ̂`` (REML criterion for REML).
        zeroed: ``(n_theta,)`` bool, entries of ``θ`` set to exactly 0 by snapping.
        beta: ``(p,)`` fixed effects.
        scale: ``()`` residual variance σ².
        cov_beta: ``(p, p)`` ``σ² (X'V⁻¹X)⁻¹``.
    """

    opt: OptResult
    theta_start: jnp.ndarray
    theta: jnp.ndarray
    objective: jnp.ndarray
    zeroed: jnp.ndarray
    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_beta: jnp.ndarray


def fit_one(
    theta0: jnp.ndarray,
    free_mask: jnp.ndarray,
    data: GroupedData,
    gtol: float,
    *,
    structure: CovStructure,
    reml: bool,
    method: str = "lbfgs",
    maxiter: int = 500,
) -> FitOutput:
    """The whole fit of one data set as a pure function (call it under ``jit``/``vmap``)."""
    opt, theta, value, zeroed = fit_and_snap(
        theta0, free_mask, data, gtol, structure=structure, reml=reml, method=method,
        maxiter=maxiter,
    )  # fmt: skip
    f = estimation.fixed_estimates(theta, data, structure, reml)
    return FitOutput(opt, theta0, theta, f.objective, zeroed, f.beta, f.scale, f.cov_beta)


#: Fields of :class:`GroupedData` that change with the response (the rest is the design).
RESPONSE_FIELDS = ("Zty", "Xty", "yty")


def data_axes(batched_fields: tuple[str, ...]) -> GroupedData:
    """``in_axes`` for ``vmap``: 0 for the named fields, ``None`` (shared) for the others."""
    unknown = set(batched_fields) - set(GroupedData._fields)
    if unknown:
        raise ValueError(f"batched_fields: unknown GroupedData fields {sorted(unknown)}")
    return GroupedData(*[0 if f in batched_fields else None for f in GroupedData._fields])


@partial(jax.jit, static_argnames=("batched_fields", "structure", "reml", "method", "maxiter"))
def fit_batch(
    data: GroupedData,
    free_mask: jnp.ndarray,
    gtol: float,
    theta0: jnp.ndarray | None = None,
    *,
    batched_fields: tuple[str, ...],
    structure: CovStructure,
    reml: bool,
    method: str = "lbfgs",
    maxiter: int = 500,
) -> FitOutput:
    """Fit every member of a batch of data sets from its data-based start, in one call.

    Args:
        data: :class:`GroupedData` whose ``batched_fields`` have a leading axis ``(k, ...)``.
        free_mask: ``(n_theta,)`` entries of ``θ`` to estimate (shared).
        gtol: scaled-gradient tolerance (as in :meth:`mixedjax.MixedLM.fit`).
        theta0: ``(k, n_theta)`` starting values; default: each member's data-based start.
        batched_fields: names of the batched fields (static).

    Returns:
        :class:`FitOutput` with a leading axis ``k`` on every field.
    """

    def one(member: GroupedData, start) -> FitOutput:
        start = estimation.default_start(member, structure) if start is None else start
        return fit_one(
            start, free_mask, member, gtol, structure=structure, reml=reml, method=method,
            maxiter=maxiter,
        )  # fmt: skip

    in_axes = (data_axes(batched_fields), None if theta0 is None else 0)
    return jax.vmap(one, in_axes=in_axes)(data, theta0)


#: Slots of the first streaming phase, and its evaluation budget per member (see
#: :mod:`mixedjax.fit.stream`); members still running after it continue in ``TAIL_SLOTS`` slots.
STREAM_SLOTS = 512
STREAM_BUDGET = 40
TAIL_SLOTS = 32


@partial(
    jax.jit,
    static_argnames=(
        "batched_fields", "structure", "reml", "method", "maxiter", "slots", "report"
    ),
)  # fmt: skip
def fit_stream(
    data: GroupedData,
    free_mask: jnp.ndarray,
    gtol: float,
    theta0: jnp.ndarray | None = None,
    *,
    batched_fields: tuple[str, ...],
    structure: CovStructure,
    reml: bool,
    method: str = "bfgs",
    maxiter: int = 500,
    slots: tuple[int, int, int] = (STREAM_SLOTS, STREAM_BUDGET, TAIL_SLOTS),
    report: bool = False,
) -> FitOutput:
    """Fit every member of a batch like :func:`fit_batch`, by continuous batching.

    The optimisation runs through :func:`mixedjax.fit.stream.minimize_stream` (BFGS, or exact
    Newton for ``method="newton"``, then the exact Newton polish), so the cost is the sum of
    the members' evaluations rather than ``k`` times the slowest member's; boundary snapping
    and the estimates are then vmapped over the members. Results equal the single fits' to
    the optimiser's precision (both are polished to a scaled gradient of about 1e-14).

    Args:
        slots: ``(slots, evaluation budget, tail slots)`` of the two streaming phases.
        report: count finished fits on the active progress bar
            (:func:`mixedjax.core.progress.report_done`) from inside the loop.

    Returns:
        :class:`FitOutput` with a leading axis ``k`` on every field.
    """
    axes = data_axes(batched_fields)
    if theta0 is None:
        theta0 = jax.vmap(lambda d: estimation.default_start(d, structure), in_axes=(axes,))(data)

    def objective(theta, member):
        return profiled_deviance(theta, member, structure, reml)

    first, budget, tail = slots
    state, n_newton = minimize_stream(
        objective, theta0, data, axes, free_mask, mode="newton" if method == "newton" else "bfgs",
        phases=((first, budget), (tail, None)), maxiter=maxiter, gtol=gtol,
        report=report_done if report else None,
    )  # fmt: skip
    opt = OptResult(
        state.x, state.value, state.grad, state.n_iter, state.n_eval, n_newton,
        jax.vmap(_scaled_grad)(state.value, state.grad), state.status,
    )  # fmt: skip

    def finish(x, value, member):
        theta, _, zeroed = snap_theta(x, value, free_mask, member, structure, reml)
        f = estimation.fixed_estimates(theta, member, structure, reml)
        return theta, f.objective, zeroed, f.beta, f.scale, f.cov_beta

    theta, objective_value, zeroed, beta, scale, cov_beta = jax.vmap(finish, in_axes=(0, 0, axes))(
        state.x, state.value, data
    )
    return FitOutput(opt, theta0, theta, objective_value, zeroed, beta, scale, cov_beta)


def response_crossprods(
    Y: np.ndarray,
    exog: np.ndarray,
    exog_z: np.ndarray,
    group_codes: np.ndarray,
    n_groups: int,
    max_block: int = 2**24,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cross-products that depend on the response, for ``k`` responses at once.

    .. math::
        Z_i'Y \\; (k, n_\\text{groups}, r), \\qquad X'Y \\; (k, p), \\qquad
        \\operatorname{diag}(Y'Y) \\; (k,).

    Segment sums over rows sorted by group (``np.add.reduceat``; every group must have at
    least one row, as in a model's own encoding); responses are processed in blocks of at
    most ``max_block`` row-by-response products to bound the temporary memory.
    """
    n, k = Y.shape
    r = exog_z.shape[1]
    order = np.argsort(group_codes, kind="stable")
    sorted_codes = group_codes[order]
    starts = np.searchsorted(sorted_codes, np.arange(n_groups))
    if np.any(np.bincount(group_codes, minlength=n_groups) == 0):
        raise ValueError("group_codes: every group needs at least one row")
    Z_sorted = exog_z[order]
    Zty = np.empty((k, n_groups, r))
    step = max(1, max_block // max(n, 1))
    for lo in range(0, k, step):  # blocks of responses, not groups or rows
        Y_sorted = Y[order, lo : lo + step]
        for a in range(r):
            Zty[lo : lo + step, :, a] = np.add.reduceat(
                Z_sorted[:, a, None] * Y_sorted, starts, axis=0
            ).T
    return Zty, Y.T @ exog, np.einsum("nk,nk->k", Y, Y)
