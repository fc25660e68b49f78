"""Covariance of the covariance-parameter estimates from the exact autodiff Hessian.

Let ``φ = (tril Ψ, τ, σ²)`` be the variance parameters on the data ("user") scale, with the
lower triangle of ``Ψ`` row by row as in statsmodels. With β profiled out, the objective
``d(φ) = -2 log L`` (ML) or ``-2 log L_R`` (REML) is

.. math::
    d(φ) = \\log|V_1| + [\\log|X'V_1^{-1}X|] + m \\log(2π σ^2) + \\mathrm{pwrss}/σ^2,

``V₁ = I + Z (G/σ²) Z'`` and ``m = n`` (ML) or ``n - p`` (REML). The observed information
is ``H/2`` with ``H = ∇²d`` (autodiff), and ``cov(φ̂) = (H/2)⁻¹``. Profiling β out gives the
variance block of the full inverse information exactly. The profile-scale covariance (of
``Ψ₁ = Ψ/σ²``, ``τ₁ = τ/σ²``, statsmodels' ``params``) follows by the delta method.
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from mixedjax.core.covariance import CovStructure, user_to_profile
from mixedjax.design.groups import GroupedData
from mixedjax.engines.gls import gls_from_user
from mixedjax.engines.onefactor import objective_given_scale


def user_objective(phi: jnp.ndarray, data: GroupedData, structure: CovStructure, reml: bool):
    """``d(φ)`` of the module docstring (either engine: :func:`mixedjax.engines.gls.gls_from_user`).

    Example:
        >>> import jax.numpy as jnp, numpy as np, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> phi = jnp.array([1764.05, 2451.25])   # (batch variance, residual variance), REML
        >>> round(float(user_objective(phi, m.data, m.structure, reml=True)), 4)
        319.6543
    """
    gls, scale = gls_from_user(phi, data, structure)
    return objective_given_scale(gls, scale, data.n_obs, reml)


@partial(jax.jit, static_argnames=("structure", "reml"))
def variance_information(phi, data, *, structure: CovStructure, reml: bool):
    """Observed information ``H/2`` for ``φ`` (``(m, m)``, ``m = k_re2 + k_vc + 1``).

    Example:
        >>> import jax.numpy as jnp, numpy as np, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> phi = jnp.array([1764.05, 2451.25])   # (batch variance, residual variance), REML
        >>> info = variance_information(phi, m.data, structure=m.structure, reml=True)
        >>> np.sqrt(np.diag(invert_information(np.asarray(info)))).round(2).tolist()   # Wald SEs
        [1432.75, 707.61]
    """
    return 0.5 * jax.hessian(user_objective)(phi, data, structure, reml)


def profile_jacobian(phi: np.ndarray, structure: CovStructure) -> np.ndarray:
    """Jacobian of ``(tril Ψ₁, τ₁)`` with respect to ``φ``; ``(m - 1, m)``.

    Example:
        >>> import jax.numpy as jnp, numpy as np, mixedjax
        >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", mixedjax.datasets.load("dyestuff"),
        ...                                   groups="Batch")
        >>> phi = jnp.array([1764.05, 2451.25])   # (batch variance, residual variance), REML
        >>> profile_jacobian(np.asarray(phi), m.structure).shape   # d(Ψ/σ²)/d(Ψ, σ²)
        (1, 2)
    """

    def to_profile(phi):
        cov, vc, _ = user_to_profile(phi, structure)
        rows, cols = np.tril_indices(structure.k_re)
        return jnp.concatenate([cov[rows, cols], vc])

    return np.asarray(jax.jacobian(to_profile)(jnp.asarray(phi)))


def invert_information(info: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric information matrix; pseudo-inverse where it is singular.

    Example:
        >>> import numpy as np
        >>> invert_information(np.array([[4.0, 0.0], [0.0, 0.0]]))   # singular: pseudo-inverse
        array([[0.25, 0.  ],
               [0.  , 0.  ]])
    """
    info = 0.5 * (info + info.T)
    eigval, eigvec = np.linalg.eigh(info)
    tol = 1e-12 * max(1.0, float(np.max(np.abs(eigval))))
    inv = np.where(eigval > tol, 1.0 / np.where(eigval > tol, eigval, 1.0), 0.0)
    return (eigvec * inv) @ eigvec.T
