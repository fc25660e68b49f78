"""Write the example notebooks from the cell sources below (reproducible, reviewable diffs).

    python notebooks/make_notebooks.py            # write the .ipynb files (no outputs)
    python notebooks/make_notebooks.py --execute  # ... and run them in place (needs ipykernel)

The notebooks are committed without outputs; ``tests/test_notebooks.py`` executes every one
of them and fails on any error. Each cell is ``("md", text)`` or ``("code", source)``.
"""

import argparse
import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent

QUICKSTART = [
    (
        "md",
        """# Quick start: sleepstudy end to end

Reaction times of 18 subjects over 10 days of sleep deprivation (Belenky et al. 2003, as in
lme4). Each subject gets a random intercept and a random slope on `Days`:

$$\\text{Reaction}_{ij} = \\beta_0 + \\beta_1 \\text{Days}_{ij} + b_{0i} + b_{1i}
\\text{Days}_{ij} + \\varepsilon_{ij}, \\quad b_i \\sim N(0, \\Psi), \\;
\\varepsilon_{ij} \\sim N(0, \\sigma^2).$$

lme4: `lmer(Reaction ~ Days + (Days | Subject), sleepstudy)`.""",
    ),
    (
        "code",
        """import mixedjax
from mixedjax import MixedLM

df = mixedjax.datasets.load("sleepstudy")
df.head()""",
    ),
    ("md", "## Fit (REML by default) and look at the result"),
    (
        "code",
        """model = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="~Days")
model""",
    ),
    (
        "code",
        """result = model.fit()
result  # rendered as a table in a notebook (result._repr_html_)""",
    ),
    ("md", "The plain-text summary has statsmodels' layout:"),
    ("code", "print(result.summary())"),
    ("md", "Variance components as lme4 prints them (`VarCorr`), and as a data frame:"),
    (
        "code",
        """from mixedjax.display.varcorr import varcorr_table

print(varcorr_table(result).to_string(index=False))
result.varcorr()""",
    ),
    ("md", "## Estimates, standard errors, random effects"),
    (
        "code",
        """print("fixed effects:", result.fe_params.round(4).to_dict())
print("std. errors:  ", result.bse_fe.round(4).to_dict())
print("sigma^2:      ", round(result.scale, 4))
print("log-lik:      ", round(result.llf, 4))
print("AIC, BIC:     ", round(result.aic, 2), round(result.bic, 2))
result.cov_re""",
    ),
    (
        "code",
        """ranef = result.ranef()  # lme4's as.data.frame(ranef(m, condVar=TRUE))
ranef.head()""",
    ),
    ("code", 'result.random_effects["308"]  # statsmodels-style: one Series per group'),
    ("md", "## Plots"),
    ("code", "result.plot_caterpillar();"),
    ("code", "result.plot_diagnostics();"),
    ("code", 'result.plot_trajectories("Days", max_groups=12);'),
    (
        "md",
        """## Comparing models: do the slopes vary?

A likelihood-ratio test of random slopes against a random intercept needs ML fits
(`reml=False`). The two extra parameters (slope variance and covariance) give a χ²₂
reference, whose tail is `exp(-LR/2)` (conservative: the variance is on its boundary
under the null).""",
    ),
    (
        "code",
        """import math

slopes = model.fit(reml=False)
intercept_only = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject").fit(reml=False)
lr = 2 * (slopes.llf - intercept_only.llf)
print(f"LR = {lr:.2f}, p = {math.exp(-lr / 2):.2e}")
assert lr > 0""",
    ),
    (
        "md",
        """## What the optimiser did

`result.optim` keeps the optimiser's summary (start and final θ, iterations, gradient,
boundary); `model.fit(verbose=True)` also prints its trace, one line per iteration, from
inside the compiled loop.""",
    ),
    ("code", "print(result.optim)"),
]

