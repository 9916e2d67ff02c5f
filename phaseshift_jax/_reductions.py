"""Reductions that PhaseShift needs, exact on every backend and sharding.

``nan_max``: XLA:CPU vectorizes ``jnp.max`` with instructions that drop NaN (under
``jax.jit``, the max of 5,000 values with one NaN is the largest number), so NaN is
tracked beside the maximum, in the same pass. ``flat_argmax`` and ``flat_index``
number the elements of a leaf in row-major order without reshaping it, so a leaf
sharded along any axis (also with explicit mesh axes) stays as it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def nan_max(x: jax.Array, axes: tuple[int, ...] | None = None) -> jax.Array:
  """The maximum over ``axes`` (all) of values >= 0, NaN where any is NaN; 0 if empty."""
  largest, any_nan = jax.lax.reduce(
      (x, jnp.isnan(x)), (jnp.zeros((), x.dtype), jnp.asarray(False)),
      lambda a, b: (jnp.maximum(a[0], b[0]), a[1] | b[1]),
      tuple(range(x.ndim)) if axes is None else axes)
  return jnp.where(any_nan, jnp.asarray(jnp.nan, x.dtype), largest)


def flat_index(x: jax.Array) -> jax.Array:
  """The row-major flat index of every element of ``x``, an ``int32`` array of its shape."""
  sharding = jax.typeof(x).sharding
  index = jnp.zeros(x.shape, jnp.int32)
  stride = 1
  for dim in reversed(range(x.ndim)):
    iota = jax.lax.broadcasted_iota(jnp.int32, x.shape, dim, out_sharding=sharding)
    index = index + iota * stride
    stride *= x.shape[dim]
  return index


def flat_argmax(x: jax.Array) -> jax.Array:
  """The flat index of the first largest element of ``x`` (NaN counts as largest); 0 if empty."""
  if x.size == 0:
    return jnp.zeros((), jnp.int32)

  def first_of_larger(a, b):
    (a_value, a_index), (b_value, b_index) = a, b
    a_nan, b_nan = jnp.isnan(a_value), jnp.isnan(b_value)
    tie = (a_value == b_value) | (a_nan & b_nan)
    take_a = (a_value > b_value) | (a_nan & ~b_nan) | (tie & (a_index < b_index))
    return jnp.where(take_a, a_value, b_value), jnp.where(take_a, a_index, b_index)

  lowest = jnp.asarray(-jnp.inf, x.dtype)
  _, index = jax.lax.reduce((x, flat_index(x)), (lowest, jnp.asarray(jnp.iinfo(jnp.int32).max, jnp.int32)),
                            first_of_larger, tuple(range(x.ndim)))
  return index


_UNSTACK_CHUNK = 32  # outputs per reduction: XLA compiles very wide ones slowly


def unstack(vector: jax.Array) -> list[jax.Array]:
  """Buys compile time: the elements of a vector as scalars that no kernel slices out itself.

  With ``vector[i]`` (or a comparison with a constant ``i``) in the update of leaf
  ``i``, every leaf's update would be a kernel of its own; as the outputs of a
  few variadic reductions (each the maximum of ``[vector[i], lowest]``), they are
  plain arguments, and leaves of one shape share one compiled update kernel.
  """
  lowest = (jnp.zeros((), vector.dtype) if vector.dtype == jnp.bool_
            else jnp.asarray(jnp.iinfo(vector.dtype).min, vector.dtype))
  pairs = jnp.stack([vector, jnp.full_like(vector, lowest)])  # column i: [vector[i], lowest]
  scalars: list[jax.Array] = []
  for start in range(0, vector.shape[0], _UNSTACK_CHUNK):
    columns = [pairs[:, i] for i in range(start, min(vector.shape[0], start + _UNSTACK_CHUNK))]
    scalars += jax.lax.reduce(columns, [lowest] * len(columns),
                              lambda a, b: [jnp.maximum(x, y) for x, y in zip(a, b)], (0,))
  return scalars
