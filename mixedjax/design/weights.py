"""Prior weights and offsets: the working rows behind every cross-product.

With prior weights ``w`` and an offset ``o`` the model is (lme4's semantics)

.. math::
    y = Xβ + Zb + o + ε, \\qquad ε_j \\sim N(0, σ^2 / w_j).

Scaling row ``j`` by ``√w_j`` after subtracting the offset,

.. math::
    y^* = W^{1/2}(y - o), \\quad X^* = W^{1/2} X, \\quad Z^* = W^{1/2} Z,

gives an unweighted model ``y* = X*β + Z*b + ε*`` with ``ε* ~ N(0, σ² I)``. Every engine
works on these working rows unchanged; only the log-density changes by the Jacobian of
``y ↦ y*``,

.. math::
    \\log L(y) = \\log L^*(y^*) + \\tfrac12 \\sum_j \\log w_j,

which is what lme4 reports (its ``ldW`` term). The same holds for the REML criterion.
"""

from typing import NamedTuple

import numpy as np


class RowWeights(NamedTuple):
    """Prior weights and offset of the rows.

    Attributes:
        weights: ``(n,)`` positive prior weights, or the scalar 1 when none were given.
        offset: ``(n,)`` offset, or the scalar 0 when none was given.
        weighted: whether weights were given.
        has_offset: whether an offset was given.
    """

    weights: np.ndarray
    offset: np.ndarray
    weighted: bool
    has_offset: bool

    @property
    def weights_or_none(self) -> np.ndarray | None:
        return self.weights if self.weighted else None

    @property
    def offset_or_none(self) -> np.ndarray | None:
        return self.offset if self.has_offset else None

    @property
    def loglik_jacobian(self) -> float:
        """``½ Σ log w_j``, added to the working log-likelihood (module docstring)."""
        return 0.5 * float(np.sum(np.log(self.weights))) if self.weighted else 0.0

    def subset(self, keep: np.ndarray) -> "RowWeights":
        w = self.weights[keep] if self.weighted else self.weights
        o = self.offset[keep] if self.has_offset else self.offset
        return RowWeights(w, o, self.weighted, self.has_offset)

    def _column(self, values: np.ndarray, ndim: int) -> np.ndarray:
        return values if values.ndim == 0 or ndim == 1 else values[:, None]

    def working_response(self, endog: np.ndarray) -> np.ndarray:
        """``W^{1/2}(y - o)`` for ``(n,)`` or ``(n, k)`` responses."""
        y = np.asarray(endog, dtype=float)
        if self.has_offset:
            y = y - self._column(self.offset, y.ndim)
        if self.weighted:
            y = np.sqrt(self._column(self.weights, y.ndim)) * y
        return y

    def working_design(self, design: np.ndarray) -> np.ndarray:
        """``W^{1/2} A`` for an ``(n, k)`` design ``A``."""
        design = np.asarray(design, dtype=float)
        return np.sqrt(self.weights)[:, None] * design if self.weighted else design

    def response(self, working: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`working_response` for ``(..., n)`` arrays: ``o + W^{-1/2} y*``."""
        y = np.asarray(working)
        if self.weighted:
            y = y / np.sqrt(self.weights)
        return y + self.offset if self.has_offset else y


class PriorWeights:
    """Mixed into the models of both engines: their ``weights`` and ``offset``, read from
    the :class:`RowWeights` in ``self.rows``."""

    @property
    def weights(self) -> np.ndarray | None:
        """``(n,)`` prior weights, or ``None`` if the model has none."""
        return self.rows.weights_or_none

    @property
    def offset(self) -> np.ndarray | None:
        """``(n,)`` offset, or ``None`` if the model has none."""
        return self.rows.offset_or_none


#: The rows of a model without weights or offset.
NO_WEIGHTS = RowWeights(np.asarray(1.0), np.asarray(0.0), False, False)


def row_weights(weights, offset, n: int) -> RowWeights:
    """Check ``weights`` and ``offset`` (arrays or ``None``) for ``n`` rows.

    NaN entries are allowed here: the model's missing-value policy drops or rejects them
    together with the other columns, naming ``weights``/``offset``.

    Raises:
        TypeError: non-numeric values.
        ValueError: the wrong length or shape, negative or zero weights, infinite values.

    Example:
        >>> bool(row_weights([1.0, 2.0], None, 2).loglik_jacobian == 0.5 * np.log(2.0))
        True
        >>> row_weights([1.0, -1.0], None, 2)
        Traceback (most recent call last):
        ...
        ValueError: weights must be positive: 1 row(s) are negative or zero (first: row 1, -1.0)
    """
    w = _vector(weights, "weights", n, default=1.0)
    o = _vector(offset, "offset", n, default=0.0)
    finite = np.isfinite(w)
    bad = finite & (w <= 0)
    if np.any(bad):
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"weights must be positive: {int(bad.sum())} row(s) are negative or zero "
            f"(first: row {first}, {w[first]})"
        )
    if np.any(np.isinf(w)) or np.any(np.isinf(o)):
        name = "weights" if np.any(np.isinf(w)) else "offset"
        raise ValueError(f"{name} has infinite values")
    return RowWeights(w, o, weights is not None, offset is not None)


def _vector(values, name: str, n: int, default: float) -> np.ndarray:
    if values is None:
        return np.asarray(default)
    array = np.asarray(getattr(values, "to_numpy", lambda: values)())
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {array.shape}")
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be numeric, got dtype {array.dtype}")
    if array.shape[0] != n:
        raise ValueError(f"{name} has {array.shape[0]} entries but endog has {n} rows")
    return array.astype(float)
