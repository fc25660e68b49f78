"""Internal centring and scaling: the fit works on well-conditioned data.

Cross-products of badly scaled data lose digits before any likelihood is evaluated: with
``y`` or a covariate offset by 1e6, ``[X y]'[X y]`` has entries ~1e12 times larger than the
quantities the GLS Cholesky must resolve, and a covariate scaled by 1e8 gives ``θ`` entries
eight orders of magnitude apart, which the quasi-Newton line search cannot balance. So
:meth:`MixedLM.fit` fits an equivalent model on standardized data and maps every estimate
back exactly.

With ``c`` the index of a constant column of ``X`` (value ``k``) if there is one, the
transforms are

.. math::
    y^* = (y - μ_y)/s_y, \\qquad X^* = X A, \\qquad Z^* = Z B,

where ``μ_y`` is the mean of ``y`` (0 without a constant column), ``s_y`` the root mean
square of ``y - μ_y``, and ``A (p, p)`` centres (only when a constant column exists) and
scales each non-constant column of ``X`` to unit root mean square, then orthogonalizes the
columns (QR), so near-collinear covariates do not degrade the likelihood; ``B (q, q)`` does the same
for the correlated random-effects columns (``exog_re``; variance-component columns are left
alone, their variances only pick up ``s_y²``). Since ``X A`` and ``Z B`` span the same
spaces as ``X`` and ``Z``, the models are the same and, writing ``*`` for the standardized
fit,

.. math::
    β = s_y A β^* + (μ_y/k) e_c, \\quad \\operatorname{cov} β = s_y^2 A C^* A', \\quad
    Ψ_1 = B Ψ_1^* B', \\quad τ_1 = τ_1^*, \\quad σ^2 = s_y^2 σ^{2*}, \\quad
    γ_i = s_y \\operatorname{blockdiag}(B, I) γ_i^*,

and the densities differ by the Jacobian of the map from ``y`` (and, for REML, of ``A``):
``ℓ = ℓ^* - m \\log s_y + [\\text{REML}] \\log|\\det A|`` with ``m = n`` (ML) or ``n - p``
(REML). ``θ`` is reported as lme4 would report it for the original data: the lower
Cholesky factor of ``Ψ₁``.
"""

from typing import NamedTuple

import numpy as np

from mixedjax.core.covariance import CovStructure, lower_indices_colwise
from mixedjax.design.groups import GroupedData, group_crossprods, pad_groups
from mixedjax.fit.estimation import Estimates


class ColumnMap(NamedTuple):
    """``M* = (M - shift) / scale`` column by column, i.e. ``M* = M T``.

    Attributes:
        shift: ``(k,)`` subtracted from each column (0 for constant columns).
        scale: ``(k,)`` divides each column (1 for constant columns).
        matrix: ``(k, k)`` ``T`` with ``M* = M T``.
    """

    shift: np.ndarray
    scale: np.ndarray
    matrix: np.ndarray


def constant_column(M: np.ndarray) -> int | None:
    """Index of the first non-zero constant column of ``M (n, k)``, else ``None``."""
    if M.shape[0] == 0:
        return None
    for j in range(M.shape[1]):  # loop over a few columns
        if M[0, j] != 0 and np.all(M[:, j] == M[0, j]):
            return j
    return None


def column_map(M: np.ndarray, center: bool) -> ColumnMap:
    """Centre (if ``center`` and ``M`` has a constant column) and scale the other columns."""
    k = M.shape[1]
    const = constant_column(M) if center else None
    shift, scale, T = np.zeros(k), np.ones(k), np.eye(k)
    for j in range(k):  # loop over a few columns
        col = M[:, j]
        if M.shape[0] == 0 or np.all(col == col[0]):
            continue
        mean = float(np.mean(col)) if const is not None else 0.0
        rms = float(np.sqrt(np.mean((col - mean) ** 2)))
        if not (np.isfinite(rms) and rms > 0):
            continue
        shift[j], scale[j] = mean, rms
        T[j, j] = 1.0 / rms
        if const is not None:
            T[const, j] = -mean / (rms * M[0, const])
    return ColumnMap(shift, scale, T)


