"""statsmodels' ``test_lme.py::TestMixedLM::test_vcomp_2`` model, fitted by mixedjax; prints
JSON. 1,600 rows in 100 groups of 16, ``re_formula="0+z1+z2"`` and two variance components
with 4 and 8 levels per group: 14 random effects per group (the model that deadlocked,
``docs/jaxlib_lapack_deadlock.md``). The data are statsmodels' (seed 6241)."""

import json

import numpy as np
import pandas as pd


def make_data() -> pd.DataFrame:
    rs = np.random.RandomState(6241)
    n = 1600
    exog = rs.normal(size=(n, 2))
    groups = np.kron(np.arange(n / 16), np.ones(16))
    exog_re = rs.normal(size=(n, 2))
    slopes = np.kron(rs.normal(size=(n // 16, 2)), np.ones((16, 1))) * exog_re
    errors = slopes.sum(1)
    subgroups1 = np.kron(np.arange(n / 4), np.ones(4))
    errors += np.kron(2 * rs.normal(size=n // 4), np.ones(4))
    subgroups2 = np.kron(np.arange(n / 2), np.ones(2))
    errors += np.kron(2 * rs.normal(size=n // 2), np.ones(2))
    errors += rs.normal(size=n)
    return pd.DataFrame(
        {
            "y": exog.sum(1) + errors, "groups": groups, "x1": exog[:, 0], "x2": exog[:, 1],
            "z1": exog_re[:, 0], "z2": exog_re[:, 1], "v1": subgroups1, "v2": subgroups2,
        }
    )  # fmt: skip


def main() -> None:
    from mixedjax import MixedLM

    df = make_data()
    vcf = {"a": "0 + C(v1)", "b": "0 + C(v2)"}
    model = MixedLM.from_formula(
        "y ~ x1 + x2", groups="groups", re_formula="0+z1+z2", vc_formula=vcf, data=df
    )
    result = model.fit()
    print(
        json.dumps(
            {
                "n_random": int(model.structure.n_random),
                "converged": bool(result.converged),
                "fe_params": np.asarray(result.fe_params).tolist(),
                "cov_re": np.asarray(result.cov_re).tolist(),
                "vcomp": np.asarray(result.vcomp).tolist(),
                "bse_fe": np.asarray(result.bse_fe).tolist(),
            }
        )
    )


if __name__ == "__main__":
    main()
