"""Batches of fits: many responses on one design, or many independent data sets.

:func:`fit_many` (behind :meth:`mixedjax.MixedLM.fit_many`) fits ``k`` responses that share
a model's design in one jitted call of :func:`mixedjax.batch.kernels.fit_stream`;
:func:`fit_models` does the same for ``k`` models of the same structure on different data
(different numbers of rows and groups). Both return a :class:`BatchResults`: arrays with a
leading axis of length ``k`` plus :meth:`BatchResults.result`, the full
:class:`~mixedjax.results.mixedlm.MixedLMResults` of one member (identical to fitting that member
alone).

Example:
    >>> import numpy as np, mixedjax
    >>> df = mixedjax.datasets.load("sleepstudy")
    >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
    ...                                   re_formula="~Days")
    >>> Y = np.column_stack([df["Reaction"], np.log(df["Reaction"])])
    >>> batch = m.fit_many(Y)
    >>> batch.fe_params.shape
    (2, 2)
"""

import copy
import warnings
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.batch import kernels as batch
from mixedjax.core.progress import progress as progress_bar
from mixedjax.core.progress import reporting
from mixedjax.core.watchdog import wait_ready
from mixedjax.design.crossed import CrossedStructure, response_design, with_response
from mixedjax.design.groups import GroupedData, pad_groups
from mixedjax.fit import conditioning, estimation
from mixedjax.fit.crossed import NEWTON_MAX_DENSE, fit_program, fit_responses
from mixedjax.fit.crossed import estimates_at as crossed_estimates_at
from mixedjax.fit.optimize import STATUS_CONVERGED


