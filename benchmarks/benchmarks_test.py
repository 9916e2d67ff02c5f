"""Smoke test of the benchmarks: tiny sizes, every contender runs, the results have their schema.

No speed is asserted here (speed is what the benchmarks report). The torch
contenders are checked against ``phase_shift`` for a few steps, so that the
benchmarks time implementations that compute the same thing.
"""

import json

import jax
import numpy as np
import optax
import pytest

import phaseshift_jax
from benchmarks import compile_time
from benchmarks import cpu_measures
from benchmarks import contenders
from benchmarks import end_to_end
from benchmarks import memory
from benchmarks import report
from benchmarks import side_by_side
from benchmarks import step_cost
from benchmarks import timing
from benchmarks import torch_contenders
from benchmarks import trees

TINY = trees.uniform_shapes(3, 200)  # 3 leaves of (2, 100)


@pytest.fixture(scope="module")
def results():
  quiet = lambda _: None
  return {
      "environment": timing.environment(),
      "step_cost": step_cost.run([(3, 200)], [], steps=2, warmup=1, log=quiet),
      "compile_time": compile_time.run([2, 3], total=600, repeats=1, log=quiet),
      "memory": memory.run(3, 600),
      "end_to_end": end_to_end.run(batch_size=4, names=("sgd", "phase_shift"), width=4,
                                   steps=1, warmup=1, log=quiet),
  }


def test_every_contender_ran(results):
  jax_names, notes = contenders.all_contenders()
  assert not notes, notes  # the compat optimizers import in this checkout
  (case,) = results["step_cost"]["cases"]
  assert set(case["results"]) == set(jax_names) | set(torch_contenders.CONTENDERS)
  for name, row in case["results"].items():
    assert row["steps"] == 2, name
    assert 0 < row["p10_s"] <= row["median_s"] <= row["p90_s"], name
    assert row["fraction_of_limit"] > 0, name
    assert row["vs_optax.sgd"] > 0 and row["vs_optax.adam"] > 0, name
  assert case["results"]["optax.sgd"]["vs_optax.sgd"] == 1.0
  assert case["results"]["phase_shift"]["bytes_per_param"] == 20  # read g, h, p; write p, h
  assert case["results"]["optax.adam"]["bytes_per_param"] == 28
  assert case["results"]["floor[phase_shift I/O]"]["bytes_per_param"] == 12
  assert case["results"]["floor[I/O + history write]"]["bytes_per_param"] == 16
  assert case["results"]["floor[I/O + changes]"]["bytes_per_param"] == 16
  assert case["bandwidth"]["limit_gbps"] > 0
  assert (case["leaves"], case["params"]) == (3, 600)


def test_the_floors_plus_a_pass_do_that_pass():
  """``floor[I/O + ...]``: the updates are the gradients; the state gets the new history or
  the largest change (as ``phase_shift`` computes them), and nothing else changes."""
  params = trees.random_tree(TINY, 0)
  grads, later = trees.random_tree(TINY, 1), trees.random_tree(TINY, 2)
  reference = contenders.BUILTIN["phase_shift"]()
  _, after_one = reference.update(grads, reference.init(params))
  _, after_two = reference.update(later, after_one)
  for part in ("history write", "changes"):
    tx = contenders.BUILTIN[f"floor[I/O + {part}]"]()
    updates, new_state = jax.jit(tx.update)(later, after_one)
    jax.tree.map(np.testing.assert_array_equal, updates, later)
    if part == "history write":
      jax.tree.map(np.testing.assert_array_equal, new_state.prev_grads, later)
      assert float(new_state.shift_change) == float(after_one.shift_change)
    else:
      jax.tree.map(np.testing.assert_array_equal, new_state.prev_grads, after_one.prev_grads)
      assert float(new_state.shift_change) == float(after_two.shift_change) > 0
  with pytest.raises(ValueError, match="part"):
    contenders.io_floor_plus("kick")


def test_other_parts(results):
  for case in results["compile_time"]["cases"]:
    assert set(case["results"]) == set(compile_time.CONTENDERS)
    assert all(row["seconds"] > 0 for row in case["results"].values())
  rows = results["memory"]["optimizers"]
  assert rows["phase_shift"]["bytes_per_param"] == pytest.approx(4, abs=0.1)
  assert rows["with_phase_shift(adam)"]["bytes_per_param"] == pytest.approx(12, abs=0.1)
  assert rows["torch original-style PhaseShift"]["bytes_per_param"] == pytest.approx(8, abs=0.1)
  e2e = results["end_to_end"]["optimizers"]
  assert set(e2e) == {"sgd", "phase_shift"}
  assert all(0 < row["optimizer_share"] and row["images_per_s"] > 0 for row in e2e.values())


def test_json_and_report(results):
  loaded = json.loads(json.dumps(results))
  text = report.markdown(loaded)
  for heading in ("Step time", "relative to optax.sgd", "memory-bandwidth limit",
                  "Compile time", "Optimizer state", "End-to-end", "Targets"):
    assert heading in text
  assert loaded["environment"]["versions"]["jax"] == jax.__version__
  assert {c["target"].split(": ")[-1] for c in report.targets(loaded)} >= {
      "phase_shift <= 0.85x optax.adam", "phase_shift <= 2.2x optax.sgd",
      "phase_shift >= 2x faster than the torch original-style PhaseShift",
      "phase_shift >= 1x as fast as the torch foreach PhaseShift",
      "CIFAR-10 train step with phase_shift <= 1.03x sgd's"}


@pytest.mark.parametrize("name, selection", [
    ("torch original-style PhaseShift", "last"), ("torch foreach PhaseShift", "argmax")])
