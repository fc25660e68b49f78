"""Inference shared by the results of both engines: information criteria, Wald covariances,
fixed-effect tests with Satterthwaite/Kenward-Roger df, convergence checks.

:class:`InferenceMixin` needs from its host (``MixedLMResults``, for either engine):

* ``_cov_fe`` (lme4's ``vcov``), ``llf``, ``df_modelwc``, ``nobs``, ``k_fe``, ``reml``,
  ``scale``, ``theta``, ``optim``, ``_params_pd`` (statsmodels' packed layout as a Series:
  β, then the profile-scale variance parameters) and ``_output`` (statsmodels' return
  types: pandas for formula models, ndarrays for array-built ones);
* ``model.data`` and ``model.structure`` (the engine, see :mod:`mixedjax.engines.gls`);
* ``_phi``: ``(m,)`` the data-scale variance parameters in the order of ``params`` after β,
  then σ²; ``_cov_user``: ``(m, m)`` their covariance (inverse observed information);
* ``_engine_phi``: ``_phi`` in the engine's layout of ``γ`` (defaults to ``_phi``).

With ``φ = (v, σ²)``, statsmodels' profile-scale parameters are ``v/σ²``, whose covariance
follows by the delta method with the Jacobian ``[I/σ², -v/σ⁴]``.
"""

import math
from functools import cached_property

import numpy as np
import pandas as pd

from mixedjax.core.distributions import two_sided_normal_pvalue


def profile_scale_jacobian(phi: np.ndarray) -> np.ndarray:
    """Jacobian ``(m - 1, m)`` of ``φ[:-1]/φ[-1]`` with respect to ``φ``.

    Example:
        >>> profile_scale_jacobian(np.array([4.0, 2.0])).tolist()
        [[0.5, -1.0]]
    """
    phi = np.asarray(phi, dtype=float)
    scale = phi[-1]
    return np.column_stack([np.eye(phi.size - 1) / scale, -phi[:-1] / scale**2])


