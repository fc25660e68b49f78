"""Generalized linear mixed models: ``glmer`` (lme4 formulas) and ``MixedGLM`` (arrays).

The model (lme4's notation; :mod:`mixedjax.engines.laplace`): for rows ``t`` in group ``i``

.. math::
    g(E[y_t | u_i]) = η_t = x_t'β + o_t + z_t'Λ(θ) u_i, \\qquad u_i \\sim N(0, I_r),

with ``y_t`` from a :mod:`~mixedjax.families` family (binomial proportions with the number of
trials as prior weights, Poisson counts). One grouping factor; its random-effects terms form
one block-diagonal ``Λ``: at most one term with several (correlated) columns, plus any
number of single-column terms (``(1 | g) + (0 + x | g)``).

``nAGQ`` chooses the approximation of the marginal likelihood, as in lme4:

* ``0``: Laplace, optimised over ``θ`` with ``β`` from the penalised IRLS (faster, cruder);
* ``1`` (default): Laplace, optimised over ``(θ, β)`` jointly;
* ``K > 1``: adaptive Gauss–Hermite with ``K`` nodes, for one scalar random effect per group.

Formula front end (:func:`glmer`): the fixed part is evaluated by formulaic, bar terms by
:mod:`mixedjax.spec.terms`; ``offset(expr)`` terms by :mod:`mixedjax.spec.offsets`;
``cbind(successes, failures) ~ ...`` gives the proportion ``successes / (successes +
failures)`` with ``successes + failures`` trials (multiplying any ``weights``), as R's
binomial family does.
"""

import re

import numpy as np
import pandas as pd

from mixedjax.core.covariance import CovStructure
from mixedjax.core.families import Family, family_from_name
from mixedjax.model.lme4 import lme4_design
from mixedjax.spec.evaluation import caller_namespace, evaluated_in, expression_values
from mixedjax.spec.offsets import formula_priors
from mixedjax.spec.terms import RandomTerm
from mixedjax.spec.validation import as_float_matrix

_CBIND = re.compile(r"^\s*cbind\s*\((.*)\)\s*$", re.DOTALL)
_RESPONSE = "_glmer_response_"


def _split_args(text: str) -> list[str]:
    out, depth, last = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(text[last:i].strip())
            last = i + 1
    out.append(text[last:].strip())
    return out


def split_cbind(formula: str, data: pd.DataFrame):
    """``(formula, data, trials, response name)`` with a ``cbind(s, f)`` response replaced
    by the proportion column; ``trials`` is ``None`` without ``cbind``.

    Example:
        >>> df = pd.DataFrame({"s": [1.0, 0.0], "n": [4.0, 2.0], "g": ["a", "b"]})
        >>> f, d, trials, name = split_cbind("cbind(s, n - s) ~ 1 + (1 | g)", df)
        >>> f, d["_glmer_response_"].tolist(), trials.tolist(), name
        ('_glmer_response_ ~ 1 + (1 | g)', [0.25, 0.0], [4.0, 2.0], 'cbind(s, n - s)')
    """
    lhs, tilde, rhs = formula.partition("~")
    match = _CBIND.match(lhs)
    if not tilde or match is None:
        return formula, data, None, lhs.strip()
    args = _split_args(match.group(1))
    if len(args) != 2 or not all(args):
        raise ValueError(
            f"cbind() in the response takes two arguments (successes, failures), got {lhs!r}"
        )
    successes = expression_values(args[0], data, f"cbind successes {args[0]!r}")
    failures = expression_values(args[1], data, f"cbind failures {args[1]!r}")
    for values, expr in ((successes, args[0]), (failures, args[1])):
        if np.any(values[np.isfinite(values)] < 0):
            raise ValueError(f"cbind: {expr!r} has negative counts")
    trials = successes + failures
    with np.errstate(invalid="ignore", divide="ignore"):
        proportion = np.where(trials > 0, successes / np.where(trials > 0, trials, 1.0), 0.0)
    proportion[~np.isfinite(trials)] = np.nan
    data = data.assign(**{_RESPONSE: proportion})
    return f"{_RESPONSE} ~{rhs}", data, trials, lhs.strip()


