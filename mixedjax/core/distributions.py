"""Tail probabilities and quantiles of the t, F, χ² and normal distributions (JAX only).

SciPy is not a runtime dependency, so the few distribution functions inference needs are
written with ``jax.scipy.special``:

.. math::
    P(|T_ν| > t) = I_{ν/(ν+t^2)}(ν/2, 1/2), \\qquad
    P(F_{d_1,d_2} > f) = I_{d_2/(d_2+d_1 f)}(d_2/2, d_1/2), \\qquad
    P(χ^2_k > x) = Q(k/2, x/2),

with ``I`` the regularised incomplete beta function (``betainc``) and ``Q`` the regularised
upper incomplete gamma function (``gammaincc``). ``ν = inf`` gives the normal limit. The t
quantile is found by bisection on ``log t`` inside ``lax.fori_loop`` (monotone, so it always
converges; 200 halvings of ``[1e-12, 1e12]`` leave a relative error below 1e-15).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, gammaincc, ndtr, ndtri


def _as_arrays(*values):
    return [jnp.asarray(v, dtype=jnp.float64) for v in values]


def _bucketed(fn, *values) -> np.ndarray:
    """``fn`` on broadcast, flattened inputs padded to a power-of-two length (>= 8), so a
    handful of compiled shapes serve every call."""
    arrays = np.broadcast_arrays(*[np.asarray(v, dtype=float) for v in values])
    shape = arrays[0].shape
    n = max(arrays[0].size, 1)
    size = max(8, 1 << (n - 1).bit_length())
    padded = [np.resize(np.ravel(a) if a.size else np.ones(1), size) for a in arrays]
    out = np.asarray(fn(*[jnp.asarray(a) for a in padded]))
    return out[: arrays[0].size].reshape(shape)


@jax.jit
def _t_two_sided(t, df):
    t2 = t * t
    finite = jnp.isfinite(df)
    safe_df = jnp.where(finite, df, 1.0)
    p_t = betainc(0.5 * safe_df, 0.5, safe_df / (safe_df + t2))
    p_norm = 2.0 * ndtr(-jnp.abs(t))
    return jnp.where(finite, p_t, p_norm)


def t_sf_two_sided(t, df) -> np.ndarray:
    """Two-sided p-value ``P(|T_df| > |t|)`` (``df = inf``: standard normal)."""
    return _bucketed(_t_two_sided, t, df)


def _t_ppf_upper(alpha_two_sided, df):
    """``t > 0`` with ``P(|T| > t) = alpha_two_sided`` by bisection on ``log t``."""
    lo = jnp.full(jnp.broadcast_shapes(alpha_two_sided.shape, df.shape), jnp.log(1e-12))
    hi = jnp.full_like(lo, jnp.log(1e12))

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        too_small = _t_two_sided(jnp.exp(mid), df) > alpha_two_sided  # tail too heavy
        return jnp.where(too_small, mid, lo), jnp.where(too_small, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 200, body, (lo, hi))
    return jnp.exp(0.5 * (lo + hi))


def t_ppf(q, df) -> np.ndarray:
    """Quantile ``t_q`` of the t distribution with ``df`` degrees of freedom (``inf``: normal).

    Example:
        >>> round(float(t_ppf(0.975, 10)), 6)
        2.228139
    """
    q = np.asarray(q, dtype=float)
    if np.any((q <= 0) | (q >= 1)):
        raise ValueError("q must lie strictly between 0 and 1")
    return _bucketed(_t_ppf, q, df)


@jax.jit
def _t_ppf(q, df):
    upper = jnp.where(q > 0.5, 1.0 - q, q)  # one-sided tail beyond |t|
    magnitude = _t_ppf_upper(2.0 * upper, jnp.where(jnp.isfinite(df), df, 1.0))
    magnitude = jnp.where(jnp.isfinite(df), magnitude, -ndtri(upper))
    return jnp.where(q > 0.5, magnitude, jnp.where(q < 0.5, -magnitude, 0.0))


@jax.jit
def _f_sf(f, df1, df2):
    finite = jnp.isfinite(df2)
    safe_df2 = jnp.where(finite, df2, 1.0)
    x = safe_df2 / (safe_df2 + df1 * jnp.maximum(f, 0.0))
    p_f = betainc(0.5 * safe_df2, 0.5 * df1, x)
    p_chi2 = gammaincc(0.5 * df1, 0.5 * df1 * jnp.maximum(f, 0.0))
    return jnp.where(finite, p_f, p_chi2)


def f_sf(f, df1, df2) -> np.ndarray:
    """Upper tail ``P(F_{df1, df2} > f)``; ``df2 = inf`` gives ``P(χ²_{df1} > df1 f)``."""
    return _bucketed(_f_sf, f, df1, df2)


def chi2_sf(x, df) -> np.ndarray:
    """Upper tail ``P(χ²_df > x)``."""
    x, df = _as_arrays(x, df)
    return np.asarray(gammaincc(0.5 * df, 0.5 * jnp.maximum(x, 0.0)))


def norm_ppf(q) -> np.ndarray:
    """Standard normal quantile."""
    return np.asarray(ndtri(jnp.asarray(q, dtype=jnp.float64)))


def two_sided_normal_pvalue(z: np.ndarray) -> np.ndarray:
    """``P(|N(0, 1)| > |z|) = erfc(|z| / √2)`` elementwise, on the host (numpy in, numpy out).

    Example:
        >>> round(float(two_sided_normal_pvalue(np.array([1.959963984540054]))[0]), 12)
        0.05
    """
    return np.array([math.erfc(abs(v) / math.sqrt(2.0)) for v in np.ravel(z)]).reshape(np.shape(z))
