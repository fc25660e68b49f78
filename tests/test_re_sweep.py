"""Random effects per group from 1 to 16: every fit returns, converged, in a subprocess.

Built from a correlated block (intercept and slopes), variance components and both, on
unbalanced groups (6 to 24 rows), so every size of the per-group factorisation runs: the
unrolled one (r <= 3) and the loop one. The 14-effect case is statsmodels' ``test_vcomp_2``
shape, which used to deadlock (``docs/jaxlib_lapack_deadlock.md``). Each fit runs in its own
process with a timeout, so a hang fails the test instead of stalling the suite. Three sizes
run by default; the whole sweep is marked slow (CI runs it).
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import checkout_env

SCRIPT = Path(__file__).parent / "scripts" / "sweep_fit.py"
TIMEOUT_S = 600  # a cold compile of the largest model takes ~40 s on a loaded 2-core machine

# (intercept + slopes, variance-component levels per group): r = first + sum(second)
CASES = {
    1: (1, []), 2: (2, []), 3: (3, []), 4: (4, []), 5: (2, [3]), 6: (1, [5]), 7: (0, [3, 4]),
    8: (4, [4]), 9: (1, [8]), 10: (0, [2, 8]), 11: (3, [8]), 12: (2, [4, 6]), 13: (1, [4, 8]),
    14: (2, [4, 8]), 15: (3, [4, 8]), 16: (4, [4, 8]),
}  # fmt: skip
DEFAULT: set[int] = set()  # by default r = 14 only: the statsmodels model below


def _param(r):
    marks = () if r in DEFAULT else (pytest.mark.slow,)
    return pytest.param(r, id=f"r{r}", marks=marks)


@pytest.mark.parametrize("r", [_param(r) for r in CASES])
def test_fit_returns_converged(r):
    n_slopes, vc_sizes = CASES[r]
    args = [str(n_slopes), ",".join(map(str, vc_sizes)) or "-", str(r)]
    try:
        out = subprocess.run(
            [sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
            timeout=TIMEOUT_S, env=checkout_env(),
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"fit with {r} random effects per group did not return in {TIMEOUT_S} s")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["n_random"] == r
    assert report["converged"], report
    assert report["scaled_gradient"] < 1e-9, report
    assert not report["warnings"], report


@pytest.mark.slow  # heavy cold (>20 s on 2 cores): the default suite stays under 5 minutes
def test_statsmodels_vcomp_2_model_returns_statsmodels_numbers():
    """The reported hang: statsmodels' test_vcomp_2 model, with statsmodels' (and R's)
    numbers at statsmodels' tolerances (fe_params 1e-4, covariances and SEs 1e-3)."""
    script = SCRIPT.parent / "vcomp_2.py"
    try:
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=checkout_env(),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the test_vcomp_2 model did not return in {TIMEOUT_S} s")
    assert out.returncode == 0, out.stderr[-3000:]
    fit = json.loads(out.stdout.strip().splitlines()[-1])
    assert fit["n_random"] == 14 and fit["converged"]
    np.testing.assert_allclose(fit["fe_params"], [0.16527, 0.99911, 0.96217], rtol=1e-4)
    np.testing.assert_allclose(fit["cov_re"], [[1.244, 0.146], [0.146, 1.371]], rtol=1e-3)
    np.testing.assert_allclose(fit["vcomp"], [4.024, 3.997], rtol=1e-3)
    np.testing.assert_allclose(fit["bse_fe"], [0.12610, 0.03938, 0.03848], rtol=1e-3)
