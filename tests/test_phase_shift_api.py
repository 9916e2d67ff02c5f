"""phase_shift / with_phase_shift in the optax ecosystem, and their errors."""

import os
import subprocess
import sys
import textwrap
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phaseshift_jax as ps

HYPER = dict(threshold=0.05, shift_boundary=0.03, min_gradient_magnitude=0.0)


class Pair(NamedTuple):
  first: jax.Array
  second: jax.Array


def tree():
  return {"layers": [Pair(jnp.ones((2, 3)), jnp.zeros(3)), Pair(jnp.ones((3,)), jnp.ones(()))],
          "head": {"w": jnp.full((2,), 0.5)}}


def grads_like(t, scale):
  leaves, treedef = jax.tree.flatten(t)
  return treedef.unflatten([jnp.full(l.shape, scale * (i + 1), l.dtype) * jnp.where(
      jnp.arange(l.size).reshape(l.shape) % 2 == 0, 1.0, -1.0) for i, l in enumerate(leaves)])


def steps(tx, params, grads_seq):
  state = tx.init(params)
  out = []
  for g in grads_seq:
    u, state = jax.jit(tx.update)(g, state, params)
    params = optax.apply_updates(params, u)
    out.append(u)
  return out, state, params


# --- construction errors --------------------------------------------------------------------

@pytest.mark.parametrize("name", ["learning_rate", "shift_boundary", "min_gradient_magnitude"])
def test_negative_hyperparameter_is_rejected_by_name(name):
  kwargs = dict(learning_rate=0.1, **HYPER)
  kwargs[name] = -1.0
  with pytest.raises(ValueError, match=name):
    ps.phase_shift(**kwargs)
  if name != "learning_rate":
    kwargs.pop("learning_rate")
    with pytest.raises(ValueError, match=name):
      ps.with_phase_shift(optax.sgd(0.1), **kwargs)


def test_nan_and_non_numeric_hyperparameters_are_rejected():
  with pytest.raises(ValueError, match="threshold"):
    ps.phase_shift(0.1, float("nan"), 0.1, 0.0)
  with pytest.raises(TypeError, match="learning_rate"):
    ps.phase_shift("fast", 0.1, 0.1, 0.0)


@pytest.mark.parametrize("name,value", [("selection", "first"), ("granularity", "row")])
def test_unknown_mode_is_rejected_by_name(name, value):
  with pytest.raises(ValueError, match=f"{name} must be one of"):
    ps.phase_shift(0.1, **HYPER, **{name: value})
  with pytest.raises(ValueError, match=name):
    ps.with_phase_shift(optax.adam(0.1), **HYPER, **{name: value})


def test_gradient_structure_mismatch_says_so():
  tx = ps.phase_shift(0.1, **HYPER)
  state = tx.init({"a": jnp.ones(2), "b": jnp.ones(2)})
  with pytest.raises(ValueError, match="structure differs"):
    tx.update({"a": jnp.ones(2)}, state)


def test_nan_and_inf_gradients_never_crash():
  tx = ps.phase_shift(0.1, **HYPER)
  params = {"a": jnp.ones(2), "b": jnp.ones(2)}
  state = tx.init(params)
  u, state = jax.jit(tx.update)({"a": jnp.array([jnp.inf, 1.0]), "b": jnp.array([jnp.nan, 0.0])}, state)
  assert int(state.shifted_leaf) == 0 and float(state.shift_change) == np.inf
  u, state = jax.jit(tx.update)({"a": jnp.array([jnp.inf, 1.0]), "b": jnp.ones(2)}, state)
  # a: inf - inf = NaN; b: 1 - NaN (step 1's history) = NaN: both passed over, nothing kicked
  assert int(state.shifted_leaf) == -1
  assert np.all(np.isfinite(np.asarray(u["b"])))
  u, state = jax.jit(tx.update)({"a": jnp.array([1.0, 1.0]), "b": jnp.array([1.0, 3.0])}, state)
  # a: |1 - inf| = inf wins over b's 2
  assert int(state.shifted_leaf) == 0 and float(state.shift_change) == np.inf


