"""torch's schedulers that step the shared rate by a factor (and ``LambdaLR``, cosine annealing).

Each factory returns a :class:`TorchSchedule`: the closed form torch's recursion has when the
scheduler runs alone (the optax schedule), plus the recursion itself for the composites.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np

from phaseshift_jax import _checks
from phaseshift_jax.schedules.torch._base import (
    TorchSchedule,
    as_float,
    check_int,
    check_range,
)


def _lambda_value(fn, t):
  return as_float(fn(t))


def lambda_lr(lr: float, lr_lambda: Callable) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.LambdaLR``: :math:`\eta_t = \eta_0\,\lambda(t)`.

  ``lr_lambda`` is any JAX function of the int32 step ``t`` (torch passes a Python int: write
  it with ``jnp`` operations, e.g. ``lambda t: 0.95 ** t`` or ``lambda t: jnp.where(t < 10,
  0.1, 1.0)``). Each step overwrites the group rate, so in a chain it discards what came
  before it. optax has no counterpart for an arbitrary function (a schedule *is* one:
  ``lambda t: lr * lr_lambda(t)`` is the same rate alone).

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    lr_lambda: :math:`\lambda`, int32 step -> factor.
  """
  _checks.check_non_negative("lr", lr)
  if not callable(lr_lambda):
    raise ValueError(f"lr_lambda must be a function of the step, got {lr_lambda!r}")

  def rate(t):
    return as_float(lr) * _lambda_value(lr_lambda, t)

  zero = jnp.zeros((), jnp.int32)
  return TorchSchedule(
      "LambdaLR", lr, rate,
      init=lambda _: rate(zero),
      step=lambda t, _: rate(t),
      restart=lambda _: rate(zero),
      kind="overwrite",
  )


