"""The optimisation summary reports the exact gradient, the Hessian's eigenvalues and the
boundary at the optimum (issue 4, deliverable 7), consistent with ``check_convergence``."""

import numpy as np
from inference_helpers import fit_reference

from mixedjax.results.mixedlm import OptSummary


def test_summary_reports_gradient_and_hessian_eigenvalues():
    _, _, res = fit_reference("sleepstudy_reml")
    diag = res.check_convergence()
    opt = res.optim
    np.testing.assert_array_equal(opt.hessian_eigenvalues, diag.hessian_eigenvalues)
    assert opt.hessian_eigenvalues.shape == (3,) and opt.hessian_eigenvalues[0] > 0
    assert opt.max_abs_gradient == np.max(np.abs(diag.gradient)) < 1e-6
    assert opt.boundary == () and opt.boundary_names == []
    text = str(opt)
    assert "Hessian eig.    [" in text and "condition" in text
    assert f"max |gradient|  {opt.max_abs_gradient:.3e}" in text
    assert "boundary        none" in text and "lme4 checks     passed" in text
    for value in opt.hessian_eigenvalues:  # every eigenvalue is printed (4 digits)
        assert f"{value:.4g}"[:4] in text


def test_summary_names_boundary_parameters():
    _, _, res = fit_reference("dyestuff2_reml")
    opt = res.optim
    assert opt.boundary == (0,) and opt.boundary_names == ["sd_(Intercept)|Batch"]
    assert opt.hessian_eigenvalues.size == 0  # the only coordinate is on the boundary
    assert "boundary        sd_(Intercept)|Batch (theta[0])" in str(opt)
    assert "Hessian eig.    none" in str(opt)


def test_summary_without_results_has_no_derivative_lines():
    _, _, res = fit_reference("dyestuff2_reml")
    bare = OptSummary(
        **{f: getattr(res.optim, f) for f in OptSummary.__dataclass_fields__ if f[0] != "_"}
        | {"diagnostics_source": None, "theta_names_source": None}
    )
    assert bare.diagnostics is None and bare.hessian_eigenvalues is None
    assert bare.boundary_names == ["theta[0]"]
    assert "Hessian" not in str(bare)
