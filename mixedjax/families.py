"""Families and links for :func:`mixedjax.glmer` and :class:`mixedjax.MixedGLM`.

``Binomial`` (links ``logit``, ``probit``, ``cloglog``, ``log``), ``Poisson`` (``log``,
``identity``), ``Gamma`` and ``InverseGaussian`` (fitted with an estimated dispersion,
``docs/glmm.md``). See :mod:`mixedjax.core.families`.

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
