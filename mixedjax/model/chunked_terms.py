"""Out-of-core models with lme4 formulas: the crossed engine's sums, chunk by chunk.

:func:`from_chunks_lme4` is :func:`mixedjax.from_chunks` for a formula with bar terms,
``"y ~ x + (x | subject) + (1 | item)"``: any number of terms on any grouping factors,
fitted by the crossed engine (:mod:`mixedjax.model.crossed`). Everything that engine needs
is a sum over the rows (:class:`~mixedjax.design.crossed.CrossedSums`): per level of each
term ``Z_t'Z_t`` and ``Z_t'[X y]``, per co-occurring pair of levels of two terms
``Z_t'Z_u``, and ``[X y]'[X y]``. Each chunk adds its rows' share; levels get codes in order
of first appearance and are sorted at the end as the in-memory model sorts them, so the
fit, ``ranef`` and ``varcorr`` equal :func:`mixedjax.mixedlm`'s on the concatenated rows.

Memory: one chunk plus the sums, ``O(Σ_t n_t q_t (q_t + p))`` for the levels and
``O(q²)`` per distinct pair of levels (at most one per row); nothing else proportional to
the rows is kept.
"""

import warnings

import numpy as np
import pandas as pd

from mixedjax.design.crossed import CrossedSums, crossed_from_sums, pair_sums, term_pairs
from mixedjax.design.weights import NO_WEIGHTS
from mixedjax.spec.lme4_formula import interaction_codes, parse_formula
from mixedjax.spec.offsets import split_offsets
from mixedjax.spec.terms import RandomTerm, check_identifiable, lme4_name


class _Levels:
    """Global codes of one grouping factor's levels (columns ``names``), in order of first
    appearance, with the raw values that sort them as :func:`interaction_codes` does."""

    def __init__(self, names: tuple[str, ...]):
        self.names = names
        self.index: dict[str, int] = {}
        self.labels: list[str] = []
        self.raw: list[pd.Series] = []  # per chunk: raw values of its new levels

    def codes(self, chunk: pd.DataFrame) -> np.ndarray:
        """``(rows,)`` global codes of the chunk's rows (``-1`` where a value is missing)."""
        local, labels = interaction_codes(chunk, self.names)
        known = pd.Index(self.labels) if self.labels else pd.Index([], dtype=object)
        where = known.get_indexer(labels) if len(known) else np.full(len(labels), -1)
        new = np.flatnonzero(where < 0)
        where[new] = len(self.labels) + np.arange(new.size)
        if new.size:
            self.labels.extend(labels[new].tolist())
            first_row = np.zeros(len(labels), dtype=np.int64)
            valid = np.flatnonzero(local >= 0)
            first_row[local[valid][::-1]] = valid[::-1]
            self.raw.append(chunk.iloc[first_row[new]][list(self.names)].reset_index(drop=True))
        return np.where(local >= 0, where[np.maximum(local, 0)], -1)

    def order(self) -> np.ndarray:
        """Codes in sorted level order (by each column in turn, as the in-memory model)."""
        raw = pd.concat(self.raw, ignore_index=True)
        keys = []
        for name in reversed(self.names):
            try:
                keys.append(pd.factorize(raw[name], sort=True)[0])
            except TypeError:  # unorderable values: first appearance
                keys.append(np.arange(len(raw)))
        return np.lexsort(keys)


class _Growing:
    """A ``(capacity, ...)`` array of per-level sums that grows with the levels."""

    def __init__(self, shape: tuple[int, ...]):
        self.values = np.zeros((16,) + shape)

    def add(self, codes: np.ndarray, sums: np.ndarray) -> None:
        need = int(codes.max()) + 1 if codes.size else 0
        if need > self.values.shape[0]:
            grown = np.zeros((max(need, 2 * self.values.shape[0]),) + self.values.shape[1:])
            grown[: self.values.shape[0]] = self.values
            self.values = grown
        self.values[codes] += sums