def multiplicative_lr(lr: float, lr_lambda: Callable) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.MultiplicativeLR``: :math:`\eta_t = \eta_{t-1}\,\lambda(t)`.

  Alone, :math:`\eta_t = \eta_0 \prod_{k=1}^{t} \lambda(k)` (the constructor's step leaves the
  rate alone), evaluated as torch does, one multiplication per step, in a ``lax.fori_loop``:
  O(t) work per evaluation. For long runs, a closed form of the product through
  :func:`lambda_lr` is cheaper (e.g. ``lambda t: 0.95 ** t`` for a constant factor), or
  :func:`scheduled_lr`, which keeps the rate in its state (O(1) per step). ``lr_lambda`` as in
  :func:`lambda_lr`. After a ``SequentialLR`` milestone it multiplies the rate it finds by
  :math:`\lambda(0)` first (torch calls it at step 0 there).

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    lr_lambda: :math:`\lambda`, int32 step -> factor.
  """
  _checks.check_non_negative("lr", lr)
  if not callable(lr_lambda):
    raise ValueError(f"lr_lambda must be a function of the step, got {lr_lambda!r}")

  def step(t, rate):
    return rate * _lambda_value(lr_lambda, t)

  def run(start, first, last):
    return jax.lax.fori_loop(first, last + 1, step, start)

  return TorchSchedule(
      "MultiplicativeLR", lr,
      rate=lambda t: run(as_float(lr), 1, t),
      init=lambda rate: rate,
      step=step,
      restart=lambda rate: step(jnp.zeros((), jnp.int32), rate),
      kind="multiplicative",
      factor=lambda t: run(as_float(1.0), 1, t),
      rate_from=lambda lr_in, tau: run(step(jnp.zeros((), jnp.int32), lr_in), 1, tau),
  )


def step_lr(lr: float, step_size: int, gamma: float = 0.1) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.StepLR``: :math:`\eta_t = \eta_0\,\gamma^{\lfloor t/s \rfloor}`.

  The same rate as ``optax.exponential_decay(lr, step_size, gamma, staircase=True)``, which
  computes it in float32 at the optimizer's int32 count even under x64; this one is float64
  there.

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    step_size: :math:`s` (int >= 1).
    gamma: :math:`\gamma`.
  """
  _checks.check_non_negative("lr", lr)
  check_int("step_size", step_size, 1)
  _checks.check_non_negative("gamma", gamma)

  def factor(t):
    return as_float(gamma) ** (t // step_size)

  return TorchSchedule(
      "StepLR", lr,
      rate=lambda t: as_float(lr) * factor(t),
      init=lambda rate: rate,
      step=lambda t, rate: jnp.where(t % step_size == 0, rate * gamma, rate),
      restart=lambda _: as_float(lr) * as_float(gamma) ** 0,
      kind="multiplicative",
      factor=factor,
  )


def multi_step_lr(lr: float, milestones: Iterable[int], gamma: float = 0.1) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.MultiStepLR``: :math:`\eta_t = \eta_0\,\gamma^{n(t)}`.

  :math:`n(t)` = number of milestones :math:`\le t`, counted with multiplicity (torch keeps a
  ``Counter``: a milestone given twice multiplies by :math:`\gamma^2`). The same rate as
  ``optax.piecewise_constant_schedule(lr, {m: gamma ** k})`` (float32 there at an int32 count).

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    milestones: steps (ints >= 0) at which the rate is multiplied by :math:`\gamma`.
    gamma: :math:`\gamma`.
  """
  _checks.check_non_negative("lr", lr)
  milestones = sorted(milestones)
  for m in milestones:
    check_int("milestones", m, 0)
  _checks.check_non_negative("gamma", gamma)
  points = np.asarray(milestones, np.int32).reshape(-1)  # NumPy: no device array at import

  def count(t, compare):
    return jnp.sum(compare(points, t)).astype(jnp.int32)

  def factor(t):
    return as_float(gamma) ** count(t, jnp.less_equal)

  return TorchSchedule(
      "MultiStepLR", lr,
      rate=lambda t: as_float(lr) * factor(t),
      init=lambda rate: rate * as_float(gamma) ** count(0, jnp.equal),
      step=lambda t, rate: rate * as_float(gamma) ** count(t, jnp.equal),
      restart=lambda _: as_float(lr) * factor(jnp.zeros((), jnp.int32)),
      kind="multiplicative",
      factor=factor,
  )


def constant_lr(lr: float, factor: float = 1.0 / 3, total_iters: int = 5) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.ConstantLR``: :math:`\eta_0 f` for :math:`t < N`, then :math:`\eta_0`.

  As torch computes it: the rate is multiplied by :math:`f` at construction and by
  :math:`1/f` at step :math:`N` (so with :math:`N = 0` it stays at :math:`\eta_0 f`, where
  torch's closed form would say :math:`\eta_0`). optax: ``optax.piecewise_constant_schedule
  (lr * factor, {N: 1 / factor})``, in float32 at an int32 count.

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    factor: :math:`f`, in [0, 1] (> 0 when :math:`N \ge 1`: torch divides by it).
    total_iters: :math:`N` (int >= 0).
  """
  _checks.check_non_negative("lr", lr)
  check_range("factor", factor, 0.0, 1.0)
  check_int("total_iters", total_iters, 0)
  if total_iters > 0:
    check_range("factor", factor, 0.0, 1.0, low_open=True)

  def after(t, first):
    """``first`` (the rate after the constructor), then torch's step at ``N``."""
    if total_iters == 0:
      return first
    return jnp.where(t < total_iters, first, first * (1.0 / as_float(factor)))

  def restart(_):
    return as_float(lr) * (factor + (0 >= total_iters) * (1 - as_float(factor)))

  return TorchSchedule(
      "ConstantLR", lr,
      rate=lambda t: after(t, as_float(lr) * factor),
      init=lambda rate: rate * factor,
      step=lambda t, rate: jnp.where(t == total_iters, rate * (1.0 / as_float(factor)), rate),
      restart=restart,
      kind="multiplicative",
      factor=lambda t: after(t, as_float(factor)),
      rate_from=lambda _, tau: after(tau, restart(None)),
  )


def linear_lr(
    lr: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.LinearLR``: :math:`\eta_0\,(s + (e - s) \min(t, N) / N)`.

  The closed form of torch's recursion (torch multiplies by
  :math:`1 + (e-s)/(Ns + (t-1)(e-s))` at each step up to :math:`N`). The same rate as
  ``optax.linear_schedule(lr * start_factor, lr * end_factor, total_iters)`` (float32 there at
  an int32 count). With :math:`N = 0` the rate stays at :math:`\eta_0 s`, as torch's does.

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    start_factor: :math:`s`, in (0, 1].
    end_factor: :math:`e`, in [0, 1].
    total_iters: :math:`N` (int >= 0).
  """
  _checks.check_non_negative("lr", lr)
  check_range("start_factor", start_factor, 0.0, 1.0, low_open=True)
  check_range("end_factor", end_factor, 0.0, 1.0)
  check_int("total_iters", total_iters, 0)
  s, e = start_factor, end_factor

  def factor(t):
    if total_iters == 0:
      return as_float(s)
    # torch: s + (e - s) * min(N, t) / N; over one division, so that e = 0 ends at an exact 0
    # (XLA divides by a constant as a multiplication by its inverse).
    return (s * as_float(total_iters) + (e - as_float(s)) * jnp.minimum(total_iters, t)) / total_iters

  def step(t, rate):
    scaled = rate * (1.0 + (e - as_float(s)) / (total_iters * s + (t - 1) * (e - as_float(s))))
    return jnp.where(t > total_iters, rate, scaled)

  return TorchSchedule(
      "LinearLR", lr,
      rate=lambda t: as_float(lr) * factor(t),
      init=lambda rate: rate * s,
      step=step,
      restart=lambda _: as_float(lr) * factor(jnp.zeros((), jnp.int32)),
      kind="multiplicative",
      factor=factor,
  )


def exponential_lr(lr: float, gamma: float) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.ExponentialLR``: :math:`\eta_t = \eta_0\,\gamma^t`.

  The same rate as ``optax.exponential_decay(lr, 1, gamma)`` (float32 there at an int32 count).

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    gamma: :math:`\gamma`.
  """
  _checks.check_non_negative("lr", lr)
  _checks.check_non_negative("gamma", gamma)

  def factor(t):
    return as_float(gamma) ** t

  return TorchSchedule(
      "ExponentialLR", lr,
      rate=lambda t: as_float(lr) * factor(t),
      init=lambda rate: rate,
      step=lambda t, rate: rate * gamma,
      restart=lambda _: as_float(lr) * as_float(gamma) ** 0,
      kind="multiplicative",
      factor=factor,
  )


def polynomial_lr(lr: float, total_iters: int = 5, power: float = 1.0) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.PolynomialLR``: :math:`\eta_0\,(1 - \min(t, N)/N)^p`.

  The closed form of torch's recursion (which multiplies by
  :math:`((1 - t/N)/(1 - (t-1)/N))^p` up to step :math:`N`). optax's
  ``optax.polynomial_schedule(lr, 0, power, total_iters)`` is the same rate (float32 at an
  int32 count). :math:`N = 0` keeps :math:`\eta_0`, as torch does.

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    total_iters: :math:`N` (int >= 0).
    power: :math:`p`, >= 0.
  """
  _checks.check_non_negative("lr", lr)
  check_int("total_iters", total_iters, 0)
  _checks.check_non_negative("power", power)

  def factor(t):
    if total_iters == 0:
      return jnp.ones_like(as_float(t))
    # torch: (1 - min(N, t) / N) ** p; as (N - min(N, t)) / N, an exact 0 from step N on.
    return ((total_iters - jnp.minimum(total_iters, t)) / as_float(total_iters)) ** power

  def step(t, rate):
    if total_iters == 0:
      return rate
    # torch: (1 - t/N) / (1 - (t-1)/N), as (N - t) / (N - t + 1): an exact 0 at step N.
    ratio = (total_iters - t) / as_float(total_iters - t + 1)
    return jnp.where(t > total_iters, rate, rate * ratio**power)

  return TorchSchedule(
      "PolynomialLR", lr,
      rate=lambda t: as_float(lr) * factor(t),
      init=lambda rate: rate,
      step=step,
      restart=lambda _: as_float(lr) * factor(jnp.zeros((), jnp.int32)),
      kind="multiplicative",
      factor=factor,
  )


def cosine_annealing_lr(lr: float, T_max: int, eta_min: float = 0.0) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.CosineAnnealingLR``, torch's chained form.

  torch steps the *current* rate :math:`\eta` (shared with any other scheduler):

  .. math::
      \eta_t = \eta_{min} + (\eta_{t-1} - \eta_{min})
               \frac{1 + \cos(\pi t / T)}{1 + \cos(\pi (t-1) / T)},

  except at :math:`t \equiv T + 1 \pmod{2T}`, where the ratio is 0/0 and it adds
  :math:`(\eta_0 - \eta_{min})(1 - \cos(\pi/T))/2` instead. Alone, this recursion gives the
  closed form :math:`\eta_{min} + (\eta_0 - \eta_{min})(1 + \cos(\pi t / T))/2` at every
  :math:`t`, past :math:`T` too (the rate climbs back to :math:`\eta_0` at :math:`2T`, and so on),
  to rounding: that is this schedule (measured against torch over 1,000 steps: relative
  difference below 1e-12). In a chain the recursion differs from the closed form: the factor
  applies to whatever the shared rate is, and the step after each :math:`T` *adds* a term
  proportional to :math:`\eta_0`; :func:`chained_scheduler` and :func:`scheduled_lr` run
  the recursion. ``optax.cosine_decay_schedule(lr, T, eta_min / lr)`` equals the closed form up
  to :math:`T` only, then stays at :math:`\eta_{min}`.

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    T_max: :math:`T` (int >= 1), half a period.
    eta_min: :math:`\eta_{min}`.
  """
  _checks.check_non_negative("lr", lr)
  check_int("T_max", T_max, 1)
  _checks.check_not_nan("eta_min", eta_min)

  def rate(t):
    return eta_min + (lr - as_float(eta_min)) * (1 + jnp.cos(t * jnp.pi / T_max)) / 2

  def step(t, current):
    bump = current + (lr - as_float(eta_min)) * (1 - jnp.cos(jnp.pi / T_max)) / 2
    ratio = (1 + jnp.cos(jnp.pi * t / T_max)) / (1 + jnp.cos(jnp.pi * (t - 1) / T_max))
    follow = ratio * (current - eta_min) + eta_min
    return jnp.where(jnp.remainder(t - 1 - T_max, 2 * T_max) == 0, bump, follow)

  return TorchSchedule(
      "CosineAnnealingLR", lr, rate,
      init=lambda current: current,
      step=step,
      restart=lambda _: rate(jnp.zeros((), jnp.int32)),
      kind="affine",
  )

