"""mixedjax: linear mixed-effects models in JAX (statsmodels' MixedLM API, lme4's numbers).

Importing mixedjax turns on JAX's float64 mode (``jax_enable_x64``) and JAX's persistent
compilation cache in the user's cache directory; see ``_jaxconfig``. Everything else is
loaded on first use (PEP 562 module ``__getattr__``): ``import mixedjax`` costs little more
than ``import jax``, and pandas, formulaic and the model code load with the first model.
"""

import importlib

from mixedjax import _jaxconfig  # noqa: F401  (float64 and the compilation cache on import)

#: Public name -> (module, attribute); ``None`` as attribute: the module itself.
_EXPORTS = {
    "BatchResults": ("mixedjax.batch.results", "BatchResults"),
    "ConvergenceWarning": ("mixedjax.fit.options", "ConvergenceWarning"),
    "MixedLM": ("mixedjax.model.mixedlm", "MixedLM"),
    "MixedLMParams": ("mixedjax.core.covariance", "MixedLMParams"),
    "MixedLMResults": ("mixedjax.results.mixedlm", "MixedLMResults"),
    "OptSummary": ("mixedjax.results.mixedlm", "OptSummary"),
    "anova": ("mixedjax.inference.compare", "anova"),
    "lrt": ("mixedjax.inference.compare", "lrt"),
    "parametric_bootstrap": ("mixedjax.inference.bootstrap", "parametric_bootstrap"),
    "penalties": ("mixedjax.fit.penalties", None),
    "datasets": ("mixedjax.datasets", None),
    "mixedlm": ("mixedjax.model.mixedlm", "mixedlm"),
    "disable_compilation_cache": ("mixedjax.core.compilation", "disable_compilation_cache"),
    "enable_compilation_cache": ("mixedjax.core.compilation", "enable_compilation_cache"),
    "fit_models": ("mixedjax.batch.results", "fit_models"),
    "from_chunks": ("mixedjax.model.chunked", "from_chunks"),
    "functional": ("mixedjax.functional", None),
    "families": ("mixedjax.families", None),
    "glmer": ("mixedjax.model.glmm", "glmer"),
    "MixedGLM": ("mixedjax.model.glmm", "MixedGLM"),
}

__all__ = list(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'mixedjax' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