def _random_design(terms: list[RandomTerm]):
    """``(Z (n, r), structure, names per column, lme4 θ order)`` for terms on one factor."""
    multi = [t for t in terms if t.q > 1]
    if len(multi) > 1:
        raise ValueError(
            "glmer: at most one random-effects term with several (correlated) columns per "
            f"model; got {[t.names for t in multi]}"
        )
    primary = multi[0] if multi else terms[0]
    others = [t for t in terms if t is not primary]
    structure = CovStructure(k_re=primary.q, vc_sizes=tuple(1 for _ in others))
    Z = np.column_stack([primary.design] + [t.design for t in others])
    # θ in the structure's order: primary's lower triangle, then one entry per other term;
    # lme4 orders θ by term (formula order for one factor)
    pieces, start = {}, 0
    for t in [primary, *others]:
        size = t.q * (t.q + 1) // 2
        pieces[id(t)] = np.arange(start, start + size)
        start += size
    lme4_order = np.concatenate([pieces[id(t)] for t in terms])
    return Z, structure, [primary, *others], lme4_order


class MixedGLM:
    """A generalized linear mixed model with one grouping factor (statsmodels-style arrays).

    Args:
        endog: ``(n,)`` response (binomial: proportions or 0/1; Poisson: counts).
        exog: ``(n, p)`` fixed-effects design (array or DataFrame).
        groups: ``(n,)`` group labels.
        exog_re: ``(n, q)`` random-effects design with correlated columns (default: a random
            intercept).
        family: a name (``"binomial"``, ``"poisson"``) or a :mod:`mixedjax.families` object.
        weights: ``(n,)`` prior weights (binomial: the number of trials of each proportion).
        offset: ``(n,)`` known part of the linear predictor.
        nAGQ: ``1`` (Laplace), ``0`` (Laplace, ``β`` by PIRLS) or the number of adaptive
            Gauss–Hermite nodes (``> 1``, one scalar random effect per group only).

    Example:
        >>> import numpy as np, mixedjax
        >>> rng = np.random.default_rng(0)
        >>> g = np.repeat(np.arange(20), 10)
        >>> x = rng.normal(size=200)
        >>> y = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.5, 20)[g]))
        >>> fit = mixedjax.MixedGLM(y, np.column_stack([np.ones(200), x]), g,
        ...                         family="poisson").fit()
        >>> fit.fe_params.round(2).tolist(), fit.converged
        ([0.62, 0.29], True)
    """

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        family="binomial",
        weights=None,
        offset=None,
        nAGQ: int = 1,  # noqa: N803  (lme4's name)
    ):
        endog_name = getattr(endog, "name", None) or "y"
        endog = np.asarray(getattr(endog, "to_numpy", lambda: endog)(), dtype=float).reshape(-1)
        n = endog.size
        X, exog_names = as_float_matrix(exog, "exog", n)
        groups = np.asarray(groups)
        if groups.shape != (n,):
            raise ValueError(f"groups has shape {groups.shape}; endog has {n} rows")
        codes, labels = pd.factorize(pd.Series(groups), sort=True)
        if np.any(codes < 0):
            raise ValueError("groups has missing values")
        if exog_re is None:
            Z, re_names = np.ones((n, 1)), ["(Intercept)"]
        else:
            Z, re_names = as_float_matrix(exog_re, "exog_re", n)
            re_names = ["(Intercept)" if c in ("Intercept", "const") else c for c in re_names]
        term = RandomTerm("Group", tuple(re_names), Z, codes, np.asarray(labels).astype(str))
        self._setup(endog, str(endog_name), X, exog_names, [term], family, weights, offset, nAGQ)

    # ----------------------------------------------------------------- construction
    def _setup(self, endog, endog_name, X, exog_names, terms, family, weights, offset, nAGQ):  # noqa: N803
        self.family: Family = family_from_name(family)
        groups = list(dict.fromkeys(t.group for t in terms))
        #: "one-factor" (per-group modes, vmapped) or "crossed" (several grouping factors,
        #: crossed or nested: joint modes, :mod:`mixedjax.engines.laplace_terms`)
        self.engine = "one-factor" if len(groups) == 1 else "crossed"
        if self.family.has_dispersion and (self.engine == "crossed" or nAGQ == 0):
            raise ValueError(
                f"glmer: the {self.family.name} family (estimated dispersion) is fitted for "
                "one grouping factor with nAGQ >= 1; this model has "
                + ("several grouping factors" if self.engine == "crossed" else "nAGQ = 0")
            )
        n = endog.size
        self.endog = endog
        self.endog_names = endog_name
        self.exog = X
        self.exog_names = list(exog_names)
        self.nobs = n
        self.weights = np.ones(n) if weights is None else np.asarray(weights, float).reshape(n)
        self.offset = np.zeros(n) if offset is None else np.asarray(offset, float).reshape(n)
        for name, values in (("weights", self.weights), ("offset", self.offset)):
            if not np.all(np.isfinite(values)):
                raise ValueError(f"{name} has missing or non-finite values")
        if np.any(self.weights < 0):
            raise ValueError("weights must be non-negative")
        if not np.all(np.isfinite(X)):
            raise ValueError("exog has missing or non-finite values")
        self.family.check_response(endog, self.weights, endog_name)
        if isinstance(nAGQ, bool) or not isinstance(nAGQ, int | np.integer) or nAGQ < 0:
            raise ValueError(
                "nAGQ must be a non-negative integer (0: Laplace with the fixed effects from "
                f"PIRLS; 1: Laplace; > 1: adaptive Gauss-Hermite), got {nAGQ!r}"
            )
        if self.engine == "crossed":
            self._setup_terms(terms, X, groups, nAGQ)
            return
        Z, structure, ordered, lme4_order = _random_design(terms)
        if nAGQ > 1 and structure.n_random != 1:
            raise ValueError(
                f"nAGQ = {nAGQ} (adaptive Gauss-Hermite) needs a single scalar random effect "
                f"per group, as in lme4; this model has {structure.n_random} random effects "
                "per group: use nAGQ = 1 (Laplace)"
            )
        self.nAGQ = int(nAGQ)
        self.terms = terms  # lme4's order
        self.structure_terms = ordered  # the structure's order
        self.structure = structure
        self.theta_lme4_order = lme4_order
        self.exog_re = Z
        self.group_codes = terms[0].codes
        self.group_labels = np.asarray(terms[0].levels).astype(str)
        self.group_name = terms[0].group
        self.n_groups = len(self.group_labels)
        self.k_fe = X.shape[1]
        self.formula = None
        self.data = None

    def _setup_terms(self, terms, X, groups, nAGQ) -> None:  # noqa: N803
        """The attributes of a model on several grouping factors (lme4's term order:
        decreasing number of levels; ``θ`` term by term)."""
        from mixedjax.design.crossed import CrossedStructure

        if nAGQ != 1:
            raise ValueError(
                f"nAGQ = {nAGQ}: a model with several grouping factors ({', '.join(groups)}) "
                "is fitted by the Laplace approximation only (nAGQ = 1), as in lme4"
            )
        terms = sorted(terms, key=lambda t: -t.n_levels)
        structure = CrossedStructure(
            tuple(t.q for t in terms), tuple(t.n_levels for t in terms), X.shape[1]
        )
        self.nAGQ = 1
        self.terms = self.structure_terms = terms
        self.structure = structure
        self.theta_lme4_order = np.arange(structure.n_theta)
        self.group_name = ", ".join(groups)
        self.n_groups = tuple({t.group: t.n_levels for t in terms}[g] for g in groups)
        self.k_fe = X.shape[1]
        self.formula = None
        self.data = None

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        family="binomial",
        weights=None,
        offset=None,
        nAGQ: int = 1,  # noqa: N803
        subset=None,
        missing: str = "none",
        eval_env=None,
    ) -> "MixedGLM":
        """A model from an lme4 formula (see :func:`glmer`); the formula sees the caller's
        names (``eval_env``: :func:`mixedjax.spec.evaluation.caller_namespace`)."""
        namespace = caller_namespace(eval_env, [formula, weights, offset], depth=1)
        with evaluated_in(namespace):
            model = cls._from_formula(formula, data, family, weights, offset, nAGQ, subset, missing)
        model._formula_namespace = namespace
        return model

    @classmethod
    def _from_formula(cls, formula, data, family, weights, offset, nAGQ, subset, missing):  # noqa: N803
        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if not isinstance(formula, str) or "~" not in formula:
            raise ValueError(f"formula must be a string like 'y ~ x + (1 | g)', got {formula!r}")
        if subset is not None:
            data = data.loc[subset]
        fam = family_from_name(family)
        no_offsets, w, o, offset_spec = formula_priors(formula, data, weights, offset)
        if w is not None:
            w = np.asarray(getattr(w, "to_numpy", lambda: w)(), dtype=float).reshape(-1)
            if w.shape != (len(data),):
                raise ValueError(f"weights has shape {w.shape}; data has {len(data)} rows")
        model_formula, frame, trials, response = split_cbind(no_offsets, data)
        if trials is not None and fam.name != "binomial":
            raise ValueError(f"cbind(successes, failures) responses are binomial, not {fam.name}")
        priors = {"weights": w, "offset": o, "trials": trials}
        endog, exog, terms, priors = lme4_design(model_formula, frame, None, missing, priors)
        weights = priors.get("weights")
        if priors.get("trials") is not None:
            weights = priors["trials"] * (1.0 if weights is None else weights)
        model = cls.__new__(cls)
        exog_names = [c for c in exog.columns]
        name = response if trials is not None else str(endog.name)
        model._setup(
            endog.to_numpy(float),
            name,
            exog.to_numpy(float),
            exog_names,
            terms,
            fam,
            weights,
            priors.get("offset"),
            nAGQ,
        )
        model.formula = formula
        model._formula_no_offsets = no_offsets
        model._model_formula = model_formula
        model._offset_spec = offset_spec
        model.data = frame
        return model

    # ----------------------------------------------------------------- fitting
    def fit(self, maxiter: int = 200, gtol: float = 1e-10):
        """Fit by maximum (approximate) likelihood; returns
        :class:`~mixedjax.results.glmm.MixedGLMResults`."""
        if self.engine == "crossed":
            from mixedjax.results.glmm_crossed import fit_crossed_results

            return fit_crossed_results(self, maxiter=maxiter, gtol=gtol)
        from mixedjax.results.glmm import fit_results

        return fit_results(self, maxiter=maxiter, gtol=gtol)

    def fit_many(self, Y, maxiter: int = 200, gtol: float = 1e-10):
        """Fit each column of ``Y (n, k)`` on this design in one compiled call; a
        :class:`~mixedjax.batch.glmm.GLMMBatchResults` (see :mod:`mixedjax.batch.glmm`)."""
        from mixedjax.batch.glmm import fit_many_glmm

        return fit_many_glmm(self, Y, maxiter=maxiter, gtol=gtol)

    def __repr__(self) -> str:
        fam = f"{self.family.name}({self.family.link.name})"
        return f"MixedGLM({self.formula or self.endog_names!r}, family={fam}, nAGQ={self.nAGQ})"


