"""Families and links for :func:`mixedjax.glmer` and :class:`mixedjax.MixedGLM`.

``Binomial`` (links ``logit``, ``probit``, ``cloglog``, ``log``), ``Poisson`` (``log``,
``identity``), ``Gamma`` and ``InverseGaussian`` (the distributions; GLMM fits with an
estimated dispersion are not available yet). See :mod:`mixedjax.core.families`.

Example:
    >>> from mixedjax.families import Binomial
    >>> Binomial("probit")
    Binomial(link='probit')
"""

from mixedjax.core.families import (
    Binomial,
    Family,
    Gamma,
    InverseGaussian,
    Link,
    Poisson,
    family_from_name,
)

__all__ = [
    "Binomial",
    "Family",
    "Gamma",
    "InverseGaussian",
    "Link",
    "Poisson",
    "family_from_name",
]
