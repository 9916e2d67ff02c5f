"""Which leaf PhaseShift kicks: the gradient change per leaf and the selection rules.

Everything here is reductions (one pass over each leaf's ``g`` and ``h``, then a
handful over the ``n`` changes), so it traces into the same XLA program as the rest
of the step (no host round trip, no Python branching on values). The exact
semantics are those of ``shared/spec/phase-shift.md``.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Selection = Literal["argmax", "last"]
Granularity = Literal["tensor", "element"]

SELECTIONS: tuple[str, ...] = ("argmax", "last")
GRANULARITIES: tuple[str, ...] = ("tensor", "element")

# A leaf is reduced as a (rows, size / rows) matrix, row by row, then over the
# rows: XLA on CPU runs a reduction to one scalar on one thread, but splits a
# reduction with several outputs across threads (about 1.4x faster on 2 cores).
_ROWS = (64, 32, 16, 8, 4, 2)
_MIN_ROW = 1024


def _rows(size: int) -> int:
  """How many rows to reduce a leaf of ``size`` elements in (see ``_ROWS``)."""
  for rows in _ROWS:
    if size % rows == 0 and size // rows >= _MIN_ROW:
      return rows
  return 1


def _abs_diff(grad: jax.Array, prev_grad: jax.Array, rows: int) -> jax.Array:
  """``|grad - prev_grad|`` as a ``(rows, size / rows)`` matrix."""
  return jnp.abs(grad - prev_grad).reshape(rows, -1)


def leaf_change(grad: jax.Array, prev_grad: jax.Array) -> jax.Array:
  r"""The gradient change of one leaf, :math:`c = \max_e |g_e - h_e|`.

  NaN propagates (as ``torch.Tensor.max`` does), so a leaf with any NaN in
  ``g - h`` has a NaN change and is never picked. A zero-size leaf has change 0
  (torch raises there), so it is never picked either.
  """
  return leaf_changes([leaf_row_changes(grad, prev_grad)])[0]


def leaf_row_changes(grad: jax.Array, prev_grad: jax.Array) -> tuple[jax.Array, jax.Array]:
  """The pass over one leaf: ``(maxima, has_nan)`` of :math:`|g - h|` in rows.

  Both have shape ``(rows,)`` (see ``_ROWS``); :func:`leaf_changes` finishes them.
  A zero-size leaf gives one row of maximum 0.
  """
  if grad.size == 0:
    return jnp.zeros((1,), grad.dtype), jnp.zeros((1,), bool)
  diff = _fold_in_half(_abs_diff(grad, prev_grad, 1)[0])
  return _max_and_nan(diff.reshape(_rows(diff.size), -1))


def leaf_changes(row_changes_of_leaves: list[tuple[jax.Array, jax.Array]]) -> jax.Array:
  """The changes of several leaves, in order, from their :func:`leaf_row_changes`.

  The leaves with the same number of rows are finished together: one reduction
  over their stacked rows, instead of two small kernels per leaf (at 500 large
  leaves, a thousand kernel launches fewer).
  """
  if not row_changes_of_leaves:
    raise ValueError("leaf_changes needs at least one leaf")
  groups: dict[int, list[int]] = {}
  for i, (maxima, _) in enumerate(row_changes_of_leaves):
    groups.setdefault(maxima.shape[0], []).append(i)
  order, parts = [], []
  for members in groups.values():
    parts.append(_nan_propagating_max(
        jnp.stack([row_changes_of_leaves[i][0] for i in members]),
        jnp.stack([row_changes_of_leaves[i][1] for i in members])))
    order += members
  changes = jnp.concatenate(parts) if len(parts) > 1 else parts[0]
  return changes if order == sorted(order) else changes[np.argsort(order)]


def _fold_in_half(diff: jax.Array) -> jax.Array:
  """``maximum(first half, second half)`` of a flat leaf of at least ``4 * _MIN_ROW`` (even) elements.

  The maximum is unchanged, and NaN still propagates (``jnp.maximum`` returns NaN
  if either side is NaN). XLA fuses the fold into the reduction's loop. On x86 that
  loop is bound by the latency of its running maximum (a NaN-propagating vector
  max is several instructions), and the fold's maxima are independent of it, so
  the loop carries half as many steps: measured on 2 EPYC cores, a step at 10
  leaves / 10M parameters went from 1.95x to 1.77x optax.sgd with donated
  gradients (3.06x to 2.99x without). Other leaves are returned as they are.
  """
  if diff.size % 2 or diff.size < 4 * _MIN_ROW:
    return diff
  half = diff.size // 2
  return jnp.maximum(diff[:half], diff[half:])


def _nan_propagating_max(diff: jax.Array, has_nan: jax.Array | None = None) -> jax.Array:
  """Row-wise maximum of a ``(rows, size)`` matrix of non-negative values, NaN if a row has NaN.

  ``has_nan``: where the NaNs are, when the caller already knows (row maxima
  with their flags, from :func:`leaf_row_changes`); by default ``isnan(diff)``.

  ``jnp.max`` does not guarantee that: XLA on CPU vectorizes max reductions with
  instructions that drop NaN (under jit, ``jnp.max`` of 5,000 values with one NaN
  returns the largest number). So NaN is tracked explicitly, in the same pass:
  one variadic reduction of ``(value, isnan)`` pairs.
  """
  largest, any_nan = _max_and_nan(diff, has_nan)
  return jnp.where(any_nan, jnp.asarray(jnp.nan, diff.dtype), largest)


def _max_and_nan(diff: jax.Array, has_nan: jax.Array | None = None
                 ) -> tuple[jax.Array, jax.Array]:
  """Row-wise ``(maximum, any NaN)`` of a ``(rows, size)`` matrix of values >= 0, in one pass.

  ``has_nan``: the NaN flags of ``diff``'s values (by default ``isnan(diff)``).
  """
  zero = jnp.zeros((), diff.dtype)
  return tuple(jax.lax.reduce(
      (diff, jnp.isnan(diff) if has_nan is None else has_nan), (zero, jnp.asarray(False)),
      lambda a, b: (jnp.maximum(a[0], b[0]), a[1] | b[1]), (1,)))


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
  num_rows = _rows(grad.size)
  values, indices = _change_and_argmax_rows(_abs_diff(grad, prev_grad, num_rows))
  if num_rows == 1:
    return values[0], indices[0]
  # The first row holding the largest value (NaN counts as largest, as in
  # jnp.argmax) holds the first flat arg-max.
  value, row = _change_and_argmax_rows(values[None])
  row = row[0]
  return value[0], row * (grad.size // num_rows) + indices[row]


def row_changes(
    grads: jax.Array, prev_grads: jax.Array, *, with_argmax: bool,
) -> tuple[jax.Array, jax.Array | None]:
  """The changes of ``k`` leaves of one shape, stacked on a leading axis, in one kernel.

  Args:
    grads: shape ``(k, *shape)``, the gradients of the ``k`` leaves.
    prev_grads: the same shape, their previous gradients.
    with_argmax: also return the flat index of the (first) largest element of each
      leaf, as :func:`leaf_change_and_argmax` does.

  Returns:
    ``(changes, elements)``: shape ``(k,)`` each (``elements`` is None without
    ``with_argmax``), NaN exactly where :func:`leaf_change` gives NaN.
  """
  k = grads.shape[0]
  if grads.size == 0:
    return (jnp.zeros((k,), grads.dtype),
            jnp.zeros((k,), jnp.int32) if with_argmax else None)
  diff = _abs_diff(grads, prev_grads, k)
  if with_argmax:
    return _change_and_argmax_rows(diff)
  return _nan_propagating_max(diff), None


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
