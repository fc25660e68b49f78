"""Out-of-core models: per-group cross-products accumulated chunk by chunk.

A fit needs only :class:`~mixedjax.design.groups.GroupedData`: sums over the rows of each
group. They are additive over any split of the rows, so a data set larger than memory can be read in
chunks (``pandas.read_csv(..., chunksize=...)``, pyarrow's ``ParquetFile.iter_batches``,
a database cursor), each chunk's contribution added to per-group accumulators, and the
chunk dropped.
Peak memory is one chunk (and its design matrices) plus the per-group arrays
``O(n_groups r (r + p))``; nothing proportional to the total number of rows is kept.

Groups may appear in any chunk, in any order, and be split across chunks. At the end the
groups are put in sorted label order (as lme4 and :class:`~mixedjax.MixedLM` do), so the
fit, BLUPs and ``ranef`` equal the in-memory model's.

Example:
    >>> import pandas as pd, mixedjax
    >>> chunks = pd.read_csv("big.csv", chunksize=1_000_000)  # doctest: +SKIP
    >>> model = mixedjax.from_chunks(chunks, "y ~ x", groups="g", re_formula="~x")  # doctest: +SKIP
    >>> result = model.fit()  # doctest: +SKIP
"""

import warnings
from collections.abc import Iterable

import jax.numpy as jnp
import numpy as np
import pandas as pd

from mixedjax.core.covariance import CovStructure
from mixedjax.core.progress import progress as progress_bar
from mixedjax.design.groups import GroupedData, pad_groups
from mixedjax.design.weights import NO_WEIGHTS
from mixedjax.model.mixedlm import MixedLM, bucket_size
from mixedjax.spec.evaluation import caller_namespace, evaluated_in


class ChunkedMixedLM(MixedLM):
    """A :class:`~mixedjax.MixedLM` built from streamed rows (see :func:`from_chunks`).

    Fitting, ``fit_many`` excepted, works as for an in-memory model (``fit``, ``loglike``,
    ``score``, results with summary, BLUPs, ``ranef``, ``varcorr``, standard errors). The
    rows are not kept, so row-level quantities (``endog``, ``exog``, and the results'
    ``fittedvalues``/``resid``) raise an error naming the reason.
    """

    def _rows_not_kept(self, what: str):
        raise ValueError(
            f"{what}: this model was built from chunks and does not keep its rows; "
            "compute row-level quantities chunk by chunk from result.fe_params and "
            "result.random_effects"
        )

    endog = property(lambda self: self._rows_not_kept("endog"))
    _working_endog = property(lambda self: self._rows_not_kept("the response rows"))
    _working_exog = property(lambda self: self._rows_not_kept("the design rows"))
    _working_terms = property(lambda self: self._rows_not_kept("the random-effects rows"))
    exog = property(lambda self: self._rows_not_kept("exog"))
    exog_re = property(lambda self: self._rows_not_kept("exog_re"))
    exog_z = property(lambda self: self._rows_not_kept("exog_z"))
    group_codes = property(lambda self: self._rows_not_kept("group_codes"))

    def fit_many(self, Y, reml: bool = True, **kwargs):
        self._rows_not_kept("fit_many")

    def _standardized(self, center_re: bool):
        """No internal rescaling: it needs the rows, which a chunked model does not keep.

        Fits then run on the data as given (identity maps in
        :mod:`mixedjax.fit.conditioning`), as they did before rescaling existed.
        """
        from mixedjax.fit import conditioning

        def identity(k):
            return conditioning.ColumnMap(np.zeros(k), np.ones(k), np.eye(k))

        return conditioning.Standardized(
            self.data, 0.0, 1.0, identity(self.k_fe), identity(self.k_re), None, 1.0
        )

    def __repr__(self) -> str:
        return "Chunked" + super().__repr__()


