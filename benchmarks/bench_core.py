"""Benchmark ``y ~ x + (x | g)`` (10 rows per group) against statsmodels and lme4, same data.

Usage (from the repository root)::

    python benchmarks/bench_core.py            # 1,000 / 10,000 / 100,000 groups (~4 min)
    python benchmarks/bench_core.py --full     # also statsmodels at 100,000 groups (+~2.5 min)

For each size the data are simulated with a fixed seed and written to
``benchmarks/_out/core_<groups>.csv``; every tool fits that file. Measured in one run:

* mixedjax warm: ``MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x")`` (the
  model construction, which computes the per-group cross-products) and ``.fit()`` (REML),
  each best of ``--reps`` after one warm-up fit that compiles;
* mixedjax cold: import + construction + first fit in a fresh Python process, JAX's
  persistent compilation cache off (see ``_cold_fit.py``);
* statsmodels ``MixedLM`` with the same formula (construction and REML fit);
* lme4 ``lmer(y ~ x + (x | g), REML = TRUE)`` via ``Rscript`` (see ``lme4_fit.R``), only
  the ``lmer`` call timed, when ``Rscript`` with lme4 is installed.

It prints the log-likelihoods side by side with the relative difference of mixedjax against
lme4 and writes the ``bench_core`` section of ``benchmarks/RESULTS.md``. Speed-ups compare
whole fits: mixedjax construction + fit against the ``lmer`` call (which builds its model
too) and against statsmodels construction + fit. This is a benchmark, not a test: it
asserts nothing about wall-clock time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
from _common import (
    BENCH_DIR,
    ROOT,
    environment_lines,
    fmt_ratio,
    fmt_s,
    log,
    markdown_table,
    publish,
    r_versions,
    read_csv,
    simulate,
    write_csv,
)

FORMULA, RE_FORMULA = "y ~ x", "~x"
DEFAULT_SIZES = (1_000, 10_000, 100_000)
STATSMODELS_DEFAULT_MAX = 10_000  # statsmodels takes ~2 min at 100,000 groups: --full only
LME4_REPS_MAX_GROUPS = 10_000  # above this, one lme4 fit (each takes ~14 s at 100,000)


def time_mixedjax_warm(df, reps: int) -> dict:
    from mixedjax import MixedLM

    def build():
        return MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA)

    model = build()
    model.fit()  # warm-up: traces and compiles for this bucket of group counts
    build_times, fit_times = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        model = build()
        t1 = time.perf_counter()
        result = model.fit()
        llf = result.llf  # results are computed eagerly; reading one forces nothing lazy
        t2 = time.perf_counter()
        build_times.append(t1 - t0)
        fit_times.append(t2 - t1)
    opt = getattr(result, "optim", None)
    return {
        "build": min(build_times),
        "fit": min(fit_times),
        "total": min(b + f for b, f in zip(build_times, fit_times, strict=True)),
        "llf": llf,
        "beta": np.asarray(result.fe_params, dtype=float),
        "converged": bool(result.converged),
        "opt": opt,
    }


def time_mixedjax_cold(csv_path, cache_dir=None) -> dict:
    """Import + build + first fit in a fresh interpreter. Without ``cache_dir`` JAX's
    persistent compilation cache is off; with it, compiled code is written to (first call)
    or read from (later calls) that directory."""
    env = dict(os.environ)
    if cache_dir is None:  # mixedjax turns JAX's cache on at import unless told not to
        env["JAX_ENABLE_COMPILATION_CACHE"] = "false"
        env["MIXEDJAX_NO_CACHE"] = "1"
    else:
        env["JAX_ENABLE_COMPILATION_CACHE"] = "true"
        env["JAX_COMPILATION_CACHE_DIR"] = str(cache_dir)
        env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
        env["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, str(BENCH_DIR / "_cold_fit.py"), str(csv_path)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(BENCH_DIR),
    )
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"cold fit failed:\n{res.stderr}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out["process"] = wall
    return out


def time_statsmodels(df, reps: int) -> dict | None:
    try:
        from statsmodels.regression.mixed_linear_model import MixedLM as SMMixedLM
    except ImportError:
        return None
    builds, fits = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        model = SMMixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA)
        t1 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = model.fit(reml=True)
        t2 = time.perf_counter()
        builds.append(t1 - t0)
        fits.append(t2 - t1)
    return {
        "build": min(builds),
        "fit": min(fits),
        "total": min(b + f for b, f in zip(builds, fits, strict=True)),
        "llf": float(result.llf),
        "beta": np.asarray(result.fe_params, dtype=float),
        "converged": bool(result.converged),
    }


def time_lme4(csv_path, reps: int) -> dict | None:
    res = subprocess.run(
        ["Rscript", str(BENCH_DIR / "lme4_fit.R"), str(csv_path), str(reps)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise RuntimeError(f"lme4 fit failed:\n{res.stderr}")
    fields = {}
    for line in res.stdout.splitlines():
        key, _, rest = line.partition(" ")
        fields[key] = rest.split()
    times = [float(t) for t in fields["TIMES"]]
    return {
        "fit": min(times),
        "total": min(times),
        "llf": float(fields["LOGLIK"][0]),
        "beta": np.array([float(b) for b in fields["BETA"]]),
        "singular": fields["SINGULAR"][0] == "TRUE",
    }


def run(
    sizes, full: bool, reps: int, with_r: bool, with_cold: bool, cache_test_groups: int
) -> dict:
    results = {}
    for n_groups in sizes:
        log(f"== {n_groups:,} groups ({10 * n_groups:,} rows)")
        csv_path = write_csv(simulate(n_groups), f"core_{n_groups}.csv")
        df = read_csv(csv_path)
        entry = {}
        if with_cold:
            entry["cold"] = time_mixedjax_cold(csv_path)
            c = entry["cold"]
            log(
                f"  mixedjax cold: import {c['import']:.2f} s + build {c['build']:.2f} s + "
                f"first fit {c['fit']:.2f} s = {c['total']:.2f} s "
                f"(process wall {c['process']:.2f} s)"
            )
        if with_cold and n_groups == cache_test_groups:
            with tempfile.TemporaryDirectory(prefix="mixedjax-jax-cache-") as cache_dir:
                entry["cold_cache_write"] = time_mixedjax_cold(csv_path, cache_dir)
                entry["cold_cache_hit"] = time_mixedjax_cold(csv_path, cache_dir)
            for key in ("cold_cache_write", "cold_cache_hit"):
                c = entry[key]
                log(
                    f"  mixedjax {key}: import {c['import']:.2f} s + build {c['build']:.2f} s"
                    f" + first fit {c['fit']:.2f} s = {c['total']:.2f} s"
                )
        entry["mixedjax"] = time_mixedjax_warm(df, reps)
        m = entry["mixedjax"]
        log(
            f"  mixedjax warm: build {m['build']:.3f} s, fit {m['fit']:.3f} s, "
            f"total {m['total']:.3f} s, llf {m['llf']:.10f}"
        )
        if with_r:
            lme4_reps = reps if n_groups <= LME4_REPS_MAX_GROUPS else 1
            entry["lme4"] = time_lme4(csv_path, lme4_reps)
            log(f"  lme4 lmer: {entry['lme4']['fit']:.3f} s, llf {entry['lme4']['llf']:.10f}")
        if n_groups <= STATSMODELS_DEFAULT_MAX or full:
            sm_reps = reps if n_groups <= 1_000 else 1
            entry["statsmodels"] = time_statsmodels(df, sm_reps)
            if entry["statsmodels"] is not None:
                s = entry["statsmodels"]
                log(
                    f"  statsmodels: build {s['build']:.2f} s, fit {s['fit']:.2f} s, "
                    f"llf {s['llf']:.10f}"
                )
        results[n_groups] = entry
    return results


def agreement_rows(results) -> tuple[list[list[str]], float | None]:
    rows, worst = [], None
    for n_groups, e in results.items():
        mj = e["mixedjax"]
        lme4 = e.get("lme4")
        sm = e.get("statsmodels")
        rel = dbeta = None
        if lme4 is not None:
            rel = (mj["llf"] - lme4["llf"]) / abs(lme4["llf"])
            dbeta = float(np.max(np.abs(mj["beta"] - lme4["beta"])))
            worst = abs(rel) if worst is None else max(worst, abs(rel))
        rows.append(
            [
                f"{n_groups:,}",
                f"{mj['llf']:.8f}",
                f"{lme4['llf']:.8f}" if lme4 else "–",
                f"{sm['llf']:.8f}" if sm else "–",
                f"{rel:+.2e}" if rel is not None else "–",
                f"{dbeta:.1e}" if dbeta is not None else "–",
                f"{e['cold']['llf'] - mj['llf']:+.1e}" if "cold" in e else "–",
            ]
        )
    return rows, worst


def report(results, args, rv) -> list[str]:
    lines = ["## Core: `y ~ x + (x | g)`, 10 rows per group, REML", ""]
    extra = {f"R {rv['R']}, lme4": rv["lme4"], "Matrix": rv["Matrix"]} if rv else None
    lines += environment_lines(extra)
    cmd = "python benchmarks/bench_core.py" + (" --full" if args.full else "")
    lines += [
        f"- Command: `{cmd}` (reps {args.reps}; each figure is the best of its repetitions)",
        "",
        "Timings (wall clock). *build* = `MixedLM.from_formula(...)` (formula, checks, "
        "per-group cross-products); *fit* = `.fit()`; *cold* = `import mixedjax` + build + "
        "first fit in a fresh process (tracing and XLA compilation included, no persistent "
        "cache); lme4 = the `lmer()` call alone (it builds its model too); statsmodels = "
        "`from_formula` + `fit(reml=True)`.",
        "",
    ]
    header = [
        "groups",
        "mixedjax build",
        "mixedjax fit",
        "mixedjax build+fit",
        "mixedjax cold",
        "lme4",
        "statsmodels",
        "vs lme4",
        "vs statsmodels",
    ]
    rows = []
    for n_groups, e in results.items():
        mj, lme4, sm = e["mixedjax"], e.get("lme4"), e.get("statsmodels")
        cold = e.get("cold")
        rows.append(
            [
                f"{n_groups:,}",
                fmt_s(mj["build"]),
                fmt_s(mj["fit"]),
                fmt_s(mj["total"]),
                fmt_s(cold["total"]) if cold else "–",
                fmt_s(lme4["fit"]) if lme4 else "–",
                fmt_s(sm["total"]) if sm else "–",
                fmt_ratio(lme4["fit"], mj["total"]) if lme4 else "–",
                fmt_ratio(sm["total"], mj["total"]) if sm else "–",
            ]
        )
    lines += markdown_table(header, rows)
    lines += ["", "Cold-start breakdown (fresh process):", ""]
    cold_rows = [
        [
            f"{n:,}",
            fmt_s(e["cold"]["import"]),
            fmt_s(e["cold"]["build"]),
            fmt_s(e["cold"]["fit"]),
            fmt_s(e["cold"]["total"]),
            fmt_s(e["cold"]["process"]),
        ]
        for n, e in results.items()
        if "cold" in e
    ]
    for n, e in results.items():
        for key, label in (
            ("cold_cache_write", "cache on, empty (compiles and writes)"),
            ("cold_cache_hit", "cache on, filled by the previous process"),
        ):
            if key in e:
                c = e[key]
                cold_rows.append(
                    [f"{n:,}, {label}"]
                    + [fmt_s(c[k]) for k in ("import", "build", "fit", "total", "process")]
                )
    lines += markdown_table(
        ["groups", "import", "build", "first fit", "total", "process wall (incl. CSV read)"],
        cold_rows,
    )
    lines += [
        "",
        "The last rows set `JAX_COMPILATION_CACHE_DIR` (JAX's persistent compilation cache, "
        "`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0`) to a fresh directory: the first "
        "process fills it, the second reads the compiled code back, as a user's second run "
        "of a script would if mixedjax enabled that cache.",
    ]
    sm_rows = [
        [f"{n:,}", fmt_s(e["statsmodels"]["build"]), fmt_s(e["statsmodels"]["fit"])]
        + [str(e["statsmodels"]["converged"])]
        for n, e in results.items()
        if e.get("statsmodels")
    ]
    if sm_rows:
        lines += ["", "statsmodels split:", ""]
        lines += markdown_table(["groups", "build", "fit", "converged"], sm_rows)
    agree, worst = agreement_rows(results)
    lines += [
        "",
        "Log-likelihood agreement (REML log-likelihood; rel. diff = (mixedjax − lme4)/|lme4|, "
        "positive means mixedjax found a higher likelihood; max |Δβ| against lme4; the cold "
        "fit's llf minus the warm fit's):",
        "",
    ]
    lines += markdown_table(
        [
            "groups",
            "mixedjax llf",
            "lme4 llf",
            "statsmodels llf",
            "rel. diff vs lme4",
            "max abs Δβ",
            "cold − warm",
        ],
        agree,
    )
    if worst is not None:
        lines += ["", f"Max |relative difference| mixedjax vs lme4: {worst:.2e}."]
    if 100_000 in results:
        e = results[100_000]
        mj_total, cold = e["mixedjax"]["total"], e.get("cold")
        lines += ["", "Targets (issue 2, 100,000 groups, 2 CPU cores):", ""]
        mj_fit = e["mixedjax"]["fit"]
        checks = [
            ("warm fit ≤ 1.5 s", fmt_s(mj_fit), mj_fit <= 1.5),
            ("warm build+fit ≤ 1.5 s", fmt_s(mj_total), mj_total <= 1.5),
        ]
        if e.get("lme4"):
            ratio = e["lme4"]["fit"] / mj_total
            checks.append(("≥ 9x lme4 (build+fit vs the lmer call)", f"{ratio:.1f}x", ratio >= 9))
        if e.get("statsmodels"):
            ratio = e["statsmodels"]["total"] / mj_total
            checks.append(("≥ 90x statsmodels (build+fit both)", f"{ratio:.1f}x", ratio >= 90))
        if cold:
            checks.append(
                ("first fit in a fresh process ≤ 5 s", fmt_s(cold["total"]), cold["total"] <= 5)
            )
        lines += markdown_table(
            ["target", "measured", "met"],
            [[t, v, "yes" if ok else "**no**"] for t, v, ok in checks],
        )
    return lines


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--full", action="store_true", help="also statsmodels at 100,000 groups")
    parser.add_argument(
        "--groups", type=int, nargs="+", default=list(DEFAULT_SIZES), help="numbers of groups"
    )
    parser.add_argument("--reps", type=int, default=3, help="repetitions (best is reported)")
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if R is installed")
    parser.add_argument("--no-cold", action="store_true", help="skip the fresh-process fits")
    parser.add_argument(
        "--no-cache-test",
        action="store_true",
        help="skip the fresh-process fits with JAX's persistent compilation cache",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    rv = None if args.no_r else r_versions()
    if rv is None and not args.no_r:
        log("Rscript with lme4 not found: lme4 is skipped")
    with_r = rv is not None and shutil.which("Rscript") is not None
    t0 = time.perf_counter()
    cache_groups = max(args.groups) if not args.no_cache_test else -1
    results = run(args.groups, args.full, args.reps, with_r, not args.no_cold, cache_groups)
    lines = report(results, args, rv)
    lines += ["", f"Whole benchmark run: {time.perf_counter() - t0:.0f} s."]
    publish("bench_core", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
