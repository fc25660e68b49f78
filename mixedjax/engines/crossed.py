"""Profiled deviance for several grouping factors: a blocked Cholesky (MixedModels.jl's).

With ``Λ = blockdiag(I_{n_k} ⊗ T_k)`` (``T_k`` the ``(q_k, q_k)`` lower-triangular relative
factor of term ``k``, filled column-wise from ``θ``) and ``Ω = [ZΛ X y]'[ZΛ X y] + diag(I, 0)``,
the penalised system is factored blockwise, ``Ω = L L'``, with blocks ordered
``[factor 1 | dense terms D | X y]``:

.. math::
    L_{11} L_{11}' = T_1' (Z_1'Z_1) T_1 + I \\quad \\text{(block diagonal: one } q_1 \\times q_1
    \\text{ Cholesky per level, batched)},

.. math::
    L_{r1} = (Λ_r' Z_r' Z_1 T_1) L_{11}^{-T} \\quad (r = D, W), \\qquad
    L_{\\cdot\\cdot} L_{\\cdot\\cdot}' = Λ_D'[Z_D W]'[Z_D W]Λ_D + \\operatorname{diag}(I_M, 0)
    - L_{\\cdot 1} L_{\\cdot 1}'.

``L_{D1}`` has the sparsity of ``Z_D'Z_1`` (the *pairs* of :mod:`mixedjax.design.crossed`),
so ``L_{D1}`` costs ``O(nnz q^3)`` and ``L_{D1} L_{D1}'`` is a segment sum over the *pair
products*. The remaining ``(M + p + 1)``-square block is dense (the factors after the
first are crossed with it, so their Schur complement fills in) and gets one dense
Cholesky. With ``W = [X y]`` last, its trailing rows give ``R_X`` and
``\\sqrt{pwrss}``, and

.. math::
    \\log|V_1| = 2 \\sum \\log \\operatorname{diag} L_{11} + 2 \\sum_{i < M} \\log L_{ii},

after which the ML/REML objectives are those of :mod:`mixedjax.engines.onefactor`.

Complexity per evaluation (none of it proportional to ``n``): time
``O(n_1 q_1^3 + Σ_k nnz_k q_k q_1^2 + Σ_{k,l} P_{kl} q_k q_l q_1 + (M + p)^3)`` and memory
``O(n_1 q_1^2 + Σ nnz_k q_k q_1 + Σ P_{kl} + (M + p)^2)``, where ``nnz_k`` is the number of
co-occurring (level of ``k``, level of factor 1) pairs and ``P_{kl} = Σ_j c_k(j) c_l(j)``
the number of pair products (``c_k(j)``: levels of ``k`` met by level ``j`` of factor
1). The gradient (reverse mode) costs a small multiple of that.
"""

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core import smallmat
from mixedjax.design.crossed import CrossedData, CrossedStructure
from mixedjax.engines.onefactor import LOG_2PI, GLSSystem, reml_weight_and_dof


def term_factors(theta: jnp.ndarray, structure: CrossedStructure) -> list[jnp.ndarray]:
    """``T_k`` for each term from ``θ`` (column-wise lower triangle, lme4's order)."""
    out = []
    for q, sl in zip(structure.q, structure.theta_slices(), strict=True):
        upper_rows, upper_cols = np.triu_indices(q)
        T = jnp.zeros((q, q), theta.dtype).at[upper_cols, upper_rows].set(theta[sl])
        out.append(T)
    return out


def _scale_dense(dense: jnp.ndarray, factors, structure: CrossedStructure) -> jnp.ndarray:
    """``Λ_D' A Λ_D`` with ``Λ_D = blockdiag(I ⊗ T_k (k ≥ 2), I_{p+1})``."""
    M = structure.n_dense

    def left(A):
        pieces = []
        for k, off in enumerate(structure.offsets):
            q, n = structure.q[k + 1], structure.n_levels[k + 1]
            block = A[off : off + n * q].reshape(n, q, -1)
            pieces.append(jnp.einsum("ji,ljc->lic", factors[k + 1], block).reshape(n * q, -1))
        pieces.append(A[M:])
        return jnp.concatenate(pieces, axis=0)

    return left(left(dense).T).T


