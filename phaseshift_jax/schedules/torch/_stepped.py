"""torch's training loop as an optax transformation: ``ReduceLROnPlateau`` and :func:`scheduled_lr`.

In torch the learning rate is state: ``param_group["lr"]``, stepped after each ``opt.step()`` by
every scheduler in turn (``sched.step()``, ``plateau.step(loss)``). :func:`scheduled_lr` keeps that
rate in its state and steps it the same way, so a cut made after step ``t`` applies from step
``t + 1``, as in torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax import _checks
from phaseshift_jax.schedules.torch._base import (
    TorchSchedule,
    as_float,
    check_choice,
    check_range,
    has_momentum,
)


class PlateauState(NamedTuple):
  """torch's ``ReduceLROnPlateau`` bookkeeping (the rate itself is in :class:`ScheduledLrState`)."""

  best: jax.Array  # float: the best metric so far (inf / -inf before the first)
  num_bad_epochs: jax.Array  # int32
  cooldown_counter: jax.Array  # int32


@dataclasses.dataclass(frozen=True)
class Plateau:
  r"""torch's ``ReduceLROnPlateau`` settings, a member of :func:`scheduled_lr`'s list.

  After each metric :math:`v` (torch's ``step(v)``): :math:`v` improves on the best value
  :math:`b` if :math:`v < b(1 - \delta)` (``mode="min"``, ``threshold_mode="rel"``),
  :math:`v < b - \delta` (min, abs), :math:`v > b(1 + \delta)` (max, rel) or
  :math:`v > b + \delta` (max, abs). An improvement resets the count of bad steps, anything else
  (NaN too) adds one; during a cooldown the count stays 0 and the cooldown counts down. When the
  count exceeds ``patience``, the rate becomes :math:`\max(\eta f, \eta_{min})` unless that
  lowers it by ``eps`` or less, the cooldown restarts at ``cooldown`` and the count at 0.

  Args:
    mode: ``"min"`` or ``"max"`` (static).
    factor: :math:`f` < 1.
    patience: bad steps tolerated (int >= 0; an int32 array when injected).
    threshold: :math:`\delta`.
    threshold_mode: ``"rel"`` or ``"abs"`` (static).
    cooldown: steps to wait after a cut (int >= 0).
    min_lr: :math:`\eta_{min}`, absolute.
    eps: smallest cut applied, absolute.
  """

  mode: str = "min"
  factor: Any = 0.1
  patience: Any = 10
  threshold: Any = 1e-4
  threshold_mode: str = "rel"
  cooldown: Any = 0
  min_lr: Any = 0.0
  eps: Any = 1e-8

  def __post_init__(self):
    check_choice("mode", self.mode, ("min", "max"))
    check_choice("threshold_mode", self.threshold_mode, ("rel", "abs"))
    check_range("factor", self.factor, float("-inf"), 1.0, high_open=True)
    _checks.check_non_negative("patience", self.patience)
    _checks.check_non_negative("cooldown", self.cooldown)
    _checks.check_not_nan("threshold", self.threshold)
    _checks.check_non_negative("min_lr", self.min_lr)
    _checks.check_not_nan("eps", self.eps)

  def init(self) -> PlateauState:
    worse = jnp.inf if self.mode == "min" else -jnp.inf
    zero = jnp.zeros((), jnp.int32)
    return PlateauState(best=as_float(worse), num_bad_epochs=zero, cooldown_counter=zero)

  def is_better(self, value, best):
    if self.mode == "min" and self.threshold_mode == "rel":
      return value < best * (1.0 - as_float(self.threshold))
    if self.mode == "min":
      return value < best - self.threshold
    if self.threshold_mode == "rel":
      return value > best * (as_float(self.threshold) + 1.0)
    return value > best + self.threshold

  def step(self, state: PlateauState, lr, value) -> tuple[PlateauState, jax.Array]:
    """torch's ``ReduceLROnPlateau.step(value)``: the new state and group rate."""
    value = as_float(value)
    better = self.is_better(value, state.best)
    best = jnp.where(better, value, state.best)
    bad = jnp.where(better, 0, state.num_bad_epochs + 1)
    cooling = state.cooldown_counter > 0
    counter = jnp.where(cooling, state.cooldown_counter - 1, state.cooldown_counter)
    bad = jnp.where(cooling, 0, bad)
    reduce = bad > self.patience
    new_lr = jnp.maximum(lr * self.factor, as_float(self.min_lr))
    lr = jnp.where(reduce & (lr - new_lr > self.eps), new_lr, lr)
    counter = jnp.where(reduce, self.cooldown, counter).astype(jnp.int32)
    bad = jnp.where(reduce, 0, bad).astype(jnp.int32)
    return PlateauState(best, bad, counter), lr


