"""Pure likelihood kernels: per-group GLS terms and the profiled ML/REML deviance.

With ``V₁ = I + Z G₁ Z'`` (profile scale, see :mod:`mixedjax.core.covariance`) and ``G₁ = Λ Λ'``,
the Woodbury identity reduces every quantity to the per-group cross-products of
:class:`~mixedjax.design.groups.GroupedData`. For each group (vmapped over the batch axis)

.. math::
    M_i = Λ' Z_i'Z_i Λ + I = L_i L_i', \\qquad
    \\log|V_{1,i}| = 2 \\sum \\log \\operatorname{diag} L_i, \\qquad
    U_i = L_i^{-1} Λ' Z_i'[X_i \\; y_i],

and the GLS system over all groups is

.. math::
    A = [X\\;y]' V_1^{-1} [X\\;y] = [X\\;y]'[X\\;y] - \\sum_i U_i' U_i
      = \\begin{pmatrix} X'V_1^{-1}X & X'V_1^{-1}y \\\\ \\cdot & y'V_1^{-1}y \\end{pmatrix}.

Its Cholesky factor ``R`` gives ``β̂`` (a triangular solve), ``log|X'V₁⁻¹X| = 2 Σ log R_jj``
(``j < p``) and the penalised residual sum of squares ``pwrss = R_pp²``. With ``n``
observations and ``p`` fixed effects the profiled objectives (``-2 log L``, lme4's
``deviance`` and ``REMLcrit``) are

.. math::
    d_{ML}(θ) = \\log|V_1| + n \\left(1 + \\log \\frac{2π\\,\\mathrm{pwrss}}{n}\\right), \\qquad
    d_{REML}(θ) = \\log|V_1| + \\log|X'V_1^{-1}X|
                  + (n-p)\\left(1 + \\log \\frac{2π\\,\\mathrm{pwrss}}{n-p}\\right).

Each evaluation costs ``O(n_groups (r^3 + r^2 p) + p^3)``. Everything here is a pure function
of arrays, safe under ``jit``, ``vmap`` and ``grad``. ``structure`` is either a static
:class:`~mixedjax.core.covariance.CovStructure` or a
:class:`~mixedjax.design.sizeclass.FactorMap` (the pattern as data, for programs shared by a
size class); ``reml`` is a static bool or, with a ``FactorMap``, a traced 0/1 weight.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.core.compilation import QUICK_COMPILE_GROUPS
from mixedjax.core.covariance import CovStructure, theta_to_factor
from mixedjax.design.groups import GroupedData
from mixedjax.design.sizeclass import FactorMap

LOG_2PI = 1.8378770664093453
#: Largest ``r`` evaluated entry by entry (:func:`_gls_system_unrolled`); the unrolled graph
#: grows like ``r^3`` and its compile time (Hessians included) faster, so larger ``r`` use
#: the batched path.
GROUP_LAST_MAX = 3


class GLSSystem(NamedTuple):
    """Profile-scale GLS quantities at one value of the covariance parameters.

    Attributes:
        logdet_V: ``()`` ``log|V₁|`` summed over groups.
        system: ``(p+1, p+1)`` ``A = [X y]' V₁⁻¹ [X y]``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> gls = gls_system_theta(theta, m.data, m.structure)
        >>> gls.system.shape, round(float(gls.logdet_V), 6)
        ((2, 2), 9.154076)
    """

    logdet_V: jnp.ndarray
    system: jnp.ndarray


class GroupFactors(NamedTuple):
    """Per-group factorisation at ``θ`` (kept to compute BLUPs).

    Attributes:
        factor: ``(r, r)`` ``Λ``.
        chol: ``(n_groups, r, r)`` ``L_i`` with ``L_i L_i' = Λ'Z_i'Z_iΛ + I``.
        rhs: ``(n_groups, r, p+1)`` ``U_i = L_i⁻¹ Λ' Z_i' [X_i y_i]``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> f = group_factors(theta, m.data, m.structure)   # 6 batches padded to 8
        >>> f.factor.shape, f.chol.shape, f.rhs.shape
        ((1, 1), (8, 1, 1), (8, 1, 2))
    """

    factor: jnp.ndarray
    chol: jnp.ndarray
    rhs: jnp.ndarray


def _crossprod_block(data: GroupedData) -> jnp.ndarray:
    """``[X y]'[X y]``: ``(p+1, p+1)``."""
    top = jnp.concatenate([data.XtX, data.Xty[:, None]], axis=1)
    bottom = jnp.concatenate([data.Xty, data.yty[None]])[None, :]
    return jnp.concatenate([top, bottom], axis=0)


