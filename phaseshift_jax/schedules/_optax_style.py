r"""Learning-rate schedules of the miniai post's list, torch-exact where optax differs.

The post (Alex Kelly's blog post on optimizers, January 2024) lists step decay, time-based decay,
exponential decay, cosine annealing, cyclical rates, linear warm-up and reduce-on-plateau. optax
already has most of them; this module adds only the missing ones. A schedule maps the step count
``t`` (0 at the first optimizer step) to a rate; with torch, ``t`` is the number of
``scheduler.step()`` calls made so far. Every torch scheduler is in :mod:`.torch`.

The schedules here compute in the default float precision, so under ``jax.enable_x64`` they give
float64 rates like torch's; optax's return float32 at the optimizer's int32 step count even then,
which :func:`on_float_count` fixes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from phaseshift_jax import _checks


__all__ = [
    "time_based_decay",
    "cosine_annealing_schedule",
    "cyclic_schedule",
    "reduce_lr_on_plateau",
    "on_float_count",
]


def _float(count):
  """The step count as a float of the default precision.

  optax's schedules divide the int32 count by an int, which gives float32 even with x64 on; a
  float count keeps the rate in float64 there (torch computes its rates in double precision).
  """
  return jnp.asarray(count, dtype=float)


def on_float_count(schedule: optax.Schedule) -> optax.Schedule:
  """``schedule`` evaluated at the float count (float64 under x64; see :func:`_float`)."""
  return lambda count: schedule(_float(count))


def _check_count(name: str, value) -> None:
  """A Python, NumPy or JAX integer >= 0; a traced one passes (``inject_hyperparams``, jit)."""
  if isinstance(value, jax.core.Tracer):
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer, np.ndarray, jax.Array)):
    raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
  array = np.asarray(value)
  if array.dtype.kind not in "iu" or array.shape != () or array < 0:
    raise ValueError(f"{name} must be a non-negative integer, got {value!r}")


def _check_steps(name: str, value) -> None:
  _check_count(name, value)
  if not isinstance(value, jax.core.Tracer) and value == 0:
    raise ValueError(f"{name} must be >= 1, got 0")


def time_based_decay(
    init_value: float, decay_rate: float, decay_steps: int = 1, staircase: bool = False
) -> optax.Schedule:
  r"""Time-based (inverse-time) decay: :math:`\eta_t = \eta_0 / (1 + k\,p)`, :math:`p = t / N`.

  With ``staircase=True``, :math:`p = \lfloor t / N \rfloor`. :math:`k` = ``decay_rate``,
  :math:`N` = ``decay_steps``. This is torch's ``LambdaLR(opt, lambda t: 1 / (1 + k * t))`` and
  the ``lr_decay`` of ``torch.optim.Adagrad`` (for ``N = 1``); optax has no such schedule.
  """
  _checks.check_non_negative("decay_rate", decay_rate)  # concrete values only: it may be traced
  _check_steps("decay_steps", decay_steps)

  def schedule(count):
    progress = _float(count) / decay_steps
    if staircase:
      progress = jnp.floor(progress)
    return init_value / (1 + decay_rate * progress)

  return schedule


def cosine_annealing_schedule(
    init_value: float, t_max: int, eta_min: float = 0.0
) -> optax.Schedule:
  r"""torch's ``CosineAnnealingLR``: :math:`\eta_t = \eta_{min} + (\eta_0 - \eta_{min})
  \frac{1 + \cos(\pi t / T_{max})}{2}` for every :math:`t`.

  Past :math:`T_{max}` torch's rate keeps following the cosine (it rises back to
  :math:`\eta_0` at :math:`2T_{max}`, and so on), and so does this schedule, whereas
  ``optax.cosine_decay_schedule`` stays at its final value. torch computes the rate
  recursively from the previous one; this closed form agrees with it to rounding.
  """
  _check_steps("t_max", t_max)

  def schedule(count):
    cosine = jnp.cos(jnp.pi * _float(count) / t_max)
    return eta_min + (init_value - eta_min) * (1 + cosine) / 2

  return schedule


_CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


def cyclic_schedule(
    base_lr: float,
    max_lr: float,
    step_size_up: int = 2000,
    step_size_down: int | None = None,
    mode: str = "triangular",
    gamma: float = 1.0,
) -> optax.Schedule:
  r"""Cyclical learning rate, as torch's ``CyclicLR`` (Smith 2017).

  The rate climbs linearly from ``base_lr`` to ``max_lr`` in ``step_size_up`` steps and falls
  back in ``step_size_down`` steps (default: the same), over and over. With cycle
  :math:`c = \lfloor 1 + t / S \rfloor` (:math:`S` the cycle length),
  :math:`x = 1 + t/S - c` and :math:`r` = ``step_size_up / S``:

  .. math::
      \eta_t = \eta_{base} + (\eta_{max} - \eta_{base})\,h(x)\,s, \qquad
      h(x) = x / r \text{ if } x \le r \text{ else } (x - 1) / (r - 1),

  where :math:`s = 1` (``"triangular"``), :math:`s = 2^{1-c}` (``"triangular2"``, the amplitude
  halves every cycle) or :math:`s = \gamma^t` (``"exp_range"``). optax has no cyclical schedule.
  (torch's ``CyclicLR`` also cycles the momentum by default; that part is not a rate schedule.)
  """
  _check_steps("step_size_up", step_size_up)
  if step_size_down is None:
    step_size_down = step_size_up
  _check_steps("step_size_down", step_size_down)
  if mode not in _CYCLIC_MODES:
    raise ValueError(f"mode must be one of {_CYCLIC_MODES}, got {mode!r}")
  total = float(step_size_up + step_size_down)
  ratio = step_size_up / total

  def schedule(count):
    count = _float(count)
    cycle = jnp.floor(1 + count / total)
    x = 1.0 + count / total - cycle
    height = jnp.where(x <= ratio, x / ratio, (x - 1) / (ratio - 1))
    if mode == "triangular":
      scale = 1.0
    elif mode == "triangular2":
      scale = 1 / 2.0 ** (cycle - 1)
    else:
      scale = gamma**count
    return base_lr + (max_lr - base_lr) * height * scale

  return schedule


def reduce_lr_on_plateau(
    factor: float = 0.1,
    patience: int = 10,
    threshold: float = 1e-4,
    threshold_mode: str = "rel",
    cooldown: int = 0,
    min_scale: float = 0.0,
    eps: float = 1e-8,
) -> optax.GradientTransformationExtraArgs:
  r"""torch's ``ReduceLROnPlateau(mode="min")`` as an optax transformation.

  Chain it after an optimizer and pass the monitored metric each step as ``value=`` (like
  ``optax.contrib.reduce_on_plateau``, which does the bookkeeping). It multiplies the updates by
  a scale that starts at 1 and becomes ``max(scale * factor, min_scale)`` once the metric has
  failed to improve on its best value for *more than* ``patience`` consecutive steps, then
  ignores ``cooldown`` steps. "Improve" means ``value < best * (1 - threshold)``
  (``threshold_mode="rel"``) or ``value < best - threshold`` (``"abs"``). A reduction smaller
  than ``eps`` is skipped (the counters still reset). With a base rate ``lr`` the effective rate
  is ``lr * scale``, so torch's ``min_lr`` is ``lr * min_scale`` and torch's ``eps`` is
  ``lr * eps``.

  Order: this cuts the update of the step whose metric it is given. torch's loop (loss,
  ``opt.step()``, ``sched.step(loss)``) applies a cut from the *next* step; for that order, and
  for ``mode="max"`` with a relative threshold, absolute ``min_lr`` / ``eps`` and
  ``threshold=0``, use :func:`phaseshift_jax.schedules.torch.reduce_lr_on_plateau` (migration:
  ``reduce_lr_on_plateau(factor, patience, ..., min_scale=m, eps=e)`` on an optimizer with rate
  ``lr`` becomes ``schedules.torch.reduce_lr_on_plateau(lr, factor=factor, patience=patience,
  ..., min_lr=lr * m, eps=lr * e)`` chained after the optimizer built with ``lr=1.0``, one step
  later).

  Differences from optax: ``optax.contrib.reduce_on_plateau(patience=p)`` reduces after ``p``
  non-improving steps, torch after ``p + 1`` (this passes ``patience + 1``), and optax has no
  ``eps``. Not covered: torch's ``mode="max"`` (pass the negated metric; exact for
  ``threshold_mode="abs"``) and ``threshold=0`` (optax requires a positive tolerance).
  """
  _check_count("patience", patience)
  _check_count("cooldown", cooldown)
  if not threshold > 0:
    raise ValueError(f"threshold must be > 0, got {threshold!r}")
  if threshold_mode not in ("rel", "abs"):
    raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
  relative = threshold_mode == "rel"
  inner = optax.contrib.reduce_on_plateau(
      factor=factor,
      patience=patience + 1,
      rtol=threshold if relative else 0.0,
      atol=0.0 if relative else threshold,
      cooldown=cooldown,
      min_scale=min_scale,
  )

  def update_fn(updates, state, params=None, *, value, **extra_args):
    # Only the bookkeeping of the inner transformation is needed: give it no updates to scale.
    _, new_state = inner.update(None, state, params, value=value, **extra_args)
    scale = jnp.where(state.scale - new_state.scale > eps, new_state.scale, state.scale)
    updates = jax.tree.map(lambda g: scale.astype(g.dtype) * g, updates)
    return updates, new_state._replace(scale=scale)

  return optax.GradientTransformationExtraArgs(inner.init, update_fn)