# --- ecosystem --------------------------------------------------------------------------------

def test_phase_shift_equals_with_phase_shift_around_sgd():
  params = tree()
  grads = [grads_like(params, s) for s in (0.1, 0.7, 0.2, 0.9)]
  for selection in ("argmax", "last"):
    for granularity in ("tensor", "element"):
      modes = dict(selection=selection, granularity=granularity)
      a, sa, _ = steps(ps.phase_shift(0.1, **HYPER, **modes), params, grads)
      b, sb, _ = steps(ps.with_phase_shift(optax.sgd(0.1), **HYPER, **modes), params, grads)
      chex.assert_trees_all_equal(a, b)
      chex.assert_trees_all_equal(sa, sb.phase_shift)


def test_with_phase_shift_adam_is_adam_plus_the_kick_from_raw_gradients():
  params = tree()
  grads = [grads_like(params, s) for s in (0.1, 0.7, 0.2)]
  adam_updates, _, _ = steps(optax.adam(1e-2), params, grads)
  ps_updates, state, _ = steps(ps.with_phase_shift(optax.adam(1e-2), **HYPER), params, grads)
  # Adam's updates do not depend on the params, so the difference is exactly the kick.
  kick = jax.tree.map(lambda a, b: b - a, adam_updates[-1], ps_updates[-1])
  leaves = jax.tree.leaves(kick)
  k = int(state.phase_shift.shifted_leaf)
  assert k >= 0
  for i, leaf in enumerate(leaves):
    if i == k:
      np.testing.assert_allclose(np.abs(leaf), 0.03, atol=1e-6)
    else:
      np.testing.assert_array_equal(leaf, 0)


def test_chain_multisteps_and_nested_namedtuples():
  params = tree()
  grads = [grads_like(params, s) for s in (0.1, 0.7, 0.2, 0.9)]
  chained = optax.chain(optax.clip_by_global_norm(100.0), ps.phase_shift(0.1, **HYPER))
  a, _, _ = steps(chained, params, grads)
  b, _, _ = steps(ps.phase_shift(0.1, **HYPER), params, grads)
  chex.assert_trees_all_close(a, b)  # the clip is inactive at norm 100
  # MultiSteps(k=2): an update every second step, from the mean of the two gradients
  multi = optax.MultiSteps(ps.phase_shift(0.1, **HYPER), every_k_schedule=2)
  out, state, _ = steps(multi, params, grads)
  chex.assert_trees_all_equal(out[0], jax.tree.map(jnp.zeros_like, params))
  mean01 = jax.tree.map(lambda x, y: (x + y) / 2, grads[0], grads[1])
  expected, _, _ = steps(ps.phase_shift(0.1, **HYPER), params, [mean01])
  chex.assert_trees_all_close(out[1], expected[0], atol=1e-7)
  assert int(ps.find_phase_shift_state(state).count) == 2


def test_masked_leaves_are_left_alone_and_never_picked():
  params = {"frozen": jnp.zeros(3), "trained": jnp.zeros(2)}
  mask = {"frozen": False, "trained": True}
  tx = optax.masked(ps.phase_shift(0.1, **HYPER), mask)
  grads = {"frozen": jnp.full(3, 10.0), "trained": jnp.array([0.5, -0.5])}
  u, state = tx.update(grads, tx.init(params))
  np.testing.assert_array_equal(u["frozen"], grads["frozen"])  # masked: passed through as is
  np.testing.assert_allclose(u["trained"], [-0.05 + 0.03, 0.05 - 0.03], atol=1e-7)
  assert ps.shifted_parameter(state) == "trained"


def test_none_gradient_leaf_is_skipped_like_torch_grad_none():
  tx = ps.phase_shift(0.1, **HYPER)
  params = {"a": jnp.ones(2), "b": jnp.ones(2)}
  state = tx.init(params)
  u, state = tx.update({"a": None, "b": jnp.array([0.1, 0.2])}, state)
  assert u["a"] is None
  np.testing.assert_array_equal(state.prev_grads["a"], 0)  # history of a kept
  assert int(state.shifted_leaf) == 1


