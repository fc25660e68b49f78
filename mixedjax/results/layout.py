"""lme4's layouts of the random-effects estimates: ``VarCorr`` and ``ranef`` data frames.

Every engine reports its estimates as a list of :class:`TermEstimate` (one per
random-effects term, in lme4's order); the two frames below are built from that list only.
"""

from typing import NamedTuple

import numpy as np
import pandas as pd


class TermEstimate(NamedTuple):
    """Estimates of one random-effects term (data scale).

    Attributes:
        group: grouping factor as lme4 shows it (``"batch:cask"``).
        names: the ``q`` column names (``"(Intercept)"``, ``"Days"``).
        cov: ``(q, q)`` covariance of the term's random effects.
        levels: ``(n_levels,)`` level labels.
        condval: ``(n_levels, q)`` conditional modes (BLUPs).
        condsd: ``(n_levels, q)`` conditional standard deviations.
    """

    group: str
    names: tuple[str, ...]
    cov: np.ndarray
    levels: np.ndarray
    condval: np.ndarray
    condsd: np.ndarray


def varcorr_names(terms: list[TermEstimate]) -> list[str]:
    """lme4's ``VarCorr`` group names: a repeated factor gets ``.1``, ``.2``, ..."""
    seen: dict[str, int] = {}
    out = []
    for t in terms:
        count = seen.get(t.group, 0)
        out.append(t.group if count == 0 else f"{t.group}.{count}")
        seen[t.group] = count + 1
    return out


def varcorr_frame(terms: list[TermEstimate], scale: float) -> pd.DataFrame:
    """``as.data.frame(VarCorr(m))``: grp, var1, var2, vcov, sdcor (``Residual`` last).

    Per term: the variances, then the covariances (lower triangle column by column), whose
    ``sdcor`` is the correlation.
    """
    rows = []
    for group, t in zip(varcorr_names(terms), terms, strict=True):
        cov = np.asarray(t.cov)
        sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
        rows += [(group, t.names[i], None, cov[i, i], sd[i]) for i in range(len(t.names))]
        for j in range(len(t.names)):
            for i in range(j + 1, len(t.names)):
                denom = sd[i] * sd[j]
                corr = cov[i, j] / denom if denom > 0 else 0.0
                rows.append((group, t.names[j], t.names[i], cov[i, j], corr))
    rows.append(("Residual", None, None, scale, np.sqrt(scale)))
    return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])


def ranef_frame(terms: list[TermEstimate]) -> pd.DataFrame:
    """``as.data.frame(ranef(m, condVar = TRUE))``: grpvar, term, grp, condval, condsd.

    Terms on the same grouping factor are merged (as lme4's ``ranef`` does); rows are
    ordered by factor (first appearance), then term, then level.
    """
    frames = []
    groups = list(dict.fromkeys(t.group for t in terms))
    for group in groups:
        for t in (t for t in terms if t.group == group):
            for j, name in enumerate(t.names):
                frames.append(
                    pd.DataFrame(
                        {
                            "grpvar": group,
                            "term": name,
                            "grp": np.asarray(t.levels).astype(str),
                            "condval": np.asarray(t.condval)[:, j],
                            "condsd": np.asarray(t.condsd)[:, j],
                        }
                    )
                )
    return pd.concat(frames, ignore_index=True)


def random_effects_by_factor(terms: list[TermEstimate]) -> dict[str, pd.DataFrame]:
    """``{factor: DataFrame (levels x term names)}`` of the BLUPs, terms on a factor merged."""
    out: dict[str, pd.DataFrame] = {}
    for t in terms:
        frame = pd.DataFrame(
            np.asarray(t.condval), index=np.asarray(t.levels).astype(str), columns=list(t.names)
        )
        out[t.group] = frame if t.group not in out else out[t.group].join(frame, rsuffix="_")
    return out


def one_factor_term_estimates(results) -> list[TermEstimate]:
    """:class:`TermEstimate` per lme4 term of a one-factor fit built by :func:`model_from_lme4`."""
    model = results.model
    index = pd.Index(np.asarray(model.group_labels).astype(str))
    sd_all = np.sqrt(np.maximum(np.diagonal(results._cond_cov, axis1=1, axis2=2), 0.0))
    starts = np.cumsum([model.k_re] + [g.shape[1] for g in model.vc_global_columns])
    out = []
    for entry in model.lme4_terms:
        if entry[0] == "re":
            t = entry[1]
            rows = index.get_indexer(np.asarray(t.levels).astype(str))
            q = t.q
            out.append(
                TermEstimate(
                    t.group,
                    t.names,
                    results._cov_re_pd.to_numpy(),
                    t.levels,
                    results._blups[rows, :q],
                    sd_all[rows, :q],
                )
            )
            continue
        _, c, t = entry
        glob = model.vc_global_columns[c]
        gi, lj = np.nonzero(glob >= 0)
        level = glob[gi, lj]
        values = np.zeros((t.n_levels, 1))
        sds = np.zeros((t.n_levels, 1))
        values[level, 0] = results._blups[gi, starts[c] + lj]
        sds[level, 0] = sd_all[gi, starts[c] + lj]
        cov = np.array([[results.vcomp[c]]])
        out.append(TermEstimate(t.group, t.names, cov, t.levels, values, sds))
    return out
