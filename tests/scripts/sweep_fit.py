"""Fit one model of the random-effects sweep (``tests/test_re_sweep.py``) and print JSON.

Usage: ``python sweep_fit.py N_SLOPES VC_SIZES SEED`` with ``N_SLOPES`` the size of the
correlated block (intercept plus slopes, 0 for none) and ``VC_SIZES`` comma-separated
numbers of levels of each variance component within a group (``-`` for none). Groups are
unbalanced (6 to 24 rows). Run in a subprocess so a hang shows up as a timeout.
"""

import json
import sys
import time
import warnings

import numpy as np
import pandas as pd


def make_data(n_slopes: int, vc_sizes: list[int], seed: int, n_groups: int = 30):
    rng = np.random.default_rng(seed)
    sizes = rng.integers(6, 25, size=n_groups)
    n = int(sizes.sum())
    g = np.repeat(np.arange(n_groups), sizes)
    df = pd.DataFrame({"g": g})
    for j in range(1, 4):
        df[f"x{j}"] = rng.normal(size=n)
    y = 1.0 + df["x1"] - 0.5 * df["x2"] + rng.normal(size=n)
    if n_slopes:
        cols = [np.ones(n)] + [df[f"x{j}"].to_numpy() for j in range(1, n_slopes)]
        b = rng.normal(size=(n_groups, n_slopes)) * 0.8
        y += sum(cols[k] * b[g, k] for k in range(n_slopes))
    for c, levels in enumerate(vc_sizes):
        v = rng.integers(0, levels, size=n)
        df[f"v{c}"] = v
        y += rng.normal(size=(n_groups, levels))[g, v] * 1.2
    df["y"] = y
    return df


def main() -> None:
    n_slopes = int(sys.argv[1])
    vc_sizes = [] if sys.argv[2] == "-" else [int(s) for s in sys.argv[2].split(",")]
    seed = int(sys.argv[3])
    df = make_data(n_slopes, vc_sizes, seed)
    start = time.perf_counter()
    from mixedjax import MixedLM

    re_formula = "1" if n_slopes == 1 else " + ".join(["1"] + [f"x{j}" for j in range(1, n_slopes)])
    kwargs = {"re_formula": re_formula if n_slopes else "0"}
    if vc_sizes:
        kwargs["vc_formula"] = {f"c{c}": f"0 + C(v{c})" for c in range(len(vc_sizes))}
    model = MixedLM.from_formula("y ~ x1 + x2", df, groups="g", **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = model.fit()
    print(
        json.dumps(
            {
                "n_random": int(model.structure.n_random),
                "converged": bool(result.converged),
                "llf": float(result.llf),
                "scaled_gradient": float(result.optim.scaled_gradient),
                "warnings": [str(w.message) for w in caught],
                "seconds": time.perf_counter() - start,
            }
        )
    )


if __name__ == "__main__":
    main()