def test_torch_contenders_match_phase_shift(name, selection):
  shapes = trees.synthetic_shapes(5, 900)  # the last leaf is "scale", a vector
  params = trees.random_tree(shapes, 0)
  grads = [trees.random_tree(shapes, seed) for seed in (1, 2, 3)]
  for g in grads:  # large changes on the last leaf, so that "last" kicks too
    g["scale"] = 10 * g["scale"]
  tx = phaseshift_jax.phase_shift(contenders.LR, selection=selection, **contenders.KICK)
  state = tx.init(params)
  torch_params = [t.requires_grad_() for t in torch_contenders.tensors(jax.tree.leaves(params))]
  optimizer = torch_contenders.CONTENDERS[name](torch_params)
  kicked = 0
  for g in grads + grads:
    updates, state = tx.update(g, state, params)
    params = optax.apply_updates(params, updates)
    for p, t in zip(torch_params, torch_contenders.tensors(jax.tree.leaves(g))):
      p.grad = t
    optimizer.step()
    kicked += int(state.shifted_leaf) >= 0
  assert kicked >= 3, "the comparison must exercise the kick"
  for a, b in zip(jax.tree.leaves(params), torch_params):
    np.testing.assert_allclose(np.asarray(a), b.detach().numpy(), rtol=0, atol=1e-6)


def test_cpu_measures_time_every_variant_and_change_no_value():
  (case,) = cpu_measures.run([(2, 8192)], [], warmup=1, steps=2, log=lambda _: None)
  assert set(case["results"]) == set(cpu_measures.VARIANTS) | set(contenders.BASELINES)
  assert case["results"]["phase_shift"]["vs_phase_shift"] == 1.0
  assert "| plain |" in cpu_measures.table([case])
  shapes = trees.uniform_shapes(2, 8192)  # large enough to be folded
  params, grads = trees.random_tree(shapes, 0), [trees.random_tree(shapes, s) for s in (1, 2)]
  outputs = {}
  for name, measures in cpu_measures.VARIANTS.items():
    with cpu_measures.switched_off(measures):
      tx = phaseshift_jax.phase_shift(contenders.LR, **contenders.KICK)
      state, p = tx.init(params), params
      for g in grads:
        u, state = jax.jit(tx.update)(g, state)
        p = optax.apply_updates(p, u)
      outputs[name] = (p, state)
  for name in cpu_measures.VARIANTS:
    jax.tree.map(np.testing.assert_array_equal, outputs[name], outputs["plain"])


def test_side_by_side_seeds_compute_the_steps_of_the_seeds_one_by_one():
  import dataclasses  # pylint: disable=import-outside-toplevel
  from examples.cifar10.configs import default  # pylint: disable=import-outside-toplevel
  config = dataclasses.replace(default.Config(), optimizer="phase_shift", batch_size=8, width=4)
  result = side_by_side.step_times(config, [0, 1], steps=2, warmup=1)
  assert result["seeds"] == 2 and result["one_by_one_step_ms"] > 0
  assert result["speedup"] == pytest.approx(
      result["one_by_one_step_ms"] / result["side_by_side_step_ms"])
  losses = result["first_losses"]  # Each seed's own model, batch and augmentation.
  np.testing.assert_allclose(losses["side_by_side"], losses["one_by_one"], rtol=1e-5)
  assert losses["one_by_one"][0] != losses["one_by_one"][1]


def test_muon_benchmark_times_both_kernels_and_torch():
  from benchmarks import muon  # pylint: disable=import-outside-toplevel

  out = muon.run([(16, 32)], steps=2, warmup=1, log=lambda _: None)
  (case,) = out["cases"]
  assert set(case["results"]) == {"compat.torch.muon(ns_kernels='xla')",
                                  "compat.torch.muon(ns_kernels='torch_cpu')", "torch.optim.Muon"}
  assert all(row["steps"] == 2 and row["median_s"] > 0 for row in case["results"].values())
  # On a matrix this small both kernels give torch's bfloat16 bits (tests/ checks the values).
  assert case["equal_to_torch"] == {"torch_cpu": 1.0, "xla": 1.0}
  assert "| 16 x 32 |" in muon.table(out)


def test_an_accelerator_run_measures_device_memory_and_compares_no_torch_elsewhere(monkeypatch):
  """The GPU path on the CPU: a backend torch has no device for, a small "device memory" array."""
  from benchmarks import bandwidth  # pylint: disable=import-outside-toplevel

  monkeypatch.setattr(bandwidth, "DEVICE_MEMORY_ELEMENTS", 4096)
  monkeypatch.setattr(bandwidth.jax, "default_backend", lambda: "tpu")
  bandwidth._device_memory_bandwidth.cache_clear()  # pylint: disable=protected-access
  try:
    out = step_cost.run([(2, 200)], [], include_compat=False, only=["phase_shift"],
                        steps=2, warmup=1, log=lambda _: None)
  finally:
    bandwidth._device_memory_bandwidth.cache_clear()  # pylint: disable=protected-access
  (case,) = out["cases"]
  assert set(case["results"]) == {"phase_shift", *contenders.BASELINES}
  assert any("torch contenders skipped" in note for note in out["notes"])
  limit = case["bandwidth"]
  assert limit["limit"] == "device memory" and limit["device_memory"]["elements"] == 4096
  assert limit["limit_gbps"] == limit["device_memory"]["limit_gbps"]
  assert "numpy_in_place" not in limit["gbps"] and "torch_in_place" not in limit["gbps"]
  text = report.step_cost_table(out) + report.bandwidth_table(out)
  assert "device memory's (HBM's)" in text and "| 4,096 float32 |" in text
