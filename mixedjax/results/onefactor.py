"""The one-factor engine's layout of a fit's results (one grouping factor, with variance
components inside it): what :class:`~mixedjax.results.mixedlm.MixedLMResults` asks of
:data:`ONE_FACTOR` when its model's ``structure`` is a
:class:`~mixedjax.core.covariance.CovStructure`.

This is statsmodels' layout: ``cov_re`` is the ``(k_re, k_re)`` covariance of ``exog_re``'s
random effects and ``vcomp`` the variance components (data scale); ``params`` packs β,
``tril(Ψ₁)`` row-major and ``τ₁`` (profile scale, divided by σ²); ``random_effects`` maps
each group label to its BLUPs. Models built from an lme4 formula show lme4's terms in
``ranef()`` and ``varcorr()`` (:func:`mixedjax.results.layout.one_factor_term_estimates`).
"""

from collections.abc import ItemsView, Mapping, ValuesView

import numpy as np
import pandas as pd

from mixedjax.core.covariance import theta_to_cov
from mixedjax.fit.estimation import Estimates


def _level_of(colname: str) -> str:
    """``"C(cask)[a]"`` or ``"cask[T.a]"`` -> ``"a"``; other names unchanged."""
    if colname.endswith("]") and "[" in colname:
        level = colname[colname.index("[") + 1 : -1]
        return level[2:] if level.startswith("T.") else level
    return colname


class RandomEffects(dict):
    """Read-only dict group label -> ``pd.Series`` of that group's BLUPs (statsmodels'
    ``random_effects``: a ``dict`` keyed by the original group values), each Series built
    on access so millions of groups cost nothing until read.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> re = r.random_effects
        >>> isinstance(re, dict), len(re), list(re["308"].index)
        (True, 18, ['Subject', 'Days'])
    """

    def __init__(self, labels, values, names_of):
        super().__init__((lab, i) for i, lab in enumerate(labels))
        self._values = values
        self._names_of = names_of

    def _build(self, i: int):
        names, cols = self._names_of(i)
        return pd.Series(self._values[i, cols], index=names)

    def __getitem__(self, label):
        i = dict.__getitem__(self, label)
        out = self._build(i)
        out.name = label
        return out

    # Defined (not inherited) so that dict(re), {**re} and pandas read values through
    # __getitem__ rather than the stored row indices.
    def __iter__(self):
        return dict.__iter__(self)

    def get(self, label, default=None):
        return self[label] if label in self else default

    def values(self):
        return ValuesView(self)

    def items(self):
        return ItemsView(self)

    def copy(self) -> dict:
        return dict(self.items())

    def __reduce__(self):
        return (dict, (self.copy(),))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} groups)"

    def _read_only(self, *args, **kwargs):
        raise TypeError(f"{type(self).__name__} is read-only")

    __setitem__ = __delitem__ = update = pop = popitem = clear = setdefault = _read_only


class ConditionalCovariances(RandomEffects):
    """Dict group label -> conditional covariance ``pd.DataFrame`` of its random effects."""

    def _build(self, i: int):
        names, cols = self._names_of(i)
        return pd.DataFrame(self._values[i][np.ix_(cols, cols)], index=names, columns=names)

    def __getitem__(self, label):
        return self._build(dict.__getitem__(self, label))