Member = TorchSchedule | Plateau


class ScheduledLrState(NamedTuple):
  """The optimizer's torch-side hyperparameters, as torch's schedulers left them."""

  count: jax.Array  # int32: scheduler.step() calls so far (torch's last_epoch)
  lr: jax.Array  # float: param_group["lr"], the rate of the next update
  momentum: jax.Array  # float: the momentum (or beta1) the members set; NaN if none does
  plateaus: tuple  # a PlateauState per Plateau member, in order


class _Stepper:
  """torch's group rate (and momentum) stepped by a list of members; see :func:`scheduled_lr`."""

  def __init__(self, schedulers, lr):
    if isinstance(schedulers, (TorchSchedule, Plateau)):
      schedulers = [schedulers]
    schedulers = list(schedulers)
    for s in schedulers:
      if not isinstance(s, (TorchSchedule, Plateau)):
        raise ValueError(f"schedulers must be schedules.torch schedulers or Plateau, got {s!r}")
    if lr is None:
      with_rate = [s for s in schedulers if isinstance(s, TorchSchedule)]
      if not with_rate:
        raise ValueError("lr must be given when no member is a learning-rate scheduler")
      lr = with_rate[0].lr
    _checks.check_non_negative("lr", lr)
    self.schedulers, self.lr = schedulers, lr
    self.plateaus = [s for s in schedulers if isinstance(s, Plateau)]

  def init(self) -> ScheduledLrState:
    rate, momentum = as_float(self.lr), as_float(jnp.nan)
    for s in self.schedulers:
      if isinstance(s, TorchSchedule):
        rate = s.init(rate)
        if has_momentum(s):
          momentum = s.momentum_init(momentum)
    return ScheduledLrState(
        count=jnp.zeros((), jnp.int32), lr=rate, momentum=momentum,
        plateaus=tuple(p.init() for p in self.plateaus))

  def advance(self, state: ScheduledLrState, value) -> ScheduledLrState:
    if self.plateaus and value is None:
      raise ValueError("a ReduceLROnPlateau member needs the metric: update(..., value=loss)")
    t = state.count + 1
    rate, momentum, found, i = state.lr, state.momentum, [], 0
    for s in self.schedulers:
      if isinstance(s, Plateau):
        new, rate = s.step(state.plateaus[i], rate, value)
        found.append(new)
        i += 1
      else:
        rate = s.step(t, rate)
        if has_momentum(s):
          momentum = s.momentum_step(t, momentum)
    return ScheduledLrState(t, rate, momentum, tuple(found))


def scheduled_lr(
    schedulers: Member | Sequence[Member], lr: float | None = None
) -> optax.GradientTransformationExtraArgs:
  r"""The rate torch's loop gives: ``opt.step()``, then each scheduler's ``step()`` in turn.

  An optax transformation that multiplies the updates by the current rate :math:`\eta`
  (``state.lr``) and then steps :math:`\eta` through ``schedulers`` in order, torch's
  recursions exactly (:class:`TorchSchedule` members: their ``step``; :class:`Plateau`
  members: ``ReduceLROnPlateau.step(value)``, with the metric passed as ``update(..., value=)``
  as ``optax.contrib.reduce_on_plateau`` takes it). So the update at step :math:`t` uses the
  rate set after step :math:`t-1`, as in torch. O(1) per step for any members.

  Use it after an optimizer built with ``lr=1.0`` whose learning rate is a final factor
  (``compat.torch`` ``sgd``, ``adam``, ``adamw``, ``rmsprop``, ``adagrad``, ...):
  ``optax.chain(compat.torch.sgd(1.0, momentum=0.9), scheduled_lr([...]))``. For any other
  optimizer (where the rate is not a final factor, or to drive the momentum too), inject the
  same rate: :func:`scheduled_hyperparam` is it as an optax stateful schedule for
  ``optax.inject_hyperparams``.

  Args:
    schedulers: the members, in torch's stepping order; a single member is allowed.
    lr: the optimizer's learning rate before the schedulers were built (default: the first
      :class:`TorchSchedule` member's ``lr``; needed when there is none).

  Returns:
    ``GradientTransformationExtraArgs`` with state :class:`ScheduledLrState`.
  """
  stepper = _Stepper(schedulers, lr)

  def init_fn(params):
    del params
    return stepper.init()

  def update_fn(updates, state, params=None, *, value=None, **extra_args):
    del params, extra_args
    updates = jax.tree.map(lambda g: (state.lr * g).astype(g.dtype), updates)
    return updates, stepper.advance(state, value)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)


