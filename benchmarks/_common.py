"""Shared helpers for the benchmark scripts: data simulation, machine description, timing,
and writing a script's section of ``RESULTS.md``.

Not part of the package and not a test: nothing here asserts a wall-clock limit.
"""

import datetime as _dt
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
OUT_DIR = BENCH_DIR / "_out"
RESULTS = BENCH_DIR / "RESULTS.md"

# Measure this checkout's mixedjax, not an installed copy.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: True covariance of the random intercept and slope used by :func:`simulate`.
TRUE_COV_RE = np.array([[1.0, 0.3], [0.3, 0.5]])
TRUE_BETA = np.array([1.0, 2.0])


def simulate(n_groups: int, rows_per_group: int = 10, seed: int = 20240601) -> pd.DataFrame:
    """``y = 1 + 2 x + b0_g + b1_g x + e`` with ``(b0, b1) ~ N(0, TRUE_COV_RE)``, ``e ~ N(0, 1)``.

    Columns ``y`` (float), ``x`` (float), ``g`` (int group label ``0..n_groups-1``); groups
    are contiguous blocks of ``rows_per_group`` rows. Same seed, same data.
    """
    rng = np.random.default_rng(seed)
    n = n_groups * rows_per_group
    g = np.repeat(np.arange(n_groups, dtype=np.int64), rows_per_group)
    x = rng.standard_normal(n)
    b = rng.standard_normal((n_groups, 2)) @ np.linalg.cholesky(TRUE_COV_RE).T
    y = TRUE_BETA[0] + TRUE_BETA[1] * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def write_csv(df: pd.DataFrame, name: str) -> Path:
    """Write ``df`` under ``benchmarks/_out/`` with round-trip precision; return the path."""
    OUT_DIR.mkdir(exist_ok=True)
    path = OUT_DIR / name
    df.to_csv(path, index=False, float_format="%.17g")
    return path


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"y": float, "x": float, "g": np.int64})


def best_of(fn, reps: int) -> tuple[float, object]:
    """Smallest wall time over ``reps`` calls of ``fn()`` and the last return value."""
    best, out = np.inf, None
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def _lscpu_field(field: str) -> str:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    m = re.search(rf"^{re.escape(field)}:\s*(.+)$", text, flags=re.MULTILINE)
    return m.group(1).strip() if m else "?"


def machine_info() -> dict[str, str]:
    """CPU model, cores, RAM, OS and load average (other processes share the machine)."""
    try:
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal:")
        )
        ram = f"{mem_kb / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        ram = "?"
    return {
        "cpu": _lscpu_field("Model name"),
        "cores": str(os.cpu_count()),
        "ram": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load": " ".join(f"{v:.2f}" for v in os.getloadavg()),
    }


def r_versions() -> dict[str, str] | None:
    """R and lme4 versions when ``Rscript`` with lme4 is installed, else ``None``."""
    if shutil.which("Rscript") is None:
        return None
    code = (
        "suppressPackageStartupMessages(library(lme4));"
        "cat(paste(R.version$major, R.version$minor, sep='.'), "
        "as.character(packageVersion('lme4')), as.character(packageVersion('Matrix')))"
    )
    res = subprocess.run(["Rscript", "-e", code], capture_output=True, text=True)
    if res.returncode != 0:
        return None
    r, lme4, matrix = res.stdout.split()
    return {"R": r, "lme4": lme4, "Matrix": matrix}


def python_versions() -> dict[str, str]:
    import jax
    import jaxlib
    import numpy
    import pandas

    versions = {
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
    }
    try:
        import statsmodels

        versions["statsmodels"] = statsmodels.__version__
    except ImportError:
        pass
    return versions


def environment_lines(extra_versions: dict[str, str] | None = None) -> list[str]:
    """Markdown bullet lines describing when and where a benchmark ran."""
    info = machine_info()
    versions = python_versions()
    if extra_versions:
        versions.update(extra_versions)
    now = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return [
        f"- Date: {now}",
        f"- Machine: {info['cpu']}, {info['cores']} CPU cores, {info['ram']} RAM "
        f"({info['os']}, Python {info['python']}); load average at the end of the run: "
        f"{info['load']}",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
    ]


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def log(msg: str) -> None:
    """Print a progress line at once (the benchmarks run for minutes)."""
    print(msg, flush=True)


def publish(name: str, lines: list[str], write: bool = True) -> None:
    """Print a benchmark's report and, with ``write``, make it RESULTS.md's ``name``
    section (:func:`write_section`)."""
    print("\n" + "\n".join(lines))
    if write:
        write_section(name, lines)
        log(f"\nwrote the {name} section of benchmarks/RESULTS.md")


def write_section(name: str, lines: list[str]) -> None:
    """Replace (or append) the block between ``<!-- name:start -->`` and ``<!-- name:end -->``
    in ``RESULTS.md`` with ``lines``; other scripts' sections are left alone."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    block = "\n".join([start, *lines, end])
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    RESULTS.write_text(text)


def fmt_s(seconds: float | None) -> str:
    if seconds is None or not np.isfinite(seconds):
        return "–"
    if seconds < 1:
        return f"{seconds * 1e3:.0f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or not (np.isfinite(num) and np.isfinite(den)) or den <= 0:
        return "–"
    return f"{num / den:.1f}x"