class _Accumulator:
    """Growing per-group sums; codes are assigned in order of first appearance."""

    def __init__(self, r: int, p: int):
        self.r, self.p = r, p
        self.index: dict = {}
        self.labels: list = []
        self.ZtZ = np.zeros((16, r, r))
        self.ZtX = np.zeros((16, r, p))
        self.Zty = np.zeros((16, r))
        self.sizes = np.zeros(16, dtype=np.int64)
        self.XtX = np.zeros((p, p))
        self.Xty = np.zeros(p)
        self.yty = 0.0
        self.y_sum = 0.0
        self.y_min, self.y_max = np.inf, -np.inf
        self.n = 0

    def _codes(self, groups: np.ndarray) -> np.ndarray:
        local_codes, uniques = pd.factorize(groups)
        known = pd.Index(self.labels) if self.labels else pd.Index([])
        where = known.get_indexer(uniques) if len(known) else np.full(len(uniques), -1)
        new = np.flatnonzero(where < 0)
        where[new] = len(self.labels) + np.arange(new.size)
        self.labels.extend(uniques[new].tolist())
        self._grow(len(self.labels))
        self._local = where
        return local_codes

    def _grow(self, n_groups: int) -> None:
        cap = self.ZtZ.shape[0]
        if n_groups <= cap:
            return
        new_cap = max(n_groups, 2 * cap)
        for name in ("ZtZ", "ZtX", "Zty", "sizes"):
            old = getattr(self, name)
            grown = np.zeros((new_cap,) + old.shape[1:], old.dtype)
            grown[:cap] = old
            setattr(self, name, grown)

    def add(self, y: np.ndarray, X: np.ndarray, Z: np.ndarray, groups: np.ndarray) -> None:
        codes = self._codes(groups)
        u = len(self._local)

        def seg(values):
            return np.bincount(codes, weights=values, minlength=u)

        glob = self._local
        # Loops over design columns (few), never over groups or rows.
        for a in range(self.r):
            za = Z[:, a]
            for b in range(a, self.r):
                s = seg(za * Z[:, b])
                self.ZtZ[glob, a, b] += s
                if b != a:
                    self.ZtZ[glob, b, a] += s
            for b in range(self.p):
                self.ZtX[glob, a, b] += seg(za * X[:, b])
            self.Zty[glob, a] += seg(za * y)
        self.sizes[glob] += np.bincount(codes, minlength=u)
        self.XtX += X.T @ X
        self.Xty += X.T @ y
        self.yty += float(y @ y)
        self.y_sum += float(y.sum())
        self.y_min, self.y_max = min(self.y_min, y.min()), max(self.y_max, y.max())
        self.n += y.size


def _design(chunk: pd.DataFrame, formula: str, re_formula: str | None, specs):
    """Evaluate the formulas on a chunk with the encoding fixed by the first chunk."""
    from formulaic.errors import FormulaicError

    from mixedjax.spec.evaluation import matrix_from_spec, model_matrix

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # unseen categorical levels become NaN otherwise
            if specs is None:
                fixed = model_matrix(formula, chunk)
                re = model_matrix(re_formula, chunk) if re_formula else None
                specs = (fixed.model_spec, None if re is None else re.model_spec)
            else:
                fixed = matrix_from_spec(specs[0], chunk)
                re = None
                if specs[1] is not None:
                    re = matrix_from_spec(specs[1], chunk)
    except (FormulaicError, ValueError, KeyError, Warning) as err:
        raise ValueError(
            f"formula {formula!r} / re_formula {re_formula!r} could not be evaluated on a "
            f"chunk: {err}. Categorical levels are fixed by the first chunk; give such "
            "columns a pandas Categorical dtype with all levels."
        ) from err
    if fixed.lhs is None or fixed.lhs.shape[1] != 1:
        raise ValueError(f"formula {formula!r} must have exactly one response on the left")
    y = np.asarray(fixed.lhs, dtype=float)[:, 0]
    X = pd.DataFrame(fixed.rhs)
    if re is None:
        Z = pd.DataFrame({"Group": np.ones(len(chunk))})
    else:
        Z = pd.DataFrame(re)
        Z.columns = ["Group" if c == "Intercept" else str(c) for c in Z.columns]
    return y, X, Z, specs


