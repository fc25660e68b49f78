"""Exponential-family distributions and link functions for generalized linear (mixed) models.

A GLM(M) models a response ``y_t`` with mean ``μ_t = g⁻¹(η_t)`` for a linear predictor
``η_t`` and a link ``g``, and variance ``φ V(μ_t) / w_t`` with prior weight ``w_t`` and
dispersion ``φ`` (1 for the binomial and Poisson). Each family here gives, for arrays of
any (common) shape:

* the link ``g``, its inverse ``g⁻¹`` and ``dμ/dη`` (:class:`Link`);
* the variance function ``V(μ)``;
* the unit deviances ``d_t = 2 w_t [ℓ(y_t; y_t) − ℓ(y_t; μ_t)]`` (squared deviance
  residuals), and the deviance residuals ``sign(y_t − μ_t) √d_t``;
* the log-likelihood of each row, with all normalising constants, as R's ``dbinom``,
  ``dpois``, ``dgamma`` and ``statmod::dinvgauss`` give it (lme4's ``aic`` uses these):
  the prior weight multiplies the log density, except for the binomial, where it is the
  number of trials;
* the working (Fisher-scoring) weights ``w_t (dμ/dη)² / V(μ_t)``;
* :meth:`Family.check_response`, the support check on the host (a ``ValueError`` naming
  the column).

Binomial responses are proportions ``y ∈ [0, 1]`` with the number of trials as the prior
weight (lme4's convention for ``cbind(successes, failures)`` and for proportions with
``weights=``); a 0/1 response has one trial. The binomial log-likelihood of a row is
``log C(w, w y) + w [y log μ + (1 − y) log(1 − μ)]``, computed from ``η`` without forming
``μ`` where that loses precision (``log μ = −softplus(−η)`` for the logit link).

Families and links are frozen dataclasses (hashable): pass them as static arguments to
``jit``. Everything is pure ``jax.numpy``; ``family_from_name`` turns ``"binomial"`` or
``("binomial", "probit")`` into a family.

Example:
    >>> import jax.numpy as jnp
    >>> fam = Binomial()
    >>> float(fam.link.inverse(jnp.asarray(0.0))), fam.link.name
    (0.5, 'logit')
    >>> round(float(fam.loglik(jnp.asarray(0.3), jnp.asarray(0.0), jnp.asarray(10.0)).sum()), 6)
    -2.14398
"""

from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, log_ndtr, ndtr, xlogy

#: Means are kept this far inside ``(0, 1)`` (binomial) or above 0 where a variance or a
#: logarithm of the mean is taken: a weight or a log never becomes 0 or inf.
_EPS = 1e-15

LINKS = ("logit", "probit", "cloglog", "log", "identity", "inverse", "inverse_squared")


