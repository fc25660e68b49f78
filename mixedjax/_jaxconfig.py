"""Configure JAX for mixedjax on import.

mixedjax turns on ``jax_enable_x64`` so every array it creates, and every result it
returns, is float64 unless a function is explicitly asked for float32. It changes nothing
else in JAX's configuration. Set the environment variable ``MIXEDJAX_NO_X64=1`` before
importing to leave JAX's setting alone (results are then float32 and less accurate).

It also turns on JAX's persistent compilation cache in the user's cache directory
(:func:`mixedjax.core.compilation.configure_default_cache`: ``~/.cache/mixedjax/jax`` on Linux,
bounded to 2 GiB), so a new Python process loads mixedjax's compiled fits from disk instead
of compiling them again, unless ``MIXEDJAX_NO_CACHE=1`` is set or the process configured a
JAX cache directory of its own.
"""

import os

import jax

if os.environ.get("MIXEDJAX_NO_X64", "") not in ("1", "true", "True"):
    jax.config.update("jax_enable_x64", True)

from mixedjax.core.compilation import configure_default_cache  # noqa: E402

configure_default_cache()
