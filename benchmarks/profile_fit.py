"""Where the time of a mixedjax fit goes: construction stages, kernel costs, fit stages,
optimiser variants and compile times, for ``y ~ x + (x | g)`` with 10 rows per group.

Usage (from the repository root)::

    python benchmarks/profile_fit.py                  # 100,000 groups (~3 min)
    python benchmarks/profile_fit.py --groups 10000

Every figure is wall clock, best of ``--reps`` after a warm-up call (compile times excepted:
those are one ``jit(...).lower(...).compile()`` each, for a group count not compiled before
in the process). Optimiser variants call :func:`mixedjax.fit.optimize.minimize` directly with a
different number of Newton polishing steps; they are diagnostics, not API. Writes the
``profile_fit`` section of ``benchmarks/RESULTS.md``.
"""

import argparse
import time
from functools import partial

import numpy as np
from _common import environment_lines, fmt_s, log, markdown_table, publish, simulate


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--groups", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp

    from mixedjax import MixedLM
    from mixedjax.design.groups import group_crossprods
    from mixedjax.engines.onefactor import profiled_deviance
    from mixedjax.fit import estimation
    from mixedjax.fit.optimize import minimize
    from mixedjax.results.mixedlm import MixedLMResults
    from mixedjax.spec.formula import design_from_formulas

    def best(fn, reps=args.reps):
        jax.block_until_ready(fn())
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            times.append(time.perf_counter() - t0)
        return min(times)

    n_groups = args.groups
    df = simulate(n_groups)
    lines = [f"## Profile of one fit: {n_groups:,} groups × 10 rows, `y ~ x + (x | g)`, REML", ""]
    lines += environment_lines()
    cmd = "python benchmarks/profile_fit.py"
    if n_groups != 100_000:
        cmd += f" --groups {n_groups}"
    lines += [f"- Command: `{cmd}` (best of {args.reps} after a warm-up)", ""]

    # ---- A. model construction
    log("A. construction")
    t_formula = best(lambda: design_from_formulas("y ~ x", df, "g", "~x", None))
    design = design_from_formulas("y ~ x", df, "g", "~x", None)
    t_init = best(lambda: MixedLM(design.endog, design.exog, design.groups, exog_re=design.exog_re))
    model = MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x")
    t_cross = best(
        lambda: group_crossprods(
            model.endog, model.exog, model.exog_z, model.group_codes, model.n_groups
        )
    )
    t_total = best(lambda: MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x"))
    rows_a = [
        ["`from_formula` (whole)", fmt_s(t_total)],
        ["  formulaic design matrices", fmt_s(t_formula)],
        [
            "  `MixedLM.__init__` from those arrays (checks, encoding, cross-products)",
            fmt_s(t_init),
        ],
        ["    of which `group_crossprods`", fmt_s(t_cross)],
    ]
    for r in rows_a:
        log(f"  {r[0]:<75s} {r[1]}")

    # ---- B. fit stages
    log("B. fit stages")
    data, structure = model.data, model.structure
    padded = data.ZtZ.shape[0]
    model.fit()  # warm-up / compile
    t_fit = best(model.fit)
    theta0 = jnp.asarray(np.asarray(estimation.default_start(data, structure)))
    free = jnp.ones(structure.n_theta, dtype=bool)

    def run_fit_theta():
        return estimation.fit_theta(
            theta0, free, data, 1e-9, structure=structure, reml=True, method="lbfgs", maxiter=500
        )

    t_fit_theta = best(run_fit_theta)
    opt = run_fit_theta()
    theta_hat = np.asarray(opt.x)
    t_snap = best(
        lambda: estimation.snap_to_boundary(
            theta_hat, float(opt.value), np.ones(structure.n_theta, bool), data, structure, True
        )
    )
    t_est = best(
        lambda: estimation.estimates_at(
            jnp.asarray(theta_hat), data, structure=structure, reml=True
        )
    )
    fitted = model.fit()
    est = estimation.estimates_at(jnp.asarray(fitted.theta), data, structure=structure, reml=True)
    t_results = best(lambda: MixedLMResults(model, fitted.theta, est, fitted.optim, True))
    n_eval, n_newton, n_iter = int(opt.n_eval), int(opt.n_newton), int(opt.n_iter)
    rows_b = [
        ["`model.fit()` (whole)", fmt_s(t_fit)],
        [
            f"  `estimation.fit_theta` (L-BFGS: {n_iter} iterations; {n_eval} evaluations in "
            f"all; {n_newton} accepted Newton steps)",
            fmt_s(t_fit_theta),
        ],
        ["  `estimation.snap_to_boundary`", fmt_s(t_snap)],
        ["  `estimation.estimates_at` (β, σ², BLUPs)", fmt_s(t_est)],
        ["  `MixedLMResults(...)` (host copies, DataFrames)", fmt_s(t_results)],
    ]
    for r in rows_b:
        log(f"  {r[0]:<75s} {r[1]}")

    # ---- C. kernel costs at this size
    log("C. kernels")

    def deviance(theta, data):
        return profiled_deviance(theta, data, structure, True)

    th = jnp.asarray(theta_hat)
    dev = jax.jit(deviance)
    vg = jax.jit(jax.value_and_grad(deviance))
    hess = jax.jit(jax.hessian(deviance))
    t_dev, t_vg, t_hess = (best(lambda f=f: f(th, data)) for f in (dev, vg, hess))
    rows_c = [
        ["profiled deviance d(θ)", fmt_s(t_dev), "1"],
        ["value and gradient (reverse mode)", fmt_s(t_vg), f"{t_vg / t_dev:.1f}"],
        ["Hessian (`jax.hessian`, 3 × 3)", fmt_s(t_hess), f"{t_hess / t_dev:.1f}"],
    ]
    for r in rows_c:
        log(f"  {r[0]:<40s} {r[1]:>10s}  x{r[2]}")
    lbfgs_evals = n_eval - 2 * n_newton
    n_hess = min(n_newton + 1, 8)

    # ---- D. optimiser variants: Newton polishing steps
    log("D. optimiser variants")

    @partial(jax.jit, static_argnames=("newton_steps",))
    def fit_variant(theta0, free, data, newton_steps):
        return minimize(
            deviance,
            theta0,
            data,
            free,
            method="lbfgs",
            maxiter=500,
            gtol=1e-9,
            newton_steps=newton_steps,
        )

    rows_d = []
    ref_value = float(opt.value)
    variants, compile_s, run_s = (0, 1, 8), {}, {}
    for steps in variants:
        t0 = time.perf_counter()
        variants_compiled = fit_variant.lower(theta0, free, data, newton_steps=steps).compile()
        compile_s[steps] = (time.perf_counter() - t0, variants_compiled)
    for _ in range(args.reps + 2):  # interleaved, so a burst of load hits all variants alike
        for steps in variants:
            compiled = compile_s[steps][1]
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(theta0, free, data))
            run_s[steps] = min(run_s.get(steps, np.inf), time.perf_counter() - t0)
    for steps in variants:
        t_compile, compiled = compile_s[steps]
        t_run = run_s[steps]
        res = compiled(theta0, free, data)
        rel = (float(res.value) - ref_value) / abs(ref_value)
        rows_d.append(
            [
                str(steps),
                fmt_s(t_run),
                fmt_s(t_compile),
                str(int(res.n_newton)),
                f"{float(res.scaled_grad):.1e}",
                f"{rel:+.1e}",
            ]
        )
        log(f"  newton_steps={steps}: {rows_d[-1]}")

    # ---- E. compile times in isolation (a group count not seen before in this process)
    log("E. compile times")
    small = MixedLM.from_formula("y ~ x", simulate(700), groups="g", re_formula="~x")
    sd, ss = small.data, small.structure
    th0s = jnp.asarray(np.asarray(estimation.default_start(sd, ss)))

    def compile_time(jitted, *a, **kw):
        t0 = time.perf_counter()
        jitted.lower(*a, **kw).compile()
        return time.perf_counter() - t0

    rows_e = [
        [
            "`estimation.fit_theta` (L-BFGS + Newton polish)",
            fmt_s(
                compile_time(
                    estimation.fit_theta,
                    th0s,
                    free,
                    sd,
                    1e-9,
                    structure=ss,
                    reml=True,
                    method="lbfgs",
                    maxiter=500,
                )
            ),
        ],
        [
            "`estimation.estimates_at`",
            fmt_s(compile_time(estimation.estimates_at, th0s, sd, structure=ss, reml=True)),
        ],
        [
            "`estimation.deviance` (boundary probe)",
            fmt_s(compile_time(estimation.deviance, th0s, sd, structure=ss, reml=True)),
        ],
        ["`jax.value_and_grad(deviance)` alone", fmt_s(compile_time(vg, th0s, sd))],
        ["`jax.hessian(deviance)` alone", fmt_s(compile_time(hess, th0s, sd))],
    ]
    t0 = time.perf_counter()
    fresh = MixedLM.from_formula("y ~ x", simulate(2900), groups="g", re_formula="~x")
    fresh.fit()
    rows_e.append(
        ["first `fit()` at a new group bucket (all of the above)", fmt_s(time.perf_counter() - t0)]
    )
    for r in rows_e:
        log(f"  {r[0]:<60s} {r[1]}")

    lines += ["### Model construction", ""]
    lines += markdown_table(["stage", "time"], rows_a)
    lines += ["", "### Fit stages (warm)", ""]
    lines += markdown_table(["stage", "time"], rows_b)
    lines += [
        "",
        f"### Kernel costs at {n_groups:,} groups (padded to {padded:,})",
        "",
    ]
    lines += markdown_table(["kernel", "time", "× deviance"], rows_c)
    lines += [
        "",
        f"`fit_theta` ran {lbfgs_evals} value-and-gradient evaluations in L-BFGS and "
        f"{n_hess} Hessians (+ as many value-and-gradient evaluations) in the Newton polish "
        "(it stops at the first rejected step). Kernels timed standalone overstate their cost "
        "inside the optimiser's `jit`; the variants below measure the split directly: "
        f"L-BFGS alone {fmt_s(run_s[0])}, polish {fmt_s(run_s[8] - run_s[0])} of "
        f"{fmt_s(run_s[8])}.",
        "",
        "### Optimiser variants (`optimize.minimize`, L-BFGS, gtol 1e-9)",
        "",
    ]
    lines += markdown_table(
        [
            "Newton steps (max)",
            "warm time",
            "compile time",
            "accepted",
            "final scaled gradient",
            "Δ deviance vs default (rel.)",
        ],
        rows_d,
    )
    lines += ["", "### Compile times (700-group bucket, separate `lower().compile()` each)", ""]
    lines += markdown_table(["function", "compile"], rows_e)
    publish("profile_fit", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
