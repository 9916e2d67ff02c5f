"""Sharded ``init`` and ``update`` for every configuration of ``tests/test_common.py``.

Run by ``tests/test_common.py::test_sharded`` in one subprocess, as
``XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m tests.sharded_checks``: the 8 host
devices must be configured before JAX starts, and the rest of the suite keeps its one device.

For each configuration and each mode (a (2, 4) mesh ``("x", "y")`` with ``AxisType.Auto`` and with
``AxisType.Explicit``), on params with leaves of 64 x 128 = 8,192 elements sharded along axis 0,
along axis 1, along both and along neither (so that ``_xla_cpu.fold_in_half`` folds along axis 1,
along axis 0, not at all, and along axis 1) and a small vector:

* ``init`` (eager) gives params-like trees with the params' shardings; in explicit mode ``jax.jit``
  of ``init`` gives the same types; in auto mode the usual recipe (``optax.tree.map_params`` of the
  params' shardings as ``out_shardings`` of the jitted ``init``) gives them too;
* the jitted ``update``, over a few steps from the jitted ``init``'s state, is compiled once,
  returns updates with the params' shardings and a state of the same types (shardings included)
  whose params-like trees keep the params' shardings;
* the updates are the same in both modes and, for PhaseShift, equal those of the same steps on
  one device, with the same leaf and element kicked (the gradients make it kick the leaves
  sharded along axis 0, axis 1 and both in turn) (the compat optimizers are elementwise: their
  one-device compilation is left out to save time); torch.muon's bfloat16 products, summed in
  other orders in the two modes, to a few bfloat16 units. A ``matrices_only`` configuration
  (torch.muon) gets the vector as a one-row matrix, sharded along its row.

Prints one JSON line per configuration and mode: ``{"config", "mode", "ok", "error",
"params_like_leaves", "expected_params_like_leaves"}``.
"""

from __future__ import annotations

import json
import traceback

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from tests.test_common import SHARDED_CONFIGS as CONFIGS, feed, params_like_subtrees
import phaseshift_jax as ps
from phaseshift_jax.compat import torch as torch_optim

SPECS = {"axis0": P("x", None), "axis1": P(None, "y"), "both": P("x", "y"),
         "replicated": P(), "vector": P("y")}
SHAPES = {"axis0": (64, 128), "axis1": (64, 128), "both": (64, 128), "replicated": (64, 128),
          "vector": (8,)}
_RNG = np.random.default_rng(1)
PARAMS = {k: _RNG.standard_normal(s).astype(np.float32) for k, s in SHAPES.items()}
# The leaf whose gradient changes most at each step: PhaseShift ("argmax") kicks the last leaf,
# then the leaves sharded along axis 0, along axis 1 and along both; "last" kicks the first step.
WINNERS = ("vector", "axis0", "axis1", "both")


def _grads():
  grads, current = [], {k: 0.1 * _RNG.standard_normal(s) for k, s in SHAPES.items()}
  for t, winner in enumerate(WINNERS):
    current = {k: g + 0.01 * _RNG.standard_normal(g.shape) for k, g in current.items()}
    current[winner] = current[winner] + (t + 2) * _RNG.standard_normal(SHAPES[winner])
    grads.append({k: g.astype(np.float32) for k, g in current.items()})
  return grads


GRADS = _grads()
LEAVES = sorted(SHAPES)  # the flattening order of a dict


def equivalent(a, b, ndim: int) -> bool:
  return a.is_equivalent_to(b, ndim)


def check_params_like(tx, state, params, what: str) -> int:
  """Every params-like leaf of ``state`` has its param's sharding; returns how many there are."""
  seen = []

  def check(leaf, param):
    assert equivalent(leaf.sharding, param.sharding, param.ndim), (
        f"{what}: a params-like state leaf has sharding {leaf.sharding}, its param {param.sharding}")
    seen.append(leaf)
    return leaf

  optax.tree.map_params(tx, check, state, params)
  return len(seen)


def check_same_types(state, expected, what: str) -> None:
  """Same structure, shapes, dtypes and (equivalent) shardings."""
  assert jax.tree.structure(state) == jax.tree.structure(expected), what
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
    assert (a.shape, a.dtype) == (b.shape, b.dtype), (what, a.shape, a.dtype, b.shape, b.dtype)
    assert equivalent(a.sharding, b.sharding, a.ndim), (what, a.sharding, b.sharding)


def one_device_run(config):
  tx = config.make()
  params = jax.tree.map(jnp.asarray, config.tree(PARAMS))
  update = jax.jit(tx.update)
  state = tx.init(params)
  out = []
  for grads in GRADS:
    updates, state = update(feed(config, jax.tree.map(jnp.asarray, grads)), state, params)
    out.append((jax.tree.map(np.asarray, updates), kicked(config, state)))
  return out


def kicked(config, state):
  if not config.is_phase_shift:
    return None
  found = ps.find_phase_shift_state(state)
  return int(found.shifted_leaf), int(found.shifted_element)


