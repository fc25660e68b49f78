"""The engine protocol: what a likelihood engine provides, and the two engines.

An engine is a set of pure kernels of the relative covariance factors ``θ`` (lme4's layout)
and an engine's cross-products ``data`` (computed once by :mod:`mixedjax.design`), for one
kind of random-effects structure. Every kernel composes with ``jit``, ``vmap`` and ``grad``;
``structure`` is static. Everything above the engines (the fit program, results,
inference, prediction, display) calls an engine only through this protocol or through
functions built on it (:mod:`mixedjax.engines.gls`), so it is written once.

* :data:`ONE_FACTOR` (:mod:`mixedjax.engines.onefactor`): one grouping factor, with
  variance components inside it; the per-group blocks are factored for all groups at once.
  ``structure`` is a :class:`~mixedjax.core.covariance.CovStructure` (or the size class's
  :class:`~mixedjax.design.sizeclass.FactorMap`), ``data`` a
  :class:`~mixedjax.design.groups.GroupedData`.
* :data:`CROSSED` (:mod:`mixedjax.engines.crossed`): any number of terms on any grouping
  factors, by a blocked Cholesky factorization. ``structure`` is a
  :class:`~mixedjax.design.crossed.CrossedStructure`, ``data`` a
  :class:`~mixedjax.design.crossed.CrossedData`.

:func:`engine_for` chooses the engine from the structure.

Example:
    >>> import mixedjax
    >>> m = mixedjax.mixedlm("Yield ~ 1 + (1 | Batch)", mixedjax.datasets.load("dyestuff"))
    >>> engine = engine_for(m.structure)
    >>> engine.name
    'one-factor'
    >>> round(float(engine.deviance(m.fit().theta, m.data, m.structure, True)), 4)
    319.6543
"""

from typing import NamedTuple, Protocol

import jax.numpy as jnp

from mixedjax.core.covariance import CovStructure, user_to_profile
from mixedjax.design.crossed import CrossedStructure
from mixedjax.design.sizeclass import FactorMap
from mixedjax.engines import crossed, onefactor
from mixedjax.engines.onefactor import GLSSystem


class Engine(Protocol):
    """A likelihood engine (see the module docstring); shapes: ``θ (n_theta,)``,
    ``γ (n_user_params,)``, ``p`` fixed effects."""

    #: ``"one-factor"`` or ``"crossed"``
    name: str

    def deviance(self, theta, data, structure, reml: bool) -> jnp.ndarray:
        """``()`` profiled deviance ``d(θ)``: ``-2 log L`` or the REML criterion with β and
        σ² profiled out; ``+inf`` where it is not finite."""

    def estimates(self, theta, data, structure, reml: bool) -> NamedTuple:
        """The estimates at ``θ``: ``beta (p,)``, ``scale ()`` σ², ``cov_beta (p, p)``,
        ``objective ()``, and the conditional modes ``blups`` with their conditional
        covariances ``cond_cov`` (data scale; per group for one factor, per term for
        crossed factors)."""

    def gls_system(self, theta, data, structure) -> GLSSystem:
        """Profile-scale GLS system at ``θ``: ``log|V₁|`` and ``[X y]'V₁⁻¹[X y]``."""

    def user_gls_system(self, gamma, data, structure) -> tuple[GLSSystem, jnp.ndarray]:
        """``(profile-scale GLS system, σ²)`` at the data-scale variance parameters ``γ``
        (``Σ = σ²I + Z G Z'`` is linear in ``γ``; see :mod:`mixedjax.engines.gls`)."""

    def n_user_params(self, structure) -> int:
        """Length of ``γ`` (σ² included)."""


class OneFactorEngine:
    """The one-factor engine (:mod:`mixedjax.engines.onefactor`)."""

    name = "one-factor"

    def deviance(self, theta, data, structure, reml: bool) -> jnp.ndarray:
        return onefactor.profiled_deviance(theta, data, structure, reml)

    def estimates(self, theta, data, structure, reml: bool) -> onefactor.Estimates:
        return onefactor.estimates(theta, data, structure, reml)

    def gls_system(self, theta, data, structure) -> GLSSystem:
        return onefactor.gls_system_theta(theta, data, structure)

    def user_gls_system(self, gamma, data, structure) -> tuple[GLSSystem, jnp.ndarray]:
        cov, vc, scale = user_to_profile(gamma, structure)
        return onefactor.gls_system_cov(cov, vc, data, structure), scale

    def n_user_params(self, structure) -> int:
        return structure.k_re2 + structure.k_vc + 1


class CrossedEngine:
    """The blocked-Cholesky engine for crossed factors (:mod:`mixedjax.engines.crossed`)."""

    name = "crossed"

    def deviance(self, theta, data, structure, reml: bool) -> jnp.ndarray:
        return crossed.deviance(theta, data, structure, reml)

    def estimates(self, theta, data, structure, reml: bool) -> crossed.CrossedEstimates:
        return crossed.estimates(theta, data, structure, reml)

    def gls_system(self, theta, data, structure) -> GLSSystem:
        return crossed.crossed_gls_system(theta, data, structure)

    def user_gls_system(self, gamma, data, structure) -> tuple[GLSSystem, jnp.ndarray]:
        theta, scale = crossed.crossed_user_to_theta(gamma, structure)
        return crossed.crossed_gls_system(theta, data, structure), scale

    def n_user_params(self, structure) -> int:
        return sum(q * (q + 1) // 2 for q in structure.q) + 1


#: The two engines.
ONE_FACTOR: Engine = OneFactorEngine()
CROSSED: Engine = CrossedEngine()


def engine_for(structure) -> Engine:
    """The engine of ``structure`` (a ``CovStructure``/``FactorMap`` or ``CrossedStructure``)."""
    if isinstance(structure, CrossedStructure):
        return CROSSED
    if isinstance(structure, CovStructure | FactorMap):
        return ONE_FACTOR
    raise TypeError(f"structure must be a CovStructure or CrossedStructure, got {structure!r}")