class CrossedFactor(NamedTuple):
    """The blocked Cholesky factor at ``θ``.

    Attributes:
        factors: ``T_k`` per term.
        chol1: ``(n_1, q_1, q_1)`` ``L_{11}`` per level.
        w1: ``(n_1, q_1, p+1)`` ``L_{W1}'`` per level (``L_{11}^{-1} T_1' Z_1'W``).
        dense: ``(M + p + 1, M + p + 1)`` the dense block (Schur complement) ``D``.
    """

    factors: list
    chol1: jnp.ndarray
    w1: jnp.ndarray
    dense: jnp.ndarray


def factorize(theta: jnp.ndarray, data: CrossedData, structure: CrossedStructure):
    """The blocked Cholesky factorisation of the module docstring (pure; jit-safe)."""
    factors = term_factors(theta, structure)
    T1 = factors[0]
    q1 = structure.q[0]
    M1 = jnp.einsum("ji,gjk,kl->gil", T1, data.diag1, T1) + jnp.eye(q1, dtype=theta.dtype)
    chol1 = smallmat.cholesky(M1)
    w1 = smallmat.solve_lower(chol1, jnp.einsum("ji,gjm->gim", T1, data.w1))
    # H_j = T_1 M_j^{-1} T_1': every Schur product L_r1 L_s1' is A_r1 H A_1s, linear in H
    V = smallmat.solve_lower(chol1, jnp.broadcast_to(T1.T, chol1.shape))
    H = jnp.einsum("grc,grd->gcd", V, V)

    M = structure.n_dense
    m = M + structure.p + 1
    inner = jnp.zeros((m, m), theta.dtype)
    inner = inner.at[M:, M:].set(jnp.einsum("gcw,gcd,gdv->wv", data.w1, H, data.w1))
    index = 0
    for k in range(len(structure.q) - 1):
        qk, nk, ok = structure.q[k + 1], structure.n_levels[k + 1], structure.offsets[k]
        j = data.pair_level1[k]
        kw = jnp.einsum("arc,acd,adw->arw", data.pair_block[k], H[j], data.w1[j])
        kw = jax.ops.segment_sum(kw, data.pair_level[k], num_segments=nk).reshape(nk * qk, -1)
        inner = inner.at[ok : ok + nk * qk, M:].set(kw)
        inner = inner.at[M:, ok : ok + nk * qk].set(kw.T)
        for l in range(k + 1):
            ql, nl, ol = structure.q[l + 1], structure.n_levels[l + 1], structure.offsets[l]
            if structure.is_small(k):  # Σ_b (Z_1'Z_k)_j' H_j B_b' over the pairs b of term l
                jb = data.pair_level1[l]
                Ad = data.small_dense[k][jb]  # (nnz_l, q_1, n_k, q_k)
                vals = jnp.einsum("bckr,bcd,bsd->bkrs", Ad, H[jb], data.pair_block[l])
                seg = jax.ops.segment_sum(vals, data.pair_level[l], num_segments=nl)
                block = seg.transpose(1, 2, 0, 3).reshape(nk * qk, nl * ql)
                inner = inner.at[ok : ok + nk * qk, ol : ol + nl * ql].set(block)
                if l != k:
                    inner = inner.at[ol : ol + nl * ql, ok : ok + nk * qk].set(block.T)
                index += 1
                continue
            vals = jnp.einsum("prscd,pcd->prs", data.prod_kernel[index], H[data.prod_j[index]])
            block = jax.ops.segment_sum(
                vals, data.prod_target[index], num_segments=nk * nl, indices_are_sorted=True
            )
            block = block.reshape(nk, nl, qk, ql).transpose(0, 2, 1, 3).reshape(nk * qk, nl * ql)
            if l == k:  # only a <= b was summed (diagonal halved): Y + Y'
                block = block + block.T
            inner = inner.at[ok : ok + nk * qk, ol : ol + nl * ql].set(block)
            if l != k:
                inner = inner.at[ol : ol + nl * ql, ok : ok + nk * qk].set(block.T)
            index += 1
    identity = jnp.concatenate([jnp.ones(M, theta.dtype), jnp.zeros(m - M, theta.dtype)])
    dense = _scale_dense(data.dense - inner, factors, structure) + jnp.diag(identity)
    return CrossedFactor(factors, chol1, w1, dense)


