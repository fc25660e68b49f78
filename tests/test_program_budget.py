"""The compiled-program caches are dropped before the process runs out of memory mappings.

Measured here: XLA's CPU backend maps about 2,000 regions per fit program, and a process
with more than ``vm.max_map_count`` regions (65,530 by default) aborts in LLVM ("Unable to
allocate section memory") at its next compilation or cache load; two CI runs of the slow
suite lost a worker that way.
"""

import numpy as np
import pytest

import mixedjax
from mixedjax.core import program_budget
from mixedjax.fit.program import fit_program


def _fit():
    df = mixedjax.datasets.load("dyestuff")
    return mixedjax.MixedLM.from_formula("Yield ~ 1", df, groups="Batch").fit()


def test_a_fit_program_maps_many_regions():
    """The measurement behind the module (skipped where /proc is missing)."""
    if program_budget.memory_map_usage() is None:
        pytest.skip("no /proc/self/maps")
    fit_program.clear_cache()
    before, limit = program_budget.memory_map_usage()
    _fit()
    after, _ = program_budget.memory_map_usage()
    assert after - before > 100  # one program: hundreds of regions (about 2,000 measured)
    assert limit >= 1024


def test_pressure_drops_the_caches_and_fits_stay_exact(monkeypatch):
    if program_budget.memory_map_usage() is None:
        pytest.skip("no /proc/self/maps")
    first = _fit()
    monkeypatch.setattr(program_budget, "HIGH_WATER", 0.0)  # every build is "too many"
    fit_program.clear_cache()
    released = program_budget.releases()
    # The build notes the pressure (never acted on mid-compilation); the caches are dropped
    # as soon as the program has run, before the host reads its result.
    second = _fit()
    assert program_budget.releases() >= released + 1
    assert fit_program._cache_size() == 0  # JAX's in-memory caches are empty
    monkeypatch.setattr(program_budget, "HIGH_WATER", 0.6)
    third = _fit()
    np.testing.assert_array_equal(first.theta, second.theta)
    np.testing.assert_array_equal(first.theta, third.theta)
    assert third.llf == first.llf
    assert not program_budget.release_programs_if_needed()  # no pressure: nothing to do