FROM_STATSMODELS = [
    (
        "md",
        """# Migrating from statsmodels: change one import

The same script runs with statsmodels and with mixedjax; only the import differs. Below, both
fit `Reaction ~ Days` with random intercepts and slopes per subject by REML, and the numbers
are put side by side.""",
    ),
    (
        "code",
        """import numpy as np
import pandas as pd

import mixedjax

try:
    from statsmodels.regression.mixed_linear_model import MixedLM as StatsmodelsMixedLM
except ImportError:  # statsmodels is optional (pip install 'mixedjax[bench]')
    StatsmodelsMixedLM = None
    print("statsmodels is not installed: only the mixedjax column is shown")

df = mixedjax.datasets.load("sleepstudy")""",
    ),
    (
        "md",
        """The script, written once as a function of the `MixedLM` class. With statsmodels you
would write `from statsmodels.regression.mixed_linear_model import MixedLM`; with mixedjax,
`from mixedjax import MixedLM`.""",
    ),
    (
        "code",
        """# statsmodels: from statsmodels.regression.mixed_linear_model import MixedLM
from mixedjax import MixedLM


def analysis(MixedLM):
    model = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="~Days")
    result = model.fit(reml=True)
    return {
        "Intercept": result.fe_params["Intercept"],
        "Days": result.fe_params["Days"],
        "SE Intercept": result.bse_fe["Intercept"],
        "SE Days": result.bse_fe["Days"],
        "Var(Intercept)": result.cov_re.iloc[0, 0],
        "Cov": result.cov_re.iloc[1, 0],
        "Var(Days)": result.cov_re.iloc[1, 1],
        "scale (sigma^2)": result.scale,
        "llf (REML)": result.llf,
    }


columns = {"mixedjax": analysis(MixedLM)}
if StatsmodelsMixedLM is not None:
    columns["statsmodels"] = analysis(StatsmodelsMixedLM)
table = pd.DataFrame(columns)
if StatsmodelsMixedLM is not None:
    table["rel. diff"] = (table["mixedjax"] - table["statsmodels"]) / table["statsmodels"].abs()
table""",
    ),
    (
        "md",
        """The estimates agree to about four significant figures; mixedjax reaches a slightly
higher (or equal) REML log-likelihood because its optimiser ends with exact Newton steps
(lme4's numbers, see the lme4 notebook).""",
    ),
    (
        "code",
        """if StatsmodelsMixedLM is not None:
    assert table.loc["llf (REML)", "mixedjax"] >= table.loc["llf (REML)", "statsmodels"] - 1e-6
    assert np.all(np.abs(table["rel. diff"].iloc[:4]) < 1e-3)""",
    ),
    (
        "md",
        """## The array interface

`MixedLM(endog, exog, groups, exog_re=..., exog_vc=...)` takes the same arrays as
statsmodels, and `fit()` accepts statsmodels' keywords (`reml`, `start_params`, `free`,
`method`; optimiser-chain keywords such as `niter_sa` and `do_cg` are accepted and ignored).""",
    ),
    (
        "code",
        """exog = np.column_stack([np.ones(len(df)), df["Days"]])
m = MixedLM(df["Reaction"], exog, df["Subject"], exog_re=exog)
r = m.fit(method=["lbfgs"], niter_sa=0, do_cg=True)
r.params  # statsmodels' packed layout: beta, tril(cov_re)/scale""",
    ),
    (
        "md",
        """`loglike`, `score` and `hessian` follow statsmodels (exact derivatives by autodiff):""",
    ),
    (
        "code",
        """from mixedjax import MixedLMParams

p = MixedLMParams.from_components(
    fe_params=r.fe_params.to_numpy(), cov_re=r.cov_re_unscaled.to_numpy()
)
print("loglike", m.loglike(p, reml=True))
print("score  ", m.score(p, reml=True))""",
    ),
    (
        "md",
        """## What differs

* Variance-parameter standard errors in `summary()` are Wald SEs of the data-scale variances
  from the exact Hessian (statsmodels prints a quantity on another scale there).
* `summary()` adds a `Singular:` line (lme4's `isSingular`).
* Results are immutable and also offer lme4's views: `varcorr()`, `ranef()`.""",
    ),
    ("code", "print(r.summary())"),
]

