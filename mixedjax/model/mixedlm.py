"""``MixedLM``: the statsmodels-compatible front end.

The model is, for group ``i``,

.. math::
    y_i = X_i β + Z_i γ_i + ε_i, \\qquad γ_i \\sim N(0, G), \\qquad ε_i \\sim N(0, σ^2 I),

with ``Z_i = [exog_re_i, exog_vc_i]`` and ``G`` as in :mod:`mixedjax.core.covariance`. The class
checks and encodes the input, computes the per-group cross-products once
(:mod:`mixedjax.design.groups`) and hands them to the jitted kernels of
:mod:`mixedjax.fit.estimation`.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.covariance import (
    CovStructure,
    MixedLMParams,
    lower_indices_colwise,
    packed_to_cov,
    unpack,
)
from mixedjax.design.groups import GroupedData, group_crossprods, localize_columns, pad_groups
from mixedjax.design.sizeclass import bucket_size  # noqa: F401  (re-exported)
from mixedjax.design.weights import PriorWeights, row_weights
from mixedjax.engines.onefactor import gls_system_cov, objective_given_beta, profiled_objective
from mixedjax.engines.protocol import engine_for
from mixedjax.fit import conditioning, estimation
from mixedjax.spec.evaluation import caller_namespace, evaluated_in
from mixedjax.spec.offsets import OffsetSpec
from mixedjax.spec.terms import RandomTerm
from mixedjax.spec.validation import (
    as_float_matrix,
    check_full_rank,
    handle_missing,
)


class ModelData(GroupedData):
    """The model's per-group cross-products (a :class:`~mixedjax.design.groups.GroupedData`:
    what the kernels take) carrying statsmodels' ``model.data`` attributes as well:
    ``xnames`` and ``ynames`` (fixed-effect and response names), ``param_names``,
    ``exog_re_names``, ``exog_re_names_full`` (statsmodels' names of the ``cov_re``
    parameters) and ``row_labels`` (the rows' index for pandas input, else ``None``).

    Example:
        >>> import numpy as np, mixedjax
        >>> x = np.column_stack([np.ones(6), np.arange(6.0)])
        >>> m = mixedjax.MixedLM(np.arange(6.0) ** 2, x, np.repeat([0, 1], 3))
        >>> m.data.xnames, m.data.exog_re_names_full, m.data.ZtZ.shape  # groups padded to 8
        (['const', 'x1'], ['Group Var'], (8, 1, 1))
    """

    def __new__(cls, *fields):
        # Whatever JAX (or ``_replace``) rebuilds from the fields is a plain GroupedData, so
        # pytree prefixes written as GroupedData (vmap axes, shardings) match derived data.
        return GroupedData(*fields)

    @classmethod
    def _make(cls, iterable) -> GroupedData:
        return GroupedData._make(iterable)

    def __reduce__(self):
        # pickle would rebuild through __new__ (a plain GroupedData, which cannot take the
        # names): rebuild the subclass with its attributes instead
        return _rebuild_model_data, (tuple(self), dict(self.__dict__))

    @classmethod
    def of(cls, data: GroupedData, model) -> "ModelData":
        """``data`` with ``model``'s statsmodels names attached."""
        out = tuple.__new__(cls, data)
        names = model.param_names
        out.xnames = list(model.exog_names)
        out.ynames = model.endog_names
        out.param_names = names
        out.exog_re_names = list(model.exog_re_names)
        out.exog_re_names_full = names[model.k_fe : model.k_fe + model.k_re2]
        out.row_labels = model.row_labels
        return out


def _rebuild_model_data(fields: tuple, names: dict) -> ModelData:
    """Unpickle a :class:`ModelData`."""
    out = tuple.__new__(ModelData, fields)
    out.__dict__.update(names)
    return out


class MixedLM(PriorWeights):
    """Linear mixed model, fitted by REML or ML (statsmodels' ``MixedLM`` API).

    Args:
        endog: ``(n,)`` response.
        exog: ``(n, p)`` fixed-effects design (include a constant column for an intercept).
        groups: ``(n,)`` group labels (any hashable values).
        exog_re: ``(n, q)`` random-effects design; ``None`` means a random intercept (unless
            ``exog_vc`` is given, as in statsmodels).
        exog_vc: variance components: a dict ``{name: {group: (n_i, k) matrix}}`` or a
            statsmodels ``VCSpec``-like object with ``names``, ``colnames`` and ``mats``.
        use_sqrt: parameterize covariances by their Cholesky factors in ``score``/``start``.
        missing: ``"none"``/``"raise"`` (error on NaN/inf) or ``"drop"`` (drop and report).
        weights: ``(n,)`` positive prior weights: row ``j`` has residual variance ``σ²/w_j``
            (lme4's ``weights``; :mod:`mixedjax.design.weights`).
        offset: ``(n,)`` known term added to the linear predictor (coefficient fixed at 1).

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days")
        >>> r = m.fit()
        >>> round(r.llf, 3)
        -871.814
    """

    #: statsmodels' return types: ndarrays (array-built models) or pandas (``False``)
    _array_output = False
    #: the rows' labels (pandas input or formula data), ``None`` for arrays
    row_labels = None
    #: the criterion of the last fit (statsmodels' ``model.reml``): the default of
    #: ``loglike``, ``score`` and ``hessian``
    reml = True

    def __init__(
        self,
        endog,
        exog,
        groups,
        exog_re=None,
        exog_vc=None,
        use_sqrt: bool = True,
        missing: str = "none",
        weights=None,
        offset=None,
        **kwargs,
    ):
        unknown = set(kwargs) - {"hasconst"}
        if unknown:
            raise TypeError(f"MixedLM got unexpected keyword argument(s) {sorted(unknown)}")
        endog_names = getattr(endog, "name", None)
        if isinstance(endog, pd.DataFrame):
            endog_names = str(endog.columns[0])
        # statsmodels' return types: pandas results for pandas input, ndarrays otherwise
        pandas_input = [a for a in (endog, exog) if isinstance(a, pd.Series | pd.DataFrame)]
        self._array_output = not pandas_input
        row_labels = pandas_input[0].index if pandas_input else None
        if isinstance(exog_vc, dict) and "__row_designs__" not in exog_vc:
            warnings.warn(
                "Using deprecated variance components format (statsmodels' FutureWarning): "
                "pass exog_vc as a VCSpec, or use vc_formula",
                FutureWarning,
                stacklevel=2,
            )
        y, _ = as_float_matrix(endog, "endog")
        if y.shape[1] != 1:
            raise ValueError(f"endog must be one column, got {y.shape[1]}")
        n = y.shape[0]
        X, exog_names = as_float_matrix(exog, "exog", n)
        if exog_vc is None and exog_re is None:
            exog_re = np.ones((n, 1))
            re_names = ["Group"]
        elif exog_re is None:
            exog_re = np.zeros((n, 0))
            re_names = []
        else:
            re_names = None
        Z, default_re_names = as_float_matrix(exog_re, "exog_re", n)
        if re_names is None:  # [] (no exog_re columns) must stay empty
            re_names = getattr(self, "_formula_re_names", None) or default_re_names
        groups_array = np.asarray(groups)
        if groups_array.ndim != 1 or groups_array.shape[0] != n:
            raise ValueError(
                f"groups must be 1-dimensional with {n} entries, got shape {groups_array.shape}"
            )
        vc_names, vc_designs, vc_colnames = _vc_designs(exog_vc, groups_array, n)
        rows = row_weights(weights, offset, n)

        columns = {str(endog_names or "endog"): y[:, 0], "groups": groups_array}
        columns.update({f"exog[{c}]": X[:, j] for j, c in enumerate(exog_names)})
        columns.update({f"exog_re[{c}]": Z[:, j] for j, c in enumerate(re_names)})
        for name, design in zip(vc_names, vc_designs, strict=True):
            columns[f"exog_vc[{name}]"] = design
        if rows.weighted:
            columns["weights"] = rows.weights
        if rows.has_offset:
            columns["offset"] = rows.offset
        keep, self.n_dropped = handle_missing(columns, missing)
        self._kept_rows = keep if self.n_dropped else None
        self.row_labels = None
        if row_labels is not None:
            self.row_labels = row_labels[keep] if self.n_dropped else row_labels
        if self.n_dropped:
            y, X, Z, groups_array = y[keep], X[keep], Z[keep], groups_array[keep]
            vc_designs = [d[keep] for d in vc_designs]
            rows = rows.subset(keep)
            n = y.shape[0]
        self.rows = rows
        self.offset_spec = OffsetSpec((), None, rows.offset_or_none)
        if n == 0:
            raise ValueError("no observations (after dropping missing values)")
        if np.ptp(y[:, 0]) == 0:
            raise ValueError("endog is constant: a mixed model needs a varying response")
        check_full_rank(X, exog_names)
        if X.shape[1] >= n:
            raise ValueError(f"exog has {X.shape[1]} columns but only {n} observations")

        codes, labels = _factorize(groups_array)
        n_groups = len(labels)
        if n_groups < 2 and Z.shape[1] > 0:
            raise ValueError(
                f"groups has {n_groups} level(s): random effects in exog_re need at least two "
                "groups (a single all-rows group is only valid with exog_vc)"
            )
        crossed_terms = None
        if n_groups == 1 and Z.shape[1] == 0 and vc_designs:  # statsmodels' crossed spelling
            from mixedjax.model.statsmodels_crossed import DENSE_VC_LIMIT, terms_from_vc_designs

            crossed_terms = terms_from_vc_designs(vc_names, vc_designs, vc_colnames)
            if crossed_terms is not None and sum(d.shape[1] for d in vc_designs) > DENSE_VC_LIMIT:
                self._init_crossed_only(y, X, exog_names, endog_names, vc_names, missing)
                self._use_crossed_engine(crossed_terms, y, X, exog_names, endog_names, rows)
                return
        local = [localize_columns(d, codes, n_groups) for d in vc_designs]
        self.endog = y[:, 0]
        self.exog = X
        self.exog_re = Z
        self.exog_z = np.column_stack([Z] + [lc.values for lc in local]) if local else Z
        self.group_codes = codes
        self.group_labels = labels
        self.n_groups = n_groups
        self.endog_names = str(endog_names or "y")
        self.exog_names = list(exog_names)
        self.exog_re_names = list(re_names)
        # lme4's term names: a constant column is the intercept
        self.re_terms = [
            "(Intercept)" if n and np.all(Z[:, j] == Z[0, j]) else str(re_names[j])
            for j in range(Z.shape[1])
        ]
        self.vc_names = list(vc_names)
        self.vc_colnames = vc_colnames
        self.vc_global_columns = [lc.global_column for lc in local]
        self.structure = CovStructure(Z.shape[1], tuple(lc.values.shape[1] for lc in local))
        self.use_sqrt = bool(use_sqrt)
        self.missing = missing
        self.k_fe = X.shape[1]
        self.k_re = Z.shape[1]
        self.k_re2 = self.structure.k_re2
        self.k_vc = self.structure.k_vc
        self.nobs = n
        self.n_totobs = n
        self.group_sizes = np.bincount(codes, minlength=n_groups)
        if self.structure.n_random == 0:
            raise ValueError("the model has no random effects (exog_re has no columns)")
        self._check_random_design()
        data = group_crossprods(
            rows.working_response(self.endog),
            rows.working_design(X),
            rows.working_design(self.exog_z),
            codes,
            n_groups,
        )
        self.data: ModelData = ModelData.of(pad_groups(data, bucket_size(n_groups)), self)
        if crossed_terms is not None:
            self._statsmodels_dense = (self.data, self.structure)
            self._use_crossed_engine(crossed_terms, y, X, exog_names, endog_names, rows)

    @classmethod
    def from_terms(
        cls,
        endog,
        exog,
        terms: list[RandomTerm],
        exog_names=None,
        endog_name="y",
        weights=None,
        offset=None,
    ) -> "MixedLM":
        """A model with any number of random-effects terms on any grouping factors.

        Args:
            endog: ``(n,)`` response.
            exog: ``(n, p)`` fixed-effects design.
            terms: the random-effects terms (:class:`~mixedjax.spec.terms.RandomTerm`), any
                order.
            exog_names: names of the fixed effects; ``endog_name``: of the response.
            weights, offset: ``(n,)`` prior weights and offset, as in ``MixedLM``.

        Terms on several crossed grouping factors are fitted by the crossed engine
        (:mod:`mixedjax.model.crossed`); this is what :func:`mixedlm` builds for an lme4
        formula such as ``y ~ x + (1 | f1) + (1 | f2)``.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("penicillin")
            >>> m = mixedjax.mixedlm("diameter ~ 1 + (1 | plate) + (1 | sample)", df)
            >>> type(m).__name__, m.engine
            ('MixedLM', 'crossed')
            >>> round(m.fit().llf, 3)  # lme4: -165.430
            -165.43
        """
        from mixedjax.model.crossed import init_terms

        model = cls.__new__(cls)
        init_terms(model, endog, exog, terms, exog_names, endog_name, weights, offset)
        model.n_dropped, model.missing, model.use_sqrt = 0, "none", True
        model.exog_re, model.exog_re_names = np.zeros((model.nobs, 0)), []
        model.k_re = model.k_re2 = 0
        model.k_vc = len(terms)
        return model

    def _use_crossed_engine(self, terms, y, X, exog_names, endog_names, rows) -> None:
        """Fit statsmodels' one-group crossed spelling by the crossed engine (its
        ``loglike``/``score``/``hessian`` keep statsmodels' parameterization)."""
        from mixedjax.model.crossed import init_terms

        init_terms(
            self, y[:, 0], X, terms, exog_names, endog_names or "y", rows.weights_or_none,
            rows.offset_or_none,
        )  # fmt: skip
        self._statsmodels_vc_layout = True

    @property
    def engine(self) -> str:
        """``"one-factor"`` (one grouping factor, vmapped per group) or ``"crossed"``
        (several factors, blocked sparse Cholesky), chosen from the term structure."""
        return engine_for(self.structure).name

    def default_theta(self) -> np.ndarray:
        """The fit's data-based start ``θ₀`` (lme4's layout of the relative factors)."""
        if self.engine == "crossed":
            from mixedjax.model.crossed import default_theta

            return default_theta(self)
        return self._start_theta(self._standardized(center_re=True))

    def _start_theta(self, std: "conditioning.Standardized") -> np.ndarray:
        """The one-factor start: data-based on the standardized data, mapped back."""
        start = estimation.start_values(std.data, self.structure)
        return conditioning.theta_to_original(std, start, self.structure)

    def deviance(self, theta, reml: bool = True) -> float:
        """lme4's profiled deviance function at ``θ``: ``-2 log L`` (ML) or the REML
        criterion, β and σ² profiled out (``-2 llf`` of a fit at its ``theta``).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> m = mixedjax.mixedlm("Yield ~ 1 + (1 | Batch)", df)
            >>> r = m.fit()
            >>> abs(m.deviance(r.theta) + 2 * r.llf) < 1e-8
            True
        """
        if self.engine == "crossed":
            from mixedjax.model.crossed import deviance

            return deviance(self, theta, reml)
        theta = np.asarray(theta, dtype=float).reshape(-1)
        if theta.size != self.structure.n_theta:
            raise ValueError(f"theta has length {theta.size}; expected {self.structure.n_theta}")
        value = estimation.deviance(theta, self.data, structure=self.structure, reml=bool(reml))
        return float(value) - 2.0 * self.rows.loglik_jacobian

    def _init_crossed_only(self, y, X, exog_names, endog_names, vc_names, missing) -> None:
        """Attributes of a one-group crossed model too large for the dense per-group path."""
        n = y.shape[0]
        self.endog, self.exog, self.exog_re = y[:, 0], X, np.zeros((n, 0))
        self.group_codes = np.zeros(n, dtype=np.int64)
        self.group_labels = np.asarray([0])
        self.n_groups = 1
        self.endog_names = str(endog_names or "y")
        self.exog_names, self.exog_re_names = list(exog_names), []
        self.vc_names = list(vc_names)
        self.use_sqrt, self.missing = True, missing
        self.k_fe, self.k_re, self.k_re2, self.k_vc = X.shape[1], 0, 0, len(vc_names)
        self.nobs = self.n_totobs = n
        self.group_sizes = np.asarray([n])

    @property
    def _statsmodels_likelihood(self) -> tuple | None:
        """``(data, structure)`` of the one-factor kernels behind ``loglike``/``score``/
        ``hessian`` (statsmodels' parameterization); ``None`` where there are none."""
        if self.engine == "one-factor":
            return self.data, self.structure
        return self.__dict__.get("_statsmodels_dense")

    def _require_dense(self) -> None:
        if self._statsmodels_likelihood is None:
            raise ValueError(
                "loglike/score/hessian in statsmodels' one-factor parameterization are not "
                "defined for this model: it is fitted by the crossed engine (several grouping "
                "factors, or one all-rows group with many variance components); use "
                "deviance(theta) in lme4's θ layout"
            )

    def _crossed_start(self, start_params, free) -> tuple:
        """``start_params``/``free`` of a crossed-engine fit as ``(θ₀, free mask)`` over
        ``θ`` (``None`` for defaults): statsmodels' layout (``MixedLMParams`` or a packed
        vector, θ = √τ per component) for its one-group spelling, else vectors over ``θ``."""
        if not getattr(self, "_statsmodels_vc_layout", False):
            return start_params, free
        order = self.input_order  # θ position of each vc component
        theta0 = free_theta = None
        if start_params is not None:
            vc = np.asarray(self._as_params(start_params).vcomp, dtype=float)
            theta0 = np.zeros(len(order))
            theta0[order] = np.sqrt(vc)
        if free is not None:
            mask = (
                free.vcomp if isinstance(free, MixedLMParams) else np.asarray(free)[-len(order) :]
            )
            free_theta = np.zeros(len(order), dtype=bool)
            free_theta[order] = np.asarray(mask) != 0
        return theta0, free_theta

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        re_formula: str | None = None,
        vc_formula: dict[str, str] | None = None,
        subset=None,
        use_sparse: bool = False,
        missing: str = "none",
        *args,
        groups=None,
        **kwargs,
    ) -> "MixedLM":
        """Build a model from formulas (statsmodels' ``MixedLM.from_formula``).

        A formula with lme4 bar terms (``"y ~ x + (x | g) + (1 | h)"``) needs no ``groups``:
        the model is built by :func:`mixedjax.model.lme4.model_from_lme4`, which returns a
        ``MixedLM`` for one grouping factor (with nested factors as variance components)
        and a ``MixedLM`` fitted by the crossed engine for crossed factors (:meth:`from_terms`).

        ``groups`` is a column name of ``data`` or an array; ``re_formula`` (e.g. ``"~Days"``)
        gives the random-effects design; ``vc_formula`` maps variance-component names to
        formulas evaluated within each group (e.g. ``{"cask": "0 + C(cask)"}``).

        ``weights`` (a column name or an array) are prior weights, residual variance
        ``σ²/w``; ``offset`` (a column name or an array) and ``offset(expr)`` terms in the
        formula add a known term to the linear predictor, both as in lme4
        (:mod:`mixedjax.design.weights`).

        Formulas may call the caller's own functions and read its variables
        (``"y ~ times_two(x)"``), as in statsmodels; ``eval_env`` chooses the namespace
        (:func:`mixedjax.spec.evaluation.caller_namespace`).

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> m.nobs, m.n_groups, m.exog_names, m.exog_re_names
            (180, 18, ['Intercept', 'Days'], ['Subject', 'Days'])
            >>> lme4 = mixedjax.MixedLM.from_formula("Reaction ~ Days + (Days | Subject)", df)
            >>> lme4.k_re
            2
        """
        namespace = caller_namespace(
            kwargs.pop("eval_env", None), [formula, re_formula, vc_formula], depth=1
        )
        with evaluated_in(namespace):
            model = cls._from_formula(
                formula,
                data,
                re_formula,
                vc_formula,
                subset,
                use_sparse,
                missing,
                *args,
                groups=groups,
                **kwargs,
            )
        model._formula_namespace = namespace
        return model

    @classmethod
    def _from_formula(
        cls,
        formula,
        data,
        re_formula,
        vc_formula,
        subset,
        use_sparse,
        missing,
        *args,
        groups=None,
        **kwargs,
    ) -> "MixedLM":
        from mixedjax.spec.formula import design_from_formulas
        from mixedjax.spec.lme4_formula import has_bar_terms
        from mixedjax.spec.offsets import formula_priors

        if not isinstance(data, pd.DataFrame):
            raise TypeError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if not isinstance(formula, str) or "~" not in formula:
            raise ValueError(f"formula must be a string like 'y ~ x', got {formula!r}")
        if subset is not None:
            data, subset = data.loc[subset], None
        formula_in = formula
        formula, weights, offset, offset_spec = formula_priors(
            formula, data, kwargs.pop("weights", None), kwargs.pop("offset", None)
        )
        if has_bar_terms(formula):
            if groups is not None or re_formula is not None or vc_formula:
                raise ValueError(
                    "formula has lme4 random-effects terms '(x | g)': do not also pass "
                    "groups, re_formula or vc_formula"
                )
            from mixedjax.model.lme4 import model_from_lme4

            model = model_from_lme4(
                cls, formula, data, missing=missing, weights=weights, offset=offset, **kwargs
            )
            model.formula, model.offset_spec = formula_in, offset_spec
            model._formula_data = data  # kept (not copied) for predict(newdata)
            return _formula_output(model, data)
        if args:
            raise TypeError("from_formula takes no extra positional arguments")
        if use_sparse:
            warnings.warn("use_sparse is ignored: mixedjax never forms Z densely", stacklevel=3)
        from mixedjax.model.statsmodels_crossed import crossed_from_formula

        crossed = None
        if not kwargs:
            crossed = crossed_from_formula(
                cls, formula, data, groups, re_formula, vc_formula, subset, weights, offset
            )
        if crossed is not None:  # one all-rows group + indicator components
            crossed.formula, crossed.offset_spec = formula_in, offset_spec
            crossed._formula_data = data  # kept (not copied) for predict(newdata)
            return _formula_output(crossed, data)
        design = design_from_formulas(formula, data, groups, re_formula, vc_formula, subset)
        model = cls.__new__(cls)
        model._formula_re_names = design.re_names
        model.formula = formula
        model.re_formula = re_formula
        model.vc_formula = vc_formula
        model.__init__(
            design.endog,
            design.exog,
            design.groups,
            exog_re=design.exog_re,
            exog_vc=design.exog_vc,
            missing=missing,
            weights=weights,
            offset=offset,
            **kwargs,
        )
        model.formula, model.offset_spec = formula_in, offset_spec
        model.group_name = design.group_name
        model._formula_data = data  # kept (not copied) to rebuild designs for predict(newdata)
        return _formula_output(model, data)

    def _check_random_design(self) -> None:
        totals = np.einsum("ij,ij->j", self.exog_re, self.exog_re)
        zero = [name for name, t in zip(self.exog_re_names, totals, strict=True) if t == 0]
        if zero:
            raise ValueError(f"exog_re: column(s) {zero} are identically zero")

    # ----------------------------------------------------------------- likelihood API
    @property
    def param_names(self) -> list[str]:
        """statsmodels' names: fixed effects, then ``A Var``/``B x A Cov``, then VC ``Var``."""
        names = list(self.exog_names)
        rows, cols = np.tril_indices(self.k_re)
        for i, j in zip(rows, cols, strict=True):
            if i == j:
                names.append(f"{self.exog_re_names[i]} Var")
            else:
                names.append(f"{self.exog_re_names[j]} x {self.exog_re_names[i]} Cov")
        names.extend(f"{v} Var" for v in self.vc_names)
        return names

    def _as_params(self, params, has_fe: bool | None = None) -> MixedLMParams:
        if isinstance(params, MixedLMParams):
            return params
        params = np.asarray(params, dtype=float)
        n_cov = self.k_re2 + self.k_vc
        if has_fe is None:
            if params.size == self.k_fe + n_cov:
                has_fe = True
            elif params.size == n_cov:
                has_fe = False
            else:
                raise ValueError(
                    f"params has length {params.size}; expected {n_cov} (covariance only) or "
                    f"{self.k_fe + n_cov} (with fixed effects)"
                )
        return MixedLMParams.from_packed(params, self.k_fe, self.k_re, self.use_sqrt, has_fe)

    def _packed(self, params: MixedLMParams, has_fe: bool) -> jnp.ndarray:
        return jnp.asarray(params.get_packed(use_sqrt=self.use_sqrt, has_fe=has_fe))

    def loglike(self, params, profile_fe: bool = True, reml: bool | None = None) -> float:
        """Log-likelihood (restricted if ``reml``) at ``params``, σ² profiled out.

        ``reml=None`` (statsmodels' behaviour) takes the criterion of the model's last fit
        (:attr:`reml`; REML before any fit).

        ``params`` is a :class:`MixedLMParams` or a packed vector (statsmodels' layout, in
        this model's ``use_sqrt`` parameterization). With ``profile_fe`` the fixed effects
        are replaced by their GLS estimate, otherwise ``params.fe_params`` is used.
        """
        self._require_dense()
        p = self._as_params(params)
        has_fe = not profile_fe
        if has_fe and p.fe_params is None:
            raise ValueError("profile_fe=False needs params with fe_params")
        reml = self.reml if reml is None else bool(reml)
        return (
            float(
                _loglike_packed(
                    self._packed(p, has_fe),
                    *self._statsmodels_likelihood,
                    self.k_fe,
                    self.use_sqrt,
                    has_fe,
                    reml,
                )
            )
            + self.rows.loglik_jacobian
        )

    def score(self, params, profile_fe: bool = True, reml: bool | None = None) -> np.ndarray:
        """Exact gradient (autodiff) of :meth:`loglike` with respect to the packed params
        (without the fixed effects when ``profile_fe``)."""
        self._require_dense()
        p = self._as_params(params)
        has_fe = not profile_fe
        reml = self.reml if reml is None else bool(reml)
        return np.asarray(
            _score_packed(
                self._packed(p, has_fe),
                *self._statsmodels_likelihood,
                self.k_fe,
                self.use_sqrt,
                has_fe,
                reml,
            )
        )

    def hessian(self, params, reml: bool | None = None) -> tuple[np.ndarray, bool]:
        """Exact Hessian of :meth:`loglike` (``profile_fe=False``) with respect to the packed
        parameters ``[β, tril(Ψ₁), τ₁]`` (covariances unsquared, as statsmodels).

        Returns statsmodels' pair ``(hessian (k, k), sing)``: ``sing`` is true where
        ``params.cov_re`` is singular (the Hessian is then exact all the same).
        """
        self._require_dense()
        p = self._as_params(params)
        if p.fe_params is None:
            raise ValueError("hessian needs params with fe_params")
        packed = jnp.asarray(p.get_packed(use_sqrt=False, has_fe=True))
        reml = self.reml if reml is None else bool(reml)
        hess = np.array(  # a writable copy (statsmodels' callers scale it in place)
            _hessian_packed(packed, *self._statsmodels_likelihood, self.k_fe, False, True, reml)
        )
        cov = np.asarray(p.cov_re, dtype=float)
        sing = bool(cov.size and np.linalg.matrix_rank(cov) < cov.shape[0])
        return hess, sing

    # ----------------------------------------------------------------- statsmodels' extras
    @property
    def row_indices(self) -> dict:
        """statsmodels' ``row_indices``: group label -> ``(n_i,)`` row numbers of the group."""
        cache = self.__dict__.get("_row_indices")
        if cache is None:
            order = np.argsort(self.group_codes, kind="stable")
            bounds = np.cumsum(self.group_sizes)[:-1]
            parts = np.split(order, bounds)
            cache = dict(zip(self.group_labels.tolist(), parts, strict=True))
            self._row_indices = cache
        return cache

    def predict(self, params, exog=None) -> np.ndarray:
        """statsmodels' ``MixedLM.predict``: the fixed-effects mean ``exog @ β`` (no random
        effects; ``results.predict`` adds the BLUPs). ``params``: a ``MixedLMParams``, a
        packed vector (β first) or β alone; ``exog``: ``(m, k_fe)``, default the model's.
        """
        beta = params.fe_params if isinstance(params, MixedLMParams) else params
        beta = np.asarray(beta, dtype=float).reshape(-1)[: self.k_fe]
        if beta.size != self.k_fe:
            raise ValueError(f"params has {beta.size} entries; expected at least {self.k_fe}")
        exog = self.exog if exog is None else np.asarray(exog, dtype=float)
        if exog.ndim != 2 or exog.shape[1] != self.k_fe:
            raise ValueError(f"exog must have {self.k_fe} columns, got shape {exog.shape}")
        return exog @ beta

    def get_distribution(self, params, scale: float, exog=None):
        """statsmodels' ``get_distribution``: the model's distribution at packed ``params``
        (β, then profile-scale ``tril(Ψ)`` and ``τ``; unsquared) and residual variance
        ``scale``; its ``rvs(n, rng=None)`` draws one response vector
        (:class:`mixedjax.inference.distribution.MixedLMDistribution`)."""
        from mixedjax.inference.distribution import MixedLMDistribution

        return MixedLMDistribution(self, params, scale, exog)

    # ----------------------------------------------------------------- fitting
    def fit(
        self,
        start_params=None,
        reml: bool = True,
        niter_sa: int = 0,
        do_cg: bool = True,
        fe_pen=None,
        cov_pen=None,
        free=None,
        full_output: bool = False,
        method=None,
        *,
        maxiter: int = 500,
        gtol: float = 1e-9,
        devices=None,
        dtype=None,
        verbose: bool = False,
        **fit_kwargs,
    ):
        """Fit by REML (default) or ML; returns :class:`~mixedjax.results.mixedlm.MixedLMResults`.

        Args:
            start_params: :class:`MixedLMParams` or packed vector; default: data-based.
            reml: REML if true, else maximum likelihood.
            free: mask (``MixedLMParams`` or packed covariance vector) of covariance
                parameters to estimate; zeros are held at their start values (on the
                Cholesky scale), e.g. an identity ``cov_re`` mask gives a diagonal ``Ψ``.
            method: ``"lbfgs"`` (default; optax L-BFGS), ``"bfgs"`` or ``"newton"`` (exact
                Hessian); a list takes the first of these it contains.
            maxiter: maximum quasi-Newton iterations.
            gtol: tolerance on the scaled gradient ``max|∇d(θ)| / max(1, |d(θ)|)``.
            verbose: print the optimiser's trace (one line per iteration: objective and
                scaled gradient, then the Newton polishing steps) and its summary.
            cov_pen: a penalty on the profile-scale ``cov_re`` (statsmodels' ``cov_pen``:
                :class:`mixedjax.penalties.PSD` or statsmodels' ``PSD``), added to the
                objective inside the jitted fit; see :mod:`mixedjax.fit.penalties`.
            fe_pen: not supported (use :meth:`fit_regularized`).

        ``niter_sa``, ``do_cg`` and optimiser keywords of statsmodels (``disp``,
        ``callback``, ``retall``) are accepted and ignored; ``full_output=True`` records the
        optimiser's history in ``results.hist``; statsmodels' ``method="cg"`` (scipy's
        conjugate gradients) selects L-BFGS (the estimate is the same maximum);
        ``cov_type``, ``cov_kwds`` and ``use_t`` are ignored with statsmodels'
        ``FutureWarning``.

        ``devices`` (a ``jax.sharding.Mesh``, devices, or a count) shards the groups across
        devices (:mod:`mixedjax.fit.sharding`); ``dtype="float32"`` fits in single precision
        (:mod:`mixedjax.fit.precision`). Every option runs through one driver,
        :func:`mixedjax.model.fitting.fit_model`.

        Example:
            >>> import mixedjax
            >>> df = mixedjax.datasets.load("sleepstudy")
            >>> m = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
            ...                                   re_formula="~Days")
            >>> round(m.fit().llf, 3), round(m.fit(reml=False).llf, 3)  # lme4: REML, ML logLik
            (-871.814, -875.97)
        """
        from mixedjax.fit.options import fit_options
        from mixedjax.model.fitting import fit_model

        method, fit_kwargs = _statsmodels_fit_keywords(method, fit_kwargs)
        self.reml = bool(reml)  # statsmodels: loglike() then evaluates this criterion
        options = fit_options(
            reml=reml, method=method, maxiter=maxiter, gtol=gtol, verbose=verbose, dtype=dtype,
            devices=devices, cov_pen=cov_pen, fe_pen=fe_pen,
            k_re=0 if self.engine == "crossed" else self.k_re, ignored=fit_kwargs,
        )  # fmt: skip
        result = fit_model(self, start_params, free, options)
        if full_output:
            result._record_history()
        return result

    def _standardized(self, center_re: bool) -> "conditioning.Standardized":
        """Centred and scaled copy of the data (computed once per ``center_re``)."""
        cache = self.__dict__.setdefault("_standardized_cache", {})
        if center_re not in cache:
            cache[center_re] = conditioning.standardize(self, center_re)
        return cache[center_re]

    def _free_mask(self, free) -> np.ndarray:
        """``free`` (statsmodels layout) as a boolean mask over ``θ``."""
        if free is None:
            return np.ones(self.structure.n_theta, dtype=bool)
        if isinstance(free, MixedLMParams):
            rows, cols = np.tril_indices(self.k_re)
            cov_mask = np.asarray(free.cov_re)[rows, cols]
            vc_mask = np.asarray(free.vcomp)
        else:
            free = np.asarray(free, dtype=float)
            n_cov = self.k_re2 + self.k_vc
            if free.size == self.k_fe + n_cov:
                free = free[self.k_fe :]
            if free.size != n_cov:
                raise ValueError(f"free has length {free.size}; expected {n_cov}")
            cov_mask, vc_mask = free[: self.k_re2], free[self.k_re2 :]
        # statsmodels packs row-major; θ is column-major: map (i, j) pairs.
        M = np.zeros((self.k_re, self.k_re))
        M[np.tril_indices(self.k_re)] = cov_mask
        rows, cols = lower_indices_colwise(self.k_re)
        return np.concatenate([M[rows, cols], vc_mask]) != 0

    def __repr__(self) -> str:
        what = "".join(
            f"{name}={getattr(self, name)!r}, "
            for name in ("formula", "re_formula", "vc_formula")
            if getattr(self, name, None)
        )
        if self.engine == "crossed":
            groups = ", ".join(f"{t.group}: {t.n_levels}" for t in self.terms)
            return f"MixedLM({what}nobs={self.nobs}, k_fe={self.k_fe}, groups=[{groups}])"
        return (
            f"MixedLM({what}nobs={self.nobs}, groups={self.n_groups}, k_fe={self.k_fe}, "
            f"k_re={self.k_re}, k_vc={self.k_vc})"
        )

    # ----------------------------------------------------------------- JAX-native extensions
    def fit_many(self, Y, reml: bool = True, **kwargs):
        """Fit ``k`` responses ``Y (n, k)`` on this design in one compiled call.

        Returns a :class:`~mixedjax.batch.results.BatchResults`; see
        :func:`mixedjax.batch.results.fit_many` (keywords ``method``, ``maxiter``, ``gtol``,
        ``progress``).

        Example:
            >>> import numpy as np, mixedjax
            >>> df = mixedjax.datasets.load("dyestuff")
            >>> m = mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch")
            >>> batch = m.fit_many(np.column_stack([df["Yield"], df["Yield"] / 10]))
            >>> batch.fe_params["Intercept"].round(2).tolist()
            [1527.5, 152.75]
        """
        from mixedjax.batch.results import fit_many, fit_many_crossed

        if self.engine == "crossed":
            return fit_many_crossed(self, Y, reml, **kwargs)
        return fit_many(self, Y, reml, **kwargs)

    def fit_regularized(
        self,
        start_params=None,
        method="l1",
        alpha=0.0,
        ceps: float = 1e-4,
        ptol: float = 1e-6,
        maxit: int = 200,
        **fit_kwargs,
    ):
        """L1-penalised fixed effects with the covariance held at the unpenalised fit
        (statsmodels' ``fit_regularized``); see :mod:`mixedjax.model.regularized`."""
        from mixedjax.model.regularized import fit_regularized

        return fit_regularized(self, start_params, method, alpha, ceps, ptol, maxit, **fit_kwargs)