class BatchResults:
    """Results of ``k`` fits (read-only arrays with a leading axis ``k``).

    Attributes:
        names: ``k`` names (response columns, or ``0..k-1``).
        fe_params: ``DataFrame (k, p)`` fixed effects.
        bse_fe: ``DataFrame (k, p)`` their standard errors (lme4's ``vcov``).
        cov_re: ``(k, q, q)`` random-effects covariances (data scale).
        vcomp: ``(k, k_vc)`` variance components (data scale).
        scale: ``(k,)`` residual variances σ².
        llf: ``(k,)`` log-likelihoods (restricted for REML).
        converged: ``(k,)`` bool.
        theta: ``(k, n_theta)`` ``θ̂`` (lme4's ``theta``).
        n_iter: ``(k,)`` quasi-Newton iterations; ``status`` the optimiser's codes.
        refitted: positions of the members that the batch optimiser left unconverged and
            that were refitted by their own single fit (usually none).
        reml: whether the fits are REML.

    Example:
        >>> import numpy as np, mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days")
        >>> Y = np.column_stack([df["Reaction"], 2 * df["Reaction"]])
        >>> batch = m.fit_many(Y)
        >>> np.round(batch.llf[0], 3)  # the single fit's -871.814
        np.float64(-871.814)
        >>> bool(np.allclose(batch.fe_params.iloc[1], 2 * batch.fe_params.iloc[0]))
        True
    """

    def __init__(
        self,
        names: Sequence,
        out: batch.FitOutput,
        structure,
        exog_names: list[str],
        exog_re_names: list[str],
        model_of: Callable[[int], object],
        reml: bool,
        method: str,
        gtol: float,
        maxiter: int,
        free_mask: np.ndarray,
        terms: Sequence = (),
    ):
        self.names = list(names)
        self.reml = reml
        self.method = method
        self._out = out = _to_numpy(out)
        self._model_of = model_of
        self._gtol, self._maxiter, self._free_mask = gtol, maxiter, free_mask
        self._structure = structure
        index = pd.Index(self.names, name="response")
        self.theta = out.theta
        self.scale = out.scale
        self.llf = -0.5 * out.objective
        self.status = out.opt.status
        self.converged = self.status == STATUS_CONVERGED
        self.n_iter = out.opt.n_iter
        self.fe_params = pd.DataFrame(out.beta, index=index, columns=exog_names)
        se = np.sqrt(np.diagonal(out.cov_beta, axis1=1, axis2=2))
        self.bse_fe = pd.DataFrame(se, index=index, columns=exog_names)
        self.exog_re_names = list(exog_re_names)
        if isinstance(structure, CrossedStructure):  # variances per term: term_variances()
            self.cov_re = self.vcomp = None
        else:
            q = structure.k_re
            rows, cols = np.triu_indices(q)[1], np.triu_indices(q)[0]
            L = np.zeros((len(self.names), q, q))
            L[:, rows, cols] = out.theta[:, : structure.k_re2]
            self.cov_re = np.einsum("kij,klj->kil", L, L) * self.scale[:, None, None]
            self.vcomp = out.theta[:, structure.k_re2 :] ** 2 * self.scale[:, None]
        self.refitted = np.zeros(0, dtype=int)
        self._terms = list(terms)  # crossed models: the RandomTerms behind term_variances

    def __len__(self) -> int:
        return len(self.names)

    def _index(self, i) -> int:
        if isinstance(i, int | np.integer) and -len(self) <= i < len(self):
            return int(i) % len(self)
        if i in self.names:
            return self.names.index(i)
        raise KeyError(f"no member {i!r} in this batch of {len(self)} fits")

    def result(self, i) -> "object":
        """Full :class:`~mixedjax.results.mixedlm.MixedLMResults` of member ``i`` (position or
        name).

        The estimates are recomputed at the batch's ``θ̂`` on that member's own data, so the
        BLUPs, summary, ``varcorr`` and inference methods are available as for a single fit.

        Example:
            >>> import numpy as np, mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
            >>> batch = m.fit_many(np.column_stack([df["Yield"], df["Yield"] / 10]))
            >>> round(batch.result(1).llf - m.fit().llf, 4)  # y / 10: +(n - p) log 10
            66.775
        """
        from mixedjax.results.mixedlm import MixedLMResults, OptSummary

        i = self._index(i)
        model = self._model_of(i)
        summary = OptSummary.from_opt(
            jax.tree_util.tree_map(lambda a: a[i], self._out.opt),
            method=self.method,
            theta_start=self._out.theta_start[i],
            theta=self.theta[i],
            objective=self._out.objective[i],
            gtol=self._gtol,
            maxiter=self._maxiter,
            free_mask=self._free_mask,
            boundary=np.flatnonzero(self._out.zeroed[i]),
        )
        if isinstance(model.structure, CrossedStructure):
            est = crossed_estimates_at(
                jnp.asarray(self.theta[i]), model.data, structure=model.structure, reml=self.reml
            )
            return MixedLMResults(model, self.theta[i], est, summary, self.reml)
        est = estimation.estimates_at(
            jnp.asarray(self.theta[i]), model.data, structure=model.structure, reml=self.reml
        )
        return MixedLMResults(model, self.theta[i], est, summary, self.reml)

    @property
    def is_singular(self) -> np.ndarray:
        """``(k,)`` lme4's ``isSingular`` per fit."""
        mask = self._structure.diagonal_theta_mask()
        return np.any(np.abs(self.theta[:, mask]) < estimation.SINGULAR_TOL, axis=1)

    def frame(self) -> pd.DataFrame:
        """One row per fit: fixed effects, their SEs, variances, σ², llf, converged.

        Example:
            >>> import numpy as np, mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
            >>> batch = m.fit_many(np.column_stack([df["Yield"], df["Yield"] / 10]))
            >>> batch.frame().columns.tolist()
            ['Intercept', 'se_Intercept', 'Group Var', 'scale', 'llf', 'converged']
        """
        parts = [self.fe_params, self.bse_fe.add_prefix("se_")]
        if self.cov_re is None:  # crossed: the diagonal variances of every term
            re = self.term_variances()
            extra = pd.DataFrame(
                {**re, "scale": self.scale, "llf": self.llf, "converged": self.converged},
                index=self.fe_params.index,
            )
            return pd.concat(parts + [extra], axis=1)
        q = self._structure.k_re
        rows, cols = np.tril_indices(q)
        re = {}
        for a, b in zip(rows, cols, strict=True):
            na, nb = self.exog_re_names[a], self.exog_re_names[b]
            key = f"{na} Var" if a == b else f"{nb} x {na} Cov"
            re[key] = self.cov_re[:, a, b]
        for j in range(self.vcomp.shape[1]):
            re[f"vc{j} Var"] = self.vcomp[:, j]
        extra = pd.DataFrame(
            {**re, "scale": self.scale, "llf": self.llf, "converged": self.converged},
            index=self.fe_params.index,
        )
        return pd.concat(parts + [extra], axis=1)

    def term_variances(self) -> dict[str, np.ndarray]:
        """Crossed models: ``{"{group} {column} Var": (k,)}``, the variance of every column
        of every term (data scale; covariances through :meth:`result`)."""
        out = {}
        for term, sl in zip(self._terms, self._structure.theta_slices(), strict=True):
            q = len(term.names)
            upper_rows, upper_cols = np.triu_indices(q)
            T = np.zeros((len(self.names), q, q))
            T[:, upper_cols, upper_rows] = self.theta[:, sl]
            var = np.einsum("kij,kij->ki", T, T) * self.scale[:, None]
            for j, name in enumerate(term.names):
                out[f"{term.group} {name} Var"] = var[:, j]
        return out

    def _repr_html_(self) -> str:
        """Notebook display: counts, one row per fit (:func:`~mixedjax.display.html.batch_html`)."""
        from mixedjax.display.html import batch_html

        return batch_html(self)

    def __repr__(self) -> str:
        return (
            f"<BatchResults {'REML' if self.reml else 'ML'}: {len(self)} fits, "
            f"{int(np.sum(self.converged))} converged>"
        )