def relative_factor(theta: jnp.ndarray, structure: CovStructure | FactorMap) -> jnp.ndarray:
    """``Λ (r, r)`` at ``θ`` for a static structure or a :class:`FactorMap`.

    Example:
        >>> import jax.numpy as jnp
        >>> from mixedjax.design.sizeclass import factor_map
        >>> fmap = factor_map(CovStructure(1), 2, n_fe=1)
        >>> relative_factor(jnp.array([0.5, 0.0, 0.0]), fmap).tolist()
        [[0.5, 0.0], [0.0, 0.0]]
    """
    if isinstance(structure, FactorMap):
        index = jnp.asarray(structure.index)
        return jnp.where(index >= 0, theta[jnp.maximum(index, 0)], 0.0)
    return theta_to_factor(theta, structure)


def real_fixed_effects(structure: CovStructure | FactorMap):
    """``p`` of a padded problem (a ``FactorMap`` carries it), ``None`` otherwise (the
    GLS system's size)."""
    return structure.n_fe if isinstance(structure, FactorMap) else None


def group_factors(theta: jnp.ndarray, data: GroupedData, structure: CovStructure) -> GroupFactors:
    """Factor every group's ``M_i`` at ``θ`` (the hot path).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> group_factors(theta, m.data, m.structure).chol.shape
        (8, 1, 1)
    """
    Lam = relative_factor(theta, structure)
    r = Lam.shape[0]
    LamT_ZtZ_Lam = jnp.einsum("ji,gjk,kl->gil", Lam, data.ZtZ, Lam)
    M = LamT_ZtZ_Lam + jnp.eye(r, dtype=Lam.dtype)
    chol = smallmat.cholesky(M)
    Zt_Xy = jnp.concatenate([data.ZtX, data.Zty[..., None]], axis=-1)
    rhs = smallmat.solve_lower(chol, jnp.einsum("ji,gjm->gim", Lam, Zt_Xy))
    return GroupFactors(Lam, chol, rhs)


def gls_system_theta(theta: jnp.ndarray, data: GroupedData, structure: CovStructure) -> GLSSystem:
    """:class:`GLSSystem` at ``θ`` via per-group Cholesky factors.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> round(float(gls_system_theta(theta, m.data, m.structure).logdet_V), 6)
        9.154076
    """
    # float32 keeps the batched path: summed entry by entry it lost enough digits to stall.
    # So do small size-class programs: they run in microseconds either way, and the batched
    # graph compiles a third faster (measured: 10.4 s instead of 15.4 s for sleepstudy's
    # whole fit program on 2 loaded cores).
    small_class = isinstance(structure, FactorMap) and data.ZtZ.shape[0] <= QUICK_COMPILE_GROUPS
    if structure.n_random <= GROUP_LAST_MAX and theta.dtype == jnp.float64 and not small_class:
        return _gls_system_unrolled(theta, data, structure)
    f = group_factors(theta, data, structure)
    logdet = 2.0 * jnp.sum(smallmat.log_diag_sum(f.chol))
    system = _crossprod_block(data) - jnp.einsum("gri,grj->ij", f.rhs, f.rhs)
    return GLSSystem(logdet, system)


