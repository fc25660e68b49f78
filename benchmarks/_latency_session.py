"""One library's part of bench_latency.py, run in a fresh Python process.

Usage::

    python _latency_session.py session LIB DATA_DIR OUT.json [--crossed]
    python _latency_session.py scale LIB DATA.csv REPS OUT.json

``LIB`` is ``mixedjax``, ``mixedlm`` (the lme4 port on PyPI) or ``mixedlm-rs`` (statsmodels
style, one grouping factor).

*session*: imports the library, reads the session's CSVs, then fits the eight models of
:data:`MODELS` one after another, each followed by printing its summary (as a notebook cell
would), and writes the times to ``OUT.json``. ``time.time()`` at the end of the eighth model
is written too, so that bench_latency.py can subtract the time it launched this process and
get the total including interpreter start-up. With ``--crossed`` the crossed-slopes model is
fitted after that (its first fit in this already warm process, then a second one).

*scale*: reads the CSV, then ``import`` + model construction + first fit (the *cold* fit of a
fresh process), then ``REPS`` more fits of the same data, best taken (*warm*).

A model a library does not support is recorded with the reason and skipped. Nothing here
asserts a wall-clock time.
"""

import json
import sys
import time
import warnings
from pathlib import Path

# Put this checkout first on sys.path without importing _common (it imports nothing heavy,
# but the session's start-up should be the library's alone).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

#: Grouping and factor columns of each CSV (read as strings).
FACTORS = {
    "sleepstudy": ["Subject"],
    "re3": ["g"],
    "dyestuff": ["Batch"],
    "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"],
    "orthodont": ["Subject", "Sex"],
    "mathachieve": ["School", "Minority", "Sex"],
    "crossed": ["subj", "item"],
}

#: The session's models: key, data set, lme4 formula, REML, and the statsmodels-style
#: (formula, groups, re_formula) for libraries without bar terms (None: not expressible
#: with one grouping factor and no variance components).
MODELS = [
    (
        "sleepstudy",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        True,
        ("Reaction ~ Days", "Subject", "~Days"),
    ),
    ("re3", "re3", "y ~ x1 + x2 + (1 + x1 + x2 | g)", True, ("y ~ x1 + x2", "g", "~x1 + x2")),
    ("dyestuff", "dyestuff", "Yield ~ 1 + (1 | Batch)", True, ("Yield ~ 1", "Batch", None)),
    ("penicillin", "penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)", True, None),
    ("pastes", "pastes", "strength ~ 1 + (1 | batch/cask)", True, None),
    (
        "orthodont",
        "orthodont",
        "distance ~ age + Sex + (1 | Subject)",
        True,
        ("distance ~ age + Sex", "Subject", None),
    ),
    (
        "mathachieve",
        "mathachieve",
        "MathAch ~ SES + MEANSES + (SES | School)",
        True,
        ("MathAch ~ SES + MEANSES", "School", "~SES"),
    ),
    (
        "sleepstudy_ml",
        "sleepstudy",
        "Reaction ~ Days + (Days | Subject)",
        False,
        ("Reaction ~ Days", "Subject", "~Days"),
    ),
]
CROSSED = ("crossed", "crossed", "y ~ x + (x | subj) + (1 | item)", True, None)
SCALE = ("scale", None, "y ~ x + (x | g)", True, ("y ~ x", "g", "~x"))

#: Each library's reason for models it cannot express.
UNSUPPORTED = {
    "mixedlm-rs": "one grouping factor only (no crossed factors, no variance components)",
}


def import_lib(lib: str):
    if lib == "mixedjax":
        import mixedjax

        return mixedjax
    if lib == "mixedlm":
        import mixedlm

        return mixedlm
    if lib == "mixedlm-rs":
        import mixedlm_rs

        return mixedlm_rs
    raise ValueError(f"unknown library {lib!r}")