def _to_numpy(tree):
    return jax.tree_util.tree_map(np.asarray, tree)


def _responses(Y, n: int) -> tuple[np.ndarray, list]:
    """``Y`` as a float ``(n, k)`` array and its column names, with clear errors."""
    if isinstance(Y, pd.Series):
        Y = Y.to_frame()
    if isinstance(Y, pd.DataFrame):
        names = list(Y.columns)
        bad = [c for c in Y.columns if not pd.api.types.is_numeric_dtype(Y[c].dtype)]
        if bad:
            raise TypeError(f"Y: column(s) {bad} are not numeric")
        values = Y.to_numpy(dtype=float)
    else:
        values = np.asarray(Y)
        if values.ndim == 1:
            values = values[:, None]
        if values.ndim != 2:
            raise ValueError(f"Y must be an (n, k) array, got shape {values.shape}")
        if values.dtype.kind not in "biuf":
            raise TypeError(f"Y must be numeric, got dtype {values.dtype}")
        values = values.astype(float)
        names = list(range(values.shape[1]))
    if values.shape[0] != n:
        raise ValueError(
            f"Y has {values.shape[0]} rows but the model has {n} observations (Y must be "
            "aligned with the model's rows, after any dropped missing values)"
        )
    if values.shape[1] == 0:
        raise ValueError("Y has no columns")
    finite = np.isfinite(values).all(axis=0)
    if not finite.all():
        raise ValueError(f"Y: column(s) {[names[j] for j in np.flatnonzero(~finite)][:10]} "
                         "contain NaN or inf")  # fmt: skip
    constant = np.ptp(values, axis=0) == 0
    if constant.any():
        raise ValueError(f"Y: column(s) {[names[j] for j in np.flatnonzero(constant)][:10]} "
                         "are constant")  # fmt: skip
    return values, names


