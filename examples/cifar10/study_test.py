"""Tests of the optimizer study and of trials trained side by side (vmapped)."""

from __future__ import annotations

import argparse
import json
import threading
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

from examples.cifar10 import input_pipeline as ip
from examples.cifar10 import optimizers
from examples.cifar10 import study
from examples.cifar10 import study_space
from examples.cifar10 import study_storage
from examples.cifar10 import train
from examples.cifar10 import vmapped_trials as vt

SUBSET = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cifar-10-subset"
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _learnable_split(n: int, seed: int) -> ip.Split:
  """Random images whose mean colour depends on the label, so that training makes progress."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n, dtype=np.int32)
  base = rng.integers(0, 256, (10, 1, 1, 3))[labels]
  images = np.clip(base + rng.normal(0, 40, (n, 32, 32, 3)), 0, 255).astype(np.uint8)
  return ip.Split(images, labels)


# ----------------------------------------------------------------------- side by side


def test_unrolled_conv_matches_lax_conv_under_vmap():
  k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k1, (3, 2, 8, 8, 4))
  w = jax.random.normal(k2, (3, 3, 3, 4, 5))
  g = jax.random.normal(k3, (3, 2, 4, 4, 5))

  @jax.jit
  def run_both(x, w, g):
    return run(vt.unrolled_conv_general_dilated, x, w, g), run(jax.lax.conv_general_dilated, x, w, g)

  def run(conv, x, w, g):
    f = lambda x, w: conv(x, w, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    out, vjp = jax.vmap(lambda x, w, g: (f(x, w), jax.vjp(f, x, w)[1](g)))(x, w, g)
    shared_kernel = jax.vmap(f, in_axes=(0, None))(x, w[0])
    return out, vjp, shared_kernel

  ours, reference = run_both(x, w, g)
  for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,hparams,injected,schedule", [
    ("adam", {"learning_rate": 3e-3, "b1": 0.8}, ("learning_rate",), "cosine"),
    ("phase_shift", {"learning_rate": 0.1, "threshold": 1e-3, "shift_boundary": 5e-4,
                     "min_gradient_magnitude": 1e-4, "selection": "last"},
     ("learning_rate", "threshold", "shift_boundary", "min_gradient_magnitude"), "constant"),
])
def test_injected_optimizer_matches_registry(name, hparams, injected, schedule):
  config = train.Config(optimizer=name, hparams=hparams, epochs=2, schedule=schedule)
  steps_per_epoch = 3
  make = optimizers.make_schedule(schedule, 2 * steps_per_epoch, 0, steps_per_epoch)
  reference = optimizers.create(name, hparams, schedule=make)
  tx = vt.injected_optimizer(config, steps_per_epoch, injected)
  params = {"a": jnp.arange(6.0).reshape(2, 3) - 2, "b": jnp.ones(4)}
  ref_state, state = reference.init(params), tx.init(params)
  assert set(state.hyperparams) == set(injected)
  for key in injected:
    assert float(state.hyperparams[key]) == pytest.approx(hparams[key])
  update = jax.jit(tx.update)
  for step in range(2 * steps_per_epoch):
    grads = jax.tree.map(lambda p: jnp.sin(p * (step + 1.3)), params)
    expected, ref_state = reference.update(grads, ref_state, params)
    actual, state = update(grads, state, params)
    for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(actual)):
      np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-9)


def test_side_by_side_rejects_trials_that_differ_in_more_than_numbers():
  a = train.Config(optimizer="phase_shift", epochs=1)
  with pytest.raises(ValueError, match="selection"):
    vt.SideBySide.create([a, train.Config(optimizer="phase_shift", epochs=1,
                                          hparams={"selection": "last"})], 2)
  with pytest.raises(ValueError, match="batch_size"):
    vt.SideBySide.create([a, train.Config(optimizer="phase_shift", epochs=1, batch_size=64)], 2)
  with pytest.raises(ValueError, match="threshold"):
    vt.SideBySide.create([a, train.Config(optimizer="phase_shift", epochs=1,
                                          hparams={"threshold": 0.5})], 2,
                         injected=("learning_rate",))


def test_replace_starts_a_new_trial_in_one_slot():
  configs = [train.Config(optimizer="phase_shift", epochs=1, width=4, seed=k,
                          hparams={"learning_rate": 0.1 * (k + 1)}) for k in range(3)]
  trials = vt.SideBySide.create(configs[:2], steps_per_epoch=2)
  assert trials.injected == ("learning_rate",)
  trials.train_epoch(_learnable_split(256, 0), [1, 1])
  before = jax.device_get(trials.state)
  trials.replace(1, configs[2])
  after = jax.device_get(trials.state)
  fresh = jax.device_get(trials.initial_state(configs[2]))
  np.testing.assert_allclose(trials.hyperparams()["learning_rate"], [0.1, 0.3], rtol=1e-7)
  for key in ("params", "rest", "opt_state", "step"):
    for old, new, want in zip(*(jax.tree.leaves(t[key]) for t in (before, after, fresh))):
      np.testing.assert_array_equal(new[0], old[0])  # Slot 0 goes on untouched.
      np.testing.assert_array_equal(new[1], want)
  assert int(before["step"][1]) == 2 and int(after["step"][1]) == 0
  np.testing.assert_array_equal(jax.random.key_data(after["key"][1]),
                                jax.random.key_data(jax.random.key(2)))


def test_four_trials_side_by_side_equal_four_trials_one_by_one():
  data = (_learnable_split(128, 0), _learnable_split(64, 1))
  settings = [(0.05, 1e-3, 1e-3, 0.0), (0.2, 1e-2, 2e-3, 1e-3),
              (0.02, 1e-4, 1e-2, 0.0), (0.1, 3e-3, 5e-4, 1e-2)]
  configs = [train.Config(optimizer="phase_shift", epochs=2, batch_size=32, eval_batch_size=64,
                          width=8, seed=10 + k,
                          hparams={"learning_rate": lr, "threshold": th, "shift_boundary": sb,
                                   "min_gradient_magnitude": m})
             for k, (lr, th, sb, m) in enumerate(settings)]
  one_by_one = [train.train_and_evaluate(c, data, log=None) for c in configs]
  side_by_side = vt.train_side_by_side(configs, data)
  for k in range(4):
    assert len(side_by_side[k]) == len(one_by_one[k]) == 2
    for a, b in zip(one_by_one[k], side_by_side[k]):
      for key in METRICS:
        assert abs(a[key] - b[key]) <= 1e-5, (k, a["epoch"], key, a[key], b[key])
  # The trials really differ (own seed, data order and hyperparameters).
  assert len({h[-1]["train_loss"] for h in side_by_side}) == 4


# ---------------------------------------------------------------------------- study


def _settings(**kw) -> study_space.Settings:
  return study_space.Settings(**{"epochs": 1, "width": 8, "batch_size": 32, **kw})


def test_workers_never_start_more_than_n_trials(tmp_path):
  storage = study_storage.make_storage(f"sqlite:///{tmp_path / 's.db'}", 30, 90)
  settings = _settings()
  study_storage.open_study(storage, "s", settings, "phase_shift")
  started: list[int] = []
  lock = threading.Lock()

  def worker():
    handle = optuna.load_study(study_name="s", storage=storage)
    while (trial := study_storage.next_trial(handle, 3, "phase_shift", settings)) is not None:
      with lock:
        started.append(trial.number)

  threads = [threading.Thread(target=worker) for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  trials = optuna.load_study(study_name="s", storage=storage).get_trials()
  running = [t for t in trials if t.state == TrialState.RUNNING]
  assert sorted(t.number for t in running) == sorted(started)
  assert len(running) == 3
  assert all(t.user_attrs.get("surplus") for t in trials if t.state != TrialState.RUNNING)
  for t in running:
    assert set(t.params) == set(study_space.SEARCH_SPACES["phase_shift"])
    assert t.user_attrs["seed"] == t.number


def test_a_study_resumed_with_other_settings_is_refused(tmp_path):
  storage = study_storage.make_storage(f"sqlite:///{tmp_path / 's.db'}", 30, 90)
  study_storage.open_study(storage, "s", _settings(), "adam")
  with pytest.raises(study_space.StudyError, match="settings"):
    study_storage.open_study(storage, "s", _settings(epochs=2), "adam")


def _args(workdir: Path, *flags: str) -> argparse.Namespace:
  parser = argparse.ArgumentParser()
  study.add_study_parser(parser.add_subparsers())
  return parser.parse_args([
      "study", "--data-dir", str(SUBSET), "--no-download", "--train-size", "320",
      "--test-size", "200", "--validation-fraction", "0.25", "--epochs", "1", "--width", "8",
      "--batch-size", "32", "--workdir", str(workdir), "--no-progress", *flags])


@pytest.mark.skipif(not SUBSET.is_dir(), reason=f"no CIFAR-10 subset at {SUBSET}")
def test_study_stops_resumes_after_a_kill_and_reports(tmp_path):
  workdir = tmp_path / "study"
  common = ("--optimizers", "adam,phase_shift", "--trials", "3")
  # A worker that stops after two trials per optimizer: no report yet.
  assert study.run_study(_args(workdir, *common, "--worker-trials", "2")) == 0
  storage = study_storage.make_storage(f"sqlite:///{workdir / 'study.db'}", 1, 2)
  handles = {n: optuna.load_study(study_name=f"cifar10-{n}", storage=storage)
             for n in ("adam", "phase_shift")}
  for handle in handles.values():
    assert [t.state for t in handle.get_trials()] == [TrialState.COMPLETE] * 2
  assert not (workdir / "results.md").exists()

  # A worker killed right after starting phase_shift's third trial: RUNNING, one heartbeat.
  settings = study_space.Settings(**handles["phase_shift"].user_attrs["settings"])
  killed = study_storage.next_trial(handles["phase_shift"], 3, "phase_shift", settings)

  # The rerun trains side by side (the study does not depend on how trials are run).
  assert study.run_study(_args(workdir, *common, "--side-by-side", "2",
                               "--heartbeat-interval", "1", "--grace-period", "2")) == 0
  for name, handle in handles.items():
    trials = handle.get_trials()
    finished = [t for t in trials if t.state in study_storage.FINISHED]
    assert len(finished) == 3, name
    assert len({t.user_attrs["seed"] for t in finished}) == 3, name
  ps = handles["phase_shift"].get_trials()
  assert ps[killed.number].state == TrialState.FAIL
  retry = [t for t in ps if t.system_attrs.get("failed_trial") == killed.number]
  assert len(retry) == 1 and retry[0].state in study_storage.FINISHED
  assert retry[0].params == killed.params
  assert retry[0].user_attrs["seed"] == killed.user_attrs["seed"]

  table = (workdir / "results.md").read_text()
  for name in ("adam", "phase_shift"):
    assert f"| {name} | 3 (" in table
    assert (workdir / f"importances_{name}.png").stat().st_size > 1000
  assert (workdir / "history.png").stat().st_size > 1000
  best = json.loads((workdir / "best_params.json").read_text())
  for name, handle in handles.items():
    assert best[name]["val_accuracy"] == handle.best_value
    assert best[name]["params"] == handle.best_params
    assert 0 <= best[name]["test_accuracy"] <= 1
  summaries = json.loads((workdir / "results.json").read_text())["optimizers"]
  assert [s["complete"] + s["pruned"] for s in summaries] == [3, 3]
  assert [s["failed"] for s in summaries] == [0, 1]  # The killed trial.

  # A third run finds the study complete: no new trial, the same report.
  assert study.run_study(_args(workdir, *common)) == 0
  assert len(handles["adam"].get_trials()) == 3