def _gls_system_unrolled(theta: jnp.ndarray, data: GroupedData, structure: CovStructure):
    """:func:`gls_system_theta` for small ``r``, unrolled over the matrix entries.

    Every entry of ``M_i``, ``L_i`` and ``U_i`` is a ``(n_groups,)`` vector (group axis
    last), so the whole evaluation is a few dozen fused elementwise loops over the groups
    instead of many tiny ``(r, r)`` matrix products; entries of ``Λ`` that are structurally
    zero (above the diagonal, between blocks) are skipped at trace time. Same numbers as the
    batched path, about five times faster per evaluation and gradient.
    """
    Lam = relative_factor(theta, structure)
    nonzero = factor_pattern(structure)
    r = Lam.shape[0]
    ZtZ = smallmat.entries(data.ZtZ)
    Zt_Xy = smallmat.entries(jnp.concatenate([data.ZtX, data.Zty[..., None]], axis=-1))
    m = len(Zt_Xy[0])

    def lam_t_times(rows, j, c):  # (Λ' rows)[j][c] = Σ_k Λ[k, j] rows[k][c]
        terms = [Lam[k, j] * rows[k][c] for k in range(r) if nonzero[k, j]]
        return sum(terms[1:], terms[0])

    ZtZ_Lam = [
        [lam_t_times([[ZtZ[k][i] for i in range(r)] for k in range(r)], l, j) for l in range(r)]
        for j in range(r)
    ]  # (Λ' Z'Z)[l][j] stored as [j][l]
    M = [
        [
            lam_t_times([[ZtZ_Lam[k][i] for i in range(r)] for k in range(r)], i, l)
            + (1.0 if i == l else 0.0)
            for l in range(r)
        ]
        for i in range(r)
    ]
    chol = smallmat.cholesky_entries(M)
    rhs = smallmat.solve_lower_entries(
        chol, [[lam_t_times(Zt_Xy, i, c) for c in range(m)] for i in range(r)]
    )
    logdet = 2.0 * sum(jnp.sum(jnp.log(chol[i][i])) for i in range(r))
    correction = jnp.stack(
        [
            jnp.stack([sum(jnp.sum(rhs[i][a] * rhs[i][b]) for i in range(r)) for b in range(m)])
            for a in range(m)
        ]
    )
    return GLSSystem(logdet, _crossprod_block(data) - correction)


def factor_pattern(structure: CovStructure | FactorMap) -> np.ndarray:
    """Static ``(r, r)`` boolean pattern of the entries of ``Λ`` that can be non-zero (the
    whole lower triangle for a :class:`FactorMap`, whose pattern is data)."""
    if isinstance(structure, FactorMap):
        return np.tril(np.ones((structure.n_random, structure.n_random), dtype=bool))
    q = structure.k_re
    pattern = np.zeros((structure.n_random, structure.n_random), dtype=bool)
    pattern[:q, :q] = np.tril(np.ones((q, q), dtype=bool))
    pattern[q:, q:] = np.eye(structure.n_random - q, dtype=bool)
    return pattern


def gls_system_cov(
    cov_re: jnp.ndarray, vcomp: jnp.ndarray, data: GroupedData, structure: CovStructure
) -> GLSSystem:
    """:class:`GLSSystem` at profile-scale ``(Ψ₁, τ₁)``, valid for singular ``Ψ₁``.

    Uses ``log|V₁,i| = log|I + G₁ Z_i'Z_i|`` and ``Z_i'V₁,i⁻¹ = (I + Z_i'Z_i G₁)⁻¹ Z_i'``
    with a square root of the data, ``Z_i'Z_i = W_i W_i'`` (never of ``G₁``), so
    derivatives with respect to ``Ψ₁`` exist everywhere. Slower than
    :func:`gls_system_theta`; used for ``loglike(params)`` and for Hessians in the user
    parameterization.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> cov_re, vcomp = theta[None, :] ** 2, jnp.zeros(0)
        >>> round(float(gls_system_cov(cov_re, vcomp, m.data, m.structure).logdet_V), 6)
        9.154076
    """
    blocks = [cov_re] + [
        v * jnp.eye(s, dtype=cov_re.dtype) for v, s in zip(vcomp, structure.vc_sizes, strict=True)
    ]
    return gls_system_relative_cov(jax.scipy.linalg.block_diag(*blocks), data)