# --------------------------------------------------------------------- pure helpers
#: statsmodels' gradient-based scipy optimiser: it finds the same maximum as L-BFGS, which
#: mixedjax runs instead (the derivative-free "nm"/"powell" are refused by name)
_STATSMODELS_OPTIMIZERS = {"cg"}
#: keywords of statsmodels' base ``fit`` that MixedLM ignores with a FutureWarning (GH#9677)
_UNUSED_BASE_FIT_KWARGS = {"cov_type", "cov_kwds", "use_t"}


def _statsmodels_fit_keywords(method, fit_kwargs: dict) -> tuple:
    """statsmodels' spellings in ``fit``: its optimiser names, and the base-fit keywords
    it ignores with a ``FutureWarning`` (the same text as statsmodels 0.15)."""
    names = [method] if isinstance(method, str) else list(method or [])
    known = [str(m).lower() for m in names]
    if known and all(m in _STATSMODELS_OPTIMIZERS for m in known):
        method = "lbfgs"
    unused = sorted(set(fit_kwargs) & _UNUSED_BASE_FIT_KWARGS)
    if unused:
        ending = "s" if len(unused) > 1 else ""
        warnings.warn(
            f"Argument{ending} {', '.join(unused)} not used by MixedLM.fit. Future versions "
            "will raise on these arguments.",
            FutureWarning,
            stacklevel=3,
        )
        fit_kwargs = {k: v for k, v in fit_kwargs.items() if k not in unused}
    return method, fit_kwargs


