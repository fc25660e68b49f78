"""Input checks for the front end: clear errors that name the column and the reason."""

import warnings

import numpy as np
import pandas as pd


def as_float_matrix(values, name: str, n_rows: int | None = None) -> tuple[np.ndarray, list[str]]:
    """Convert a vector/matrix/DataFrame argument to a float64 ``(n, k)`` array and names.

    Raises:
        TypeError: for non-numeric columns (object, datetime, ...), naming the column.
        ValueError: for a wrong number of rows or dimensions.

    Example:
        >>> import pandas as pd
        >>> values, names = as_float_matrix(pd.DataFrame({"a": [1, 2], "b": [0.5, 1.5]}), "exog")
        >>> values.shape, names
        ((2, 2), ['a', 'b'])
    """
    if isinstance(values, pd.Series):
        values = values.to_frame()
    if isinstance(values, pd.DataFrame):
        names = [str(c) for c in values.columns]
        if len(set(names)) != len(names):
            dup = sorted({c for c in names if names.count(c) > 1})
            raise ValueError(f"{name}: duplicated column names {dup}")
        columns = []
        for col in values.columns:
            columns.append(_numeric_column(values[col], f"{name} column {col!r}"))
        array = np.column_stack(columns) if columns else np.zeros((len(values), 0))
    else:
        array = np.asarray(values)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise ValueError(f"{name} must be 1- or 2-dimensional, got shape {array.shape}")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
        array = array.astype(float)
        names = _default_names(array, name)
    if n_rows is not None and array.shape[0] != n_rows:
        raise ValueError(f"{name} has {array.shape[0]} rows but endog has {n_rows}")
    return array, names


def _default_names(array: np.ndarray, name: str) -> list[str]:
    """statsmodels' names for unnamed columns: ``const``/``x1``... for exog, ``x_re1``...
    for exog_re, the argument name otherwise."""
    if name == "exog":
        names, k = [], 0
        for j in range(array.shape[1]):
            col = array[:, j]
            if "const" not in names and col.size and np.all(col == col[0]) and col[0] != 0:
                names.append("const")
            else:
                k += 1
                names.append(f"x{k}")
        return names
    if name == "exog_re":
        return [f"x_re{j + 1}" for j in range(array.shape[1])]
    return [name] if array.shape[1] == 1 else [f"{name}{j + 1}" for j in range(array.shape[1])]


def _numeric_column(series: pd.Series, label: str) -> np.ndarray:
    dtype = series.dtype
    if (
        isinstance(dtype, pd.CategoricalDtype)
        or pd.api.types.is_object_dtype(dtype)
        or (pd.api.types.is_string_dtype(dtype))
    ):
        raise TypeError(
            f"{label} is not numeric (dtype {dtype}); encode it (e.g. with a formula and C(...))"
        )
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        raise TypeError(f"{label} has dtype {dtype}; convert it to a number first")
    return series.to_numpy(dtype=float, na_value=np.nan)


def missing_rows(columns: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, int]]:
    """Rows with a NaN/inf in any of ``columns`` and a count per column with any.

    Example:
        >>> import numpy as np
        >>> mask, counts = missing_rows({"x": np.array([1.0, np.nan, 3.0])})
        >>> mask.tolist(), counts
        ([False, True, False], {'x': 1})
    """
    bad = np.zeros(len(next(iter(columns.values()))), dtype=bool)
    counts: dict[str, int] = {}
    for label, values in columns.items():
        if values.dtype.kind == "f":
            row_bad = ~np.isfinite(values) if values.ndim == 1 else ~np.isfinite(values).all(1)
        else:
            row_bad = pd.isna(values) if values.ndim == 1 else pd.isna(values).any(1)
        if row_bad.any():
            counts[label] = int(row_bad.sum())
            bad |= row_bad
    return bad, counts


def handle_missing(columns: dict[str, np.ndarray], missing: str) -> tuple[np.ndarray, int]:
    """Apply the ``missing`` policy; return the kept-row mask and how many rows were dropped.

    ``"none"`` and ``"raise"`` raise a ``ValueError`` naming the columns and counts;
    ``"drop"`` drops those rows and warns with the count.

    Example:
        >>> import numpy as np
        >>> keep, dropped = handle_missing({"x": np.array([1.0, np.nan, 3.0])}, "drop")
        >>> keep.tolist(), dropped
        ([True, False, True], 1)
    """
    if missing not in ("none", "drop", "raise"):
        raise ValueError(f"missing must be 'none', 'drop' or 'raise', got {missing!r}")
    bad, counts = missing_rows(columns)
    if not counts:
        return np.ones(bad.shape, dtype=bool), 0
    detail = ", ".join(f"{k}: {v}" for k, v in counts.items())
    if missing in ("none", "raise"):
        raise ValueError(
            f"missing or non-finite values in {detail} row(s); "
            "clean the data or pass missing='drop'"
        )
    n_dropped = int(bad.sum())
    warnings.warn(
        f"dropped {n_dropped} of {bad.size} rows with missing or non-finite values ({detail})",
        UserWarning,
        stacklevel=4,
    )
    return ~bad, n_dropped


def check_full_rank(exog: np.ndarray, names: list[str], label: str = "exog") -> None:
    """Raise a ``ValueError`` naming the columns of ``exog`` that are linear combinations of
    earlier ones (Gram-Schmidt on the ``(p, p)`` cross-product, relative tolerance 1e-10).

    Example:
        >>> import numpy as np
        >>> X = np.column_stack([np.ones(4), np.arange(4.0), 2 * np.arange(4.0)])
        >>> check_full_rank(X, ["const", "x", "two_x"])
        Traceback (most recent call last):
        ...
        ValueError: exog is rank deficient: column(s) ['two_x'] are linear combinations of ...
    """
    p = exog.shape[1]
    if p == 0:
        return
    norms = np.sqrt(np.einsum("ij,ij->j", exog, exog))
    zero = [names[j] for j in range(p) if norms[j] == 0]
    if zero:
        raise ValueError(f"{label}: column(s) {zero} are identically zero")
    R = np.linalg.qr(exog / norms, mode="r")  # R only: forming Q would cost an (n, p) copy
    diag = np.abs(np.diag(R))
    dependent = [names[j] for j in range(p) if diag[j] < 1e-10]
    if dependent:
        raise ValueError(
            f"{label} is rank deficient: column(s) {dependent} are linear combinations of "
            "the columns before them; drop them or reparameterize"
        )


def check_fit_arguments(model, reml, start_params, free) -> None:
    """``TypeError``/``ValueError`` naming the bad ``fit`` argument (before any work)."""
    if not isinstance(reml, bool | np.bool_):
        raise TypeError(f"reml must be True or False, got {reml!r}")
    for name, value in (("start_params", start_params), ("free", free)):
        if value is None:
            continue
        if hasattr(value, "cov_re"):  # MixedLMParams
            arrays = [value.cov_re, value.vcomp] + (
                [value.fe_params] if getattr(value, "fe_params", None) is not None else []
            )
        else:
            try:
                arrays = [np.asarray(value, dtype=float)]
            except (TypeError, ValueError) as err:
                raise TypeError(f"{name} must be numeric, got {value!r}") from err
        for a in arrays:
            a = np.asarray(a, dtype=float)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{name} contains NaN or infinite values: {a.ravel().tolist()}")
            if name == "free" and not np.all(np.isin(a, (0.0, 1.0))):
                raise ValueError(f"free must hold only 0 (held) and 1 (free), got {a.tolist()}")
