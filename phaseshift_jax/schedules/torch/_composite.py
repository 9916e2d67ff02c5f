"""``SequentialLR`` and ``ChainedScheduler``: torch's schedulers on one shared rate."""

from __future__ import annotations

from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from phaseshift_jax.schedules.torch._base import (
    TorchSchedule,
    as_float,
    as_step,
    check_int,
    has_momentum,
    recursion_rate,
)


def _check_members(name: str, schedulers) -> list[TorchSchedule]:
  schedulers = list(schedulers)
  if not schedulers:
    raise ValueError(f"schedulers must hold at least one scheduler ({name})")
  for s in schedulers:
    if not isinstance(s, TorchSchedule):
      raise ValueError(
          f"schedulers must be schedules.torch schedulers, got {s!r} (ReduceLROnPlateau cannot be "
          f"part of a {name}, as in torch: step it with scheduled_lr)")
  return schedulers


def sequential_lr(schedulers: Sequence[TorchSchedule], milestones: Sequence[int]) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.SequentialLR``: ``schedulers[k]`` from ``milestones[k-1]`` on.

  torch's semantics: the rate starts from the first scheduler's ``lr`` (torch resets the group
  to ``initial_lr``); at milestone :math:`m_k` torch does not rebuild scheduler :math:`k` but
  evaluates it at its step 0 (its closed form at 0 where the class has one, so most restart from
  their own start; ``MultiplicativeLR`` multiplies the rate it finds by :math:`\lambda(0)`) and
  then steps it, with its own step :math:`t - m_k`. Any schedulers and milestones (sorted ints
  >= 0; a repeated milestone skips the schedulers in between, a milestone 0 skips the first),
  in closed form: O(number of schedulers) per evaluation. The momentum (if a member cycles it)
  is the active member's; a member without one keeps the last value set. optax's
  ``optax.join_schedules`` restarts each schedule at 0 too, but ``warmup_cosine_decay_schedule``
  (the usual LinearLR + CosineAnnealingLR pair) stays at its floor after the cosine's
  :math:`T_{max}`, where torch's cosine rises again.

  Not supported (torch fails too): a ``SequentialLR`` or ``ChainedScheduler`` as a member.

  Args:
    schedulers: the members, built with the optimizer's learning rate.
    milestones: ``len(schedulers) - 1`` steps at which the next member takes over.
  """
  schedulers = _check_members("SequentialLR", schedulers)
  milestones = list(milestones)
  if len(milestones) != len(schedulers) - 1:
    raise ValueError(
        f"milestones must have len(schedulers) - 1 = {len(schedulers) - 1} entries, got "
        f"{len(milestones)}")
  for m in milestones:
    check_int("milestones", m, 0)
  if milestones != sorted(milestones):
    raise ValueError(f"milestones must be sorted, got {milestones}")
  for s in schedulers:
    if s.kind == "composite":
      raise ValueError(f"schedulers: a {s.name} cannot be a member of a SequentialLR")
  starts = [0] + milestones
  points = np.asarray(milestones, np.int32).reshape(-1)
  lr0 = schedulers[0].lr
  first = sum(m <= 0 for m in milestones)  # the member torch starts with (bisect_right(ms, 0))

  def active(t):
    return jnp.sum(points <= t).astype(jnp.int32)

  def select(t, candidates):
    return jnp.select([active(t) == k for k in range(len(candidates))], candidates)

  def rate_at(t, members=None):
    # Only the first ``members`` can be active at t (the rate before milestone k needs k).
    candidates = []
    for k, s in enumerate(schedulers[:members]):
      tau = jnp.maximum(t - starts[k], 0)
      if k == 0 or starts[k] == 0:
        candidates.append(s.rate(t))
      else:
        lr_in = rate_at(jnp.asarray(starts[k] - 1, jnp.int32), k) if s.rate_from else None
        candidates.append(s.rate_after_restart(lr_in, tau))
    return select(t, candidates)

  def init(_):
    return schedulers[first].init(as_float(lr0))

  def step(t, lr):
    candidates = []
    for k, s in enumerate(schedulers):
      stepped = s.step(t - starts[k], lr)
      candidates.append(jnp.where(t == starts[k], s.restart(lr), stepped) if k else stepped)
    return select(t, candidates)

  extra = {}
  if any(has_momentum(s) for s in schedulers):
    with_momentum = [s for s in schedulers if has_momentum(s)]
    start_momentum = (schedulers[first] if has_momentum(schedulers[first]) else with_momentum[-1])

    def momentum(count, members=None):
      t = as_step(count)
      candidates = []
      for k, s in enumerate(schedulers[:members]):
        if has_momentum(s):
          candidates.append(s.momentum(jnp.maximum(t - starts[k], 0) if k else t))
        elif starts[k] == 0:
          candidates.append(start_momentum.momentum(jnp.zeros((), jnp.int32)))
        else:
          candidates.append(momentum(starts[k] - 1, k))  # held from before the milestone
      return select(t, candidates)

    def momentum_init(m):
      del m
      return start_momentum.momentum_init(None)

    def momentum_step(t, m):
      candidates = []
      for k, s in enumerate(schedulers):
        if has_momentum(s):
          stepped = s.momentum_step(t - starts[k], m)
          restarted = s.momentum(jnp.zeros((), jnp.int32))
          candidates.append(jnp.where(t == starts[k], restarted, stepped) if k else stepped)
        else:
          candidates.append(m)
      return select(t, candidates)

    extra = dict(momentum=momentum, momentum_init=momentum_init, momentum_step=momentum_step)

  def restart(_):
    raise ValueError("a SequentialLR cannot be a member of a SequentialLR (torch fails too)")

  return TorchSchedule(
      "SequentialLR", lr0, rate_at, init=init, step=step, restart=restart, kind="composite",
      **extra,
  )


def chained_scheduler(schedulers: Sequence[TorchSchedule]) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.ChainedScheduler``: every member steps the shared rate in turn.

  Also what a training loop gets by calling ``step()`` on several schedulers of one optimizer,
  in that order. The members are taken as built in list order on an optimizer of learning rate
  ``schedulers[0].lr`` (each constructor steps the shared rate once). The rate is what torch
  computes, by the cheapest exact route:

  * every member multiplicative (``StepLR``, ``MultiStepLR``, ``ConstantLR``, ``LinearLR``,
    ``ExponentialLR``, ``PolynomialLR``, ``MultiplicativeLR``): the product of the members'
    factors, :math:`\eta_0 \prod_i F_i(t)`, O(1);
  * a member that overwrites the rate (``LambdaLR``, ``CyclicLR``, ``OneCycleLR``,
    ``CosineAnnealingWarmRestarts``): the last such member's rate, stepped by the members
    after it at that step only, O(1);
  * otherwise (e.g. ``CosineAnnealingLR`` with another member, a nested composite): torch's
    recursion in a ``lax.fori_loop``, O(t) per evaluation; :func:`scheduled_lr` runs it at
    O(1) per step by keeping the rate in its state.

  The momentum (if a member cycles it) is the last such member's. optax has no counterpart
  (``optax.join_schedules`` is sequential).

  Args:
    schedulers: the members.
  """
  schedulers = _check_members("ChainedScheduler", schedulers)
  lr0 = schedulers[0].lr

  def init(lr):
    for s in schedulers:
      lr = s.init(lr)
    return lr

  def step(t, lr):
    for s in schedulers:
      lr = s.step(t, lr)
    return lr

  overwriting = [i for i, s in enumerate(schedulers) if s.kind == "overwrite"]
  if all(s.kind == "multiplicative" for s in schedulers):
    def rate(t):
      value = as_float(lr0)
      for s in schedulers:
        value = value * s.factor(t)
      return value
  elif overwriting:
    tail = schedulers[overwriting[-1]:]

    def rate(t):
      start, stepped = as_float(lr0), as_float(lr0)
      for s in tail:
        start, stepped = s.init(start), s.step(t, stepped)
      return jnp.where(t == 0, start, stepped)
  else:
    rate = recursion_rate(init, step, lr0)

  extra = {}
  momentum_members = [s for s in schedulers if has_momentum(s)]
  if momentum_members:
    def momentum_init(m):
      for s in momentum_members:
        m = s.momentum_init(m)
      return m

    def momentum_step(t, m):
      for s in momentum_members:
        m = s.momentum_step(t, m)
      return m

    extra = dict(momentum=momentum_members[-1].momentum, momentum_init=momentum_init,
                 momentum_step=momentum_step)

  def restart(_):
    raise ValueError("a ChainedScheduler cannot be a member of a SequentialLR (torch fails too)")

  return TorchSchedule(
      "ChainedScheduler", lr0, rate, init=init, step=step, restart=restart, kind="composite",
      **extra,
  )
