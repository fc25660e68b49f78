"""Random-effects covariance structures and their three parameterizations.

Notation (as in statsmodels' MixedLM and Lindstrom & Bates 1988). For group ``i`` the
random-effects design is ``Z_i = [Z_re_i, Z_vc1_i, Z_vc2_i, ...]`` with ``q`` columns of
correlated random effects (``exog_re``) followed by the columns of each variance component.
The random-effects covariance is block diagonal,

.. math::
    G = \\operatorname{blockdiag}(\\Psi, \\tau_1 I_{k_1}, \\tau_2 I_{k_2}, \\dots),

and ``cov(y_i) = σ² I + Z_i G Z_i'``. The three parameterizations are

* **user**: ``σ² I + Z G Z'`` with ``Ψ`` (``cov_re``) and ``τ`` (``vcomp``) on the data scale;
* **profile**: ``σ² (I + Z G₁ Z')`` with ``G₁ = G / σ²`` (``Ψ₁ = Ψ/σ²``, ``τ₁ = τ/σ²``);
  σ² is then profiled out of the likelihood;
* **square root**: ``G₁ = Λ Λ'`` with ``Λ = blockdiag(L, √τ₁ I, ...)`` and ``L`` the lower
  Cholesky factor of ``Ψ₁``. The vector ``θ`` of free coordinates holds the lower triangle
  of ``L`` column by column (lme4's order) followed by ``√τ₁``. It is unconstrained: the
  likelihood depends on ``Λ`` only through ``Λ Λ'``.

:class:`MixedLMParams` mirrors statsmodels' class of the same name: ``get_packed`` and
``from_packed`` use statsmodels' packed layout (fixed effects, the row-major lower triangle
of ``Ψ₁`` or of ``L``, then ``τ₁`` or ``√τ₁``).
"""

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class CovStructure:
    """Shape of the per-group random effects (static; hashable for ``jit``).

    Attributes:
        k_re: number of correlated random effects ``q`` (size of ``Ψ``).
        vc_sizes: for each variance component, the number of columns it has in a group
            (the maximum over groups; groups with fewer columns are zero-padded).

    Example:
        >>> s = CovStructure(k_re=2, vc_sizes=(3,))
        >>> s.n_theta, s.n_random, s.diagonal_theta_mask().tolist()
        (4, 5, [True, False, True, True])
    """

    k_re: int
    vc_sizes: tuple[int, ...] = ()

    @property
    def k_vc(self) -> int:
        """Number of variance components."""
        return len(self.vc_sizes)

    @property
    def k_re2(self) -> int:
        """Number of free entries in the lower triangle of ``Ψ``."""
        return self.k_re * (self.k_re + 1) // 2

    @property
    def n_theta(self) -> int:
        """Length of ``θ``."""
        return self.k_re2 + self.k_vc

    @property
    def n_random(self) -> int:
        """Random effects per group ``r = q + sum(vc_sizes)``."""
        return self.k_re + sum(self.vc_sizes)

    def diagonal_theta_mask(self) -> np.ndarray:
        """Boolean mask of the θ entries that are standard-deviation-like (lower bound 0).

        These are the diagonal of ``L`` and every ``√τ₁``; lme4 calls a fit singular when one
        of them is (near) zero.
        """
        rows, cols = lower_indices_colwise(self.k_re)
        return np.concatenate([rows == cols, np.ones(self.k_vc, dtype=bool)])


