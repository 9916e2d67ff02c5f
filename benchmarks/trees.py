"""Parameter trees to benchmark on: synthetic layer stacks and the CIFAR-10 models.

A synthetic tree of ``n`` leaves is ``n // 2`` dense layers, each a kernel
``(d, d)`` and a bias ``(d,)`` (plus a vector ``(d,)`` when ``n`` is odd), with
``d`` a multiple of 8 chosen so that the tree holds about ``total`` parameters.
Layers repeat, as in real networks, so XLA can share one compiled kernel between
leaves of one shape; the biases are the small leaves where per-leaf costs show.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Shapes = dict[str, Any]  # a nested dict whose leaves are shape tuples


def layer_width(num_leaves: int, total: int) -> int:
  """The ``d`` (a multiple of 8, at least 8) giving about ``total`` parameters."""
  if num_leaves < 2 or total < 1:
    raise ValueError(f"need num_leaves >= 2 and total >= 1, got {num_leaves}, {total}")
  layers = num_leaves // 2
  d = (-1 + math.sqrt(1 + 4 * total / layers)) / 2  # layers * (d * d + d) = total
  return max(8, 8 * round(d / 8))


def synthetic_shapes(num_leaves: int, total: int) -> Shapes:
  """The shapes of the synthetic tree with ``num_leaves`` leaves and about ``total`` parameters."""
  d = layer_width(num_leaves, total)
  shapes: Shapes = {f"layer{i:04d}": {"kernel": (d, d), "bias": (d,)}
                    for i in range(num_leaves // 2)}
  if num_leaves % 2:
    shapes["scale"] = (d,)
  return shapes


def uniform_shapes(num_leaves: int, leaf_size: int) -> Shapes:
  """``num_leaves`` leaves of ``leaf_size`` elements each, ``(leaf_size / 100, 100)`` (or flat)."""
  if num_leaves < 1 or leaf_size < 1:
    raise ValueError(f"need num_leaves >= 1 and leaf_size >= 1, got {num_leaves}, {leaf_size}")
  shape = (leaf_size // 100, 100) if leaf_size % 100 == 0 else (leaf_size,)
  return {f"leaf{i:04d}": shape for i in range(num_leaves)}


def model_shapes(name: str, width: int | None = None) -> Shapes:
  """The parameter shapes of a CIFAR-10 model of ``examples/cifar10/models.py`` (``cnn``, ``resnet``)."""
  from flax import nnx  # pylint: disable=import-outside-toplevel
  from examples.cifar10 import models  # pylint: disable=import-outside-toplevel

  model = nnx.eval_shape(lambda: models.create_model(name, width=width))
  params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
  return jax.tree.map(lambda x: tuple(x.shape), params)


def is_shape(x: Any) -> bool:
  return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def count(shapes: Shapes) -> tuple[int, int]:
  """``(number of leaves, number of parameters)`` of a shape tree."""
  leaves = jax.tree.leaves(shapes, is_leaf=is_shape)
  return len(leaves), int(sum(math.prod(s) for s in leaves))


def abstract_tree(shapes: Shapes, dtype=jnp.float32) -> Any:
  """A tree of ``jax.ShapeDtypeStruct`` with these shapes: for ``eval_shape`` and ``lower``."""
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, dtype), shapes, is_leaf=is_shape)


def random_tree(shapes: Shapes, seed: int, dtype=jnp.float32) -> Any:
  """A tree of standard-normal arrays with these shapes (numpy-generated, then put on device)."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(rng.standard_normal(s, dtype=np.float32).astype(dtype)),
      shapes, is_leaf=is_shape)
