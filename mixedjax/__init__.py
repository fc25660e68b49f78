"""mixedjax: linear mixed-effects models in JAX (statsmodels' MixedLM API, lme4's numbers).

Importing mixedjax turns on JAX's float64 mode (``jax_enable_x64``); see ``_jaxconfig``.
"""

from mixedjax import (
    _jaxconfig,  # noqa: F401  (float64 on import)
    datasets,
    functional,
)
from mixedjax.batch_results import BatchResults, fit_models
from mixedjax.chunked import from_chunks
from mixedjax.compilation import enable_compilation_cache
from mixedjax.covariance import MixedLMParams
from mixedjax.model import ConvergenceWarning, MixedLM
from mixedjax.results import MixedLMResults, OptSummary

__all__ = [
    "BatchResults",
    "ConvergenceWarning",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "OptSummary",
    "datasets",
    "enable_compilation_cache",
    "fit_models",
    "from_chunks",
    "functional",
]
__version__ = "0.1.0"
