"""PhaseShift's gradient history: the previous step's gradients, kept in few arrays.

Every array a jitted step takes and returns costs JAX's dispatch a few
microseconds, whatever its size. A tree of 1,000 leaves would add 1,000 arrays in
and 1,000 out to each step if the history were stored like the params: on CPU
that alone costs as much as a whole SGD step. So small leaves (fewer than
``SMALL_LEAF`` elements) of one shape and dtype share one stacked array; larger
leaves keep an array of their own (where their own layout, say a sharding,
matters, and where stacking would copy much data).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

# Leaves with fewer elements are stacked by (shape, dtype).
SMALL_LEAF = 4096

OWN, STACKED = 0, 1


class Layout(NamedTuple):
  """Where the history of each leaf lives; static (it is the pytree's aux data).

  Attributes:
    treedef: the params' tree structure, flattened with ``None`` as a leaf.
    slots: per flattened position, ``None`` (no parameter there), ``(OWN, i)``
      (``own[i]``) or ``(STACKED, s, j)`` (``stacks[s][j]``).
    shapes: per position, the leaf's shape (``None`` where no parameter).
  """

  treedef: Any
  slots: tuple[Any, ...]
  shapes: tuple[Any, ...]


def is_boxed(value: Any) -> bool:
  """True for ``nnx.Variable``-like boxes (a ``value`` property on the class)."""
  return isinstance(getattr(type(value), "value", None), property)


def unbox(value: Any) -> Any:
  """The array inside an ``nnx.Variable``-like box, else the value itself."""
  if not is_boxed(value):
    return value
  get_value = getattr(value, "get_value", None)  # flax >= 0.12 deprecates `.value`
  return get_value() if callable(get_value) else value.value


def flatten(tree: Any) -> tuple[list[Any], Any]:
  """The leaves of a params-like tree with ``None`` kept as a leaf, and the treedef."""
  return jax.tree.flatten(tree, is_leaf=lambda x: x is None)


@jax.tree_util.register_pytree_with_keys_class
class GradientHistory:
  """The previous gradients ``h_i``: large leaves as they are, small ones stacked.

  A pytree whose children are ``own`` (a tuple of arrays, one per large leaf, in
  leaf order) and ``stacks`` (a tuple of arrays of shape ``(k, *shape)``, one per
  (shape, dtype) of the small leaves); its :class:`Layout` is static. Use
  :meth:`as_tree` for the history as a tree like the params.
  """

  def __init__(self, own: tuple[Any, ...], stacks: tuple[Any, ...], layout: Layout):
    self.own = tuple(own)
    self.stacks = tuple(stacks)
    self.layout = layout

  def tree_flatten_with_keys(self):
    key = jax.tree_util.GetAttrKey
    return ((key("own"), self.own), (key("stacks"), self.stacks)), self.layout

  def tree_flatten(self):
    return (self.own, self.stacks), self.layout

  @classmethod
  def tree_unflatten(cls, layout: Layout, children: Any) -> GradientHistory:
    own, stacks = children
    return cls(own, stacks, layout)

  def __repr__(self) -> str:
    return f"GradientHistory(own={self.own!r}, stacks={self.stacks!r})"

  @classmethod
  def zeros_like(cls, params: Any) -> GradientHistory:
    """The history before the first step: zeros of the params' shapes and dtypes."""
    leaves, treedef = flatten(params)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for position, leaf in enumerate(leaves):
      if leaf is not None and jnp.size(leaf) < SMALL_LEAF:
        groups.setdefault((jnp.shape(leaf), jnp.dtype(jnp.result_type(leaf))), []).append(position)
    slots: list[Any] = [None] * len(leaves)
    for s, positions in enumerate(groups.values()):
      for j, position in enumerate(positions):
        slots[position] = (STACKED, s, j)
    own = []
    for position, leaf in enumerate(leaves):
      if leaf is not None and slots[position] is None:
        slots[position] = (OWN, len(own))
        own.append(jnp.zeros_like(leaf))
    stacks = [jnp.zeros((len(positions),) + shape, dtype)
              for (shape, dtype), positions in groups.items()]
    shapes = tuple(None if leaf is None else tuple(jnp.shape(leaf)) for leaf in leaves)
    return cls(own, stacks, Layout(treedef, tuple(slots), shapes))

  def check_structure(self, treedef: Any, leaves: list[Any], name: str) -> None:
    """Raises a ValueError if gradients of this structure cannot update this history.

    The gradients must have the params' number of leaves, each of the params'
    shape. Their tree may differ in boxes: ``nnx.Optimizer`` initialises the
    optimizer with ``nnx.Param`` boxes and updates it with bare arrays.
    """
    expected = self.layout.treedef
    if treedef.num_leaves != expected.num_leaves:
      raise ValueError(
          f"{name}: the gradient tree's structure differs from the structure the "
          "optimizer state was initialised with (did the params change shape or "
          f"nesting since init?).\n  gradients: {treedef}\n  state:     {expected}")
    for position, (leaf, shape) in enumerate(zip(leaves, self.layout.shapes)):
      if leaf is not None and shape is not None and tuple(jnp.shape(leaf)) != shape:
        raise ValueError(
            f"{name}: gradient leaf {position} has shape {tuple(jnp.shape(leaf))}, but the "
            f"optimizer state was initialised for shape {shape} (did the params change "
            "shape since init?)")

  def leaf(self, position: int) -> Any:
    """The history of the leaf at this flattened position (None where no parameter).

    For a batched state (e.g. the stacked states of ``jax.vmap``), the batch axes
    lead, as they do in the own arrays.
    """
    slot = self.layout.slots[position]
    if slot is None:
      return None
    if slot[0] == OWN:
      return self.own[slot[1]]
    stack = unbox(self.stacks[slot[1]])  # nnx.Optimizer boxes the state's arrays
    # The stacking axis comes right before the leaf's own axes, so a state with
    # leading batch axes (from jax.vmap) reads right too.
    axis = jnp.ndim(stack) - len(self.layout.shapes[position]) - 1
    return jax.lax.index_in_dim(stack, slot[2], axis, keepdims=False)

  def as_tree(self) -> Any:
    """The history as a tree of the params' structure."""
    return self.layout.treedef.unflatten(
        [self.leaf(position) for position in range(len(self.layout.slots))])

  def stacked_groups(self) -> list[list[int]]:
    """Per stack ``s``, the flattened positions of its leaves, in stacking order."""
    groups: list[list[int]] = [[] for _ in self.stacks]
    for position, slot in enumerate(self.layout.slots):
      if slot is not None and slot[0] == STACKED:
        groups[slot[1]].append(position)
    return groups


def _register_flax_serialization() -> None:
  """Lets ``flax.serialization`` (``to_bytes``, ``to_state_dict``) save and restore a history.

  Flax is optional here; without it there is nothing to register. The state dict
  is ``{"own": {...}, "stacks": {...}}``; the layout comes from the target.
  """
  try:
    from flax import serialization  # pylint: disable=import-outside-toplevel
  except ImportError:
    return

  def to_state_dict(history: GradientHistory) -> dict[str, Any]:
    return {"own": serialization.to_state_dict(list(history.own)),
            "stacks": serialization.to_state_dict(list(history.stacks))}

  def from_state_dict(target: GradientHistory, state: dict[str, Any]) -> GradientHistory:
    return GradientHistory(serialization.from_state_dict(list(target.own), state["own"]),
                           serialization.from_state_dict(list(target.stacks), state["stacks"]),
                           target.layout)

  serialization.register_serialization_state(GradientHistory, to_state_dict, from_state_dict)


_register_flax_serialization()