def pair_factors(f: "CrossedFactor", data: CrossedData, structure: CrossedStructure):
    """``L_{k1}'`` per pair of each dense term: ``(nnz_k, q_1, q_k)``
    ``= L_{11,j}^{-1} T_1' (Z_k'Z_1)_a' T_k``."""
    out = []
    for k in range(len(structure.q) - 1):
        blocks = jnp.swapaxes(data.pair_block[k], 1, 2)
        scaled = jnp.einsum("ji,ajk,kl->ail", f.factors[0], blocks, f.factors[k + 1])
        out.append(smallmat.solve_lower(f.chol1[data.pair_level1[k]], scaled))
    return out


@partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def dense_logdets(dense: jnp.ndarray, M: int, p: int) -> jnp.ndarray:
    """``(log|D_ZZ|, log|R_X|², log pwrss)`` of the dense block ``D`` (``(3,)``).

    With ``D = L L'``: ``2 Σ_{i<M} log L_ii``, ``2 Σ_{M≤i<M+p} log L_ii`` and
    ``log L_{mm}²``. Each is a difference of log-determinants of leading blocks of ``D``,
    so its derivative is ``tr(G dD)`` with ``G = Σ_{r ∈ rows} ℓ_r ℓ_r'`` over rows ``ℓ_r``
    of ``L^{-1}`` (``r < M``; ``M ≤ r < M+p``; ``r = m-1``). This custom rule (one
    triangular inverse and one matrix product) is about twice as fast in reverse mode as
    differentiating through the Cholesky factorisation.
    """
    diag = jnp.diagonal(jnp.linalg.cholesky(dense))
    return _logdets_from_diag(diag, M, p)


def _logdets_from_diag(diag, M, p):
    return jnp.stack(
        [
            2.0 * jnp.sum(jnp.log(diag[:M])),
            2.0 * jnp.sum(jnp.log(diag[M : M + p])),
            2.0 * jnp.log(diag[M + p]),
        ]
    )


@dense_logdets.defjvp
def _dense_logdets_jvp(M, p, primals, tangents):
    (dense,), (d_dense,) = primals, tangents
    L = jnp.linalg.cholesky(dense)
    L_inv = jax.scipy.linalg.solve_triangular(L, jnp.eye(L.shape[0], dtype=L.dtype), lower=True)
    G_Z = L_inv[:M].T @ L_inv[:M]
    d_Z = jnp.sum(G_Z * d_dense)
    rows_X = L_inv[M : M + p]
    d_X = jnp.sum((rows_X @ d_dense) * rows_X)
    last = L_inv[M + p]
    d_y = last @ d_dense @ last
    return _logdets_from_diag(jnp.diagonal(L), M, p), jnp.stack([d_Z, d_X, d_y])


def objective_from_factor(f: CrossedFactor, n_obs, structure: CrossedStructure, reml: bool):
    """``-2 log L`` (ML) or the REML criterion from the factor (σ², β profiled out);
    ``reml`` may be a traced 0/1 weight."""
    M, p = structure.n_dense, structure.p
    logdet_Z, logdet_X, log_pwrss = dense_logdets(f.dense, M, p)
    logdet_V = 2.0 * jnp.sum(smallmat.log_diag_sum(f.chol1)) + logdet_Z
    weight, dof = reml_weight_and_dof(reml, n_obs, None, p)
    value = logdet_V + dof * (1.0 + LOG_2PI + log_pwrss - jnp.log(dof))
    return value + weight * logdet_X if weight is not None else value


def deviance(theta, data: CrossedData, structure: CrossedStructure, reml: bool):
    """Profiled objective at ``θ``; non-finite values become ``+inf``."""
    value = objective_from_factor(factorize(theta, data, structure), data.n_obs, structure, reml)
    return jnp.where(jnp.isfinite(value), value, jnp.inf)


class CrossedEstimates(NamedTuple):
    """Estimates at ``θ̂`` (data scale).

    Attributes:
        beta: ``(p,)``; scale: ``()`` σ²; cov_beta: ``(p, p)`` σ²(X'V⁻¹X)⁻¹.
        blups: per term ``(n_k, q_k)`` conditional modes.
        cond_cov: per term ``(n_k, q_k, q_k)`` conditional covariances.
        objective: ``()`` the profiled objective.
    """

    beta: jnp.ndarray
    scale: jnp.ndarray
    cov_beta: jnp.ndarray
    blups: list
    cond_cov: list
    objective: jnp.ndarray