FROM_LME4 = [
    (
        "md",
        """# Migrating from lme4

The lme4 numbers shown here are the reference fits stored with the tests
(`tests/reference/*.json`, made by `tests/reference/make_reference.R` with lme4 1.1-31 and a
tight optimiser tolerance). The mixedjax model is written with statsmodels-style arguments
(`groups`, `re_formula`, `vc_formula`); the lme4 formula is shown next to it.""",
    ),
    (
        "code",
        """import json
from pathlib import Path

import numpy as np
import pandas as pd

import mixedjax
from mixedjax.display.varcorr import varcorr_table

REFERENCE = Path("..") / "tests" / "reference"


def reference(name):
    ref = json.loads((REFERENCE / f"{name}.json").read_text())
    data = pd.read_csv(REFERENCE / ref["data"], dtype={f: str for f in ref["factors"]})
    return ref, data""",
    ),
    (
        "md",
        """## Formula translation

| lme4 | mixedjax (statsmodels arguments) |
| --- | --- |
| `y ~ x + (1 \\| g)` | `from_formula("y ~ x", df, groups="g")` |
| `y ~ x + (x \\| g)` | `from_formula("y ~ x", df, groups="g", re_formula="~x")` |
| `y ~ x + (x \\|\\| g)` | `re_formula="~x"`, `fit(free=...)` with a diagonal mask |
| `y ~ 1 + (1 \\| g) + (1 \\| g:h)` | `groups="g", vc_formula={"h": "0 + C(h)"}` |
| `REML = FALSE` | `fit(reml=False)` |
| `fixef(m)`, `vcov(m)` | `result.fe_params`, `result.cov_params()` |
| `VarCorr(m)`, `as.data.frame(VarCorr(m))` | `varcorr_table(result)`, `result.varcorr()` |
| `ranef(m, condVar = TRUE)` | `result.ranef()` |
| `logLik(m)`, `AIC(m)`, `BIC(m)` | `result.llf`, `result.aic`, `result.bic` |
| `getME(m, "theta")` | `result.theta` |
| `isSingular(m)` | `result.is_singular` |
| `fitted(m)`, `residuals(m)` | `result.fittedvalues`, `result.resid` |""",
    ),
    ("md", "## sleepstudy: `Reaction ~ Days + (Days | Subject)`"),
    (
        "code",
        """ref, data = reference("sleepstudy_reml")
model = mixedjax.MixedLM.from_formula("Reaction ~ Days", data, groups="Subject", re_formula="~Days")
result = model.fit(reml=True)
print("lme4:    ", ref["lme4_formula"])
print("mixedjax:", model)

fixed = pd.DataFrame(
    {
        "lme4 estimate": ref["fixed"]["estimate"],
        "mixedjax estimate": result.fe_params.to_numpy(),
        "lme4 SE": ref["fixed"]["se"],
        "mixedjax SE": result.bse_fe.to_numpy(),
    },
    index=ref["fixed"]["names"],
)
fixed""",
    ),
    ("md", "`VarCorr` as lme4 prints it, with lme4's standard deviations alongside:"),
    (
        "code",
        """table = varcorr_table(result)
cov = np.asarray(ref["random"][0]["cov"])
lme4_sd = [*np.sqrt(np.diag(cov)), ref["residual_variance"] ** 0.5]
table["lme4 Std.Dev."] = np.round(lme4_sd, 3)
table""",
    ),
    (
        "code",
        """pd.DataFrame(
    {
        "lme4": [ref["loglik"], ref["aic"], ref["bic"], *ref["theta"]],
        "mixedjax": [result.llf, result.aic, result.bic, *result.theta],
    },
    index=["logLik (REML)", "AIC", "BIC", "theta[0]", "theta[1]", "theta[2]"],
)""",
    ),
    ("md", "Conditional modes and conditional SDs (`ranef(m, condVar = TRUE)`):"),
    (
        "code",
        """lme4_ranef = pd.DataFrame(ref["ranef"][0])[["level", "term", "value", "cond_sd"]]
ours = result.ranef().rename(columns={"grp": "level"})
both = lme4_ranef.merge(ours, on=["level", "term"])
print("max |BLUP difference|:", float(np.max(np.abs(both["value"] - both["condval"]))))
both.head()""",
    ),
    (
        "md",
        """## Nested random effects

lme4's `(1 | batch) + (1 | batch:cask)`: casks nested in batches. With statsmodels arguments
the cask intercepts are a variance component within each batch.""",
    ),
    (
        "code",
        """cases = {
    "pastes_reml": dict(
        formula="strength ~ 1", groups="batch", re_formula="~1", vc_formula={"cask": "0 + C(cask)"}
    ),
}
rows = []
for name, args in cases.items():
    ref, data = reference(name)
    args = dict(args)
    formula = args.pop("formula")
    res = mixedjax.MixedLM.from_formula(formula, data, **args).fit(reml=ref["reml"])
    rows.append(
        {
            "lme4 formula": ref["lme4_formula"],
            "mixedjax call": f"from_formula({formula!r}, **{args})",
            "lme4 logLik": ref["loglik"],
            "mixedjax llf": res.llf,
            "lme4 sigma^2": ref["residual_variance"],
            "mixedjax scale": res.scale,
        }
    )
    assert res.llf >= ref["loglik"] - 1e-6 * abs(ref["loglik"])
pd.DataFrame(rows)""",
    ),
    ("md", "lme4's `VarCorr` for the nested model:"),
    ("code", "print(varcorr_table(res).to_string(index=False))"),
]

