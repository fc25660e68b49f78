"""Batched linear algebra on many small matrices.

Per-group matrices in a mixed model are tiny (``r x r`` with ``r`` the number of random
effects per group, usually 1-4) and there are many of them (up to millions). Calling LAPACK
once per matrix is dominated by overhead, so for small ``r`` the factorisations below are
unrolled at trace time over the matrix dimension: every operation is an elementwise
operation on a ``(n_groups,)`` vector, which XLA fuses into a handful of loops over the
groups. Larger matrices fall back to ``jnp.linalg``.

All functions take a leading batch axis: ``A`` has shape ``(batch, r, r)``.
"""

import jax.numpy as jnp
from jax.scipy.linalg import solve_triangular

#: Largest matrix dimension for which the factorisations are unrolled (larger unrolled graphs,
#: differentiated twice for Hessians, took tens of seconds to compile).
UNROLL_MAX = 3


def cholesky(A: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factors ``L`` with ``L @ L.T == A`` for a batch ``(batch, r, r)``.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[[4.0, 2.0], [2.0, 5.0]]])
        >>> cholesky(A).tolist()
        [[[2.0, 0.0], [1.0, 2.0]]]
    """
    r = A.shape[-1]
    if r > UNROLL_MAX:
        return jnp.linalg.cholesky(A)
    L = [[None] * r for _ in range(r)]
    for j in range(r):
        s = A[:, j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        d = jnp.sqrt(s)
        L[j][j] = d
        for i in range(j + 1, r):
            t = A[:, i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / d
    zero = jnp.zeros_like(A[:, 0, 0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(r)], axis=-1) for i in range(r)]
    return jnp.stack(rows, axis=-2)


def solve_lower(L: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """Solve ``L X = B`` for lower-triangular ``L (batch, r, r)`` and ``B (batch, r, m)``.

    Example:
        >>> import jax.numpy as jnp
        >>> L = jnp.array([[[2.0, 0.0], [1.0, 2.0]]])
        >>> solve_lower(L, jnp.array([[[2.0], [5.0]]])).tolist()
        [[[1.0], [2.0]]]
    """
    r = L.shape[-1]
    if r > UNROLL_MAX:
        return solve_triangular(L, B, lower=True)
    X = []
    for i in range(r):
        t = B[:, i, :]
        for k in range(i):
            t = t - L[:, i, k, None] * X[k]
        X.append(t / L[:, i, i, None])
    return jnp.stack(X, axis=-2)


def solve_upper_transposed(L: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """Solve ``L.T X = B`` for lower-triangular ``L (batch, r, r)`` and ``B (batch, r, m)``.

    Example:
        >>> import jax.numpy as jnp
        >>> L = jnp.array([[[2.0, 0.0], [1.0, 2.0]]])
        >>> solve_upper_transposed(L, jnp.array([[[4.0], [4.0]]])).tolist()
        [[[1.0], [2.0]]]
    """
    r = L.shape[-1]
    if r > UNROLL_MAX:
        return solve_triangular(L, B, lower=True, trans="T")
    X = [None] * r
    for i in reversed(range(r)):
        t = B[:, i, :]
        for k in range(i + 1, r):
            t = t - L[:, k, i, None] * X[k]
        X[i] = t / L[:, i, i, None]
    return jnp.stack(X, axis=-2)


def log_diag_sum(L: jnp.ndarray) -> jnp.ndarray:
    """``sum(log(diag(L)))`` per batch item; ``(batch,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(log_diag_sum(jnp.array([[[1.0, 0.0], [5.0, 1.0]]]))[0])
        0.0
    """
    return jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


def entries(A: jnp.ndarray) -> list[list[jnp.ndarray]]:
    """``A (batch, r, c)`` as nested lists ``[i][j]`` of ``(batch,)`` vectors (group axis last)."""
    At = jnp.moveaxis(A, 0, -1)
    return [[At[i, j] for j in range(A.shape[2])] for i in range(A.shape[1])]


def cholesky_entries(A: list[list[jnp.ndarray]]) -> list[list[jnp.ndarray]]:
    """Lower Cholesky factor of a batch given entry by entry (see :func:`entries`)."""
    r = len(A)
    L = [[None] * r for _ in range(r)]
    for j in range(r):
        s = A[j][j]
        for k in range(j):
            s = s - L[j][k] ** 2
        L[j][j] = jnp.sqrt(s)
        for i in range(j + 1, r):
            t = A[i][j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / L[j][j]
    return L


def solve_lower_entries(L, B):
    """Solve ``L X = B`` entry by entry; ``L`` from :func:`cholesky_entries`, ``B`` ``[r][m]``."""
    X = []
    for i in range(len(L)):
        row = []
        for c in range(len(B[i])):
            t = B[i][c]
            for k in range(i):
                t = t - L[i][k] * X[k][c]
            row.append(t / L[i][i])
        X.append(row)
    return X
