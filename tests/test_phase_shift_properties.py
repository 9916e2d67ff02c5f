"""Transformation laws of phase_shift: jit, vmap, inject_hyperparams, dtypes, state, oracle."""

import functools

import chex
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import phaseshift_jax as ps
from tests.numpy_phase_shift import numpy_phase_shift_step

MODES = [(s, g) for s in ("argmax", "last") for g in ("tensor", "element")]
HYPER = dict(threshold=0.05, shift_boundary=0.03, min_gradient_magnitude=0.01)


def make_tree(key, dtype=jnp.float32):
  k1, k2, k3 = jax.random.split(key, 3)
  return {"conv": {"kernel": jax.random.normal(k1, (3, 3, 2), dtype),
                   "bias": jnp.zeros((2,), dtype)},
          "dense": [jax.random.normal(k2, (4, 2), dtype), jax.random.normal(k3, (), dtype)]}


def grad_sequence(tree, steps, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), steps)
  return [jax.tree.map(lambda x, k=k: jax.random.normal(k, x.shape, x.dtype), tree)
          for k in keys]


def run(tx, params, grads_seq, update=None):
  state = tx.init(params)
  update = update or tx.update
  outputs = []
  for grads in grads_seq:
    updates, state = update(grads, state, params)
    params = jax.tree.map(lambda p, u: p + u, params, updates)
    outputs.append(updates)
  return outputs, state, params


@pytest.mark.parametrize("selection,granularity", MODES)
def test_jit_equals_eager(selection, granularity):
  params = make_tree(jax.random.PRNGKey(0))
  grads = grad_sequence(params, 5)
  tx = ps.phase_shift(0.1, selection=selection, granularity=granularity, **HYPER)
  eager, eager_state, _ = run(tx, params, grads)
  jitted, jit_state, _ = run(tx, params, grads, update=jax.jit(tx.update))
  # Under jit XLA may fuse -lr * g + kick into one multiply-add, which skips the
  # rounding of -lr * g: at most one ulp of the larger term, on kicked elements only.
  kick = min(HYPER["threshold"], HYPER["shift_boundary"])
  for g, e, j in zip(grads, eager, jitted):
    for g, e, j in zip(jax.tree.leaves(g), jax.tree.leaves(e), jax.tree.leaves(j)):
      g, e, j = np.asarray(g), np.asarray(e), np.asarray(j)
      term = np.maximum(np.abs(0.1 * g), kick).astype(g.dtype)
      assert np.all(np.abs(e - j) <= np.spacing(term)), (e, j)
      unkicked = np.abs(e + 0.1 * g) < kick / 2
      np.testing.assert_array_equal(e[unkicked], j[unkicked])
  chex.assert_trees_all_equal(eager_state, jit_state)


def test_state_structure_shapes_and_dtypes_are_stable():
  params = make_tree(jax.random.PRNGKey(1))
  tx = ps.phase_shift(0.1, **HYPER)
  state0 = tx.init(params)
  _, state, _ = run(tx, params, grad_sequence(params, 3), update=jax.jit(tx.update))
  chex.assert_trees_all_equal_structs(state0, state)
  chex.assert_trees_all_equal_shapes_and_dtypes(state0, state)
  assert state.count.dtype == jnp.int32 and state.count.shape == ()
  assert state.shifted_leaf.dtype == jnp.int32 and state.shifted_element.dtype == jnp.int32
  chex.assert_trees_all_equal_shapes_and_dtypes(state.prev_grads, params)


@pytest.mark.parametrize("selection,granularity", MODES)
def test_inject_hyperparams_equals_plain(selection, granularity):
  params = make_tree(jax.random.PRNGKey(2))
  grads = grad_sequence(params, 4)
  plain = ps.phase_shift(0.1, selection=selection, granularity=granularity, **HYPER)
  injected = jax.tree_util.Partial  # placeholder to keep linters calm
  injected = __import__("optax").inject_hyperparams(ps.phase_shift)(
      learning_rate=0.1, selection=selection, granularity=granularity, **HYPER)
  expected, _, _ = run(plain, params, grads, update=jax.jit(plain.update))
  got, state, _ = run(injected, params, grads, update=jax.jit(injected.update))
  chex.assert_trees_all_close(expected, got, rtol=0, atol=1e-7)
  assert int(ps.find_phase_shift_state(state).count) == 4


