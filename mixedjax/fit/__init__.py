"""Fitting: the optimiser, the compiled fitting kernels, conditioning, safeguards, devices."""
