"""Crossed random effects at scale: mixedjax vs lme4 (and statsmodels on a subsample).

A synthetic design shaped like lme4's ``InstEval``: 73,000 rows; three crossed intercept
factors with about 3,000, 1,100 and 14 levels; one binary fixed effect. Model
``y ~ x + (1 | f1) + (1 | f2) + (1 | f3)`` fitted by REML.

* mixedjax: one cold fit (compilation), then warm fits (median of ``--repeats``);
  peak resident memory of this process.
* lme4: ``lmer`` via ``Rscript`` on the same CSV in the same run (timing inside R of the
  ``lmer`` call only, median of ``--repeats``).
* statsmodels: its crossed spelling (one all-rows group + ``vc_formula``) on a subsample
  of ``--sm-rows`` rows, to show how its dense per-group algebra scales.

Run: ``PYTHONPATH=. python benchmarks/bench_crossed.py`` (``--quick`` for a smaller run).
"""

import os

# One BLAS thread: on a shared machine OpenBLAS threads that spin-wait for each other make
# a 1,100-square Cholesky 10-30 times slower (measured); set OPENBLAS_NUM_THREADS to override.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

# Measure the mixedjax of this checkout, as the other benchmark scripts do.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def make_data(n=73_000, levels=(3_000, 1_100, 14), seed=20261127) -> pd.DataFrame:
    """Unbalanced crossed design: level frequencies vary (Gamma weights), random effects
    with SDs 0.3, 0.5, 0.2, residual SD 1, a binary x with effect 0.25."""
    rng = np.random.default_rng(seed)
    cols = {}
    y = 3.0 + rng.normal(size=n)
    for k, (nlev, sd) in enumerate(zip(levels, (0.3, 0.5, 0.2), strict=True)):
        weights = rng.gamma(2.0, size=nlev)
        codes = rng.choice(nlev, size=n, p=weights / weights.sum())
        # make sure every level occurs
        codes[:nlev] = rng.permutation(nlev)
        y += rng.normal(scale=sd, size=nlev)[codes]
        cols[f"f{k + 1}"] = np.char.add(f"{'abc'[k]}", codes.astype(str))
    x = rng.integers(0, 2, size=n)
    y += 0.25 * x
    return pd.DataFrame({"y": y, "x": x, **cols})


FORMULA = "y ~ x + (1 | f1) + (1 | f2) + (1 | f3)"


def bench_mixedjax(df: pd.DataFrame, repeats: int):
    import mixedjax

    t0 = time.perf_counter()
    model = mixedjax.mixedlm(FORMULA, df)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = model.fit()
    cold = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = model.fit()
        warm.append(time.perf_counter() - t0)
    # a fresh model on the same data (cross-products rebuilt, compiled code reused)
    t0 = time.perf_counter()
    res2 = mixedjax.mixedlm(FORMULA, df).fit()
    end_to_end = time.perf_counter() - t0
    assert abs(res2.llf - res.llf) < 1e-8 * abs(res.llf)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {
        "llf": res.llf,
        "theta": res.theta.tolist(),
        "build_s": build,
        "cold_fit_s": cold,
        "warm_fit_s": float(np.median(warm)),
        "warm_fits_s": warm,
        "end_to_end_warm_s": end_to_end,
        "n_iter": res.optim.n_iter,
        "n_eval": res.optim.n_eval,
        "converged": res.converged,
        "peak_rss_bytes": peak,
    }


R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
df <- read.csv(args[1], colClasses = c("numeric", "numeric", "factor", "factor", "factor"))
reps <- as.integer(args[2])
times <- numeric(reps)
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  m <- lmer(y ~ x + (1 | f1) + (1 | f2) + (1 | f3), data = df)
  times[i] <- proc.time()[["elapsed"]] - t0
}
cat(sprintf('{"llf": %.12f, "theta": [%s], "times": [%s]}\n', as.numeric(logLik(m)),
    paste(sprintf("%.10f", getME(m, "theta")), collapse = ", "),
    paste(sprintf("%.4f", times), collapse = ", ")))
"""


def bench_lme4(df: pd.DataFrame, repeats: int):
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "crossed.csv"
        script = Path(tmp) / "bench.R"
        df.to_csv(csv, index=False)
        script.write_text(R_SCRIPT)
        out = subprocess.run(
            ["Rscript", str(script), str(csv), str(repeats)],
            capture_output=True,
            text=True,
            check=True,
        )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["fit_s"] = float(np.median(result["times"]))
    return result


def bench_statsmodels(df: pd.DataFrame, rows: int):
    try:
        import statsmodels.formula.api as smf
    except ImportError:
        return None
    sub = df.sample(rows, random_state=0).assign(one=1)
    vc = {"f1": "0 + C(f1)", "f2": "0 + C(f2)", "f3": "0 + C(f3)"}
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = smf.mixedlm("y ~ x", sub, groups="one", vc_formula=vc, re_formula="0")
        res = model.fit()
    elapsed = time.perf_counter() - t0
    n_random = sum(sub[f].nunique() for f in ("f1", "f2", "f3"))
    return {"rows": rows, "n_random": int(n_random), "fit_s": elapsed, "llf": float(res.llf)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sm-rows", type=int, default=2_000)
    parser.add_argument("--no-r", action="store_true")
    parser.add_argument("--no-statsmodels", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        df = make_data(7_300, (300, 110, 14))
    else:
        df = make_data()
    sizes = {c: int(df[c].nunique()) for c in ("f1", "f2", "f3")}
    print(f"data: {len(df)} rows, levels {sizes}", flush=True)
    out = {"rows": len(df), "levels": sizes, "mixedjax": bench_mixedjax(df, args.repeats)}
    print(json.dumps(out["mixedjax"], indent=1), flush=True)
    if not args.no_r:
        out["lme4"] = bench_lme4(df, args.repeats)
        print(json.dumps(out["lme4"], indent=1), flush=True)
    if not args.no_statsmodels:
        out["statsmodels"] = bench_statsmodels(df, args.sm_rows)
        print(json.dumps(out["statsmodels"], indent=1), flush=True)
    mj, r = out["mixedjax"], out.get("lme4")
    if r:
        rel = abs(mj["llf"] - r["llf"]) / abs(r["llf"])
        out["llf_rel_diff"] = rel
        out["speedup_vs_lme4"] = r["fit_s"] / mj["warm_fit_s"]
        print(
            f"mixedjax warm {mj['warm_fit_s']:.2f}s vs lme4 {r['fit_s']:.2f}s "
            f"({out['speedup_vs_lme4']:.1f}x); llf {mj['llf']:.8f} vs {r['llf']:.8f} "
            f"(rel diff {rel:.1e}); peak RSS {mj['peak_rss_bytes'] / 2**30:.2f} GiB"
        )
    print("JSON " + json.dumps(out))
    return out


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
