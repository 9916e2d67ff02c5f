"""Which leaf PhaseShift kicks: the gradient change per leaf and the selection rules.

Everything here is reductions (one pass over each leaf's ``g`` and ``h``, then a
handful over the ``n`` changes), so it traces into the same XLA program as the rest
of the step (no host round trip, no Python branching on values). The exact
semantics are those of ``shared/spec/phase-shift.md``.
"""

from __future__ import annotations

from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np

Selection = Literal["argmax", "last"]
Granularity = Literal["tensor", "element"]

SELECTIONS: tuple[str, ...] = ("argmax", "last")
GRANULARITIES: tuple[str, ...] = ("tensor", "element")

# Leaves with fewer elements are reduced in groups (see leaf_changes). Below this
# size XLA on CPU also splits a lone max-reduction into three kernels.
_SMALL_LEAF = 4096


def leaf_change(grad: jax.Array, prev_grad: jax.Array) -> jax.Array:
  r"""The gradient change of one leaf, :math:`c = \max_e |g_e - h_e|`.

  NaN propagates (as ``torch.Tensor.max`` does), so a leaf with any NaN in
  ``g - h`` has a NaN change and is never picked. A zero-size leaf has change 0
  (torch raises there), so it is never picked either.
  """
  if grad.size == 0:
    return jnp.zeros((), grad.dtype)
  return _nan_propagating_max(jnp.abs(grad - prev_grad).reshape(1, -1))[0]


def _nan_propagating_max(diff: jax.Array) -> jax.Array:
  """Row-wise maximum of a ``(rows, size)`` matrix of non-negative values, NaN if a row has NaN.

  ``jnp.max`` does not guarantee that: XLA on CPU vectorizes max reductions with
  instructions that drop NaN (under jit, ``jnp.max`` of 5,000 values with one NaN
  returns the largest number). So NaN is tracked explicitly, in the same pass:
  one variadic reduction of ``(value, isnan)`` pairs.
  """
  zero = jnp.zeros((), diff.dtype)
  largest, has_nan = jax.lax.reduce(
      (diff, jnp.isnan(diff)), (zero, jnp.asarray(False)),
      lambda a, b: (jnp.maximum(a[0], b[0]), a[1] | b[1]), (1,))
  return jnp.where(has_nan, jnp.asarray(jnp.nan, diff.dtype), largest)


def _change_and_argmax_rows(diff: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Row-wise ``(max, first argmax)`` of a ``(rows, size)`` matrix.

  ``jnp.argmax`` counts NaN as the largest value, so reading the value back at the
  arg-max gives NaN exactly where ``jnp.max`` would.
  """
  index = jnp.argmax(diff, axis=1).astype(jnp.int32)
  return jnp.take_along_axis(diff, index[:, None], axis=1)[:, 0], index


def leaf_change_and_argmax(
    grad: jax.Array, prev_grad: jax.Array
) -> tuple[jax.Array, jax.Array]:
  """The change of one leaf and the flat index of the (first) element attaining it.

  The change is NaN exactly when :func:`leaf_change` gives NaN (see
  :func:`_change_and_argmax_rows`).
  """
  if grad.size == 0:
    return jnp.zeros((), grad.dtype), jnp.zeros((), jnp.int32)
  value, index = _change_and_argmax_rows(jnp.abs(grad - prev_grad).reshape(1, -1))
  return value[0], index[0]


def leaf_changes(
    pairs: list[tuple[jax.Array, jax.Array]], dtype: jax.typing.DTypeLike, *,
    with_argmax: bool,
) -> tuple[jax.Array, jax.Array | None, list[jax.Array | None]]:
  """The changes of many leaves as one vector, with few kernels for many small leaves.

  Args:
    pairs: ``(grad, prev_grad)`` of each leaf.
    dtype: dtype of the returned changes.
    with_argmax: also return the flat index of the largest element of each leaf
      (as :func:`leaf_change_and_argmax`).

  Returns:
    ``(changes, elements, own)``: the changes in leaf order, shape ``(n,)``; the
    arg-max indices (``int32``, ``(n,)``) or None; and per leaf, its change as
    computed by a reduction of that leaf alone, or None for a leaf reduced in a
    group.

  Small leaves (fewer than ``_SMALL_LEAF`` elements) of one shape and dtype are
  stacked and reduced together, one kernel per group instead of one (or, for
  XLA on CPU, three) per leaf; stacking copies them, which costs little at that
  size. Larger leaves are reduced one by one, reading ``g`` and ``h`` once.
  """
  n = len(pairs)
  if n == 0:
    return jnp.zeros((0,), dtype), (jnp.zeros((0,), jnp.int32) if with_argmax else None), []
  groups: dict[tuple[Any, ...], list[int]] = {}
  for i, (grad, _) in enumerate(pairs):
    if 0 < grad.size < _SMALL_LEAF:
      groups.setdefault((grad.shape, jnp.dtype(grad.dtype)), []).append(i)
  batches = [idx for idx in groups.values() if len(idx) > 1]
  batched = {i for idx in batches for i in idx}
  batches += [[i] for i in range(n) if i not in batched]
  own: list[jax.Array | None] = [None] * n
  change_parts, element_parts = [], []
  for idx in batches:
    if len(idx) > 1:
      diff = jnp.abs(jnp.stack([pairs[i][0] for i in idx])
                     - jnp.stack([pairs[i][1] for i in idx])).reshape(len(idx), -1)
      if with_argmax:
        values, elements = _change_and_argmax_rows(diff)
      else:
        values = _nan_propagating_max(diff)
    else:
      (i,) = idx
      if with_argmax:
        value, element = leaf_change_and_argmax(*pairs[i])
        elements = element[None]
      else:
        value = leaf_change(*pairs[i])
      own[i], values = value, value[None]
    change_parts.append(values.astype(dtype))
    if with_argmax:
      element_parts.append(elements)
  order = [i for idx in batches for i in idx]
  inverse = np.argsort(np.asarray(order))
  changes = jnp.concatenate(change_parts)[inverse]
  elements = jnp.concatenate(element_parts)[inverse] if with_argmax else None
  return changes, elements, own


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