def _check_fit_options(method, maxiter, gtol) -> str:
    from mixedjax.fit.options import _choose_method

    method = _choose_method(method)
    if not (isinstance(maxiter, int | np.integer) and maxiter > 0):
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    if not (np.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be a positive number, got {gtol!r}")
    return method


def _warn_unconverged(results: BatchResults, stacklevel: int = 3) -> None:
    from mixedjax.fit.options import ConvergenceWarning

    failed = np.flatnonzero(~results.converged)
    if failed.size:
        shown = [results.names[j] for j in failed[:5]]
        warnings.warn(
            f"{failed.size} of {len(results)} fits did not converge (e.g. {shown}); inspect "
            "BatchResults.status / result(i).optim, try method='bfgs' or a larger maxiter.",
            ConvergenceWarning,
            stacklevel=stacklevel,
        )


def fit_many(
    model,
    Y,
    reml: bool = True,
    *,
    method=None,
    maxiter: int = 500,
    gtol: float = 1e-9,
    progress: bool | None = None,
) -> BatchResults:
    """Fit ``k`` responses ``Y (n, k)`` on ``model``'s design in one compiled call.

    Only ``Z_i'y``, ``X'y`` and ``y'y`` are computed per response; the design's
    cross-products are shared by all ``k`` fits. Each fit starts from the data-based
    start of :meth:`mixedjax.MixedLM.fit` on its internally centred and scaled design
    (:mod:`mixedjax.fit.conditioning`; each response with its own location and scale), and the
    members are optimised by continuous batching
    (:mod:`mixedjax.fit.stream`: BFGS for ``method`` ``"lbfgs"``/``"bfgs"``, exact Newton for
    ``"newton"``) to a scaled gradient of 1e-12 or the exact Newton polish, like the single
    fit, so member ``i`` equals ``MixedLM(Y[:, i], ...).fit(reml=reml)`` to about 1e-9
    relative (both are at the optimum to rounding). ``progress``: a bar of finished fits,
    updated from inside the compiled loop (:mod:`mixedjax.core.progress`; ``None``: only in
    notebooks and terminals).

    Example:
        >>> import numpy as np, mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject")
        >>> Y = df["Reaction"].to_numpy()[:, None] + np.arange(3.0) * df["Days"].to_numpy()[:, None]
        >>> fits = m.fit_many(Y)  # the slope grows by 1 per column; the variances do not move
        >>> np.round(np.diff(fits.fe_params["Days"]), 6)
        array([1., 1.])
    """
    method = _check_fit_options(method, maxiter, gtol)
    values, names = _responses(Y, model.nobs)
    # Fit on the standardized design, as MixedLM.fit does (mixedjax.fit.conditioning): the
    # design part is shared, each response is centred and scaled by its own (μ, s).
    std = model._standardized(center_re=True)
    X_std, Z_std = conditioning.standard_design(std, model)
    rows = model.rows  # weights and offset: standardize Y - o, then the working rows
    offset = rows.offset[:, None] if rows.has_offset else 0.0
    center, scale = conditioning.response_location_scale(values - offset, std.const)
    working = rows.working_response(values - center) / scale
    data = _response_data(std.data, working, X_std, Z_std, model)
    free = np.ones(model.structure.n_theta, dtype=bool)
    with progress_bar(total=len(names), desc="fit_many", unit="fits", enabled=progress) as bar:
        out_std = fit_all(
            data, free, gtol, batch.RESPONSE_FIELDS, model.structure, bool(reml), method,
            int(maxiter), bar,
        )  # fmt: skip
    members = [std._replace(y_center=c, y_scale=s) for c, s in zip(center, scale, strict=True)]
    out = _to_original(out_std, members, model.structure, bool(reml))
    out = out._replace(objective=out.objective - 2.0 * rows.loglik_jacobian)  # -2 log L

    def model_of(i: int):
        member = copy.copy(model)
        member.endog = values[:, i]
        member.endog_names = str(names[i])
        member.data = _response_data(
            model.data, rows.working_response(values[:, [i]]), rows.working_design(model.exog),
            rows.working_design(model.exog_z), model,
        )  # fmt: skip
        member.data = jax.tree_util.tree_map(
            lambda a, f: a[0] if f in batch.RESPONSE_FIELDS else a,
            member.data, GroupedData(*GroupedData._fields),
        )  # fmt: skip
        member.__dict__.pop("_standardized_cache", None)
        member.__dict__.pop("_program_cache", None)  # its padded data belong to the model
        return member

    return _finish(
        out, names, model.structure, model.exog_names, model.exog_re_names, model_of,
        bool(reml), method, gtol, int(maxiter), free,
    )  # fmt: skip


def _response_data(design: GroupedData, Y, X, Z, model) -> GroupedData:
    """``design`` with the response cross-products of ``Y (n, k)`` (leading axis ``k``; group
    axis padded like ``design``)."""
    Zty, Xty, yty = batch.response_crossprods(Y, X, Z, model.group_codes, model.n_groups)
    n_pad = design.ZtZ.shape[0] - model.n_groups
    Zty = np.concatenate([Zty, np.zeros((Zty.shape[0], n_pad, Zty.shape[2]))], axis=1)
    return design._replace(Zty=jnp.asarray(Zty), Xty=jnp.asarray(Xty), yty=jnp.asarray(yty))


def _to_original(out: batch.FitOutput, stds, structure, reml) -> batch.FitOutput:
    """Map fits on standardized data back, vectorised over the ``k`` members
    (:mod:`mixedjax.fit.conditioning`: ``θ = lower(B Λ*)``, ``β = s A β* + (μ/c) e_c``,
    ``cov β = s² A C* A'``, ``σ² = s² σ*²``, ``-2ℓ = -2ℓ* + 2 m log s - [REML] 2 log|det A|``);
    ``opt`` stays on the fitted scale.

    ``stds``: :class:`~mixedjax.fit.conditioning.Standardized` of each member; its fields are
    stacked, so a shared design may repeat one object with per-member ``y_center/y_scale``.
    """
    A = np.stack([s.x_map.matrix for s in stds])
    B = np.stack([s.z_map.matrix for s in stds])
    center = np.array([s.y_center for s in stds])
    scale = np.array([s.y_scale for s in stds])
    n_obs = np.array([float(s.data.n_obs) for s in stds])
    const = np.array([-1 if s.const is None else s.const for s in stds])
    const_value = np.array([s.const_value for s in stds])
    dof = n_obs - A.shape[-1] if reml else n_obs
    objective = out.objective + 2.0 * dof * np.log(scale)
    if reml:
        objective = objective - 2.0 * np.linalg.slogdet(A)[1]
    beta = scale[:, None] * np.einsum("kij,kj->ki", A, out.beta)
    has = np.flatnonzero(const >= 0)
    beta[has, const[has]] += center[has] / const_value[has]
    return out._replace(
        theta_start=conditioning.thetas_to_original(B, out.theta_start, structure),
        theta=conditioning.thetas_to_original(B, out.theta, structure),
        objective=objective,
        beta=beta,
        scale=scale**2 * out.scale,
        cov_beta=scale[:, None, None] ** 2 * np.einsum("kij,kjl,kml->kim", A, out.cov_beta, A),
    )


def fit_all(data, free, gtol, batched_fields, structure, reml, method, maxiter, bar):
    """All members in one call of :func:`mixedjax.batch.kernels.fit_stream` (continuous batching:
    the cost is the members' total number of evaluations, not ``k`` times the slowest's);
    ``bar`` (a :class:`~mixedjax.core.progress.Progress`) counts finished fits."""
    with reporting(bar):
        out = batch.fit_stream(
            data, jnp.asarray(free), gtol, batched_fields=batched_fields, structure=structure,
            reml=reml, method=method, maxiter=maxiter,
            slots=(batch.STREAM_SLOTS, batch.STREAM_BUDGET, batch.TAIL_SLOTS),
            report=bar.enabled,
        )  # fmt: skip
        out = _to_numpy(wait_ready(out, what="fit_many stream"))
    bar.update(bar.total - bar.n)
    return out


#: At most this many unconverged members of a batch are refitted one by one (see
#: :func:`_refit_stragglers`); the others keep the streaming result and are reported.
MAX_STRAGGLER_REFITS = 64


def _finish(
    out, names, structure, exog_names, exog_re_names, model_of, reml, method, gtol, maxiter,
    free, terms=(),
) -> BatchResults:  # fmt: skip
    """The end of every batch fit: refit the stragglers with their own single fit, build
    the :class:`BatchResults`, warn about members that still did not converge."""
    out, refitted = _refit_stragglers(
        out, lambda i: model_of(i).fit(reml=reml, maxiter=maxiter, gtol=gtol)
    )
    results = BatchResults(
        names, out, structure, exog_names, exog_re_names, model_of, reml, method, gtol,
        maxiter, free, terms,
    )  # fmt: skip
    results.refitted = refitted
    _warn_unconverged(results, stacklevel=4)
    return results


def _refit_stragglers(out: batch.FitOutput, fit_member) -> tuple[batch.FitOutput, np.ndarray]:
    """Refit the members the streaming BFGS left unconverged with the single fit itself
    (``fit_member(i)``: that member's ``MixedLM.fit``, which optimises on internally centred
    and scaled data), keeping a refit that converged or reached a higher likelihood.

    These are rare (none of 10,000 simulated sleepstudy responses on the standardized
    design; 3 when the batch ran on the raw scale, creeping along a flat curved valley towards
    a boundary where the single fit needs a dozen iterations). A loop over at most
    :data:`MAX_STRAGGLER_REFITS` members (not over groups or rows).
    """
    todo = np.flatnonzero(out.opt.status != STATUS_CONVERGED)[:MAX_STRAGGLER_REFITS]
    refitted: list[int] = []
    if todo.size == 0:
        return out, np.array(refitted, dtype=int)
    out = jax.tree_util.tree_map(np.array, out)  # writable copies
    for i in todo:  # a handful of members
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            single = fit_member(int(i))
        if not (single.converged or -2.0 * single.llf < out.objective[i]):
            continue
        o = single.optim
        out.opt.x[i], out.opt.value[i], out.opt.grad[i] = o.theta, o.objective, o.gradient
        out.opt.n_iter[i] += o.n_iter
        out.opt.n_eval[i] += o.n_eval
        out.opt.n_newton[i] += o.n_newton
        out.opt.scaled_grad[i] = o.scaled_gradient
        out.opt.status[i] = STATUS_CONVERGED if single.converged else out.opt.status[i]
        out.theta[i], out.objective[i] = single.theta, -2.0 * single.llf
        out.zeroed[i] = np.isin(np.arange(out.zeroed.shape[1]), o.boundary)
        out.beta[i], out.scale[i] = np.asarray(single.fe_params), single.scale
        out.cov_beta[i] = single._cov_fe
        refitted.append(int(i))
    return out, np.array(refitted, dtype=int)


def stack_data(datasets: Sequence[GroupedData], n_groups: int | None = None) -> GroupedData:
    """Stack data sets on a new leading axis, padding each to ``n_groups`` empty-padded groups
    (default: the largest)."""
    if not datasets:
        raise ValueError("datasets is empty")
    target = max(d.ZtZ.shape[0] for d in datasets) if n_groups is None else n_groups
    padded = [pad_groups(d, target) for d in datasets]
    return GroupedData(*[jnp.stack(fields) for fields in zip(*padded, strict=True)])


def fit_models(
    models: Sequence,
    reml: bool = True,
    *,
    names: Sequence | None = None,
    method=None,
    maxiter: int = 500,
    gtol: float = 1e-9,
    progress: bool | None = None,
) -> BatchResults:
    """Fit independent models of one structure (data sets of any sizes) in one compiled call.

    Every model must have the same random-effects structure and number of fixed effects;
    the group axis of each is padded with empty groups to the largest, which changes no
    likelihood. Member ``i`` equals ``models[i].fit(reml=reml)``. Models with several
    grouping factors (the crossed engine) need the same terms (sizes ``q``) and fixed
    effects; their factors may have any numbers of levels, and each member runs its own
    structure's fit program (:func:`_fit_crossed_models`). ``progress``: a bar of
    finished fits (:mod:`mixedjax.core.progress`).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> models = [mixedjax.MixedLM.from_formula("Reaction ~ Days", d, groups="Subject")
        ...           for d in (df, df[df["Subject"] != "308"])]
        >>> mixedjax.fit_models(models).llf.shape
        (2,)
    """
    models = list(models)
    if not models:
        raise ValueError("models is empty")
    first = models[0]
    for j, m in enumerate(models[1:], start=1):
        if _layout_key(m) != _layout_key(first) or m.k_fe != first.k_fe:
            raise ValueError(
                f"models[{j}] has structure {m.structure} and {m.k_fe} fixed effects; "
                f"models[0] has {first.structure} and {first.k_fe}: a batch needs one structure"
            )
    names = list(range(len(models))) if names is None else list(names)
    if len(names) != len(models):
        raise ValueError(f"names has {len(names)} entries for {len(models)} models")
    method = _check_fit_options(method, maxiter, gtol)
    if isinstance(first.structure, CrossedStructure):
        return _fit_crossed_models(models, bool(reml), names, method, int(maxiter), gtol, progress)
    stds = [m._standardized(center_re=True) for m in models]  # as MixedLM.fit fits
    data = stack_data([s.data for s in stds])
    free = np.ones(first.structure.n_theta, dtype=bool)
    with progress_bar(total=len(models), desc="fit_models", unit="fits", enabled=progress) as bar:
        out = fit_all(
            data, free, gtol, GroupedData._fields, first.structure, bool(reml), method,
            int(maxiter), bar,
        )  # fmt: skip
    out = _to_original(out, stds, first.structure, bool(reml))
    return _finish(
        out, names, first.structure, first.exog_names, first.exog_re_names,
        lambda i: models[i], bool(reml), method, gtol, int(maxiter), free,
    )  # fmt: skip


def _layout_key(model):
    """What members of one batch share: the one-factor structure, or the crossed terms'
    sizes (the factors' numbers of levels may differ between crossed members)."""
    if isinstance(model.structure, CrossedStructure):
        return ("crossed", tuple(model.structure.q))
    return model.structure


def _fit_crossed_models(models, reml, names, method, maxiter, gtol, progress) -> BatchResults:
    """:func:`fit_models` for crossed-engine models: each member runs the crossed fit
    program of its own structure (:func:`mixedjax.fit.crossed.fit_program`: members whose
    factors have the same numbers of levels and pattern share one executable), and the
    runs are stacked into one :class:`BatchResults`. A loop over models, not over groups."""
    outs = []
    with progress_bar(total=len(models), desc="fit_models", unit="fits", enabled=progress) as bar:
        for m in models:
            theta0 = np.asarray(m.default_theta(), dtype=float)
            free = np.ones(m.structure.n_theta, dtype=bool)
            run = fit_program(
                theta0, free, m.data, 1.0 if reml else 0.0, gtol, structure=m.structure,
                method=method, maxiter=maxiter,
                newton_steps=8 if m.structure.n_dense + m.k_fe < NEWTON_MAX_DENSE else 0,
            )  # fmt: skip
            run = jax.device_get(wait_ready(run, what="fit_models"))
            est = run.estimates
            outs.append(
                batch.FitOutput(
                    opt=run.opt, theta_start=theta0, theta=np.asarray(run.theta),
                    objective=np.asarray(est.objective) - 2.0 * m.rows.loglik_jacobian,
                    zeroed=np.asarray(run.zeroed), beta=np.asarray(est.beta),
                    scale=np.asarray(est.scale), cov_beta=np.asarray(est.cov_beta),
                )
            )  # fmt: skip
            bar.update(1)
    out = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *outs)
    first = models[0]
    return _finish(
        out, names, first.structure, first.exog_names, [], lambda i: models[i], reml, method,
        gtol, maxiter, np.ones(first.structure.n_theta, dtype=bool), first.terms,
    )  # fmt: skip