def _formula_output(model: MixedLM, data: pd.DataFrame) -> MixedLM:
    """A formula model reports pandas results (statsmodels), rows labelled by ``data``'s
    index (the kept rows)."""
    model._array_output = False
    kept = model.__dict__.get("_kept_rows")
    if getattr(model, "nobs", None) == len(data) or kept is not None:
        model.row_labels = data.index if kept is None else data.index[kept]
    if isinstance(model.__dict__.get("data"), ModelData):
        model.data.row_labels = model.row_labels
    return model


def _loglike_impl(packed, data, structure, k_fe, use_sqrt, has_fe, reml):
    fe, cov_part, vc_part = unpack(packed, k_fe if has_fe else 0, structure.k_re)
    cov, vc = packed_to_cov(cov_part, vc_part, structure.k_re, use_sqrt)
    gls = gls_system_cov(cov, vc, data, structure)
    if has_fe:
        return -0.5 * objective_given_beta(gls, fe, data.n_obs, reml)
    return -0.5 * profiled_objective(gls, data.n_obs, reml)


# static: structure, k_fe, use_sqrt, has_fe, reml
_loglike_packed = jax.jit(_loglike_impl, static_argnums=(2, 3, 4, 5, 6))
_score_packed = jax.jit(jax.grad(_loglike_impl), static_argnums=(2, 3, 4, 5, 6))
_hessian_packed = jax.jit(jax.hessian(_loglike_impl), static_argnums=(2, 3, 4, 5, 6))


