"""Configure JAX for mixedjax on import.

mixedjax turns on ``jax_enable_x64`` so every array it creates, and every result it
returns, is float64 unless a function is explicitly asked for float32. It changes nothing
else in JAX's configuration. Set the environment variable ``MIXEDJAX_NO_X64=1`` before
importing to leave JAX's setting alone (results are then float32 and less accurate).
"""

import os

import jax

if os.environ.get("MIXEDJAX_NO_X64", "") not in ("1", "true", "True"):
    jax.config.update("jax_enable_x64", True)
