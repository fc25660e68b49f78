"""mixedjax: linear mixed-effects models in JAX (statsmodels' MixedLM API, lme4's numbers).

Importing mixedjax turns on JAX's float64 mode (``jax_enable_x64``) and JAX's persistent
compilation cache in the user's cache directory; see ``_jaxconfig``.
"""

from mixedjax import (
    _jaxconfig,  # noqa: F401  (float64 on import)
    datasets,
    functional,
)
from mixedjax.batch.results import BatchResults, fit_models
from mixedjax.core.compilation import disable_compilation_cache, enable_compilation_cache
from mixedjax.core.covariance import MixedLMParams
from mixedjax.fit.options import ConvergenceWarning
from mixedjax.inference.bootstrap import parametric_bootstrap
from mixedjax.inference.compare import anova, lrt
from mixedjax.model import penalties
from mixedjax.model.chunked import from_chunks
from mixedjax.model.crossed import CrossedMixedLM
from mixedjax.model.mixedlm import MixedLM, mixedlm
from mixedjax.results.crossed import CrossedMixedLMResults
from mixedjax.results.mixedlm import MixedLMResults, OptSummary

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