def estimates(theta, data: CrossedData, structure: CrossedStructure, reml: bool):
    """β̂, σ², vcov(β̂), BLUPs and conditional covariances for every term.

    With ``r = L_{Wy}' - L_{WX}'β`` (the y-row of ``L`` minus the X-rows times β), the
    spherical modes solve ``L_{ZZ}' u = r``: a dense triangular solve for the dense terms,
    then ``u_1 = L_{11}^{-T}(r_1 - L_{D1}' u_D)`` per level of factor 1; ``b = Λu``.
    ``cov(u | y)/σ² = (L_{ZZ} L_{ZZ}')^{-1}`` has the dense-block diagonal blocks of
    ``C = L_{DD}^{-T} L_{DD}^{-1}`` and, for factor 1, ``L_{11}^{-T}L_{11}^{-1} + X_j' C X_j``
    with ``X_j = L_{D1}[:, j] L_{11,j}^{-1}`` (summed over pair products).
    """
    f = factorize(theta, data, structure)
    pairs = pair_factors(f, data, structure)
    M, p = structure.n_dense, structure.p
    n_obs = data.n_obs
    L = jnp.linalg.cholesky(f.dense)
    L_XX = L[M : M + p, M : M + p]
    beta = jax.scipy.linalg.solve_triangular(L_XX.T, L[M + p, M : M + p], lower=False)
    pwrss = L[M + p, M + p] ** 2
    scale = pwrss / reml_weight_and_dof(reml, n_obs, None, p)[1]
    L_inv = jax.scipy.linalg.solve_triangular(L_XX, jnp.eye(p, dtype=L.dtype), lower=True)
    cov_beta = scale * L_inv.T @ L_inv

    # modes of the dense terms, then factor 1
    r_dense = L[M + p, :M] - L[M : M + p, :M].T @ beta
    L_DD = L[:M, :M]
    u_dense = jax.scipy.linalg.solve_triangular(L_DD.T, r_dense, lower=False)
    r1 = f.w1[:, :, p] - jnp.einsum("gqp,p->gq", f.w1[:, :, :p], beta)
    for k in range(len(structure.q) - 1):
        qk, nk, ok = structure.q[k + 1], structure.n_levels[k + 1], structure.offsets[k]
        u_k = u_dense[ok : ok + nk * qk].reshape(nk, qk)
        contrib = jnp.einsum("aik,ak->ai", pairs[k], u_k[data.pair_level[k]])
        r1 = r1 - jax.ops.segment_sum(contrib, data.pair_level1[k], num_segments=r1.shape[0])
    u1 = smallmat.solve_upper_transposed(f.chol1, r1[..., None])[..., 0]

    # conditional covariances (profile scale, spherical), then b = T u
    L_DD_inv = jax.scipy.linalg.solve_triangular(L_DD, jnp.eye(M, dtype=L.dtype), lower=True)
    C = L_DD_inv.T @ L_DD_inv
    eye1 = jnp.broadcast_to(jnp.eye(structure.q[0], dtype=L.dtype), f.chol1.shape)
    chol1_inv = smallmat.solve_lower(f.chol1, eye1)  # L_11^{-1} per level
    cov1 = jnp.einsum("gki,gkj->gij", chol1_inv, chol1_inv)
    X = [
        jnp.einsum("aik,aij->akj", pairs[k], chol1_inv[data.pair_level1[k]])
        for k in range(len(structure.q) - 1)
    ]  # (nnz_k, q_k, q_1): rows of L_{D1} L_{11}^{-1}
    index = 0
    for k in range(len(structure.q) - 1):
        qk, ok = structure.q[k + 1], structure.offsets[k]
        for l in range(k + 1):
            ql, ol = structure.q[l + 1], structure.offsets[l]
            a, b = data.prod_a[index], data.prod_b[index]
            rows = ok + data.pair_level[k][a][:, None] * qk + jnp.arange(qk)
            cols = ol + data.pair_level[l][b][:, None] * ql + jnp.arange(ql)
            Cab = C[rows[:, :, None], cols[:, None, :]]  # (P, q_k, q_l)
            term = jnp.einsum("pki,pkl,plj->pij", X[k][a], Cab, X[l][b])
            if l == k:  # only a <= b is listed: count a < b twice, a == b once
                term = term * jnp.where(a == b, 0.5, 1.0)[:, None, None]
            term = term + jnp.swapaxes(term, 1, 2)
            cov1 = cov1 + jax.ops.segment_sum(
                term, data.pair_level1[k][a], num_segments=cov1.shape[0]
            )
            index += 1

    blups = [jnp.einsum("ij,gj->gi", f.factors[0], u1)]
    cond_cov = [scale * jnp.einsum("ij,gjk,lk->gil", f.factors[0], cov1, f.factors[0])]
    for k in range(len(structure.q) - 1):
        qk, nk, ok = structure.q[k + 1], structure.n_levels[k + 1], structure.offsets[k]
        T = f.factors[k + 1]
        blups.append(jnp.einsum("ij,gj->gi", T, u_dense[ok : ok + nk * qk].reshape(nk, qk)))
        idx = ok + jnp.arange(nk)[:, None] * qk + jnp.arange(qk)
        block = C[idx[:, :, None], idx[:, None, :]]
        cond_cov.append(scale * jnp.einsum("ij,gjk,lk->gil", T, block, T))
    return CrossedEstimates(
        beta=beta,
        scale=scale,
        cov_beta=cov_beta,
        blups=blups,
        cond_cov=cond_cov,
        objective=objective_from_factor(f, n_obs, structure, reml),
    )


