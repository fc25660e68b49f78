"""Shared fits for the inference tests: one fit per reference case per test session."""

from functools import cache

from conftest import load_reference

import mixedjax


def reference_model(name: str):
    """``(reference, MixedLM)`` for a reference case, built from its statsmodels arguments
    (``groups: "ONE"`` becomes a constant column)."""
    ref, data = load_reference(name)
    sm = ref["statsmodels"]
    response, rhs = ref["lme4_formula"].split("~", 1)
    fixed = rhs.split("+ (")[0].strip()
    if sm["groups"] == "ONE":
        data = data.assign(ONE=1)
    model = mixedjax.MixedLM.from_formula(
        f"{response.strip()} ~ {fixed}",
        data,
        groups=sm["groups"],
        re_formula=sm.get("re_formula"),
        vc_formula=sm.get("vc_formula"),
    )
    return ref, model


@cache
def fit_reference(name: str):
    """``(reference, model, results)``, cached for the session."""
    ref, model = reference_model(name)
    return ref, model, model.fit(reml=ref["reml"])
