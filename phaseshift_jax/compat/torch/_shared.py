"""Pieces shared by the ``compat.torch`` optimizers: ``maximize`` and torch's nesterov condition."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import concrete_scalar


def _negate_if(maximize: bool):
  return optax.scale(-1.0) if maximize else None


def _check_nesterov(momentum, dampening) -> None:
  """torch's condition for ``nesterov``, on whichever of ``momentum``, ``dampening`` is concrete."""
  mu = concrete_scalar("momentum", momentum)
  tau = concrete_scalar("dampening", dampening)
  if (mu is not None and mu <= 0) or (tau is not None and tau != 0):
    raise ValueError(
        f"nesterov requires momentum > 0 and dampening == 0, got momentum={momentum!r}, "
        f"dampening={dampening!r}"
    )