MANY_MODELS = [
    (
        "md",
        """# Many groups and many models

Two kinds of scale: **many models** (the same design with many responses — one per gene,
per simulation, per bootstrap replicate) and **many groups** (one model with a very large
number of subjects). `fit_many` fits many responses in one compiled call (continuous
batching: a finished fit hands its slot to the next response); a single
fit's cost grows linearly with the number of groups and not with the number of rows.""",
    ),
    (
        "code",
        """import time

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import mixedjax
from mixedjax import MixedLM

df = mixedjax.datasets.load("sleepstudy")
model = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="~Days")
single = model.fit()
single.fe_params""",
    ),
    (
        "md",
        """## Many responses on one design: `fit_many`

Simulate 300 responses from the fitted model (new random effects and residuals each time,
lme4's `simulate`) and fit all of them in one call. Only `Z_i'y`, `X'y` and `y'y` are
computed per response; the design's cross-products are shared.""",
    ),
    (
        "code",
        """Y = single.simulate(300, seed=1).T  # (180 rows, 300 responses)
start = time.perf_counter()
batch = model.fit_many(Y)  # progress=True shows a bar of finished fits
print(f"300 fits in {time.perf_counter() - start:.1f} s (including compilation)")
batch  # rendered as a table in a notebook (BatchResults._repr_html_)""",
    ),
    ("md", "`frame()` has one row per fit, ready for pandas:"),
    ("code", 'batch.frame().describe().T[["mean", "std", "min", "max"]]'),
    (
        "md",
        """Each member is the fit of that response alone — `batch.result(i)` gives its full
results object (summary, BLUPs, inference):""",
    ),
    (
        "code",
        """alone = MixedLM.from_formula(
    "y ~ Days", df.assign(y=Y[:, 7]), groups="Subject", re_formula="~Days"
).fit()
member = batch.result(7)
comparison = pd.DataFrame(
    {"fit_many, member 7": [*member.fe_params, member.llf],
     "fitted alone": [*alone.fe_params, alone.llf]},
    index=[*member.fe_params.index, "llf"],
)
assert np.allclose(member.fe_params, alone.fe_params, rtol=1e-8, atol=0)
assert abs(member.llf - alone.llf) < 1e-8 * abs(alone.llf)
comparison""",
    ),
    (
        "md",
        """The 300 fits are a simulation study in one line: the spread of the slope estimates
should match the model-based standard error.""",
    ),
    (
        "code",
        """slopes = batch.fe_params["Days"]
print(f"sd of the 300 slope estimates: {slopes.std():.3f}")
print(f"mean model-based SE:           {batch.bse_fe['Days'].mean():.3f}")
assert batch.converged.all()
fig, ax = plt.subplots(figsize=(5, 3))
ax.hist(slopes, bins=30, color="0.7")
ax.axvline(single.fe_params["Days"], color="k", label="value simulated from")
ax.set_xlabel("estimated Days slope")
ax.legend();""",
    ),
    (
        "md",
        """Independent data sets of different sizes with one structure are fitted together by
`mixedjax.fit_models([m1, m2, ...])` (the group axis is padded with empty groups, which
change no likelihood).

## Many groups: how a fit scales

The sleepstudy design (10 visits per subject) with its own 18 subjects and, simulated, with
1,000 and 100,000 subjects; each fit is timed live. The first fit of a size includes
compilation (small problems are padded to a size class, so similar sizes share compiled
code: the simulated 18-subject data reuse the model fitted above); the warm fit is the
best of three.""",
    ),
    (
        "code",
        """rng = np.random.default_rng(0)


def simulate(n_groups, per_group=10):
    g = np.repeat(np.arange(n_groups), per_group)
    days = np.tile(np.arange(per_group, dtype=float), n_groups)
    b0, b1 = rng.normal(0, 25, n_groups), rng.normal(0, 6, n_groups)
    y = 250 + 10 * days + b0[g] + b1[g] * days + rng.normal(0, 25, g.size)
    return pd.DataFrame({"y": y, "Days": days, "g": g})


def seconds(f):
    start = time.perf_counter()
    out = f()
    return time.perf_counter() - start, out


rows = []
for n_groups in (18, 1_000, 100_000):
    data = simulate(n_groups)
    start = time.perf_counter()
    m = MixedLM.from_formula("y ~ Days", data, groups="g", re_formula="~Days")
    build = time.perf_counter() - start
    first, fit = seconds(m.fit)
    warm = min(seconds(m.fit)[0] for _ in range(3))
    assert fit.converged and abs(fit.fe_params["Days"] - 10) < (6.0 if n_groups < 100 else 1.0)
    rows.append({"groups": n_groups, "rows": len(data), "build model (s)": build,
                 "first fit (s)": first, "warm fit (s)": warm,
                 "Days slope": fit.fe_params["Days"]})
timings = pd.DataFrame(rows)
timings""",
    ),
    (
        "code",
        """fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(timings["groups"], timings["warm fit (s)"], "o-", label="warm fit")
ax.loglog(timings["groups"], timings["first fit (s)"], "s--", label="first fit (compiles)")
ref = timings["warm fit (s)"].iloc[-1] * timings["groups"] / timings["groups"].iloc[-1]
ax.loglog(timings["groups"], ref, ":", color="0.5", label="linear in groups")
ax.set_xlabel("number of groups (10 rows each)")
ax.set_ylabel("seconds")
ax.legend();""",
    ),
    (
        "md",
        """Timings are measured on whatever machine runs this notebook (in CI: two shared CPU
cores); `benchmarks/` compares against lme4 and statsmodels on a quiet machine. Beyond
memory, `mixedjax.from_chunks` builds the same model from chunks of rows, and
`model.fit(devices=...)` shards the groups over several devices.""",
    ),
]