def fit_one(lib: str, mod, spec, df) -> tuple[object, float]:
    """Build and fit one model; return the result and its log-likelihood."""
    _, _, formula, reml, sm = spec
    if lib == "mixedjax":
        result = mod.mixedlm(formula, df).fit(reml=reml)
        return result, float(result.llf)
    if lib == "mixedlm":
        result = mod.lmer(formula, df, REML=reml)
        return result, float(result.logLik().value)
    if lib == "mixedlm-rs":
        if sm is None:
            raise NotImplementedError(UNSUPPORTED[lib])
        fe, groups, re_formula = sm
        result = mod.mixedlm(fe, df, groups=groups, re_formula=re_formula).fit(reml=reml)
        return result, float(result.llf)
    raise ValueError(lib)


def converged(result) -> bool | None:
    value = getattr(result, "converged", None)
    return None if value is None else bool(value)


def read(data_dir: Path, name: str):
    import pandas as pd

    return pd.read_csv(data_dir / f"{name}.csv", dtype={c: str for c in FACTORS.get(name, [])})


def timed_model(lib: str, mod, spec, df) -> dict:
    """Fit + print the summary of one model, each timed; errors are recorded, not raised."""
    key = spec[0]
    entry = {"key": key}
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result, llf = fit_one(lib, mod, spec, df)
        t1 = time.perf_counter()
        print(f"\n===== {lib}: {key} =====")
        print(result.summary())
        t2 = time.perf_counter()
    except NotImplementedError as exc:
        entry["skipped"] = str(exc) or type(exc).__name__
        return entry
    except Exception as exc:  # a failing model is a result too
        entry["error"] = f"{type(exc).__name__}: {exc}"[:300]
        entry["time"] = time.perf_counter() - t0
        return entry
    entry.update(fit=t1 - t0, summary=t2 - t1, time=t2 - t0, llf=llf, converged=converged(result))
    return entry


def run_session(lib: str, data_dir: Path, out: Path, crossed: bool) -> None:
    t0 = time.perf_counter()
    mod = import_lib(lib)
    t_import = time.perf_counter() - t0
    t1 = time.perf_counter()
    frames = {name: read(data_dir, name) for name in {spec[1] for spec in MODELS}}
    t_data = time.perf_counter() - t1
    models = [timed_model(lib, mod, spec, frames[spec[1]]) for spec in MODELS]
    end_epoch = time.time()
    record = {
        "lib": lib,
        "import": t_import,
        "data": t_data,
        "models": models,
        "session_end_epoch": end_epoch,
    }
    if crossed:
        df = read(data_dir, "crossed")
        first = timed_model(lib, mod, CROSSED, df)
        second = timed_model(lib, mod, CROSSED, df)
        record["crossed"] = {"first": first, "second": second}
    out.write_text(json.dumps(record))


def run_scale(lib: str, csv: Path, reps: int, out: Path) -> None:
    import pandas as pd

    df = pd.read_csv(csv, dtype={"y": float, "x": float, "g": str})
    spec = SCALE
    t0 = time.perf_counter()
    mod = import_lib(lib)
    t1 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result, llf = fit_one(lib, mod, spec, df)
        t2 = time.perf_counter()
        warm = []
        for _ in range(reps):
            s = time.perf_counter()
            result, llf_warm = fit_one(lib, mod, spec, df)
            warm.append(time.perf_counter() - s)
    out.write_text(
        json.dumps(
            {
                "lib": lib,
                "import": t1 - t0,
                "first_fit": t2 - t1,
                "cold": t2 - t0,
                "warm": min(warm) if warm else None,
                "warm_all": warm,
                "llf": llf,
                "llf_warm": llf_warm if warm else None,
                "converged": converged(result),
            }
        )
    )


def main(argv: list[str]) -> None:
    mode, lib = argv[0], argv[1]
    if mode == "session":
        run_session(lib, Path(argv[2]), Path(argv[3]), crossed="--crossed" in argv[4:])
    elif mode == "scale":
        run_scale(lib, Path(argv[2]), int(argv[3]), Path(argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
