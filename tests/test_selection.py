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
from tests.compiled import large_intermediates

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


def test_leaf_changes_of_no_leaves_is_an_error():
  with pytest.raises(ValueError, match="at least one leaf"):
    selection.leaf_changes([])


def test_leaf_change_of_an_empty_leaf_is_zero():
  empty = jnp.zeros((0, 3))
  for change in _leaf_change_both_ways(empty, empty):
    assert float(change) == 0.0


def test_leaf_changes_of_mixed_row_counts_come_back_in_order():
  """Leaves finished in groups by row count come back in the order given, NaN kept."""
  rng = np.random.default_rng(7)
  sizes = (1 << 20, 4097, 8192, 5000, 1 << 20, 4097, 0, 3)
  rows = {selection.leaf_row_changes(jnp.zeros(n), jnp.zeros(n))[0].shape[0] for n in sizes}
  assert len(rows) >= 4  # the sizes do make several groups
  grads = [rng.standard_normal(n).astype(np.float32) for n in sizes]
  prevs = [rng.standard_normal(n).astype(np.float32) for n in sizes]
  grads[2][8191] = np.nan
  expected = [np.max(np.abs(g - h)) if g.size else 0.0 for g, h in zip(grads, prevs)]

  def changes(grads, prevs):
    return selection.leaf_changes([selection.leaf_row_changes(g, h)
                                   for g, h in zip(grads, prevs)])

  for got in (changes(grads, prevs), jax.jit(changes)(grads, prevs)):
    np.testing.assert_array_equal(np.asarray(got), np.asarray(expected, np.float32))



@pytest.mark.parametrize("size", [8192, 1 << 20])
def test_a_large_leaf_is_reduced_in_one_pass_without_a_temporary(size):
  """The fold, the row reduction and the NaN flags compile to one pass over g and h.

  XLA:CPU hands a plain maximum reduction (e.g. one whose NaN flags were dropped)
  to a library call that first materializes its input, several times slower.
  """
  grad = jnp.zeros(size)

  def changes(g, h):
    return selection.leaf_changes([selection.leaf_row_changes(g, h)])

  def maxima_only(g, h):  # the NaN flags unused: XLA drops them, and the pass changes
    return selection.leaf_row_changes(g, h)[0]

  text = jax.jit(changes).lower(grad, grad).compile().as_text()
  assert large_intermediates(text, size // 2) == []
  text = jax.jit(maxima_only).lower(grad, grad).compile().as_text()
  assert large_intermediates(text, size // 2) != []  # the check can fail
