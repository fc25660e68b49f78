"""Rows of a one-factor GLMM laid out by group: ``(n_groups, n_max)`` padded arrays.

A GLMM's likelihood does not reduce to cross-products (the weights depend on the random
effects), so the conditional-mode problems need the rows themselves. Each group's rows are
put in one slice of a padded array so that one group's Newton problem can be written for
its ``(n_max,)`` rows and ``vmap``-ped over groups. Padding rows have prior weight 0 (they
add nothing to any log-likelihood, weight or gradient), a response of 0 and zero designs.

Padding costs ``n_groups * n_max - n`` wasted rows: nothing for balanced designs, and at
most the ratio of the largest group to the mean group for unbalanced ones.
"""

from typing import NamedTuple

import numpy as np


class GroupedRows(NamedTuple):
    """Row-level data by group (a pytree; float64).

    Attributes:
        y: ``(n_groups, n_max)`` response (binomial: the proportion of successes).
        weights: ``(n_groups, n_max)`` prior weights (binomial: the number of trials); 0 on
            padding rows.
        offset: ``(n_groups, n_max)`` known part of the linear predictor.
        X: ``(n_groups, n_max, p)`` fixed-effects design.
        Z: ``(n_groups, n_max, r)`` random-effects design of the group's ``r`` effects.
        dispersion: ``φ`` (scalar): 1 for the binomial and Poisson; the fit sets it for the
            Gamma and inverse Gaussian families, whose ``θ, β`` and ``φ`` are estimated
            together.

    Example:
        >>> import numpy as np
        >>> rows, index = group_rows(np.array([1.0, 0.0, 1.0]), np.ones(3), np.zeros(3),
        ...                          np.ones((3, 1)), np.ones((3, 1)), np.array([1, 0, 1]), 2)
        >>> rows.y.tolist(), index.tolist()
        ([[0.0, 0.0], [1.0, 1.0]], [[1, -1], [0, 2]])
    """

    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    X: np.ndarray
    Z: np.ndarray
    dispersion: np.ndarray = np.float64(1.0)


def group_rows(
    y: np.ndarray,
    weights: np.ndarray,
    offset: np.ndarray,
    X: np.ndarray,
    Z: np.ndarray,
    codes: np.ndarray,
    n_groups: int,
) -> tuple[GroupedRows, np.ndarray]:
    """Scatter row arrays into :class:`GroupedRows` (rows keep their order within a group).

    Args:
        y, weights, offset: ``(n,)``.
        X: ``(n, p)``; Z: ``(n, r)``.
        codes: ``(n,)`` group of each row in ``[0, n_groups)``.
        n_groups: number of groups.

    Returns:
        ``(rows, row_index)`` with ``row_index (n_groups, n_max)`` the original row of each
        slot (``-1`` for padding), to map per-slot results back to rows.
    """
    codes = np.asarray(codes, dtype=np.int64)
    n = codes.size
    counts = np.bincount(codes, minlength=n_groups)
    n_max = max(int(counts.max(initial=0)), 1)
    order = np.argsort(codes, kind="stable")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.arange(n) - starts[codes[order]]
    group = codes[order]
    row_index = np.full((n_groups, n_max), -1, dtype=np.int64)
    row_index[group, slot] = order

    def scatter(values, trailing=()):
        out = np.zeros((n_groups, n_max) + trailing)
        out[group, slot] = np.asarray(values, dtype=float)[order]
        return out

    rows = GroupedRows(
        y=scatter(y),
        weights=scatter(weights),
        offset=scatter(offset),
        X=scatter(X, (X.shape[1],)),
        Z=scatter(Z, (Z.shape[1],)),
    )
    return rows, row_index
