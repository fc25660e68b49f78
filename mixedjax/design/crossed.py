"""Cross-products for several grouping factors (crossed or nested), computed once.

Terms ``k = 1..K`` (see :mod:`mixedjax.spec.terms`) are sorted by decreasing number of levels.
``Z = [Z_1 Z_2 ... Z_K]`` with ``Z_k`` level-major (``n_k q_k`` columns). Writing
``Z_D = [Z_2 ... Z_K]`` (``M = Σ_{k≥2} n_k q_k`` columns) and ``W = [X y]`` (``p + 1``
columns), everything an evaluation needs is

* ``Z_1'Z_1``: block diagonal, one ``(q_1, q_1)`` block per level of factor 1;
* ``Z_1'W``: ``(n_1, q_1, p+1)``;
* ``Z_k'Z_1`` for ``k ≥ 2``: sparse; kept as *pairs* ``(level of k, level of factor 1)``
  that co-occur in some row, each with its ``(q_k, q_1)`` block;
* for ``k ≥ l ≥ 2``, the *pair products*: all ``(a, b)`` with pair ``a`` of term ``k`` and
  pair ``b`` of term ``l`` on the same level of factor 1. They index the Schur complement
  ``L_{D1} L_{D1}'`` so that it costs ``O(#pair products)`` (see :mod:`mixedjax.engines.crossed`);
* ``[Z_D W]'[Z_D W]``: dense ``(M + p + 1, M + p + 1)``.

Building costs ``O(n (q^2 + p^2))`` plus sorting; nothing here is touched again by the
optimiser. Memory: ``8 (M + p + 1)^2`` bytes for the dense block, ``16`` bytes per pair
product, ``8 q_k q_1`` per pair; :func:`memory_estimate` adds what an evaluation and its
gradient hold and :func:`check_memory` raises before building something that cannot fit.
"""

import os
from dataclasses import dataclass
from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from mixedjax.core.compilation import on_device
from mixedjax.core.covariance import CovStructure
from mixedjax.design.sizeclass import theta_layout
from mixedjax.spec.terms import RandomTerm