class OneFactorLayout:
    """Results layout of the one-factor engine (stateless; every method takes the results)."""

    def populate(self, r, est: Estimates) -> None:
        """Set statsmodels' covariance attributes and the per-group BLUPs on the (not yet
        frozen) results ``r``: ``_cov_re_unscaled_pd``, ``_cov_re_pd`` (the DataFrames behind
        ``cov_re_unscaled`` and ``cov_re``), ``vcomp``, ``_blups``
        ``(g, r)`` and ``_cond_cov`` ``(g, r, r)`` (padded groups dropped)."""
        model, g = r.model, r.model.n_groups
        cov1, vc1 = theta_to_cov(np.asarray(r.theta), model.structure)
        r._cov_re_unscaled_pd = pd.DataFrame(
            np.asarray(cov1), index=model.exog_re_names, columns=model.exog_re_names
        )
        r._cov_re_pd = r._cov_re_unscaled_pd * r.scale
        r.vcomp = np.asarray(vc1) * r.scale
        r._blups = np.asarray(est.blups)[:g]
        r._cond_cov = np.asarray(est.cond_cov)[:g]

    # ------------------------------------------------------------------ parameters
    def theta_names(self, r) -> list[str]:
        """lme4's names of the entries of ``θ`` (``sd_`` for diagonal entries)."""
        from mixedjax.inference.profile import profile_names

        return profile_names(r.model)[: r.model.structure.n_theta]

    def params(self, r) -> pd.Series:
        """statsmodels' packed parameters: β, ``tril(Ψ₁)`` row-major, ``τ₁``."""
        rows, cols = np.tril_indices(r.k_re)
        values = np.concatenate(
            [
                r._fe_params_pd.to_numpy(),
                r._cov_re_unscaled_pd.to_numpy()[rows, cols],
                r.vcomp / r.scale,
            ]
        )
        return pd.Series(values, index=r.model.param_names)

    def phi(self, r) -> np.ndarray:
        rows, cols = np.tril_indices(r.k_re)
        return np.concatenate([r._cov_re_pd.to_numpy()[rows, cols], r.vcomp, [r.scale]])

    def engine_phi(self, r) -> np.ndarray:
        return r._phi

    def cov_user(self, r, information) -> np.ndarray:
        """Inverse observed information of ``_phi``, on the standardized data (well
        conditioned) and mapped back exactly (:mod:`mixedjax.fit.conditioning`)."""
        from mixedjax.fit.conditioning import variance_parameter_cov

        return variance_parameter_cov(r.model, r._phi, r.reml)

    # ------------------------------------------------------------------ random effects
    def _names_of(self, r, i: int):
        model = r.model
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

    def random_effects(self, r) -> RandomEffects:
        """Mapping group -> BLUPs ``pd.Series`` (data scale), like statsmodels."""
        return RandomEffects(list(r.model.group_labels), r._blups, lambda i: self._names_of(r, i))

    def random_effects_cov(self, r) -> Mapping:
        return ConditionalCovariances(
            list(r.model.group_labels), r._cond_cov, lambda i: self._names_of(r, i)
        )

    def ranef(self, r) -> pd.DataFrame:
        model = r.model
        if getattr(model, "lme4_terms", None) is not None:  # built from an lme4 formula
            from mixedjax.results.layout import one_factor_term_estimates, ranef_frame

            return ranef_frame(one_factor_term_estimates(r))
        labels = np.asarray(model.group_labels).astype(str)
        group_name = getattr(model, "group_name", "Group")
        sd = np.sqrt(np.maximum(np.diagonal(r._cond_cov, axis1=1, axis2=2), 0.0))
        frames = []
        for j, term in enumerate(model.re_terms):
            frames.append(
                pd.DataFrame(
                    {
                        "grpvar": group_name,
                        "term": term,
                        "grp": labels,
                        "condval": r._blups[:, j],
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
                        "condval": r._blups[gi, start + lj],
                        "condsd": sd[gi, start + lj],
                    }
                )
            )
            start += glob.shape[1]
        return pd.concat(frames, ignore_index=True)

    def varcorr(self, r) -> pd.DataFrame:
        if getattr(r.model, "lme4_terms", None) is not None:  # built from an lme4 formula
            from mixedjax.results import layout

            return layout.varcorr_frame(layout.one_factor_term_estimates(r), r.scale)
        from mixedjax.display.varcorr import varcorr_frame

        return varcorr_frame(r)

    def fittedvalues(self, r) -> np.ndarray:
        """``X β̂ + Z γ̂ + offset`` per row (conditional fitted values, with the BLUPs)."""
        model = r.model
        fixed = model.exog @ r._fe_params_pd.to_numpy() + model.rows.offset
        return fixed + np.einsum("nr,nr->n", model.exog_z, r._blups[model.group_codes])

    # ------------------------------------------------------------------ display
    def summary(self, r, alpha: float = 0.05, **names):
        """statsmodels' summary (``names``: ``yname``, ``xname_fe``, ``xname_re``,
        ``title``), as statsmodels' ``Summary`` type where statsmodels is installed."""
        from mixedjax.display.text import statsmodels_summary_class

        return statsmodels_summary_class()(r, alpha, **names)

    def html(self, r) -> str:
        """The styled summary (:func:`mixedjax.display.html.summary_html`)."""
        return r.summary().as_html()

    def groups(self, r) -> str:
        return str(r.model.n_groups)


#: The one-factor engine's results layout.
ONE_FACTOR = OneFactorLayout()
