"""Pure-XLA small linear algebra (``mixedjax.core.smallmat``) against numpy's LAPACK.

Oracles: ``np.linalg`` for values; ``jnp.linalg`` (LAPACK and JAX's own derivative rules)
for gradients and Hessian-vector products (forward over reverse, as the Newton polish uses).
Sizes cover the unrolled path (r <= 3) and the loop path (r = 4, 7, 14). Tolerances: values
1e-12 relative to the matrix scale, derivatives 1e-9.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mixedjax.core import smallmat

SIZES = (1, 2, 3, 4, 7, 14)


def _spd(r, batch=5, seed=0):
    rng = np.random.default_rng(seed + r)
    G = rng.normal(size=(batch, r, r))
    return G @ np.swapaxes(G, 1, 2) + r * np.eye(r), rng.normal(size=(batch, r, 3))


def _sym(M):
    return M + np.swapaxes(M, -1, -2)


@pytest.mark.parametrize("r", SIZES)
def test_factorisations_and_solves_match_lapack(r):
    A, B = _spd(r)
    L = smallmat.cholesky(jnp.asarray(A))
    L0 = np.linalg.cholesky(A)
    np.testing.assert_allclose(L, L0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(smallmat.solve_lower(L, B), np.linalg.solve(L0, B), atol=1e-12)
    np.testing.assert_allclose(
        smallmat.solve_upper_transposed(L, B),
        np.linalg.solve(np.swapaxes(L0, 1, 2), B),
        atol=1e-12,
    )
    np.testing.assert_allclose(smallmat.cho_solve(L, B), np.linalg.solve(A, B), atol=1e-12)
    np.testing.assert_allclose(smallmat.psd_cholesky_batched(jnp.asarray(A)), L0, atol=1e-12)
    # one matrix, and the same under vmap
    np.testing.assert_allclose(smallmat.cholesky(jnp.asarray(A[0])), L0[0], atol=1e-12)
    np.testing.assert_allclose(jax.vmap(smallmat.cholesky)(A), L0, atol=1e-12)


@pytest.mark.parametrize("r", (2, 4, 14))
def test_derivatives_match_jax_lapack_rules(r):
    A, B = _spd(r, seed=1)

    def ours(A):
        L = smallmat.cholesky(A)
        return jnp.sum(smallmat.log_diag_sum(L)) + jnp.sum(smallmat.cho_solve(L, B) ** 2)

    def reference(A):
        L = jnp.linalg.cholesky(A)
        logdet = jnp.sum(jnp.log(jnp.diagonal(L, axis1=-2, axis2=-1)))
        return logdet + jnp.sum(jnp.linalg.solve(A, B) ** 2)

    # the unrolled factorisation reads the lower triangle only: compare symmetrised gradients
    def grad_and_hvp(f):
        return jax.jit(lambda A, V: (jax.grad(f)(A), jax.jvp(jax.grad(f), (A,), (V,))[1]))

    V = _sym(np.random.default_rng(r).normal(size=A.shape))
    g, hv = grad_and_hvp(ours)(A, V)
    g0, hv0 = grad_and_hvp(reference)(A, V)
    np.testing.assert_allclose(_sym(g), _sym(g0), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(_sym(hv), _sym(hv0), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "n",
    (1, 2, pytest.param(3, marks=pytest.mark.slow), pytest.param(9, marks=pytest.mark.slow), 20),
)
def test_eigh_matches_lapack_on_indefinite_matrices(n):
    rng = np.random.default_rng(n)
    A = _sym(rng.normal(size=(4, n, n)))
    w, V = smallmat.eigh(jnp.asarray(A))
    np.testing.assert_allclose(w, np.linalg.eigvalsh(A), rtol=1e-12, atol=1e-12 * n)
    np.testing.assert_allclose(V @ (np.asarray(w)[..., None] * np.swapaxes(V, 1, 2)), A, atol=1e-11)
    np.testing.assert_allclose(
        np.swapaxes(V, 1, 2) @ V, np.broadcast_to(np.eye(n), A.shape), atol=1e-12
    )
    w1, _ = smallmat.eigh(jnp.asarray(A[0]))  # unbatched
    np.testing.assert_allclose(w1, np.linalg.eigvalsh(A[0]), atol=1e-12 * n)


def test_eigh_of_diagonal_and_repeated_eigenvalues():
    w, V = smallmat.eigh(jnp.diag(jnp.array([3.0, 1.0, 2.0, 0.0])))
    assert w.tolist() == [0.0, 1.0, 2.0, 3.0]
    w, _ = smallmat.eigh(jnp.ones((5, 5)))  # eigenvalues 0 (four times) and 5
    np.testing.assert_allclose(w, [0, 0, 0, 0, 5], atol=1e-12)


def test_psd_cholesky_of_singular_and_zero_matrices():
    A = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 9.0]])  # rank 2
    W = np.asarray(smallmat.psd_cholesky_batched(jnp.asarray(A[None])))[0]
    np.testing.assert_allclose(W @ W.T, A, atol=1e-12)
    assert np.all(smallmat.psd_cholesky_batched(jnp.zeros((2, 4, 4))) == 0)  # padding groups
