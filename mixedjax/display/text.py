"""Text and table display of results: the summary table and lme4's ``VarCorr`` layout."""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mixedjax.core.distributions import two_sided_normal_pvalue


class Summary:
    """statsmodels-style summary; ``str()`` gives the text, ``tables`` the DataFrames
    (``tables[0]`` the model information, ``tables[1]`` the numeric coefficient table).

    ``yname``, ``xname_fe``, ``xname_re`` and ``title`` replace the response name, the
    fixed-effect and variance-parameter row names and the title (statsmodels' arguments).
    Where statsmodels is installed ``results.summary()`` returns a subclass of its
    ``statsmodels.iolib.summary2.Summary`` (:func:`statsmodels_summary_class`), so
    ``isinstance`` checks and ``summary_col`` see statsmodels' type.

    Example:
        >>> import mixedjax
        >>> df = mixedjax.datasets.load("sleepstudy")
        >>> r = mixedjax.MixedLM.from_formula("Reaction ~ Days", df, groups="Subject",
        ...                                   re_formula="~Days").fit()
        >>> s = r.summary()
        >>> s.tables[1].loc["Days", "Coef."].round(3), str(s).splitlines()[0].strip()
        (np.float64(10.467), 'Mixed Linear Model Regression Results')
    """

    def __init__(
        self,
        results,
        alpha: float = 0.05,
        yname: str | None = None,
        xname_fe=None,
        xname_re=None,
        title: str | None = None,
    ):
        self.results = results
        self.alpha = alpha
        self.yname = str(results.model.endog_names if yname is None else yname)
        names = list(results.model.param_names)
        k_fe = results.k_fe
        for given, part, what in (
            (xname_fe, slice(0, k_fe), "xname_fe"),
            (xname_re, slice(k_fe, None), "xname_re"),
        ):
            if given is None:
                continue
            given = [str(x) for x in given]
            if len(given) != len(names[part]):
                raise ValueError(f"{what} should be a list of length {len(names[part])}")
            names[part] = given
        self.row_names = names
        self.title = "Mixed Linear Model Regression Results" if title is None else str(title)
        self.tables = [self._info_table(), self._coef_table()]
        # statsmodels' Summary state, so its add_text/as_latex work on this summary
        self.settings = [
            {"index": False, "header": False, "float_format": "%.4f", "align": "l"},
            {"index": True, "header": True, "float_format": "%.3f", "align": "r"},
        ]
        self.extra_txt: list[str] = []
        self._merge_latex = False

    def _info_table(self) -> pd.DataFrame:
        r, m = self.results, self.results.model
        sizes = m.group_sizes
        left = [
            ("Model:", "MixedLM"),
            ("No. Observations:", f"{m.nobs}"),
            ("No. Groups:", f"{m.n_groups}"),
            ("Min. group size:", f"{sizes.min()}"),
            ("Max. group size:", f"{sizes.max()}"),
            ("Mean group size:", f"{sizes.mean():.1f}"),
            ("Rows dropped:", f"{getattr(m, 'n_dropped', 0)}"),
        ]
        right = [
            ("Dependent Variable:", self.yname),
            ("Method:", r.method),
            ("Scale:", f"{r.scale:.4f}"),
            ("Log-Likelihood:", f"{r.llf:.4f}"),
            ("Converged:", "Yes" if r.converged else "No"),
            ("Singular:", "Yes" if r.is_singular else "No"),
            ("Iterations:", f"{r.optim.n_iter}"),
        ]
        return pd.DataFrame([[a, b, c, d] for (a, b), (c, d) in zip(left, right, strict=True)])

    def _coef_table(self) -> pd.DataFrame:
        r = self.results
        from statistics import NormalDist

        crit = NormalDist().inv_cdf(1 - self.alpha / 2)
        fe, se = np.asarray(r.fe_params), np.asarray(r.bse_fe)
        z = fe / se
        lo, hi = 1 - self.alpha / 2, self.alpha / 2
        table = pd.DataFrame(
            {
                "Coef.": fe,
                "Std.Err.": se,
                "z": z,
                "P>|z|": two_sided_normal_pvalue(z),
                f"[{hi:.3f}": fe - crit * se,
                f"{lo:.3f}]": fe + crit * se,
            },
            index=self.row_names[: r.k_fe],
        )
        rows, cols = np.tril_indices(r.k_re)
        values = np.concatenate([np.asarray(r.cov_re)[rows, cols], r.vcomp])
        bse_re = np.asarray(r.bse_re)
        re_table = pd.DataFrame(
            {"Coef.": values, "Std.Err.": bse_re}, index=self.row_names[r.k_fe :]
        )
        return pd.concat([table, re_table])

    def as_text(self) -> str:
        """The summary as text, laid out exactly as statsmodels' ``summary2`` lays it out."""
        info, coef = self.tables
        formatted = coef.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
        text = text_tables(
            [
                TextTable(info.to_numpy(dtype=str), align="l"),
                TextTable(
                    formatted.to_numpy(dtype=str),
                    header=[str(c) for c in formatted.columns],
                    stubs=[str(i) for i in formatted.index],
                    align="r",
                ),
            ],
            title=self.title,
        )
        return "\n".join([text, *self.extra_txt]) if self.extra_txt else text

    def as_html(self) -> str:
        """The summary as a self-contained styled HTML block (model info, coefficients, and
        lme4's variance-component table)."""
        from mixedjax.display.html import summary_html

        return summary_html(self)

    def __str__(self) -> str:
        return self.as_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.as_html()


