"""Denominator degrees of freedom for fixed-effect tests: Satterthwaite and Kenward-Roger.

Both methods need only a few pure functions of the variance parameters, all built from the
engine's GLS system (:mod:`mixedjax.engines.gls`), so the one-factor and the crossed engine share
this module: ``structure`` (a ``CovStructure`` or a ``CrossedStructure``) selects the engine.

**Satterthwaite** (lmerTest). With ``ϑ = (θ, σ)`` (lme4's relative factor and the residual
SD), ``C(ϑ) = σ² (X'V₁(θ)⁻¹X)⁻¹`` the covariance of ``β̂`` and ``d(ϑ)`` the ML or REML
deviance with β profiled out (σ not profiled),

.. math::
    A = 2 \\, [∇^2 d(\\hat ϑ)]^{+}, \\qquad
    ν(l) = \\frac{2 (l' C l)^2}{g' A g}, \\quad g_k = l' \\frac{∂C}{∂ϑ_k} l,

where ``+`` keeps the positive eigenvalues only (as lmerTest). Both ``∇²d`` and ``∂C/∂ϑ``
come from autodiff. A q-row contrast ``L`` is rotated to the eigenvectors of ``L C L'`` and
the per-row ``ν_m`` combined as ``2E/(E - q)``, ``E = Σ ν_m/(ν_m - 2)``.

**Kenward-Roger** (pbkrtest). With ``γ`` the covariance parameters on the data scale (entries
of ``Ψ``, variance components, σ²) so that ``Σ(γ) = Σ_r γ_r G_r`` is linear, the quantities
pbkrtest forms from the ``G_r`` are derivatives:

.. math::
    P_r = ∂(X'Σ^{-1}X)/∂γ_r, \\quad Q_{rs} + Q_{sr} = ∂^2(X'Σ^{-1}X)/∂γ_r∂γ_s, \\quad
    \\operatorname{tr}(Σ^{-1}G_rΣ^{-1}G_s) = -∂^2 \\log|Σ| / ∂γ_r∂γ_s,

so no ``n × n`` matrix is ever formed: the per-group work stays batched inside
:func:`~mixedjax.engines.onefactor.gls_system_cov`. Then (``Φ = (X'Σ⁻¹X)⁻¹``)

.. math::
    I_{rs} = \\operatorname{tr}(Σ^{-1}G_rΣ^{-1}G_s) - 2\\operatorname{tr}(Φ Q_{rs})
             + \\operatorname{tr}(Φ P_r Φ P_s), \\quad W = 2 I^{-1}, \\quad
    Φ_A = Φ + 2 Φ \\Big[\\sum_{rs} W_{rs}(Q_{rs} - P_r Φ P_s)\\Big] Φ,

and the df of a contrast ``L`` follow pbkrtest's ``Lb_ddf`` (:func:`kenward_roger_df`).
"""

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.covariance import CovStructure
from mixedjax.design.groups import GroupedData
from mixedjax.design.sizeclass import pad_theta
from mixedjax.engines.gls import gls_from_theta, gls_from_user, is_crossed
from mixedjax.engines.onefactor import objective_given_scale, real_fixed_effects
from mixedjax.fit.program import padded_problem


# ----------------------------------------------------------------- engine functions
def fixed_cov_varpar(varpar: jnp.ndarray, data: GroupedData, structure: CovStructure):
    """``C(ϑ) = σ² (X'V₁(θ)⁻¹X)⁻¹`` with ``ϑ = (θ, σ)``; ``(p, p)``."""
    theta, sigma = varpar[:-1], varpar[-1]
    system = gls_from_theta(theta, data, structure).system
    p = system.shape[0] - 1  # padded problems: the padding block is I (cut off later)
    XVX = system[:p, :p]
    return sigma**2 * smallmat.cho_solve(smallmat.cholesky(XVX), jnp.eye(p, dtype=XVX.dtype))


def deviance_varpar(varpar, data: GroupedData, structure: CovStructure, reml: bool):
    """lmerTest's ``devfun_vp``: ``-2 log L`` at ``ϑ = (θ, σ)``, β profiled out."""
    theta, sigma = varpar[:-1], varpar[-1]
    gls = gls_from_theta(theta, data, structure)
    return objective_given_scale(gls, sigma**2, data.n_obs, reml, real_fixed_effects(structure))


