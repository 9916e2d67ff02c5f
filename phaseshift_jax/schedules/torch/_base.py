"""The object every ``schedules.torch`` factory returns, and the checks they share.

A torch scheduler does not compute a rate from the step alone: each ``scheduler.step()`` maps the
optimizer's *current* learning rate (``param_group["lr"]``, shared by every scheduler attached to
that optimizer) to a new one. Alone, that recursion has a closed form (the schedule ``count ->
rate``); chained with other schedulers (``ChainedScheduler``, ``SequentialLR``, a list stepped in a
loop, ``ReduceLROnPlateau`` cutting the shared rate) it is the recursion that decides. So a
:class:`TorchSchedule` carries both: the closed form, for use as an optax schedule, and the maps
torch applies to the shared rate, for the composites and for :func:`scheduled_lr`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from phaseshift_jax import _checks

Array = jax.Array
LrMap = Callable[[Array, Array], Array]  # (t, lr) -> lr

KINDS = ("multiplicative", "overwrite", "affine", "composite")


def as_float(x) -> Array:
  """``x`` as an array of the default float dtype (float64 under ``jax.enable_x64``, like torch)."""
  return jnp.asarray(x, dtype=float)


def as_step(count) -> Array:
  """The step count as an int32 array (a float count, e.g. from ``on_float_count``, is floored)."""
  count = jnp.asarray(count)
  if not jnp.issubdtype(count.dtype, jnp.integer):
    count = jnp.floor(count)
  return count.astype(jnp.int32)


def _identity_lr(t, lr):
  del t
  return lr


@dataclasses.dataclass(frozen=True, eq=False)
class TorchSchedule:
  r"""An optax schedule (``count -> rate``) that also knows how its torch scheduler acts.

  Calling it gives the rate torch's optimizer uses at step ``count`` (``count`` = number of
  ``scheduler.step()`` calls so far, 0 for the first optimizer step) when the scheduler runs
  alone on an optimizer whose learning rate is :attr:`lr`; it is jit-able and branchless, and
  float64 under ``jax.enable_x64`` (torch computes rates in double precision). Pass it as any
  optax ``learning_rate``.

  The other fields are what the composites (:func:`sequential_lr`, :func:`chained_scheduler`,
  :func:`scheduled_lr`) need: the maps torch applies to the *shared* group rate.

  Attributes:
    name: the torch class name (``"StepLR"``, ...).
    lr: the optimizer's learning rate when the scheduler is built (torch's ``initial_lr``).
    rate: the closed form, ``count -> rate`` when the scheduler runs alone.
    init: ``lr -> lr``, the step the constructor makes on the group rate.
    step: ``(t, lr) -> lr``, the ``t``-th ``scheduler.step()`` (``t >= 1``) on the group rate.
    restart: ``lr -> lr``, what ``SequentialLR`` does at the scheduler's milestone
      (``scheduler._update_lr(0)``: torch's closed form at 0 where the class has one).
    kind: ``"multiplicative"`` (each step multiplies the group rate by a factor of ``t``),
      ``"overwrite"`` (each step sets it from ``t`` alone), ``"affine"`` (cosine annealing) or
      ``"composite"``.
    factor: for ``"multiplicative"``: ``count -> `` the product of the factors so far.
    momentum: ``count -> momentum`` (or beta1) the scheduler sets, or ``None`` (``CyclicLR``,
      ``OneCycleLR`` with ``cycle_momentum``; see :func:`with_momentum_schedule`).
    momentum_init, momentum_step: the same as maps of the group's momentum (composites).
    rate_from: ``(lr_in, tau) -> rate`` at ``tau`` steps after a ``SequentialLR`` restart that
      found the group rate at ``lr_in``.
  """

  name: str
  lr: float | Array
  rate: Callable[[Array], Array]
  init: Callable[[Array], Array]
  step: LrMap
  restart: Callable[[Array], Array]
  kind: str
  factor: Callable[[Array], Array] | None = None
  momentum: Callable[[Array], Array] | None = None
  momentum_init: Callable[[Array], Array] | None = None
  momentum_step: LrMap | None = None
  rate_from: Callable[[Array, Array], Array] | None = None

  def __post_init__(self):
    if self.kind not in KINDS:
      raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

  def __call__(self, count) -> Array:
    return self.rate(as_step(count))

  def rate_after_restart(self, lr_in, tau) -> Array:
    """The rate ``tau`` steps after a ``SequentialLR`` milestone that found the rate ``lr_in``."""
    if self.rate_from is not None:
      return self.rate_from(lr_in, tau)
    return self.rate(tau)


def has_momentum(schedule: TorchSchedule) -> bool:
  return schedule.momentum_step is not None


def check_int(name: str, value, minimum: int) -> None:
  """``value`` must be a Python int (a structural size, static) >= ``minimum``."""
  if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
    raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_range(name: str, value, low, high, *, low_open=False, high_open=False) -> None:
  """``low <= value <= high`` (or open ends) for a concrete value; a traced value passes."""
  array = _checks.concrete_scalar(name, value)
  if array is None:
    return
  above = array > low if low_open else array >= low
  below = array < high if high_open else array <= high
  if not (above and below):
    left, right = "(" if low_open else "[", ")" if high_open else "]"
    raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}")


def check_choice(name: str, value, choices) -> None:
  _checks.check_choice(name, value, tuple(choices))


def recursion_rate(schedules_init: Callable[[Array], Array], step: LrMap, lr0) -> Callable:
  """``count -> rate`` by running torch's recursion: ``init(lr0)``, then ``step(t, .)``, t = 1..count.

  Exact (the same operations as torch, in the same order), at O(count) per evaluation (a
  ``lax.fori_loop``): used where no closed form reproduces torch (chains whose members add to or
  overwrite the shared rate in between).
  """

  def rate(count):
    count = as_step(count)
    start = schedules_init(as_float(lr0))
    return jax.lax.fori_loop(1, count + 1, lambda t, lr: step(t, lr), start)

  return rate


identity_lr = _identity_lr