# --------------------------------------------------------------------- text tables
@dataclass(frozen=True)
class TextTable:
    """One block of a text summary: cells ``(rows, cols)`` of strings, optional header/stubs.

    ``align`` is ``"l"`` or ``"r"`` for the data cells; headers are centred and stubs
    left-aligned (statsmodels' ``SimpleTable`` text format).

    Example:
        >>> import numpy as np
        >>> TextTable(np.array([["1.0", "x"]]), header=["a", "b"], stubs=["row"]).lines()
        ['---------', '     a  b', '---------', 'row 1.0 x']
    """

    cells: np.ndarray
    header: list[str] | None = None
    stubs: list[str] | None = None
    align: str = "r"

    def lines(self, pad_col: int = 0, pad_index: int = 0) -> list[str]:
        """Rendered rows: a ``-`` rule above, the header and a ``-`` rule below it, the body."""
        cells = [[str(c).strip() for c in row] for row in self.cells]
        if self.stubs is not None:
            stubs = [s + " " * pad_index for s in self.stubs]
            cells = [[s, *row] for s, row in zip(stubs, cells, strict=True)]
        elif pad_index:
            cells = [[row[0] + " " * pad_index, *row[1:]] for row in cells]
        header = None
        if self.header is not None:
            header = ([""] if self.stubs is not None else []) + list(self.header)
        rows = cells + ([header] if header else [])
        widths = [max(len(r[j]) for r in rows) for j in range(len(rows[0]))]
        sep = " " * (pad_col + 1)
        has_stub = self.stubs is not None

        def render(row, kind):
            out = []
            for j, (c, w) in enumerate(zip(row, widths, strict=True)):
                if j == 0 and has_stub:
                    out.append(c.ljust(w))
                elif kind == "header":
                    out.append(c.center(w))
                else:
                    out.append(c.ljust(w) if self.align == "l" else c.rjust(w))
            return sep.join(out)

        body = [render(r, "data") for r in cells]
        width = len(body[0]) if body else 0
        lines = ["-" * width]
        if header:
            head = render(header, "header")
            lines += [head, "-" * len(head)]
        return lines + body


def text_tables(tables: list[TextTable], title: str = "") -> str:
    """Stack text tables as statsmodels' ``summary2.Summary.as_text`` does.

    Narrower tables get wider column separators (and then a wider first column) to
    approach the width of the widest; the whole is framed by ``=`` rules of that width and
    the title is centred above it.

    Example:
        >>> t = TextTable(np.array([["1"], ["2"]]), header=["y"], stubs=["a", "bb"])
        >>> print(text_tables([t], title="T"))
         T
        ====
           y
        ----
        a  1
        bb 2
        ====
    """
    natural = [len(t.lines()[0]) for t in tables]
    widest = max(natural)
    blocks = []
    for t, length in zip(tables, natural, strict=True):
        n_sep = max(t.cells.shape[1] - 1, 1)
        pad = (widest - length) // n_sep
        pad_index = widest - (length + n_sep * pad)
        blocks.extend(t.lines(pad_col=pad, pad_index=pad_index))
    blocks[0] = "=" * widest
    blocks.append("=" * widest)
    if title and len(title) < widest:
        title = " " * int(widest / 2 - len(title) / 2) + title
    return "\n".join([title, *blocks])


# --------------------------------------------------------------------- statsmodels' type
_CLASSES: dict[str, type] = {}


def statsmodels_summary_class() -> type:
    """:class:`Summary` as a subclass of statsmodels' ``summary2.Summary`` where statsmodels
    is installed (imported here, on the first summary, not with mixedjax), else
    :class:`Summary` itself. mixedjax's methods (text, HTML) come first in the MRO;
    statsmodels' others (``add_text``, ``as_latex``) work on the same tables."""
    if "statsmodels" not in _CLASSES:
        try:
            from statsmodels.iolib.summary2 import Summary as StatsmodelsBase
        except ImportError:
            _CLASSES["statsmodels"] = Summary
        else:
            cls = type(
                "StatsmodelsSummary",
                (Summary, StatsmodelsBase),
                {"__module__": __name__, "__doc__": Summary.__doc__},
            )
            _CLASSES["statsmodels"] = cls
    return _CLASSES["statsmodels"]


def __getattr__(name: str):
    if name == "StatsmodelsSummary":  # so pickle finds the class built above
        return statsmodels_summary_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
