"""Prediction frames: the predictions and, on request, normal intervals around them."""

from collections.abc import Callable

import numpy as np
import pandas as pd

from mixedjax.core.distributions import norm_ppf


def interval_frame(
    pred: np.ndarray,
    interval: str | None,
    alpha: float,
    confidence_variance: Callable[[], np.ndarray],
    residual_variance,
) -> pd.DataFrame:
    """``predicted`` ``(m,)`` and, for ``interval="confidence"``/``"prediction"``, ``se``,
    ``lower``, ``upper``: ``pred ± z_{1-α/2} se`` with ``se² = var(η̂ - η)`` (computed only
    when asked, by ``confidence_variance()``), plus ``residual_variance`` (``σ²/w``, scalar
    or ``(m,)``) for a new observation.

    Example:
        >>> import numpy as np
        >>> variance = lambda: np.array([3.0])
        >>> frame = interval_frame(np.array([1.0]), "prediction", 0.05, variance, 1.0)
        >>> frame.round(3).values.tolist()
        [[1.0, 2.0, -2.92, 4.92]]
    """
    out = pd.DataFrame({"predicted": pred})
    if interval is None:
        return out
    if interval not in ("confidence", "prediction"):
        raise ValueError(f"interval must be None, 'confidence' or 'prediction', got {interval!r}")
    var = confidence_variance()
    if interval == "prediction":
        var = var + residual_variance
    zq = float(norm_ppf(1 - alpha / 2))
    out["se"] = np.sqrt(var)
    out["lower"] = pred - zq * out["se"]
    out["upper"] = pred + zq * out["se"]
    return out