class Standardized(NamedTuple):
    """A standardized copy of a model's data and the maps back (see module docstring).

    Attributes:
        data: cross-products of ``(y*, X*, Z*)``, padded like the model's.
        y_center, y_scale: ``μ_y`` and ``s_y``.
        x_map, z_map: :class:`ColumnMap` of ``X`` and of the ``exog_re`` columns.
        const: index ``c`` of ``X``'s constant column used to centre ``y``, or ``None``.
        const_value: its value ``k``.
    """

    data: GroupedData
    y_center: float
    y_scale: float
    x_map: ColumnMap
    z_map: ColumnMap
    const: int | None
    const_value: float


def standardize(model, center_re: bool = True) -> Standardized:
    """Standardized data for ``model`` (a :class:`~mixedjax.MixedLM`).

    ``center_re=False`` only scales the ``exog_re`` columns (``B`` diagonal), which keeps
    each entry of ``θ`` in correspondence with the original one (needed for ``free`` masks).
    """
    X = model.exog
    const = constant_column(X)
    x_map = column_map(X, center=True)
    q = model.k_re
    z_map = column_map(model.exog_z[:, :q], center=center_re)
    X_std, x_map = _orthonormalize(X, x_map)
    Z_std = model.exog_z.copy()
    Z_std[:, :q] = (Z_std[:, :q] - z_map.shift) / z_map.scale
    rows = model.rows  # prior weights and offset: standardize y - o, then scale rows by √w
    y_center, y_scale = response_location_scale((model.endog - rows.offset)[:, None], const)
    y_std = rows.working_response(model.endog - y_center[0]) / y_scale[0]
    X_std, Z_std = rows.working_design(X_std), rows.working_design(Z_std)
    data = group_crossprods(y_std, X_std, Z_std, model.group_codes, model.n_groups)
    data = pad_groups(data, model.data.ZtZ.shape[0])
    const_value = float(X[0, const]) if const is not None else 1.0
    return Standardized(
        data, float(y_center[0]), float(y_scale[0]), x_map, z_map, const, const_value
    )


def standard_design(std: Standardized, model) -> tuple[np.ndarray, np.ndarray]:
    """``(X* = W^{1/2} X A (n, p), Z* (n, r))``: ``model``'s working design through ``std``'s
    maps (the design part of :func:`standardize`, shared by every response on that
    design)."""
    Z_std = model.exog_z.copy()
    q = model.k_re
    Z_std[:, :q] = model.exog_z[:, :q] @ std.z_map.matrix
    rows = model.rows  # the working rows √w X A, √w Z B (mixedjax.design.weights)
    return rows.working_design(model.exog @ std.x_map.matrix), rows.working_design(Z_std)


