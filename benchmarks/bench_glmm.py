"""GLMMs: mixedjax's glmer against lme4's glmer and mixedlm's (the lme4 port on PyPI).

Usage (from the repository root)::

    python benchmarks/bench_glmm.py            # everything (lme4 at 100,000 groups: minutes)
    python benchmarks/bench_glmm.py --quick    # 10,000 groups, VerbAgg and fit_many only

Each library fits in fresh processes of its own (``_glmm_fit.py`` for the Python
libraries, ``lme4_glmm.R`` for lme4), on the same CSV files under ``benchmarks/_out/glmm/``:

1. *Logistic random intercept and slope*, ``y ~ x + (x | g)``, 10 binary responses per
   group, at 10,000 and 100,000 groups.
2. *Crossed binomial*: lme4's VerbAgg, ``r2 ~ Anger + Gender + btype + situ + (1 | id) +
   (1 | item)`` (7,584 rows, 316 x 24 levels).
3. *Many responses*: 1,000 binary responses on one design (100 groups x 10 rows,
   ``y ~ x + (1 | g)``): mixedjax's ``fit_many`` (one compiled call) against a loop of
   single fits (lme4, mixedlm: 20 of them, scaled to 1,000).

*cold* = library load + first fit (mixedjax with an empty compilation cache), *warm* = best
of the following fits. Laplace (``nAGQ = 1``) everywhere; lme4 with its default control.
It writes the ``bench_glmm`` section of ``benchmarks/RESULTS.md``. A benchmark, not a test.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    BENCH_DIR,
    OUT_DIR,
    ROOT,
    environment_lines,
    fmt_ratio,
    fmt_s,
    log,
    markdown_table,
    publish,
    r_versions,
)

DATA_DIR = OUT_DIR / "glmm"
WORKER = BENCH_DIR / "_glmm_fit.py"
R_SCRIPT = BENCH_DIR / "lme4_glmm.R"
VERBAGG = ROOT / "tests" / "reference" / "data" / "verbagg.csv"
#: Wall-clock limit of one library's process (lme4 at 100,000 groups may need minutes).
PROCESS_LIMIT = 1800


def simulate_slope(n_groups: int, rows: int = 10, seed: int = 20261201) -> pd.DataFrame:
    """Binary ``y`` with ``logit P(y = 1) = -0.5 + x + b0 + b1 x``, ``(b0, b1)`` correlated."""
    rng = np.random.default_rng(seed)
    n = n_groups * rows
    g = np.repeat(np.arange(n_groups), rows)
    x = rng.standard_normal(n)
    b = rng.standard_normal((n_groups, 2)) @ np.linalg.cholesky([[1.0, 0.3], [0.3, 0.5]]).T
    eta = -0.5 + x + b[g, 0] + b[g, 1] * x
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": np.round(x, 6), "g": g})


def simulate_many(k: int = 1000, n_groups: int = 100, rows: int = 10, seed: int = 20261202):
    """``k`` binary responses ``y0 … y{k-1}`` on one design ``(x, g)``."""
    rng = np.random.default_rng(seed)
    n = n_groups * rows
    g = np.repeat(np.arange(n_groups), rows)
    x = np.round(rng.standard_normal(n), 6)
    b = rng.standard_normal((k, n_groups))
    eta = 0.2 + 0.5 * x[None, :] + b[:, g]
    Y = (rng.random((k, n)) < 1 / (1 + np.exp(-eta))).astype(int)
    cols = {f"y{j}": Y[j] for j in range(k)}
    return pd.DataFrame({"x": x, "g": g, **cols})


def run_python(lib: str, case: str, csv: Path, reps: int) -> dict | None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        env = {**os.environ, "MIXEDJAX_CACHE_DIR": str(Path(tmp) / "cache")}
        t0 = time.perf_counter()
        try:
            res = subprocess.run(
                [sys.executable, str(WORKER), lib, case, str(csv), str(reps), str(out)],
                capture_output=True, text=True, timeout=PROCESS_LIMIT, env=env,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            log(f"  {lib} {case}: over {PROCESS_LIMIT} s")
            return {"timeout": True}
        if res.returncode != 0 or not out.exists():
            log(f"  {lib} {case} failed: {res.stderr.strip().splitlines()[-1:]}")
            return None
        result = json.loads(out.read_text())
        result["process"] = time.perf_counter() - t0
        log(f"  {lib} {case}: cold {fmt_s(result['cold'])}, warm {fmt_s(result['warm'])}")
        return result


def run_lme4(case: str, csv: Path, reps: int) -> dict | None:
    try:
        res = subprocess.run(
            ["Rscript", str(R_SCRIPT), case, str(csv), str(reps)],
            capture_output=True, text=True, timeout=PROCESS_LIMIT,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        log(f"  lme4 {case}: over {PROCESS_LIMIT} s")
        return {"timeout": True}
    if res.returncode != 0:
        log(f"  lme4 {case} failed: {res.stderr.strip().splitlines()[-1:]}")
        return None
    out = {}
    for line in res.stdout.splitlines():
        key, _, value = line.partition(" ")
        if key in ("COLD", "WARM", "LOGLIK"):
            out[key.lower() if key != "LOGLIK" else "loglik"] = float(value)
    if case == "many":  # the loop covered `reps` of the 1,000 responses
        out["warm"] *= 1000 / reps
        out["cold"] = None
    log(f"  lme4 {case}: warm {fmt_s(out.get('warm'))}")
    return out


def _cell(r: dict | None, key: str) -> str:
    if r is None:
        return "failed"
    if r.get("timeout"):
        return f"> {PROCESS_LIMIT} s"
    return fmt_s(r.get(key))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 groups only for the slopes")
    parser.add_argument("--no-r", action="store_true", help="skip lme4")
    parser.add_argument("--no-peers", action="store_true", help="skip mixedlm")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    t_all = time.perf_counter()
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    sizes = (10_000,) if args.quick else (10_000, 100_000)
    cases = []
    for n in sizes:
        path = DATA_DIR / f"slope_{n}.csv"
        simulate_slope(n).to_csv(path, index=False)
        cases.append((f"slope {n:,} groups", "slope", path, 2 if n <= 10_000 else 1))
    shutil.copyfile(VERBAGG, DATA_DIR / "verbagg.csv")
    cases.append(("VerbAgg (crossed)", "verbagg", DATA_DIR / "verbagg.csv", 2))
    simulate_many().to_csv(DATA_DIR / "many.csv", index=False)
    cases.append(("1,000 responses, fit_many", "many", DATA_DIR / "many.csv", 20))
    has_r = not args.no_r and shutil.which("Rscript") is not None
    libs = ["mixedjax"] + ([] if args.no_peers else ["mixedlm"])
    results = {}
    for label, case, path, reps in cases:
        log(f"== {label}")
        for lib in libs:
            results[(label, lib)] = run_python(lib, case, path, reps)
        if has_r:
            results[(label, "lme4")] = run_lme4(case, path, reps)
    others = libs[1:] + (["lme4"] if has_r else [])
    header = ["model", "mixedjax cold", "mixedjax warm"]
    for o in others:
        header += [f"{o} warm", f"mixedjax vs {o} (warm)"]
    rows = []
    for label, *_ in cases:
        mj = results.get((label, "mixedjax"))
        row = [label, _cell(mj, "cold"), _cell(mj, "warm")]
        for o in others:
            r = results.get((label, o))
            ratio = fmt_ratio(r.get("warm"), mj.get("warm")) if r and mj and "warm" in r else "–"
            row += [_cell(r, "warm"), ratio]
        rows.append(row)
    ll_rows = []
    for label, *_ in cases:
        row = [label]
        for lib in ["mixedjax"] + others:
            r = results.get((label, lib))
            row.append(f"{r['loglik']:.4f}" if r and "loglik" in r else "–")
        ll_rows.append(row)
    versions = r_versions() if has_r else None
    lines = [
        "## bench_glmm: GLMMs against lme4's and mixedlm's glmer",
        "",
        *environment_lines(versions),
        "",
        "Laplace fits (nAGQ = 1), each library in fresh processes. *cold*: library load + "
        "first fit (mixedjax with an empty compilation cache); *warm*: best of the later "
        "fits. For 1,000 responses the loops of single fits (lme4, mixedlm) ran 20 "
        "responses, scaled to 1,000; mixedjax ran `fit_many` on all 1,000.",
        "",
        *markdown_table(header, rows),
        "",
        "Log-likelihoods (for the 1,000 responses: the first response's):",
        "",
        *markdown_table(["model", "mixedjax"] + others, ll_rows),
        "",
        f"Whole benchmark run: {time.perf_counter() - t_all:.0f} s.",
    ]
    publish("bench_glmm", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
