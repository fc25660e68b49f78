"""Shared test setup: float64 JAX, reference cases, tolerance helpers."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedjax  # noqa: F401  (turns on float64)

REFERENCE_DIR = Path(__file__).parent / "reference"
ROOT = Path(__file__).resolve().parents[1]


def checkout_env(**extra) -> dict:
    """The environment for a test's subprocess: this checkout's mixedjax first on the path,
    whatever copy (if any) is installed."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, **extra)


def load_reference(name: str) -> tuple[dict, pd.DataFrame]:
    """A reference case (``NAME_reml`` / ``NAME_ml``) and its data, factors as strings."""
    ref = json.loads((REFERENCE_DIR / f"{name}.json").read_text())
    data = pd.read_csv(REFERENCE_DIR / ref["data"], dtype={f: str for f in ref["factors"]})
    return ref, data


@pytest.fixture(autouse=True)
def _programs_within_mapping_cap():
    """A test worker builds hundreds of programs; between tests, drop JAX's in-memory
    caches when the process nears the kernel's cap on memory mappings (see
    :mod:`mixedjax.core.program_budget`: beyond it XLA aborts the worker)."""
    yield
    from mixedjax.core.program_budget import release_programs_if_needed

    release_programs_if_needed()


@pytest.fixture(scope="session")
def reference():
    return load_reference


def assert_rel(actual, expected, rtol, atol=0.0, what=""):
    actual, expected = np.asarray(actual, float), np.asarray(expected, float)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)