def xvx_user(gamma: jnp.ndarray, data: GroupedData, structure: CovStructure):
    """``X'Σ(γ)⁻¹X`` for data-scale ``γ`` (:func:`~mixedjax.engines.gls.gls_from_user`);
    ``(p, p)``."""
    gls, scale = gls_from_user(gamma, data, structure)
    p = gls.system.shape[0] - 1
    return gls.system[:p, :p] / scale


def logdet_user(gamma: jnp.ndarray, data: GroupedData, structure: CovStructure):
    """``log|Σ(γ)| = log|V₁| + n log σ²``."""
    gls, scale = gls_from_user(gamma, data, structure)
    return gls.logdet_V + data.n_obs * jnp.log(scale)


# ----------------------------------------------------------------- Satterthwaite
class SatterthwaiteInputs(NamedTuple):
    """What Satterthwaite's df need, at the estimate.

    Attributes:
        vcov_beta: ``(p, p)`` ``C``.
        jac_vcov: ``(p, p, k)`` ``∂C/∂ϑ_k``.
        vcov_varpar: ``(k, k)`` ``A = 2 (∇²d)⁺``.
        hessian: ``(k, k)`` ``∇²d``.
    """

    vcov_beta: np.ndarray
    jac_vcov: np.ndarray
    vcov_varpar: np.ndarray
    hessian: np.ndarray


@partial(jax.jit, static_argnames=("structure", "reml"))
def _satterthwaite_derivatives(varpar, data, *, structure, reml):
    C = fixed_cov_varpar(varpar, data, structure)
    J = jax.jacfwd(fixed_cov_varpar)(varpar, data, structure)
    H = jax.hessian(deviance_varpar)(varpar, data, structure, reml)
    return C, J, H


@jax.jit
def _satterthwaite_derivatives_padded(varpar, data, fmap, reml):
    """:func:`_satterthwaite_derivatives` on a size class's padded problem
    (:mod:`mixedjax.design.sizeclass`): one program for every model of the class."""
    C = fixed_cov_varpar(varpar, data, fmap)
    J = jax.jacfwd(fixed_cov_varpar)(varpar, data, fmap)
    H = jax.hessian(deviance_varpar)(varpar, data, fmap, reml)
    return C, J, H


def _derivatives(theta, sigma, data, structure, reml):
    """``(C, ∂C/∂ϑ, ∇²d)`` at ``ϑ = (θ, σ)``: one-factor models through their size class."""
    if is_crossed(structure):
        varpar = jnp.asarray(np.append(np.asarray(theta, float), sigma))
        return _satterthwaite_derivatives(varpar, data, structure=structure, reml=reml)
    p, n = data.XtX.shape[0], structure.n_theta
    size, padded, fmap = padded_problem(data, structure, p, None)
    varpar = np.append(pad_theta(np.asarray(theta, float), size), sigma)
    C, J, H = jax.device_get(
        _satterthwaite_derivatives_padded(varpar, padded, fmap, 1.0 if reml else 0.0)
    )
    keep = np.r_[np.arange(n), H.shape[0] - 1]  # θ, then σ (padding cut off)
    return C[:p, :p], J[:p, :p][:, :, keep], H[np.ix_(keep, keep)]