def fit_many_crossed(
    model,
    Y,
    reml: bool = True,
    *,
    method=None,
    maxiter: int = 500,
    gtol: float = 1e-9,
    progress: bool | None = None,
) -> BatchResults:
    """:func:`fit_many` for a model with several grouping factors: ``k`` responses
    ``Y (n, k)`` on one crossed design, vmapped in one compiled call
    (:func:`mixedjax.fit.crossed.fit_responses`; only each response's cross-products are
    formed). Every member starts from the model's start values and ends, like the single
    fit, with exact Newton steps where the dense block is small; members left unconverged
    are refitted by the single fit.

    Example:
        >>> import numpy as np, mixedjax
        >>> df = mixedjax.datasets.load("penicillin")
        >>> m = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
        >>> batch = m.fit_many(np.column_stack([df["diameter"], 2 * df["diameter"]]))
        >>> bool(np.isclose(batch.fe_params.iloc[1, 0], 2 * batch.fe_params.iloc[0, 0]))
        True
    """
    method = _check_fit_options(method, maxiter, gtol)
    values, names = _responses(Y, model.nobs)
    rows, structure = model.rows, model.structure
    design = response_design(model._working_terms, model._working_exog)
    theta0 = np.asarray(model.default_theta(), dtype=float)
    free = np.ones(structure.n_theta, dtype=bool)
    small = structure.n_dense + structure.p + 1 <= NEWTON_MAX_DENSE
    with progress_bar(total=len(names), desc="fit_many", unit="fits", enabled=progress) as bar:
        opt, beta, scale, cov_beta, objective = wait_ready(
            fit_responses(
                jnp.asarray(rows.working_response(values).T), jnp.asarray(theta0),
                jnp.asarray(free), model.data, design, structure=structure, reml=bool(reml),
                method=method, maxiter=int(maxiter), gtol=float(gtol),
                newton_steps=8 if small else 0,
            ),
            what="fit_many",
        )  # fmt: skip
        bar.update(len(names))
    k = len(names)
    out = batch.FitOutput(
        opt=opt,
        theta_start=np.tile(theta0, (k, 1)),
        theta=np.asarray(opt.x),
        objective=np.asarray(objective) - 2.0 * rows.loglik_jacobian,  # -2 log L
        zeroed=np.zeros((k, structure.n_theta), dtype=bool),
        beta=beta,
        scale=scale,
        cov_beta=cov_beta,
    )

    def model_of(i: int):
        member = copy.copy(model)
        member.endog = values[:, i]
        member.endog_names = str(names[i])
        member._working_endog = rows.working_response(values[:, i])
        working = jnp.asarray(member._working_endog)
        member.data = with_response(model.data, structure, design, working)
        return member

    return _finish(
        out, names, structure, model.exog_names, [], model_of, bool(reml), method, gtol,
        int(maxiter), free, model.terms,
    )  # fmt: skip
