"""No compiled program of mixedjax calls LAPACK on a batch of matrices.

jaxlib 0.10.0-0.10.2 deadlock on the CPU when two batched LAPACK calls run at once
(``docs/jaxlib_lapack_deadlock.md``); a fit with 14 random effects per group hung for ever.
mixedjax's kernels do their small linear algebra in plain XLA (:mod:`mixedjax.core.smallmat`), so
this holds for every jaxlib. The test lowers the programs behind the everyday paths (single
fits with 2, 5 and 14 random effects per group, estimates, the saddle check's Hessian, the
information matrix behind the standard errors, ``fit_many``, the bootstrap and the
functional API under ``vmap``) and reads their StableHLO: a LAPACK custom call must have no
batch dimensions (``num_batch_dims = "0"``). Lowering traces without compiling, so this is
cheap; the captured IR of ``fit_many`` and the bootstrap comes from JAX's IR dump.
"""

import re
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import mixedjax
from mixedjax.design.sizeclass import pad_theta
from mixedjax.engines import information as inference
from mixedjax.fit import estimation, safeguards
from mixedjax.fit.program import fit_program, padded_problem

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
from sweep_fit import make_data  # noqa: E402

LAPACK_CALL = re.compile(r"custom_call @(lapack_\w+)\(.*?num_batch_dims = \"(\d+)\"")


def batched_lapack_calls(ir_text: str) -> list[str]:
    """Names of LAPACK custom calls with a batch dimension in StableHLO text."""
    return [name for name, dims in LAPACK_CALL.findall(ir_text) if dims != "0"]


def test_detector_sees_batched_calls():
    text = jax.jit(jnp.linalg.cholesky).lower(jnp.ones((3, 4, 4))).as_text()
    assert batched_lapack_calls(text) == ["lapack_dpotrf_ffi"]
    assert batched_lapack_calls(jax.jit(jnp.linalg.cholesky).lower(jnp.eye(4)).as_text()) == []


def _model(n_slopes, vc_sizes):
    df = make_data(n_slopes, vc_sizes, seed=3, n_groups=12)
    re = "1" if n_slopes == 1 else " + ".join(["1"] + [f"x{j}" for j in range(1, n_slopes)])
    vc = {f"c{c}": f"0 + C(v{c})" for c in range(len(vc_sizes))} or None
    return mixedjax.MixedLM.from_formula(
        "y ~ x1 + x2", df, groups="g", re_formula=re, vc_formula=vc
    )


@pytest.mark.parametrize(
    "n_slopes, vc_sizes", [(2, []), pytest.param(2, [4, 8], marks=pytest.mark.slow)]
)
def test_single_fit_programs(n_slopes, vc_sizes):
    m = _model(n_slopes, vc_sizes)
    theta = jnp.asarray(estimation.default_start(m.data, m.structure))
    free = jnp.ones(theta.shape, bool)
    kw = dict(structure=m.structure, reml=True)
    texts = {
        "fit_theta": estimation.fit_theta.lower(theta, free, m.data, 1e-9, **kw).as_text(),
        "estimates_at": estimation.estimates_at.lower(theta, m.data, **kw).as_text(),
        "deviance_hessian": safeguards.deviance_hessian.lower(theta, m.data, **kw).as_text(),
    }
    phi = jnp.concatenate([theta, jnp.ones(1)])
    texts["variance_information"] = (
        jax.jit(inference.variance_information, static_argnames=("structure", "reml"))
        .lower(phi, m.data, **kw)
        .as_text()
    )
    size, padded, fmap = padded_problem(m.data, m.structure, m.k_fe, None)
    texts["fit_program"] = fit_program.lower(
        pad_theta(np.asarray(theta), size), pad_theta(np.ones(theta.size, bool), size),
        padded, fmap, 1.0, 1e-9,
    ).as_text()  # fmt: skip
    for name, text in texts.items():
        assert batched_lapack_calls(text) == [], name


@pytest.mark.slow
def test_vmapped_fits_and_bootstrap(tmp_path):
    """fit_many, the bootstrap and vmap over the functional API (IR dumped as lowered)."""
    m = _model(2, [])
    result = m.fit()
    jax.config.update("jax_dump_ir_to", str(tmp_path))
    try:
        rng = np.random.default_rng(0)
        Y = m.endog[:, None] + rng.normal(size=(m.nobs, 3))
        m.fit_many(Y)
        result.parametric_bootstrap(4, seed=1)
        from mixedjax import functional as F

        X, Z, codes = jnp.asarray(m.exog), jnp.asarray(m.exog_re), jnp.asarray(m.group_codes)

        def slope(y):
            return F.fit(F.make_data(y, X, Z, codes, m.n_groups)).beta[1]

        jax.jit(jax.vmap(jax.value_and_grad(slope))).lower(jnp.asarray(Y.T))
    finally:
        jax.config.update("jax_dump_ir_to", "")
    dumps = list(tmp_path.rglob("*.mlir"))
    assert dumps, "no IR was dumped"
    for path in dumps:
        assert batched_lapack_calls(path.read_text()) == [], path.name
