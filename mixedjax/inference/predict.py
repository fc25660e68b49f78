"""Prediction with BLUPs, prediction-error variances, and simulation from a fitted model.

For a row with fixed design ``x (p,)``, random design ``z (r,)`` in group ``i``, the
conditional prediction is ``x'β̂ + z'b̂_i``; a level not seen in the fit has ``b̂ = 0``
(the population prediction, lme4's ``allow.new.levels``). Its prediction-error variance is
Henderson's

.. math::
    \\operatorname{var}(x'\\hat β + z'\\hat b_i - x'β - z'b_i)
      = (x - A_i'z)' C (x - A_i'z) + z' \\operatorname{cov}(b_i \\mid y) z, \\qquad
    A_i = σ^{-2}\\operatorname{cov}(b_i \\mid y) Z_i'X_i,

with ``C = cov(β̂)``: ``b̂_i`` moves with ``β̂`` by ``-A_i``, and the conditional error
``E(b_i | y, β) - b_i`` is uncorrelated with ``β̂``. For an unseen level ``A = 0`` and the
conditional covariance is the prior ``G``. A prediction interval adds σ² for a new
observation. Everything is vectorised over rows; no loop over groups.

``simulate`` draws ``y* = Xβ̂ + Z b* + ε`` with ``b* ~ N(0, G)`` per group and
``ε ~ N(0, σ² I)`` (lme4's ``simulate`` with ``use.u = FALSE``).
"""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.covariance import theta_to_factor
from mixedjax.design.crossed import CrossedStructure
from mixedjax.engines.crossed import term_factors
from mixedjax.inference.intervals import interval_frame
from mixedjax.spec.evaluation import in_namespace_of
from mixedjax.spec.formula import spec_matrix
from mixedjax.spec.lme4_formula import parse_formula
from mixedjax.spec.offsets import split_offsets
from mixedjax.spec.terms import terms_on_newdata


# ----------------------------------------------------------------- design of new rows
class RowDesign:
    """Designs of rows to predict: ``exog (m, p)``, global random design per block, group
    index (``-1`` for an unseen group)."""

    def __init__(self, exog, re_design, vc_designs, group_index, vc_unseen=None):
        self.exog = exog
        self.re_design = re_design
        self.vc_designs = vc_designs
        self.group_index = group_index
        #: ``(m, k_vc)`` ``Σ d²`` of design entries on levels the fit never saw (no column)
        self.vc_unseen = vc_unseen


def _group_index(model, groups) -> np.ndarray:
    # vectorised hash lookup of every row's label (-1 for a level the fit never saw)
    index = pd.Index(model.group_labels)
    return index.get_indexer(pd.Index(np.asarray(groups))).astype(np.int64)


def design_from_newdata(model, newdata: pd.DataFrame) -> RowDesign:
    """Rebuild the designs of a formula model on ``newdata`` (same encodings as the fit)."""
    train = getattr(model, "_formula_data", None)
    if train is None:
        raise ValueError(
            "newdata needs a model built with MixedLM.from_formula; for an array model pass "
            "exog, exog_re and groups"
        )
    if not isinstance(newdata, pd.DataFrame):
        raise TypeError(f"newdata must be a pandas DataFrame, got {type(newdata).__name__}")
    if getattr(model, "lme4_terms", None) is not None:
        return _lme4_design_from_newdata(model, train, newdata)
    rhs = split_offsets(model.formula)[0].split("~", 1)[1]
    exog = spec_matrix(rhs, train, newdata, "the fixed-effects formula")
    if model.re_formula is not None:
        re_design = spec_matrix(model.re_formula, train, newdata, "re_formula")
    elif model.k_re:
        re_design = np.ones((len(newdata), 1))
    else:
        re_design = np.zeros((len(newdata), 0))
    vc_designs = [
        spec_matrix(model.vc_formula[name], train, newdata, f"vc_formula[{name!r}]")
        for name in model.vc_names
    ]
    group_name = model.group_name
    if group_name not in newdata.columns:
        raise ValueError(f"newdata: the grouping column {group_name!r} is missing")
    groups = newdata[group_name].to_numpy()
    return RowDesign(exog, re_design, vc_designs, _group_index(model, groups))


