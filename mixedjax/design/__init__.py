"""Data layouts built once per model: per-group and crossed cross-products."""