@dataclass(frozen=True)
class Link:
    """A link function ``η = g(μ)``.

    Attributes:
        name: one of :data:`LINKS`.

    Example:
        >>> import jax.numpy as jnp
        >>> link = Link("cloglog")
        >>> mu = link.inverse(jnp.asarray(0.25))
        >>> round(float(link(mu)), 12), round(float(link.mu_eta(jnp.asarray(0.0))), 12)
        (0.25, 0.367879441171)
    """

    name: str

    def __post_init__(self):
        if self.name not in LINKS:
            raise ValueError(f"link must be one of {LINKS}, got {self.name!r}")

    def __call__(self, mu: jnp.ndarray) -> jnp.ndarray:
        """``η = g(μ)``."""
        n = self.name
        if n == "logit":
            return jnp.log(mu) - jnp.log1p(-mu)
        if n == "probit":
            return jax.scipy.special.ndtri(mu)
        if n == "cloglog":
            return jnp.log(-jnp.log1p(-mu))
        if n == "log":
            return jnp.log(mu)
        if n == "identity":
            return mu
        if n == "inverse":
            return 1.0 / mu
        return 1.0 / mu**2

    def inverse(self, eta: jnp.ndarray) -> jnp.ndarray:
        """``μ = g⁻¹(η)``."""
        n = self.name
        if n == "logit":
            return jax.nn.sigmoid(eta)
        if n == "probit":
            return ndtr(eta)
        if n == "cloglog":
            return -jnp.expm1(-jnp.exp(eta))
        if n == "log":
            return jnp.exp(eta)
        if n == "identity":
            return eta
        if n == "inverse":
            return 1.0 / eta
        return 1.0 / jnp.sqrt(eta)

    def mu_eta(self, eta: jnp.ndarray) -> jnp.ndarray:
        """``dμ/dη`` at ``η``."""
        n = self.name
        if n == "logit":
            p = jax.nn.sigmoid(eta)
            return p * (1.0 - p)
        if n == "probit":
            return jnp.exp(-0.5 * eta**2) / jnp.sqrt(2.0 * jnp.pi)
        if n == "cloglog":
            return jnp.exp(eta - jnp.exp(eta))
        if n == "log":
            return jnp.exp(eta)
        if n == "identity":
            return jnp.ones_like(eta)
        if n == "inverse":
            return -1.0 / eta**2
        return -0.5 * eta**-1.5

    def log_mu_pair(self, eta: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
        """``(log μ, log(1 − μ))`` for a binomial mean, accurate in both tails."""
        n = self.name
        if n == "logit":
            return -jax.nn.softplus(-eta), -jax.nn.softplus(eta)
        if n == "probit":  # log Φ(η) near 0 from its complement: log1p(-Φ(-η))
            pos, neg = jnp.where(eta > 0, eta, 1.0), jnp.where(eta < 0, eta, -1.0)
            log_mu = jnp.where(eta > 0, jnp.log1p(-ndtr(-pos)), log_ndtr(eta))
            log_1m = jnp.where(eta < 0, jnp.log1p(-ndtr(neg)), log_ndtr(-eta))
            return log_mu, log_1m
        if n == "cloglog":
            e = jnp.exp(eta)
            return jnp.log(-jnp.expm1(-e)), -e
        mu = jnp.clip(self.inverse(eta), _EPS, 1.0 - _EPS)
        return jnp.log(mu), jnp.log1p(-mu)


@dataclass(frozen=True)
class Family:
    """Base class of the families (see the module docstring for the quantities).

    Attributes:
        link: the :class:`Link`; each family has a default (its canonical link, except
            the inverse Gaussian's ``1/μ²`` which is canonical too).
    """

    link: Link
    name = "family"
    links = ()
    #: whether ``φ`` is estimated (Gamma, inverse Gaussian) or fixed at 1.
    has_dispersion = False

    def __post_init__(self):
        if isinstance(self.link, str):
            object.__setattr__(self, "link", Link(self.link))
        if self.link.name not in self.links:
            raise ValueError(
                f"family {self.name!r} takes a link in {self.links}, got {self.link.name!r}"
            )

    # ----------------------------------------------------------------- per-row pieces
    def variance(self, mu: jnp.ndarray) -> jnp.ndarray:
        """The variance function ``V(μ)``."""
        raise NotImplementedError

    def unit_deviance(self, y: jnp.ndarray, mu: jnp.ndarray, weights: jnp.ndarray):
        """``d_t = 2 w_t [ℓ(y_t; y_t) − ℓ(y_t; μ_t)]`` (R's ``family$dev.resids``)."""
        raise NotImplementedError

    def loglik(self, y, eta, weights, dispersion=1.0) -> jnp.ndarray:
        """Log-likelihood of each row at linear predictor ``η`` (constants included)."""
        raise NotImplementedError

    def mean(self, eta: jnp.ndarray) -> jnp.ndarray:
        """``μ = g⁻¹(η)``."""
        return self.link.inverse(eta)

    def deviance_residuals(self, y, mu, weights) -> jnp.ndarray:
        """``sign(y − μ) √d_t``."""
        d = jnp.maximum(self.unit_deviance(y, mu, weights), 0.0)
        return jnp.sign(y - mu) * jnp.sqrt(d)

    def pearson_residuals(self, y, mu, weights) -> jnp.ndarray:
        """``(y − μ) √(w / V(μ))``."""
        return (y - mu) * jnp.sqrt(weights / self.variance(mu))

    def working_weights(self, eta: jnp.ndarray, weights: jnp.ndarray) -> jnp.ndarray:
        """Fisher-scoring weights ``w (dμ/dη)² / V(μ)`` (the expected information of ``η``
        per unit dispersion; lme4's PIRLS weights)."""
        mu_eta = self.link.mu_eta(eta)
        return weights * mu_eta**2 / jnp.maximum(self.variance(self.mean(eta)), 1e-300)

    # ----------------------------------------------------------------- host checks
    def check_response(self, y: np.ndarray, weights: np.ndarray, column: str) -> None:
        """Raise a ``ValueError`` naming ``column`` if ``y`` is outside the support."""
        y = np.asarray(y, dtype=float)
        if not np.all(np.isfinite(y)):
            raise ValueError(f"response {column!r} has missing or non-finite values")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(link={self.link.name!r})"


@dataclass(frozen=True, repr=False)
class Binomial(Family):
    """Binomial proportions ``y = successes / trials`` with ``trials`` as prior weights.

    ``V(μ) = μ (1 − μ)``; links ``logit`` (default), ``probit``, ``cloglog``, ``log``.

    Example:
        >>> import jax.numpy as jnp
        >>> fam = Binomial("probit")
        >>> float(fam.mean(jnp.asarray(0.0))), float(fam.variance(jnp.asarray(0.5)))
        (0.5, 0.25)
    """

    link: Link = field(default_factory=lambda: Link("logit"))
    name = "binomial"
    links = ("logit", "probit", "cloglog", "log")

    def variance(self, mu):
        return mu * (1.0 - mu)

    def unit_deviance(self, y, mu, weights):
        mu = jnp.clip(mu, _EPS, 1.0 - _EPS)
        return 2.0 * weights * (xlogy(y, y / mu) + xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def loglik(self, y, eta, weights, dispersion=1.0):
        log_mu, log_1m = self.link.log_mu_pair(eta)
        successes = weights * y
        failures = weights - successes
        log_choose = gammaln(weights + 1.0) - gammaln(successes + 1.0) - gammaln(failures + 1.0)
        # 0 * log(0) = 0: a row with no failures has no log(1 - μ) term (and vice versa)
        terms = jnp.where(successes > 0, successes * log_mu, 0.0)
        terms = terms + jnp.where(failures > 0, failures * log_1m, 0.0)
        return log_choose + terms

    def check_response(self, y, weights, column):
        super().check_response(y, weights, column)
        y, w = np.asarray(y, float), np.asarray(weights, float)
        if np.any((y < 0) | (y > 1)):
            bad = y[(y < 0) | (y > 1)][0]
            raise ValueError(
                f"binomial response {column!r} must be a proportion in [0, 1] (or 0/1, or "
                f"cbind(successes, failures)); found {bad:g}"
            )
        counts = y * w
        if not np.allclose(counts, np.round(counts), rtol=0, atol=1e-7 * max(1.0, w.max())):
            k = int(np.argmax(np.abs(counts - np.round(counts))))
            raise ValueError(
                f"binomial response {column!r}: successes must be whole numbers of trials; "
                f"row {k} has {counts[k]:g} successes out of {w[k]:g} trials"
            )
        if np.any(~np.isclose(w, np.round(w), rtol=0, atol=1e-7)) or np.any(w < 0):
            k = int(np.argmax(np.abs(w - np.round(w)) + (w < 0)))
            raise ValueError(
                f"binomial response {column!r}: the number of trials (weights) must be a "
                f"non-negative whole number; row {k} has {w[k]:g}"
            )


@dataclass(frozen=True, repr=False)
class Poisson(Family):
    """Poisson counts: ``V(μ) = μ``; links ``log`` (default), ``identity``.

    Example:
        >>> import jax.numpy as jnp
        >>> fam = Poisson()
        >>> round(float(fam.loglik(jnp.asarray(2.0), jnp.asarray(0.0), jnp.asarray(1.0))), 6)
        -1.693147
    """

    link: Link = field(default_factory=lambda: Link("log"))
    name = "poisson"
    links = ("log", "identity")

    def variance(self, mu):
        return mu

    def unit_deviance(self, y, mu, weights):
        mu = jnp.maximum(mu, _EPS)
        return 2.0 * weights * (xlogy(y, y / mu) - (y - mu))

    def loglik(self, y, eta, weights, dispersion=1.0):
        log_mu = eta if self.link.name == "log" else jnp.log(jnp.maximum(self.mean(eta), _EPS))
        mu = self.mean(eta)
        return weights * (jnp.where(y > 0, y * log_mu, 0.0) - mu - gammaln(y + 1.0))

    def check_response(self, y, weights, column):
        super().check_response(y, weights, column)
        y = np.asarray(y, float)
        if np.any(y < 0):
            raise ValueError(
                f"Poisson response {column!r} must be non-negative counts; found {y[y < 0][0]:g}"
            )
        if not np.allclose(y, np.round(y), rtol=0, atol=1e-9):
            bad = y[~np.isclose(y, np.round(y), rtol=0, atol=1e-9)][0]
            raise ValueError(f"Poisson response {column!r} must be whole counts; found {bad:g}")


def _positive_where_weighted(y, weights):
    """``y`` with 1 on rows of weight 0 (padding), whose log-density terms are multiplied by
    0: ``log 0`` there would make the sum, and every gradient, NaN."""
    return jnp.where(weights > 0, y, 1.0)


@dataclass(frozen=True, repr=False)
class Gamma(Family):
    """Gamma responses ``y > 0``: ``V(μ) = μ²``, shape ``w/φ``; links ``inverse``
    (default), ``log``, ``identity``.

    Example:
        >>> import jax.numpy as jnp
        >>> fam = Gamma("log")
        >>> round(float(fam.loglik(jnp.asarray(2.0), jnp.asarray(0.0), jnp.asarray(1.0), 0.5)), 6)
        -1.920558
    """

    link: Link = field(default_factory=lambda: Link("inverse"))
    name = "Gamma"
    links = ("inverse", "log", "identity")
    has_dispersion = True

    def variance(self, mu):
        return mu**2

    def unit_deviance(self, y, mu, weights):
        mu = jnp.maximum(mu, _EPS)
        y = _positive_where_weighted(y, weights)
        return 2.0 * weights * (-jnp.log(y / mu) + (y - mu) / mu)

    def loglik(self, y, eta, weights, dispersion=1.0):
        mu = jnp.maximum(self.mean(eta), _EPS)
        y = _positive_where_weighted(y, weights)
        shape = 1.0 / dispersion
        log_density = shape * jnp.log(shape * y / mu) - shape * y / mu - jnp.log(y)
        return weights * (log_density - gammaln(shape))

    def check_response(self, y, weights, column):
        super().check_response(y, weights, column)
        y = np.asarray(y, float)
        if np.any(y <= 0):
            raise ValueError(f"Gamma response {column!r} must be positive; found {y[y <= 0][0]:g}")


@dataclass(frozen=True, repr=False)
class InverseGaussian(Family):
    """Inverse Gaussian responses ``y > 0``: ``V(μ) = μ³``; links ``inverse_squared``
    (default, R's ``1/mu^2``), ``inverse``, ``log``, ``identity``.

    Example:
        >>> import jax.numpy as jnp
        >>> fam = InverseGaussian("log")
        >>> round(float(fam.loglik(jnp.asarray(1.0), jnp.asarray(0.0), jnp.asarray(1.0))), 6)
        -0.918939
    """

    link: Link = field(default_factory=lambda: Link("inverse_squared"))
    name = "inverse.gaussian"
    links = ("inverse_squared", "inverse", "log", "identity")
    has_dispersion = True

    def variance(self, mu):
        return mu**3

    def unit_deviance(self, y, mu, weights):
        mu = jnp.maximum(mu, _EPS)
        y = _positive_where_weighted(y, weights)
        return weights * (y - mu) ** 2 / (y * mu**2)

    def loglik(self, y, eta, weights, dispersion=1.0):
        mu = jnp.maximum(self.mean(eta), _EPS)
        y = _positive_where_weighted(y, weights)
        log_density = -0.5 * (
            jnp.log(2.0 * jnp.pi * dispersion * y**3) + (y - mu) ** 2 / (dispersion * y * mu**2)
        )
        return weights * log_density

    def check_response(self, y, weights, column):
        super().check_response(y, weights, column)
        y = np.asarray(y, float)
        if np.any(y <= 0):
            raise ValueError(
                f"inverse Gaussian response {column!r} must be positive; found {y[y <= 0][0]:g}"
            )


FAMILIES = {
    "binomial": Binomial,
    "poisson": Poisson,
    "gamma": Gamma,
    "inverse_gaussian": InverseGaussian,
    "inverse.gaussian": InverseGaussian,
    "inversegaussian": InverseGaussian,
}


def family_from_name(family, link: str | None = None) -> Family:
    """A :class:`Family` from a family object, a name (``"binomial"``, ``"poisson"``,
    ``"Gamma"``, ``"inverse_gaussian"``), or a ``(name, link)`` pair.

    Example:
        >>> family_from_name("binomial"), family_from_name(("binomial", "probit"))
        (Binomial(link='logit'), Binomial(link='probit'))
    """
    if isinstance(family, Family):
        if link is not None and link != family.link.name:
            raise ValueError(f"family already has link {family.link.name!r}; got link={link!r}")
        return family
    if isinstance(family, tuple) and len(family) == 2:
        family, link = family
    if isinstance(family, type) and issubclass(family, Family):
        return family() if link is None else family(Link(link))
    if not isinstance(family, str):
        raise TypeError(
            "family must be a name ('binomial', 'poisson', ...) or a mixedjax.families object, "
            f"got {type(family).__name__}"
        )
    key = family.lower()
    if key not in FAMILIES:
        raise ValueError(f"family must be one of {sorted(set(FAMILIES))}, got {family!r}")
    cls = FAMILIES[key]
    return cls() if link is None else cls(Link(link))
