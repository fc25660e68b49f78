"""Accuracy of ``fit(dtype="float32")`` against the float64 fit on the lme4 reference cases.

Prints a Markdown table (used in ``docs/float32.md``): for each case and REML/ML, the largest
relative difference float32 vs float64 of the fixed effects, their standard errors, the
random-effects covariance (relative to its largest entry), σ², and -2 log L; whether the
float32 fit reported convergence. Run: ``PYTHONPATH=. python examples/float32_accuracy.py``
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import mixedjax

REFERENCE = Path(__file__).parents[1] / "tests" / "reference"
CASES = ["sleepstudy", "dyestuff", "dyestuff2", "orthodont", "mathachieve"]


def load(name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    data = pd.read_csv(REFERENCE / ref["data"], dtype={f: str for f in ref["factors"]})
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    model = mixedjax.MixedLM.from_formula(
        f"{response.strip()} ~ {fixed}", data, groups=sm["groups"], re_formula=sm.get("re_formula")
    )
    return ref, model


def rel(a, b, denom=None):
    a, b = np.asarray(a, float), np.asarray(b, float)
    d = np.abs(b) if denom is None else denom
    return float(np.max(np.abs(a - b) / np.maximum(d, 1e-300)))


def main(cases=CASES):
    rows = []
    for case in cases:
        for method in ("reml", "ml"):
            ref, model = load(f"{case}_{method}")
            reml = method == "reml"
            r64 = model.fit(reml=reml)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                r32 = model.fit(reml=reml, dtype="float32")
            cov64 = r64.cov_re.to_numpy()
            rows.append(
                {
                    "case": f"{case} {method.upper()}",
                    "fe_params": rel(r32.fe_params, r64.fe_params),
                    "bse_fe": rel(r32.bse_fe, r64.bse_fe),
                    "cov_re": rel(r32.cov_re, cov64, denom=np.max(np.abs(cov64))),
                    "scale": rel(r32.scale, r64.scale),
                    "-2llf": rel(r32.llf, r64.llf),
                    "-2llf vs lme4": (-2 * r32.llf - ref["objective"]) / ref["objective"],
                    "converged": r32.converged and not caught,
                }
            )
            print(rows[-1], file=sys.stderr)
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = [v if isinstance(v, str | bool) else f"{v:.1e}" for v in row.values()]
        print("| " + " | ".join(str(c) for c in cells) + " |")
    return rows


if __name__ == "__main__":
    main()
