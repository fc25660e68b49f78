"""One library's GLMM fit for bench_glmm.py, in a fresh Python process.

Usage::

    python _glmm_fit.py LIB CASE DATA.csv REPS OUT.json

``LIB`` is ``mixedjax`` or ``mixedlm`` (the lme4 port on PyPI). ``CASE`` names the model
(:data:`MODELS`); ``many`` fits every ``y*`` column of the CSV on one design
(mixedjax: ``fit_many``, one compiled call; mixedlm: a loop over the first ``REPS``
columns, the total then scaled to all of them, and labelled so).

*cold* = import + model construction + first fit in this process (mixedjax with the
compilation cache of ``MIXEDJAX_CACHE_DIR``, empty unless the caller reuses it); *warm* =
best of ``REPS`` more fits of the same data. Nothing here asserts a wall-clock time.
"""

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: case -> (lme4 formula, factor columns)
MODELS = {
    "slope": ("y ~ x + (x | g)", ["g"]),
    "verbagg": (
        "r2 ~ Anger + Gender + btype + situ + (1 | id) + (1 | item)",
        ["Gender", "btype", "situ", "id", "item"],
    ),  # fmt: skip
    "many": ("y ~ x + (1 | g)", ["g"]),
}


def main() -> None:
    lib, case, path, reps, out = (
        sys.argv[1],
        sys.argv[2],
        sys.argv[3],
        int(sys.argv[4]),
        sys.argv[5],
    )
    t_start = time.perf_counter()
    import pandas as pd

    formula, factors = MODELS[case]
    df = pd.read_csv(path, dtype={f: str for f in factors})
    result = {"lib": lib, "case": case}
    if lib == "mixedjax":
        import mixedjax

        if case == "many":
            Y = df[[c for c in df.columns if c.startswith("y")]]
            model = mixedjax.glmer("y0" + formula[1:], df, family="binomial")

            def fit():
                return model.fit_many(Y)

            def loglik(r):
                return float(r.llf[0])
        else:

            def fit():
                return mixedjax.glmer(formula, df, family="binomial").fit()

            def loglik(r):
                return float(r.llf)
    elif lib == "mixedlm":
        import mixedlm

        family = mixedlm.families.Binomial()
        if case == "many":
            columns = [c for c in df.columns if c.startswith("y")]

            def fit():
                last = None
                for c in columns[:reps]:
                    last = mixedlm.glmer(c + formula[1:], df, family=family)
                return last

            def loglik(r):
                return float(r.logLik().value)

            result["loop_scale"] = len(columns) / reps
        else:

            def fit():
                return mixedlm.glmer(formula, df, family=family)

            def loglik(r):
                return float(r.logLik().value)
    else:
        raise SystemExit(f"unknown library {lib!r}")
    r = fit()
    result["cold"] = time.perf_counter() - t_start
    warm = []
    for _ in range(1 if case == "many" else reps):
        t0 = time.perf_counter()
        r = fit()
        warm.append(time.perf_counter() - t0)
    result["warm"] = min(warm)
    if "loop_scale" in result:  # mixedlm's loop covered `reps` of the responses
        result["warm"] *= result["loop_scale"]
        result["cold"] = None
    result["loglik"] = loglik(r)
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