DIFFERENTIABLE = [
    (
        "md",
        """# A differentiable pipeline

`mixedjax.functional` exposes the model as pure functions of a data pytree, so `jax.jit`,
`jax.vmap` and `jax.grad` compose with them:

* `F.make_data(y, X, Z, codes, n_groups)` — per-group cross-products (differentiable in
  `y`, `X`, `Z`);
* `F.deviance(theta, data)` — the profiled deviance $d(\\theta)$ (lme4's objective);
* `F.fit(data)` — $\\hat\\theta = \\arg\\min d$ and the estimates at $\\hat\\theta$. Its
  derivative is not taken through the optimiser's iterations but by **implicit
  differentiation** at the optimum: $\\nabla_\\theta d(\\hat\\theta(D); D) = 0$ gives
  $\\dot\\theta = -H^{-1}\\, \\partial_D \\nabla_\\theta d[\\dot D]$.""",
    ),
    (
        "code",
        """import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
import optax
import pandas as pd

import mixedjax  # turns on float64
from mixedjax import functional as F

df = mixedjax.datasets.load("sleepstudy")
codes = pd.factorize(df["Subject"], sort=True)[0]
X = np.column_stack([np.ones(len(df)), df["Days"]])  # fixed effects; Z = X (random slopes)
y = jnp.asarray(df["Reaction"].to_numpy())
data = F.make_data(y, X, X, codes, 18)
data.ZtZ.shape  # (groups, r, r): all a deviance evaluation needs""",
    ),
    (
        "md",
        """## The profiled deviance: `jit`, `grad`, `vmap`

At lme4's optimum (its `getME(m, "theta")`) the deviance is lme4's REML criterion and the
gradient is zero; elsewhere the autodiff gradient matches central finite differences.""",
    ),
    (
        "code",
        """theta_lme4 = jnp.array([0.966732791471446, 0.0151690598803683, 0.230909598085307])
deviance = jax.jit(F.deviance)
gradient = jax.jit(jax.grad(F.deviance))
print("d(theta_lme4) =", float(deviance(theta_lme4, data)), "(lme4: 1743.6283)")
print("gradient there:", np.asarray(gradient(theta_lme4, data)))

theta = theta_lme4 * jnp.array([1.3, 1.0, 0.8])  # away from the optimum
h, eye = 1e-6, jnp.eye(3)
finite = [(deviance(theta + h * e, data) - deviance(theta - h * e, data)) / (2 * h) for e in eye]
pd.DataFrame({"autodiff": np.asarray(gradient(theta, data)),
              "finite differences": np.asarray(finite)}, index=["theta1", "theta2", "theta3"])""",
    ),
    ("md", "`vmap` evaluates the deviance along a whole slice of parameter space in one call:"),
    (
        "code",
        """factors = jnp.linspace(0.3, 2.5, 60)
slice_ = jax.jit(jax.vmap(lambda s: F.deviance(theta_lme4.at[0].set(s * theta_lme4[0]), data)))
curve = slice_(factors)
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(factors * theta_lme4[0], curve)
ax.axvline(theta_lme4[0], color="k", lw=0.8)
ax.set_xlabel(r"$\\theta_1$ (others at the optimum)")
ax.set_ylabel("REML criterion");""",
    ),
    (
        "md",
        """## The fit as a function

`F.fit` runs the same optimiser and boundary rule as `MixedLM.fit`, under `jit`:""",
    ),
    (
        "code",
        """fit = jax.jit(F.fit)
fitted = fit(data)
print("beta: ", np.round(np.asarray(fitted.beta), 4), "(lme4: 251.4051, 10.4673)")
print("theta:", np.round(np.asarray(fitted.theta), 5))
assert np.allclose(fitted.theta, theta_lme4, atol=1e-5)""",
    ),
    (
        "md",
        """## Learning an upstream transformation through the fit

Each of 30 subjects has 10 visits with four raw measurements `U`. The outcome depends on
them only through an unknown score $s = U w^*$ plus a subject effect,
$y = 1 + 2s + b_\\text{subject} + \\varepsilon$. We learn $w$ so that a random-intercept
LMM fitted on the first 7 visits of every subject predicts the last 3 visits well: every
step fits the LMM (REML, inside `jit`) and differentiates the held-out error with respect
to $w$ through $\\hat\\theta$ (implicitly), $\\hat\\beta$ and the BLUPs
(`examples/differentiable_pipeline.py` is the script version).""",
    ),
    (
        "code",
        """N_GROUPS, PER_GROUP, N_TRAIN = 30, 10, 7
rng = np.random.default_rng(0)
w_true = np.array([1.0, -0.5, 0.25, 0.0])
group = np.repeat(np.arange(N_GROUPS), PER_GROUP)
U = rng.normal(size=(group.size, 4))
b = 1.5 * rng.normal(size=N_GROUPS)
outcome = 1.0 + 2.0 * U @ w_true + b[group] + 0.5 * rng.normal(size=group.size)
train = np.tile(np.arange(PER_GROUP) < N_TRAIN, N_GROUPS)


def heldout_loss(w):
    \"\"\"Mean squared error of the LMM's conditional predictions on held-out visits.\"\"\"
    Xw = jnp.stack([jnp.ones(group.size), jnp.asarray(U) @ w], axis=1)
    Z = jnp.ones((group.size, 1))
    fit_data = F.make_data(outcome[train], Xw[train], Z[train], group[train], N_GROUPS)
    fitted = F.fit(fit_data)
    pred = F.predict(fitted, Xw[~train], Z[~train], group[~train], fit_data)
    return jnp.mean((outcome[~train] - pred) ** 2)


value_and_grad = jax.jit(jax.value_and_grad(heldout_loss))
w = jnp.full(4, 0.3)
value, grad = value_and_grad(w)
# the gradient through the fit against central differences of the loss
eps = 1e-5
finite = [(value_and_grad(w + eps * e)[0] - value_and_grad(w - eps * e)[0]) / (2 * eps)
          for e in jnp.eye(4)]
print("implicit-diff gradient:", np.round(np.asarray(grad), 6))
print("finite differences:    ", np.round(np.asarray(finite), 6))
assert np.allclose(grad, finite, rtol=1e-4, atol=1e-7)""",
    ),
    (
        "code",
        """optimizer = optax.adam(0.05)
state = optimizer.init(w)
losses = []
for _ in range(60):
    value, grad = value_and_grad(w)
    losses.append(float(value))
    updates, state = optimizer.update(grad, state)
    w = optax.apply_updates(w, updates)
cosine = float(w @ w_true / (jnp.linalg.norm(w) * np.linalg.norm(w_true)))
print(f"held-out MSE {losses[0]:.3f} -> {losses[-1]:.3f}; cosine(w, w*) = {cosine:.4f}")
assert losses[-1] < 0.5 * losses[0] and cosine > 0.99
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(losses)
ax.set_xlabel("Adam step")
ax.set_ylabel("held-out MSE");""",
    ),
    (
        "md",
        """The scale of $w$ is absorbed by $\\hat\\beta$, so the direction of $w$ is what is
learned. `jax.vmap(F.fit)` fits many data sets at once (`MixedLM.fit_many` does the same
for many responses, with continuous batching instead of `vmap`).""",
    ),
]