class _PairSums:
    """``Z_a'Z_b`` per co-occurring level pair of two terms, merged lazily (keys are
    ``level_a * 2³² + level_b`` in global codes)."""

    def __init__(self):
        self.keys: list[np.ndarray] = []
        self.blocks: list[np.ndarray] = []
        self.merged_size = 0

    def add(self, keys: np.ndarray, blocks: np.ndarray) -> None:
        self.keys.append(keys)
        self.blocks.append(blocks)
        if sum(k.size for k in self.keys) > 2 * max(self.merged_size, 1 << 16):
            self.merge()

    def merge(self) -> tuple[np.ndarray, np.ndarray]:
        keys, blocks = np.concatenate(self.keys), np.concatenate(self.blocks)
        uniq, inverse = np.unique(keys, return_inverse=True)
        merged = np.zeros((uniq.size,) + blocks.shape[1:])
        np.add.at(merged, inverse.ravel(), blocks)
        self.keys, self.blocks, self.merged_size = [uniq], [merged], uniq.size
        return uniq, merged


_SHIFT = np.int64(1) << np.int64(32)


class _TermSpec:
    """One random-effects term of the formula, evaluated chunk by chunk."""

    def __init__(self, bar: int, names: tuple[str, ...], columns: list[int], levels: _Levels):
        self.bar, self.names, self.columns, self.levels = bar, names, columns, levels


