"""mixedjax: linear mixed-effects models in JAX (statsmodels' MixedLM API, lme4's numbers).

Importing mixedjax turns on JAX's float64 mode (``jax_enable_x64``) and JAX's persistent
compilation cache in the user's cache directory; see ``_jaxconfig``.
"""

from mixedjax import (
    _jaxconfig,  # noqa: F401  (float64 on import)
    datasets,
    functional,
    penalties,
)
from mixedjax.batch_results import BatchResults, fit_models
from mixedjax.bootstrap import parametric_bootstrap
from mixedjax.chunked import from_chunks
from mixedjax.compare import anova, lrt
from mixedjax.compilation import disable_compilation_cache, enable_compilation_cache
from mixedjax.covariance import MixedLMParams
from mixedjax.crossed_model import CrossedMixedLM
from mixedjax.crossed_results import CrossedMixedLMResults
from mixedjax.model import ConvergenceWarning, MixedLM
from mixedjax.results import MixedLMResults, OptSummary
from mixedjax.structure import mixedlm

__all__ = [
    "BatchResults",
    "ConvergenceWarning",
    "CrossedMixedLM",
    "CrossedMixedLMResults",
    "MixedLM",
    "MixedLMParams",
    "MixedLMResults",
    "OptSummary",
    "anova",
    "lrt",
    "parametric_bootstrap",
    "penalties",
    "datasets",
    "mixedlm",
    "disable_compilation_cache",
    "enable_compilation_cache",
    "fit_models",
    "from_chunks",
    "functional",
]
__version__ = "0.1.0"