INFERENCE = [
    (
        "md",
        """# Inference: tests, intervals, bootstrap, prediction

Fixed-effect tests with Satterthwaite and Kenward-Roger degrees of freedom (lmerTest,
pbkrtest), likelihood-ratio tests (lme4's `anova`), profile-likelihood and parametric
bootstrap intervals (`confint(method = "profile" / "boot")`), and predictions with
intervals.""",
    ),
    (
        "code",
        """import pandas as pd

import mixedjax
from mixedjax import MixedLM
from mixedjax.display.plots import profile_zeta

df = mixedjax.datasets.load("sleepstudy")
model = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject", re_formula="~Days")
result = model.fit()  # REML""",
    ),
    (
        "md",
        """## Fixed effects: t tests with small-sample degrees of freedom

lmerTest's `summary(m)` (Satterthwaite) and `summary(m, ddf = "Kenward-Roger")`. With 18
subjects both give 17 denominator degrees of freedom here (a balanced design).""",
    ),
    ("code", 'result.coef_table(ddf="satterthwaite")'),
    ("code", 'result.coef_table(ddf="kenward-roger")'),
    ("md", "F tests per term (lmerTest's `anova(m)`) and of any linear hypothesis:"),
    (
        "code",
        """print(result.wald_test("Days = 10", ddf="kenward-roger"))
result.anova()""",
    ),
    (
        "md",
        """## Comparing models: likelihood-ratio test

Do the slopes vary between subjects? A likelihood-ratio test compares ML fits
(`mixedjax.lrt` refits REML fits by ML itself, as lme4's `anova` does) and reports AIC,
BIC, the χ² statistic and its p-value (conservative here: the slope variance is on its
boundary under the null).""",
    ),
    (
        "code",
        """intercepts = MixedLM.from_formula("Reaction ~ Days", df, groups="Subject")
fit_ml = intercepts.fit(reml=False)
table = mixedjax.lrt(fit_ml, model.fit(reml=False), names=["(1 | Subject)", "(Days | Subject)"])
assert table["Pr(>Chisq)"].iloc[1] < 1e-6
table""",
    ),
    (
        "md",
        """## Three intervals for one model

For the random-intercept model: Wald intervals (from the curvature at the optimum),
profile-likelihood intervals (lme4's `confint(m)`: the parameter is moved and the others
re-optimised until the deviance rises by $\\chi^2_{1, 0.95}$) and parametric-bootstrap
percentile intervals (`confint(m, method = "boot")`), on lme4's scale (standard
deviations, σ, fixed effects). Profiles use the ML deviance, as lme4's do.""",
    ),
    (
        "code",
        """traces = fit_ml.profile(alpha=0.05)  # one zeta trace per parameter, spanning its 95% CI
profile_ci = fit_ml.conf_int(method="profile")
profile_ci""",
    ),
    (
        "md",
        """The profile-ζ plot: ζ is the signed square root of the likelihood-ratio statistic.
A straight line means a quadratic log-likelihood, where Wald intervals are accurate; the
standard deviations' traces bend, so their intervals are asymmetric.""",
    ),
    ("code", "profile_zeta(traces);"),
    (
        "md",
        """(The Wald column covers the fixed effects only: statsmodels' Wald intervals for the
variance parameters are on the variance scale, not lme4's standard-deviation scale.)

The parametric bootstrap simulates 200 responses from the fit and refits them all in
vmapped batches of replicates (the bar, forced on here with `progress=True`, shows by
default in notebooks and terminals and advances once per batch):""",
    ),
    (
        "code",
        """boot = fit_ml.parametric_bootstrap(200, seed=1, progress=True)
print(f"{boot.converged.sum()} of 200 refits converged")
wald = fit_ml.conf_int()  # Wald, statsmodels' layout: fixed effects first
intervals = pd.concat(
    {"Wald": wald.loc[["Intercept", "Days"]].set_axis(["lower", "upper"], axis=1)
               .rename(index={"Intercept": "(Intercept)"}),
     "profile": profile_ci, "bootstrap": boot.conf_int()},
    axis=1,
)
estimate = boot.estimate.loc[profile_ci.index]
assert (profile_ci["lower"] < estimate).all() and (estimate < profile_ci["upper"]).all()
intervals.round(3)""",
    ),
    (
        "md",
        """## Predictions with intervals

For new rows: a seen subject gets its BLUP, an unseen one the population prediction.
`interval="confidence"` is the uncertainty of the predicted mean (Henderson's
prediction-error variance); `"prediction"` adds the residual variance σ² for a new
observation.""",
    ),
    (
        "code",
        """new = pd.DataFrame({"Days": [0, 5, 10, 5], "Subject": ["308", "308", "308", "new"]})
mean = result.predict(new, interval="confidence")
obs = result.predict(new, interval="prediction")
assert (obs["se"] > mean["se"]).all()
pd.concat({"confidence": mean, "prediction": obs}, axis=1).set_index(
    new["Subject"] + ", day " + new["Days"].astype(str)
).round(2)""",
    ),
]

NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_from_statsmodels.ipynb": FROM_STATSMODELS,
    "03_from_lme4.ipynb": FROM_LME4,
    "04_many_models.ipynb": MANY_MODELS,
    "05_differentiable_pipeline.ipynb": DIFFERENTIABLE,
    "06_inference.ipynb": INFERENCE,
}


def build(cells) -> nbformat.NotebookNode:
    """A notebook (nbformat 4, Python 3 kernel) from ``(kind, source)`` pairs."""
    nb = nbformat.v4.new_notebook()
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
    }
    for kind, source in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        elif kind == "code":
            nb.cells.append(nbformat.v4.new_code_cell(source))
        else:
            raise ValueError(f"unknown cell kind {kind!r}")
    for k, cell in enumerate(nb.cells):  # stable ids keep the files' diffs small
        cell["id"] = f"cell-{k:02d}"
    return nb


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--execute", action="store_true", help="run them in place")
    args = parser.parse_args(argv)
    for name, cells in NOTEBOOKS.items():
        nb = build(cells)
        if args.execute:
            from nbclient import NotebookClient

            NotebookClient(nb, timeout=600, resources={"metadata": {"path": str(HERE)}}).execute()
        nbformat.validate(nb)
        nbformat.write(nb, HERE / name)
        print(f"wrote {HERE / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
