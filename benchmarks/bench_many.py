"""Many responses on one design: ``MixedLM.fit_many`` vs a loop of lme4 fits.

The sleepstudy design (180 rows, 18 subjects, ``Reaction ~ Days + (Days | Subject)``, REML)
with ``K`` responses simulated from the fitted sleepstudy model (with per-response variation
of the variance components, so some fits are singular as in real screens). mixedjax fits all
``K`` in one vmapped call (cold: including compilation; warm: compiled). lme4 is timed on a
sample of ``S`` responses with ``refit(m, newresp = y)`` (its fastest path: the model
structure is reused) in one R process, and the time is extrapolated linearly to ``K``; a
loop of mixedjax single fits is timed on the same sample. The REML criteria of the sample
are compared between lme4 and mixedjax.

Run: ``PYTHONPATH=. python benchmarks/bench_many.py [--k 10000] [--sample 200] [--write]``
(``--write`` stores the table in ``benchmarks/RESULTS_many.md``).
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import numpy as np
import pandas as pd

import mixedjax

HERE = Path(__file__).parent

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
d <- read.csv(args[1]); Y <- as.matrix(read.csv(args[2]))
d$Subject <- factor(d$Subject)
m <- lmer(Reaction ~ Days + (Days | Subject), d, REML = TRUE)
m <- refit(m, newresp = Y[, 1])  # warm-up (R byte-compiles on first use)
crit <- numeric(ncol(Y))
elapsed <- system.time(for (j in seq_len(ncol(Y))) {
  f <- suppressMessages(suppressWarnings(refit(m, newresp = Y[, j])))
  crit[j] <- deviance(f, REML = TRUE)
})[["elapsed"]]
cat(sprintf('{"elapsed": %.6f, "lme4": "%s", "R": "%s", "crit": [%s]}\n', elapsed,
    packageVersion("lme4"), getRversion(), paste(sprintf("%.10f", crit), collapse = ",")))
"""


def simulate(model, base, k: int, seed: int = 0) -> np.ndarray:
    """``(n, k)`` responses from the fitted model, variance components scaled per response."""
    rng = np.random.default_rng(seed)
    n, q = model.exog_re.shape
    beta = base.fe_params.to_numpy()
    chol = np.linalg.cholesky(base.cov_re.to_numpy())
    sd_scale = rng.uniform(0.0, 1.5, size=(k, q))  # some responses without a slope effect
    b = np.einsum("ij,kgj->kgi", chol, rng.normal(size=(k, model.n_groups, q)))
    b *= sd_scale[:, None, :]
    noise = np.sqrt(base.scale) * rng.normal(size=(k, n))
    random_part = np.einsum("nq,knq->kn", model.exog_re, b[:, model.group_codes, :])
    return (model.exog @ beta + random_part + noise).T


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{cpu}, {cores} cores available, load average {load:.1f} at start; "
        f"Python {platform.python_version()}, jax {jax.__version__} ({jax.devices()[0].platform})"
    )


def run(k: int, sample: int, seed: int = 0) -> dict:
    df = mixedjax.datasets.load("sleepstudy")
    model = mixedjax.MixedLM.from_formula(
        "Reaction ~ Days", df, groups="Subject", re_formula="~Days"
    )
    base = model.fit()
    Y = simulate(model, base, k, seed)
    out = {"k": k, "sample": sample, "machine": machine()}

    t = time.perf_counter()
    batch = model.fit_many(Y)
    out["cold_s"] = time.perf_counter() - t
    t = time.perf_counter()
    batch = model.fit_many(Y)
    out["warm_s"] = time.perf_counter() - t
    out["converged"] = int(np.sum(batch.converged))
    out["singular"] = int(np.sum(batch.is_singular))

    groups = model.group_labels[model.group_codes]
    single = mixedjax.MixedLM(Y[:, 0], model.exog, groups, exog_re=model.exog_re)
    single.fit()  # compile
    t = time.perf_counter()
    for j in range(sample):
        mixedjax.MixedLM(Y[:, j], model.exog, groups, exog_re=model.exog_re).fit()
    out["mixedjax_loop_s_per_fit"] = (time.perf_counter() - t) / sample

    with tempfile.TemporaryDirectory() as tmp:
        data_path, y_path, r_path = (Path(tmp) / n for n in ("d.csv", "y.csv", "b.R"))
        df.to_csv(data_path, index=False)
        pd.DataFrame(Y[:, :sample]).to_csv(y_path, index=False)
        r_path.write_text(R_SCRIPT)
        proc = subprocess.run(
            ["Rscript", str(r_path), str(data_path), str(y_path)],
            capture_output=True,
            text=True,
            check=True,
        )
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    out["lme4_version"], out["R_version"] = r["lme4"], r["R"]
    out["lme4_s_per_fit"] = r["elapsed"] / sample
    out["lme4_extrapolated_s"] = out["lme4_s_per_fit"] * k
    out["speedup_warm"] = out["lme4_extrapolated_s"] / out["warm_s"]
    out["speedup_cold"] = out["lme4_extrapolated_s"] / out["cold_s"]
    ours = -2.0 * batch.llf[:sample]
    crit = np.asarray(r["crit"])
    out["max_abs_crit_diff"] = float(np.max(np.abs(ours - crit)))
    out["ours_lower_or_equal"] = int(np.sum(ours <= crit + 1e-6 * np.abs(crit)))
    return out


def markdown(res: dict) -> str:
    k, s = res["k"], res["sample"]
    return f"""## Many responses on one design (`benchmarks/bench_many.py`)

Sleepstudy design (180 rows, 18 subjects), `Reaction ~ Days + (Days | Subject)`, REML;
{k:,} responses simulated from the fitted model with per-response random-effect SDs
(scaled by U(0, 1.5), so {res["singular"]:,} fits are singular).

| | time | per fit |
|---|---:|---:|
| mixedjax `fit_many`, {k:,} responses, cold (incl. compilation) | {res["cold_s"]:.2f} s | {1e3 * res["cold_s"] / k:.3f} ms |
| mixedjax `fit_many`, {k:,} responses, warm | {res["warm_s"]:.2f} s | {1e3 * res["warm_s"] / k:.3f} ms |
| lme4 {res["lme4_version"]} `refit()` loop, {s} fits timed, extrapolated to {k:,} | {res["lme4_extrapolated_s"]:.1f} s | {1e3 * res["lme4_s_per_fit"]:.2f} ms |
| mixedjax single `fit()` loop, {s} fits timed (warm) | | {1e3 * res["mixedjax_loop_s_per_fit"]:.2f} ms |

**Speed-up over the lme4 loop: {res["speedup_warm"]:.0f}x warm, {res["speedup_cold"]:.0f}x cold**
(target: 100x). Converged: {res["converged"]:,} of {k:,}. On the {s} responses fitted by both,
the REML criteria agree to {res["max_abs_crit_diff"]:.1e} (absolute; mixedjax's is lower or
equal within 1e-6 relative in {res["ours_lower_or_equal"]} of {s}).

Machine: {res["machine"]}; R {res["R_version"]}. CPU only (no GPU was available for this run).
"""  # noqa: E501


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=10_000)
    parser.add_argument("--sample", type=int, default=200)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    res = run(args.k, args.sample)
    print(json.dumps(res, indent=1), file=sys.stderr)
    text = markdown(res)
    print(text)
    if args.write:
        (HERE / "RESULTS_many.md").write_text(text)


if __name__ == "__main__":
    main()
