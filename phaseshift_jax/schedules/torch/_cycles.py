"""torch's schedulers that set the rate from the step alone: cycles and warm restarts.

``CyclicLR``, ``OneCycleLR`` and ``CosineAnnealingWarmRestarts`` overwrite the group rate at every
step (nothing before them in a chain survives); the first two also cycle the momentum (or Adam's
beta1), given here as a second schedule, :attr:`TorchSchedule.momentum`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import numpy as np

from phaseshift_jax import _checks
from phaseshift_jax.schedules.torch._base import (
    TorchSchedule,
    as_float,
    as_step,
    check_choice,
    check_int,
    check_range,
)

_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def _overwrite(name, lr, rate, momentum=None) -> TorchSchedule:
  zero = jnp.zeros((), jnp.int32)
  extra = {}
  if momentum is not None:
    extra = dict(
        momentum=lambda count: momentum(as_step(count)),
        momentum_init=lambda _: momentum(zero),
        momentum_step=lambda t, _: momentum(t),
    )
  return TorchSchedule(
      name, lr, rate,
      init=lambda _: rate(zero),
      step=lambda t, _: rate(t),
      restart=lambda _: rate(zero),
      kind="overwrite",
      **extra,
  )


def cyclic_lr(
    base_lr: float,
    max_lr: float,
    step_size_up: float = 2000,
    step_size_down: float | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
    scale_fn: Callable | None = None,
    scale_mode: str = "cycle",
    cycle_momentum: bool = True,
    base_momentum: float = 0.8,
    max_momentum: float = 0.9,
) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.CyclicLR`` (Smith 2017), with its momentum cycling.

  With cycle length :math:`S` = ``step_size_up + step_size_down``, :math:`r` = ``step_size_up
  / S``, cycle :math:`c = \lfloor 1 + t/S \rfloor`, :math:`x = 1 + t/S - c` and
  :math:`h = x/r` if :math:`x \le r` else :math:`(x-1)/(r-1)`:

  .. math::
      \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\,h\,\sigma, \qquad
      m_t = m_{max} - (m_{max} - m_{base})\,h\,\sigma,

  :math:`\sigma` = ``scale_fn(c)`` (``scale_mode="cycle"``) or ``scale_fn(t)``
  (``"iterations"``); without ``scale_fn``, ``mode`` picks it: ``"triangular"`` 1,
  ``"triangular2"`` :math:`2^{1-c}` (per cycle), ``"exp_range"`` :math:`\gamma^t` (per
  iteration), and ``scale_mode`` is ignored, as in torch. ``scale_fn`` is a JAX function of an
  int32 array. The rate ignores the optimizer's own ``lr`` (torch sets it to ``base_lr``).

  The momentum schedule :math:`m_t` is :attr:`TorchSchedule.momentum` (``None`` when
  ``cycle_momentum=False``); torch writes it into the optimizer's ``momentum`` (or
  ``betas[0]``) at every step: feed it the same way (see :func:`with_momentum_schedule`).
  optax has no cyclical schedule.

  Args:
    base_lr, max_lr: the rate's bounds.
    step_size_up, step_size_down: steps up and down (``step_size_down`` defaults to
      ``step_size_up``), > 0.
    mode: ``"triangular"``, ``"triangular2"`` or ``"exp_range"`` (ignored with ``scale_fn``).
    gamma: ``exp_range``'s :math:`\gamma`.
    scale_fn: custom :math:`\sigma`, a JAX function of the cycle or the step.
    scale_mode: ``"cycle"`` or ``"iterations"`` (used with ``scale_fn``).
    cycle_momentum: give the momentum schedule (static).
    base_momentum, max_momentum: the momentum's bounds.

  References:
    Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
  """
  _checks.check_non_negative("base_lr", base_lr)
  _checks.check_non_negative("max_lr", max_lr)
  up = _positive_size("step_size_up", step_size_up)
  down = up if step_size_down is None else _positive_size("step_size_down", step_size_down)
  total = up + down
  return _cyclic(
      base_lr, max_lr, total, up / total, mode, gamma, scale_fn, scale_mode, cycle_momentum,
      base_momentum, max_momentum,
  )


def _positive_size(name, value) -> float:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
    raise ValueError(f"{name} must be a number > 0, got {value!r}")
  return float(value)


