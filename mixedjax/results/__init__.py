"""Fit results: estimates, tables, random effects and their lme4 layouts."""
