"""statsmodels' ``MixedLM.get_distribution``: the model's distribution at given parameters.

For parameters ``(β, Ψ₁, τ₁)`` on the profile scale (statsmodels' packed layout, divided by
the residual variance ``σ²``) one draw is

.. math::
    y = Xβ + \\sum_k Z_{ik} γ_{ik} + \\sum_c \\sum_j W_{icj} u_{icj} + ε, \\qquad
    γ_i \\sim N(0, σ^2 Ψ_1),\\; u_{icj} \\sim N(0, σ^2 τ_{1c}),\\; ε \\sim N(0, σ^2 I),

``Z`` the ``exog_re`` columns and ``W_{ic}`` the ``exog_vc`` columns of component ``c`` in
group ``i``. All groups are drawn at once (arrays ``(n_groups, k_re)`` and, per component,
``(n_groups, width_c)``); nothing loops over groups or rows.
"""

import numpy as np

from mixedjax.core.covariance import MixedLMParams


def _generator(rng):
    """statsmodels' ``rng`` argument: a ``Generator``/``RandomState`` as it is, else a seed."""
    if isinstance(rng, np.random.Generator | np.random.RandomState):
        return rng
    return np.random.default_rng(rng)


def _factor(cov: np.ndarray) -> np.ndarray:
    """``L`` with ``L L' = cov``: the Cholesky factor (statsmodels' draw), or for a
    singular positive semi-definite ``cov`` the scaled eigenvectors."""
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        values, vectors = np.linalg.eigh(cov)
        return vectors * np.sqrt(np.clip(values, 0.0, None))


class MixedLMDistribution:
    """The distribution of the response of a one-factor model at fixed parameters.

    Attributes:
        model: the :class:`~mixedjax.model.mixedlm.MixedLM`.
        exog: ``(n, k_fe)`` fixed-effects design (the model's unless given).
        fe_params: ``(k_fe,)`` β.
        cov_re: ``(k_re, k_re)`` data-scale ``Ψ = σ² Ψ₁``.
        vcomp: ``(k_vc,)`` data-scale variance components ``σ² τ₁``.
        scale: ``σ²``.

    Example:
        >>> import numpy as np, mixedjax
        >>> g = np.repeat(np.arange(50), 4)
        >>> x = np.ones((200, 1))
        >>> m = mixedjax.MixedLM(np.random.default_rng(0).normal(size=200), x, g)
        >>> d = m.get_distribution(np.array([1.0, 2.0]), 0.5, None)  # β = 1, Ψ₁ = 2
        >>> y = d.rvs(0, rng=np.random.default_rng(1))
        >>> y.shape, bool(abs(y.mean() - 1.0) < 0.3)
        ((200,), True)
    """

    def __init__(self, model, params, scale: float, exog=None):
        if getattr(model, "engine", "one-factor") != "one-factor" or model.exog_z is None:
            raise ValueError(
                "get_distribution needs a one-factor model with its data (not a crossed-engine "
                "model, and not after remove_data())"
            )
        self.model = model
        self.exog = model.exog if exog is None else np.asarray(exog, dtype=float)
        p = (
            params
            if isinstance(params, MixedLMParams)
            else MixedLMParams.from_packed(
                np.asarray(params, dtype=float), model.k_fe, model.k_re, False, True
            )
        )
        self.scale = float(scale)
        self.fe_params = np.asarray(p.fe_params, dtype=float)
        self.cov_re = self.scale * np.asarray(p.cov_re, dtype=float)
        self.vcomp = self.scale * np.asarray(p.vcomp, dtype=float)

    def rvs(self, n=None, rng=None) -> np.ndarray:
        """One simulated response vector ``(nobs,)``; ``n`` is ignored (statsmodels'
        interface); ``rng``: a ``numpy`` ``Generator``/``RandomState`` or a seed."""
        # The draws are taken in statsmodels' order (random effects, then each component
        # group by group, then the residuals), so one seed gives statsmodels' response.
        model, rng = self.model, _generator(rng)
        codes = model.group_codes
        y = self.exog @ self.fe_params
        k_re = model.k_re
        if k_re:
            u = rng.normal(size=(model.n_groups, k_re)) @ _factor(self.cov_re).T
            y = y + np.einsum("nk,nk->n", model.exog_re, u[codes])
        start = k_re
        for c, glob in enumerate(model.vc_global_columns):
            width = glob.shape[1]
            present = glob >= 0  # (n_groups, width): the group's own columns
            u = np.zeros(glob.shape)
            u[present] = np.sqrt(self.vcomp[c]) * rng.normal(size=int(present.sum()))
            local = model.exog_z[:, start : start + width]
            y = y + np.einsum("nw,nw->n", local, u[codes])
            start += width
        return y + np.sqrt(self.scale) * rng.normal(size=y.shape[0])