def _factorize(groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes in sorted-label order (lme4 sorts levels); insertion order if unsortable."""
    try:
        codes, labels = pd.factorize(groups, sort=True)
    except TypeError:
        codes, labels = pd.factorize(groups, sort=False)
    return codes.astype(np.int64), np.asarray(labels)


def _vc_designs(exog_vc, groups: np.ndarray, n: int):
    """Normalise ``exog_vc`` to ``(names, [(n, K) row-level designs], [column names])``.

    Accepts a dict ``{name: {group: (n_i, k) matrix}}`` (rows of each group in data order)
    or an object with ``names``, ``colnames`` and ``mats`` (statsmodels' ``VCSpec``: per
    component, per group in sorted group order). A group's columns become its own, so they
    are placed in separate global columns.
    """
    if exog_vc is None:
        return [], [], []
    if isinstance(exog_vc, dict) and "__row_designs__" in exog_vc:
        spec = exog_vc["__row_designs__"]
        return list(spec["names"]), list(spec["designs"]), list(spec["colnames"])
    codes, labels = _factorize(groups)
    order = np.argsort(codes, kind="stable")
    starts = np.searchsorted(codes[order], np.arange(len(labels)))
    sizes = np.bincount(codes, minlength=len(labels))
    if isinstance(exog_vc, dict):
        names = sorted(exog_vc)
        per_group = [[exog_vc[nm].get(lab) for lab in labels] for nm in names]
    elif all(hasattr(exog_vc, a) for a in ("names", "mats")):
        names = list(exog_vc.names)
        per_group = [list(m) for m in exog_vc.mats]
    else:
        raise TypeError("exog_vc must be a dict {name: {group: matrix}} or a VCSpec")
    designs, colnames = [], []
    for name, mats in zip(names, per_group, strict=True):
        if len(mats) != len(labels):
            raise ValueError(f"exog_vc[{name!r}] has {len(mats)} groups; data has {len(labels)}")
        widths = [
            0 if m is None else np.atleast_2d(np.asarray(m, float).T).T.shape[1] for m in mats
        ]
        offsets = np.concatenate([[0], np.cumsum(widths)])
        design = np.zeros((n, int(offsets[-1])))
        # One block per group: the caller supplied one matrix per group.
        for g, m in enumerate(mats):
            if m is None:
                continue
            block = np.asarray(m, dtype=float).reshape(sizes[g], -1)
            rows = order[starts[g] : starts[g] + sizes[g]]
            design[rows, offsets[g] : offsets[g + 1]] = block
        designs.append(design)
        colnames.append([f"{name}[{j}]" for j in range(design.shape[1])])
    return names, designs, colnames


def mixedlm(
    formula: str,
    data: pd.DataFrame,
    groups=None,
    re_formula: str | None = None,
    vc_formula: dict[str, str] | None = None,
    subset=None,
    use_sparse: bool = False,
    missing: str = "none",
    **kwargs,
):
    """Build a mixed model from a formula (``statsmodels.formula.api.mixedlm``).

    With ``groups`` (a column name or an array) this is statsmodels' interface:
    ``re_formula`` gives the random-effects design within each group and ``vc_formula``
    the variance components. Without ``groups`` the formula must carry lme4 bar terms,
    ``"y ~ x + (x | subject) + (1 | item)"``.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.mixedlm("Reaction ~ Days + (Days | Subject)", df).fit()
        >>> round(r.llf, 3)
        -871.814
    """
    from mixedjax.spec.lme4_formula import has_bar_terms

    if groups is None and not has_bar_terms(formula):
        raise ValueError(
            "mixedlm needs groups=... (statsmodels style) or lme4 random-effects terms in "
            "the formula, e.g. 'y ~ x + (1 | g)'"
        )
    namespace = caller_namespace(
        kwargs.pop("eval_env", None), [formula, re_formula, vc_formula], depth=1
    )
    return MixedLM.from_formula(
        formula,
        data,
        eval_env=namespace,
        re_formula=re_formula,
        vc_formula=vc_formula,
        subset=subset,
        use_sparse=use_sparse,
        missing=missing,
        groups=groups,
        **kwargs,
    )