@dataclass(frozen=True)
class CrossedStructure:
    """Static shape of a crossed model (hashable for ``jit``).

    Attributes:
        q: columns per term, in θ order (decreasing number of levels).
        n_levels: levels per term.
        p: number of fixed effects.
        small: per dense term (all but the first), whether it has at most
            :data:`SMALL_TERM` random effects; its Schur products are then formed from a
            dense ``(n_1, q_1, n_k, q_k)`` copy of ``Z_1'Z_k`` (cost ``nnz_l n_k``) instead
            of pair products.
    """

    def is_small(self, k: int) -> bool:
        """Whether dense term ``k`` (0-based, after the first) uses the small-term path."""
        return bool(self.small[k]) if self.small else False

    q: tuple[int, ...]
    n_levels: tuple[int, ...]
    p: int
    small: tuple[bool, ...] = ()

    @property
    def n_dense(self) -> int:
        """``M``: random effects handled by the dense block (all terms but the first)."""
        return sum(q * n for q, n in zip(self.q[1:], self.n_levels[1:], strict=True))

    @property
    def offsets(self) -> tuple[int, ...]:
        """Start of each dense term's columns in the dense block (``len(q) - 1`` entries)."""
        out, start = [], 0
        for q, n in zip(self.q[1:], self.n_levels[1:], strict=True):
            out.append(start)
            start += q * n
        return tuple(out)

    @property
    def n_theta(self) -> int:
        return sum(q * (q + 1) // 2 for q in self.q)

    def theta_slices(self) -> list[slice]:
        out, start = [], 0
        for q in self.q:
            out.append(slice(start, start + q * (q + 1) // 2))
            start += q * (q + 1) // 2
        return out

    def theta_layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(kind, diagonal, column)`` of ``θ`` as :class:`~mixedjax.design.sizeclass.FactorMap`
        has them: every entry belongs to a factor (kind 1); the index of its column's diagonal
        entry; an id per column of each term's factor."""
        parts = [theta_layout(CovStructure(q)) for q in self.q]  # each term: one factor L
        starts = [sl.start for sl in self.theta_slices()]
        kind = np.concatenate([p[0] for p in parts])
        diagonal = np.concatenate([p[1] + s for p, s in zip(parts, starts, strict=True)])
        column = np.concatenate([p[2] + k * max(self.q) for k, p in enumerate(parts)])
        return kind, diagonal.astype(np.int32), column.astype(np.int32)

    def diagonal_theta_mask(self) -> np.ndarray:
        """θ entries on the diagonal of each term's factor (standard-deviation-like)."""
        parts = []
        for q in self.q:
            upper_rows, upper_cols = np.triu_indices(q)
            parts.append(upper_cols == upper_rows)
        return np.concatenate(parts)


class CrossedData(NamedTuple):
    """Cross-products of a crossed model (a pytree; see the module docstring).

    Attributes:
        diag1: ``(n_1, q_1, q_1)`` per-level ``Z_1'Z_1``.
        w1: ``(n_1, q_1, p+1)`` per-level ``Z_1'[X y]``.
        pair_level: per dense term, ``(nnz_k,)`` its level in each pair.
        pair_level1: per dense term, ``(nnz_k,)`` the factor-1 level in each pair.
        pair_block: per dense term, ``(nnz_k, q_k, q_1)`` ``Z_k'Z_1`` blocks.
        prod_a, prod_b: per ``(k, l)`` with ``k ≥ l`` (row-major order), ``(P_kl,)`` pair
            indices of the pair products, sorted by target.
        prod_target: per ``(k, l)``, ``(P_kl,)`` flat target ``level_k * n_l + level_l``.
        prod_j: per ``(k, l)``, ``(P_kl,)`` the factor-1 level the two pairs share.
        prod_kernel: per ``(k, l)``, ``(P_kl, q_k, q_l, q_1, q_1)`` the fixed product
            ``B_a[r, c] B_b[s, d]`` of the two pairs' blocks (empty for a small term ``k``).
        small_dense: per dense term, ``(n_1, q_1, n_k, q_k)`` ``Z_1'Z_k`` per level of
            factor 1 for a small term (empty otherwise).
        dense: ``(M + p + 1, M + p + 1)`` ``[Z_D X y]'[Z_D X y]``.
        n_obs: ``()`` number of observations.
    """

    diag1: jnp.ndarray
    w1: jnp.ndarray
    pair_level: tuple
    pair_level1: tuple
    pair_block: tuple
    prod_a: tuple
    prod_b: tuple
    prod_target: tuple
    prod_j: tuple
    prod_kernel: tuple
    small_dense: tuple
    dense: jnp.ndarray
    n_obs: jnp.ndarray


def _segment_products(codes, n_seg, left, right) -> np.ndarray:
    """``out[s, a, b] = Σ_{t: codes_t = s} left[t, a] right[t, b]``: ``(n_seg, a, b)``."""
    out = np.empty((n_seg, left.shape[1], right.shape[1]))
    for a in range(left.shape[1]):  # loops over (few) columns only
        for b in range(right.shape[1]):
            out[:, a, b] = np.bincount(codes, weights=left[:, a] * right[:, b], minlength=n_seg)
    return out


class CrossedSums(NamedTuple):
    """Sums over the rows that :class:`CrossedData` is built from: additive over any split
    of the rows (so a model can be read in chunks, :mod:`mixedjax.model.chunked`).

    Terms ``t = 0..K-1`` in the model's order; ``W = [X y]`` (``p + 1`` columns).

    Attributes:
        term_zz: per term, ``(n_t, q_t, q_t)`` ``Z_t'Z_t`` per level (it is block diagonal).
        term_zw: per term, ``(n_t, q_t, p+1)`` ``Z_t'W`` per level.
        pair_keys: per ``(t, u)`` with ``t > u`` (row-major: (1,0), (2,0), (2,1), ...),
            ``(m,)`` sorted keys ``level_t * n_u + level_u`` of the levels that co-occur in a
            row where both terms' columns are not all zero.
        pair_blocks: per ``(t, u)``, ``(m, q_t, q_u)`` ``Z_t'Z_u`` of each such pair.
        wtw: ``(p+1, p+1)`` ``W'W``.
        n_obs: number of rows.
    """

    term_zz: tuple
    term_zw: tuple
    pair_keys: tuple
    pair_blocks: tuple
    wtw: np.ndarray
    n_obs: float


def term_pairs(n_terms: int) -> list[tuple[int, int]]:
    """The ``(t, u)``, ``t > u``, of :attr:`CrossedSums.pair_keys`, in their order."""
    return [(t, u) for t in range(n_terms) for u in range(t)]


def pair_sums(codes_t, design_t, codes_u, design_u, n_u: int) -> tuple[np.ndarray, np.ndarray]:
    """``(sorted keys (m,), blocks (m, q_t, q_u))`` of the co-occurring level pairs of two
    terms on the same rows (rows where either term's columns are all zero are skipped)."""
    nonzero = np.any(design_t != 0, axis=1) & np.any(design_u != 0, axis=1)
    keys = codes_t[nonzero].astype(np.int64) * n_u + codes_u[nonzero]
    uniq, inverse = np.unique(keys, return_inverse=True)
    blocks = _segment_products(inverse.ravel(), uniq.size, design_t[nonzero], design_u[nonzero])
    return uniq, blocks


def term_sums(terms: list[RandomTerm], exog: np.ndarray, endog: np.ndarray) -> CrossedSums:
    """:class:`CrossedSums` of ``terms`` (model order) on the rows of ``exog``, ``endog``."""
    W = np.column_stack([exog, endog])
    pairs = [
        pair_sums(terms[t].codes, terms[t].design, terms[u].codes, terms[u].design,
                  terms[u].n_levels)
        for t, u in term_pairs(len(terms))
    ]  # fmt: skip
    return CrossedSums(
        term_zz=tuple(_segment_products(t.codes, t.n_levels, t.design, t.design) for t in terms),
        term_zw=tuple(_segment_products(t.codes, t.n_levels, t.design, W) for t in terms),
        pair_keys=tuple(k for k, _ in pairs),
        pair_blocks=tuple(b for _, b in pairs),
        wtw=W.T @ W,
        n_obs=float(W.shape[0]),
    )


def _pairs_with_first(keys: np.ndarray, blocks: np.ndarray, n1: int):
    """The (level of a term, level of the first term) pairs sorted by the latter, then the
    former, with their ``(q_k, q_1)`` blocks."""
    level, level1 = keys // n1, keys % n1
    order = np.lexsort((level, level1))
    return level[order], level1[order], blocks[order]


def count_pair_products(level1_k: np.ndarray, level1_l: np.ndarray, n1: int) -> int:
    """``Σ_j c_k(j) c_l(j)``: the number of pair products of two terms (an upper bound
    for a term with itself, where only half are kept)."""
    ck = np.bincount(level1_k, minlength=n1).astype(np.int64)
    cl = np.bincount(level1_l, minlength=n1).astype(np.int64)
    return int(ck @ cl)


def _pair_products(level_k, level1_k, level_l, level1_l, n1, n_l, same: bool):
    """All ``(a, b)`` with ``level1_k[a] == level1_l[b]`` (both sorted by ``level1``);
    for a term with itself (``same``) only ``a <= b``: the block is ``Y + Y'``."""
    cl = np.bincount(level1_l, minlength=n1)
    start_l = np.concatenate([[0], np.cumsum(cl)[:-1]])
    reps = cl[level1_k]
    a = np.repeat(np.arange(level_k.size), reps)
    first = np.repeat(np.cumsum(reps) - reps, reps)
    b = start_l[level1_k][a] + (np.arange(a.size) - first)
    if same:
        a, b = a[a <= b], b[a <= b]
    target = level_k[a] * n_l + level_l[b]
    order = np.argsort(target, kind="stable")
    return a[order].astype(np.int32), b[order].astype(np.int32), target[order]


def _small_dense(pairs_k, n1: int, q1: int, n_k: int, q_k: int) -> np.ndarray:
    """``Z_1'Z_k`` per level of factor 1 as a dense ``(n_1, q_1, n_k, q_k)`` array, from the
    pairs ``(level_k, level_1, blocks (q_k, q_1))`` of term ``k`` with the first term."""
    level, level1, blocks = pairs_k
    out = np.zeros((n1, q1, n_k, q_k))
    out[level1, :, level, :] = blocks.transpose(0, 2, 1)
    return out


def _kernel(pairs, products, key) -> jnp.ndarray:
    """``B_a[r, c] B_b[s, d]`` per pair product; halved where ``a == b`` of one term (the
    block is then assembled as ``Y + Y'``)."""
    a, b = products[key][0], products[key][1]
    kernel = np.einsum("prc,psd->prscd", pairs[key[0]][2][a], pairs[key[1]][2][b])
    if key[0] == key[1]:
        kernel[a == b] *= 0.5
    return kernel


#: Dense terms with at most this many random effects (``n_k q_k``) use the small-term path.
SMALL_TERM = 64


def available_memory() -> int:
    """Bytes of memory available now (``MemAvailable`` on Linux, else physical memory)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def memory_estimate(structure: CrossedStructure, n_pairs, n_products) -> int:
    """Bytes held by the cross-products plus one evaluation with its gradient.

    Dense block: the cross-product, its scaled copy, the Cholesky factor and the reverse
    pass (about 6 copies of ``(M + p + 1)^2`` doubles). Pair products: indices (12 bytes)
    and values with their cotangents (3 x 8 ``q_k q_l`` bytes).
    """
    m = structure.n_dense + structure.p + 1
    q = structure.q
    total = 6 * 8 * m * m
    for k, nnz in enumerate(n_pairs):
        total += 4 * 8 * nnz * q[k + 1] * q[0] + 16 * nnz
    for (k, l), count in n_products.items():
        total += count * (16 + 4 * 8 * q[k + 1] * q[l + 1] * q[0] * q[0])
    return int(total)


def check_memory(structure: CrossedStructure, n_pairs, n_products, what: str = "") -> None:
    """Raise ``MemoryError``-like ``ValueError`` when the model would not fit in memory."""
    need = memory_estimate(structure, n_pairs, n_products)
    have = available_memory()
    if need > 0.8 * have:
        m = structure.n_dense + structure.p + 1
        raise ValueError(
            f"{what}the crossed random effects need about {need / 2**30:.1f} GiB "
            f"({need} bytes: a dense {m} x {m} Schur-complement block and "
            f"{sum(n_products.values())} sparse pair products) but only "
            f"{have / 2**30:.1f} GiB is available. The largest factor is handled level by "
            "level; the dense block holds the other factors' random effects (levels per "
            f"term: {structure.n_levels}), so it fits with fewer levels there."
        )


def crossed_crossprods(
    terms: list[RandomTerm], exog: np.ndarray, endog: np.ndarray
) -> tuple[CrossedStructure, CrossedData]:
    """Compute :class:`CrossedData` (terms already sorted by decreasing levels)."""
    q = tuple(t.q for t in terms)
    n_levels = tuple(t.n_levels for t in terms)
    return crossed_from_sums(term_sums(terms, exog, endog), q, n_levels)


def crossed_from_sums(
    sums: CrossedSums, q: tuple[int, ...], n_levels: tuple[int, ...]
) -> tuple[CrossedStructure, CrossedData]:
    """:class:`CrossedData` from the row sums of terms sorted by decreasing levels (term
    ``t`` has ``q[t]`` columns and ``n_levels[t]`` levels)."""
    n1 = n_levels[0]
    n_w = sums.wtw.shape[0]
    structure = CrossedStructure(
        q,
        n_levels,
        n_w - 1,
        tuple(n * k <= SMALL_TERM for n, k in zip(n_levels[1:], q[1:], strict=True)),
    )
    index = {pair: i for i, pair in enumerate(term_pairs(len(q)))}
    rest = range(1, len(q))
    pairs = [
        _pairs_with_first(sums.pair_keys[index[(t, 0)]], sums.pair_blocks[index[(t, 0)]], n1)
        for t in rest
    ]
    n_products = {}
    for k in range(len(pairs)):
        for l in range(k + 1):
            n_products[(k, l)] = count_pair_products(pairs[k][1], pairs[l][1], n1)
    check_memory(structure, [p[0].size for p in pairs], n_products)

    products = {}
    for k in range(len(pairs)):
        for l in range(k + 1):
            products[(k, l)] = _pair_products(
                pairs[k][0], pairs[k][1], pairs[l][0], pairs[l][1], n1, n_levels[l + 1], k == l
            )
    M = structure.n_dense
    dense = np.zeros((M + n_w, M + n_w))
    offsets = structure.offsets
    for k, t in enumerate(rest):
        sk = slice(offsets[k], offsets[k] + n_levels[t] * q[t])
        own = offsets[k] + np.arange(n_levels[t])[:, None] * q[t] + np.arange(q[t])  # (n_t, q_t)
        dense[own[:, :, None], own[:, None, :]] = sums.term_zz[t]  # block diagonal
        for l, u in enumerate(rest[:k]):
            keys, blocks = sums.pair_keys[index[(t, u)]], sums.pair_blocks[index[(t, u)]]
            level_t, level_u = keys // n_levels[u], keys % n_levels[u]
            rows = offsets[k] + level_t[:, None] * q[t] + np.arange(q[t])  # (m, q_t)
            cols = offsets[l] + level_u[:, None] * q[u] + np.arange(q[u])  # (m, q_u)
            dense[rows[:, :, None], cols[:, None, :]] = blocks
            dense[cols[:, :, None], rows[:, None, :]] = blocks.transpose(0, 2, 1)
        dense[sk, M:] = sums.term_zw[t].reshape(-1, n_w)
        dense[M:, sk] = dense[sk, M:].T
    dense[M:, M:] = sums.wtw
    data = on_device(
        CrossedData(
            diag1=np.asarray(sums.term_zz[0]),
            w1=np.asarray(sums.term_zw[0]),
            pair_level=tuple(np.asarray(p[0].astype(np.int32)) for p in pairs),
            pair_level1=tuple(np.asarray(p[1].astype(np.int32)) for p in pairs),
            pair_block=tuple(np.asarray(p[2]) for p in pairs),
            prod_a=tuple(np.asarray(products[key][0]) for key in sorted(products)),
            prod_b=tuple(np.asarray(products[key][1]) for key in sorted(products)),
            prod_target=tuple(
                np.asarray(products[key][2].astype(np.int32)) for key in sorted(products)
            ),
            prod_j=tuple(
                np.asarray(pairs[key[0]][1][products[key][0]].astype(np.int32))
                if not structure.is_small(key[0])
                else np.zeros(0, np.int32)
                for key in sorted(products)
            ),
            prod_kernel=tuple(
                _kernel(pairs, products, key)
                if not structure.is_small(key[0])
                else np.zeros((0, 1, 1, 1, 1))
                for key in sorted(products)
            ),
            small_dense=tuple(
                np.asarray(_small_dense(pairs[k], n1, q[0], n_levels[t], q[t]))
                if structure.is_small(k)
                else np.zeros(0)
                for k, t in enumerate(rest)
            ),
            dense=np.asarray(dense),
            n_obs=np.asarray(float(sums.n_obs)),
        )
    )
    return structure, data


class ResponseDesign(NamedTuple):
    """What the response cross-products of a crossed model need (device arrays, the working
    rows of :mod:`mixedjax.design.weights`).

    Attributes:
        designs: per term, ``(n, q_k)`` columns.
        codes: per term, ``(n,)`` level of each row.
        exog: ``(n, p)`` fixed-effects design.
    """

    designs: tuple
    codes: tuple
    exog: jnp.ndarray


def response_design(terms: list[RandomTerm], exog: np.ndarray) -> ResponseDesign:
    """:class:`ResponseDesign` of ``terms`` (sorted as the model's) and ``exog``."""
    return on_device(
        ResponseDesign(
            tuple(np.asarray(t.design) for t in terms),
            tuple(t.codes.astype(np.int32) for t in terms),
            np.asarray(exog),
        )
    )


def with_response(
    data: CrossedData, structure: CrossedStructure, design: ResponseDesign, y: jnp.ndarray
) -> CrossedData:
    """``data`` with the cross-products of another response ``y (n,)``: the last column of
    ``w1`` (``Z_1'y`` per level) and the last row and column of ``dense``
    (``[Z_D'y; X'y; y'y]``). Pure and vmappable over ``y``; nothing else depends on ``y``.
    """
    import jax

    sums = [
        jax.ops.segment_sum(d * y[:, None], c, num_segments=n)
        for d, c, n in zip(design.designs, design.codes, structure.n_levels, strict=True)
    ]
    column = jnp.concatenate([s.reshape(-1) for s in sums[1:]] + [design.exog.T @ y, (y @ y)[None]])
    dense = data.dense.at[:, -1].set(column).at[-1, :].set(column)
    return data._replace(w1=data.w1.at[:, :, -1].set(sums[0]), dense=dense)
