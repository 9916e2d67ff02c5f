"""PhaseShift as optax transformations: ``phase_shift`` and ``with_phase_shift``.

One step, with ``g`` the gradients and ``h`` the previous step's gradients:

1. the change of every leaf, ``c_i = max |g_i - h_i|``;
2. the selection of at most one leaf ``k`` from those changes;
3. the kick ``sign(g_k) * clip(threshold, -shift_boundary, shift_boundary)`` added to
   the update of leaf ``k`` (or of its one element with the largest change);
4. the new history ``h <- g``.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from phaseshift_jax import _checks
from phaseshift_jax import _reductions
from phaseshift_jax import _xla_cpu

Selection = Literal["argmax", "last"]
Granularity = Literal["tensor", "element"]
SELECTIONS: tuple[str, ...] = ("argmax", "last")
GRANULARITIES: tuple[str, ...] = ("tensor", "element")


class PhaseShiftState(NamedTuple):
  """State of the PhaseShift kick.

  Attributes:
    count: number of steps taken, ``int32`` scalar.
    prev_grads: the previous step's gradients (zeros before the first), a tree
      of the params' structure, shapes, dtypes and shardings.
    shifted_leaf: index of the leaf kicked in the last step, in the order of
      ``jax.tree.leaves(prev_grads)``, or ``-1``; ``int32``.
    shifted_element: with ``granularity="element"``, the flat (row-major) index
      of the kicked element in that leaf; otherwise, or when nothing was kicked,
      ``-1``; ``int32``.
    shift_change: the change ``max|g - h|`` of the kicked leaf (0 when none), in
      the params' common dtype.
  """

  count: jax.Array
  prev_grads: optax.Updates
  shifted_leaf: jax.Array
  shifted_element: jax.Array
  shift_change: jax.Array


class WithPhaseShiftState(NamedTuple):
  """State of :func:`with_phase_shift`: the inner optimizer's and the kick's."""

  inner_state: optax.OptState
  phase_shift: PhaseShiftState


def _is_none(x: Any) -> bool:
  return x is None


def _validate(threshold, shift_boundary, min_gradient_magnitude, selection, granularity):
  _checks.check_not_nan("threshold", threshold)
  _checks.check_non_negative("shift_boundary", shift_boundary)
  _checks.check_non_negative("min_gradient_magnitude", min_gradient_magnitude)
  _checks.check_choice("selection", selection, SELECTIONS)
  _checks.check_choice("granularity", granularity, GRANULARITIES)


def _init_state(params: optax.Params) -> PhaseShiftState:
  dtypes = []
  for path, leaf in jax.tree_util.tree_leaves_with_path(params):
    dtype = getattr(leaf, "dtype", None)
    dtype = jnp.dtype(jnp.result_type(leaf) if dtype is None else dtype)  # 1.0: a float
    where = f"params{jax.tree_util.keystr(path)} is {dtype.name}"
    if jnp.issubdtype(dtype, jnp.complexfloating):
      raise TypeError(
          f"PhaseShift does not support complex parameters ({where}): the kick's sign and "
          "the selection's maximum need real values; pass the real and imaginary parts "
          "as separate real leaves")
    if not jnp.issubdtype(dtype, jnp.floating):
      raise TypeError(
          f"PhaseShift needs floating-point parameters ({where}); leave integer and boolean "
          "leaves out with optax.masked or optax.partition")
    dtypes.append(dtype)
  return PhaseShiftState(
      count=jnp.zeros([], jnp.int32),
      prev_grads=optax.tree.zeros_like(params),
      shifted_leaf=jnp.asarray(-1, jnp.int32),
      shifted_element=jnp.asarray(-1, jnp.int32),
      shift_change=jnp.zeros([], jnp.result_type(*dtypes) if dtypes else jnp.float32),
  )


def select_leaf(changes: jax.Array, min_gradient_magnitude: jax.typing.ArrayLike,
                selection: Selection) -> tuple[jax.Array, jax.Array]:
  """Picks at most one leaf from the vector of per-leaf changes.

  The original scans the leaves with a running maximum ``m`` that starts at 0;
  a leaf becomes the candidate when ``c_i > m`` and ``c_i > min_gradient_magnitude``.

  * ``"argmax"``: the first leaf with the largest change, if that change is
    ``> max(0, min_gradient_magnitude)``.
  * ``"last"``: the original code literally. It resets the candidate on every
    leaf that does not set a new maximum, so only the last leaf can be picked,
    when its change beats every earlier (non-NaN) change and
    ``max(0, min_gradient_magnitude)``.

  NaN changes never win and never block another leaf.

  Args:
    changes: shape ``(n,)``, one change per leaf, in leaf order.
    min_gradient_magnitude: scalar; the change must exceed it strictly.
    selection: ``"argmax"`` or ``"last"``.

  Returns:
    ``(index, change)``: the picked leaf (``int32``, ``-1`` for none) and its
    change (0 for none), in ``changes.dtype``.
  """
  _checks.check_choice("selection", selection, SELECTIONS)
  changes = jnp.asarray(changes)
  if changes.ndim != 1:
    raise ValueError(f"changes must be a vector, one change per leaf; got shape {changes.shape}")
  n = changes.shape[0]
  if n == 0:
    return jnp.asarray(-1, jnp.int32), jnp.zeros((), changes.dtype)
  floor = jnp.maximum(jnp.asarray(min_gradient_magnitude, changes.dtype), 0)
  comparable = jnp.where(jnp.isnan(changes), -jnp.inf, changes)
  if selection == "argmax":
    index = jnp.argmax(comparable)
    best = comparable[index]
    picked = best > floor
  else:
    index = n - 1
    best = comparable[index]
    picked = (best > floor) & (best > jnp.max(comparable[:-1], initial=-jnp.inf))
  index = jnp.where(picked, index, -1).astype(jnp.int32)
  return index, jnp.where(picked, best, 0).astype(changes.dtype)


def _leaf_change(diff: jax.Array) -> jax.Array:
  """``max |g - h|`` of one leaf from ``diff = |g - h|``; NaN if any element is NaN."""
  diff = _xla_cpu.fold_in_half(diff)  # fold and rows: speed on XLA:CPU, the same maximum
  rows = _xla_cpu.in_rows(diff)
  if rows is not None:
    return _reductions.nan_max(_reductions.nan_max(rows, axes=(1,)))
  return _reductions.nan_max(diff)


def _kick_step(grads, state, threshold, shift_boundary, min_gradient_magnitude,
               selection, granularity, name):
  """The kick of every leaf and the next state.

  Returns ``(kicks, treedef, new_state)``; ``kicks`` has per flattened leaf of
  ``grads`` (``None`` kept as a leaf) a pair ``(hit, value)`` saying where
  ``value`` is added to the update, or ``None`` where the gradient is ``None``.
  """
  grad_leaves, treedef = jax.tree.flatten(grads, is_leaf=_is_none)
  grad_leaves = [None if g is None else jnp.asarray(g) for g in grad_leaves]  # 1.0 is a leaf too
  try:
    prev_leaves = treedef.flatten_up_to(state.prev_grads)
  except (ValueError, TypeError) as e:
    raise ValueError(
        f"{name}: the gradient tree's structure differs from the structure the optimizer "
        f"state was initialised with (did the params change since init?): {e}") from None
  live = []  # flattened positions of the leaves that take part in this step
  for position, (grad, prev) in enumerate(zip(grad_leaves, prev_leaves)):
    if grad is None or prev is None:
      continue
    if jnp.shape(grad) != jnp.shape(prev):
      raise ValueError(
          f"{name}: gradient leaf {position} has shape {jnp.shape(grad)}, but the "
          f"optimizer state was initialised for shape {jnp.shape(prev)}")
    live.append(position)
  # shifted_leaf counts the leaves of prev_grads, which has no None leaves.
  state_index = np.cumsum([prev is not None for prev in prev_leaves]) - 1

  dtype = state.shift_change.dtype
  # The selection is discrete: no derivative flows through it (jax.grad through ``update``
  # differentiates the updates as the inner rule's, the kick a constant).
  grad_values = [jax.lax.stop_gradient(grad) for grad in grad_leaves]
  prev_values = [jax.lax.stop_gradient(prev) for prev in prev_leaves]
  diffs = [jnp.abs(grad_values[p] - prev_values[p]) for p in live]
  changes = jnp.stack([_leaf_change(d).astype(dtype) for d in diffs]) if live else (
      jnp.zeros((0,), dtype))
  picked, change = select_leaf(changes, min_gradient_magnitude, selection)
  safe = jnp.maximum(picked, 0)
  shifted_leaf = jnp.asarray(state_index[live] if live else [-1], jnp.int32)[safe]
  shifted_leaf = jnp.where(picked >= 0, shifted_leaf, -1)
  shifted_element = jnp.asarray(-1, jnp.int32)

  hits = _reductions.unstack(jnp.arange(len(live)) == picked) if live else []
  # Always 0, but known only once every change is (and, in element mode, the
  # kicked element): the new history is written after the old one was read.
  after_reads = [(change < 0).astype(jnp.int32)] * len(live)
  if granularity == "element" and live:
    # Only the picked leaf runs its arg-max pass (under jax.vmap both branches run).
    elements = [jax.lax.cond(hit, lambda g, h: _reductions.flat_argmax(jnp.abs(g - h)),
                             lambda g, h: jnp.asarray(-1, jnp.int32),
                             grad_values[p], prev_values[p]) for hit, p in zip(hits, live)]
    shifted_element = jnp.where(picked >= 0, jnp.stack(elements)[safe], -1)
    hits = [hit & (_reductions.flat_index(grad_leaves[p]) == element)
            for hit, p, element in zip(hits, live, elements)]
    after_reads = [token | (element < -1) for token, element in zip(after_reads, elements)]

  kicks: list[Any] = [None] * len(grad_leaves)
  new_prev = list(prev_leaves)
  for j, p in enumerate(live):
    grad = grad_leaves[p]
    bound = jnp.asarray(shift_boundary, grad.dtype)
    size = jnp.clip(jnp.asarray(threshold, grad.dtype), -bound, bound)
    kicks[p] = (hits[j], jnp.sign(grad) * size)
    new_prev[p] = _xla_cpu.written_after(grad.astype(prev_leaves[p].dtype), after_reads[j])

  new_state = PhaseShiftState(
      count=optax.safe_increment(state.count),
      prev_grads=treedef.unflatten(new_prev),
      shifted_leaf=shifted_leaf.astype(jnp.int32),
      shifted_element=shifted_element.astype(jnp.int32),
      shift_change=change.astype(dtype),
  )
  return kicks, treedef, new_state


def _add_kick(update: jax.Array, kick: tuple[jax.Array, jax.Array]) -> jax.Array:
  """``update + value`` where ``hit``, else ``update``, in ``update``'s dtype."""
  hit, value = kick
  update = jnp.asarray(update)
  return jnp.where(hit, update + value.astype(update.dtype), update).astype(update.dtype)


