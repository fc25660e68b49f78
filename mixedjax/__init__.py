"""mixedjax: linear mixed-effects models in JAX (statsmodels' MixedLM API, lme4's numbers).

Importing mixedjax turns on JAX's float64 mode (``jax_enable_x64``); see ``_jaxconfig``.
"""

from mixedjax import (
    _jaxconfig,  # noqa: F401  (float64 on import)
    datasets,
)
from mixedjax.bootstrap import parametric_bootstrap
from mixedjax.compare import anova, lrt
from mixedjax.covariance import MixedLMParams
from mixedjax.model import ConvergenceWarning, MixedLM
from mixedjax.results import MixedLMResults, OptSummary

__all__ = [
    "ConvergenceWarning",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "OptSummary",
    "anova",
    "lrt",
    "parametric_bootstrap",
    "datasets",
]
__version__ = "0.1.0"
