"""Three measures for XLA:CPU; none changes a value, ``benchmarks/cpu_measures.py`` shows they pay.

They apply only when JAX's default backend is the CPU; elsewhere both return
their input as it is.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Folding pays only where the reduction loop is long; below this it is left out.
MIN_FOLD_SIZE = 4096
# Rows pay only on large leaves (measured: slower on leaves of 30k elements).
MIN_ROWS_SIZE, MIN_ROW, ROWS = 65536, 2048, (64, 32, 16, 8, 4, 2)

_SAME_WIDTH_INT = {2: jnp.int16, 4: jnp.int32, 8: jnp.int64}


def on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _unsharded_axes(x: jax.Array) -> list[int]:
  spec = tuple(jax.typeof(x).sharding.spec) + (None,) * x.ndim
  return [a for a in range(x.ndim) if spec[a] is None]


def fold_in_half(x: jax.Array) -> jax.Array:
  """Buys a faster max: the loop of XLA:CPU's NaN-propagating max runs half as many steps.

  Returns the elementwise ``maximum`` of the two halves of ``x`` along its
  longest even axis that is not sharded (NaN propagates through ``maximum``),
  which XLA fuses into the reduction that follows; ``x`` as it is when it is
  small or has no such axis.
  """
  if not on_cpu() or x.size < MIN_FOLD_SIZE:
    return x
  axes = [a for a in _unsharded_axes(x) if x.shape[a] % 2 == 0]
  if not axes:
    return x
  axis = max(axes, key=lambda a: x.shape[a])
  first, second = jnp.split(x, 2, axis=axis)
  return jnp.maximum(first, second)


def in_rows(x: jax.Array) -> jax.Array | None:
  """Buys a reduction on both cores: XLA:CPU reduces to one scalar on one thread, to rows on all.

  ``x`` as a ``(rows, size / rows)`` matrix, to be reduced over its rows and
  then over the row results; ``None`` where that does not pay (a small leaf),
  or where the reshape would move a sharded axis.
  """
  if not on_cpu() or x.size < MIN_ROWS_SIZE or len(_unsharded_axes(x)) < x.ndim:
    return None
  for rows in ROWS:
    if x.size % rows == 0 and x.size // rows >= MIN_ROW:
      return x.reshape(rows, -1)
  return None


def written_after(x: jax.Array, opaque_zero: jax.Array) -> jax.Array:
  """Buys an in-place history write: ``x``, bit for bit, computed only once ``opaque_zero`` is.

  ``opaque_zero`` is an ``int32`` that is always 0 but that XLA cannot prove to
  be. A new history written after the changes have read the old one can take
  the old one's donated buffer; XLA:CPU otherwise copies the gradients early
  and keeps the old history aside, one more pass over every leaf.
  """
  if (not on_cpu() or not jnp.issubdtype(x.dtype, jnp.floating)
      or jnp.dtype(x.dtype).itemsize not in _SAME_WIDTH_INT):
    return x
  return _or_bits(x, opaque_zero)


@jax.custom_jvp
def _or_bits(x: jax.Array, opaque_zero: jax.Array) -> jax.Array:
  bits = _SAME_WIDTH_INT[jnp.dtype(x.dtype).itemsize]
  return jax.lax.bitcast_convert_type(
      jax.lax.bitcast_convert_type(x, bits) | opaque_zero.astype(bits), x.dtype)


@_or_bits.defjvp
def _or_bits_jvp(primals, tangents):
  """The identity's derivative, as ``x`` is returned (a bitcast alone would have none)."""
  x, opaque_zero = primals
  return _or_bits(x, opaque_zero), tangents[0]
