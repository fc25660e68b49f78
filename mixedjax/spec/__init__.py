"""Model specification: formulas (statsmodels and lme4 syntax), random-effects terms and
input checks."""
