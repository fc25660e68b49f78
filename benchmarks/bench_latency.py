"""Time to first answer: a notebook-like session of small models, mixedjax against its peers.

Usage (from the repository root)::

    python benchmarks/bench_latency.py           # the whole benchmark (~5-10 min, 2 cores)
    python benchmarks/bench_latency.py --quick   # smoke test: scale at 1,000 and 10,000 only

Each library runs in fresh processes of its own (``_latency_session.py`` for the Python
libraries, ``lme4_latency.R`` for lme4), on the same CSV files under
``benchmarks/_out/latency/``:

1. *Session*: eight small models fitted one after another in one process, each model's fit
   and the printing of its summary timed, and the process total from launching the
   interpreter (or ``Rscript``) to the end of the eighth model, start-up and imports
   included. mixedjax runs it twice: first with an empty compilation cache (a fresh
   ``MIXEDJAX_CACHE_DIR``), then again in a new process reusing that directory. lme4 runs it
   once (R has nothing to compile); the PyPI peers ``mixedlm`` (an lme4 port) and
   ``mixedlm-rs`` (statsmodels style, one grouping factor) run the models they support.
2. *Crossed slopes*: 40 subjects x 40 items (1,600 rows), ``y ~ x + (x | subj) + (1 | item)``,
   fitted in the same process right after the session (its first fit in a warm process).
3. *Scale*: ``y ~ x + (x | g)``, 10 rows per group (``_common.simulate``), at 1,000, 10,000
   and 100,000 groups; one fresh process per library and size: *cold* = import + build + first
   fit (mixedjax with an empty compilation cache), *warm* = best of the following fits.

It writes the ``bench_latency`` section of ``benchmarks/RESULTS.md`` and states which of the
latency targets the run met. A benchmark, not a test: it asserts nothing about wall-clock
time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _common import (
    BENCH_DIR,
    OUT_DIR,
    ROOT,
    environment_lines,
    fmt_ratio,
    fmt_s,
    log,
    markdown_table,
    publish,
    r_versions,
    simulate,
)

DATA_DIR = OUT_DIR / "latency"
SESSION = BENCH_DIR / "_latency_session.py"
R_SCRIPT = BENCH_DIR / "lme4_latency.R"
MATHACHIEVE = ROOT / "tests" / "reference" / "data" / "mathachieve.csv"
PY_PEERS = ("mixedlm", "mixedlm-rs")
DEFAULT_SIZES = (1_000, 10_000, 100_000)
QUICK_SIZES = (1_000, 10_000)
#: Warm repetitions after the cold fit, per size (one above 10,000 groups: lme4 and mixedlm
#: take seconds per fit there).
REPS = {1_000: 3, 10_000: 3}
REPS_LARGE = 1

#: The session's models as shown in the tables (same order as _latency_session.MODELS).
MODEL_LABELS = [
    ("sleepstudy", "sleepstudy `Reaction ~ Days + (Days | Subject)`, REML"),
    ("re3", "simulated `y ~ x1 + x2 + (1 + x1 + x2 | g)` (30 groups x 20)"),
    ("dyestuff", "dyestuff `Yield ~ 1 + (1 | Batch)`"),
    ("penicillin", "penicillin `diameter ~ 1 + (1 | plate) + (1 | sample)`"),
    ("pastes", "pastes `strength ~ 1 + (1 | batch/cask)`"),
    ("orthodont", "orthodont `distance ~ age + Sex + (1 | Subject)`"),
    ("mathachieve", "mathachieve `MathAch ~ SES + MEANSES + (SES | School)` (7,185 rows)"),
    ("sleepstudy_ml", "sleepstudy, ML refit (`reml=False`)"),
]
CROSSED_LABEL = "`y ~ x + (x | subj) + (1 | item)`, 40 subjects x 40 items (1,600 rows)"


def other_pytest_running() -> bool:
    """Whether a pytest process is running (a test suite sharing the machine's 2 cores)."""
    try:
        res = subprocess.run(["pgrep", "-f", "pytest"], capture_output=True, text=True)
    except OSError:
        return False
    return any(int(p) != os.getpid() for p in res.stdout.split())


#: One entry per measured process: was a pytest run going on when it was launched?
BUSY_CHECKS: list[tuple[str, bool]] = []


# ---------------------------------------------------------------------------------- data


def simulate_re3(n_groups: int = 30, rows: int = 20, seed: int = 20240602) -> pd.DataFrame:
    """``y = 1 + .5 x1 - .3 x2 + b0 + b1 x1 + b2 x2 + e``, ``(b0, b1, b2)`` correlated."""
    rng = np.random.default_rng(seed)
    cov = np.array([[1.0, 0.3, 0.2], [0.3, 0.5, 0.1], [0.2, 0.1, 0.4]])
    n = n_groups * rows
    g = np.repeat(np.arange(n_groups), rows)
    x1, x2 = rng.standard_normal(n), rng.standard_normal(n)
    b = rng.standard_normal((n_groups, 3)) @ np.linalg.cholesky(cov).T
    y = 1 + 0.5 * x1 - 0.3 * x2 + b[g, 0] + b[g, 1] * x1 + b[g, 2] * x2 + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": [f"g{i:02d}" for i in g]})


def simulate_crossed(n_subj: int = 40, n_item: int = 40, seed: int = 20240603) -> pd.DataFrame:
    """Every subject sees every item once: ``y = 1 + 2x + s0 + s1 x + i0 + e``."""
    rng = np.random.default_rng(seed)
    subj = np.repeat(np.arange(n_subj), n_item)
    item = np.tile(np.arange(n_item), n_subj)
    x = rng.standard_normal(subj.size)
    s = rng.standard_normal((n_subj, 2)) @ np.linalg.cholesky([[1.0, 0.3], [0.3, 0.5]]).T
    i0 = 0.8 * rng.standard_normal(n_item)
    y = 1 + 2 * x + s[subj, 0] + s[subj, 1] * x + i0[item] + rng.standard_normal(subj.size)
    return pd.DataFrame(
        {"y": y, "x": x, "subj": [f"s{i:02d}" for i in subj], "item": [f"i{i:02d}" for i in item]}
    )


def write_data(sizes) -> dict[int, Path]:
    """Write every data set the libraries read under ``_out/latency/``; return the scale
    CSVs by number of groups."""
    os.environ.setdefault("MIXEDJAX_NO_CACHE", "1")  # this process only reads data sets
    import mixedjax

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("sleepstudy", "dyestuff", "penicillin", "pastes", "orthodont"):
        mixedjax.datasets.load(name).to_csv(DATA_DIR / f"{name}.csv", index=False)
    shutil.copyfile(MATHACHIEVE, DATA_DIR / "mathachieve.csv")
    opts = {"index": False, "float_format": "%.17g"}
    simulate_re3().to_csv(DATA_DIR / "re3.csv", **opts)
    simulate_crossed().to_csv(DATA_DIR / "crossed.csv", **opts)
    paths = {}
    for n in sizes:
        paths[n] = DATA_DIR / f"scale_{n}.csv"
        simulate(n).to_csv(paths[n], **opts)
    return paths


# ---------------------------------------------------------------------------- processes


def child_env(cache_dir: Path | None = None) -> dict[str, str]:
    """The environment of a measured process: this checkout first on the path, no JAX cache
    settings of the caller's; mixedjax's compilation cache in ``cache_dir``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_ENABLE_COMPILATION_CACHE"))
        and not k.startswith(("JAX_PERSISTENT_CACHE", "MIXEDJAX_NO_CACHE", "MIXEDJAX_CACHE"))
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if cache_dir is not None:
        env["MIXEDJAX_CACHE_DIR"] = str(cache_dir)
    return env


def launch(cmd: list[str], env: dict[str, str], log_path: Path, timeout: float) -> dict:
    """Run ``cmd``; return its launch time (epoch), wall time and exit status. Its output
    (the printed summaries) goes to ``log_path``."""
    BUSY_CHECKS.append((log_path.stem, other_pytest_running()))
    t_launch = time.time()
    t0 = time.perf_counter()
    try:
        res = subprocess.run(
            cmd, env=env, capture_output=True, text=True, cwd=str(BENCH_DIR), timeout=timeout
        )
        rc, stdout, stderr = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = "timeout", exc.stdout or "", exc.stderr or ""
        stdout = stdout.decode() if isinstance(stdout, bytes) else stdout
        stderr = stderr.decode() if isinstance(stderr, bytes) else stderr
    wall = time.perf_counter() - t0
    log_path.write_text(f"$ {' '.join(cmd)}\n{stdout}\n--- stderr ---\n{stderr}")
    return {"launch_epoch": t_launch, "wall": wall, "rc": rc, "stderr": stderr}


def read_json(path: Path, proc: dict, what: str) -> dict | None:
    if proc["rc"] != 0 or not path.exists():
        log(f"  {what} failed (rc {proc['rc']}): {proc['stderr'][-800:]}")
        return None
    return json.loads(path.read_text())


def py_session(lib: str, out_name: str, cache_dir: Path | None, timeout: float) -> dict | None:
    out = DATA_DIR / f"{out_name}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(SESSION), "session", lib, str(DATA_DIR), str(out), "--crossed"]
    proc = launch(cmd, child_env(cache_dir), DATA_DIR / f"{out_name}.log", timeout)
    rec = read_json(out, proc, f"{lib} session")
    if rec is not None:
        rec["total"] = rec["session_end_epoch"] - proc["launch_epoch"]
        rec["process_wall"] = proc["wall"]
    return rec


def r_session(timeout: float) -> dict | None:
    out = DATA_DIR / "lme4_session.tsv"
    out.unlink(missing_ok=True)
    cmd = ["Rscript", str(R_SCRIPT), "session", str(DATA_DIR), str(out)]
    proc = launch(cmd, child_env(), DATA_DIR / "lme4_session.log", timeout)
    if proc["rc"] != 0 or not out.exists():
        log(f"  lme4 session failed (rc {proc['rc']}): {proc['stderr'][-800:]}")
        return None
    rec = parse_r(out)
    rec["total"] = rec["session_end_epoch"] - proc["launch_epoch"]
    rec["process_wall"] = proc["wall"]
    return rec


def parse_r(path: Path) -> dict:
    """lme4_latency.R writes ``KEY value`` lines and ``MODEL key fit summary llf`` lines."""
    rec: dict = {"models": []}
    crossed: dict = {}
    for line in path.read_text().splitlines():
        parts = line.split("\t")
        if parts[0] in ("MODEL", "CROSSED"):
            key, fit, summ, llf, err = parts[1:6]
            entry = {"key": key}
            if err:
                entry["error"] = err
            else:
                entry.update(fit=float(fit), summary=float(summ), llf=float(llf))
                entry["time"] = entry["fit"] + entry["summary"]
            if parts[0] == "MODEL":
                rec["models"].append(entry)
            else:
                crossed[key] = entry
        elif parts[0] in ("WARM", "FIRST_FIT", "COLD", "IMPORT", "LLF"):
            rec[parts[0].lower()] = [float(v) for v in parts[1:]]
        elif parts[0] == "END":
            rec["session_end_epoch"] = float(parts[1])
    if crossed:
        rec["crossed"] = crossed
    for k in ("import", "first_fit", "cold", "llf"):
        if k in rec:
            rec[k] = rec[k][0]
    if "warm" in rec:
        rec["warm_all"] = rec["warm"]
        rec["warm"] = min(rec["warm"]) if rec["warm"] else None
    return rec


def scale_run(lib: str, csv: Path, reps: int, timeout: float) -> dict | None:
    n = csv.stem.split("_")[-1]
    tag = f"scale_{lib}_{n}"
    if lib == "lme4":
        out = DATA_DIR / f"{tag}.tsv"
        out.unlink(missing_ok=True)
        cmd = ["Rscript", str(R_SCRIPT), "scale", str(csv), str(reps), str(out)]
        proc = launch(cmd, child_env(), DATA_DIR / f"{tag}.log", timeout)
        if proc["rc"] != 0 or not out.exists():
            log(f"  lme4 scale failed (rc {proc['rc']}): {proc['stderr'][-800:]}")
            return None
        return parse_r(out)
    out = DATA_DIR / f"{tag}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, str(SESSION), "scale", lib, str(csv), str(reps), str(out)]
    with tempfile.TemporaryDirectory(prefix="mixedjax-latency-cache-") as cache:
        proc = launch(cmd, child_env(Path(cache)), DATA_DIR / f"{tag}.log", timeout)
    return read_json(out, proc, f"{lib} scale {n}")


# ------------------------------------------------------------------------------ running


def run(args, with_r: bool, py_peers: list[str]) -> dict:
    sizes = QUICK_SIZES if args.quick else tuple(args.groups)
    log(f"writing data sets to {DATA_DIR}")
    scale_csvs = write_data(sizes)
    res: dict = {"sessions": {}, "scale": {}, "sizes": sizes}
    timeout = args.timeout
    with tempfile.TemporaryDirectory(prefix="mixedjax-latency-session-cache-") as cache:
        for run_name in ("mixedjax (1st process, empty cache)", "mixedjax (2nd process, cache)"):
            log(f"== session: {run_name}")
            out_name = "mixedjax_session_1" if "1st" in run_name else "mixedjax_session_2"
            res["sessions"][run_name] = py_session("mixedjax", out_name, Path(cache), timeout)
            log_session(res["sessions"][run_name])
    if with_r:
        log("== session: lme4")
        res["sessions"]["lme4"] = r_session(timeout)
        log_session(res["sessions"]["lme4"])
    for lib in py_peers:
        log(f"== session: {lib}")
        res["sessions"][lib] = py_session(lib, f"{lib}_session", None, timeout)
        log_session(res["sessions"][lib])
    libs = ["mixedjax", *py_peers] + (["lme4"] if with_r else [])
    for n, csv in scale_csvs.items():
        reps = REPS.get(n, REPS_LARGE)
        for lib in libs:
            rec = scale_run(lib, csv, reps, timeout)
            res["scale"][(lib, n)] = rec
            if rec is not None:
                log(
                    f"  scale {n:,} groups, {lib}: cold {fmt_s(rec['cold'])} "
                    f"(import {fmt_s(rec['import'])}), warm {fmt_s(rec['warm'])}, "
                    f"llf {rec['llf']:.6f}"
                )
    BUSY_CHECKS.append(("end of the run", other_pytest_running()))
    res["busy"] = [name for name, busy in BUSY_CHECKS if busy]
    res["n_checks"] = len(BUSY_CHECKS)
    return res


def log_session(rec: dict | None) -> None:
    if rec is None:
        return
    for m in rec["models"]:
        if "time" in m and "error" not in m:
            log(f"  {m['key']:<14} {fmt_s(m['time']):>9}  llf {m['llf']:.6f}")
        else:
            log(f"  {m['key']:<14} {m.get('skipped') or m.get('error')}")
    log(f"  total (start-up included): {fmt_s(rec['total'])}")
    first = (rec.get("crossed") or {}).get("first")
    if first:
        log(f"  crossed slopes first fit: {fmt_s(first.get('time'))} {first.get('error', '')}")


# ------------------------------------------------------------------------------ report


def model_time(rec: dict | None, key: str) -> str:
    if rec is None:
        return "–"
    m = next((m for m in rec["models"] if m["key"] == key), None)
    if m is None:
        return "–"
    if "skipped" in m:
        return "n/a"
    if "error" in m:
        return "error"
    return fmt_s(m["time"])


def fit_sum(rec: dict, part: str = "time") -> float:
    return sum(m.get(part, 0.0) for m in rec["models"] if "error" not in m)


def n_done(rec: dict) -> int:
    return sum("llf" in m for m in rec["models"])


def report(res: dict, args, rv) -> list[str]:
    sessions, scale, sizes = res["sessions"], res["scale"], res["sizes"]
    lines = ["## Latency: time to first answer in a notebook-like session", ""]
    extra = {}
    if rv:
        extra.update({f"R {rv['R']}, lme4": rv["lme4"], "Matrix": rv["Matrix"]})
    for lib in PY_PEERS:
        try:
            from importlib.metadata import version

            extra[lib] = version(lib)
        except Exception:
            pass
    lines += environment_lines(extra)
    cmd = "python benchmarks/bench_latency.py" + (" --quick" if args.quick else "")
    lines += [f"- Command: `{cmd}`"]
    if args.loaded_note:
        lines += [f"- Machine load: {args.loaded_note}"]
    elif res.get("busy"):
        lines += [
            f"- Machine load: another pytest run was going on during part of this run (seen "
            f"at {len(res['busy'])} of {res['n_checks']} checks, one before each measured "
            "process and one at the end; seen before: " + ", ".join(res["busy"]) + "): the "
            "machine was loaded and those figures are slower than on a quiet machine"
        ]
    else:
        lines += [
            f"- Machine load: no pytest run seen at any of {res['n_checks']} checks (one "
            "before each measured process and one at the end)"
        ]
    lines += [
        "",
        "Each library in fresh processes of its own, on the same CSV files. *Session*: the "
        "eight models below fitted one after another in one process; each figure is that "
        "model's fit (model construction included) plus printing its summary. *Total*: from "
        "launching the interpreter (`python`, `Rscript`) to the end of the eighth model: "
        "start-up, imports and reading the CSVs included. mixedjax's first process starts "
        "with an empty compilation cache (a fresh `MIXEDJAX_CACHE_DIR`), the second reuses "
        "it. *n/a*: the library cannot express the model (mixedlm-rs: "
        "one grouping factor, no variance components).",
        "",
    ]
    names = list(sessions)
    header = ["model", *names]
    rows = [
        [label.replace("|", "\\|")] + [model_time(sessions[n], key) for n in names]
        for key, label in MODEL_LABELS
    ]
    rows.append(
        ["import / library load"]
        + [fmt_s(sessions[n]["import"]) if sessions[n] else "–" for n in names]
    )
    rows.append(
        ["sum of the models (fit + summary)"]
        + [fmt_s(fit_sum(sessions[n])) if sessions[n] else "–" for n in names]
    )
    rows.append(
        ["of which printing the summaries"]
        + [fmt_s(fit_sum(sessions[n], "summary")) if sessions[n] else "–" for n in names]
    )
    rows.append(
        ["**total, start-up included**"]
        + [f"**{fmt_s(sessions[n]['total'])}**" if sessions[n] else "–" for n in names]
    )
    rows.append(
        ["models fitted"] + [f"{n_done(sessions[n])}/8" if sessions[n] else "–" for n in names]
    )
    lines += markdown_table(header, rows)

    # Errors and agreement with lme4.
    notes = []
    for n in names:
        rec = sessions[n]
        if rec is None:
            notes.append(f"- {n}: the process failed (see `_out/latency/*.log`).")
            continue
        for m in rec["models"]:
            if "error" in m:
                notes.append(f"- {n}, {m['key']}: {m['error']}")
    lme4 = sessions.get("lme4")
    if lme4:
        ref = {m["key"]: m["llf"] for m in lme4["models"] if "llf" in m}
        agree = []
        for n in names:
            if n == "lme4" or sessions[n] is None:
                continue
            diffs = [
                abs(m["llf"] - ref[m["key"]])
                for m in sessions[n]["models"]
                if "llf" in m and m["key"] in ref
            ]
            if diffs:
                agree.append(f"{n} {max(diffs):.1e}")
        lines += [
            "",
            "Largest |log-likelihood − lme4's| over the models each fitted: "
            + "; ".join(agree)
            + ".",
        ]
    if notes:
        lines += ["", "Failures:", "", *notes]

    # Crossed slopes.
    lines += [
        "",
        f"Crossed slopes, {CROSSED_LABEL}, REML, fitted in the same process right "
        "after the session (its first fit there, then a second one):",
        "",
    ]
    crows = []
    for n in names:
        c = (sessions[n] or {}).get("crossed")
        if not c:
            continue
        first, second = c.get("first", {}), c.get("second", {})
        crows.append(
            [
                n,
                fmt_s(first["time"])
                if "llf" in first
                else first.get("skipped", first.get("error", "–")),
                fmt_s(second["time"]) if "llf" in second else "–",
                f"{first['llf']:.6f}" if "llf" in first else "–",
            ]
        )
    lines += markdown_table(["library", "first fit", "second fit", "REML log-lik."], crows)

    # Scale.
    libs = sorted({lib for lib, _ in scale}, key=["mixedjax", *PY_PEERS, "lme4"].index)
    lines += [
        "",
        "Scale, `y ~ x + (x | g)`, 10 rows per group, REML; one fresh process per library and "
        "size: *cold* = import + model construction + first fit (mixedjax with an empty "
        "compilation cache), *warm* = best of the following fits of the same data "
        f"({REPS.get(1_000)} at 1,000 and 10,000 groups, {REPS_LARGE} above):",
        "",
    ]
    srows = []
    for n in sizes:
        row = [f"{n:,}"]
        for lib in libs:
            r = scale.get((lib, n))
            row += [fmt_s(r["warm"]) if r else "–", fmt_s(r["cold"]) if r else "–"]
        srows.append(row)
    sheader = ["groups"] + [f"{lib} {k}" for lib in libs for k in ("warm", "cold")]
    lines += markdown_table(sheader, srows)
    lrows = []
    for n in sizes:
        ref = scale.get(("lme4", n))
        row = [f"{n:,}"]
        for lib in libs:
            r = scale.get((lib, n))
            if r is None:
                row.append("–")
            elif ref is None or lib == "lme4":
                row.append(f"{r['llf']:.6f}")
            else:
                row.append(f"{r['llf'] - ref['llf']:+.1e}")
        lrows.append(row)
    lines += [
        "",
        "REML log-likelihoods (lme4's; the others as the difference from lme4's):",
        "",
    ]
    lines += markdown_table(["groups", *libs], lrows)

    lines += ["", "Targets:", ""]
    lines += markdown_table(["target", "measured", "met"], targets(res))
    return lines


def targets(res: dict) -> list[list[str]]:
    sessions, scale = res["sessions"], res["scale"]
    first = sessions.get("mixedjax (1st process, empty cache)")
    second = sessions.get("mixedjax (2nd process, cache)")
    lme4 = sessions.get("lme4")
    rows = []

    def yes(ok: bool | None) -> str:
        return "–" if ok is None else ("yes" if ok else "**no**")

    if first and lme4:
        r = first["total"] / lme4["total"]
        rows.append(
            [
                "(a) mixedjax 1st-process session total ≤ 3x lme4's total",
                f"{fmt_s(first['total'])} vs 3 x {fmt_s(lme4['total'])} ({r:.1f}x)",
                yes(r <= 3),
            ]
        )
    if second and lme4:
        r = second["total"] / lme4["total"]
        rows.append(
            [
                "(b) mixedjax 2nd-process (cache filled) total ≤ lme4's total",
                f"{fmt_s(second['total'])} vs {fmt_s(lme4['total'])} ({r:.1f}x)",
                yes(r <= 1),
            ]
        )
    for label, rec in (("1st process", first), ("2nd process", second)):
        if not rec:
            continue
        later = [m for m in rec["models"][1:]]
        bad = [m for m in later if "llf" not in m or m["time"] > 0.2]
        worst = max((m.get("time", np.inf) for m in later), default=np.nan)
        desc = f"slowest {fmt_s(worst)}"
        if bad:
            desc += "; over: " + ", ".join(
                f"{m['key']} {fmt_s(m.get('time'))}" if "llf" in m else f"{m['key']} failed"
                for m in bad
            )
        rows.append([f"(c) every model after the first ≤ 0.2 s ({label})", desc, yes(not bad)])
    for label, rec in (("1st process", first), ("2nd process", second)):
        c = ((rec or {}).get("crossed") or {}).get("first")
        if c and "llf" in c:
            lme4c = ((lme4 or {}).get("crossed") or {}).get("first", {})
            vs = f" (lme4 {fmt_s(lme4c['time'])})" if "llf" in lme4c else ""
            rows.append(
                [
                    f"(d) crossed slopes, first fit in a warm session ≤ 1 s ({label})",
                    fmt_s(c["time"]) + vs,
                    yes(c["time"] <= 1),
                ]
            )
    mj, rs = scale.get(("mixedjax", 100_000)), scale.get(("mixedlm-rs", 100_000))
    if mj and rs:
        r = rs["warm"] / mj["warm"]
        rows.append(
            [
                "(e) 100,000 groups warm: mixedjax ≥ 1.3x faster than mixedlm-rs",
                f"{fmt_s(mj['warm'])} vs {fmt_s(rs['warm'])} ({fmt_ratio(rs['warm'], mj['warm'])})",
                yes(r >= 1.3),
            ]
        )
    elif 100_000 not in res["sizes"]:
        rows.append(["(e) 100,000 groups warm vs mixedlm-rs", "not run (--quick)", "–"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="scale at 1,000 and 10,000 groups only"
    )
    parser.add_argument(
        "--groups", type=int, nargs="+", default=list(DEFAULT_SIZES), help="scale sizes"
    )
    parser.add_argument("--no-r", action="store_true", help="skip lme4 even if R is installed")
    parser.add_argument("--no-peers", action="store_true", help="skip mixedlm and mixedlm-rs")
    parser.add_argument(
        "--timeout", type=float, default=900, help="seconds allowed to each process"
    )
    parser.add_argument(
        "--loaded-note", default="", help="a note on the machine's load for RESULTS.md"
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)

    rv = None if args.no_r else r_versions()
    if rv is None and not args.no_r:
        log("Rscript with lme4 not found: lme4 is skipped")
    py_peers = []
    if not args.no_peers:
        from importlib.util import find_spec

        for lib in PY_PEERS:
            if find_spec(lib.replace("-", "_")) is None:
                log(f"{lib} is not installed: skipped (pip install -e '.[bench]')")
            else:
                py_peers.append(lib)
    t0 = time.perf_counter()
    res = run(args, rv is not None, py_peers)
    lines = report(res, args, rv)
    lines += ["", f"Whole benchmark run: {time.perf_counter() - t0:.0f} s."]
    publish("bench_latency", lines, write=not args.no_write)


if __name__ == "__main__":
    main()
