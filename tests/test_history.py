"""The gradient history: large leaves keep their own array, small leaves of one shape share one."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phaseshift_jax as ps
from phaseshift_jax import history

HYPER = dict(threshold=0.05, shift_boundary=0.03, min_gradient_magnitude=0.0)


def params():
  return {"big": jnp.zeros((64, 64)), "b1": jnp.zeros(8), "b2": jnp.zeros(8),
          "k": jnp.zeros((3, 3), jnp.bfloat16), "none": None}


def grads(seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params())


def test_small_leaves_of_one_shape_and_dtype_share_one_array():
  state = ps.phase_shift(0.1, **HYPER).init(params())
  h = state.history
  assert [x.shape for x in h.own] == [(64, 64)]  # 4,096 elements: not small
  assert sorted((x.shape, str(x.dtype)) for x in h.stacks) == [
      ((1, 3, 3), "bfloat16"), ((2, 8), "float32")]
  # the state's arrays: count, 1 own, 2 stacks, shifted_leaf, shifted_element, shift_change
  assert len(jax.tree.leaves(state)) == 7
  chex.assert_trees_all_equal_shapes_and_dtypes(state.prev_grads, params())


def test_many_small_leaves_add_one_array_to_the_step():
  many = {f"bias{i:03d}": jnp.zeros(16) for i in range(300)}
  state = ps.phase_shift(0.1, **HYPER).init(many)
  assert len(jax.tree.leaves(state.history)) == 1
  assert state.history.stacks[0].shape == (300, 16)


@pytest.mark.parametrize("jit", [False, True])
def test_history_holds_the_last_gradients(jit):
  tx = ps.phase_shift(0.1, **HYPER)
  update = jax.jit(tx.update) if jit else tx.update
  state = tx.init(params())
  for seed in range(3):
    g = grads(seed)
    _, state = update(g, state)
    chex.assert_trees_all_equal(state.prev_grads, g)


def test_none_gradient_keeps_its_row_of_the_stack():
  tx = ps.phase_shift(0.1, **HYPER)
  g0, g1 = grads(0), grads(1)
  g1["b1"] = None
  _, state = tx.update(g0, tx.init(params()))
  _, state = jax.jit(tx.update)(g1, state)
  np.testing.assert_array_equal(state.prev_grads["b1"], g0["b1"])
  np.testing.assert_array_equal(state.prev_grads["b2"], g1["b2"])


def test_gradient_of_another_shape_is_an_error_naming_both_shapes():
  tx = ps.phase_shift(0.1, **HYPER)
  g = grads(0)
  g["b2"] = jnp.zeros(9)
  with pytest.raises(ValueError, match=r"shape \(9,\).*initialised for shape \(8,\)"):
    tx.update(g, tx.init(params()))


def test_state_paths_name_the_history_arrays():
  state = ps.phase_shift(0.1, **HYPER).init(params())
  paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(state)[0]]
  assert ".history.own[0]" in "".join(paths) and ".history.stacks[1]" in "".join(paths)


def test_vmapped_state_keeps_the_layout():
  tx = ps.phase_shift(0.1, **HYPER)
  p = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
  states = jax.vmap(lambda _: tx.init(p))(jnp.arange(2))
  g = jax.tree.map(lambda x: jnp.stack([x + 1, x - 2]), p)
  _, states = jax.vmap(tx.update)(g, states)
  assert states.history.stacks[0].shape[0] == 2
  chex.assert_trees_all_equal(states.prev_grads, g)


def test_gradient_history_is_exported_for_annotations():
  assert ps.GradientHistory is history.GradientHistory
  assert isinstance(optax.tree_utils.tree_get(
      ps.phase_shift(0.1, **HYPER).init(params()), "history"), history.GradientHistory)


def test_flax_serialization_round_trip():
  serialization = pytest.importorskip("flax.serialization")
  tx = ps.phase_shift(0.1, **HYPER)
  _, state = tx.update(grads(0), tx.init(params()))
  restored = serialization.from_bytes(tx.init(params()), serialization.to_bytes(state))
  chex.assert_trees_all_equal(restored, state)
  assert restored.history.layout == state.history.layout