def gls_system_relative_cov(G: jnp.ndarray, data: GroupedData) -> GLSSystem:
    """:class:`GLSSystem` at the profile-scale random-effects covariance ``G₁ (r, r)`` (see
    :func:`gls_system_cov`; any pattern, e.g. read off a
    :class:`~mixedjax.design.sizeclass.FactorMap`)."""
    r = G.shape[0]
    # Z_i'Z_i = W_i W_i' (a data constant), so |I + Z_i'Z_i G| = |S_i| with the positive
    # definite S_i = I + W_i' G W_i, and G (I + Z_i'Z_i G)⁻¹ = G - G W_i S_i⁻¹ W_i' G
    # (Woodbury): Cholesky factors only, linear in G, differentiable at singular G.
    W = jax.lax.stop_gradient(smallmat.psd_cholesky_batched(data.ZtZ))
    GW = jnp.einsum("ij,gjk->gik", G, W)
    S = jnp.eye(r, dtype=G.dtype) + jnp.einsum("gji,gjk->gik", W, GW)
    chol = smallmat.cholesky(S)
    Zt_Xy = jnp.concatenate([data.ZtX, data.Zty[..., None]], axis=-1)
    G_c = jnp.einsum("ij,gjm->gim", G, Zt_Xy)
    inner = smallmat.cho_solve(chol, jnp.einsum("gji,gjm->gim", GW, Zt_Xy))
    solved = G_c - jnp.einsum("gij,gjm->gim", GW, inner)
    system = _crossprod_block(data) - jnp.einsum("gri,grj->ij", Zt_Xy, solved)
    logdet = 2.0 * jnp.sum(smallmat.log_diag_sum(chol))
    return GLSSystem(logdet, 0.5 * (system + system.T))


class GLSSolution(NamedTuple):
    """Solution of the GLS system.

    Attributes:
        beta: ``(p,)`` ``β̂`` given the covariance parameters.
        logdet_XVX: ``()`` ``log|X'V₁⁻¹X|``.
        pwrss: ``()`` penalised residual sum of squares ``(y-Xβ̂)'V₁⁻¹(y-Xβ̂)``.
        xvx_chol: ``(p, p)`` upper Cholesky factor ``R_X`` of ``X'V₁⁻¹X``.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> sol = solve_gls(gls_system_theta(theta, m.data, m.structure).system)
        >>> round(float(sol.beta[0]), 4), round(float(sol.pwrss / 29), 2)   # β̂, REML σ̂²
        (1527.5, 2451.25)
    """

    beta: jnp.ndarray
    logdet_XVX: jnp.ndarray
    pwrss: jnp.ndarray
    xvx_chol: jnp.ndarray


def solve_gls(system: jnp.ndarray) -> GLSSolution:
    """Solve ``A`` (see module docstring) by one Cholesky factorisation.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> sol = solve_gls(gls_system_theta(theta, m.data, m.structure).system)
        >>> round(float(sol.beta[0]), 6)
        1527.5
    """
    p = system.shape[0] - 1
    L = smallmat.cholesky(system)  # A = L L', L = R'
    L_X = L[:p, :p]
    beta = smallmat.solve_upper_transposed(L_X, L[p, :p, None])[:, 0]
    return GLSSolution(
        beta=beta,
        logdet_XVX=2.0 * jnp.sum(jnp.log(jnp.diag(L_X))),
        pwrss=L[p, p] ** 2,
        xvx_chol=L_X.T,
    )


def reml_weight_and_dof(reml, n_obs, system: jnp.ndarray, n_fe=None):
    """``(weight of log|X'V⁻¹X|, degrees of freedom)``: ``(None, n)`` for ML, ``(1, n - p)``
    for REML; a traced ``reml`` (0 or 1) gives ``(reml, n - reml p)``. ``p`` is ``n_fe``
    if given (padded systems carry extra identity rows), else the system's size."""
    p = system.shape[0] - 1 if n_fe is None else n_fe
    if isinstance(reml, bool):
        return (1.0, n_obs - p) if reml else (None, n_obs)
    weight = jnp.asarray(reml, dtype=jnp.result_type(n_obs, float))
    return weight, n_obs - weight * p


