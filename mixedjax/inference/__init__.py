"""Inference on a fit: Wald tests and df, profiles, likelihood-ratio tests, bootstrap and
prediction."""
