"""Immutable fit results of every model kind: estimates, tables, random effects, summary
and ``varcorr`` (the engine-dependent parts in :mod:`mixedjax.results.onefactor` and
:mod:`mixedjax.results.crossed`)."""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property

import numpy as np
import pandas as pd

from mixedjax.fit.estimation import SINGULAR_TOL
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


class MixedLMResults(InferenceMixin, PostFitMethods):
    """Results of :meth:`mixedjax.MixedLM.fit` (read-only), for every model kind.

    What does not depend on the random-effects structure is computed here once: the fixed
    effects and their covariance, ``scale``, ``llf``, the optimiser's summary and (through
    :class:`~mixedjax.results.common.InferenceMixin` and
    :class:`~mixedjax.results.features.PostFitMethods`) inference, prediction, simulation,
    the bootstrap and plots. What does depend on it comes from the engine's results layout,
    chosen by the model's structure: :data:`mixedjax.results.onefactor.ONE_FACTOR`
    (statsmodels' layout: ``cov_re`` a DataFrame, ``random_effects`` keyed by group) or
    :data:`mixedjax.results.crossed.CROSSED` (several factors: ``cov_re`` and
    ``random_effects`` keyed by factor). ``ranef()`` and ``varcorr()`` are lme4's frames
    for both.

    Scales: ``cov_re``, ``vcomp``, ``scale`` are on the data scale; ``cov_re_unscaled`` and
    ``params`` (statsmodels' layout) on the profile scale (divided by ``scale``).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> r.fe_params.round(3).tolist(), round(r.scale, 2), r.is_singular
        ([251.405, 10.467], 654.94, False)
        >>> p = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)",
        ...                      mixedjax.datasets.load("penicillin")).fit()
        >>> type(p).__name__, p.varcorr()["group"].tolist()
        ('MixedLMResults', ['plate', 'sample', 'Residual'])
    """

    def __init__(
        self,
        model,
        theta: np.ndarray,
        est,
        opt: OptSummary,
        reml: bool,
        cov_user: np.ndarray | None = None,
        information: np.ndarray | None = None,
    ):
        """``est``: the engine's estimates at ``θ`` (:class:`~mixedjax.fit.estimation.Estimates`
        or :class:`~mixedjax.engines.crossed.CrossedEstimates`); ``cov_user``: the
        covariance of ``_phi`` or ``information``: the observed information of the engine's
        ``γ``, where the fit's program computed them (``summary()`` then compiles nothing)."""
        object.__setattr__(self, "_frozen", False)
        object.__setattr__(self, "_layout", layout_of(model))
        object.__setattr__(self, "_engine_information", information)
        if cov_user is not None:
            object.__setattr__(self, "_cov_user", np.asarray(cov_user))
        self.model = model
        self.reml = reml
        self.method = "REML" if reml else "ML"
        self.optim = opt.attach(self.check_convergence, self._theta_names)
        self.theta = np.asarray(theta)
        self.scale = float(est.scale)
        self._array_output = bool(getattr(model, "_array_output", False))
        self._fe_params_pd = pd.Series(np.asarray(est.beta), index=model.exog_names)
        self._cov_fe = np.asarray(est.cov_beta)
        self._bse_fe_pd = pd.Series(np.sqrt(np.diag(self._cov_fe)), index=model.exog_names)
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
        self._layout.populate(self, est)
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
        """lme4's names of the entries of ``θ`` (``sd_`` for diagonal entries, ``cor_``)."""
        return self._layout.theta_names(self)

    @property
    def is_singular(self) -> bool:
        """lme4's ``isSingular``: a standard-deviation-like ``θ`` entry below 1e-4."""
        mask = self.model.structure.diagonal_theta_mask()
        return bool(np.any(np.abs(self.theta[mask]) < SINGULAR_TOL))

    # ------------------------------------------------------------------ return types
    def _output(self, value):
        """statsmodels' return types: ``value`` (a Series or DataFrame) as it is for models
        built from formulas or pandas input, its ndarray for array-built models."""
        if self._array_output and isinstance(value, pd.Series | pd.DataFrame):
            return value.to_numpy()
        return value

    # ------------------------------------------------------------------ parameters
    @property
    def fe_params(self):
        """``(k_fe,)`` fixed effects β̂ (a Series named by ``exog_names`` for formula models)."""
        return self._output(self._fe_params_pd)

    @property
    def bse_fe(self):
        """``(k_fe,)`` standard errors of β̂ (lme4's ``vcov``)."""
        return self._output(self._bse_fe_pd)

    @property
    def cov_re(self):
        """Random-effects covariance on the data scale: ``(k_re, k_re)`` for one grouping
        factor (a DataFrame for formula models), ``{group: DataFrame}`` for several."""
        return self._output(self._cov_re_pd)

    @property
    def cov_re_unscaled(self):
        """``cov_re / scale`` (one grouping factor)."""
        if "_cov_re_unscaled_pd" not in self.__dict__:
            raise AttributeError("cov_re_unscaled is defined for one grouping factor only")
        return self._output(self._cov_re_unscaled_pd)

    @property
    def _params_pd(self) -> pd.Series:
        return self._layout.params(self)

    @property
    def params(self):
        """statsmodels' packed parameters: β, then the profile-scale variance parameters
        (one factor: ``tril(Ψ₁)`` row-major, ``τ₁``; crossed: each term's ``tril(Ψ_k)/σ²``
        in the order the terms were given)."""
        return self._output(self._params_pd)

    @property
    def params_object(self):
        """The estimates as statsmodels' :class:`~mixedjax.core.covariance.MixedLMParams`
        (β, and the profile-scale ``cov_re`` and ``vcomp``: what ``model.loglike`` takes)."""
        from mixedjax.core.covariance import MixedLMParams

        cov = self.__dict__.get("_cov_re_unscaled_pd")
        cov = np.zeros((0, 0)) if cov is None else cov.to_numpy()
        vcomp = np.asarray(self._params_pd.to_numpy()[self.k_fe + self.k_re2 :])
        return MixedLMParams.from_components(
            fe_params=self._fe_params_pd.to_numpy(), cov_re=cov, vcomp=vcomp
        )

    @property
    def _phi(self) -> np.ndarray:
        return self._layout.phi(self)

    @cached_property
    def _engine_phi(self) -> np.ndarray:
        return self._layout.engine_phi(self)

    @cached_property
    def _cov_user(self) -> np.ndarray:
        return self._layout.cov_user(self, self._engine_information)

    # ------------------------------------------------------------------ random effects
    @property
    def random_effects(self):
        """BLUPs (data scale), like statsmodels: a mapping group -> ``pd.Series`` for one
        grouping factor; ``{factor: DataFrame}`` (levels x terms) for several.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> r = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()
            >>> r.random_effects["A"].round(3)
            Group   -17.607
            Name: A, dtype: float64
        """
        return self._layout.random_effects(self)

    @property
    def random_effects_cov(self) -> Mapping:
        """Mapping group -> conditional covariance ``pd.DataFrame`` of its random effects
        (one grouping factor); for several factors, ``ranef()``'s ``condsd``."""
        if not hasattr(self._layout, "random_effects_cov"):
            raise AttributeError(
                "random_effects_cov is per group of one grouping factor; with several "
                "factors the conditional SDs are ranef()['condsd']"
            )
        return self._layout.random_effects_cov(self)

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
        return self._layout.ranef(self)

    # ------------------------------------------------------------------ fitted values
    @cached_property
    def _fittedvalues(self) -> np.ndarray:
        if getattr(self.model, "endog", None) is None:
            raise ValueError("the data were removed (remove_data()): no fitted values")
        return self._layout.fittedvalues(self)

    def _rows(self, values: np.ndarray):
        """Row-level ``values`` as statsmodels returns them: an ndarray for array-built
        models, a Series on the data's row labels otherwise."""
        if self._array_output:
            return values
        labels = getattr(self.model, "row_labels", None)
        return pd.Series(values, index=labels if labels is not None else None)

    @property
    def fittedvalues(self):
        """``X β̂ + Z γ̂ + offset`` per row (conditional fitted values, with the BLUPs)."""
        return self._rows(self._fittedvalues)

    @property
    def resid(self):
        """Conditional residuals ``y - fittedvalues``."""
        return self._rows(self.model.endog - self._fittedvalues)

    def _record_history(self) -> None:
        """Keep the optimiser's record as ``hist`` (``fit(full_output=True)``)."""
        o = self.optim
        self._hist = [
            {
                "method": o.method,
                "converged": o.converged,
                "iterations": o.n_iter,
                "fcalls": o.n_eval,
                "newton_steps": o.n_newton,
                "theta_start": o.theta_start,
                "theta": o.theta,
                "objective": o.objective,
                "gradient": o.gradient,
                "message": o.message,
            }
        ]

    @property
    def hist(self) -> list[dict]:
        """statsmodels' ``hist`` (after ``fit(full_output=True)``): one dict per optimiser
        run with its method, counts, start and end ``θ``, objective and gradient."""
        if "_hist" not in self.__dict__:
            raise AttributeError("hist is recorded by fit(full_output=True)")
        return self._hist

    def remove_data(self) -> None:
        """Drop the row-level data from the model (statsmodels' ``remove_data``): the
        results keep what their summary needs (computed now), the model keeps its
        per-group cross-products (``loglike`` still works) but no longer its rows."""
        self.summary()  # computes and keeps the Wald covariances
        for name in ("endog", "exog", "exog_re", "exog_z", "group_codes", "_formula_data"):
            if name in self.model.__dict__:
                setattr(self.model, name, None)
        self.__dict__.pop("_fittedvalues", None)

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
        return self._layout.varcorr(self)

    def summary(self, yname=None, xname_fe=None, xname_re=None, title=None, alpha=0.05):
        """statsmodels-style summary table (``print(result.summary())``); statsmodels'
        arguments: ``yname``, ``xname_fe``/``xname_re`` (row names of the fixed effects and
        of the variance parameters) and ``title``. Where statsmodels is installed the
        summary is an instance of its ``summary2.Summary``.

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
        return self._layout.summary(
            self, alpha, yname=yname, xname_fe=xname_fe, xname_re=xname_re, title=title
        )

    def __repr__(self) -> str:
        return (
            f"<MixedLMResults {self.method}: llf={self.llf:.4f}, nobs={self.nobs}, "
            f"groups={self._layout.groups(self)}, converged={self.converged}>"
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
        """Notebook display: the styled summary (:mod:`mixedjax.display.html`)."""
        return self._layout.html(self)


def layout_of(model):
    """The results layout of ``model``'s engine (chosen by its ``structure``)."""
    from mixedjax.engines.protocol import CROSSED, engine_for

    if engine_for(model.structure) is CROSSED:
        from mixedjax.results.crossed import CROSSED

        return CROSSED
    from mixedjax.results.onefactor import ONE_FACTOR

    return ONE_FACTOR