def response_location_scale(Y: np.ndarray, const: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(μ (k,), s (k,))`` of each column of ``Y (n, k)``: the mean (0 without a constant
    column in ``X``) and the root mean square about it (``(0, 1)`` for a degenerate column)."""
    center = Y.mean(axis=0) if const is not None else np.zeros(Y.shape[1])
    scale = np.sqrt(np.mean((Y - center) ** 2, axis=0))
    bad = ~(np.isfinite(scale) & (scale > 0))
    return np.where(bad, 0.0, center), np.where(bad, 1.0, scale)


def _orthonormalize(X: np.ndarray, x_map: ColumnMap) -> tuple[np.ndarray, ColumnMap]:
    """``X* = X A`` with orthogonal columns of unit root mean square.

    After centring and scaling, a QR factorisation ``X_c = QR`` gives ``X* = √n Q`` and
    ``A = T R⁻¹ √n``: near-collinear covariates then cost nothing in the likelihood (whose
    ML value does not depend on how ``X`` spans its space); their ill-conditioning is left
    to ``β = A β*``, where it belongs.
    """
    X_c = (X - x_map.shift) / x_map.scale
    n, p = X_c.shape
    if p == 0 or n < p:
        return X_c, x_map
    Q, R = np.linalg.qr(X_c)
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)
    Q, R = Q * signs, R * signs[:, None]
    root_n = np.sqrt(n)
    A = x_map.matrix @ np.linalg.solve(R, np.eye(p)) * root_n
    return Q * root_n, x_map._replace(matrix=A)


def _re_matrix(std: Standardized, structure: CovStructure) -> np.ndarray:
    """``blockdiag(B, I) (r, r)`` acting on one group's random effects."""
    r = structure.n_random
    K = np.eye(r)
    q = structure.k_re
    K[:q, :q] = std.z_map.matrix
    return K


def lower_factor(Lam: np.ndarray) -> np.ndarray:
    """Lower-triangular ``L`` with non-negative diagonal and ``L L' = Λ Λ'`` (``(q, q)``).

    From the QR factorisation ``Λ' = Q R`` (``L = R'``), which never squares ``Λ``: a column
    of ``L`` tiny next to the others (a covariate scaled by 1e8, or a correlation of
    ``1 - 1e-12``) keeps its relative accuracy, where a Cholesky factorisation of ``ΛΛ'``
    would round it to zero. A diagonal entry below ``1e-13`` times the norm of its column of
    ``Λ'`` is rank deficiency up to rounding and set to exactly zero.
    """
    q = Lam.shape[0]
    if q == 0:
        return Lam.copy()
    M = np.asarray(Lam, dtype=float).T
    R = np.linalg.qr(M, mode="r")
    signs = np.where(np.diag(R) < 0, -1.0, 1.0)
    L = (R * signs[:, None]).T
    col_norms = np.sqrt(np.einsum("ij,ij->j", M, M))
    L[np.diag_indices(q)] = np.where(np.diag(L) <= 1e-13 * col_norms, 0.0, np.diag(L))
    return L


def _map_theta(theta, B: np.ndarray, structure: CovStructure) -> np.ndarray:
    q = structure.k_re
    rows, cols = lower_indices_colwise(q)
    theta = np.asarray(theta, dtype=float)
    L = np.zeros((q, q))
    L[rows, cols] = theta[: structure.k_re2]
    L_new = lower_factor(B @ L)
    return np.concatenate([L_new[rows, cols], np.abs(theta[structure.k_re2 :])])


def lower_factors(Lams: np.ndarray) -> np.ndarray:
    """:func:`lower_factor` of a stack ``(k, q, q)`` (one stacked QR factorisation)."""
    k, q, _ = Lams.shape
    if q == 0:
        return Lams.copy()
    M = np.swapaxes(Lams, -1, -2)
    R = np.linalg.qr(M, mode="r")
    diag = np.diagonal(R, axis1=-2, axis2=-1)
    signs = np.where(diag < 0, -1.0, 1.0)
    L = np.swapaxes(R * signs[:, :, None], -1, -2)
    col_norms = np.sqrt(np.einsum("kij,kij->kj", M, M))
    d = np.diagonal(L, axis1=-2, axis2=-1)
    idx = np.arange(q)
    L[:, idx, idx] = np.where(d <= 1e-13 * col_norms, 0.0, d)
    return L


def thetas_to_original(B: np.ndarray, thetas_std: np.ndarray, structure: CovStructure):
    """:func:`theta_to_original` for a stack ``(k, n_theta)`` of ``θ*`` with ``B (q, q)``
    shared or ``(k, q, q)`` per member."""
    q = structure.k_re
    rows, cols = lower_indices_colwise(q)
    thetas_std = np.asarray(thetas_std, dtype=float)
    L = np.zeros((thetas_std.shape[0], q, q))
    L[:, rows, cols] = thetas_std[:, : structure.k_re2]
    B = np.broadcast_to(B, (thetas_std.shape[0], q, q))
    L_new = lower_factors(np.einsum("kij,kjl->kil", B, L))
    return np.concatenate([L_new[:, rows, cols], np.abs(thetas_std[:, structure.k_re2 :])], axis=1)


def theta_to_original(std: Standardized, theta_std, structure: CovStructure) -> np.ndarray:
    """``θ`` of the original data (lme4's) from the standardized fit's ``θ*``: ``Λ = B Λ*``."""
    return _map_theta(theta_std, std.z_map.matrix, structure)


def theta_to_standard(std: Standardized, theta, structure: CovStructure) -> np.ndarray:
    """``θ*`` of the standardized data from ``θ`` of the original data: ``Λ* = B⁻¹ Λ``."""
    return _map_theta(theta, np.linalg.inv(std.z_map.matrix), structure)


def objective_to_original(std: Standardized, objective: float, n_obs: float, reml: bool):
    """``-2ℓ`` of the original data from that of the standardized data."""
    p = std.x_map.scale.size
    dof = n_obs - p if reml else n_obs
    value = objective + 2.0 * dof * np.log(std.y_scale)
    if reml:
        value = value - 2.0 * float(np.linalg.slogdet(std.x_map.matrix)[1])
    return float(value)


def estimates_to_original(std: Standardized, est: Estimates, structure: CovStructure, reml: bool):
    """Map :class:`~mixedjax.fit.estimation.Estimates` of the standardized fit back."""
    s = std.y_scale
    A = std.x_map.matrix
    beta = s * A @ np.asarray(est.beta)
    if std.const is not None:
        beta[std.const] += std.y_center / std.const_value
    K = _re_matrix(std, structure)
    blups = s * np.einsum("ij,gj->gi", K, np.asarray(est.blups))
    cond_cov = s**2 * np.einsum("ij,gjk,lk->gil", K, np.asarray(est.cond_cov), K)
    return Estimates(
        beta=beta,
        scale=s**2 * np.asarray(est.scale),
        cov_beta=s**2 * A @ np.asarray(est.cov_beta) @ A.T,
        blups=blups,
        cond_cov=cond_cov,
        objective=objective_to_original(std, float(est.objective), float(std.data.n_obs), reml),
    )


def variance_parameter_cov(model, phi: np.ndarray, reml: bool) -> np.ndarray:
    """Covariance of the data-scale variance parameters ``φ = (tril Ψ, τ, σ²)``.

    The observed information is computed on the standardized data, where it is well
    conditioned, and mapped back: ``φ = J φ*`` is linear (``Ψ = s_y² BΨ*B'``, ``τ = s_y²τ*``,
    ``σ² = s_y²σ²*``) and the objectives differ by a constant, so
    ``cov φ̂ = J cov(φ̂*) J'``.
    """
    import jax.numpy as jnp

    from mixedjax.engines import information as inference

    cache = model.__dict__.get("_standardized_cache") or {}
    std = cache.get(True) or cache.get(False) or model._standardized(True)
    J = _phi_map(std, model.structure)
    phi_std = np.linalg.solve(J, np.asarray(phi, dtype=float))
    info = inference.variance_information(
        jnp.asarray(phi_std), std.data, structure=model.structure, reml=reml
    )
    return variance_parameter_cov_from(std, model, np.asarray(info))


def variance_parameter_cov_from(std: Standardized, model, information_std: np.ndarray):
    """:func:`variance_parameter_cov` from the observed information of ``φ*`` on the
    standardized data ``std`` (e.g. the one the fit's program computed at its optimum)."""
    from mixedjax.engines.information import invert_information

    J = _phi_map(std, model.structure)
    return J @ invert_information(np.asarray(information_std)) @ J.T


def _phi_map(std: Standardized, structure: CovStructure) -> np.ndarray:
    """Matrix ``J`` of the linear map ``φ* → φ`` (row-major ``tril Ψ``, then ``τ``, ``σ²``)."""
    q = structure.k_re
    rows, cols = np.tril_indices(q)
    m = rows.size + structure.k_vc + 1
    B = std.z_map.matrix
    J = np.zeros((m, m))
    for k in range(rows.size):  # a few parameters
        E = np.zeros((q, q))
        E[rows[k], cols[k]] = E[cols[k], rows[k]] = 1.0
        J[: rows.size, k] = (B @ E @ B.T)[rows, cols]
    J[rows.size :, rows.size :] = np.eye(m - rows.size)
    return std.y_scale**2 * J