class InferenceMixin:
    """Shared inference methods (see the module docstring for what the host provides)."""

    # ------------------------------------------------------------------ likelihood
    @property
    def aic(self) -> float:
        """``-2 llf + 2 k`` (from the REML criterion for REML fits, as lme4)."""
        return -2.0 * self.llf + 2.0 * self.df_modelwc

    @property
    def bic(self) -> float:
        """``-2 llf + k log(n)`` (as lme4)."""
        return -2.0 * self.llf + self.df_modelwc * math.log(self.nobs)

    # ------------------------------------------------------------------ Wald covariances
    @property
    def _engine_phi(self) -> np.ndarray:
        return self._phi

    @property
    def cov_re_params(self) -> pd.DataFrame:
        """Covariance of the data-scale variance parameters (``params`` order, then σ²)
        from the exact autodiff Hessian of the full likelihood."""
        names = list(self._params_pd.index[self.k_fe :]) + ["Scale"]
        return pd.DataFrame(self._cov_user, index=names, columns=names)

    @property
    def _bse_re_pd(self) -> pd.Series:
        names = list(self._params_pd.index[self.k_fe :])
        return pd.Series(np.sqrt(np.diag(self._cov_user))[:-1], index=names)

    @property
    def bse_re(self):
        """Wald standard errors of the data-scale variance parameters (exact Hessian)."""
        return self._output(self._bse_re_pd)

    def _cov_params_pd(self) -> pd.DataFrame:
        J = profile_scale_jacobian(self._phi)
        unknown = np.isnan(np.diag(self._cov_user))  # held on the boundary (crossed engine)
        cov_profile = J @ np.where(np.isnan(self._cov_user), 0.0, self._cov_user) @ J.T
        cov_profile[unknown[:-1], :] = np.nan
        cov_profile[:, unknown[:-1]] = np.nan
        k = self.k_fe
        m = k + cov_profile.shape[0]
        out = np.zeros((m, m))
        out[:k, :k] = self._cov_fe
        out[k:, k:] = cov_profile
        names = list(self._params_pd.index)
        return pd.DataFrame(out, index=names, columns=names)

    def cov_params(self):
        """Covariance ``(k, k)`` of ``params``: lme4's GLS ``vcov`` for β; the delta-method
        covariance of the profile-scale variance parameters from the exact Hessian for the
        rest (the blocks are asymptotically uncorrelated). A DataFrame for formula models,
        an ndarray for array-built ones (statsmodels' convention)."""
        return self._output(self._cov_params_pd())

    @property
    def _bse_pd(self) -> pd.Series:
        cov = self._cov_params_pd()
        return pd.Series(np.sqrt(np.diag(cov.to_numpy())), index=cov.index)

    @property
    def bse(self):
        """Standard errors of ``params``."""
        return self._output(self._bse_pd)

    @property
    def tvalues(self):
        """z statistics ``params / bse`` of every parameter (statsmodels' layout: the fixed
        effects first, then the profile-scale variance parameters)."""
        return self._output(self._params_pd / self._bse_pd)

    @property
    def pvalues(self):
        """Two-sided normal p-values of :attr:`tvalues` (z-tests, as statsmodels)."""
        t = self._params_pd / self._bse_pd
        return self._output(pd.Series(two_sided_normal_pvalue(t.to_numpy()), index=t.index))

    # ------------------------------------------------------------------ df approximations
    @cached_property
    def _satterthwaite(self):
        from mixedjax.inference.ddf import satterthwaite_inputs

        return satterthwaite_inputs(
            self.theta, math.sqrt(self.scale), self.model.data, self.model.structure, self.reml
        )

    @cached_property
    def _kenward_roger(self):
        from mixedjax.inference.ddf import kenward_roger_inputs

        if not self.reml:
            raise ValueError(
                "ddf='kenward-roger' is only available for REML fits (as in lmerTest); "
                "refit with reml=True"
            )
        return kenward_roger_inputs(self._engine_phi, self.model.data, self.model.structure)

    # ------------------------------------------------------------------ fixed-effect tests
    def t_test(self, r_matrix, rhs=None, ddf: str = "satterthwaite"):
        """t tests of ``L β = rhs`` row by row; ``r_matrix`` is a matrix, a vector or a string
        such as ``"Days = 0"`` or ``"Intercept = 2*Days"``. ``ddf``: ``"satterthwaite"``,
        ``"kenward-roger"``, ``"residual"`` or ``"asymptotic"`` (z tests, statsmodels).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> r = m.fit()
            >>> print(r.t_test("Days = 10"))
            Test for constraints (satterthwaite df)
                   estimate        se    df         t         p     lower      upper
            Days  10.467286  1.545789  17.0  0.302296  0.766094  7.205956  13.728615
        """
        from mixedjax.inference.fixed_tests import t_test

        return t_test(self, r_matrix, rhs, ddf)

    def wald_test(self, r_matrix, rhs=None, ddf: str = "satterthwaite"):
        """Joint F test of ``L β = rhs`` (lmerTest's ``contestMD``; χ² for ``"asymptotic"``).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> r = m.fit()
            >>> print(r.wald_test("Days = 0", ddf="kenward-roger"))
            <F test (kenward-roger): F=45.853, p=3.264e-06, df_num=1, df_denom=17>
        """
        from mixedjax.inference.fixed_tests import wald_test

        return wald_test(self, r_matrix, rhs, ddf)

    def f_test(self, r_matrix, rhs=None, ddf: str = "satterthwaite"):
        """Alias of :meth:`wald_test`."""
        return self.wald_test(r_matrix, rhs, ddf)

    def coef_table(self, ddf: str = "satterthwaite", alpha: float = 0.05) -> pd.DataFrame:
        """Fixed effects: ``estimate, se, df, t, p, lower, upper`` (lmerTest's summary)."""
        from mixedjax.inference.fixed_tests import coef_table

        return coef_table(self, ddf, alpha)

    def anova(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """F test per fixed-effect term with Satterthwaite or Kenward-Roger df (lmerTest's
        ``anova(m)``); compare models with :func:`mixedjax.lrt`."""
        from mixedjax.inference.fixed_tests import term_f_tests

        return term_f_tests(self, ddf)

    def conf_int(
        self, alpha: float = 0.05, method: str = "wald", ddf: str = "asymptotic", progress=None
    ):
        """Confidence intervals ``(k, 2)``.

        ``method="wald"`` (statsmodels' ``conf_int``): every parameter of ``params``, the
        fixed effects with the ``ddf`` reference distribution (normal by default), the
        variance parameters ``± z·bse``; a DataFrame for formula models, an ndarray for
        array-built ones. ``method="profile"``: lme4's profile intervals (lme4's names).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> r = m.fit()
            >>> r.conf_int().loc["Days"].round(3).tolist()
            [7.438, 13.497]
        """
        if method == "wald":
            from mixedjax.inference.fixed_tests import conf_int_wald

            return self._output(conf_int_wald(self, alpha, ddf))
        if method == "profile":
            from mixedjax.inference.profile import profile_conf_int

            return profile_conf_int(self, alpha, progress=progress)
        raise ValueError(f"method must be 'wald' or 'profile', got {method!r}")

    # ------------------------------------------------------------------ convergence
    def check_convergence(self):
        """Gradient and Hessian (eigenvalues) of the deviance at ``θ̂`` and lme4's
        convergence checks (:class:`mixedjax.inference.diagnostics.OptimumDiagnostics`).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> bool(r.check_convergence().converged)
            True
        """
        from mixedjax.inference.diagnostics import optimum_diagnostics

        return optimum_diagnostics(self)
