"""How a fit runs, validated once: :class:`FitOptions` (optimiser, tolerances, precision,
devices, penalty) and the convergence warning, shared by every front end."""

from dataclasses import dataclass
from typing import Any

import numpy as np

from mixedjax.fit.optimize import METHODS


class ConvergenceWarning(UserWarning):
    """The optimiser stopped before reaching its convergence criterion.

    Example:
        >>> import warnings, mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days")
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     r = m.fit(maxiter=1, gtol=1e-300)  # an unreachable tolerance
        >>> caught[0].category.__name__, r.converged
        ('ConvergenceWarning', False)
    """


# statsmodels' fit keywords that have no meaning here (its optimiser chain) and are ignored.
_IGNORED_FIT_KWARGS = {"niter_sa", "do_cg", "full_output", "disp", "callback", "retall"}


def _choose_method(method) -> str:
    """The optimiser named by ``method`` (a name or statsmodels' list of names); L-BFGS if
    ``None``."""
    supported = METHODS
    if method is None:
        return "lbfgs"
    candidates = [method] if isinstance(method, str) else list(method)
    for m in candidates:
        if str(m).lower() in supported:
            return str(m).lower()
    raise ValueError(
        f"method must be one of {supported} (or a list containing one), got {method!r}"
    )


@dataclass(frozen=True)
class FitOptions:
    """The options of one fit, checked (:func:`fit_options`); they say *how* it runs.

    Attributes:
        reml: REML if true, else maximum likelihood.
        method: the optimiser (:data:`mixedjax.fit.optimize.METHODS`).
        maxiter: its iteration limit.
        gtol: tolerance on the scaled gradient ``max|∇d(θ)| / max(1, |d(θ)|)`` (raised to
            :data:`mixedjax.fit.precision.FLOAT32_GTOL` in float32).
        verbose: print the optimiser's trace and summary.
        dtype: ``jnp.float32``, or ``None`` for float64.
        mesh: the ``jax.sharding.Mesh`` the groups are sharded over, or ``None``.
        penalty: a :class:`mixedjax.fit.penalties.CovariancePenalty` on ``cov_re``, or ``None``.
    """

    reml: bool = True
    method: str = "lbfgs"
    maxiter: int = 500
    gtol: float = 1e-9
    verbose: bool = False
    dtype: Any = None
    mesh: Any = None
    penalty: Any = None

    @property
    def placed(self) -> bool:
        """The data leave the default layout (float64 on one device)."""
        return self.dtype is not None or self.mesh is not None


def fit_options(
    *,
    reml=True,
    method=None,
    maxiter=500,
    gtol=1e-9,
    verbose=False,
    dtype=None,
    devices=None,
    cov_pen=None,
    fe_pen=None,
    k_re: int = 1,
    ignored: dict | None = None,
) -> FitOptions:
    """``fit``'s keywords as :class:`FitOptions`, or the ``TypeError``/``ValueError`` that
    names the bad one. ``k_re``: the model's random-effects columns (a ``cov_pen`` on a
    model without them warns that it has no effect); ``ignored``: other keywords, which
    must be statsmodels' optimiser keywords that have no meaning here."""
    unknown = set(ignored or ()) - _IGNORED_FIT_KWARGS
    if unknown:
        raise TypeError(f"fit got unexpected keyword argument(s) {sorted(unknown)}")
    if not isinstance(reml, bool | np.bool_):
        raise TypeError(f"reml must be True or False, got {reml!r}")
    if fe_pen is not None:
        raise ValueError(
            "fe_pen (a fixed-effects penalty inside fit) is not supported: use "
            "fit_regularized(method='l1', alpha=...) for penalised fixed effects"
        )
    method = _choose_method(method)
    if not (isinstance(maxiter, int | np.integer) and maxiter > 0):
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    if not (np.isfinite(gtol) and gtol > 0):
        raise ValueError(f"gtol must be a positive number, got {gtol!r}")
    from mixedjax.fit.penalties import as_cov_penalty
    from mixedjax.fit.precision import FLOAT32_GTOL, parse_dtype

    dtype = parse_dtype(dtype)
    if dtype is not None:
        gtol = max(float(gtol), FLOAT32_GTOL)
    mesh = None
    if devices is not None:
        from mixedjax.fit.sharding import group_mesh

        mesh = group_mesh(devices)
    return FitOptions(
        reml=bool(reml), method=method, maxiter=int(maxiter), gtol=float(gtol),
        verbose=bool(verbose), dtype=dtype, mesh=mesh,
        penalty=as_cov_penalty(cov_pen, k_re, stacklevel=4),
    )  # fmt: skip
