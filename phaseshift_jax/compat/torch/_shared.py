"""Pieces shared by the ``compat.torch`` optimizers: ``maximize``, checks, torch's pairs."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import concrete_scalar


def _negate_if(maximize: bool):
  return optax.scale(-1.0) if maximize else None


class MomentumBufferState(NamedTuple):
  """torch's ``momentum_buffer``: ``trace``, and how many steps have written it."""

  momentum_steps: jax.Array  # int32; torch has no buffer yet while it is 0
  trace: optax.Updates


def momentum_buffer(momentum, dampening=0.0, nesterov: bool = False
                    ) -> optax.GradientTransformation:
  r"""torch's momentum buffer, which exists only while ``momentum != 0``: ``optax.trace`` kept so.

  A step with :math:`\mu \ne 0` writes :math:`b = d` if no step has written the buffer yet
  (torch's undamped first buffer) and :math:`b = \mu b + (1-\tau) d` after, and returns
  :math:`b` (:math:`d + \mu b` with ``nesterov``). A step with :math:`\mu = 0` returns
  :math:`d` and leaves the buffer as it is, as torch skips it then: a momentum changed
  between 0 and not 0 (``optax.inject_hyperparams``) continues as torch's does. Branchless;
  the state has the same structure for every value.
  """
  trace = optax.trace(decay=momentum, nesterov=nesterov)

  def init_fn(params):
    return MomentumBufferState(jnp.zeros([], jnp.int32), trace.init(params).trace)

  def update_fn(updates, state, params=None):
    del params
    on = momentum != 0
    scale = jnp.where(state.momentum_steps == 0, 1.0, 1.0 - dampening)
    damped = jax.tree.map(lambda u: None if u is None else jnp.asarray(scale, u.dtype) * u,
                          updates, is_leaf=_is_none)
    new_updates, new_trace = trace.update(damped, optax.TraceState(state.trace))
    keep = lambda new, old: new if new is None else jnp.where(on, new, old)  # noqa: E731
    return (jax.tree.map(keep, new_updates, updates, is_leaf=_is_none),
            MomentumBufferState(
                jnp.where(on, optax.safe_increment(state.momentum_steps), state.momentum_steps),
                jax.tree.map(keep, new_trace.trace, state.trace, is_leaf=_is_none)))

  return optax.GradientTransformation(init_fn, update_fn)


def _is_none(x) -> bool:
  return x is None


def _check_nesterov(momentum, dampening) -> None:
  """torch's condition for ``nesterov``, on whichever of ``momentum``, ``dampening`` is concrete."""
  mu = concrete_scalar("momentum", momentum)
  tau = concrete_scalar("dampening", dampening)
  if (mu is not None and mu <= 0) or (tau is not None and tau != 0):
    raise ValueError(
        f"nesterov requires momentum > 0 and dampening == 0, got momentum={momentum!r}, "
        f"dampening={dampening!r}"
    )


def _check_closed_unit_interval(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``0 <= value <= 1`` (or not concrete)."""
  array = concrete_scalar(name, value)
  if array is not None and not 0 <= array <= 1:
    raise ValueError(f"{name} must be in [0, 1], got {value!r}")


def _pair(name: str, value) -> tuple:
  """The two entries of a torch tuple argument (``betas``, ``etas``, ``step_sizes``).

  ``value`` is a tuple (static under ``optax.inject_hyperparams``) or a length-2 array
  (injected). Concrete entries come back as Python floats: the entries of a float32 array would
  promote the state (and updates) of bfloat16 params to float32. Traced ones (under
  ``inject_hyperparams``, which casts them to the params' dtype) stay as they are.
  """
  try:
    first, second = value
  except (TypeError, ValueError):
    raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None
  return tuple(v if concrete_scalar(f"{name}[{i}]", v) is None else float(v)
               for i, v in enumerate((first, second)))


def _power_and_complement(b, count):
  r""":math:`(b^t, 1 - b^t)` as :math:`(e^x, -\mathrm{expm1}(x))`, :math:`x = t \log(1 - (1 - b))`.

  torch computes these in Python floats (float64) whatever the parameters' dtype. In float32
  ``1 - b**t`` loses most of its digits for ``b`` near 1 (0.999: relative 1e-5 at small ``t``);
  this form keeps them (``1 - b`` is exact for a float32 ``b`` and rounds once for a Python one).
  """
  x = count * jnp.log1p(-(1.0 - b))
  return jnp.exp(x), -jnp.expm1(x)
