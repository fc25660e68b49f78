"""Size classes: one compiled fit for every one-factor model of the same coarse size.

A compiled program is specialised to its array shapes and static arguments. Small models
are many and different (one, two or three random effects; one to a handful of fixed
effects; six to a few hundred groups), so compiling one program per exact shape and
covariance pattern makes compilation the whole cost of a notebook session. Here every
small problem is embedded in a padded problem of its *size class*

.. math::
    (G_b, P_b, R_b) = (\\max(256, \\mathrm{bucket}(g)),\\; 2^{\\lceil \\log_2 p \\rceil},
    \\; 2^{\\lceil \\log_2 r \\rceil}),

and what used to be static is data:

* the covariance pattern: ``Λ[i, j] = θ[index[i, j]]`` (``-1``: a structural zero) with
  ``index (R_b, R_b)`` (:class:`FactorMap`), so correlated effects, diagonal blocks and
  variance components are one program;
* the user-scale pattern: ``G[i, j] = φ[cov_index[i, j]]`` (information matrices);
* REML or ML (a 0/1 weight) and the number of fixed effects ``p`` (REML's ``n - p``).

The padding changes no number. Padded groups have zero cross-products (they add
``log|I| = 0``). Padded random effects have zero rows and columns in ``Z'Z``, ``Z'X`` and
``Λ``, so ``M_i`` gets an identity block. Padded fixed effects get ``X'X = I`` and zero
cross-products with everything else, so ``X'V⁻¹X`` gets an identity block, ``β̂`` a zero
and ``log|X'V⁻¹X|`` nothing. Large problems (more than
:data:`~mixedjax.core.compilation.QUICK_COMPILE_GROUPS` groups) keep their exact ``p``
and ``r``, where the run time, not the compilation, is what counts.
"""

from typing import NamedTuple

import numpy as np

from mixedjax.core.compilation import QUICK_COMPILE_GROUPS
from mixedjax.core.covariance import CovStructure, lower_indices_colwise
from mixedjax.design.groups import GroupedData

#: Small problems are padded to at least this many groups.
SMALL_GROUPS = 256


def bucket_size(n: int) -> int:
    """Smallest size ``>= n`` of the form ``2^k`` or ``3 * 2^(k-1)`` (at least 8).

    The group axis is padded with empty groups to this size, so data sets whose numbers of
    groups fall in the same bucket share compiled code (padding at most doubles the work).

    Example:
        >>> [bucket_size(n) for n in (1, 9, 13, 17, 100, 1000)]
        [8, 12, 16, 24, 128, 1024]
    """
    size = 8
    while size < n:
        size = size * 3 // 2 if (size & (size - 1)) == 0 else size * 4 // 3
    return size


