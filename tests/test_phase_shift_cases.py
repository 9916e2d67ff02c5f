"""Hand-computed multi-step cases for phase_shift (both selections, both granularities).

Every expected number below was worked out by hand from the spec; the comments
show the arithmetic.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import phaseshift_jax as ps

LR, THRESHOLD, BOUNDARY = 0.1, 0.05, 0.03  # the kick is sign(g) * min(0.05, 0.03) = +-0.03


def run(selection, granularity, grads_per_step, params, mgm=0.0):
  """Runs the steps; returns (per-step updates, per-step shifted leaf, element, change)."""
  tx = ps.phase_shift(LR, THRESHOLD, BOUNDARY, mgm, selection=selection,
                      granularity=granularity)
  state = tx.init(params)
  update = jax.jit(tx.update)
  out = []
  for grads in grads_per_step:
    grads = [jnp.asarray(g, jnp.float32) for g in grads]
    updates, state = update(grads, state)
    out.append((jax.tree.map(np.asarray, updates), int(state.shifted_leaf),
                int(state.shifted_element), float(state.shift_change)))
  return out, state


PARAMS = [jnp.array([1.0, 2.0]), jnp.array([0.5])]
# Step 1 (history zero): changes a=0.2, b=0.3.  Step 2: a=|[0.5,-0.2]-[0.1,-0.2]|max=0.4,
# b=|0.35-0.3|=0.05.  Step 3: a=|[0.5,0.1]-[0.5,-0.2]|=0.3, b=|0.05-0.35|=0.3 (a tie).
STEPS = [
    [[0.1, -0.2], [0.3]],
    [[0.5, -0.2], [0.35]],
    [[0.5, 0.1], [0.05]],
]


def test_argmax_tensor_three_steps():
  out, _ = run("argmax", "tensor", STEPS, PARAMS)
  # step 1: b wins (0.3 > 0.2): b = -0.1*0.3 + 0.03 = 0.0; a = -0.1*g
  np.testing.assert_allclose(out[0][0][0], [-0.01, 0.02], atol=1e-7)
  np.testing.assert_allclose(out[0][0][1], [0.0], atol=1e-7)
  assert out[0][1:] == (1, -1, pytest.approx(0.3))
  # step 2: a wins (0.4 > 0.05): a = -0.1*[0.5,-0.2] + 0.03*[+1,-1] = [-0.02, -0.01]
  np.testing.assert_allclose(out[1][0][0], [-0.02, -0.01], atol=1e-7)
  np.testing.assert_allclose(out[1][0][1], [-0.035], atol=1e-7)
  assert out[1][1:] == (0, -1, pytest.approx(0.4))
  # step 3: a tie at 0.3: the first leaf wins: a = [-0.05 + 0.03, -0.01 + 0.03]
  np.testing.assert_allclose(out[2][0][0], [-0.02, 0.02], atol=1e-7)
  np.testing.assert_allclose(out[2][0][1], [-0.005], atol=1e-7)
  assert out[2][1] == 0 and out[2][3] == pytest.approx(0.3)


def test_last_tensor_three_steps():
  out, _ = run("last", "tensor", STEPS, PARAMS)
  # step 1: the last leaf b sets a new maximum (0.3 > 0.2): b kicked, as in argmax.
  np.testing.assert_allclose(out[0][0][1], [0.0], atol=1e-7)
  assert out[0][1] == 1
  # step 2: b (0.05) does not beat a (0.4): the original's candidate is reset, nothing kicked.
  np.testing.assert_allclose(out[1][0][0], [-0.05, 0.02], atol=1e-7)
  np.testing.assert_allclose(out[1][0][1], [-0.035], atol=1e-7)
  assert out[1][1:] == (-1, -1, 0.0)
  # step 3: the tie 0.3 == 0.3 is not strictly larger: nothing kicked.
  np.testing.assert_allclose(out[2][0][0], [-0.05, -0.01], atol=1e-7)
  assert out[2][1] == -1


def test_element_granularity_kicks_one_element():
  params = [jnp.zeros(3), jnp.zeros((2, 2))]
  steps = [
      # changes: a = 0.4 (element 1), b = 0.9 (flat element 2): b[1, 0] kicked, sign(-0.9) = -1
      [[0.1, 0.4, -0.2], [[0.0, 0.2], [-0.9, 0.3]]],
      # changes: a = |[0.1, 0.4, 1.0] - [0.1, 0.4, -0.2]| = 1.2 at element 2, b = 0.9 at flat 2
      [[0.1, 0.4, 1.0], [[0.0, 0.2], [0.0, 0.3]]],
  ]
  out, _ = run("argmax", "element", steps, params)
  np.testing.assert_allclose(out[0][0][0], [-0.01, -0.04, 0.02], atol=1e-7)
  np.testing.assert_allclose(out[0][0][1], [[0.0, -0.02], [0.09 - 0.03, -0.03]], atol=1e-7)
  assert out[0][1:3] == (1, 2)
  np.testing.assert_allclose(out[1][0][0], [-0.01, -0.04, -0.1 + 0.03], atol=1e-7)
  np.testing.assert_allclose(out[1][0][1], [[0.0, -0.02], [0.0, -0.03]], atol=1e-7)
  assert out[1][1:3] == (0, 2) and out[1][3] == pytest.approx(1.2)
  # "last": step 1 picks b (the last leaf and the largest); step 2 a beats b: nothing.
  out, _ = run("last", "element", steps, params)
  assert [o[1:3] for o in out] == [(1, 2), (-1, -1)]
  np.testing.assert_allclose(out[1][0][0], [-0.01, -0.04, -0.1], atol=1e-7)


def test_change_equal_to_min_gradient_magnitude_is_not_picked():
  params = [jnp.zeros(1), jnp.zeros(1)]
  steps = [[[0.25], [0.5]]]  # exact binary fractions: the change 0.5 equals mgm exactly
  for selection in ("argmax", "last"):
    out, _ = run(selection, "tensor", steps, params, mgm=0.5)
    assert out[0][1] == -1
    np.testing.assert_allclose(out[0][0][1], [-0.05], atol=1e-7)
    out, _ = run(selection, "tensor", steps, params, mgm=0.4999)
    assert out[0][1] == 1


def test_nan_leaf_is_passed_over_and_does_not_crash():
  params = [jnp.zeros(2), jnp.zeros(1), jnp.zeros(1)]
  steps = [[[np.nan, 5.0], [0.2], [0.3]]]  # leaf 0 has the largest finite element but a NaN
  out, state = run("argmax", "tensor", steps, params)
  assert out[0][1] == 2  # 0.3 > 0.2; the NaN leaf never wins
  assert np.isnan(out[0][0][0][0]) and out[0][0][0][1] == pytest.approx(-0.5)
  out, _ = run("last", "tensor", steps, params)
  assert out[0][1] == 2  # NaN does not block the last leaf either
  # NaN in the last leaf: "last" picks nothing, "argmax" the best finite leaf.
  steps = [[[0.1, 5.0], [0.2], [np.nan]]]
  assert run("last", "tensor", steps, params)[0][0][1] == -1
  assert run("argmax", "tensor", steps, params)[0][0][1] == 0
  assert run("argmax", "element", steps, params)[0][0][1:3] == (0, 1)


def test_zero_gradient_elements_get_no_kick_and_all_zero_picks_nothing():
  params = [jnp.zeros(3)]
  out, _ = run("argmax", "tensor", [[[0.0, 2.0, -1.0]]], params)
  np.testing.assert_allclose(out[0][0][0], [0.0, -0.2 + 0.03, 0.1 - 0.03], atol=1e-7)
  out, _ = run("argmax", "tensor", [[[0.0, 0.0, 0.0]]], params)  # change 0 is not > 0
  assert out[0][1] == -1
  np.testing.assert_allclose(out[0][0][0], [0.0, 0.0, 0.0])


def test_history_is_the_previous_gradient_and_count_advances():
  out, state = run("argmax", "tensor", STEPS, PARAMS)
  np.testing.assert_allclose(state.prev_grads[0], STEPS[-1][0])
  np.testing.assert_allclose(state.prev_grads[1], STEPS[-1][1])
  assert int(state.count) == 3 and state.count.dtype == jnp.int32