class TermAccumulator:
    """:class:`CrossedSums` of an lme4 formula, accumulated over chunks of rows."""

    def __init__(self, formula: str):
        fixed_formula, offsets = split_offsets(formula)
        if offsets:
            raise ValueError(
                "from_chunks: offset() terms are not supported for chunked models; subtract "
                "the offset from the response in each chunk instead"
            )
        self.formula = formula
        self.parsed = parse_formula(fixed_formula)
        if not self.parsed.terms:
            raise ValueError(f"formula {formula!r} has no random-effects term '(expr | group)'")
        self.fixed_spec = None
        self.bar_specs: list = []
        self.terms: list[_TermSpec] = []
        self.exog_names: list[str] = []
        self.endog_name = "y"
        self.n = 0
        self.y_min, self.y_max = np.inf, -np.inf

    # -------------------------------------------------------------- one chunk
    def _matrices(self, chunk: pd.DataFrame):
        from mixedjax.spec.evaluation import matrix_from_spec, model_matrix

        if self.fixed_spec is None:
            fixed = model_matrix(self.parsed.fixed, chunk)
            self.fixed_spec = fixed.model_spec
            bars = [model_matrix(b.expr, chunk) for b in self.parsed.terms]
            self.bar_specs = [b.model_spec for b in bars]
        else:
            fixed = matrix_from_spec(self.fixed_spec, chunk)
            bars = [matrix_from_spec(s, chunk) for s in self.bar_specs]
        if fixed.lhs is None or fixed.lhs.shape[1] != 1:
            raise ValueError(f"formula {self.formula!r} must have exactly one response on the left")
        return fixed, [pd.DataFrame(b) for b in bars]

    def _first_chunk(self, fixed, bars) -> None:
        self.exog_names = [str(c) for c in pd.DataFrame(fixed.rhs).columns]
        self.endog_name = str(pd.DataFrame(fixed.lhs).columns[0])
        p = len(self.exog_names)
        for b, (bar, columns) in enumerate(zip(self.parsed.terms, bars, strict=True)):
            names = [lme4_name(c) for c in columns.columns]
            blocks = [(tuple(names), list(range(len(names))))]
            if not bar.correlated:
                blocks = [((c,), [j]) for j, c in enumerate(names)]
            for factor in bar.factors:
                levels = _Levels(factor)
                for block_names, cols in blocks:
                    self.terms.append(_TermSpec(b, block_names, cols, levels))
        self.zz = [_Growing((len(t.columns),) * 2) for t in self.terms]
        self.zw = [_Growing((len(t.columns), p + 1)) for t in self.terms]
        self.pairs = {pair: _PairSums() for pair in term_pairs(len(self.terms))}
        self.wtw = np.zeros((p + 1, p + 1))

    def add(self, chunk: pd.DataFrame, number: int, missing: str) -> int:
        """Add a chunk's rows; returns how many rows were dropped (``missing="drop"``)."""
        from formulaic.errors import FormulaicError

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # unseen categorical levels become NaN otherwise
                fixed, bars = self._matrices(chunk)
        except (FormulaicError, ValueError, KeyError, Warning) as err:
            raise ValueError(
                f"formula {self.formula!r} could not be evaluated on chunk {number}: {err}. "
                "Categorical levels of the fixed part and of the random-effects expressions "
                "are fixed by the first chunk; give such columns a pandas Categorical dtype "
                "with all levels."
            ) from err
        if not self.terms:
            self._first_chunk(fixed, bars)
        elif [str(c) for c in pd.DataFrame(fixed.rhs).columns] != self.exog_names:
            raise ValueError(f"chunk {number}: fixed-effects columns changed")
        y = np.asarray(fixed.lhs, dtype=float)[:, 0]
        X = np.asarray(fixed.rhs, dtype=float)
        bar_values = [b.to_numpy(dtype=float) for b in bars]
        codes = [t.levels.codes(chunk) for t in self.terms]
        designs = [bar_values[t.bar][:, t.columns] for t in self.terms]
        bad = ~(np.isfinite(y) & np.isfinite(X).all(1))
        for c, d in zip(codes, designs, strict=True):
            bad |= (c < 0) | ~np.isfinite(d).all(1)
        n_bad = int(bad.sum())
        if n_bad:
            if missing != "drop":
                raise ValueError(
                    f"chunk {number}: {n_bad} row(s) with NaN/inf or a missing level in the "
                    "response, the design or a grouping factor; use missing='drop'"
                )
            keep = ~bad
            y, X = y[keep], X[keep]
            codes = [c[keep] for c in codes]
            designs = [d[keep] for d in designs]
        self._add_rows(y, X, codes, designs)
        return n_bad

    def _add_rows(self, y, X, codes, designs) -> None:
        from mixedjax.design.crossed import _segment_products

        if y.size == 0:
            return
        W = np.column_stack([X, y])
        for t in range(len(self.terms)):
            used, local = np.unique(codes[t], return_inverse=True)
            local = local.ravel()
            self.zz[t].add(used, _segment_products(local, used.size, designs[t], designs[t]))
            self.zw[t].add(used, _segment_products(local, used.size, designs[t], W))
        for (t, u), acc in self.pairs.items():
            keys, blocks = pair_sums(codes[t], designs[t], codes[u], designs[u], int(_SHIFT))
            acc.add(keys, blocks)
        self.wtw += W.T @ W
        self.n += y.size
        self.y_min, self.y_max = min(self.y_min, y.min()), max(self.y_max, y.max())

    # -------------------------------------------------------------- the end
    def finish(self) -> tuple[list[RandomTerm], CrossedSums]:
        """The terms (sorted by decreasing levels, lme4's order; no rows) and their sums,
        levels sorted as the in-memory model sorts them."""
        factors = {id(t.levels): t.levels for t in self.terms}
        rank = {}
        for key, levels in factors.items():
            order = levels.order()
            r = np.empty(order.size, dtype=np.int64)
            r[order] = np.arange(order.size)
            rank[key] = (order, r)
        n_levels = [len(t.levels.labels) for t in self.terms]
        final = sorted(range(len(self.terms)), key=lambda k: -n_levels[k])
        terms, zz, zw = [], [], []
        for k in final:
            t = self.terms[k]
            order, _ = rank[id(t.levels)]
            q = len(t.columns)
            terms.append(
                RandomTerm(
                    group=":".join(t.levels.names), names=t.names,
                    design=np.zeros((0, q)), codes=np.zeros(0, dtype=np.int64),
                    levels=np.asarray(t.levels.labels, dtype=str)[order],
                )
            )  # fmt: skip
            zz.append(self.zz[k].values[order])
            zw.append(self.zw[k].values[order])
        keys, blocks = [], []
        for t, u in term_pairs(len(final)):
            a, b = final[t], final[u]
            # pairs are stored as (t, u) with t > u in the order terms were read
            stored, swap = ((a, b), False) if a > b else ((b, a), True)
            uniq, merged = (
                self.pairs[stored].merge()
                if self.pairs[stored].keys
                else (
                    np.zeros(0, np.int64),
                    np.zeros(
                        (0,)
                        + (len(self.terms[stored[0]].columns), len(self.terms[stored[1]].columns))
                    ),
                )
            )
            first, second = uniq // _SHIFT, uniq % _SHIFT
            if swap:
                first, second, merged = second, first, merged.transpose(0, 2, 1)
            level_t = rank[id(self.terms[a].levels)][1][first]
            level_u = rank[id(self.terms[b].levels)][1][second]
            key = level_t * n_levels[b] + level_u
            order = np.argsort(key, kind="stable")
            keys.append(key[order])
            blocks.append(merged[order])
        sums = CrossedSums(
            tuple(zz), tuple(zw), tuple(keys), tuple(blocks), self.wtw, float(self.n)
        )
        return terms, sums