def _power_of_two(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class SizeClass(NamedTuple):
    """Padded sizes: groups ``G_b``, fixed effects ``P_b``, random effects per group ``R_b``.

    Example:
        >>> tuple(size_class(18, 2, 2)), tuple(size_class(6, 3, 3))
        ((256, 2, 2), (256, 4, 4))
        >>> tuple(size_class(10_000, 3, 3))   # large: exact p and r
        (12288, 3, 3)
    """

    groups: int
    fixed: int
    random: int

    @property
    def n_theta(self) -> int:
        """Length of the padded ``θ``: enough for any pattern of ``R_b`` random effects."""
        return self.random * (self.random + 1) // 2


def size_class(n_groups: int, p: int, r: int) -> SizeClass:
    """The size class of a problem with ``n_groups`` groups, ``p`` fixed and ``r`` random
    effects per group (see the module docstring)."""
    groups = bucket_size(n_groups)
    if groups > QUICK_COMPILE_GROUPS:
        return SizeClass(groups, int(p), int(r))
    return SizeClass(max(SMALL_GROUPS, groups), _power_of_two(p), _power_of_two(r))


def pad_crossprods(data: GroupedData, size: SizeClass) -> GroupedData:
    """Embed the cross-products in the size class (host arrays; no compilation).

    Example:
        >>> import numpy as np
        >>> from mixedjax.design.groups import group_crossprods
        >>> X = np.column_stack([np.ones(5), np.arange(5.0)])
        >>> d = group_crossprods(np.arange(5.0), X, X[:, :1], np.array([0, 0, 1, 1, 1]), 2)
        >>> padded = pad_crossprods(d, SizeClass(groups=8, fixed=4, random=2))
        >>> padded.ZtX.shape, padded.XtX[2:, 2:].tolist(), padded.XtX[:2, 2:].any()
        ((8, 2, 4), [[1.0, 0.0], [0.0, 1.0]], np.False_)
    """
    ZtZ, ZtX, Zty = (np.asarray(a) for a in (data.ZtZ, data.ZtX, data.Zty))
    g, r, p = ZtX.shape
    if g > size.groups or p > size.fixed or r > size.random:
        raise ValueError(f"problem ({g}, {p}, {r}) does not fit in {size}")
    dtype = ZtZ.dtype
    ZtZ_b = np.zeros((size.groups, size.random, size.random), dtype)
    ZtZ_b[:g, :r, :r] = ZtZ
    ZtX_b = np.zeros((size.groups, size.random, size.fixed), dtype)
    ZtX_b[:g, :r, :p] = ZtX
    Zty_b = np.zeros((size.groups, size.random), dtype)
    Zty_b[:g, :r] = Zty
    XtX_b = np.eye(size.fixed, dtype=dtype)
    XtX_b[:p, :p] = np.asarray(data.XtX)
    Xty_b = np.zeros(size.fixed, dtype)
    Xty_b[:p] = np.asarray(data.Xty)
    return GroupedData(
        ZtZ_b, ZtX_b, Zty_b, XtX_b, Xty_b, np.asarray(data.yty), np.asarray(data.n_obs)
    )


class FactorMap(NamedTuple):
    """A covariance pattern as data (a pytree of integer arrays).

    Attributes:
        index: ``(R, R)`` ``Λ[i, j] = θ[index[i, j]]``, ``-1`` where ``Λ`` is structurally 0
            (only the lower triangle is ever used).
        cov_index: ``(R, R)`` ``G[i, j] = φ[cov_index[i, j]]`` for the user-scale
            ``φ = (tril Ψ row by row, τ, padding, σ²)``; ``-1`` for zeros.
        phi_rows, phi_cols: ``(K - 1,)`` an entry of ``G`` holding each ``φ_k`` (``-1``
            for padding), to read ``φ̂`` off ``Ĝ``.
        kind: ``(T,)`` what each ``θ`` entry is: 0 padding, 1 an entry of ``L``, 2 a
            ``√τ₁``.
        diagonal: ``(T,)`` for an entry of ``L``, the ``θ`` index of its column's diagonal
            (the column's sign); itself otherwise.
        column: ``(T,)`` the column of ``L`` of each entry (``-1`` otherwise).
        n_fe: ``()`` the number of real fixed effects ``p`` (float).

    Example:
        >>> fmap = factor_map(CovStructure(2, (1,)), 4, n_fe=2)
        >>> fmap.index.tolist()
        [[0, -1, -1, -1], [1, 2, -1, -1], [-1, -1, 3, -1], [-1, -1, -1, -1]]
        >>> fmap.kind.tolist()
        [1, 1, 1, 2, 0, 0, 0, 0, 0, 0]
    """

    index: np.ndarray
    cov_index: np.ndarray
    phi_rows: np.ndarray
    phi_cols: np.ndarray
    kind: np.ndarray
    diagonal: np.ndarray
    column: np.ndarray
    n_fe: np.ndarray

    @property
    def n_random(self) -> int:
        """``R`` (static: an array shape)."""
        return self.index.shape[0]


def factor_map(structure: CovStructure, n_random: int, n_fe: int) -> FactorMap:
    """The :class:`FactorMap` of ``structure`` in ``n_random`` (padded) random effects.

    ``θ`` keeps its layout (lower triangle of ``L`` column by column, then ``√τ₁``)
    followed by zeros; ``φ`` keeps statsmodels' layout followed by zeros and σ² last.
    """
    q, R = structure.k_re, int(n_random)
    if structure.n_random > R:
        raise ValueError(f"{structure} has more than {R} random effects")
    T = R * (R + 1) // 2
    K = T + 1
    index = np.full((R, R), -1, np.int32)
    cov_index = np.full((R, R), -1, np.int32)
    phi_rows = np.full(K - 1, -1, np.int32)
    phi_cols = np.full(K - 1, -1, np.int32)
    kind = np.zeros(T, np.int32)
    diagonal = np.arange(T, dtype=np.int32)
    column = np.full(T, -1, np.int32)
    n = structure.n_theta
    kind[:n], diagonal[:n], column[:n] = theta_layout(structure)

    rows, cols = lower_indices_colwise(q)
    index[rows, cols] = np.arange(rows.size)

    sm_rows, sm_cols = np.tril_indices(q)  # statsmodels: row-major lower triangle
    for k, (i, j) in enumerate(zip(sm_rows, sm_cols, strict=True)):
        cov_index[i, j] = cov_index[j, i] = k
        phi_rows[k], phi_cols[k] = i, j

    start = q
    for c, size in enumerate(structure.vc_sizes):
        t = structure.k_re2 + c
        phi = sm_rows.size + c
        diag = np.arange(start, start + size)
        index[diag, diag] = t
        cov_index[diag, diag] = phi
        phi_rows[phi] = phi_cols[phi] = start
        start += size
    return FactorMap(
        index, cov_index, phi_rows, phi_cols, kind, diagonal, column, np.asarray(float(n_fe))
    )


def theta_layout(structure: CovStructure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(kind, diagonal, column)`` of ``θ`` (``(n_theta,)`` each), what the boundary snap
    (:func:`mixedjax.fit.program.snap_to_boundary`) needs: ``kind`` 1 for an entry of
    ``L``, 2 for a ``√τ₁``; ``diagonal`` the index of each ``L`` entry's column diagonal
    (itself for ``√τ₁``); ``column`` its column of ``L`` (-1 for ``√τ₁``).

    Example:
        >>> [a.tolist() for a in theta_layout(CovStructure(2, (1,)))]
        [[1, 1, 1, 2], [0, 0, 2, 3], [0, 0, 1, -1]]
    """
    cols = lower_indices_colwise(structure.k_re)[1]  # sorted: each column starts at its diagonal
    k_vc = structure.k_vc
    kind = np.r_[np.ones(cols.size, np.int32), np.full(k_vc, 2, np.int32)]
    diagonal = np.r_[np.searchsorted(cols, cols), cols.size + np.arange(k_vc)]
    column = np.r_[cols, np.full(k_vc, -1)]
    return kind, diagonal.astype(np.int32), column.astype(np.int32)


def pad_theta(theta: np.ndarray, size: SizeClass) -> np.ndarray:
    """``θ`` followed by zeros up to the class's length (a mask: ``False`` padding)."""
    theta = np.asarray(theta)
    out = np.zeros(size.n_theta, dtype=theta.dtype)
    out[: theta.size] = theta
    return out