def test_inject_hyperparams_schedules_threshold_and_learning_rate():
  import optax
  params = {"w": jnp.zeros(2)}
  grads = [{"w": jnp.array([1.0, -2.0]) * (i + 1)} for i in range(3)]
  tx = optax.inject_hyperparams(ps.phase_shift)(
      learning_rate=optax.linear_schedule(0.1, 0.0, 2), threshold=lambda c: 0.01 * (c + 1),
      shift_boundary=1.0, min_gradient_magnitude=0.0)
  updates, state, _ = run(tx, params, grads)
  # step t (0-based): lr = 0.1 - 0.05 t, threshold = 0.01 (t + 1), always picked (change grows)
  for t, (u, g) in enumerate(zip(updates, grads)):
    expected = -(0.1 - 0.05 * t) * g["w"] + jnp.sign(g["w"]) * 0.01 * (t + 1)
    np.testing.assert_allclose(u["w"], expected, atol=1e-7)
  # the schedule's learning rate is also accepted directly (optax ScalarOrSchedule)
  direct, _, _ = run(ps.phase_shift(optax.linear_schedule(0.1, 0.0, 2), 0.01, 1.0, 0.0),
                     params, grads[:1])
  np.testing.assert_allclose(direct[0]["w"], -0.1 * grads[0]["w"] + 0.01 * jnp.sign(grads[0]["w"]), atol=1e-7)


def test_vmap_over_learning_rates_equals_separate_runs():
  params = make_tree(jax.random.PRNGKey(3))
  grads = grad_sequence(params, 4)
  lrs = jnp.array([0.01, 0.1, 0.5, 1.0])

  def trajectory(lr):
    tx = ps.phase_shift(lr, **HYPER)
    state = tx.init(params)
    p = params
    for g in grads:
      u, state = tx.update(g, state)
      p = jax.tree.map(jnp.add, p, u)
    return p, state

  batched_params, batched_state = jax.jit(jax.vmap(trajectory))(lrs)
  for i, lr in enumerate(lrs):
    tx = ps.phase_shift(float(lr), **HYPER)
    _, state, p = run(tx, params, grads, update=jax.jit(tx.update))
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[i], batched_params), p, atol=1e-6)
    assert int(batched_state.shifted_leaf[i]) == int(state.shifted_leaf)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16, jnp.float64])
def test_updates_and_state_keep_the_params_dtype(dtype):
  with jax.enable_x64(dtype == jnp.float64):
    params = make_tree(jax.random.PRNGKey(4), dtype)
    grads = grad_sequence(params, 3)
    for tx in (ps.phase_shift(0.1, **HYPER),
               ps.with_phase_shift(__import__("optax").adam(1e-3), **HYPER)):
      updates, state, new_params = run(tx, params, grads, update=jax.jit(tx.update))
      chex.assert_trees_all_equal_dtypes(updates[-1], params)
      chex.assert_trees_all_equal_dtypes(new_params, params)
      chex.assert_trees_all_equal_dtypes(ps.find_phase_shift_state(state).prev_grads, params)


def test_float64_matches_numpy_oracle_exactly_in_selection():
  with jax.enable_x64(True):
    params = make_tree(jax.random.PRNGKey(5), jnp.float64)
    grads = grad_sequence(params, 25)
    for selection, granularity in MODES:
      tx = ps.phase_shift(0.1, selection=selection, granularity=granularity, **HYPER)
      state = tx.init(params)
      update = jax.jit(tx.update)  # eager steps agree too (test_jit_equals_eager), only slower
      p_jax = params
      p_np = [np.asarray(x) for x in jax.tree.leaves(params)]
      prev = [np.zeros_like(x) for x in p_np]
      for g in grads:
        u, state = update(g, state)
        p_jax = jax.tree.map(jnp.add, p_jax, u)
        p_np, prev, shifted = numpy_phase_shift_step(
            p_np, [np.asarray(x) for x in jax.tree.leaves(g)], prev, lr=0.1,
            selection=selection, granularity=granularity, **HYPER)
        assert int(state.shifted_leaf) == shifted
      for a, b in zip(jax.tree.leaves(p_jax), p_np):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


# --- hypothesis: random pytrees and gradient sequences against the NumPy oracle ------------

SHAPES = [(), (3,), (2, 2), (1, 3)]
VALUES = st.sampled_from([-1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0, float("nan")])


@st.composite
def problems(draw):
  shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=4))
  steps = draw(st.integers(20, 24))
  nan_allowed = draw(st.booleans())
  values = VALUES if nan_allowed else VALUES.filter(lambda v: not np.isnan(v))

  def array(shape):
    n = int(np.prod(shape)) if shape else 1
    return np.asarray(draw(st.lists(values, min_size=n, max_size=n)),
                      np.float32).reshape(shape)

  grads = [[array(s) for s in shapes] for _ in range(steps)]
  params = [array(s) * 0 + np.float32(0.5) for s in shapes]
  hyper = dict(lr=draw(st.sampled_from([0.1, 0.5])),
               threshold=draw(st.sampled_from([0.25, -0.5, 2.0])),
               shift_boundary=draw(st.sampled_from([0.0, 0.5, 1.0])),
               min_gradient_magnitude=draw(st.sampled_from([0.0, 0.25, 1.0])))
  return shapes, params, grads, hyper