def _lme4_design_from_newdata(model, train: pd.DataFrame, newdata: pd.DataFrame) -> RowDesign:
    """:class:`RowDesign` of a one-factor model built from an lme4 formula: its primary term
    gives the per-group design, nested terms the variance-component columns (one per
    training level; a level never seen adds its prior variance through ``vc_unseen``)."""
    formula = split_offsets(model.formula)[0]
    rhs = parse_formula(formula).fixed.split("~", 1)[1]
    exog = spec_matrix(rhs, train, newdata, "the fixed-effects formula")
    primary = next(entry[1] for entry in model.lme4_terms if entry[0] == "re")
    vcs = sorted((entry for entry in model.lme4_terms if entry[0] == "vc"), key=lambda e: e[1])
    terms = [primary] + [entry[2] for entry in vcs]
    evaluated = terms_on_newdata(formula, train, newdata, terms)
    re_design, codes = evaluated[0]
    labels = np.asarray(primary.levels).astype(str)[np.maximum(codes, 0)]
    index = pd.Index(np.asarray(model.group_labels).astype(str)).get_indexer(labels)
    group_index = np.where(codes >= 0, index, -1).astype(np.int64)
    m = len(newdata)
    vc_designs, unseen = [], np.zeros((m, len(vcs)))
    for c, (design, level) in enumerate(evaluated[1:]):
        full = np.zeros((m, terms[c + 1].n_levels))
        seen = np.flatnonzero(level >= 0)
        full[seen, level[seen]] = design[seen, 0]
        unseen[:, c] = np.where(level < 0, design[:, 0] ** 2, 0.0)
        vc_designs.append(full)
    return RowDesign(exog, re_design, vc_designs, group_index, unseen)


def design_from_arrays(model, exog, exog_re=None, groups=None) -> RowDesign:
    """Designs of new rows given as arrays (models without variance components)."""
    from mixedjax.spec.validation import as_float_matrix

    X, _ = as_float_matrix(exog, "exog")
    if X.shape[1] != model.k_fe:
        raise ValueError(f"exog must have {model.k_fe} columns, got {X.shape[1]}")
    if model.k_vc:
        raise ValueError("a model with variance components needs newdata (a formula model)")
    if groups is None:
        index = np.full(X.shape[0], -1)
    else:
        index = _group_index(model, groups)
        if index.shape[0] != X.shape[0]:
            raise ValueError("groups must have one entry per row of exog")
    if exog_re is None:
        if model.exog_re_names != ["Group"]:
            raise ValueError("exog_re is required for a model with random slopes")
        Z = np.ones((X.shape[0], 1))
    else:
        Z, _ = as_float_matrix(exog_re, "exog_re", X.shape[0])
    if Z.shape[1] != model.k_re:
        raise ValueError(f"exog_re must have {model.k_re} columns, got {Z.shape[1]}")
    return RowDesign(X, Z, [], index)


# ----------------------------------------------------------------- local random design
def _global_columns(model) -> list[np.ndarray]:
    """``(n_groups, K_c)`` position of each global vc column in the group's local
    columns (``-1``: the group has no random effect for that column)."""
    out, start = [], model.k_re
    for colnames, glob in zip(model.vc_colnames, model.vc_global_columns, strict=True):
        pos = np.full((model.n_groups, len(colnames)), -1, dtype=np.int64)
        gi, lj = np.nonzero(glob >= 0)
        pos[gi, glob[gi, lj]] = start + lj
        out.append(pos)
        start += glob.shape[1]
    return out


def local_random_design(model, rows: RowDesign):
    """Each row's random design in its group's local columns.

    Returns:
        ``(z (m, r), known (m, r), unestimated_vc_var_weight (m, k_vc))``: ``known`` marks
        random effects estimated in the fit (seen group and level); the last array holds,
        per variance component, ``Σ d²`` over the row's design entries without an estimated
        effect (their prior variance is ``τ_c`` times it).
    """
    m, r = rows.exog.shape[0], model.structure.n_random
    z = np.zeros((m, r))
    known = np.zeros((m, r), dtype=bool)
    seen = rows.group_index >= 0
    z[:, : model.k_re] = rows.re_design
    known[:, : model.k_re] = seen[:, None]
    unestimated = np.zeros((m, model.k_vc))
    for c, (design, pos) in enumerate(zip(rows.vc_designs, _global_columns(model), strict=True)):
        if design.shape[1] != pos.shape[1]:
            raise ValueError("newdata: a variance-component design has a different width")
        local = np.where(seen[:, None], pos[np.maximum(rows.group_index, 0)], -1)
        has = (local >= 0) & (design != 0)
        ri, ci = np.nonzero(has)
        np.add.at(z, (ri, local[ri, ci]), design[ri, ci])
        known[ri, local[ri, ci]] = True
        unestimated[:, c] = np.sum(np.where(has, 0.0, design) ** 2, axis=1)
    if rows.vc_unseen is not None:
        unestimated = unestimated + rows.vc_unseen
    return z, known, unestimated


