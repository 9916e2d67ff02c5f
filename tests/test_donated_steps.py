"""The two donated steps: history rewritten in place (default) or the gradients' buffers taken over.

``phase_shift(..., grads_donated=True)`` is for a step that donates the gradients
and takes them before the state; the default is for a step that donates params
and state. Both must give the same numbers, and each must move the large
leaves' history without a copy: checked on the compiled program and on the
buffers the step returns.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phaseshift_jax as ps
from tests.compiled import copies_of_shapes
from tests.compiled import large_intermediates

pytestmark = pytest.mark.filterwarnings("ignore:Some donated buffers were not usable")

HYPER = dict(threshold=0.05, shift_boundary=0.03, min_gradient_magnitude=0.0)
BIG = (64, 128)  # 8,192 elements: a history array of its own


def params():
  return {"big": jnp.zeros(BIG), "other": jnp.zeros((128, 64)), "b1": jnp.zeros(8),
          "b2": jnp.zeros(8), "k": jnp.zeros((3, 3), jnp.bfloat16)}


def grads(seed):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda p: jnp.asarray(rng.standard_normal(p.shape), p.dtype), params())


def jit_step(tx, grads_donated):
  """``step(params, grads, opt_state)``, jitted: the recipe for each setting of the flag.

  Params and state are donated either way; with ``grads_donated`` the gradients
  too (they come before the state, as the docstring asks).
  """

  def step(params, grads, opt_state):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(step, donate_argnums=(0, 1, 2) if grads_donated else (0, 2))


MODES = [("argmax", "tensor"), ("last", "tensor"), ("argmax", "element")]


@pytest.mark.parametrize("selection,granularity", MODES)
def test_grads_donated_gives_the_same_numbers(selection, granularity):
  results = {}
  for grads_donated in (False, True):
    tx = ps.phase_shift(0.1, **HYPER, selection=selection, granularity=granularity,
                        grads_donated=grads_donated)
    step = jit_step(tx, grads_donated)
    p = jax.tree.map(jnp.copy, params())
    s = tx.init(p)
    kicked = []
    for seed in range(4):
      p, s = step(p, grads(seed), s)
      kicked.append(int(s.shifted_leaf))
    results[grads_donated] = (p, s, kicked)
  chex.assert_trees_all_equal(results[True][0], results[False][0])
  chex.assert_trees_all_equal(results[True][1], results[False][1])
  assert results[True][2] == results[False][2]
  assert max(results[True][2]) >= 0  # the steps kicked something
  chex.assert_trees_all_equal(results[True][1].prev_grads, grads(3))


@pytest.mark.parametrize("granularity", ["tensor", "element"])
@pytest.mark.parametrize("grads_donated", [False, True])
def test_each_recipe_moves_the_large_history_without_a_copy(grads_donated, granularity):
  tx = ps.phase_shift(0.1, **HYPER, granularity=granularity, grads_donated=grads_donated)
  step = jit_step(tx, grads_donated)
  p = jax.tree.map(jnp.copy, params())
  s = tx.init(p)
  g = grads(0)
  p, s = step(p, g, s)  # a first step, so the history is not the zeros of init
  g = grads(1)
  history_ptr = s.history.own[0].unsafe_buffer_pointer()
  grad_ptr = g["big"].unsafe_buffer_pointer()
  p, s = step(p, g, s)

  new_ptr = s.history.own[0].unsafe_buffer_pointer()
  if grads_donated:
    assert g["big"].is_deleted()
    assert new_ptr == grad_ptr, "the new history should be the gradient's buffer"
  else:
    assert not g["big"].is_deleted()
    assert new_ptr == history_ptr, "the new history should overwrite the old in place"
  np.testing.assert_array_equal(s.history.own[0], np.asarray(grads(1)["big"]))


@pytest.mark.parametrize("granularity", ["tensor", "element"])
@pytest.mark.parametrize("grads_donated", [False, True])
def test_each_recipe_compiles_to_no_copy_of_a_large_leaf(grads_donated, granularity):
  tx = ps.phase_shift(0.1, **HYPER, granularity=granularity, grads_donated=grads_donated)
  p = params()
  text = jit_step(tx, grads_donated).lower(p, grads(0), tx.init(p)).compile().as_text()
  assert copies_of_shapes(text, {BIG, BIG[::-1]}) == []
  # nor any other temporary of half a large leaf (the fold's half) or more: each pass
  # over a large leaf reads its arrays and writes only outputs
  assert large_intermediates(text, np.prod(BIG) // 2) == []


def test_grads_donated_must_be_a_bool():
  with pytest.raises(TypeError, match="grads_donated must be a bool"):
    ps.phase_shift(0.1, **HYPER, grads_donated="yes")