def crossed_gls_system(theta: jnp.ndarray, data, structure: CrossedStructure) -> GLSSystem:
    """Profile-scale :class:`~mixedjax.engines.onefactor.GLSSystem` at ``θ``: with
    ``Ω = L L'`` factored by :func:`factorize` and ``M`` dense random effects, the trailing
    ``(p+1)`` block of ``L`` is the Cholesky factor of ``A = [X y]'V₁⁻¹[X y]`` and
    ``log|V₁| = 2 Σ log diag L₁₁ + 2 Σ_{i<M} log L_ii``."""
    f = factorize(theta, data, structure)
    M = structure.n_dense
    L = jnp.linalg.cholesky(f.dense)
    W = L[M:, M:]
    logdet_V = 2.0 * jnp.sum(smallmat.log_diag_sum(f.chol1)) + 2.0 * jnp.sum(
        jnp.log(jnp.diagonal(L)[:M])
    )
    return GLSSystem(logdet_V, W @ W.T)


def _safe_cholesky(cov: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factor; exactly zero (with zero derivatives) for a zero matrix."""
    zero = jnp.all(cov == 0)
    eye = jnp.eye(cov.shape[0], dtype=cov.dtype)
    return jnp.where(zero, 0.0, smallmat.cholesky(jnp.where(zero, eye, cov)))


def crossed_user_to_theta(gamma: jnp.ndarray, structure: CrossedStructure):
    """``(θ, σ²)`` from crossed user-scale ``γ``: ``T_k = chol(Ψ_k/σ²)``."""
    scale = gamma[-1]
    parts, start = [], 0
    for q in structure.q:
        rows, cols = np.tril_indices(q)
        M = jnp.zeros((q, q), gamma.dtype).at[rows, cols].set(gamma[start : start + rows.size])
        cov = (M + M.T - jnp.diag(jnp.diag(M))) / scale
        T = _safe_cholesky(cov)
        upper_rows, upper_cols = np.triu_indices(q)
        parts.append(T[upper_cols, upper_rows])  # column-wise lower triangle (lme4)
        start += rows.size
    return jnp.concatenate(parts), scale


def crossed_theta_to_user(theta, scale, structure: CrossedStructure, xp=np):
    """Inverse of :func:`crossed_user_to_theta`: ``γ (n_user_params,)``. With ``xp=jnp``
    it runs inside a compiled program (the crossed fit's information matrix)."""
    theta = xp.asarray(theta, dtype=float)
    parts = []
    for q, sl in zip(structure.q, structure.theta_slices(), strict=True):
        upper_rows, upper_cols = np.triu_indices(q)
        index = np.full((q, q), -1)
        index[upper_cols, upper_rows] = np.arange(upper_rows.size)  # T[i, j] = θ[index[i, j]]
        T = xp.where(index >= 0, theta[sl][np.maximum(index, 0)], 0.0)
        rows, cols = np.tril_indices(q)
        parts.append((scale * T @ T.T)[rows, cols])
    return xp.concatenate(parts + [xp.reshape(xp.asarray(scale, dtype=float), (1,))])