def from_chunks(
    chunks: Iterable[pd.DataFrame],
    formula: str,
    groups: str | None = None,
    re_formula: str | None = None,
    missing: str = "none",
    progress: bool | None = None,
) -> ChunkedMixedLM:
    """Build a model from an iterable of DataFrames without holding all rows.

    Args:
        chunks: DataFrames with the same columns (e.g. ``pd.read_csv(path, chunksize=k)``).
        formula: fixed-effects formula ``"y ~ x + C(f)"`` (formulaic; the encoding of
            categoricals is fixed by the first chunk).
        groups: name of the grouping column (statsmodels' spelling); ``None`` for an lme4
            formula with bar terms, ``"y ~ x + (x | g) + (1 | h)"``, any number of terms
            on any grouping factors (:mod:`mixedjax.model.chunked_terms`).
        re_formula: random-effects formula (default: random intercept), as in
            :meth:`mixedjax.MixedLM.from_formula`.
        missing: ``"none"``/``"raise"`` (error on NaN/inf in a used column) or ``"drop"``.
        progress: show rows read (:mod:`mixedjax.core.progress`): ``True``/``False`` force it,
            ``None`` shows it in notebooks and terminals only.

    Returns:
        A :class:`ChunkedMixedLM` whose fit equals the in-memory model's.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> chunks = (df.iloc[i : i + 60] for i in range(0, len(df), 60))
        >>> m = mixedjax.from_chunks(chunks, "Reaction ~ Days", "Subject", re_formula="~Days")
        >>> round(m.fit().llf, 3)
        -871.814
    """
    namespace = caller_namespace(None, [formula, re_formula], depth=1)
    with evaluated_in(namespace):  # the formulas may call the caller's functions
        return _from_chunks(chunks, formula, groups, re_formula, missing, progress)


def _from_chunks(chunks, formula, groups, re_formula, missing, progress) -> ChunkedMixedLM:
    if missing not in ("none", "raise", "drop"):
        raise ValueError(f"missing must be 'none', 'raise' or 'drop', got {missing!r}")
    if groups is None:
        from mixedjax.model.chunked_terms import read_lme4_chunks
        from mixedjax.spec.lme4_formula import has_bar_terms

        if not has_bar_terms(formula):
            raise ValueError(
                "from_chunks needs groups=... (statsmodels style) or lme4 random-effects "
                "terms in the formula, e.g. 'y ~ x + (1 | g)'"
            )
        if re_formula is not None:
            raise ValueError("re_formula goes with groups=...; an lme4 formula has its terms")
        bar = progress_bar(desc="reading", unit="rows", enabled=progress)
        model = ChunkedMixedLM.__new__(ChunkedMixedLM)
        model.__dict__.update(read_lme4_chunks(chunks, formula, missing, bar))
        return model
    if not isinstance(groups, str):
        raise TypeError("groups must be the name of the grouping column")
    specs = None
    acc = None
    names = None
    n_dropped = 0
    bar = progress_bar(desc="reading", unit="rows", enabled=progress)
    chunks_read = 0
    try:
        for number, chunk in enumerate(chunks):
            if not isinstance(chunk, pd.DataFrame):
                raise TypeError(f"chunk {number} is a {type(chunk).__name__}, not a DataFrame")
            if groups not in chunk.columns:
                raise ValueError(f"groups: column {groups!r} is not in chunk {number}")
            if len(chunk) == 0:
                continue
            y, X, Z, specs = _design(chunk, formula, re_formula, specs)
            if names is None:
                names = (list(map(str, X.columns)), list(Z.columns))
                acc = _Accumulator(Z.shape[1], X.shape[1])
            elif list(map(str, X.columns)) != names[0]:
                raise ValueError(f"chunk {number}: fixed-effects columns changed")
            X, Z = X.to_numpy(dtype=float), Z.to_numpy(dtype=float)
            g = chunk[groups].to_numpy()
            bad = ~(np.isfinite(y) & np.isfinite(X).all(1) & np.isfinite(Z).all(1))
            bad |= pd.isna(g)
            if bad.any():
                if missing != "drop":
                    raise ValueError(
                        f"chunk {number}: {int(bad.sum())} row(s) with NaN/inf in the "
                        f"response, design or {groups!r}; use missing='drop'"
                    )
                n_dropped += int(bad.sum())
                keep = ~bad
                y, X, Z, g = y[keep], X[keep], Z[keep], g[keep]
            acc.add(y, X, Z, g)
            chunks_read += 1
            bar.set_postfix(chunks=chunks_read, groups=len(acc.labels))
            bar.update(len(chunk))
    finally:
        bar.close()
    if acc is None or acc.n == 0:
        raise ValueError("chunks: no rows were read")
    if n_dropped:
        warnings.warn(
            f"dropped {n_dropped} of {acc.n + n_dropped} rows with missing or non-finite "
            "values in the response, design or groups",
            UserWarning,
            stacklevel=3,
        )
    return _build_model(acc, names, formula, re_formula, groups, missing, n_dropped)


