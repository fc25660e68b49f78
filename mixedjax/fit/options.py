"""Fit options shared by every front end: the optimiser's name and the convergence warning."""

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
