"""Scale benchmark: ``y ~ x + (x | g)`` with 1,000,000 groups × 10 rows (10 million rows).

Usage (from the repository root)::

    python benchmarks/bench_scale.py                 # 1,000,000 groups (~2 min)
    python benchmarks/bench_scale.py --groups 200000 # another size

Times, in one process: simulating the data (not part of the fit), building the model
(``MixedLM.from_formula``: formula, input checks and the per-group cross-products, split
into its stages), the first fit (tracing and XLA compilation included) and a second, warm
fit; and the peak resident memory of the process (``resource.getrusage(...).ru_maxrss``)
after each stage, so the stage that sets the peak is visible. Writes the ``bench_scale``
section of ``benchmarks/RESULTS.md``. Targets (issues 2 and 5): the model fits in under
60 s on 2 CPU cores and stays well under 24 GB. A benchmark, not a test: nothing asserted.
"""

import argparse
import resource
import time

import numpy as np
from _common import environment_lines, fmt_s, log, markdown_table, publish, simulate

FORMULA, RE_FORMULA = "y ~ x", "~x"


def peak_rss_gib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**30


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=1_000_000)
    parser.add_argument("--rows-per-group", type=int, default=10)
    parser.add_argument("--no-warm", action="store_true", help="skip the second (warm) fit")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    stages = []  # (stage, seconds, peak RSS after, current RSS after)

    def record(stage: str, seconds: float | None) -> None:
        stages.append((stage, seconds, peak_rss_gib(), current_rss_gib()))
        secs = "" if seconds is None else f"{seconds:7.2f} s"
        log(f"  {stage:<44s}{secs:>10s}   peak RSS {stages[-1][2]:6.2f} GiB")

    n_groups, k = args.groups, args.rows_per_group
    log(f"== {n_groups:,} groups × {k} rows = {n_groups * k:,} rows, p = q = 2")
    t0 = time.perf_counter()
    import jax

    from mixedjax import MixedLM
    from mixedjax.design.groups import group_crossprods
    from mixedjax.spec.formula import design_from_formulas

    record("import mixedjax", time.perf_counter() - t0)

    t0 = time.perf_counter()
    df = simulate(n_groups, k)
    record("simulate data (not part of the fit)", time.perf_counter() - t0)

    # Stage split of the construction (a separate pass; the model below is timed whole).
    t0 = time.perf_counter()
    design = design_from_formulas(FORMULA, df, "g", RE_FORMULA, None)
    t_formula = time.perf_counter() - t0
    codes = design.groups.astype(np.int64)
    t0 = time.perf_counter()
    data = group_crossprods(
        design.endog.to_numpy(float),
        design.exog.to_numpy(float),
        design.exog_re.to_numpy(float),
        codes,
        n_groups,
    )
    jax.block_until_ready(data)
    t_crossprods = time.perf_counter() - t0
    del design, data, codes
    record("  split: formulaic design matrices", t_formula)
    stages.append(("  split: per-group cross-products", t_crossprods, None, None))
    log(f"  {'  split: per-group cross-products':<44s}{t_crossprods:7.2f} s")

    t0 = time.perf_counter()
    model = MixedLM.from_formula(FORMULA, df, groups="g", re_formula=RE_FORMULA)
    jax.block_until_ready(model.data)
    t_build = time.perf_counter() - t0
    record("build model (from_formula, whole)", t_build)

    t0 = time.perf_counter()
    result = model.fit()
    llf_first = result.llf
    t_first = time.perf_counter() - t0
    record("first fit (compile included)", t_first)
    opt = getattr(result, "optim", None)

    t_warm = None
    if not args.no_warm:
        t0 = time.perf_counter()
        result = model.fit()
        t_warm = time.perf_counter() - t0
        record("second fit (warm)", t_warm)

    peak = peak_rss_gib()
    fe = result.fe_params
    cov = np.asarray(result.cov_re) * 1.0
    log(f"  llf {result.llf:.8f} (first fit {llf_first:.8f}); converged {result.converged}")
    log(f"  fe_params {np.round(np.asarray(fe), 4)}; cov_re {np.round(cov, 4).tolist()}")
    if opt is not None:
        log(f"  optimiser: {opt.n_iter} iterations, {opt.n_eval} evaluations")

    lines = [f"## Scale: {n_groups:,} groups × {k} rows ({n_groups * k:,} rows), p = q = 2", ""]
    lines += environment_lines()
    cmd = "python benchmarks/bench_scale.py"
    if n_groups != 1_000_000:
        cmd += f" --groups {n_groups}"
    lines += [f"- Command: `{cmd}` (one process; stages in order)", ""]
    rows = []
    for stage, secs, peak_after, cur_after in stages:
        rows.append(
            [
                stage,
                fmt_s(secs) if secs is not None else "–",
                f"{peak_after:.2f} GiB" if peak_after is not None else "–",
                f"{cur_after:.2f} GiB" if cur_after is not None else "–",
            ]
        )
    lines += markdown_table(["stage", "time", "peak RSS after", "RSS after"], rows)
    total_first = t_build + t_first
    lines += [
        "",
        f"- Build + first fit (compile included): {fmt_s(total_first)}"
        + (f"; build + warm fit: {fmt_s(t_build + t_warm)}" if t_warm is not None else ""),
        f"- Peak RSS of the whole process: {peak:.2f} GiB "
        "(includes the simulated DataFrame and the formula's design matrices)",
        f"- REML log-likelihood {result.llf:.6f}; converged: {result.converged}; "
        f"fixed effects {np.round(np.asarray(fe), 5).tolist()} (true [1.0, 2.0]); "
        f"cov_re {np.round(cov, 4).tolist()} (true [[1.0, 0.3], [0.3, 0.5]])",
        "",
    ]
    checks = [
        ("build + first fit < 60 s", fmt_s(total_first), total_first < 60),
        ("peak RSS well under 24 GB", f"{peak:.2f} GiB", peak < 12),
    ]
    lines += markdown_table(
        ["target (issues 2 and 5)", "measured", "met"],
        [[t, v, "yes" if ok else "**no**"] for t, v, ok in checks],
    )
    publish("bench_scale", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
