"""Foundations of every layer: small linear algebra, covariance parameterizations,
compilation, waiting, progress and distributions."""