def read_lme4_chunks(chunks, formula: str, missing: str, progress_bar) -> dict:
    """:func:`mixedjax.from_chunks` for an lme4 formula (see the module docstring): the
    attributes of a :class:`~mixedjax.model.chunked.ChunkedMixedLM` on the crossed engine."""
    acc = TermAccumulator(formula)
    n_dropped = chunks_read = 0
    try:
        for number, chunk in enumerate(chunks):
            if not isinstance(chunk, pd.DataFrame):
                raise TypeError(f"chunk {number} is a {type(chunk).__name__}, not a DataFrame")
            if len(chunk) == 0:
                continue
            n_dropped += acc.add(chunk, number, missing)
            chunks_read += 1
            progress_bar.set_postfix(chunks=chunks_read)
            progress_bar.update(len(chunk))
    finally:
        progress_bar.close()
    if acc.n == 0:
        raise ValueError("chunks: no rows were read")
    if n_dropped:
        warnings.warn(
            f"dropped {n_dropped} of {acc.n + n_dropped} rows with missing or non-finite "
            "values in the response, design or grouping factors",
            UserWarning,
            stacklevel=4,
        )
    if acc.y_max == acc.y_min:
        raise ValueError("endog is constant: a mixed model needs a varying response")
    terms, sums = acc.finish()
    return _crossed_attributes(acc, terms, sums, missing, n_dropped)


def _crossed_attributes(acc: TermAccumulator, terms, sums: CrossedSums, missing, n_dropped):
    from mixedjax.spec.offsets import OffsetSpec

    p = len(acc.exog_names)
    XtX = sums.wtw[:p, :p]
    if p >= acc.n:
        raise ValueError(f"exog has {p} columns but only {acc.n} observations")
    eig = np.linalg.eigvalsh(XtX)
    if eig[0] <= 1e-10 * max(eig[-1], 1e-300):
        raise ValueError(f"exog is rank deficient (columns {acc.exog_names})")
    for t, zz in zip(terms, sums.term_zz, strict=True):
        zero = [nm for nm, s in zip(t.names, np.einsum("ljj->j", zz), strict=True) if s == 0]
        if zero:
            raise ValueError(
                f"random term ({' + '.join(t.names)} | {t.group}): column(s) {zero} are "
                "identically zero"
            )
    _check_levels(terms, acc.n)
    structure, data = crossed_from_sums(
        sums, tuple(t.q for t in terms), tuple(t.n_levels for t in terms)
    )
    return dict(
        formula=acc.formula, re_formula=None, vc_formula=None, terms=terms,
        input_order=list(range(len(terms))), endog_names=acc.endog_name,
        exog_names=acc.exog_names, nobs=acc.n, n_totobs=acc.n + n_dropped, k_fe=p,
        rows=NO_WEIGHTS, offset_spec=OffsetSpec((), None, None), structure=structure,
        data=data, n_dropped=n_dropped, missing=missing, use_sqrt=True, exog_re_names=[],
        k_re=0, k_re2=0, k_vc=len(terms),
    )  # fmt: skip


def _check_levels(terms: list[RandomTerm], n_obs: int) -> None:
    """:func:`mixedjax.spec.terms.check_identifiable`'s checks that need no rows."""
    for t in terms:
        if t.n_levels < 2 or t.n_levels * t.q >= n_obs:
            probe = t._replace(design=np.ones((0, t.q)))
            check_identifiable([probe], n_obs)  # raises with its own message
