"""jaxlib 0.10.0-0.10.2's CPU LAPACK deadlock, in a dozen lines (docs/jaxlib_lapack_deadlock.md).

A jitted loop runs batched triangular solves whose inputs come from two independent,
parallelised elementwise kernels, so XLA starts both solves on its intra-op thread pool at
the same time. Each batched LAPACK kernel splits its batch into tasks on that same pool and
blocks until they finish; with every pool thread blocked so, nothing runs them.

``python lapack_deadlock.py`` hangs on an affected jaxlib (at 0% CPU) and prints
``finished`` on others. ``--watchdog SECONDS`` waits through :func:`mixedjax.core.watchdog.
wait_ready` instead and prints ``stalled`` when it catches the deadlock.
"""

import os
import sys

import jax
import jax.numpy as jnp

jax.config.update("jax_enable_x64", True)


@jax.jit
def batched_solves(A, b):
    r = A.shape[-1]

    def body(i, c):
        L = jnp.linalg.cholesky(A + (i * 1e-3) * jnp.eye(r))
        x1 = jax.scipy.linalg.solve_triangular(L, jnp.sin(b * c), lower=True)
        x2 = jax.scipy.linalg.solve_triangular(L, jnp.cos(b + c), lower=True, trans="T")
        return c + 1e-6 * (jnp.sum(x1) + jnp.sum(x2))

    return jax.lax.fori_loop(0, 2000, body, 0.1)


def main() -> None:
    key = jax.random.PRNGKey(0)
    G = jax.random.normal(key, (128, 14, 14))
    A = G @ jnp.swapaxes(G, 1, 2) + 14 * jnp.eye(14)
    b = jax.random.normal(key, (128, 14, 64))
    out = batched_solves(A, b)
    if "--watchdog" in sys.argv:
        from mixedjax.core.watchdog import ComputationStalled, wait_ready

        limit = float(sys.argv[sys.argv.index("--watchdog") + 1])
        try:
            wait_ready(out, "deadlock reproduction", limit=limit)
        except ComputationStalled as err:
            print(err, flush=True)
            print("stalled", flush=True)
            os._exit(0)  # the pool threads stay blocked: leave without joining them
    out.block_until_ready()
    print("finished", flush=True)


if __name__ == "__main__":
    main()
