"""Which parameter did PhaseShift kick? Helpers for logging outside jit."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from phaseshift_jax.phase_shift import PhaseShiftState


def _is_boxed(value: Any) -> bool:
  """True for ``nnx.Variable``-like boxes (a ``value`` property on the class)."""
  return isinstance(getattr(type(value), "value", None), property)


def _unbox(value: Any) -> Any:
  """The array inside an ``nnx.Variable``-like box, else the value itself."""
  if not _is_boxed(value):
    return value
  get_value = getattr(value, "get_value", None)  # flax >= 0.12 deprecates `.value`
  return get_value() if callable(get_value) else value.value


def find_phase_shift_state(opt_state: Any) -> PhaseShiftState:
  """The :class:`PhaseShiftState` inside any optimizer state.

  Works for the state of :func:`phase_shift`, of :func:`with_phase_shift`, of
  ``optax.chain`` / ``optax.inject_hyperparams`` / ``optax.masked`` around them,
  and for ``nnx.Optimizer(...).opt_state``.

  Raises:
    ValueError: if there is none, or more than one.
  """
  found = [node for node in jax.tree.leaves(
      opt_state, is_leaf=lambda x: isinstance(x, PhaseShiftState))
           if isinstance(node, PhaseShiftState)]
  if len(found) != 1:
    raise ValueError(
        f"expected exactly one PhaseShiftState in the optimizer state, found {len(found)}")
  return found[0]


def leaf_paths(tree: Any) -> list[str]:
  """The ``/``-separated path of every leaf of ``tree``, in flattening order.

  These are the names that ``PhaseShiftState.shifted_leaf`` indexes, e.g.
  ``params/Conv_0/kernel`` for a Linen params dict, or ``conv/kernel`` for
  ``nnx.state(model, nnx.Param)`` (a Variable counts as one leaf).
  """
  with_paths, _ = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_boxed)
  return [jax.tree_util.keystr(path, simple=True, separator="/")
          for path, _ in with_paths]


def shifted_parameter(opt_state: Any, params: Any = None) -> str | None:
  """The path of the parameter kicked in the last step, or ``None`` if none was.

  When the params are one array (no tree around it), its path is ``""``: test the
  result with ``is None``, not for truth.

  Call it outside jit (it reads one scalar from the device). The path comes from
  ``params`` when given, else from the state's own gradient history (which has
  the same tree as the params the optimizer was initialised with; for an
  ``optax.masked`` optimizer that is the masked tree).

  Args:
    opt_state: any optimizer state holding one :class:`PhaseShiftState`.
    params: optional, the params tree the optimizer updates (same leaves, in the
      same order, as the state's history).

  Raises:
    ValueError: for a batched state (e.g. under ``jax.vmap``), or ``params`` with a
      different number of leaves than the state's history.
  """
  state = find_phase_shift_state(opt_state)
  index = np.asarray(_unbox(state.shifted_leaf))
  if index.shape != ():
    raise ValueError(
        f"shifted_parameter needs an unbatched state; shifted_leaf has shape {index.shape}")
  if index < 0:
    return None
  paths = leaf_paths(state.prev_grads)
  if params is not None:
    param_paths = leaf_paths(params)
    if len(param_paths) != len(paths):
      raise ValueError(
          f"params has {len(param_paths)} leaves but the optimizer state's history has "
          f"{len(paths)}; pass the tree the optimizer updates")
    paths = param_paths
  return paths[int(index)]
