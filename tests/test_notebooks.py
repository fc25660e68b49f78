"""Execute every notebook in ``notebooks/`` (nbclient, a fresh Python kernel) and fail on any
error; also check that the committed notebooks are exactly what the generator writes."""

import json
import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))


def test_notebooks_exist_and_match_generator():
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "make_notebooks", NOTEBOOK_DIR / "make_notebooks.py"
    )
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert [p.name for p in NOTEBOOKS] == sorted(generator.NOTEBOOKS)
    for path in NOTEBOOKS:
        committed = json.loads(path.read_text())
        fresh = json.loads(nbformat.writes(generator.build(generator.NOTEBOOKS[path.name])))
        assert committed == fresh, f"{path.name} is stale: run python notebooks/make_notebooks.py"


@pytest.fixture(scope="module")
def jax_cache(tmp_path_factory):
    """One persistent compilation cache shared by the kernels: the notebooks fit models of
    the same shapes, so later kernels load compiled code instead of recompiling."""
    return tmp_path_factory.mktemp("jax_cache")


#: Notebooks executed by the default run; the others (20-110 s each) run with -m slow, and
#: the default run checks that every notebook is what its generator writes.
QUICK_NOTEBOOKS: set[str] = set()


@pytest.mark.parametrize(
    "path",
    [
        pytest.param(p, marks=() if p.stem in QUICK_NOTEBOOKS else (pytest.mark.slow,))
        for p in NOTEBOOKS
    ],
    ids=[p.stem for p in NOTEBOOKS],
)
def test_notebook_runs(path, monkeypatch, jax_cache):
    # The kernel must import this checkout's mixedjax (also when it is not installed) and
    # must not open windows.
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(jax_cache))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK_DIR)}}
    )
    client.execute()  # raises CellExecutionError on the first failing cell
    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors
    assert all(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