def test_empty_pytree():
  for tx in (ps.phase_shift(0.1, **HYPER), ps.with_phase_shift(optax.adam(0.1), **HYPER)):
    state = tx.init({})
    u, state = jax.jit(tx.update)({}, state)
    assert u == {}
    assert int(ps.find_phase_shift_state(state).shifted_leaf) == -1


def test_extra_args_are_passed_to_the_inner_optimizer():
  seen = {}

  def init(params):
    return optax.EmptyState()

  def update(updates, state, params=None, *, value):
    seen["value"] = value
    return updates, state

  inner = optax.GradientTransformationExtraArgs(init, update)
  tx = ps.with_phase_shift(inner, **HYPER)
  tx.update({"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), value=jnp.float32(3.0))
  assert float(seen["value"]) == 3.0


def test_sharded_params_match_unsharded_on_four_host_devices():
  """Params sharded over a 4-device mesh give the same updates as on one device."""
  code = textwrap.dedent("""
      import jax, jax.numpy as jnp, numpy as np
      from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
      import phaseshift_jax as ps
      assert len(jax.devices()) == 4
      params = {"w": jnp.arange(32.0).reshape(8, 4) / 10, "b": jnp.ones(8)}
      grads = [{"w": jnp.sin(params["w"] * (i + 1)), "b": jnp.cos(params["b"] * i)} for i in range(3)]
      mesh = Mesh(np.array(jax.devices()), ("data",))
      sharding = {"w": NamedSharding(mesh, P("data")), "b": NamedSharding(mesh, P("data"))}
      for granularity in ("tensor", "element"):
        tx = ps.phase_shift(0.1, 0.05, 0.03, 0.0, granularity=granularity)
        step = jax.jit(tx.update)
        s1, s2 = tx.init(params), tx.init(jax.device_put(params, sharding))
        for g in grads:
          u1, s1 = step(g, s1)
          u2, s2 = step(jax.device_put(g, sharding), s2)
          assert u2["w"].sharding.is_equivalent_to(sharding["w"], 2)
          for k in u1:
            np.testing.assert_array_equal(np.asarray(u1[k]), np.asarray(u2[k]))
          assert int(s1.shifted_leaf) == int(s2.shifted_leaf)
      print("sharded ok")
  """)
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                        timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "sharded ok" in proc.stdout


def test_state_round_trips_through_flax_serialization_without_registration():
  serialization = pytest.importorskip("flax.serialization",
                                      reason="flax is the examples extra")
  tx = ps.with_phase_shift(optax.adam(0.1), **HYPER)
  params = tree()
  _, state, _ = steps(tx, params, [grads_like(params, s) for s in (0.1, 0.7)])
  restored = serialization.from_bytes(tx.init(params), serialization.to_bytes(state))
  chex.assert_trees_all_equal(restored, state)
  chex.assert_trees_all_equal_structs(restored, state)


@pytest.mark.parametrize("granularity", ["tensor", "element"])
def test_derivatives_through_update_treat_the_kick_as_a_constant(granularity):
  """A meta-gradient through one step: PhaseShift's equals the inner rule's plus the kick's
  constant shift (its derivative is 0), and the new history's derivative is the identity in g
  (on every backend, the XLA:CPU history write included); also under jit and forward mode."""
  params = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([0.5, 1.0, 3.0])}
  loss = lambda p: sum(jnp.sum(x ** 2) for x in jax.tree.leaves(p))  # noqa: E731

  def meta(p, tx, with_history):
    state = tx.init(p)
    updates, state = tx.update(jax.grad(loss)(p), state, p)
    out = loss(optax.apply_updates(p, updates))
    if with_history:
      out += sum(jnp.sum(h) for h in jax.tree.leaves(ps.find_phase_shift_state(state).prev_grads))
    return out

  kick = 0.1
  for inner, tx in [(optax.sgd(0.1), ps.phase_shift(0.1, kick, kick, 0.0, granularity=granularity)),
                    (optax.adam(0.1), ps.with_phase_shift(optax.adam(0.1), kick, kick, 0.0,
                                                          granularity=granularity))]:
    # The kicked elements: "b" changed most; in element mode its last element only.
    updates, _ = tx.update(jax.grad(loss)(params), tx.init(params), params)
    inner_updates, _ = inner.update(jax.grad(loss)(params), inner.init(params), params)
    shift = jax.tree.map(lambda u, v: u - v, updates, inner_updates)
    assert float(jnp.max(jnp.abs(shift["b"]))) == pytest.approx(kick)

    def shifted_inner(p, inner=inner, shift=shift):
      updates, _ = inner.update(jax.grad(loss)(p), inner.init(p), p)
      return loss(optax.apply_updates(optax.apply_updates(p, updates), shift))

    expected = jax.grad(shifted_inner)(params)
    got = jax.jit(jax.grad(meta, argnums=0), static_argnums=(1, 2))(params, tx, False)
    chex.assert_trees_all_close(got, expected, rtol=1e-6)
    # sum(h) with h = g = 2p adds 2 to every derivative.
    with_history = jax.grad(meta)(params, tx, True)
    chex.assert_trees_all_close(with_history, jax.tree.map(lambda e: e + 2, expected), rtol=1e-6)
    _, tangent = jax.jvp(lambda p: meta(p, tx, True), (params,), (params,))
    expected_tangent = sum(jnp.vdot(d + 2, p) for d, p in zip(jax.tree.leaves(expected),
                                                              jax.tree.leaves(params)))
    np.testing.assert_allclose(tangent, expected_tangent, rtol=1e-6)


@pytest.mark.parametrize("leaf", [jnp.zeros(3, jnp.int32), jnp.zeros(2, bool)])
def test_integer_and_boolean_params_are_refused_at_init_naming_the_leaf(leaf):
  for tx in (ps.phase_shift(0.1, 0.01, 0.01, 0.0),
             ps.with_phase_shift(optax.sgd(0.1), 0.01, 0.01, 0.0)):
    with pytest.raises(TypeError, match=r"floating-point parameters \(params\['i'\]"):
      tx.init({"f": jnp.zeros(2), "i": leaf})
  # optax.masked leaves them out.
  tx = optax.masked(ps.phase_shift(0.1, 0.01, 0.01, 0.0), {"f": True, "i": False})
  state = tx.init({"f": jnp.zeros(2), "i": leaf})
  updates, _ = tx.update({"f": jnp.ones(2), "i": leaf}, state)
  np.testing.assert_allclose(updates["f"], -0.1 + 0.01)


def test_python_scalar_params_as_optax_takes_them():
  tx = ps.phase_shift(0.1, 0.01, 0.01, 0.0)
  state = tx.init({"x": 1.0, "y": [2.0, 3.0]})
  assert state.prev_grads["x"].dtype == jnp.float32
  updates, state = tx.update({"x": 0.5, "y": [1.0, -4.0]}, state)
  np.testing.assert_allclose(updates["y"][1], 0.4 - 0.01)  # "y"[1] changed most: kicked
  np.testing.assert_allclose(updates["x"], -0.05)
  assert ps.shifted_parameter(state) == "y/1"


def test_shifted_parameter_of_a_bare_array_is_the_empty_path():
  tx = ps.phase_shift(0.1, 0.01, 0.01, 0.0)
  _, state = tx.update(jnp.ones(2), tx.init(jnp.zeros(2)))
  assert ps.shifted_parameter(state) == ""
  _, state = tx.update(jnp.ones(2), state)  # no change: nothing kicked
  assert ps.shifted_parameter(state) is None


@pytest.mark.parametrize("changes", [jnp.ones(()), jnp.ones((1, 2))])
def test_select_leaf_wants_a_vector(changes):
  with pytest.raises(ValueError, match="changes must be a vector"):
    ps.select_leaf(changes, 0.0, "argmax")