def glmer(
    formula: str,
    data: pd.DataFrame,
    family="binomial",
    nAGQ: int = 1,  # noqa: N803  (lme4's name)
    weights=None,
    offset=None,
    subset=None,
    missing: str = "none",
) -> MixedGLM:
    """lme4's ``glmer``: a GLMM from an lme4 formula; call ``.fit()`` on the result.

    Args:
        formula: ``"y ~ x + (x | g)"``, ``"cbind(s, f) ~ x + (1 | g)"``,
            ``"y ~ x + offset(log(t)) + (1 | g)"``.
        data: the data frame.
        family: ``"binomial"``, ``"poisson"``, a ``(name, link)`` pair or a
            :mod:`mixedjax.families` object (``Binomial("probit")``).
        nAGQ: 1 (Laplace), 0 (Laplace, fixed effects by PIRLS) or the number of adaptive
            Gauss–Hermite nodes.
        weights: prior weights (column name or array); for a proportion response, the
            number of trials.
        offset: an offset (column name or array), added to any ``offset()`` in the formula.
        subset, missing: rows to use; ``"drop"`` drops rows with missing values, otherwise
            they raise a ``ValueError`` naming the column.

    Example:
        >>> import numpy as np, pandas as pd, mixedjax
        >>> rng = np.random.default_rng(1)
        >>> df = pd.DataFrame({"g": np.repeat([f"h{k}" for k in range(15)], 4),
        ...                    "n": rng.integers(5, 20, 60), "x": rng.normal(size=60)})
        >>> herd_effect = rng.normal(0, 0.7, 15)[np.repeat(range(15), 4)]
        >>> df["s"] = rng.binomial(df.n, 1 / (1 + np.exp(1 - 0.5 * df.x - herd_effect)))
        >>> fit = mixedjax.glmer("cbind(s, n - s) ~ x + (1 | g)", df, family="binomial").fit()
        >>> fit.fe_params.round(3).tolist(), fit.theta.round(3).tolist()
        ([-0.976, 0.485], [0.522])
    """
    namespace = caller_namespace(None, [formula, weights, offset], depth=1)
    return MixedGLM.from_formula(
        formula, data, family, weights, offset, nAGQ, subset, missing, eval_env=namespace
    )
