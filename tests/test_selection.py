"""``selection.leaf_change``: the exact maximum, NaN wherever it is, jitted or not.

Large leaves are folded in half before their reduction and reduced in rows, so
the sizes here cover both sides of each of those thresholds, and the largest value
or the NaN is put in either half and at either end.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from phaseshift_jax import selection

# below / at / above the fold's 4,096 elements, odd (not folded), and large
SIZES = (1, 1000, 4095, 4096, 4097, 5000, 3 * 8192 + 2, 1 << 20)


def _positions(size):
  return sorted({0, size // 2 - 1, size // 2, size - 1} - {-1})


def _leaf_change_both_ways(grad, prev):
  return (selection.leaf_change(grad, prev),
          jax.jit(selection.leaf_change)(grad, prev))


@pytest.mark.parametrize("size", SIZES)
def test_leaf_change_is_the_largest_absolute_difference(size):
  rng = np.random.default_rng(size)
  for position in _positions(size):
    grad = rng.standard_normal(size).astype(np.float32)
    prev = rng.standard_normal(size).astype(np.float32)
    grad[position] = prev[position] - 100.0  # the largest change, negative sign
    expected = np.max(np.abs(grad - prev))
    for change in _leaf_change_both_ways(jnp.asarray(grad), jnp.asarray(prev)):
      assert change.dtype == jnp.float32
      assert float(change) == expected, (size, position)


@pytest.mark.parametrize("size", SIZES)
def test_leaf_change_is_nan_wherever_the_nan_is(size):
  rng = np.random.default_rng(size + 1)
  for position in _positions(size):
    grad = rng.standard_normal(size).astype(np.float32)
    prev = rng.standard_normal(size).astype(np.float32)
    grad[position] = np.nan
    grad[(position + size // 3) % size] += 1e3 if size > 1 else 0.0  # a large finite change too
    for change in _leaf_change_both_ways(jnp.asarray(grad), jnp.asarray(prev)):
      assert np.isnan(float(change)), (size, position)


def test_leaf_change_of_an_empty_leaf_is_zero():
  empty = jnp.zeros((0, 3))
  for change in _leaf_change_both_ways(empty, empty):
    assert float(change) == 0.0