def lower_indices_colwise(q: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the lower triangle of a ``q x q`` matrix, column by column (lme4).

    Example:
        >>> rows, cols = lower_indices_colwise(3)
        >>> rows.tolist(), cols.tolist()
        ([0, 1, 2, 1, 2, 2], [0, 0, 0, 1, 1, 2])
    """
    upper_rows, upper_cols = np.triu_indices(q)
    return upper_cols, upper_rows


def theta_to_factor(theta: jnp.ndarray, structure: CovStructure) -> jnp.ndarray:
    """Relative covariance factor ``Λ (r, r)`` from ``θ (n_theta,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> theta_to_factor(jnp.array([1.0, 0.5, 2.0, 3.0]), CovStructure(2, (1,))).tolist()
        [[1.0, 0.0, 0.0], [0.5, 2.0, 0.0], [0.0, 0.0, 3.0]]
    """
    q = structure.k_re
    rows, cols = lower_indices_colwise(q)
    L = jnp.zeros((q, q), theta.dtype).at[rows, cols].set(theta[: structure.k_re2])
    blocks = [L]
    for c, size in enumerate(structure.vc_sizes):
        blocks.append(theta[structure.k_re2 + c] * jnp.eye(size, dtype=theta.dtype))
    return _block_diag(blocks)


def theta_to_cov(theta: jnp.ndarray, structure: CovStructure) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Profile-scale ``(Ψ₁ (q, q), τ₁ (k_vc,))`` from ``θ``.

    Example:
        >>> import jax.numpy as jnp
        >>> cov, vc = theta_to_cov(jnp.array([1.0, 0.5, 2.0, 3.0]), CovStructure(2, (1,)))
        >>> cov.tolist(), vc.tolist()
        ([[1.0, 0.5], [0.5, 4.25]], [9.0])
    """
    q = structure.k_re
    rows, cols = lower_indices_colwise(q)
    if isinstance(theta, np.ndarray):  # on the host: no tiny XLA compilations per call
        L_host = np.zeros((q, q), theta.dtype)
        L_host[rows, cols] = theta[: structure.k_re2]
        return L_host @ L_host.T, theta[structure.k_re2 :] ** 2
    L = jnp.zeros((q, q), theta.dtype).at[rows, cols].set(theta[: structure.k_re2])
    return L @ L.T, theta[structure.k_re2 :] ** 2


def cov_to_theta(cov_re: np.ndarray, vcomp: np.ndarray, structure: CovStructure) -> np.ndarray:
    """``θ`` from profile-scale ``Ψ₁`` and ``τ₁`` (inverse of :func:`theta_to_cov`).

    A positive semi-definite (singular) ``Ψ₁`` is allowed: its factor gets zero columns.

    Example:
        >>> cov = np.array([[1.0, 0.5], [0.5, 4.25]])
        >>> cov_to_theta(cov, np.array([9.0]), CovStructure(2, (1,)))
        array([1. , 0.5, 2. , 3. ])
    """
    L = psd_cholesky(np.asarray(cov_re, dtype=float).reshape(structure.k_re, structure.k_re))
    rows, cols = lower_indices_colwise(structure.k_re)
    vc = np.asarray(vcomp, dtype=float).reshape(structure.k_vc)
    if np.any(vc < 0):
        raise ValueError("vcomp: variance components must be non-negative")
    return np.concatenate([L[rows, cols], np.sqrt(vc)])


def psd_cholesky(A: np.ndarray, tol: float = 1e-13) -> np.ndarray:
    """Lower Cholesky factor of a symmetric positive semi-definite matrix.

    Unlike ``np.linalg.cholesky`` this accepts singular matrices: a pivot that is zero (up
    to ``tol`` relative to the largest diagonal entry) gives a zero column.

    Example:
        >>> psd_cholesky(np.array([[4.0, 2.0], [2.0, 1.0]]))  # rank one: second column is zero
        array([[2., 0.],
               [1., 0.]])
    """
    A = np.array(A, dtype=float)
    if A.shape[0] != A.shape[1] or not np.allclose(A, A.T, rtol=1e-10, atol=0):
        raise ValueError("cov_re must be a symmetric square matrix")
    n = A.shape[0]
    scale = max(float(np.max(np.abs(np.diag(A)), initial=0.0)), 1e-300)
    L = np.zeros_like(A)
    for j in range(n):  # loop over matrix columns (tiny), not groups
        d = A[j, j] - L[j, :j] @ L[j, :j]
        if d < -tol * scale * 1e3:
            raise ValueError("cov_re must be positive semi-definite")
        if d <= tol * scale:
            continue
        L[j, j] = np.sqrt(d)
        L[j + 1 :, j] = (A[j + 1 :, j] - L[j + 1 :, :j] @ L[j, :j]) / L[j, j]
    return L


def _block_diag(blocks: list[jnp.ndarray]) -> jnp.ndarray:
    sizes = [b.shape[0] for b in blocks]
    n = sum(sizes)
    out = jnp.zeros((n, n), blocks[0].dtype)
    start = 0
    for b, s in zip(blocks, sizes, strict=True):
        out = out.at[start : start + s, start : start + s].set(b)
        start += s
    return out


class MixedLMParams:
    """Parameters of a mixed model, in statsmodels' layout (profile scale).

    Attributes:
        fe_params: fixed effects ``β (k_fe,)`` (may be ``None`` when profiled out).
        cov_re: ``Ψ₁ = Ψ/σ² (k_re, k_re)``.
        vcomp: ``τ₁ = τ/σ² (k_vc,)``.

    Example:
        >>> p = MixedLMParams.from_components(np.zeros(2), np.eye(2), vcomp=np.ones(1))
        >>> p.get_packed(use_sqrt=True, has_fe=True).shape
        (6,)
    """

    def __init__(self, k_fe: int, k_re: int, k_vc: int):
        self.k_fe = k_fe
        self.k_re = k_re
        self.k_re2 = k_re * (k_re + 1) // 2
        self.k_vc = k_vc
        self.k_tot = k_fe + self.k_re2 + k_vc
        self.fe_params = np.zeros(k_fe) if k_fe else None
        self.cov_re = np.zeros((k_re, k_re))
        self.vcomp = np.zeros(k_vc)

    @classmethod
    def from_packed(
        cls, params, k_fe: int, k_re: int, use_sqrt: bool, has_fe: bool
    ) -> "MixedLMParams":
        """Build from a packed vector ``[β?, tril(Ψ₁ or L), τ₁ or √τ₁]`` (row-major tril)."""
        params = np.asarray(params, dtype=float)
        k_re2 = k_re * (k_re + 1) // 2
        k_vc = params.size - k_re2 - (k_fe if has_fe else 0)
        if k_vc < 0:
            raise ValueError(
                f"params has length {params.size}, too short for k_fe={k_fe}, k_re={k_re}"
            )
        out = cls(k_fe, k_re, k_vc)
        fe_cov, cov_part, vc_part = unpack(jnp.asarray(params), k_fe if has_fe else 0, k_re)
        if has_fe:
            out.fe_params = np.asarray(fe_cov)
        cov, vc = packed_to_cov(cov_part, vc_part, k_re, use_sqrt)
        out.cov_re = np.asarray(cov)
        out.vcomp = np.asarray(vc)
        return out

    @classmethod
    def from_components(
        cls, fe_params=None, cov_re=None, cov_re_sqrt=None, vcomp=None
    ) -> "MixedLMParams":
        """Build from ``fe_params``, ``cov_re`` (or its square root ``cov_re_sqrt``), ``vcomp``."""
        if cov_re is None and cov_re_sqrt is None:
            cov_re = np.zeros((0, 0))
        if cov_re is None:
            cov_re_sqrt = np.atleast_2d(np.asarray(cov_re_sqrt, dtype=float))
            cov_re = cov_re_sqrt @ cov_re_sqrt.T
        cov_re = np.atleast_2d(np.asarray(cov_re, dtype=float))
        vcomp = np.zeros(0) if vcomp is None else np.atleast_1d(np.asarray(vcomp, dtype=float))
        k_fe = 0 if fe_params is None else len(np.atleast_1d(fe_params))
        out = cls(k_fe, cov_re.shape[0], vcomp.size)
        out.fe_params = None if fe_params is None else np.atleast_1d(np.asarray(fe_params, float))
        out.cov_re = cov_re
        out.vcomp = vcomp
        return out

    def get_packed(self, use_sqrt: bool, has_fe: bool = False) -> np.ndarray:
        """Packed vector in statsmodels' layout (see :meth:`from_packed`)."""
        rows, cols = np.tril_indices(self.k_re)
        if use_sqrt:
            cov_part = psd_cholesky(self.cov_re)[rows, cols]
            vc_part = np.sqrt(self.vcomp)
        else:
            cov_part = self.cov_re[rows, cols]
            vc_part = self.vcomp
        parts = [cov_part, vc_part]
        if has_fe:
            parts.insert(0, np.asarray(self.fe_params, dtype=float))
        return np.concatenate(parts)

    def __repr__(self) -> str:
        return (
            f"MixedLMParams(fe_params={self.fe_params}, cov_re={self.cov_re.tolist()}, "
            f"vcomp={self.vcomp})"
        )


def unpack(packed: jnp.ndarray, k_fe: int, k_re: int):
    """Split a packed vector into ``(fe, cov part, vc part)`` (jnp; differentiable).

    Example:
        >>> import jax.numpy as jnp
        >>> [part.tolist() for part in unpack(jnp.arange(6.0), k_fe=2, k_re=2)]
        [[0.0, 1.0], [2.0, 3.0, 4.0], [5.0]]
    """
    k_re2 = k_re * (k_re + 1) // 2
    return packed[:k_fe], packed[k_fe : k_fe + k_re2], packed[k_fe + k_re2 :]


def packed_to_cov(cov_part: jnp.ndarray, vc_part: jnp.ndarray, k_re: int, use_sqrt: bool):
    """Profile-scale ``(Ψ₁, τ₁)`` from the packed covariance parts (jnp; differentiable).

    Example:
        >>> import jax.numpy as jnp
        >>> cov, vc = packed_to_cov(jnp.array([1.0, 0.5, 2.0]), jnp.array([3.0]), 2, use_sqrt=True)
        >>> cov.tolist(), vc.tolist()
        ([[1.0, 0.5], [0.5, 4.25]], [9.0])
    """
    rows, cols = np.tril_indices(k_re)
    M = jnp.zeros((k_re, k_re), cov_part.dtype).at[rows, cols].set(cov_part)
    if use_sqrt:
        return M @ M.T, vc_part**2
    return M + M.T - jnp.diag(jnp.diag(M)), vc_part


def user_to_profile(phi: jnp.ndarray, structure: CovStructure):
    """Split user-scale ``φ = (tril Ψ row by row, τ, σ²)`` into profile-scale
    ``(Ψ₁ = Ψ/σ², τ₁ = τ/σ², σ²)``: shapes ``(q, q)``, ``(k_vc,)``, ``()``."""
    q = structure.k_re
    rows, cols = np.tril_indices(q)
    scale = phi[-1]
    M = jnp.zeros((q, q), phi.dtype).at[rows, cols].set(phi[: structure.k_re2])
    cov = (M + M.T - jnp.diag(jnp.diag(M))) / scale
    vc = phi[structure.k_re2 : -1] / scale
    return cov, vc, scale
