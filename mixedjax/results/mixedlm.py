"""Immutable fit results: estimates, tables, random effects, summary and ``varcorr``."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from mixedjax.core.covariance import theta_to_cov
from mixedjax.fit.estimation import SINGULAR_TOL, Estimates
from mixedjax.results.common import InferenceMixin
from mixedjax.results.features import PostFitMethods


@dataclass(frozen=True)
class OptSummary:
    """What the optimiser did (like MixedModels.jl's ``OptSummary``).

    Attributes:
        method: ``"lbfgs"`` or ``"bfgs"``.
        theta_start, theta: ``θ`` at the start and at the end (lme4's ``theta``).
        objective: final ``-2 log L`` (REML criterion for REML fits).
        n_iter, n_eval, n_newton: quasi-Newton iterations, objective+gradient evaluations,
            accepted exact-Newton polishing steps.
        scaled_gradient: ``max |∇d(θ)| / max(1, |d(θ)|)`` at the end; ``gradient`` the raw one.
        gtol, maxiter: the stopping settings.
        converged, message: outcome.
        boundary: indices of ``θ`` set to exactly 0 (variances on the boundary);
            ``boundary_names`` their lme4 names (``sd_(Intercept)|Batch``).
        free_mask: which entries of ``θ`` were estimated (the others held at their start).
        cov_pen, penalty: the covariance penalty of a penalised fit
            (:mod:`mixedjax.penalties`; ``None`` otherwise) and its value at ``θ̂``
            (``objective`` is then ``-2 log L + 2 penalty``).

    Once attached to results, the summary also reports the exact derivatives of the
    objective at ``θ̂`` on the original data (computed on first use, autodiff;
    :func:`mixedjax.inference.diagnostics.optimum_diagnostics`): ``max_abs_gradient``,
    ``hessian_eigenvalues`` (over the estimated coordinates not on the boundary) and the
    full ``diagnostics``; ``print(results.optim)`` shows them.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> r.optim.converged, r.optim.n_newton >= 0, r.optim.scaled_gradient < r.optim.gtol
        (True, True, True)
        >>> r.optim.hessian_eigenvalues.shape, r.optim.max_abs_gradient < 1e-6
        ((3,), True)
    """

    method: str
    theta_start: np.ndarray
    theta: np.ndarray
    objective: float
    n_iter: int
    n_eval: int
    n_newton: int
    scaled_gradient: float
    gradient: np.ndarray
    gtol: float
    maxiter: int
    converged: bool
    message: str
    boundary: tuple[int, ...]
    free_mask: np.ndarray
    cov_pen: object = None
    penalty: float = 0.0
    diagnostics_source: Callable | None = field(default=None, repr=False, compare=False)
    theta_names_source: Callable | None = field(default=None, repr=False, compare=False)
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def from_opt(
        cls, opt, *, method: str, theta_start, theta, objective: float, gtol: float,
        maxiter: int, free_mask, boundary=(), converged: bool | None = None,
        message: str | None = None, **extra,
    ) -> "OptSummary":  # fmt: skip
        """Summary of one fit's :class:`~mixedjax.fit.optimize.OptResult` ``opt`` (counters,
        gradient, status); ``converged`` and ``message`` default to the optimiser's status.

        Example:
            >>> import numpy as np
            >>> from mixedjax.fit.optimize import OptResult
            >>> opt = OptResult(np.ones(1), 1.0, np.zeros(1), 3, 5, 1, 0.0, 0)
            >>> OptSummary.from_opt(opt, method="lbfgs", theta_start=np.ones(1),
            ...     theta=np.ones(1), objective=1.0, gtol=1e-9, maxiter=500,
            ...     free_mask=np.ones(1, bool)).message
            'converged: scaled gradient below gtol'
        """
        from mixedjax.fit.optimize import STATUS_CONVERGED, STATUS_MESSAGES

        status = int(opt.status)
        return cls(
            method=method,
            theta_start=np.asarray(theta_start),
            theta=np.asarray(theta),
            objective=float(objective),
            n_iter=int(opt.n_iter),
            n_eval=int(opt.n_eval),
            n_newton=int(opt.n_newton),
            scaled_gradient=float(opt.scaled_grad),
            gradient=np.asarray(opt.grad),
            gtol=gtol,
            maxiter=int(maxiter),
            converged=status == STATUS_CONVERGED if converged is None else bool(converged),
            message=STATUS_MESSAGES[status] if message is None else message,
            boundary=tuple(int(j) for j in boundary),
            free_mask=free_mask,
            **extra,
        )

    def attach(self, diagnostics: Callable, theta_names: Callable) -> "OptSummary":
        """A copy that computes :attr:`diagnostics` with ``diagnostics()`` on first use and
        names the entries of ``θ`` with ``theta_names()`` (called by the results)."""
        return replace(self, diagnostics_source=diagnostics, theta_names_source=theta_names)

    @property
    def diagnostics(self):
        """:class:`~mixedjax.inference.diagnostics.OptimumDiagnostics` at ``θ̂`` (``None`` before the
        summary is attached to results)."""
        if self.diagnostics_source is None:
            return None
        if "diagnostics" not in self._cache:
            self._cache["diagnostics"] = self.diagnostics_source()
        return self._cache["diagnostics"]

    @property
    def max_abs_gradient(self) -> float | None:
        """``max |∇d(θ̂)|`` over the estimated coordinates (original data, autodiff)."""
        diag = self.diagnostics
        return None if diag is None else float(np.max(np.abs(diag.gradient), initial=0.0))

    @property
    def hessian_eigenvalues(self) -> np.ndarray | None:
        """Ascending eigenvalues of ``∇²d(θ̂)`` over the estimated interior coordinates: all
        positive at a strict minimum; near zero flags an unidentified direction."""
        diag = self.diagnostics
        return None if diag is None else np.asarray(diag.hessian_eigenvalues)

    @property
    def boundary_names(self) -> list[str]:
        """Names of the ``θ`` entries on the boundary (indices if no names are attached)."""
        if self.theta_names_source is None:
            return [f"theta[{i}]" for i in self.boundary]
        names = list(self.theta_names_source())
        return [names[i] for i in self.boundary]

    def __str__(self) -> str:
        boundary = ", ".join(
            f"{name} (theta[{i}])"
            for i, name in zip(self.boundary, self.boundary_names, strict=True)
        )
        lines = [
            f"optimizer       {self.method} (+ exact Newton polish)",
            f"theta start     {np.array2string(np.asarray(self.theta_start), precision=6)}",
            f"theta           {np.array2string(np.asarray(self.theta), precision=6)}",
            f"objective       {self.objective:.10g}",
            f"iterations      {self.n_iter} (evaluations {self.n_eval}, Newton {self.n_newton})",
            f"scaled gradient {self.scaled_gradient:.3e} (gtol {self.gtol:.0e})",
            f"boundary        {boundary or 'none'}",
        ]
        if self.cov_pen is not None:
            lines.append(
                f"penalty         {self.cov_pen} = {self.penalty:.10g} "
                "(objective = -2 log L + 2 penalty)"
            )
        diag = self.diagnostics
        if diag is not None:
            eig = np.asarray(diag.hessian_eigenvalues)
            if eig.size == 0:
                shown = "none (no estimated coordinate off the boundary)"
            elif eig.size <= 6:
                shown = np.array2string(eig, precision=4)
            else:
                shown = f"min {eig[0]:.4g}, max {eig[-1]:.4g} ({eig.size} eigenvalues)"
            cond = f", condition {eig[-1] / eig[0]:.3g}" if eig.size > 1 and eig[0] > 0 else ""
            lines += [
                f"max |gradient|  {self.max_abs_gradient:.3e} (exact, at theta)",
                f"Hessian eig.    {shown}{cond}",
                f"lme4 checks     {'passed' if diag.converged else 'FAILED'} "
                f"(positive definite: {diag.positive_definite}, "
                f"max |H^-1 g| {np.max(np.abs(diag.relative_gradient), initial=0.0):.1e})",
            ]
        lines.append(f"result          {self.message}")
        return "\n".join(lines)


def _level_of(colname: str) -> str:
    """``"C(cask)[a]"`` or ``"cask[T.a]"`` -> ``"a"``; other names unchanged."""
    if colname.endswith("]") and "[" in colname:
        level = colname[colname.index("[") + 1 : -1]
        return level[2:] if level.startswith("T.") else level
    return colname


class RandomEffects(Mapping):
    """Read-only mapping group label -> ``pd.Series`` of that group's BLUPs (statsmodels'
    ``random_effects``), built per group on access so millions of groups cost nothing.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> re = r.random_effects
        >>> len(re), list(re["308"].index)
        (18, ['Subject', 'Days'])
    """

    def __init__(self, labels, values, names_of):
        self._index = {lab: i for i, lab in enumerate(labels)}
        self._labels = labels
        self._values = values
        self._names_of = names_of

    def __getitem__(self, label):
        i = self._index[label]
        names, cols = self._names_of(i)
        return pd.Series(self._values[i, cols], index=names, name=label)

    def __iter__(self):
        return iter(self._labels)

    def __len__(self) -> int:
        return len(self._labels)


class MixedLMResults(InferenceMixin, PostFitMethods):
    """Results of :meth:`mixedjax.MixedLM.fit` (read-only).

    Scales: ``cov_re``, ``vcomp``, ``scale`` are on the data scale; ``cov_re_unscaled`` and
    ``params`` (statsmodels' layout) on the profile scale (divided by ``scale``).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> r.fe_params.round(3).tolist(), round(r.scale, 2), r.is_singular
        ([251.405, 10.467], 654.94, False)
    """

    def __init__(
        self,
        model,
        theta: np.ndarray,
        est: Estimates,
        opt: OptSummary,
        reml: bool,
        cov_user: np.ndarray | None = None,
    ):
        g = model.n_groups
        object.__setattr__(self, "_frozen", False)
        if cov_user is not None:  # the fit's program computed it (summary() compiles nothing)
            object.__setattr__(self, "_cov_user", np.asarray(cov_user))
        self.model = model
        self.reml = reml
        self.method = "REML" if reml else "ML"
        self.optim = opt.attach(self.check_convergence, self._theta_names)
        self.theta = np.asarray(theta)
        self.scale = float(est.scale)
        cov1, vc1 = theta_to_cov(np.asarray(theta), model.structure)
        self.cov_re_unscaled = pd.DataFrame(
            np.asarray(cov1), index=model.exog_re_names, columns=model.exog_re_names
        )
        self.cov_re = self.cov_re_unscaled * self.scale
        self.vcomp = np.asarray(vc1) * self.scale
        self.fe_params = pd.Series(np.asarray(est.beta), index=model.exog_names)
        self._cov_fe = np.asarray(est.cov_beta)
        self.bse_fe = pd.Series(np.sqrt(np.diag(self._cov_fe)), index=model.exog_names)
        self._blups = np.asarray(est.blups)[:g]
        self._cond_cov = np.asarray(est.cond_cov)[:g]
        self.llf = -0.5 * float(est.objective) + model.rows.loglik_jacobian
        self.converged = opt.converged
        self.nobs = model.nobs
        self.k_fe, self.k_re, self.k_re2, self.k_vc = (
            model.k_fe,
            model.k_re,
            model.k_re2,
            model.k_vc,
        )
        self.df_modelwc = model.k_fe + int(np.sum(opt.free_mask)) + 1
        self._frozen = True

    def __setattr__(self, name, value):
        if getattr(self, "_frozen", False) and not name.startswith("_"):
            raise AttributeError(f"MixedLMResults is immutable; cannot set {name!r}")
        object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ likelihood
    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values (``missing="drop"``); also in the summary."""
        return int(getattr(self.model, "n_dropped", 0))

    def _theta_names(self) -> list[str]:
        """lme4's names of the entries of ``θ`` (``sd_`` for diagonal entries)."""
        from mixedjax.inference.profile import profile_names

        return profile_names(self.model)[: self.model.structure.n_theta]

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a standard-deviation-like ``θ`` entry below 1e-4."""
        mask = self.model.structure.diagonal_theta_mask()
        return bool(np.any(np.abs(self.theta[mask]) < SINGULAR_TOL))

    # ------------------------------------------------------------------ parameters
    @property
    def params(self) -> pd.Series:
        """statsmodels' packed parameters: β, ``tril(Ψ₁)`` row-major, ``τ₁``."""
        rows, cols = np.tril_indices(self.k_re)
        values = np.concatenate(
            [
                self.fe_params.to_numpy(),
                self.cov_re_unscaled.to_numpy()[rows, cols],
                self.vcomp / self.scale,
            ]
        )
        return pd.Series(values, index=self.model.param_names)

    @property
    def _phi(self) -> np.ndarray:
        rows, cols = np.tril_indices(self.k_re)
        return np.concatenate([self.cov_re.to_numpy()[rows, cols], self.vcomp, [self.scale]])

    @cached_property
    def _cov_user(self) -> np.ndarray:
        from mixedjax.fit.conditioning import variance_parameter_cov

        # On the standardized data (well conditioned), mapped back exactly.
        return variance_parameter_cov(self.model, self._phi, self.reml)

    # ------------------------------------------------------------------ random effects
    def _names_of(self, i: int):
        model = self.model
        names = list(model.exog_re_names)
        cols = list(range(model.k_re))
        start = model.k_re
        for colnames, glob in zip(model.vc_colnames, model.vc_global_columns, strict=True):
            for j, gcol in enumerate(glob[i]):
                if gcol >= 0:
                    names.append(colnames[gcol])
                    cols.append(start + j)
            start += glob.shape[1]
        return names, cols

    @property
    def random_effects(self) -> RandomEffects:
        """Mapping group -> BLUPs ``pd.Series`` (data scale), like statsmodels.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> r.random_effects["A"].round(3)
            Group   -17.607
            Name: A, dtype: float64
        """
        return RandomEffects(list(self.model.group_labels), self._blups, self._names_of)

    @property
    def random_effects_cov(self) -> Mapping:
        """Mapping group -> conditional covariance ``pd.DataFrame`` of its random effects."""
        results = self

        class _Cov(RandomEffects):
            def __getitem__(self, label):
                i = self._index[label]
                names, cols = results._names_of(i)
                block = results._cond_cov[i][np.ix_(cols, cols)]
                return pd.DataFrame(block, index=names, columns=names)

        return _Cov(list(self.model.group_labels), self._blups, self._names_of)

    def ranef(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(ranef(m, condVar=TRUE))``: grpvar, term, grp, condval, condsd.

        Rows are ordered by term, then level (as lme4).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> r.ranef().head(2).round(3)
              grpvar         term grp  condval  condsd
            0  Batch  (Intercept)   A  -17.607  19.587
            1  Batch  (Intercept)   B    0.391  19.587
        """
        if getattr(self.model, "lme4_terms", None) is not None:  # built from an lme4 formula
            from mixedjax.results.layout import one_factor_term_estimates, ranef_frame

            return ranef_frame(one_factor_term_estimates(self))
        model = self.model
        labels = np.asarray(model.group_labels).astype(str)
        group_name = getattr(model, "group_name", "Group")
        sd = np.sqrt(np.maximum(np.diagonal(self._cond_cov, axis1=1, axis2=2), 0.0))
        frames = []
        for j, term in enumerate(model.re_terms):
            frames.append(
                pd.DataFrame(
                    {
                        "grpvar": group_name,
                        "term": term,
                        "grp": labels,
                        "condval": self._blups[:, j],
                        "condsd": sd[:, j],
                    }
                )
            )
        start = model.k_re
        for vc_name, colnames, glob in zip(
            model.vc_names, model.vc_colnames, model.vc_global_columns, strict=True
        ):
            gi, lj = np.nonzero(glob >= 0)
            levels = np.asarray([_level_of(c) for c in colnames])[glob[gi, lj]]
            frames.append(
                pd.DataFrame(
                    {
                        "grpvar": vc_name,
                        "term": "(Intercept)",
                        "grp": np.char.add(np.char.add(labels[gi], ":"), levels.astype(str)),
                        "condval": self._blups[gi, start + lj],
                        "condsd": sd[gi, start + lj],
                    }
                )
            )
            start += glob.shape[1]
        return pd.concat(frames, ignore_index=True)

    # ------------------------------------------------------------------ fitted values
    @cached_property
    def fittedvalues(self) -> np.ndarray:
        """``X β̂ + Z γ̂ + offset`` per row (conditional fitted values, with the BLUPs)."""
        model = self.model
        fixed = model.exog @ self.fe_params.to_numpy() + model.rows.offset
        return fixed + np.einsum("nr,nr->n", model.exog_z, self._blups[model.group_codes])

    @property
    def resid(self) -> np.ndarray:
        """Conditional residuals ``y - fittedvalues``."""
        return self.model.endog - self.fittedvalues

    # ------------------------------------------------------------------ display
    def varcorr(self) -> pd.DataFrame:
        """lme4's ``as.data.frame(VarCorr(m))``: group, var1, var2, vcov, sdcor.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> r.varcorr()[["group", "vcov", "sdcor"]].round(3)
                  group     vcov   sdcor
            0     Batch  1764.05  42.001
            1  Residual  2451.25  49.510
        """
        if getattr(self.model, "lme4_terms", None) is not None:  # built from an lme4 formula
            from mixedjax.results import layout

            return layout.varcorr_frame(layout.one_factor_term_estimates(self), self.scale)
        from mixedjax.display.varcorr import varcorr_frame

        return varcorr_frame(self)

    def summary(self, alpha: float = 0.05):
        """statsmodels-style summary table (``print(result.summary())``).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> print(r.summary())  # doctest: +ELLIPSIS
                      Mixed Linear Model Regression Results
            ...
            Intercept 1527.500   19.383 78.804 0.000 1489.509 1565.491
            ...
        """
        from mixedjax.display.text import Summary

        return Summary(self, alpha)

    def __repr__(self) -> str:
        return (
            f"<MixedLMResults {self.method}: llf={self.llf:.4f}, nobs={self.nobs}, "
            f"groups={self.model.n_groups}, converged={self.converged}>"
        )

    def profile(self, alpha: float = 0.01, n_points: int = 11, progress=None) -> pd.DataFrame:
        """Profile-likelihood traces for plotting: ``parameter, value, zeta`` (lme4's
        ``profile``; ML deviance, lme4's sd/cor scale), spanning the ``1 - alpha`` interval;
        ``progress``: a bar per parameter profiled.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> traces = r.profile(alpha=0.05, n_points=3)
            >>> traces.groupby("parameter").size().tolist()  # n_points on each side of the estimate
            [6, 6, 6]
        """
        from mixedjax.inference.profile import profile_traces

        return profile_traces(self, alpha, n_points, progress=progress)

    def profile_re(self, re_ix, vtype, num_low=5, dist_low=1.0, num_high=5, dist_high=1.0):
        """statsmodels' ``profile_re``: ``(held variance × σ̂², llf)`` rows."""
        from mixedjax.inference.profile import profile_re

        return profile_re(self, re_ix, vtype, num_low, dist_low, num_high, dist_high)

    def _repr_html_(self) -> str:
        """Notebook display: the styled summary (:func:`mixedjax.display.html.summary_html`)."""
        return self.summary().as_html()
