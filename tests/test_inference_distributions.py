"""t, F and χ² tails and quantiles (JAX) against R's ``pt``/``qt``/``pf``/``pchisq``
(values quoted, 1e-10 relative) and round trips."""

import numpy as np
import pytest

from mixedjax.core.distributions import chi2_sf, f_sf, norm_ppf, t_ppf, t_sf_two_sided
from mixedjax.inference.hypothesis import parse_hypothesis


def test_t_against_r():
    # qt(c(0.975, 0.025, 0.9), c(10, 3.5, 1)) ; qnorm(0.975)
    np.testing.assert_allclose(
        t_ppf([0.975, 0.025, 0.9], [10, 3.5, 1]),
        [2.228138851986274, -2.940088637982730, 3.077683537175254],
        rtol=1e-10,
    )
    np.testing.assert_allclose(t_ppf(0.975, np.inf), 1.959963984540054, rtol=1e-12)
    # 2 * pt(-2.1, 4.2) ; 2 * pnorm(-5)
    np.testing.assert_allclose(t_sf_two_sided(-2.1, 4.2), 0.1003496262943718, rtol=1e-10)
    np.testing.assert_allclose(t_sf_two_sided(5.0, np.inf), 5.733031437583873e-07, rtol=1e-10)
    q = np.array([0.6, 0.8, 0.99, 0.999999])
    df = np.array([2.5, 17.0, 150.0, 3.0])
    np.testing.assert_allclose(t_sf_two_sided(t_ppf(q, df), df), 2 * (1 - q), rtol=1e-9)
    with pytest.raises(ValueError):
        t_ppf(1.0, 3)


def test_f_chi2_normal_against_r():
    # pf(3.1, 2, 17.5, lower.tail = FALSE) ; pchisq(3.84, 1, lower.tail = FALSE)
    np.testing.assert_allclose(f_sf(3.1, 2, 17.5), 0.07039388, rtol=1e-6)
    np.testing.assert_allclose(chi2_sf(3.84, 1), 0.05004352124870519, rtol=1e-10)
    np.testing.assert_allclose(chi2_sf(1.0, 2), np.exp(-0.5), rtol=1e-12)
    # F with infinite denominator df is chi2/df1
    np.testing.assert_allclose(f_sf(0.2, 3, np.inf), chi2_sf(0.6, 3), rtol=1e-12)
    np.testing.assert_allclose(norm_ppf(0.975), 1.959963984540054, rtol=1e-12)


def test_parse_hypothesis():
    names = ["Intercept", "Days", "Sex[T.Male]", "age:Sex[T.Male]"]
    L, rhs = parse_hypothesis("Intercept = 2*Days, Days = 10", names)
    np.testing.assert_array_equal(L, [[1, -2, 0, 0], [0, 1, 0, 0]])
    np.testing.assert_array_equal(rhs, [0, 10])
    L, rhs = parse_hypothesis("(Intercept) - Sex[T.Male] + age:Sex[T.Male]/2 = 3", names)
    np.testing.assert_array_equal(L, [[1, 0, -1, 0.5]])
    np.testing.assert_array_equal(rhs, [3])
    L, rhs = parse_hypothesis("Days", names)
    np.testing.assert_array_equal(L, [[0, 1, 0, 0]])
    for bad, msg in [("Days*Intercept=0", "linear"), ("foo = 1", "foo"), ("3 = 3", "no coef")]:
        with pytest.raises(ValueError, match=msg):
            parse_hypothesis(bad, names)