@functools.lru_cache(maxsize=None)
def jitted_update(selection, granularity):
  def update(grads, state, lr, threshold, shift_boundary, mgm):
    tx = ps.phase_shift(lr, threshold, shift_boundary, mgm, selection=selection,
                        granularity=granularity)
    return tx.update(grads, state)
  return jax.jit(update)


@hypothesis.settings(max_examples=25, deadline=None,
                     suppress_health_check=[hypothesis.HealthCheck.too_slow,
                                            hypothesis.HealthCheck.data_too_large])
@hypothesis.given(problem=problems(), mode=st.sampled_from(MODES))
def test_matches_numpy_oracle_on_random_trees(problem, mode):
  shapes, params, grads_seq, hyper = problem
  selection, granularity = mode
  # a nested container: {"a": [leaf0, (leaf1, ...)], "b": leaf_last} flattened in leaf order
  def nest(leaves):
    return {"a": [leaves[0], tuple(leaves[1:-1])], "b": leaves[-1]} if len(leaves) > 1 else [leaves[0]]
  tx = ps.phase_shift(hyper["lr"], hyper["threshold"], hyper["shift_boundary"],
                      hyper["min_gradient_magnitude"])
  state = tx.init(nest([jnp.asarray(p) for p in params]))
  update = jitted_update(selection, granularity)
  p_jax = nest([jnp.asarray(p) for p in params])
  p_np, prev = list(params), [np.zeros_like(p) for p in params]
  for grads in grads_seq:
    u, state = update(nest([jnp.asarray(g) for g in grads]), state, hyper["lr"],
                      hyper["threshold"], hyper["shift_boundary"], hyper["min_gradient_magnitude"])
    p_jax = jax.tree.map(jnp.add, p_jax, u)
    p_np, prev, shifted = numpy_phase_shift_step(
        p_np, grads, prev, selection=selection, granularity=granularity, **hyper)
    assert int(state.shifted_leaf) == shifted
    for a, b in zip(jax.tree.leaves(p_jax), p_np):
      np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("selection,granularity", MODES)
def test_grouped_small_leaves_and_large_leaves_match_the_oracle(selection, granularity):
  """Same-shape small leaves (reduced together) and leaves of >= 4096 elements, with ties and NaN."""
  rng = np.random.default_rng(0)
  shapes = [(3, 4), (3, 4), (5000,), (3, 4), (4100,), (3, 4)]
  params = [rng.standard_normal(s).astype(np.float32) for s in shapes]
  seq = []
  for t in range(12):
    scales = rng.permutation(len(shapes)) + 1.0  # a different leaf has the largest change each step
    grads = [np.round(rng.standard_normal(s) * 4 * c).astype(np.float32) / 4
             for s, c in zip(shapes, scales)]
    if t % 3 == 0:
      grads[-1] *= 20  # the last (grouped) leaf wins: "last" mode kicks it
    if t % 4 == 1:
      grads[1] = grads[0].copy()  # a tie between two grouped leaves
    if t % 4 == 2:
      grads[2][17] = np.nan  # NaN in a large leaf
    if t % 4 == 3:
      grads[3][1, 2] = np.nan  # NaN in a grouped small leaf
    seq.append(grads)
  hyper = dict(lr=0.1, threshold=0.25, shift_boundary=0.5, min_gradient_magnitude=0.0)
  tx = ps.phase_shift(hyper["lr"], hyper["threshold"], hyper["shift_boundary"],
                      hyper["min_gradient_magnitude"], selection=selection, granularity=granularity)
  state = tx.init([jnp.asarray(p) for p in params])
  update = jax.jit(tx.update)
  p_jax, p_np = [jnp.asarray(p) for p in params], list(params)
  prev = [np.zeros_like(p) for p in params]
  kicked = set()
  for grads in seq:
    u, state = update([jnp.asarray(g) for g in grads], state)
    p_jax = [a + b for a, b in zip(p_jax, u)]
    p_np, prev, shifted = numpy_phase_shift_step(
        p_np, grads, prev, selection=selection, granularity=granularity, **hyper)
    assert int(state.shifted_leaf) == shifted
    kicked.add(shifted)
    for a, b in zip(p_jax, p_np):
      np.testing.assert_allclose(np.asarray(a), b, rtol=0, atol=1e-5)
  assert kicked != {-1}