def training_design(model):
    """The fit's own rows in the layout of :func:`local_random_design`."""
    z = model.exog_z
    return model.exog, z, z != 0, np.zeros((model.nobs, model.k_vc)), model.group_codes


def _offset_of_rows(model, newdata, exog, offset):
    """The offset of the rows predicted (``None`` for a model without one)."""
    spec = getattr(model, "offset_spec", None)
    has_offset = spec is not None and spec.present
    if newdata is None and exog is None:
        if offset is not None:
            raise ValueError("offset is for exog rows; the fit's rows have their own")
        return model.rows.offset if has_offset else None
    if newdata is not None:
        if offset is not None:
            raise ValueError("give the offset of newdata rows as a column, not offset=")
        return spec.evaluate(newdata, training=False) if has_offset else None
    if offset is None:
        if has_offset:
            raise ValueError("the model has an offset: pass offset= for the exog rows")
        return None
    values = np.asarray(offset, dtype=float).reshape(-1)
    if values.shape[0] != np.shape(exog)[0]:
        raise ValueError(f"offset has {values.shape[0]} entries for {np.shape(exog)[0]} rows")
    return values


def _residual_weights(model, training: bool):
    """Prior weight of each predicted row's residual: the fit's own, 1 for new rows."""
    return model.rows.weights if training else 1.0


def predict_frame(
    results, exog, z, known, unestimated, group_index, include_random, interval, alpha,
    weights=1.0,
):  # fmt: skip
    """Predictions (and optional interval bounds) for designed rows (see module docstring);
    ``weights`` are the prior weights of the rows' residuals (``σ²/w`` in a prediction
    interval)."""
    model = results.model
    beta = np.asarray(results.fe_params)
    C = results._cov_fe
    pred = exog @ beta
    if not include_random:
        var = np.einsum("mi,ij,mj->m", exog, C, exog)
    else:
        g = np.maximum(group_index, 0)
        seen = group_index >= 0
        blups = np.where(seen[:, None], results._blups[g], 0.0)
        zk = np.where(known & seen[:, None], z, 0.0)
        pred = pred + np.einsum("mr,mr->m", zk, blups)
        cond = results._cond_cov[g]  # (m, r, r)
        ZtX = np.asarray(model.data.ZtX)[g]
        A = np.einsum("mrs,msp->mrp", cond, ZtX) / results.scale
        w = exog - np.einsum("mr,mrp->mp", zk, A)
        var = np.einsum("mi,ij,mj->m", w, C, w) + np.einsum("mr,mrs,ms->m", zk, cond, zk)
        # random effects not estimated in the fit (new group or level): prior variance
        zu = z - zk
        var = var + np.einsum("mr,rs,ms->m", zu, _prior_cov(results), zu)
        var = var + unestimated @ np.asarray(results.vcomp, dtype=float).reshape(-1)
    return interval_frame(pred, interval, alpha, lambda: var, results.scale / weights)


@in_namespace_of(lambda results: results.model)
def predict(
    results,
    newdata=None,
    include_random: bool = True,
    allow_new_levels: bool = True,
    interval=None,
    alpha: float = 0.05,
    exog=None,
    exog_re=None,
    groups=None,
    offset=None,
):
    """Front end of :meth:`MixedLMResults.predict`.

    The model's offset is part of every prediction: the fit's own for its rows, evaluated on
    ``newdata`` (its ``offset(expr)`` terms or offset column), or ``offset`` for ``exog``
    rows."""
    from mixedjax.inference.fixed_tests import check_alpha

    check_alpha(alpha)
    model = results.model
    if isinstance(model.structure, CrossedStructure):
        if exog is not None or exog_re is not None or groups is not None or offset is not None:
            raise ValueError(
                "a model with several grouping factors predicts new rows from newdata (a "
                "DataFrame with the formula's columns), not from exog/exog_re/groups arrays"
            )
        from mixedjax.inference.predict_crossed import predict_crossed

        frame = predict_crossed(results, newdata, include_random, allow_new_levels, interval, alpha)
        if newdata is not None:
            frame.index = newdata.index
        return frame["predicted"].to_numpy() if interval is None else frame
    if newdata is not None and exog is not None:
        raise ValueError("give either newdata or exog, not both")
    if newdata is None and exog is None:
        design = training_design(model)
    else:
        rows = (
            design_from_newdata(model, newdata)
            if newdata is not None
            else design_from_arrays(model, exog, exog_re, groups)
        )
        z, known, unestimated = local_random_design(model, rows)
        if include_random and not allow_new_levels and np.any(rows.group_index < 0):
            new = np.flatnonzero(rows.group_index < 0)[:5]
            raise ValueError(
                f"rows {new.tolist()} have group levels not seen in the fit; pass "
                "allow_new_levels=True to predict them at the population level"
            )
        design = (rows.exog, z, known, unestimated, rows.group_index)
    known_offset = _offset_of_rows(model, newdata, exog, offset)
    noise = _residual_weights(model, newdata is None and exog is None)
    frame = predict_frame(results, *design, include_random, interval, alpha, noise)
    if known_offset is not None:
        for column in ("predicted", "lower", "upper"):
            if column in frame:
                frame[column] = frame[column] + known_offset
    if newdata is not None:
        frame.index = newdata.index
    return frame["predicted"].to_numpy() if interval is None else frame