def _build_model(acc, names, formula, re_formula, group_name, missing, n_dropped):
    exog_names, re_names = names
    G = len(acc.labels)
    if acc.y_max == acc.y_min:
        raise ValueError("endog is constant: a mixed model needs a varying response")
    p = len(exog_names)
    if p >= acc.n:
        raise ValueError(f"exog has {p} columns but only {acc.n} observations")
    eig = np.linalg.eigvalsh(acc.XtX)
    if eig[0] <= 1e-10 * max(eig[-1], 1e-300):
        raise ValueError(f"exog is rank deficient (columns {exog_names})")
    if len(re_names) and G < 2:
        raise ValueError(f"groups has {G} level(s): random effects need at least two groups")
    try:
        order = np.argsort(np.asarray(acc.labels), kind="stable")
    except TypeError:
        order = np.arange(G)
    labels = np.asarray(acc.labels)[order]
    data = GroupedData(
        ZtZ=jnp.asarray(acc.ZtZ[:G][order]),
        ZtX=jnp.asarray(acc.ZtX[:G][order]),
        Zty=jnp.asarray(acc.Zty[:G][order]),
        XtX=jnp.asarray(acc.XtX),
        Xty=jnp.asarray(acc.Xty),
        yty=jnp.asarray(acc.yty),
        n_obs=jnp.asarray(float(acc.n)),
    )
    diag = np.einsum("gjj->j", acc.ZtZ[:G])
    zero = [nm for nm, t in zip(re_names, diag, strict=True) if t == 0]
    if zero:
        raise ValueError(f"exog_re: column(s) {zero} are identically zero")
    model = ChunkedMixedLM.__new__(ChunkedMixedLM)
    r = len(re_names)
    attrs = {
        "formula": formula,
        "re_formula": re_formula,
        "vc_formula": None,
        "group_name": group_name,
        "n_dropped": n_dropped,
        "group_labels": labels,
        "n_groups": G,
        "endog_names": formula.split("~")[0].strip() or "y",
        "exog_names": exog_names,
        "exog_re_names": re_names,
        "re_terms": [
            "(Intercept)" if nm in ("Intercept", "Group", group_name) else nm for nm in re_names
        ],
        "vc_names": [],
        "rows": NO_WEIGHTS,
        "vc_colnames": [],
        "vc_global_columns": [],
        "structure": CovStructure(r, ()),
        "use_sqrt": True,
        "missing": missing,
        "k_fe": p,
        "k_re": r,
        "k_re2": r * (r + 1) // 2,
        "k_vc": 0,
        "nobs": acc.n,
        "n_totobs": acc.n + n_dropped,
        "group_sizes": acc.sizes[:G][order],
        "data": pad_groups(data, bucket_size(G)),
    }
    model.__dict__.update(attrs)
    return model