def expected_kicked_leaves(config) -> list[int]:
  if config.kwargs["selection"] == "last":
    return [LEAVES.index("vector")] + [-1] * (len(WINNERS) - 1)
  return [LEAVES.index(winner) for winner in WINNERS]


def sharded_run(config, mode: str):
  """The checks above for one mode; returns the counts of params-like leaves (map_params, walk)
  and each step's ``(updates, kicked)``."""
  axis_type = AxisType.Explicit if mode == "explicit" else AxisType.Auto
  mesh = jax.make_mesh((2, 4), ("x", "y"), axis_types=(axis_type,) * 2)
  # A matrices_only configuration takes the vector as a one-row matrix, sharded along its row.
  specs = {**SPECS, "vector": P(None, "y")} if config.matrices_only else SPECS
  shardings = {k: NamedSharding(mesh, spec) for k, spec in specs.items()}
  with jax.set_mesh(mesh):
    tx = config.make()
    params = jax.device_put(config.tree(PARAMS), shardings)
    state = tx.init(params)
    count = check_params_like(tx, state, params, "eager init")
    walk = params_like_subtrees(state, params) * len(SHAPES)
    if mode == "explicit":
      jitted = jax.jit(tx.init)(params)
      check_same_types(jitted, state, "jitted init")
      # The run starts from the jitted init's state: jax.jit returns a replicated leaf as
      # P(None, None) where the eager init keeps the params' P(); the two are equivalent but
      # key two compilations of the update (as for optax's own optimizers).
      state = jitted
    else:  # the recipe: the state's shardings from the params', for the jitted init
      abstract = jax.eval_shape(tx.init, params)
      out_shardings = optax.tree.map_params(
          tx, lambda _, p: p.sharding, abstract, params,
          transform_non_params=lambda _: NamedSharding(mesh, P()))
      state = jax.jit(tx.init, out_shardings=out_shardings)(params)
      check_params_like(tx, state, params, "jitted init with out_shardings")
    state0 = state
    update = jax.jit(tx.update)
    steps = []
    for t, grads in enumerate(GRADS):
      grads = feed(config, jax.device_put(config.tree(grads), shardings))
      updates, state = update(grads, state, params)
      for k in SHAPES:
        assert equivalent(updates[k].sharding, params[k].sharding, params[k].ndim), (
            f"step {t}: update {k} has sharding {updates[k].sharding}")
      check_same_types(state, state0, f"state after step {t}")
      check_params_like(tx, state, params, f"state after step {t}")
      steps.append((jax.tree.map(np.asarray, updates), kicked(config, state)))
    assert update._cache_size() == 1, "the update was compiled again for a later step"  # pylint: disable=protected-access
  return count, walk, steps


# torch.muon rounds its products to bfloat16, and partitioned (auto axes) or gathered (explicit
# axes) they are summed in other orders: equal to a few bfloat16 units (2^-8), in the Frobenius
# norm, as tests/test_compat_torch_lbfgs_muon.py holds the iteration against torch's.
BFLOAT16_PRODUCTS_RTOL = 4 * 2.0**-8


def check_same_steps(steps, expected, what: str, config) -> None:
  for t, ((updates, kick), (expected_updates, expected_kick)) in enumerate(zip(steps, expected)):
    for k in SHAPES:
      where = f"{what}: step {t}, leaf {k}"
      if config.factory is torch_optim.muon:
        relative = np.linalg.norm(updates[k] - expected_updates[k]) / np.linalg.norm(
            expected_updates[k])
        assert relative <= BFLOAT16_PRODUCTS_RTOL, (where, relative)
      else:
        np.testing.assert_allclose(updates[k], expected_updates[k], rtol=1e-6, atol=1e-7,
                                   err_msg=where)
    assert kick == expected_kick, f"{what}: step {t} kicked {kick}, expected {expected_kick}"


def main():
  assert len(jax.devices()) == 8, "set XLA_FLAGS=--xla_force_host_platform_device_count=8"
  for config in CONFIGS:
    expected = one_device_run(config) if config.is_phase_shift else None
    if expected is not None:
      assert [kick[0] for _, kick in expected] == expected_kicked_leaves(config), config.name
    for mode in ("auto", "explicit"):
      record = dict(config=config.name, mode=mode, ok=True, error="",
                    params_like_leaves=-1, expected_params_like_leaves=-2)
      try:
        count, walk, steps = sharded_run(config, mode)
        record.update(params_like_leaves=count, expected_params_like_leaves=walk)
        if expected is None:
          expected = steps  # the auto mode's, for the explicit mode
        else:
          check_same_steps(steps, expected, "against one device" if config.is_phase_shift
                           else "against the auto mode", config)
      except Exception:  # pylint: disable=broad-except
        record.update(ok=False, error=traceback.format_exc()[-3000:])
      print(json.dumps(record), flush=True)


if __name__ == "__main__":
  main()
