"""Functional API: pure functions on a data pytree that compose with ``jit``, ``vmap``, ``grad``.

The data pytree is :class:`~mixedjax.design.groups.GroupedData`, built from arrays by
:func:`make_data` with ``jnp`` operations (differentiable with respect to ``y``, ``X`` and
``Z``). On it:

* :func:`deviance` — the profiled deviance ``d(θ)`` (lme4's objective, β and σ² profiled out);
* :func:`fit` — ``θ̂ = argmin d(θ)`` and the estimates at ``θ̂`` (a :class:`Fit`);
* :func:`blups` — the conditional modes of the random effects.

Several grouping factors (crossed or nested): :func:`crossed_design` builds the design's
cross-products once, :func:`crossed_data` adds a response (``jnp``, differentiable in ``y``,
vmappable), :func:`crossed_deviance` and :func:`crossed_fit` (implicit gradients as below).

Derivatives of the fit. The optimiser's iterations are not differentiated. At the optimum
``∇_θ d(θ̂(D); D) = 0``, so by the implicit function theorem, for data ``D`` with tangent
``Ḋ``,

.. math::
    \\dot θ = -H^{-1} \\, \\partial_D \\nabla_θ d(θ̂; D)[\\dot D], \\qquad H = \\nabla^2_θ d(θ̂; D),

which :func:`fit` implements as a ``jax.custom_jvp`` (so ``jvp``, ``jacfwd``, ``grad`` and
``vjp`` all work; reverse mode transposes the linear map above). β̂, σ² and the covariances
are explicit functions of ``(θ̂, D)`` and are differentiated by ordinary autodiff. Entries
of ``θ`` on the boundary (snapped to exactly 0) are an active constraint: their derivative
is 0 and they are held fixed in ``H``.

Example:
    >>> import jax, jax.numpy as jnp, mixedjax
    >>> from mixedjax import functional as F
    >>> df = mixedjax.datasets.load("sleepstudy")
    >>> codes = jnp.asarray(df["Subject"].astype("category").cat.codes.to_numpy())
    >>> X = jnp.stack([jnp.ones(len(df)), jnp.asarray(df["Days"], float)], axis=1)
    >>> def slope(y):
    ...     return F.fit(F.make_data(y, X, X, codes, 18)).beta[1]
    >>> g = jax.grad(slope)(jnp.asarray(df["Reaction"], float))  # d slope / d y, (180,)
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure, lower_indices_colwise, theta_to_cov
from mixedjax.design.crossed import (
    CrossedData,
    CrossedStructure,
    ResponseDesign,
    crossed_crossprods,
    response_design,
    with_response,
)
from mixedjax.design.groups import GroupedData
from mixedjax.engines import crossed as crossed_engine
from mixedjax.engines.onefactor import conditional_modes, profiled_deviance
from mixedjax.fit import estimation
from mixedjax.fit.crossed import NEWTON_MAX_DENSE
from mixedjax.fit.crossed import fit_theta as crossed_fit_theta
from mixedjax.fit.unpadded import fit_and_snap
from mixedjax.spec.terms import RandomTerm


class Fit(NamedTuple):
    """A fitted model (all fields are arrays; a leading batch axis under ``vmap``).

    Attributes:
        theta: ``(n_theta,)`` ``θ̂`` (lme4's ``theta``).
        beta: ``(p,)`` fixed effects.
        scale: ``()`` residual variance σ².
        cov_re: ``(q, q)`` random-effects covariance ``Ψ`` (data scale).
        vcomp: ``(k_vc,)`` variance components (data scale).
        cov_beta: ``(p, p)`` ``σ² (X'V⁻¹X)⁻¹``.
        objective: ``()`` ``-2 log L`` (REML criterion for REML).
        converged: ``()`` bool, the optimiser met ``gtol``.
        status: ``()`` the optimiser's status code (:data:`mixedjax.fit.optimize.STATUS_MESSAGES`).
    """

    theta: jnp.ndarray
    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_re: jnp.ndarray
    vcomp: jnp.ndarray
    cov_beta: jnp.ndarray
    objective: jnp.ndarray
    converged: jnp.ndarray
    status: jnp.ndarray


def make_data(y, X, Z, group_codes, n_groups: int, dtype=None) -> GroupedData:
    """Per-group cross-products from row-level arrays, with ``jnp`` (differentiable).

    Args:
        y: ``(n,)`` response.
        X: ``(n, p)`` fixed-effects design.
        Z: ``(n, r)`` random-effects design (e.g. ``X`` itself for random intercepts and
            slopes on every column of ``X``).
        group_codes: ``(n,)`` integers in ``[0, n_groups)``.
        n_groups: number of groups (static; extra groups are empty, which changes nothing).
        dtype: ``None`` (float64) or ``"float32"``.

    Returns:
        :class:`~mixedjax.design.groups.GroupedData`; memory ``O(n r max(r, p))`` while building.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("sleepstudy")
        >>> X = np.column_stack([np.ones(len(df)), df["Days"]])
        >>> codes = pd.factorize(df["Subject"], sort=True)[0]
        >>> data = functional.make_data(df["Reaction"].to_numpy(), X, X, codes, 18)
        >>> data.ZtZ.shape
        (18, 2, 2)
    """
    dtype = _dtype(dtype)
    y, X, Z = (jnp.asarray(a, dtype) for a in (y, X, Z))
    if y.ndim != 1 or X.ndim != 2 or Z.ndim != 2:
        shapes = f"{y.shape}, {X.shape}, {Z.shape}"
        raise ValueError(f"y, X, Z must have shapes (n,), (n, p), (n, r); got {shapes}")
    if not (X.shape[0] == Z.shape[0] == y.shape[0] == np.shape(group_codes)[0]):
        raise ValueError("y, X, Z and group_codes must have the same number of rows")

    def segment(values):
        return jax.ops.segment_sum(values, group_codes, num_segments=int(n_groups))

    return GroupedData(
        ZtZ=segment(Z[:, :, None] * Z[:, None, :]),
        ZtX=segment(Z[:, :, None] * X[:, None, :]),
        Zty=segment(Z * y[:, None]),
        XtX=X.T @ X,
        Xty=X.T @ y,
        yty=y @ y,
        n_obs=jnp.asarray(y.shape[0], dtype),
    )


def _dtype(dtype):
    if dtype is None or dtype in ("float64", jnp.float64, np.float64):
        return jnp.float64
    if dtype in ("float32", jnp.float32, np.float32):
        return jnp.float32
    raise ValueError(f"dtype must be None, 'float64' or 'float32', got {dtype!r}")


def _structure(data: GroupedData, structure: CovStructure | None) -> CovStructure:
    r = data.ZtZ.shape[-1]
    structure = CovStructure(r) if structure is None else structure
    if structure.n_random != r:
        raise ValueError(f"structure has {structure.n_random} random effects; data has {r}")
    return structure


def deviance(
    theta: jnp.ndarray,
    data: GroupedData,
    *,
    structure: CovStructure | None = None,
    reml: bool = True,
) -> jnp.ndarray:
    """Profiled deviance ``d(θ)`` (``-2 log L`` or REML criterion); ``()``.

    ``structure`` defaults to one unstructured covariance over all columns of ``Z``.

    Example:
        >>> import numpy as np, pandas as pd, jax.numpy as jnp
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("sleepstudy")
        >>> X = np.column_stack([np.ones(len(df)), df["Days"]])
        >>> codes = pd.factorize(df["Subject"], sort=True)[0]
        >>> data = functional.make_data(df["Reaction"].to_numpy(), X, X, codes, 18)
        >>> theta = jnp.array([0.966732791471446, 0.0151690598803683, 0.230909598085307])
        >>> round(float(functional.deviance(theta, data)), 4)  # lme4's REML criterion
        1743.6283
    """
    return profiled_deviance(theta, data, _structure(data, structure), reml)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4, 5))
def _theta_hat(data, structure, reml, method, maxiter, gtol):
    """``(θ̂ (n_theta,), fixed (n_theta,) float mask of boundary entries, status ())``."""
    theta0 = estimation.default_start(data, structure)
    free = jnp.ones(structure.n_theta, dtype=bool)
    opt, theta, _, zeroed = fit_and_snap(
        theta0, free, data, gtol, structure=structure, reml=reml, method=method,
        maxiter=maxiter,
    )  # fmt: skip
    return theta, _fixed_mask(zeroed, structure).astype(theta.dtype), opt.status


def _fixed_mask(zeroed: jnp.ndarray, structure: CovStructure) -> jnp.ndarray:
    """Entries held at 0 by snapping: whole columns of ``L`` whose diagonal was zeroed."""
    k_re2 = structure.k_re2
    rows, cols = lower_indices_colwise(structure.k_re)
    diag_of_col = np.array([np.flatnonzero((cols == j) & (rows == j))[0] for j in cols])
    return jnp.concatenate([zeroed[diag_of_col], zeroed[k_re2:]]) if k_re2 else zeroed


@_theta_hat.defjvp
def _theta_hat_jvp(structure, reml, method, maxiter, gtol, primals, tangents):
    (data,), (data_dot,) = primals, tangents
    theta, fixed, status = _theta_hat(data, structure, reml, method, maxiter, gtol)

    def grad_theta(theta, data):
        return jax.grad(profiled_deviance)(theta, data, structure, reml)

    free = 1.0 - fixed
    H = jax.hessian(profiled_deviance)(theta, data, structure, reml)
    H = H * jnp.outer(free, free) + jnp.diag(fixed)
    _, cross = jax.jvp(lambda d: grad_theta(theta, d), (data,), (data_dot,))
    theta_dot = -smallmat.cho_solve(smallmat.cholesky(H), (cross * free)[:, None])[:, 0] * free
    return (theta, fixed, status), (theta_dot, jnp.zeros_like(fixed), _int_zero(status))


def _int_zero(x):
    return np.zeros(np.shape(x), dtype=jax.dtypes.float0)


def fit(
    data: GroupedData,
    *,
    structure: CovStructure | None = None,
    reml: bool = True,
    method: str = "lbfgs",
    maxiter: int = 500,
    gtol: float | None = None,
    dtype=None,
) -> Fit:
    """Fit by REML (default) or ML: a pure function of ``data`` (jit/vmap/grad-safe).

    The same optimiser and boundary rule as :meth:`mixedjax.MixedLM.fit`, so the numbers
    agree with it. Gradients flow to ``data`` (and through :func:`make_data` to ``y``,
    ``X``, ``Z``) by implicit differentiation (module docstring).

    Args:
        data: :class:`~mixedjax.design.groups.GroupedData`.
        structure: random-effects structure (default: unstructured over all of ``Z``).
        reml: REML if true, else ML.
        method, maxiter: optimiser settings.
        gtol: scaled-gradient tolerance; default 1e-12 (float64: implicit differentiation
            assumes an exactly stationary θ̂, and the Newton polish reaches it) or 1e-5
            (float32).
        dtype: ``None`` keeps ``data``'s dtype; ``"float32"``/``"float64"`` casts it.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("sleepstudy")
        >>> X = np.column_stack([np.ones(len(df)), df["Days"]])
        >>> codes = pd.factorize(df["Subject"], sort=True)[0]
        >>> data = functional.make_data(df["Reaction"].to_numpy(), X, X, codes, 18)
        >>> np.round(np.asarray(functional.fit(data).beta), 3).tolist()
        [251.405, 10.467]
    """
    if dtype is not None:
        data = jax.tree_util.tree_map(lambda a: jnp.asarray(a, _dtype(dtype)), data)
    structure = _structure(data, structure)
    if gtol is None:
        gtol = 1e-5 if data.ZtZ.dtype == jnp.float32 else 1e-12
    theta, _, status = _theta_hat(data, structure, bool(reml), method, int(maxiter), gtol)
    beta, scale, cov_beta, _ = estimation.fixed_estimates(theta, data, structure, reml)
    cov1, vc1 = theta_to_cov(theta, structure)
    return Fit(
        theta=theta,
        beta=beta,
        scale=scale,
        cov_re=cov1 * scale,
        vcomp=vc1 * scale,
        cov_beta=cov_beta,
        objective=profiled_deviance(theta, data, structure, reml),
        converged=status == 0,
        status=status,
    )


def blups(
    theta: jnp.ndarray,
    beta: jnp.ndarray,
    data: GroupedData,
    *,
    structure: CovStructure | None = None,
) -> jnp.ndarray:
    """Conditional modes of the random effects ``(n_groups, r)`` (data scale).

    .. math:: b_i = Λ M_i^{-1} Λ' Z_i'(y_i - X_i β), \\qquad M_i = Λ'Z_i'Z_iΛ + I.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("sleepstudy")
        >>> X = np.column_stack([np.ones(len(df)), df["Days"]])
        >>> codes = pd.factorize(df["Subject"], sort=True)[0]
        >>> data = functional.make_data(df["Reaction"].to_numpy(), X, X, codes, 18)
        >>> f = functional.fit(data)
        >>> round(float(functional.blups(f.theta, f.beta, data)[0, 0]), 3)  # lme4: 2.259
        2.259
    """
    modes, _ = conditional_modes(theta, beta, data, _structure(data, structure))
    return modes


def predict(fitted: Fit, X, Z, group_codes, data: GroupedData, *, structure=None) -> jnp.ndarray:
    """Conditional predictions ``X β̂ + Z b_g`` for rows ``(X (m, p), Z (m, r), codes (m,))``
    of groups seen in ``data`` (unseen groups: use an out-of-range code, which gives
    ``b = 0`` as ``jnp`` indexing with ``mode="fill"``).

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("sleepstudy")
        >>> X = np.column_stack([np.ones(len(df)), df["Days"]])
        >>> codes = pd.factorize(df["Subject"], sort=True)[0]
        >>> data = functional.make_data(df["Reaction"].to_numpy(), X, X, codes, 18)
        >>> f = functional.fit(data)
        >>> round(float(functional.predict(f, X[:1], X[:1], codes[:1], data)[0]), 3)  # lme4
        253.664
    """
    b = blups(fitted.theta, fitted.beta, data, structure=structure)
    b_rows = b.at[group_codes].get(mode="fill", fill_value=0.0)
    return X @ fitted.beta + jnp.sum(Z * b_rows, axis=-1)


# --------------------------------------------------------------- several grouping factors
class CrossedDesign(NamedTuple):
    """The response-free part of a crossed model, built once by :func:`crossed_design`.

    Attributes:
        structure: :class:`~mixedjax.design.crossed.CrossedStructure` (static).
        data: :class:`~mixedjax.design.crossed.CrossedData` of the design; its response
            parts are replaced by :func:`crossed_data`.
        rows: :class:`~mixedjax.design.crossed.ResponseDesign` (device arrays).
        order: position in the given ``terms`` of each term in ``θ`` order (decreasing
            number of levels, lme4's order).
    """

    structure: CrossedStructure
    data: CrossedData
    rows: ResponseDesign
    order: tuple[int, ...]


def crossed_design(X, terms) -> CrossedDesign:
    """Design cross-products of a model with several grouping factors (crossed or nested).

    Args:
        X: ``(n, p)`` fixed-effects design.
        terms: a list of ``(Z_k (n, q_k), codes_k (n,))``: each term's columns and the level
            (integers ``0..n_k - 1``) of each row. ``θ`` comes in the order of decreasing
            number of levels (``order``), each term's factor column by column.

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional
        >>> df = datasets.load("penicillin")
        >>> ones = np.ones((len(df), 1))
        >>> codes = [pd.factorize(df[c], sort=True)[0] for c in ("plate", "sample")]
        >>> design = functional.crossed_design(ones, [(ones, codes[0]), (ones, codes[1])])
        >>> design.structure.n_levels
        (24, 6)
    """
    X = np.asarray(X, dtype=float)
    built = []
    for k, (Z, codes) in enumerate(terms):
        Z = np.asarray(Z, dtype=float)
        Z = Z[:, None] if Z.ndim == 1 else Z
        codes = np.asarray(codes, dtype=np.int64)
        if Z.shape[0] != X.shape[0] or codes.shape != (X.shape[0],):
            raise ValueError(f"terms[{k}]: Z and codes need {X.shape[0]} rows")
        if codes.min() < 0:
            raise ValueError(f"terms[{k}]: codes must be in 0..n_levels - 1")
        n_levels = int(codes.max()) + 1
        names = tuple(f"z{j}" for j in range(Z.shape[1]))
        built.append(RandomTerm(f"term{k}", names, Z, codes, np.arange(n_levels).astype(str)))
    order = tuple(sorted(range(len(built)), key=lambda k: -built[k].n_levels))
    sorted_terms = [built[k] for k in order]
    structure, data = crossed_crossprods(sorted_terms, X, np.zeros(X.shape[0]))
    return CrossedDesign(structure, data, response_design(sorted_terms, X), order)


def crossed_data(y, design: CrossedDesign) -> CrossedData:
    """The cross-products of response ``y (n,)`` on ``design`` (``jnp``: differentiable in
    ``y`` and vmappable over responses).

    Example:
        >>> import numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional as F
        >>> df = datasets.load("penicillin")
        >>> ones = np.ones((len(df), 1))
        >>> codes = [pd.factorize(df[c], sort=True)[0] for c in ("plate", "sample")]
        >>> design = F.crossed_design(ones, [(ones, codes[0]), (ones, codes[1])])
        >>> data = F.crossed_data(df["diameter"].to_numpy(float), design)
        >>> float(data.dense[-1, -1]) == float((df["diameter"] ** 2).sum())  # y'y
        True
    """
    return with_response(design.data, design.structure, design.rows, jnp.asarray(y))


class CrossedFit(NamedTuple):
    """A fitted crossed model (arrays; a leading batch axis under ``vmap``).

    Attributes:
        theta: ``(n_theta,)`` ``θ̂`` in ``θ`` order (:class:`CrossedDesign`).
        beta: ``(p,)``; scale: ``()`` σ²; cov_beta: ``(p, p)``.
        objective: ``()`` ``-2 log L`` (REML criterion for REML).
        converged: ``()`` bool; status: ``()`` the optimiser's code.
    """

    theta: jnp.ndarray
    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_beta: jnp.ndarray
    objective: jnp.ndarray
    converged: jnp.ndarray
    status: jnp.ndarray


def crossed_deviance(theta, data: CrossedData, structure: CrossedStructure, reml: bool = True):
    """Profiled deviance of a crossed model (:func:`mixedjax.engines.crossed.deviance`);
    ``θ`` in the order of :class:`CrossedDesign`.

    Example:
        >>> import numpy as np, pandas as pd, jax.numpy as jnp
        >>> from mixedjax import datasets, functional as F
        >>> df = datasets.load("penicillin")
        >>> ones = np.ones((len(df), 1))
        >>> codes = [pd.factorize(df[c], sort=True)[0] for c in ("plate", "sample")]
        >>> design = F.crossed_design(ones, [(ones, codes[0]), (ones, codes[1])])
        >>> data = F.crossed_data(df["diameter"].to_numpy(float), design)
        >>> theta = jnp.array([1.53967752493588, 3.5124150670082])   # lme4's theta
        >>> round(float(F.crossed_deviance(theta, data, design.structure)), 3)  # REMLcrit
        330.861
    """
    return crossed_engine.deviance(theta, data, structure, reml)


@partial(jax.custom_jvp, nondiff_argnums=(1, 2, 3, 4, 5, 6))
def _crossed_theta_hat(data, structure, reml, method, maxiter, gtol, theta0):
    free = jnp.ones(structure.n_theta, dtype=bool)
    small = structure.n_dense + structure.p + 1 <= NEWTON_MAX_DENSE  # exact Newton affordable
    opt = crossed_fit_theta(
        jnp.asarray(theta0), free, data, gtol, structure=structure, reml=reml, method=method,
        maxiter=maxiter, newton_steps=8 if small else 0,
    )  # fmt: skip
    return opt.x, opt.status


@_crossed_theta_hat.defjvp
def _crossed_theta_hat_jvp(structure, reml, method, maxiter, gtol, theta0, primals, tangents):
    (data,), (data_dot,) = primals, tangents
    theta, status = _crossed_theta_hat(data, structure, reml, method, maxiter, gtol, theta0)
    H = jax.hessian(crossed_engine.deviance)(theta, data, structure, reml)
    _, cross = jax.jvp(
        lambda d: jax.grad(crossed_engine.deviance)(theta, d, structure, reml), (data,), (data_dot,)
    )
    theta_dot = -smallmat.cho_solve(smallmat.cholesky(H), cross[:, None])[:, 0]
    return (theta, status), (theta_dot, _int_zero(status))


def crossed_fit(
    data: CrossedData,
    structure: CrossedStructure,
    *,
    reml: bool = True,
    method: str = "lbfgs",
    maxiter: int = 500,
    gtol: float = 1e-12,
    theta0=None,
) -> CrossedFit:
    """Fit a crossed model: a pure function of ``data`` (jit/vmap/grad-safe), gradients by
    implicit differentiation as :func:`fit` (an interior optimum is assumed: a variance on
    the boundary has no derivative here).

    ``theta0`` (static; default: 1 on each factor's diagonal) starts the optimiser.

    Example:
        >>> import jax, numpy as np, pandas as pd
        >>> from mixedjax import datasets, functional as F
        >>> df = datasets.load("penicillin")
        >>> ones = np.ones((len(df), 1))
        >>> codes = [pd.factorize(df[c], sort=True)[0] for c in ("plate", "sample")]
        >>> design = F.crossed_design(ones, [(ones, codes[0]), (ones, codes[1])])
        >>> def mean(y):
        ...     return F.crossed_fit(F.crossed_data(y, design), design.structure).beta[0]
        >>> y = df["diameter"].to_numpy(float)
        >>> round(float(mean(y)), 4), round(float(jax.grad(mean)(y).sum()), 6)  # lme4: 22.9722
        (22.9722, 1.0)
    """
    if theta0 is None:
        theta0 = structure.diagonal_theta_mask().astype(float)
    theta0 = tuple(float(v) for v in np.asarray(theta0).reshape(-1))
    theta, status = _crossed_theta_hat(
        data, structure, bool(reml), method, int(maxiter), float(gtol), theta0
    )
    est = crossed_engine.estimates(theta, data, structure, reml)
    return CrossedFit(
        theta=theta,
        beta=est.beta,
        scale=est.scale,
        cov_beta=est.cov_beta,
        objective=est.objective,
        converged=status == 0,
        status=status,
    )