def positive_part_inverse(H: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Inverse of a symmetric matrix over its eigenvalues ``> tol`` (lmerTest's rule)."""
    H = 0.5 * (H + H.T)
    eigval, eigvec = np.linalg.eigh(H)
    pos = eigval > tol
    return (eigvec[:, pos] / eigval[pos]) @ eigvec[:, pos].T


def satterthwaite_inputs(
    theta: np.ndarray, sigma: float, data: GroupedData, structure: CovStructure, reml: bool
) -> SatterthwaiteInputs:
    """Autodiff derivatives at ``ϑ̂ = (θ̂, σ̂)`` (either engine)."""
    C, J, H = _derivatives(theta, sigma, data, structure, reml)
    H = np.asarray(H)
    eigval = np.linalg.eigvalsh(0.5 * (H + H.T))
    if np.any(eigval < -1e-8):
        warnings.warn(
            "Satterthwaite df: the Hessian of the deviance at the estimate has negative "
            f"eigenvalue(s) {eigval[eigval < -1e-8]}: the fit is not at a minimum (did it "
            "converge?). Only the positive directions are used, as lmerTest does.",
            UserWarning,
            stacklevel=3,
        )
    return SatterthwaiteInputs(np.asarray(C), np.asarray(J), 2.0 * positive_part_inverse(H), H)


def satterthwaite_df_1d(L: np.ndarray, inputs: SatterthwaiteInputs) -> np.ndarray:
    """Satterthwaite df for each row of ``L (m, p)`` (one-dimensional contrasts); ``(m,)``."""
    L = np.atleast_2d(L)
    var = np.einsum("mi,ij,mj->m", L, inputs.vcov_beta, L)
    grad = np.einsum("mi,ijk,mj->mk", L, inputs.jac_vcov, L)
    denom = np.einsum("mk,kl,ml->m", grad, inputs.vcov_varpar, grad)
    with np.errstate(divide="ignore"):
        return np.where(denom > 0, 2.0 * var**2 / np.where(denom > 0, denom, 1.0), np.inf)


def combine_df(nu: np.ndarray, tol: float = 1e-8) -> float:
    """lmerTest's ``get_Fstat_ddf``: one denominator df from per-direction ``ν_m``."""
    nu = np.asarray(nu, dtype=float)
    if nu.size == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < tol):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = np.sum(nu / (nu - 2.0))
    return float(2.0 * E / (E - nu.size))


class FTestParts(NamedTuple):
    """An F statistic with its degrees of freedom (before the p-value).

    Attributes:
        fvalue: ``()`` F statistic.
        df_num: ``()`` numerator df (rank of the contrast).
        df_denom: ``()`` denominator df.
    """

    fvalue: float
    df_num: int
    df_denom: float


def satterthwaite_f(
    L: np.ndarray, rhs: np.ndarray, beta: np.ndarray, inputs: SatterthwaiteInputs
) -> FTestParts:
    """lmerTest's multi-row F test (``contestMD``): rotate ``L`` to the eigenvectors of
    ``L C L'``, keep the directions with positive variance and combine their df."""
    VL = L @ inputs.vcov_beta @ L.T
    d, P = np.linalg.eigh(0.5 * (VL + VL.T))
    order = np.argsort(d)[::-1]
    d, P = d[order], P[:, order]
    pos = d > max(np.sqrt(np.finfo(float).eps) * d[0], 0.0)
    q = int(np.sum(pos))
    if q == 0:
        raise ValueError("r_matrix: the contrast has zero variance (all rows are null)")
    PtL = P[:, pos].T @ L
    t2 = (P[:, pos].T @ (L @ beta - rhs)) ** 2 / d[pos]
    nu = satterthwaite_df_1d(PtL, inputs)
    return FTestParts(float(np.sum(t2) / q), q, combine_df(nu))


# ----------------------------------------------------------------- Kenward-Roger
class KenwardRogerInputs(NamedTuple):
    """pbkrtest's ``vcovAdj`` output.

    Attributes:
        vcov_beta: ``(p, p)`` ``Φ = (X'Σ⁻¹X)⁻¹``.
        vcov_adjusted: ``(p, p)`` ``Φ_A``.
        P: ``(k, p, p)`` ``P_r``.
        W: ``(k, k)`` ``2 I⁻¹``.
    """

    vcov_beta: np.ndarray
    vcov_adjusted: np.ndarray
    P: np.ndarray
    W: np.ndarray


@partial(jax.jit, static_argnames=("structure",))
def _kr_derivatives(gamma, data, *, structure):
    XSX = xvx_user(gamma, data, structure)
    P = jax.jacfwd(xvx_user)(gamma, data, structure)  # (p, p, k)
    HX = jax.hessian(xvx_user)(gamma, data, structure)  # (p, p, k, k)
    K = -jax.hessian(logdet_user)(gamma, data, structure)  # (k, k)
    return XSX, P, HX, K


def kenward_roger_from_derivatives(XSX, P, HX, K) -> KenwardRogerInputs:
    """pbkrtest's ``vcovAdj`` from the derivatives of ``X'Σ⁻¹X`` and ``log|Σ|`` (any engine).

    Args:
        XSX: ``(p, p)`` ``X'Σ⁻¹X``.
        P: ``(p, p, k)`` its first derivatives.
        HX: ``(p, p, k, k)`` its second derivatives (``Q_rs + Q_sr``).
        K: ``(k, k)`` ``tr(Σ⁻¹G_rΣ⁻¹G_s)``.
    """
    XSX, P, HX, K = (np.asarray(a, dtype=float) for a in (XSX, P, HX, K))
    Phi = np.linalg.inv(XSX)
    Phi = 0.5 * (Phi + Phi.T)
    P = np.moveaxis(P, -1, 0)  # (k, p, p)
    HX = np.moveaxis(HX, (2, 3), (0, 1))  # (k, k, p, p)
    PPhi = P @ Phi  # (k, p, p)
    IE2 = (
        K
        - np.einsum("ij,rsji->rs", Phi, HX)
        + np.einsum("rij,sji->rs", PPhi, PPhi)  # tr(Φ P_r Φ P_s)
    )
    IE2 = 0.5 * (IE2 + IE2.T)
    if np.min(np.abs(np.linalg.eigvalsh(IE2))) > 1e-10:
        W = 2.0 * np.linalg.inv(IE2)
    else:
        W = 2.0 * np.linalg.pinv(IE2)
    W = 0.5 * (W + W.T)
    PPhiP = np.einsum("rij,sjk->rsik", PPhi, P)  # P_r Φ P_s
    U = np.einsum("rs,rsij->ij", W, 0.5 * HX - PPhiP)
    U = 0.5 * (U + U.T)
    Phi_A = Phi + 2.0 * Phi @ U @ Phi
    return KenwardRogerInputs(Phi, 0.5 * (Phi_A + Phi_A.T), P, W)


def kenward_roger_inputs(
    gamma: np.ndarray, data: GroupedData, structure: CovStructure
) -> KenwardRogerInputs:
    """:func:`kenward_roger_from_derivatives` at data-scale ``γ`` (either engine)."""
    out = _kr_derivatives(jnp.asarray(gamma, dtype=jnp.float64), data, structure=structure)
    return kenward_roger_from_derivatives(*out)


class KRStatistics(NamedTuple):
    """pbkrtest's ``.KR_adjust`` for one contrast.

    Attributes:
        df: denominator df.
        F_scaling: factor applied to the Wald F built with ``Φ_A``.
        rank: rank ``q`` of ``L``.
    """

    df: float
    F_scaling: float
    rank: int


def kenward_roger_df(L: np.ndarray, kr: KenwardRogerInputs) -> KRStatistics:
    """pbkrtest's ``Lb_ddf`` / ``.KR_adjust``: df and F scaling for contrast ``L (q, p)``."""
    L = np.atleast_2d(L)
    V0 = kr.vcov_beta
    Theta = L.T @ np.linalg.solve(L @ V0 @ L.T, L)
    u = np.einsum("ij,rjk,kl->ril", Theta @ V0, kr.P, V0)  # (k, p, p)
    tr = np.einsum("rii->r", u)
    A1 = float(tr @ kr.W @ tr)
    A2 = float(np.einsum("rs,rij,sji->", kr.W, u, u))
    q = int(np.linalg.matrix_rank(L))
    B = (A1 + 6.0 * A2) / (2.0 * q)
    g = ((q + 1) * A1 - (q + 4) * A2) / ((q + 2) * A2)
    denom = 3 * q + 2 * (1 - g)
    c1, c2, c3 = g / denom, (q - g) / denom, (q + 2 - g) / denom
    V0_ = 1 + c1 * B
    V0_ = 0.0 if abs(V0_) < 1e-10 else V0_
    V1 = 1 - c2 * B
    V2 = 1 - c3 * B
    num = 1 - A2 / q
    ratio = 1.0 if (abs(num) < 1e-14 and abs(V1) < 1e-14) else num / V1
    rho = ratio**2 * V0_ / V2 / q
    df = 4 + (q + 2) / (q * rho - 1)
    F_scaling = 1.0 if abs(df - 2) < 0.01 else df * (1 - A2 / q) / (df - 2)
    return KRStatistics(float(df), float(F_scaling), q)


def kenward_roger_f(
    L: np.ndarray, rhs: np.ndarray, beta: np.ndarray, kr: KenwardRogerInputs
) -> FTestParts:
    """pbkrtest's ``KRmodcomp`` F (as lmerTest reports it): scaled Wald F with ``Φ_A``."""
    stats = kenward_roger_df(L, kr)
    diff = L @ beta - rhs
    wald = float(diff @ np.linalg.solve(L @ kr.vcov_adjusted @ L.T, diff))
    return FTestParts(stats.F_scaling * wald / stats.rank, stats.rank, stats.df)
