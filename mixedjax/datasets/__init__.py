"""Small classic data sets shipped with mixedjax (as R's lme4/nlme have them).

``load(name)`` returns a DataFrame with grouping columns as strings:

* ``sleepstudy``: reaction times over 10 days of sleep deprivation, 18 subjects.
* ``dyestuff``, ``dyestuff2``: yield by batch (6 batches); dyestuff2 has a zero variance.
* ``orthodont``: orthodontic distance by age for 27 children.
* ``penicillin``: crossed plate x sample design.
* ``pastes``: paste strength, casks nested in batches.
"""

from importlib import resources

import pandas as pd

_FACTORS = {
    "sleepstudy": ["Subject"],
    "dyestuff": ["Batch"],
    "dyestuff2": ["Batch"],
    "orthodont": ["Subject", "Sex"],
    "penicillin": ["plate", "sample"],
    "pastes": ["batch", "cask", "sample"],
}


def names() -> list[str]:
    """Names of the embedded data sets.

    Example:
        >>> names()
        ['dyestuff', 'dyestuff2', 'orthodont', 'pastes', 'penicillin', 'sleepstudy']
    """
    return sorted(_FACTORS)


def load(name: str) -> pd.DataFrame:
    """Load an embedded data set by name (see the module docstring).

    Example:
        >>> df = load("sleepstudy")
        >>> df.shape, df["Subject"].iloc[0]   # grouping columns are strings
        ((180, 3), '308')
    """
    if name not in _FACTORS:
        raise ValueError(f"unknown data set {name!r}; available: {names()}")
    path = resources.files(__name__) / f"{name}.csv"
    with resources.as_file(path) as p:
        return pd.read_csv(p, dtype={c: str for c in _FACTORS[name]})
