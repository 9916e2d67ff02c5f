"""Which leaf PhaseShift kicks: the gradient change per leaf and the selection rules.

Everything here is a handful of reductions over ``n`` scalars, so it traces into the
same XLA program as the rest of the step (no host round trip, no Python branching on
values). The exact semantics are those of ``shared/spec/phase-shift.md``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Selection = Literal["argmax", "last"]
Granularity = Literal["tensor", "element"]

SELECTIONS: tuple[str, ...] = ("argmax", "last")
GRANULARITIES: tuple[str, ...] = ("tensor", "element")


def leaf_change(grad: jax.Array, prev_grad: jax.Array) -> jax.Array:
  r"""The gradient change of one leaf, :math:`c = \max_e |g_e - h_e|`.

  NaN propagates (as ``torch.Tensor.max`` does), so a leaf with any NaN in
  ``g - h`` has a NaN change and is never picked. A zero-size leaf has change 0
  (torch raises there), so it is never picked either.
  """
  return jnp.max(jnp.abs(grad - prev_grad), initial=0)


def leaf_change_and_argmax(
    grad: jax.Array, prev_grad: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The change of one leaf and the flat index of the (first) element attaining it.

  ``jnp.argmax`` treats NaN as the largest value, so reading the change back at
  the arg-max gives NaN exactly when :func:`leaf_change` does: one reduction
  serves both.
  """
  diff = jnp.abs(grad - prev_grad).ravel()
  if diff.size == 0:
    return jnp.zeros((), diff.dtype), jnp.zeros((), jnp.int32)
  index = jnp.argmax(diff).astype(jnp.int32)
  return diff[index], index


def select_leaf(
    changes: jax.Array,
    min_gradient_magnitude: jax.typing.ArrayLike,
    selection: Selection,
) -> tuple[jax.Array, jax.Array]:
  """Picks at most one leaf from the vector of per-leaf changes.

  The original scans the leaves with a running maximum ``m`` that starts at 0; a
  leaf becomes the candidate when ``c_i > m`` and ``c_i > min_gradient_magnitude``.

  * ``"argmax"``: the first leaf with the largest change, if that change is
    ``> max(0, min_gradient_magnitude)``.
  * ``"last"``: the original code literally, where every leaf that does not set a
    new maximum resets the candidate, so only the last leaf can be picked, and only
    if its change is larger than every earlier (non-NaN) change and
    ``> max(0, min_gradient_magnitude)``.

  NaN changes never win and never block another leaf.

  Args:
    changes: shape ``(n,)``, one change per leaf, in leaf order.
    min_gradient_magnitude: scalar; the change must exceed it (strictly).
    selection: ``"argmax"`` or ``"last"``.

  Returns:
    ``(index, change)``: the picked leaf as an ``int32`` scalar (``-1`` when none)
    and its change (0 when none), in ``changes.dtype``.
  """
  n = changes.shape[0]
  if n == 0:
    return jnp.asarray(-1, jnp.int32), jnp.zeros((), changes.dtype)
  floor = jnp.maximum(jnp.asarray(min_gradient_magnitude, changes.dtype), 0)
  finite_or_inf = jnp.where(jnp.isnan(changes), -jnp.inf, changes)
  if selection == "argmax":
    index = jnp.argmax(finite_or_inf)
    best = finite_or_inf[index]
    picked = best > floor
  elif selection == "last":
    index = n - 1
    best = finite_or_inf[index]
    earlier = jnp.max(finite_or_inf[:-1], initial=-jnp.inf)
    picked = (best > floor) & (best > earlier)
  else:
    raise ValueError(f"selection must be one of {SELECTIONS}, got {selection!r}")
  index = jnp.where(picked, index, -1).astype(jnp.int32)
  change = jnp.where(picked, best, 0).astype(changes.dtype)
  return index, change