class _StatefulHyperparam:
  """An ``optax.StatefulSchedule`` (``init``, ``update``, ``__call__``) over a :class:`_Stepper`."""

  def __init__(self, stepper: _Stepper, which: str):
    self.stepper, self.which = stepper, which

  def init(self) -> ScheduledLrState:
    return self.stepper.init()

  def update(self, state, *, value=None, **extra_args):
    del extra_args
    return self.stepper.advance(state, value)

  def __call__(self, state, **extra_args):
    del extra_args
    return getattr(state, self.which)


def scheduled_hyperparam(
    schedulers: Member | Sequence[Member], lr: float | None = None, which: str = "lr"
) -> optax.StatefulSchedule:
  r""":func:`scheduled_lr`'s rate (or momentum) as an optax stateful schedule.

  For ``optax.inject_hyperparams``, which reads the value *before* the inner update and steps
  the schedule *after* it with the update's extra arguments: torch's order, with the metric as
  ``value=``. Example, torch's ``SGD(lr=0.1)`` with ``[StepLR(opt, 10, 0.9),
  ReduceLROnPlateau(opt)]``::

    members = [schedules.torch.step_lr(0.1, 10, 0.9), schedules.torch.Plateau()]
    tx = optax.inject_hyperparams(compat.torch.sgd)(
        lr=schedules.torch.scheduled_hyperparam(members))
    updates, state = tx.update(grads, state, params, value=loss)

  Args:
    schedulers, lr: as :func:`scheduled_lr`.
    which: ``"lr"`` or ``"momentum"`` (the value the members' momentum cycling sets).
  """
  check_choice("which", which, ("lr", "momentum"))
  return _StatefulHyperparam(_Stepper(schedulers, lr), which)


def reduce_lr_on_plateau(
    lr: float,
    mode: str = "min",
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_lr: float = 0.0,
    eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.lr_scheduler.ReduceLROnPlateau`` in torch's loop order.

  ``scheduled_lr([Plateau(...)], lr)``: multiplies the updates by the current rate
  (``state.lr``, starting at ``lr``) and then processes the metric passed as
  ``update(..., value=loss)``, so a cut made after step :math:`t` applies from step
  :math:`t + 1`, exactly torch's ``loss; opt.step(); sched.step(loss)``. Chain it after an
  optimizer built with ``lr=1.0`` whose rate is a final factor (see :func:`scheduled_lr`); the
  rule is :class:`Plateau`'s. Every float argument can be injected
  (``optax.inject_hyperparams``); ``mode`` and ``threshold_mode`` are static.

  Differences: ``optax.contrib.reduce_on_plateau`` cuts after ``patience`` bad steps (torch after
  ``patience + 1``), scales the update of the step whose metric it was given, has no ``mode``
  (max), no ``eps``, and a relative scale instead of torch's absolute ``min_lr``.
  :func:`phaseshift_jax.schedules.reduce_lr_on_plateau` (the older one here) also cuts the
  current update; this one is torch's order.

  Args:
    lr: the optimizer's learning rate (the rate before any cut).
    mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps: torch's, see
      :class:`Plateau`.
  """
  plateau = Plateau(mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps)
  return scheduled_lr([plateau], lr=lr)