def phase_shift(
    learning_rate: optax.ScalarOrSchedule,
    threshold: jax.typing.ArrayLike,
    shift_boundary: jax.typing.ArrayLike,
    min_gradient_magnitude: jax.typing.ArrayLike,
    *,
    selection: Selection = "argmax",
    granularity: Granularity = "tensor",
) -> optax.GradientTransformationExtraArgs:
  r"""The PhaseShift optimizer: gradient descent plus a kick on the leaf whose gradient changed most.

  With leaves :math:`p_i`, gradients :math:`g_i` and the previous step's
  gradients :math:`h_i` (zeros at the first step):

  .. math::

    c_i &= \max_e |g_{i,e} - h_{i,e}| \\
    k &= \mathrm{select}(c_1, \dots, c_n) \quad (\text{at most one leaf}) \\
    u_i &= -\eta\, g_i + [i = k]\; \mathrm{sign}(g_k)\, \mathrm{clip}(\tau, -b, b) \\
    h_i &\leftarrow g_i

  with :math:`\eta` the learning rate, :math:`\tau` the threshold and :math:`b`
  the shift boundary. The kick is not scaled by the learning rate and points
  along :math:`+g` (uphill), as in the original. ``selection="argmax"`` picks
  the first leaf with the largest :math:`c_i` if :math:`c_k > \max(0, m)`
  (:math:`m` = ``min_gradient_magnitude``); ``selection="last"`` is the original
  code, which can only pick the last leaf (:func:`select_leaf`).
  ``granularity="element"`` kicks only the first element of leaf :math:`k` with
  the largest :math:`|g - h|`. A NaN change is never picked.

  Differences from the torch original, by design: it updates in place
  (``p -= lr*g``, then ``p += kick``), this returns ``-lr*g + kick``, so a kicked
  element may differ in its last bit (also between ``jax.jit``, where XLA may
  fuse the multiply-add, and eager mode); its ``step()`` returns the changes,
  this keeps the kicked leaf and its change in the state; its constructor takes
  loss-term parameters it never uses (see :func:`phaseshift_jax.phase_shift_loss`).

  Leaves whose gradient is ``None`` get a ``None`` update, keep their history
  and are never picked. Complex, integer and boolean parameters are refused at
  ``init`` (``TypeError`` naming the leaf). No derivative flows through the
  selection: ``jax.grad`` through ``update`` sees the kick as a constant.

  Args:
    learning_rate: step size :math:`\eta` (``lr`` in torch), or an optax
      schedule of the step count.
    threshold: size :math:`\tau` of the kick.
    shift_boundary: the kick is clipped to :math:`[-b, b]`; must be >= 0.
    min_gradient_magnitude: a leaf is picked only if its change is strictly
      larger; must be >= 0.
    selection: ``"argmax"`` (default, the evident intent) or ``"last"`` (the
      original code, literally).
    granularity: ``"tensor"`` (default, as the original: the whole leaf) or
      ``"element"`` (the one element with the largest change).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state :class:`PhaseShiftState`.

  Example:
    >>> import jax.numpy as jnp, optax, phaseshift_jax as ps
    >>> tx = ps.phase_shift(0.1, threshold=0.01, shift_boundary=0.01,
    ...                     min_gradient_magnitude=0.0)
    >>> params = {"w": jnp.ones(3), "b": jnp.zeros(1)}
    >>> state = tx.init(params)
    >>> grads = {"w": jnp.array([0.5, -1.0, 0.0]), "b": jnp.array([0.2])}
    >>> updates, state = tx.update(grads, state)
    >>> updates["w"]  # -0.1 * g plus the kick 0.01 * sign(g): "w" changed most
    Array([-0.04,  0.09,  0.  ], dtype=float32)

  References:
    Walter, "Phase Shift Optimizer" (blog post with the torch ``PhaseShiftOptimizer``).
  """
  _checks.check_non_negative("learning_rate", learning_rate)
  _validate(threshold, shift_boundary, min_gradient_magnitude, selection, granularity)

  def update_fn(updates, state, params=None, **extra_args):
    del params, extra_args
    lr = learning_rate(state.count) if callable(learning_rate) else learning_rate
    kicks, treedef, new_state = _kick_step(
        updates, state, threshold, shift_boundary, min_gradient_magnitude,
        selection, granularity, "phase_shift")
    grad_leaves = [None if g is None else jnp.asarray(g) for g in treedef.flatten_up_to(updates)]
    new_updates = treedef.unflatten([
        None if kick is None else _add_kick((-lr * grad).astype(grad.dtype), kick)
        for grad, kick in zip(grad_leaves, kicks)])
    return new_updates, new_state

  return optax.GradientTransformationExtraArgs(_init_state, update_fn)


