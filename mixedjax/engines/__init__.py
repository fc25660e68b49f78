"""Likelihood engines: pure kernels for one grouping factor (vmapped per group) and for
crossed factors (blocked Cholesky)."""
