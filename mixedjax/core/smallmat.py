"""Small dense linear algebra in plain XLA operations, batched over any leading axes.

Per-group matrices in a mixed model are tiny (``r x r`` with ``r`` the number of random
effects per group, usually 1-16) and there are many of them (up to millions); the GLS system
``(p+1, p+1)`` and the Hessian ``(n_θ, n_θ)`` are small too, and ``vmap`` (``fit_many``, the
bootstrap, the functional API) batches them over fits. Every function here therefore works on
arrays of shape ``(..., r, r)`` and is written with XLA's own elementwise operations, matrix
products and loops, never with LAPACK custom calls:

* a batched LAPACK call costs more in per-matrix overhead than the arithmetic of a 4 x 4
  factorisation;
* jaxlib 0.10.0-0.10.2 deadlock on the CPU when two batched LAPACK calls run at the same time
  on XLA's intra-op thread pool (each waits for sub-tasks queued behind the other on the same
  pool; ``docs/jaxlib_lapack_deadlock.md``). A fit with 14 random effects per group hung for
  ever at 0% CPU this way.

For ``r <= UNROLL_MAX`` the factorisations are unrolled at trace time over the matrix entries
(every operation is elementwise over the batch, which XLA fuses); larger matrices use loops
over columns (``lax.fori_loop``), so the compiled graph does not grow with ``r``. Derivatives
do not go through those loops: :func:`cholesky` has its own JVP
(``L̇ = L Φ(L⁻¹ Ȧ L⁻ᵀ)``) and the triangular solves are :func:`jax.lax.custom_linear_solve`
calls, so gradients and Hessians (forward over reverse) cost a few more solves, not a
recording of every loop iteration.

Only unbatched matrices larger than :data:`PURE_MAX` (the crossed engine's dense Schur
complement, a GLS system with more than 64 fixed effects) go to LAPACK: with one matrix per
call there are no sub-tasks to wait for.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.linalg import solve_triangular

#: Largest matrix dimension for which the factorisations are unrolled (larger unrolled graphs,
#: differentiated twice for Hessians, took tens of seconds to compile).
UNROLL_MAX = 3
#: Largest dimension handled by the XLA loops for a *single* matrix (a batch always is, since
#: batched LAPACK calls can deadlock); above it one matrix goes to LAPACK.
PURE_MAX = 64


def _use_lapack(A: jnp.ndarray) -> bool:
    return A.ndim == 2 and A.shape[-1] > PURE_MAX


# ----------------------------------------------------------------------------- Cholesky


def cholesky(A: jnp.ndarray) -> jnp.ndarray:
    """Lower Cholesky factors ``L`` with ``L Lᵀ = A``; ``A`` ``(..., r, r)`` symmetric
    positive definite (only its lower triangle is read).

    Inside ``vmap`` the matrix looks unbatched but is one of many: it is factored by the XLA
    loop up to :data:`PURE_MAX` either way.

    Example:
        >>> import jax.numpy as jnp
        >>> A = jnp.array([[[4.0, 2.0], [2.0, 5.0]]])
        >>> cholesky(A).tolist()
        [[[2.0, 0.0], [1.0, 2.0]]]
    """
    r = A.shape[-1]
    if r == 0:
        return A
    if r <= UNROLL_MAX:
        return _cholesky_unrolled(A)
    if _use_lapack(A):
        return jnp.linalg.cholesky(A)
    return _cholesky_loop(A)


def _cholesky_unrolled(A):
    r = A.shape[-1]
    L = [[None] * r for _ in range(r)]
    for j in range(r):
        s = A[..., j, j]
        for k in range(j):
            s = s - L[j][k] ** 2
        d = jnp.sqrt(s)
        L[j][j] = d
        for i in range(j + 1, r):
            t = A[..., i, j]
            for k in range(j):
                t = t - L[i][k] * L[j][k]
            L[i][j] = t / d
    zero = jnp.zeros_like(A[..., 0, 0])
    rows = [jnp.stack([L[i][j] if j <= i else zero for j in range(r)], axis=-1) for i in range(r)]
    return jnp.stack(rows, axis=-2)


def _cholesky_columns(A, psd_tol=None):
    """Left-looking Cholesky, one column per loop iteration: ``v = A[:, j] - L L[j, :]ᵀ``
    (columns ``>= j`` of ``L`` still zero), ``L[j, j] = √v_j``, ``L[i, j] = v_i / L[j, j]``.
    With ``psd_tol``, a pivot below ``psd_tol`` times the largest diagonal entry gives a zero
    column (positive semi-definite ``A``)."""
    r = A.shape[-1]
    index = jnp.arange(r)
    scale = jnp.max(jnp.abs(jnp.diagonal(A, axis1=-2, axis2=-1)), axis=-1)[..., None]

    def column(j, L):
        v = jnp.take(A, j, axis=-1) - jnp.einsum("...ik,...k->...i", L, jnp.take(L, j, axis=-2))
        pivot = jnp.take(v, j, axis=-1)[..., None]
        ok = jnp.ones_like(pivot, bool) if psd_tol is None else pivot > psd_tol * scale
        d = jnp.sqrt(jnp.where(ok, pivot, 1.0))
        col = jnp.where(ok & (index > j), v / d, jnp.where(ok & (index == j), d, 0.0))
        return jnp.where(index == j, col[..., :, None], L)

    return jax.lax.fori_loop(0, r, column, jnp.zeros_like(A))


@jax.custom_jvp
def _cholesky_loop(A):
    return _cholesky_columns(A)


@_cholesky_loop.defjvp
def _cholesky_loop_jvp(primals, tangents):
    (A,), (A_dot,) = primals, tangents
    L = _cholesky_loop(A)
    A_dot = 0.5 * (A_dot + jnp.swapaxes(A_dot, -1, -2))
    # L⁻¹ Ȧ L⁻ᵀ, then Φ: lower triangle with the diagonal halved
    W = solve_lower(L, A_dot)
    X = solve_lower(L, jnp.swapaxes(W, -1, -2))
    r = A.shape[-1]
    phi = jnp.tril(X) - 0.5 * jnp.eye(r, dtype=X.dtype) * X
    return L, L @ phi


def psd_cholesky_batched(A: jnp.ndarray, tol: float = 1e-10) -> jnp.ndarray:
    """``W`` with ``W Wᵀ = A`` for positive *semi*-definite ``A`` ``(..., r, r)`` (a zero
    pivot, relative to the largest diagonal entry, gives a zero column). For data constants
    such as ``Z_i'Z_i`` (zero for padding groups); not differentiable.

    Example:
        >>> import jax.numpy as jnp
        >>> psd_cholesky_batched(jnp.array([[[4.0, 2.0], [2.0, 1.0]]])).tolist()
        [[[2.0, 0.0], [1.0, 0.0]]]
    """
    return _cholesky_columns(A, psd_tol=tol)


# ---------------------------------------------------------------------- triangular solves


def _matmul(L, X):
    return jnp.einsum("...ij,...jm->...im", L, X)


def _substitute(L, B, lower: bool, transpose: bool):
    """Forward (``L X = B``) or backward (``Lᵀ X = B``) substitution, one row per iteration;
    ``L`` lower triangular ``(..., r, r)``, ``B`` ``(..., r, m)``."""
    r = L.shape[-1]
    T = jnp.swapaxes(L, -1, -2) if transpose else L  # the triangular matrix actually solved
    index = jnp.arange(r)
    forward = lower != transpose

    def row(k, X):
        i = k if forward else r - 1 - k
        Ti = jnp.take(T, i, axis=-2)  # (..., r); X's rows not yet solved are still zero
        t = jnp.take(B, i, axis=-2) - jnp.einsum("...k,...km->...m", Ti, X)
        xi = t / jnp.take(Ti, i, axis=-1)[..., None]
        return jnp.where((index == i)[:, None], xi[..., None, :], X)

    return jax.lax.fori_loop(0, r, row, jnp.zeros_like(B))


def _triangular_solve(L, B, transpose: bool):
    """``L⁻¹ B`` (or ``L⁻ᵀ B``) with implicit derivatives (:func:`jax.lax.custom_linear_solve`)."""
    Lt = jnp.swapaxes(L, -1, -2)

    def matvec(X):
        return _matmul(Lt if transpose else L, X)

    def solve(_, b):
        return _substitute(L, b, lower=True, transpose=transpose)

    def transpose_solve(_, b):
        return _substitute(L, b, lower=True, transpose=not transpose)

    return jax.lax.custom_linear_solve(matvec, B, solve, transpose_solve)


def solve_lower(L: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """Solve ``L X = B`` for lower-triangular ``L (..., r, r)`` and ``B (..., r, m)``.

    Example:
        >>> import jax.numpy as jnp
        >>> L = jnp.array([[[2.0, 0.0], [1.0, 2.0]]])
        >>> solve_lower(L, jnp.array([[[2.0], [5.0]]])).tolist()
        [[[1.0], [2.0]]]
    """
    r = L.shape[-1]
    if r == 0:
        return B
    if r <= UNROLL_MAX:
        X = []
        for i in range(r):
            t = B[..., i, :]
            for k in range(i):
                t = t - L[..., i, k, None] * X[k]
            X.append(t / L[..., i, i, None])
        return jnp.stack(X, axis=-2)
    if _use_lapack(L):
        return solve_triangular(L, B, lower=True)
    return _triangular_solve(L, B, transpose=False)


def solve_upper_transposed(L: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """Solve ``Lᵀ X = B`` for lower-triangular ``L (..., r, r)`` and ``B (..., r, m)``.

    Example:
        >>> import jax.numpy as jnp
        >>> L = jnp.array([[[2.0, 0.0], [1.0, 2.0]]])
        >>> solve_upper_transposed(L, jnp.array([[[4.0], [4.0]]])).tolist()
        [[[1.0], [2.0]]]
    """
    r = L.shape[-1]
    if r == 0:
        return B
    if r <= UNROLL_MAX:
        X = [None] * r
        for i in reversed(range(r)):
            t = B[..., i, :]
            for k in range(i + 1, r):
                t = t - L[..., k, i, None] * X[k]
            X[i] = t / L[..., i, i, None]
        return jnp.stack(X, axis=-2)
    if _use_lapack(L):
        return solve_triangular(L, B, lower=True, trans="T")
    return _triangular_solve(L, B, transpose=True)


def inverse_lower(L: jnp.ndarray) -> jnp.ndarray:
    """``L⁻¹`` for lower-triangular ``L (..., r, r)``.

    Example:
        >>> import jax.numpy as jnp
        >>> inverse_lower(jnp.array([[2.0, 0.0], [1.0, 1.0]])).tolist()
        [[0.5, 0.0], [-0.5, 1.0]]
    """
    eye = jnp.broadcast_to(jnp.eye(L.shape[-1], dtype=L.dtype), L.shape)
    return solve_lower(L, eye)


def cho_solve(L: jnp.ndarray, B: jnp.ndarray) -> jnp.ndarray:
    """``A⁻¹ B`` given ``L`` with ``L Lᵀ = A``; ``B`` ``(..., r, m)``."""
    return solve_upper_transposed(L, solve_lower(L, B))


def log_diag_sum(L: jnp.ndarray) -> jnp.ndarray:
    """``sum(log(diag(L)))`` per batch item; ``(...,)``.

    Example:
        >>> import jax.numpy as jnp
        >>> float(log_diag_sum(jnp.array([[[1.0, 0.0], [5.0, 1.0]]]))[0])
        0.0
    """
    return jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)), axis=-1)


# ------------------------------------------------------------------ symmetric eigenproblem

#: Cyclic Jacobi sweeps allowed before :func:`eigh` stops (it converges quadratically: 6-10
#: sweeps reach rounding for the matrices met here).
JACOBI_MAX_SWEEPS = 30


def _round_robin(n: int) -> np.ndarray:
    """``(n-1, n/2, 2)`` index pairs (``n`` even): every pair once, each round a perfect
    matching, so a round's rotations touch disjoint rows and can be applied together."""
    players = list(range(n))
    rounds = []
    for _ in range(n - 1):
        rounds.append([sorted((players[i], players[n - 1 - i])) for i in range(n // 2)])
        players = [players[0], players[-1], *players[1:-1]]
    return np.asarray(rounds, dtype=np.int32)


def eigh(A: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Eigenvalues (ascending) and eigenvectors (columns) of symmetric ``A`` ``(..., n, n)``.

    Cyclic Jacobi with the round-robin ordering: each round applies ``n/2`` disjoint plane
    rotations as one orthogonal matrix ``J`` (``A ← JᵀAJ``, ``V ← VJ``), sweeps until the
    off-diagonal part is below rounding (at most :data:`JACOBI_MAX_SWEEPS`). Not
    differentiated (used for Newton steps); a single matrix above :data:`PURE_MAX` goes to
    LAPACK.

    Example:
        >>> import jax.numpy as jnp
        >>> w, V = eigh(jnp.array([[2.0, 1.0], [1.0, 2.0]]))
        >>> [round(float(x), 12) for x in w]
        [1.0, 3.0]
    """
    n = A.shape[-1]
    if _use_lapack(A):
        return jnp.linalg.eigh(A)
    A = jax.lax.stop_gradient(0.5 * (A + jnp.swapaxes(A, -1, -2)))
    m = n + n % 2  # pad to even size with a decoupled zero row and column
    if m != n:
        A = jnp.pad(A, [(0, 0)] * (A.ndim - 2) + [(0, 1), (0, 1)])
    pairs = jnp.asarray(_round_robin(m)) if m > 1 else jnp.zeros((0, 0, 2), jnp.int32)
    eye = jnp.eye(m, dtype=A.dtype)
    V0 = jnp.broadcast_to(eye, A.shape)
    scale = jnp.sqrt(jnp.sum(A * A, axis=(-2, -1)))
    tol = (jnp.finfo(A.dtype).eps * 0.5) * jnp.maximum(scale, jnp.finfo(A.dtype).tiny)

    def rotate(k, state):
        A, V = state
        p, q = pairs[k, :, 0], pairs[k, :, 1]
        app, aqq, apq = A[..., p, p], A[..., q, q], A[..., p, q]
        rotate_pair = jnp.abs(apq) > 0
        tau = (aqq - app) / (2.0 * jnp.where(rotate_pair, apq, 1.0))
        t = jnp.where(tau >= 0, 1.0, -1.0) / (jnp.abs(tau) + jnp.sqrt(1.0 + tau * tau))
        t = jnp.where(rotate_pair, t, 0.0)
        c = 1.0 / jnp.sqrt(1.0 + t * t)
        s = t * c
        J = jnp.broadcast_to(eye, A.shape)
        J = J.at[..., p, p].set(c).at[..., q, q].set(c).at[..., p, q].set(s).at[..., q, p].set(-s)
        A = jnp.einsum("...ji,...jk,...kl->...il", J, A, J)
        return A, _matmul(V, J)

    def off_norm(A):
        off = A - A * eye
        return jnp.sqrt(jnp.sum(off * off, axis=(-2, -1)))

    def sweep_cond(state):
        A, _, k = state
        return (k < JACOBI_MAX_SWEEPS) & jnp.any(off_norm(A) > tol)

    def sweep(state):
        A, V, k = state
        A, V = jax.lax.fori_loop(0, pairs.shape[0], rotate, (A, V))
        return A, V, k + 1

    if m > 1:
        A, V, _ = jax.lax.while_loop(sweep_cond, sweep, (A, V0, jnp.asarray(0)))
    else:
        V = V0
    w = jnp.diagonal(A, axis1=-2, axis2=-1)[..., :n]
    V = V[..., :n, :n]
    order = jnp.argsort(w, axis=-1)
    w = jnp.take_along_axis(w, order, axis=-1)
    V = jnp.take_along_axis(V, order[..., None, :], axis=-1)
    return w, V


# ------------------------------------------------------------- entry-by-entry (group last)


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
