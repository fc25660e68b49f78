"""Model comparison: likelihood-ratio tests with AIC and BIC (lme4's ``anova(m0, m1, ...)``).

Models are sorted by their number of parameters ``npar`` (fixed effects, estimated
covariance parameters and σ). Between consecutive models,

.. math::
    χ^2 = \\max(0, 2(\\ell_i - \\ell_{i-1})), \\qquad \\mathrm{Df} = npar_i - npar_{i-1},

referred to ``χ²_Df``. As lme4 (``refit = TRUE``), REML fits are first refitted by maximum
likelihood, and a message says so: REML likelihoods of models with different fixed effects
are not comparable. With ``refit=False`` the fits are compared as they are, which is only
allowed when all are REML with identical fixed effects, or all ML.
"""

import warnings

import numpy as np
import pandas as pd

from mixedjax.core.distributions import chi2_sf

#: What :func:`lrt` reads of a fit: any fitted mixed model of either engine has them.
_FIT_ATTRIBUTES = ("llf", "aic", "bic", "df_modelwc", "nobs", "reml", "model")


def _same_fixed_effects(a, b) -> bool:
    return a.model.exog.shape == b.model.exog.shape and np.array_equal(a.model.exog, b.model.exog)


def lrt(*fits, names: list[str] | None = None, refit: bool = True) -> pd.DataFrame:
    """Likelihood-ratio tests of nested fits (lme4's ``anova``).

    Args:
        *fits: two or more :class:`~mixedjax.MixedLMResults` on the same response.
        names: row labels (default ``m0, m1, ...`` in the order given).
        refit: refit REML fits by ML first (lme4's default).

    Returns:
        DataFrame with columns ``npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq)``,
        one row per model, sorted by ``npar``.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> m0 = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject").fit()
        >>> m1 = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                    re_formula="~Days").fit()
        >>> table = mixedjax.lrt(m0, m1)
        >>> int(table["Df"].iloc[1])
        2
    """
    if len(fits) == 1 and isinstance(fits[0], list | tuple):
        fits = tuple(fits[0])
    if len(fits) < 2:
        raise ValueError("lrt needs at least two fitted models")
    for i, fit in enumerate(fits):
        missing = [a for a in _FIT_ATTRIBUTES if not hasattr(fit, a)]
        if missing:
            raise TypeError(
                f"argument {i} is a {type(fit).__name__}, not a fitted mixed model "
                f"(it has no {', '.join(missing)})"
            )
    names = [f"m{i}" for i in range(len(fits))] if names is None else list(names)
    if len(names) != len(fits):
        raise ValueError(f"names has {len(names)} entries for {len(fits)} models")
    base = fits[0].model
    for name, fit in zip(names, fits, strict=True):
        if fit.nobs != base.nobs or not np.array_equal(fit.model.endog, base.endog):
            raise ValueError(f"model {name!r} is fitted to a different response or rows")

    reml = [fit.reml for fit in fits]
    if refit and any(reml):
        warnings.warn("refitting model(s) with ML (instead of REML)", UserWarning, stacklevel=2)
        fits = tuple(fit.model.fit(reml=False) if fit.reml else fit for fit in fits)
    elif any(reml):
        same = all(_same_fixed_effects(fits[0], f) for f in fits)
        if not (all(reml) and same):
            raise ValueError(
                "refit=False: REML log-likelihoods are only comparable between REML fits with "
                "identical fixed effects; use refit=True (ML refits)"
            )

    npar = np.array([fit.df_modelwc for fit in fits])
    order = np.argsort(npar, kind="stable")
    llf = np.array([fits[i].llf for i in order])
    npar = npar[order]
    chisq = np.concatenate([[np.nan], 2.0 * np.maximum(0.0, np.diff(llf))])
    df = np.concatenate([[np.nan], np.diff(npar).astype(float)])
    with np.errstate(invalid="ignore"):
        pvalue = np.where(df > 0, chi2_sf(np.nan_to_num(chisq), np.nan_to_num(df)), np.nan)
    pvalue[0] = np.nan
    return pd.DataFrame(
        {
            "npar": npar,
            "AIC": [fits[i].aic for i in order],
            "BIC": [fits[i].bic for i in order],
            "logLik": llf,
            "deviance": -2.0 * llf,
            "Chisq": chisq,
            "Df": df,
            "Pr(>Chisq)": pvalue,
        },
        index=[names[i] for i in order],
    )


def anova(*fits, names: list[str] | None = None, refit: bool = True) -> pd.DataFrame:
    """Alias of :func:`lrt` (lme4's name).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("dyestuff")
        >>> m0 = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit(reml=False)
        >>> bool(m0.llf == mixedjax.anova(m0, m0)["logLik"].iloc[0])
        True
    """
    return lrt(*fits, names=names, refit=refit)