def profiled_objective(gls: GLSSystem, n_obs: jnp.ndarray, reml: bool, n_fe=None) -> jnp.ndarray:
    """``-2 log L`` with β and σ² profiled out (lme4's deviance / REML criterion).

    ``n_fe`` is the number of real fixed effects when the system is padded (default: its
    size); ``reml`` may be a traced 0/1 weight.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> gls = gls_system_theta(theta, m.data, m.structure)
        >>> round(float(profiled_objective(gls, m.data.n_obs, reml=True)), 6)   # lme4: 319.654277
        319.654277
    """
    sol = solve_gls(gls.system)
    weight, dof = reml_weight_and_dof(reml, n_obs, gls.system, n_fe)
    value = gls.logdet_V + dof * (1.0 + LOG_2PI + jnp.log(sol.pwrss / dof))
    return value + weight * sol.logdet_XVX if weight is not None else value


def profiled_deviance(
    theta: jnp.ndarray, data: GroupedData, structure: CovStructure, reml: bool
) -> jnp.ndarray:
    """Objective minimised by the fit: ``d(θ)`` as in the module docstring.

    A non-finite value (which only arises from a numerically singular system) is mapped to
    ``+inf`` so that line searches back off instead of propagating NaN.

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> round(float(profiled_deviance(theta, m.data, m.structure, reml=True)), 6)
        319.654277
    """
    gls = gls_system_theta(theta, data, structure)
    value = profiled_objective(gls, data.n_obs, reml, real_fixed_effects(structure))
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


def objective_given_beta(
    gls: GLSSystem, beta: jnp.ndarray, n_obs: jnp.ndarray, reml: bool
) -> jnp.ndarray:
    """``-2 log L`` at a given ``β`` with σ² profiled out (statsmodels' ``profile_fe=False``).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> gls = gls_system_theta(theta, m.data, m.structure)
        >>> round(float(objective_given_beta(gls, jnp.array([1527.5]), m.data.n_obs, True)), 6)
        319.654277
    """
    p = beta.shape[0]
    A = gls.system
    quad = A[p, p] - 2.0 * beta @ A[:p, p] + beta @ A[:p, :p] @ beta
    dof = n_obs - p if reml else n_obs
    value = gls.logdet_V + dof * (1.0 + LOG_2PI + jnp.log(quad / dof))
    if reml:
        value = value + solve_gls(A).logdet_XVX
    return value


def objective_given_scale(
    gls: GLSSystem, scale: jnp.ndarray, n_obs: jnp.ndarray, reml: bool, n_fe=None
):
    """``-2 log L`` with β profiled out and σ² = ``scale`` given (for information matrices).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> gls = gls_system_theta(theta, m.data, m.structure)
        >>> round(float(objective_given_scale(gls, 2451.25, m.data.n_obs, True)), 6)
        319.654277
    """
    sol = solve_gls(gls.system)
    weight, dof = reml_weight_and_dof(reml, n_obs, gls.system, n_fe)
    value = gls.logdet_V + dof * (LOG_2PI + jnp.log(scale)) + sol.pwrss / scale
    return value + weight * sol.logdet_XVX if weight is not None else value