def _cyclic(
    base_lr, max_lr, total_size, step_ratio, mode, gamma, scale_fn, scale_mode,
    cycle_momentum, base_momentum, max_momentum,
) -> TorchSchedule:
  """CyclicLR from torch's stored ``total_size`` and ``step_ratio`` (what its state_dict holds)."""
  if scale_fn is None:
    check_choice("mode", mode, _CYCLIC_MODES)
    if mode == "triangular":
      scale_fn, scale_mode = (lambda x: 1.0), "cycle"
    elif mode == "triangular2":
      scale_fn, scale_mode = (lambda x: 1 / 2.0 ** (x - 1)), "cycle"
    else:
      scale_fn, scale_mode = (lambda x: as_float(gamma) ** x), "iterations"
  elif not callable(scale_fn):
    raise ValueError(f"scale_fn must be a function, got {scale_fn!r}")
  check_choice("scale_mode", scale_mode, ("cycle", "iterations"))

  def shape(t):
    cycle = jnp.floor(1 + t / total_size)
    x = 1.0 + t / total_size - cycle
    height = jnp.where(x <= step_ratio, x / step_ratio, (x - 1) / (step_ratio - 1))
    scale = as_float(scale_fn(cycle.astype(jnp.int32) if scale_mode == "cycle" else t))
    return height, scale

  def rate(t):
    height, scale = shape(t)
    return base_lr + (max_lr - as_float(base_lr)) * height * scale

  def momentum(t):
    height, scale = shape(t)
    return max_momentum - (max_momentum - as_float(base_momentum)) * height * scale

  return _overwrite("CyclicLR", base_lr, rate, momentum if cycle_momentum else None)


