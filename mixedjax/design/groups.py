"""Per-group cross-products: the only pass over the rows.

For group ``i`` with random-effects design ``Z_i (n_i, r)``, fixed-effects design
``X_i (n_i, p)`` and response ``y_i (n_i,)``, everything the likelihood needs is

.. math::
    Z_i'Z_i \\; (r, r), \\quad Z_i'X_i \\; (r, p), \\quad Z_i'y_i \\; (r,),
    \\qquad X'X, \\; X'y, \\; y'y \\text{ (totals)}.

They are computed once, here, with vectorised segment sums (``np.bincount`` over the group
codes): no loop over groups or rows. Every likelihood evaluation afterwards costs
``O(n_groups r^3 + n_groups r^2 p)`` and nothing proportional to ``n``. Groups never need
row padding; a group with no rows has zero cross-products and contributes nothing, which is
what makes padding the group axis (to reuse compiled code) free.

Variance components (statsmodels' ``exog_vc``) add columns to ``Z_i`` that are local to the
group: a component whose global design has ``K`` columns (e.g. one indicator per cask) only
uses the few columns that are non-zero within a group. :func:`localize_columns` maps them to
``k_max`` local columns per group.
"""

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np

from mixedjax.core.compilation import on_device


class GroupedData(NamedTuple):
    """Per-group cross-products (a pytree; all float64 unless built otherwise).

    Attributes:
        ZtZ: ``(n_groups, r, r)`` per-group ``Z_i'Z_i``.
        ZtX: ``(n_groups, r, p)`` per-group ``Z_i'X_i``.
        Zty: ``(n_groups, r)`` per-group ``Z_i'y_i``.
        XtX: ``(p, p)`` total ``X'X``.
        Xty: ``(p,)`` total ``X'y``.
        yty: ``()`` total ``y'y``.
        n_obs: ``()`` number of observations (float, so it can be traced).

    Example:
        >>> import numpy as np
        >>> codes = np.array([0, 0, 1, 1, 1])
        >>> y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> X = np.ones((5, 1))
        >>> data = group_crossprods(y, X, X, codes, n_groups=2)
        >>> data.ZtZ.shape, data.ZtX.shape, data.Zty.tolist(), float(data.n_obs)
        ((2, 1, 1), (2, 1, 1), [[3.0], [12.0]], 5.0)
    """

    ZtZ: jnp.ndarray
    ZtX: jnp.ndarray
    Zty: jnp.ndarray
    XtX: jnp.ndarray
    Xty: jnp.ndarray
    yty: jnp.ndarray
    n_obs: jnp.ndarray


def group_crossprods(
    endog: np.ndarray, exog: np.ndarray, exog_z: np.ndarray, group_codes: np.ndarray, n_groups: int
) -> GroupedData:
    """Compute :class:`GroupedData` from row-level arrays.

    Args:
        endog: ``(n,)`` response.
        exog: ``(n, p)`` fixed-effects design.
        exog_z: ``(n, r)`` random-effects design, local columns (see module docstring).
        group_codes: ``(n,)`` integer group of each row, in ``[0, n_groups)``.
        n_groups: number of groups (may exceed the largest code: trailing empty groups).

    Example:
        >>> import numpy as np
        >>> codes = np.array([0, 0, 1, 1, 1])
        >>> y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> X = np.ones((5, 1))
        >>> data = group_crossprods(y, X, X, codes, n_groups=2)
        >>> data.ZtZ[:, 0, 0].tolist(), float(data.yty)
        ([2.0, 3.0], 55.0)
    """
    n, r = exog_z.shape
    p = exog.shape[1]
    ZtZ = np.empty((n_groups, r, r))
    ZtX = np.empty((n_groups, r, p))
    Zty = np.empty((n_groups, r))

    def segment_sum(values: np.ndarray) -> np.ndarray:
        return np.bincount(group_codes, weights=values, minlength=n_groups)

    # Loops below run over the (few) columns of the design, never over groups or rows.
    for a in range(r):
        za = exog_z[:, a]
        for b in range(a, r):
            ZtZ[:, a, b] = ZtZ[:, b, a] = segment_sum(za * exog_z[:, b])
        for b in range(p):
            ZtX[:, a, b] = segment_sum(za * exog[:, b])
        Zty[:, a] = segment_sum(za * endog)
    host = GroupedData(ZtZ, ZtX, Zty, exog.T @ exog, exog.T @ endog, endog @ endog, float(n))
    return on_device(host)


def pad_groups(data: GroupedData, n_groups: int) -> GroupedData:
    """Append empty groups (zero cross-products) so the group axis has length ``n_groups``.

    Example:
        >>> import numpy as np
        >>> codes = np.array([0, 0, 1, 1, 1])
        >>> y = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
        >>> X = np.ones((5, 1))
        >>> data = pad_groups(group_crossprods(y, X, X, codes, n_groups=2), 8)
        >>> data.ZtZ.shape, data.ZtZ[2:, 0, 0].tolist()
        ((8, 1, 1), [0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
    """
    extra = n_groups - data.ZtZ.shape[0]
    if extra < 0:
        raise ValueError(f"n_groups={n_groups} is smaller than the data's {data.ZtZ.shape[0]}")
    if extra == 0:
        return data

    def pad(a):
        a = np.asarray(a)
        return np.concatenate([a, np.zeros((extra,) + a.shape[1:], a.dtype)])

    return data._replace(**on_device(dict(ZtZ=pad(data.ZtZ), ZtX=pad(data.ZtX), Zty=pad(data.Zty))))


class LocalColumns(NamedTuple):
    """A variance component's design mapped to per-group local columns.

    Attributes:
        values: ``(n, k_max)`` the row's entries in its group's local columns.
        global_column: ``(n_groups, k_max)`` global column behind each local column, ``-1``
            for padding.

    Example:
        >>> import numpy as np
        >>> design = np.eye(4)[[0, 1, 2, 3]]          # one indicator column per row
        >>> local = localize_columns(design, np.array([0, 0, 1, 1]), n_groups=2)
        >>> local.values.shape, local.global_column.tolist()
        ((4, 2), [[0, 1], [2, 3]])
    """

    values: np.ndarray
    global_column: np.ndarray


def localize_columns(design: np.ndarray, group_codes: np.ndarray, n_groups: int) -> LocalColumns:
    """Map a ``(n, K)`` design to the ``k_max`` columns each group actually uses.

    Local column ``j`` of group ``i`` is the ``j``-th (in global order) column that has a
    non-zero entry in a row of group ``i``.

    Example:
        >>> import numpy as np
        >>> design = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1]])
        >>> local = localize_columns(design, np.array([0, 0, 1, 1]), n_groups=2)
        >>> local.values.tolist(), local.global_column.tolist()
        ([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]], [[0, 1], [2, -1]])
    """
    design = np.asarray(design, dtype=float)
    n, K = design.shape
    rows, cols = np.nonzero(design)
    if rows.size == 0:
        return LocalColumns(np.zeros((n, 1)), np.full((n_groups, 1), -1))
    keys = group_codes[rows].astype(np.int64) * K + cols
    unique_keys, key_index = np.unique(keys, return_inverse=True)
    key_group = unique_keys // K
    first_of_group = np.searchsorted(key_group, key_group, side="left")
    local = np.arange(unique_keys.size) - first_of_group
    k_max = int(local.max()) + 1
    values = np.zeros((n, k_max))
    np.add.at(values, (rows, local[key_index]), design[rows, cols])
    global_column = np.full((n_groups, k_max), -1, dtype=np.int64)
    global_column[key_group, local] = unique_keys % K
    return LocalColumns(values, global_column)
