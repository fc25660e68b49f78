"""Model front ends: MixedLM, lme4 formulas, crossed models and fit options."""