def with_phase_shift(
    inner: optax.GradientTransformation,
    threshold: jax.typing.ArrayLike,
    shift_boundary: jax.typing.ArrayLike,
    min_gradient_magnitude: jax.typing.ArrayLike,
    *,
    selection: Selection = "argmax",
    granularity: Granularity = "tensor",
) -> optax.GradientTransformationExtraArgs:
  r"""Adds the PhaseShift kick to the updates of any optax optimizer.

  .. math::

    u_i = \mathrm{inner}(g)_i + [i = k]\; \mathrm{sign}(g_k)\, \mathrm{clip}(\tau, -b, b)

  where the selection of :math:`k` and the kick are computed from the raw
  gradients ``g`` passed to ``update`` (not from the inner optimizer's output),
  exactly as in :func:`phase_shift`. So ``phase_shift(lr, ...)`` gives the
  updates of ``with_phase_shift(optax.sgd(lr), ...)``, and PhaseShift-Adam is
  ``with_phase_shift(optax.adam(lr), ...)``. Extra arguments of ``update``
  (such as ``value`` for line searches) are passed on to ``inner``.

  Args:
    inner: the optimizer whose updates get the kick.
    threshold: size :math:`\tau` of the kick.
    shift_boundary: the kick is clipped to :math:`[-b, b]`; must be >= 0.
    min_gradient_magnitude: a leaf is picked only if its change is strictly
      larger; must be >= 0.
    selection: ``"argmax"`` or ``"last"``, as in :func:`phase_shift`.
    granularity: ``"tensor"`` or ``"element"``, as in :func:`phase_shift`.

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with state :class:`WithPhaseShiftState`.

  Example:
    >>> import optax, phaseshift_jax as ps
    >>> tx = ps.with_phase_shift(optax.adam(1e-3), threshold=1e-3,
    ...                          shift_boundary=1e-3, min_gradient_magnitude=0.0)
  """
  _validate(threshold, shift_boundary, min_gradient_magnitude, selection, granularity)
  inner = optax.with_extra_args_support(inner)

  def init_fn(params):
    return WithPhaseShiftState(inner.init(params), _init_state(params))

  def update_fn(updates, state, params=None, **extra_args):
    inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
    kicks, treedef, kick_state = _kick_step(
        updates, state.phase_shift, threshold, shift_boundary, min_gradient_magnitude,
        selection, granularity, "with_phase_shift")
    new_updates = treedef.unflatten([
        update if kick is None else _add_kick(update, kick)
        for update, kick in zip(treedef.flatten_up_to(inner_updates), kicks)])
    return new_updates, WithPhaseShiftState(inner_state, kick_state)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
