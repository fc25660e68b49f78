"""Independent oracles for the reliability tests: dense numpy linear mixed models.

Everything here forms ``V = σ²(I + Z G₁ Z')`` for all ``n`` rows and works with it directly
(no per-group cross-products, no JAX), so it shares no code with mixedjax's kernels.
"""

import numpy as np

LOG_2PI = np.log(2.0 * np.pi)


def dense_z(exog_re: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Block design ``(n, n_groups * q)``: row ``i`` holds ``exog_re[i]`` in its group's block."""
    n, q = exog_re.shape
    Z = np.zeros((n, n_groups * q))
    for j in range(q):
        Z[np.arange(n), codes * q + j] = exog_re[:, j]
    return Z


def dense_loglike(y, X, exog_re, codes, n_groups, cov_re1, reml, beta=None):
    """Log-likelihood (restricted if ``reml``) with σ² (and β unless given) profiled out.

    ``cov_re1`` is the profile-scale ``Ψ₁ = Ψ/σ²``. Returns ``(llf, beta, sigma2)``.

    .. math::
        ℓ_{ML} = -\\tfrac12[n \\log 2π + \\log|V| + r'V^{-1}r], \\quad
        ℓ_{REML} = -\\tfrac12[(n-p)\\log 2π + \\log|V| + \\log|X'V^{-1}X| + r'V^{-1}r]
    """
    n, p = X.shape
    Z = dense_z(exog_re, codes, n_groups)
    G1 = np.kron(np.eye(n_groups), cov_re1)
    V1 = np.eye(n) + Z @ G1 @ Z.T
    V1_inv = np.linalg.inv(V1)
    XtVX = X.T @ V1_inv @ X
    if beta is None:
        beta = np.linalg.solve(XtVX, X.T @ V1_inv @ y)
    r = y - X @ beta
    quad = r @ V1_inv @ r
    dof = n - p if reml else n
    sigma2 = quad / dof
    V = sigma2 * V1
    _, logdet_V = np.linalg.slogdet(V)
    quad_V = r @ np.linalg.solve(V, r)
    if reml:
        _, logdet_XVX = np.linalg.slogdet(X.T @ np.linalg.solve(V, X))
        return -0.5 * ((n - p) * LOG_2PI + logdet_V + logdet_XVX + quad_V), beta, sigma2
    return -0.5 * (n * LOG_2PI + logdet_V + quad_V), beta, sigma2


def dense_loglike_user(y, X, exog_re, codes, n_groups, beta, cov_re, scale, reml):
    """Log-density at user-scale parameters ``(β, Ψ, σ²)`` (no profiling)."""
    n, p = X.shape
    Z = dense_z(exog_re, codes, n_groups)
    V = scale * np.eye(n) + Z @ np.kron(np.eye(n_groups), cov_re) @ Z.T
    r = y - X @ beta
    _, logdet_V = np.linalg.slogdet(V)
    quad = r @ np.linalg.solve(V, r)
    if reml:
        _, logdet_XVX = np.linalg.slogdet(X.T @ np.linalg.solve(V, X))
        return -0.5 * ((n - p) * LOG_2PI + logdet_V + logdet_XVX + quad)
    return -0.5 * (n * LOG_2PI + logdet_V + quad)


def simulate(rng, sizes, cov_re, beta, scale=1.0, x_scale=1.0):
    """Random-intercept-and-slope data: ``y = Xβ + Z b_g + ε`` with ``X = Z = [1, x]``.

    Returns ``(y (n,), X (n, 2), codes (n,))``; groups are ``0..len(sizes)-1``.
    """
    codes = np.repeat(np.arange(len(sizes)), sizes)
    n = codes.size
    x = x_scale * rng.normal(size=n)
    X = np.column_stack([np.ones(n), x])
    w, v = np.linalg.eigh(cov_re)  # works for singular Ψ too
    L = v * np.sqrt(np.maximum(w, 0.0))
    b = rng.normal(size=(len(sizes), 2)) @ L.T
    y = X @ beta + np.einsum("nj,nj->n", X, b[codes]) + np.sqrt(scale) * rng.normal(size=n)
    return y, X, codes