def conditional_modes(
    theta: jnp.ndarray, beta: jnp.ndarray, data: GroupedData, structure: CovStructure
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """BLUPs and their profile-scale conditional covariances.

    .. math::
        b_i = Λ M_i^{-1} Λ' Z_i'(y_i - X_i β), \\qquad
        \\operatorname{cov}(b_i \\mid y)/σ^2 = Λ M_i^{-1} Λ'.

    Returns:
        ``(blups (n_groups, r), cond_cov (n_groups, r, r))``; multiply ``cond_cov`` by σ².

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> blups, cond_cov = conditional_modes(theta, jnp.array([1527.5]), m.data, m.structure)
        >>> [round(float(b), 3) for b in blups[:3, 0]]   # lme4's ranef for batches A, B, C
        [-17.607, 0.391, 28.562]
    """
    f = group_factors(theta, data, structure)
    resid_cross = data.Zty - jnp.einsum("grp,p->gr", data.ZtX, beta)
    LamT = jnp.broadcast_to(f.factor.T, f.chol.shape)
    W = smallmat.solve_lower(f.chol, LamT)  # L_i⁻¹ Λ'  (g, r, r)
    cond_cov = jnp.einsum("gki,gkj->gij", W, W)
    blups = jnp.einsum("gij,gj->gi", cond_cov, resid_cross)
    return blups, cond_cov


class Estimates(NamedTuple):
    """Everything the results need at ``θ̂`` (profile scale unless said otherwise).

    Attributes:
        beta: ``(p,)`` fixed effects.
        scale: ``()`` σ².
        cov_beta: ``(p, p)`` ``σ² (X'V⁻¹X)⁻¹`` (lme4's ``vcov``).
        blups: ``(n_groups, r)`` conditional modes of the random effects (data scale).
        cond_cov: ``(n_groups, r, r)`` conditional covariances (data scale).
        objective: ``()`` ``-2 log L`` (REML criterion for REML).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> est = estimates(theta, m.data, m.structure, reml=True)
        >>> round(float(est.scale), 2), est.blups.shape, est.cond_cov.shape
        (2451.25, (8, 1), (8, 1, 1))
    """

    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_beta: jnp.ndarray
    blups: jnp.ndarray
    cond_cov: jnp.ndarray
    objective: jnp.ndarray


class FixedEstimates(NamedTuple):
    """The fixed-effects part of :class:`Estimates` (no ``(n_groups, r)`` arrays).

    Attributes:
        beta: ``(p,)``; scale: ``()`` σ²; cov_beta: ``(p, p)``; objective: ``()`` ``-2 log L``.
    """

    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_beta: jnp.ndarray
    objective: jnp.ndarray


def fixed_estimates(theta: jnp.ndarray, data: GroupedData, structure: CovStructure, reml: bool):
    """β̂, σ², ``σ² (X'V⁻¹X)⁻¹`` and the deviance at ``θ`` from one pass over the groups
    (pure; vmappable).

    Example:
        >>> import jax.numpy as jnp, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> theta = jnp.array([0.848323767332081])  # lme4's REML estimate
        >>> f = fixed_estimates(theta, m.data, m.structure, reml=True)
        >>> round(float(f.beta[0]), 4), round(float(f.objective), 6)
        (1527.5, 319.654277)
    """
    gls = gls_system_theta(theta, data, structure)
    sol = solve_gls(gls.system)
    n_fe = real_fixed_effects(structure)  # padded problems: the real p
    _, dof = reml_weight_and_dof(reml, data.n_obs, gls.system, n_fe)
    scale = sol.pwrss / dof
    L_inv = smallmat.inverse_lower(sol.xvx_chol.T)  # (X'V₁⁻¹X)⁻¹ = L⁻ᵀL⁻¹
    objective = profiled_objective(gls, data.n_obs, reml, n_fe)
    objective = jnp.where(jnp.isfinite(objective), objective, jnp.inf)  # as profiled_deviance
    return FixedEstimates(sol.beta, scale, scale * L_inv.T @ L_inv, objective)


def estimates(theta: jnp.ndarray, data: GroupedData, structure: CovStructure, reml: bool):
    """:class:`Estimates` at ``θ``: :func:`fixed_estimates`, then the BLUPs and their
    conditional covariances (:func:`conditional_modes`); pure, vmappable."""
    fixed = fixed_estimates(theta, data, structure, reml)
    blups, cond_cov = conditional_modes(theta, fixed.beta, data, structure)
    return Estimates(
        beta=fixed.beta,
        scale=fixed.scale,
        cov_beta=fixed.cov_beta,
        blups=blups,
        cond_cov=fixed.scale * cond_cov,
        objective=fixed.objective,
    )
