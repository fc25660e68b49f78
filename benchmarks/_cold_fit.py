"""One cold mixedjax fit, run by bench_core.py in a fresh Python process.

Usage: python _cold_fit.py DATA.csv
Prints one JSON line: seconds spent importing mixedjax (and JAX), building the model and
fitting it the first time (tracing and XLA compilation included), plus the log-likelihood.
pandas is imported and the CSV read before the clock starts, as a user would have their data
in hand before fitting. bench_core.py disables JAX's persistent compilation cache.
"""

import json
import sys
import time

import pandas as pd
from _common import ROOT  # noqa: F401  (puts this checkout first on sys.path)

df = pd.read_csv(sys.argv[1])
t0 = time.perf_counter()
from mixedjax import MixedLM  # noqa: E402

t1 = time.perf_counter()
model = MixedLM.from_formula("y ~ x", df, groups="g", re_formula="~x")
t2 = time.perf_counter()
result = model.fit()
llf = result.llf
t3 = time.perf_counter()
print(
    json.dumps(
        {
            "import": t1 - t0,
            "build": t2 - t1,
            "fit": t3 - t2,
            "total": t3 - t0,
            "llf": llf,
            "converged": bool(result.converged),
        }
    )
)
