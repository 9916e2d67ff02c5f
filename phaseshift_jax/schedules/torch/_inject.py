"""Feeding a scheduler's momentum (or beta1) cycling to an optimizer."""

from __future__ import annotations

from collections.abc import Callable

import jax.numpy as jnp
import optax

from phaseshift_jax.schedules.torch._base import TorchSchedule


def with_momentum_schedule(
    factory: Callable[..., optax.GradientTransformation],
    schedule: TorchSchedule,
    *,
    momentum: str = "momentum",
    **kwargs,
) -> optax.GradientTransformationExtraArgs:
  r"""``factory`` under ``optax.inject_hyperparams`` with ``schedule``'s rate and momentum.

  torch's ``CyclicLR`` and ``OneCycleLR`` (``cycle_momentum=True``) write a momentum into the
  optimizer at every step: ``momentum`` (e.g. ``SGD``, ``RMSprop``) or ``betas[0]`` (Adam
  family). This builds ``optax.inject_hyperparams(factory)(lr=schedule, <momentum>=
  schedule.momentum, **kwargs)``; inject_hyperparams evaluates both at its own count, 0 at the
  first update, so step :math:`t` uses torch's rate and momentum of step :math:`t`. With
  ``momentum="betas"``, the injected ``betas`` is ``[momentum(t), beta2]``, ``beta2`` taken from
  ``kwargs["betas"][1]`` (default 0.999); the factory must accept ``betas`` as a length-2 array
  (``compat.torch.adam``, ``adamw``, ``nadam``, ... do).

  Example: torch's ``SGD(lr=0.1, momentum=0.9)`` with ``OneCycleLR(opt, max_lr=1.0,
  total_steps=1000)``::

    sched = schedules.torch.one_cycle_lr(1.0, total_steps=1000)
    tx = schedules.torch.with_momentum_schedule(compat.torch.sgd, sched)

  Args:
    factory: an optimizer factory with ``lr`` and ``momentum`` (or ``betas``) arguments.
    schedule: a schedule with a momentum (:attr:`TorchSchedule.momentum` not ``None``).
    momentum: the factory's argument that takes it: ``"momentum"`` or ``"betas"``.
    **kwargs: the factory's other arguments.
  """
  if getattr(schedule, "momentum", None) is None:
    raise ValueError("schedule must cycle the momentum (cycle_momentum=True)")
  if momentum == "betas":
    beta2 = kwargs.pop("betas", (0.9, 0.999))[1]
    kwargs["betas"] = lambda count: jnp.stack(
        [schedule.momentum(count), jnp.asarray(beta2, schedule.momentum(count).dtype)])
  elif momentum == "momentum":
    kwargs["momentum"] = schedule.momentum
  else:
    raise ValueError(f"momentum must be 'momentum' or 'betas', got {momentum!r}")
  return optax.inject_hyperparams(factory)(lr=schedule, **kwargs)