def _prior_cov(results) -> np.ndarray:
    """``G`` (data scale) in the local random-effects layout, ``(r, r)``."""
    Lam = np.asarray(theta_to_factor(jnp.asarray(results.theta), results.model.structure))
    return results.scale * Lam @ Lam.T


# ----------------------------------------------------------------- simulation
def random_blocks(results) -> list[tuple[np.ndarray, np.ndarray, int, np.ndarray]]:
    """The model's random effects as blocks ``(design (n, q), codes (n,), n_levels, Λ (q, q))``
    on the working rows, with ``b = σΛu`` per level: one block of local columns per group for
    the one-factor engine, one block per term for the crossed engine."""
    model = results.model
    theta = np.asarray(results.theta)
    if isinstance(model.structure, CrossedStructure):
        factors = term_factors(jnp.asarray(theta), model.structure)
        return [
            (t.design, t.codes, t.n_levels, np.asarray(L))
            for t, L in zip(model._working_terms, factors, strict=True)
        ]
    Lam = np.asarray(theta_to_factor(jnp.asarray(theta), model.structure))
    return [(model.rows.working_design(model.exog_z), model.group_codes, model.n_groups, Lam)]


def working_exog(model) -> np.ndarray:
    """``W^{1/2} X`` of either engine."""
    if isinstance(model.structure, CrossedStructure):
        return model._working_exog
    return model.rows.working_design(model.exog)


def simulate_responses(results, n: int, seed: int) -> np.ndarray:
    """``(n, nobs)`` responses drawn from the fitted model (unconditional on the BLUPs):
    ``y = Xβ̂ + Σ_k Z_k b_k + o + ε``, ``b_k ~ N(0, Ĝ_k)`` per level, ``ε_j ~ N(0, σ̂²/w_j)``;
    either engine."""
    if not (isinstance(n, int | np.integer) and n > 0):
        raise ValueError(f"n must be a positive integer, got {n!r}")
    model = results.model
    key = jax.random.PRNGKey(int(seed))
    blocks = random_blocks(results)
    working = _simulate(
        key,
        jnp.asarray(working_exog(model) @ np.asarray(results.fe_params)),
        tuple(jnp.asarray(b[0]) for b in blocks),
        tuple(jnp.asarray(b[1]) for b in blocks),
        tuple(jnp.asarray(b[3]) for b in blocks),
        jnp.asarray(np.sqrt(results.scale)),
        int(n),
        tuple(int(b[2]) for b in blocks),
    )
    return model.rows.response(np.asarray(working))


@partial(jax.jit, static_argnums=(6, 7))
def _simulate(key, mean, designs, codes, factors, sigma, n, n_levels):
    keys = jax.random.split(key, len(designs) + 1)  # one block: the former (key_b, key_e)
    y = mean + sigma * jax.random.normal(keys[-1], (n, mean.shape[0]), dtype=mean.dtype)
    for k, (Z, c, L) in enumerate(zip(designs, codes, factors, strict=True)):
        u = jax.random.normal(keys[k], (n, n_levels[k], L.shape[0]), dtype=mean.dtype)
        b = sigma * jnp.einsum("ngk,rk->ngr", u, L)  # b = σ Λ u ~ N(0, σ² ΛΛ')
        y = y + jnp.einsum("ir,nir->ni", Z, b[:, c])
    return y