def one_cycle_lr(
    max_lr: float,
    total_steps: int | None = None,
    epochs: int | None = None,
    steps_per_epoch: int | None = None,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    cycle_momentum: bool = True,
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.OneCycleLR`` (Smith & Topin 2017), with its momentum cycling.

  From :math:`\eta_{init} = \eta_{max}/d` the rate anneals to :math:`\eta_{max}` over the
  first ``pct_start`` of ``total_steps`` (:math:`T`), then down to :math:`\eta_{min} =
  \eta_{init}/d_f`; with ``three_phase`` it goes back to :math:`\eta_{init}` over as many steps
  first and then to :math:`\eta_{min}`. Phase :math:`i` ends at step :math:`e_i` (torch's
  ``pct_start * T - 1``, ``2 pct_start * T - 2``, ``T - 1``) and, with :math:`p = (t - e_{i-1})/
  (e_i - e_{i-1})`, anneals from :math:`a` to :math:`b` as :math:`b + (a-b)(1 + \cos\pi p)/2`
  (``"cos"``) or :math:`a + (b-a)p` (``"linear"``). The momentum (:attr:`TorchSchedule.
  momentum`, ``None`` without ``cycle_momentum``) runs the other way: :math:`m_{max} \to
  m_{base} \to m_{max}`. torch writes it into ``momentum`` or ``betas[0]``; feed it as in
  :func:`with_momentum_schedule`.

  Differences from torch: torch raises after step :math:`T`; this schedule continues the last
  phase's formula. optax's ``optax.cosine_onecycle_schedule`` / ``linear_onecycle_schedule``
  use other phase boundaries (``pct_start * T`` without torch's ``- 1``), so they differ from
  torch's rate at every step, and have no momentum schedule.

  Args:
    max_lr: :math:`\eta_{max}`.
    total_steps: :math:`T`; or ``epochs`` and ``steps_per_epoch`` (ints >= 1).
    pct_start: fraction of :math:`T` spent rising, in [0, 1].
    anneal_strategy: ``"cos"`` or ``"linear"``.
    cycle_momentum: give the momentum schedule (static).
    base_momentum, max_momentum: :math:`m_{base}`, :math:`m_{max}`.
    div_factor: :math:`d`; final_div_factor: :math:`d_f`.
    three_phase: the three-phase variant (static).

  References:
    Smith & Topin, "Super-Convergence: Very Fast Training of Neural Networks Using Large
    Learning Rates", 2017.
  """
  if total_steps is not None:
    check_int("total_steps", total_steps, 1)
  elif epochs is not None and steps_per_epoch is not None:
    check_int("epochs", epochs, 1)
    check_int("steps_per_epoch", steps_per_epoch, 1)
    total_steps = epochs * steps_per_epoch
  else:
    raise ValueError("total_steps (or epochs and steps_per_epoch) must be given")
  check_range("pct_start", pct_start, 0.0, 1.0)
  array = _checks.concrete_scalar("pct_start", pct_start)
  if array is not None and float(array) * total_steps - 1 == 0:
    raise ValueError(f"pct_start * total_steps must not be 1 (a phase of length 0), got {pct_start!r}")
  check_choice("anneal_strategy", anneal_strategy, ("cos", "linear"))
  _checks.check_non_negative("max_lr", max_lr)
  initial_lr = max_lr / div_factor  # Python arithmetic, as torch (or traced values)
  min_lr = initial_lr / final_div_factor
  values = dict(initial_lr=initial_lr, max_lr=max_lr, min_lr=min_lr,
                max_momentum=max_momentum, base_momentum=base_momentum)
  if three_phase:
    phases = [
        (pct_start * total_steps - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
        (2 * pct_start * total_steps - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
        (total_steps - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
    ]
  else:
    phases = [
        (pct_start * total_steps - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
        (total_steps - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
    ]
  return _one_cycle(values, phases, anneal_strategy, cycle_momentum)


def _one_cycle(values: dict, phases: Sequence[tuple], anneal_strategy: str, cycle_momentum: bool):
  """OneCycleLR from the group's values and torch's phase table (what its state holds)."""
  if anneal_strategy == "cos":
    def anneal(start, end, pct):
      return end + (start - end) / 2.0 * (jnp.cos(jnp.pi * pct) + 1)
  else:
    def anneal(start, end, pct):
      return (end - start) * pct + start

  def annealed(t, first, second):
    result, start_step, done = as_float(0.0), as_float(0.0), jnp.asarray(False)
    for i, phase in enumerate(phases):
      end_step = as_float(phase[0])
      pct = (t - start_step) / (end_step - start_step)
      value = anneal(as_float(values[phase[first]]), values[phase[second]], pct)
      here = ~done & ((t <= end_step) | (i == len(phases) - 1))
      result = jnp.where(here, value, result)
      done = done | here
      start_step = end_step
    return result

  def rate(t):
    return annealed(t, 1, 2)

  def momentum(t):
    return annealed(t, 3, 4)

  return _overwrite("OneCycleLR", values["initial_lr"], rate,
                    momentum if cycle_momentum else None)


def cosine_annealing_warm_restarts(
    lr: float, T_0: int, T_mult: int = 1, eta_min: float = 0.0
) -> TorchSchedule:
  r"""``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` (SGDR, Loshchilov & Hutter 2017).

  .. math::
      \eta_t = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi T_{cur} / T_i)}{2},

  where the :math:`i`-th period (from 0) lasts :math:`T_i = T_0 T_{mult}^i` steps and
  :math:`T_{cur}` counts the steps since it began (torch's ``step()`` without an epoch
  argument). Computed from the step in closed form with exact integer period starts. optax's
  ``optax.sgdr_schedule`` builds restarts from a list of warm-up cosine pieces instead (no
  :math:`T_{mult}` rule, a warm-up per piece).

  Args:
    lr: the optimizer's learning rate :math:`\eta_0`.
    T_0: the first period (int >= 1).
    T_mult: the period's growth factor (int >= 1).
    eta_min: :math:`\eta_{min}`.

  References:
    Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017.
  """
  _checks.check_non_negative("lr", lr)
  check_int("T_0", T_0, 1)
  check_int("T_mult", T_mult, 1)
  _checks.check_not_nan("eta_min", eta_min)
  starts, lengths = [0], [T_0]
  while T_mult > 1 and starts[-1] + lengths[-1] < 2**31 - 1:  # the periods an int32 count reaches
    starts.append(starts[-1] + lengths[-1])
    lengths.append(lengths[-1] * T_mult)
  # NumPy here, converted in ``rate``: a float64 array only exists under x64 at call time.
  starts_array = np.asarray(starts, np.int32)
  lengths_array = np.asarray([float(x) for x in lengths], np.float64)

  def rate(t):
    if T_mult == 1:
      t_cur, t_i = t % T_0, as_float(T_0)
    else:
      period = jnp.sum(starts_array[1:] <= t)
      t_cur = t - jnp.asarray(starts_array)[period]
      t_i = as_float(lengths_array)[period]
    return eta_min + (lr - as_float(eta_min)) * (1 + jnp.cos(jnp.pi * t_cur / t_i)) / 2

  return _overwrite("CosineAnnealingWarmRestarts", lr, rate)
