"""The phase-shift loss term and the diagnostics helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import phaseshift_jax as ps

SHAPE = dict(optimal_weight=0.5, A=2.0, f=0.25, phi=0.1, C=3.0, transition_slope=0.2)


def test_loss_matches_the_formula_on_both_branches():
  w = jnp.array([-1.0, 0.0, 0.49, 0.5, 2.0])
  below = 2.0 * np.sin(2 * np.pi * 0.25 * np.array([-1.0, 0.0, 0.49]) + 0.1)
  above = 3.0 + 0.2 * (np.array([0.5, 2.0]) - 0.5)
  expected = np.concatenate([below, above]).mean()
  np.testing.assert_allclose(ps.phase_shift_loss(w, **SHAPE), expected, rtol=1e-6)
  np.testing.assert_allclose(jax.jit(lambda x: ps.phase_shift_loss(x, **SHAPE))(w), expected,
                             rtol=1e-6)


def test_loss_gradient_is_that_of_each_branch():
  w = jnp.array([0.0, 1.0])
  grad = jax.grad(lambda x: ps.phase_shift_loss(x, **SHAPE))(w)
  # d/dw mean: (1/2) * [A 2 pi f cos(2 pi f w + phi), slope]
  expected = 0.5 * np.array([2.0 * 2 * np.pi * 0.25 * np.cos(0.1), 0.2])
  np.testing.assert_allclose(grad, expected, rtol=1e-6)


def test_tree_loss_is_the_weighted_sum_of_per_leaf_means():
  tree = {"a": jnp.array([0.0, 1.0]), "b": [jnp.array(2.0)], "c": None}
  per_leaf = ps.phase_shift_loss(tree["a"], **SHAPE) + ps.phase_shift_loss(tree["b"][0], **SHAPE)
  got = ps.tree_phase_shift_loss(tree, phase_shift_loss_weight=0.3, **SHAPE)
  np.testing.assert_allclose(got, 0.3 * per_leaf, rtol=1e-6)
  grads = jax.grad(lambda t: ps.tree_phase_shift_loss(t, phase_shift_loss_weight=0.3, **SHAPE))(tree)
  assert grads["a"].shape == (2,) and np.all(np.isfinite(grads["a"]))
  assert float(ps.tree_phase_shift_loss({}, **SHAPE)) == 0.0
  with pytest.raises(ValueError, match="no elements"):
    ps.phase_shift_loss(jnp.zeros((0,)), **SHAPE)


def test_shifted_parameter_names_a_linen_style_path():
  params = {"params": {"Conv_0": {"kernel": jnp.zeros((3, 3)), "bias": jnp.zeros(3)},
                       "Dense_0": {"kernel": jnp.zeros(2)}}}
  tx = optax.chain(optax.scale(1.0), ps.phase_shift(0.1, 0.05, 0.03, 0.0))
  state = tx.init(params)
  assert ps.shifted_parameter(state, params) is None  # nothing shifted yet
  grads = jax.tree.map(jnp.zeros_like, params)
  grads["params"]["Conv_0"]["kernel"] = jnp.full((3, 3), 2.0)
  _, state = tx.update(grads, state)
  assert ps.shifted_parameter(state, params) == "params/Conv_0/kernel"
  assert ps.shifted_parameter(state) == "params/Conv_0/kernel"
  assert ps.leaf_paths(params)[int(ps.find_phase_shift_state(state).shifted_leaf)] == (
      "params/Conv_0/kernel")
  with pytest.raises(ValueError, match="leaves"):
    ps.shifted_parameter(state, {"x": jnp.zeros(1)})


def test_shifted_parameter_with_nnx_optimizer():
  class Net(nnx.Module):
    def __init__(self, rngs):
      self.conv = nnx.Conv(3, 4, (3, 3), rngs=rngs)
      self.head = nnx.Linear(4, 2, rngs=rngs)

    def __call__(self, x):
      return self.head(self.conv(x).mean((1, 2)))

  model = Net(nnx.Rngs(0))
  optimizer = nnx.Optimizer(model, ps.phase_shift(0.01, 0.01, 0.01, 0.0), wrt=nnx.Param)
  x = jnp.ones((2, 5, 5, 3))

  @nnx.jit
  def train_step(model, optimizer):
    grads = nnx.grad(lambda m: (m(x) ** 2).mean())(model)
    optimizer.update(model, grads)

  train_step(model, optimizer)
  name = ps.shifted_parameter(optimizer.opt_state, nnx.state(model, nnx.Param))
  assert name in ps.leaf_paths(nnx.state(model, nnx.Param))
  assert name == ps.shifted_parameter(optimizer.opt_state)
  assert not name.endswith("/value")


def test_find_phase_shift_state_errors_and_batched_state():
  with pytest.raises(ValueError, match="found 0"):
    ps.find_phase_shift_state(optax.adam(0.1).init({"w": jnp.ones(2)}))
  tx = ps.phase_shift(0.1, 0.05, 0.03, 0.0)
  batched = jax.vmap(lambda _: tx.init({"w": jnp.ones(2)}))(jnp.arange(3))
  with pytest.raises(ValueError, match="unbatched"):
    ps.shifted_parameter(batched)
