"""Tests of training: real-subset accuracy, resume, padding, diagnostics, run directory, devices."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import phaseshift_jax
from examples.cifar10 import input_pipeline
from examples.cifar10 import train

REPO = Path(__file__).resolve().parents[2]
SUBSET = REPO.parent / "shared" / "data" / "cifar-10-subset"
METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _synthetic(n_train: int, n_test: int, seed: int = 0):
  rng = np.random.default_rng(seed)

  def split(n):
    labels = rng.integers(0, 10, n, dtype=np.int32)
    # Class-dependent colour plus noise: learnable, but not instantly.
    base = (labels[:, None] * 25 + np.arange(3) * 10)[:, None, None, :]
    noise = rng.integers(0, 120, (n, 32, 32, 3))
    return input_pipeline.Split(np.clip(base + noise, 0, 255).astype(np.uint8), labels)

  return split(n_train), split(n_test)


@pytest.fixture(scope="module")
def subset():
  if input_pipeline.find_batches_dir(SUBSET) is None:
    pytest.skip(f"the real CIFAR-10 subset is not at {SUBSET} (../shared/data/cifar-10-subset "
                "beside the repository)")
  return input_pipeline.load_cifar10(SUBSET, download=False)


@pytest.fixture(scope="module")
def real_runs(subset, tmp_path_factory):
  """3 epochs of adam and of phase_shift on the real subset (small CNN), with run dirs."""
  runs = {}
  for name in ("adam", "phase_shift"):
    workdir = tmp_path_factory.mktemp(name)
    config = train.Config(optimizer=name, epochs=3, batch_size=128, eval_batch_size=512)
    runs[name] = (config, workdir, train.train_and_evaluate(config, subset, workdir, log=None))
  return runs


@pytest.mark.parametrize("name", ["adam", "phase_shift"])
def test_real_subset_three_epochs_clearly_above_chance(real_runs, name):
  _, workdir, history = real_runs[name]
  assert [m["epoch"] for m in history] == [1, 2, 3]
  assert history[-1]["test_accuracy"] > 0.20, history
  assert history[-1]["train_loss"] < history[0]["train_loss"]
  # The run directory: config, one metrics line per epoch, one checkpoint per epoch.
  lines = (workdir / train.METRICS_FILE).read_text().splitlines()
  assert [json.loads(line) for line in lines] == json.loads(json.dumps(history))
  assert json.loads((workdir / train.CONFIG_FILE).read_text())["optimizer"] == name
  assert sorted(p.name for p in (workdir / train.CHECKPOINT_DIR).iterdir()
                if p.name.isdigit()) == ["1", "2", "3"]
  if name == "phase_shift":
    ps = history[-1]["phase_shift"]
    assert ps["steps"] == 24  # ceil(3000 / 128): the last, partial batch is trained on too.
    assert 0 < ps["kicks"] <= ps["steps"]
    assert sum(ps["kicked"].values()) == ps["kicks"]
  else:
    assert "phase_shift" not in history[-1]


def test_resume_reaches_the_same_metrics_as_an_uninterrupted_run(real_runs, subset, tmp_path):
  config, _, uninterrupted = real_runs["phase_shift"]

  class Interrupt(Exception):
    pass

  def stop_after_first(epoch, metrics):
    del metrics
    if epoch == 1:
      raise Interrupt

  with pytest.raises(Interrupt):
    train.train_and_evaluate(config, subset, tmp_path, log=None, callback=stop_after_first)
  assert len((tmp_path / train.METRICS_FILE).read_text().splitlines()) == 1
  with pytest.raises(train.RunError, match="--resume"):
    train.train_and_evaluate(config, subset, tmp_path, log=None)
  resumed = train.train_and_evaluate(config, subset, tmp_path, resume=True, log=None)
  assert [m["epoch"] for m in resumed] == [1, 2, 3]
  for got, want in zip(resumed, uninterrupted):
    for key in METRICS:
      assert got[key] == pytest.approx(want[key], rel=1e-6, abs=1e-6), (got["epoch"], key)
    assert got["phase_shift"] == want["phase_shift"]
  lines = (tmp_path / train.METRICS_FILE).read_text().splitlines()
  assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


@pytest.fixture(scope="module")
def tiny_training():
  train_split, test_split = _synthetic(40, 30)
  config = train.Config(optimizer="phase_shift", width=4, epochs=1, batch_size=16,
                        eval_batch_size=7)
  return train.create_training(config, steps_per_epoch=3), train_split, test_split


def test_evaluation_counts_every_example_once_whatever_the_batch(tiny_training):
  training, _, test = tiny_training
  logits = nnx.jit(lambda m, x: m(x, train=False))(
      training.model, input_pipeline.preprocess(test.images))
  want_loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, test.labels).mean())
  want_acc = float((jnp.argmax(logits, -1) == test.labels).mean())
  got = train.evaluate(training, test)  # Batches of 7: 4 full and one of 2 plus 5 padding.
  assert got["loss"] == pytest.approx(want_loss, rel=1e-5)
  assert got["accuracy"] == pytest.approx(want_acc)


def test_kick_counts_follow_the_phase_shift_state(tiny_training):
  training, train_split, _ = tiny_training
  assert training.has_phase_shift
  params = nnx.as_pure(nnx.state(training.model, nnx.Param))
  assert training.param_paths == phaseshift_jax.leaf_paths(params)
  metrics = train.train_epoch(training, train_split, epoch=1)
  ps = metrics["phase_shift"]
  assert ps["steps"] == 3 and metrics["train_accuracy"] * 40 == pytest.approx(
      round(metrics["train_accuracy"] * 40))
  # One more step from fresh stats: its kick count sits exactly at the state's shifted leaf.
  batch = next(input_pipeline.batches(train_split, 16))
  stats, _ = training.train_step(training.model, training.optimizer, training.new_train_stats(),
                                 *[jax.device_put(x, training.data_sharding)
                                   for x in (batch.images, batch.labels, batch.mask)])
  kicks = np.asarray(stats["kicks"])
  state = phaseshift_jax.find_phase_shift_state(nnx.as_pure(training.optimizer.opt_state))
  assert kicks.sum() == 1 and kicks[int(state.shifted_leaf)] == 1
  name = phaseshift_jax.shifted_parameter(nnx.as_pure(training.optimizer.opt_state), params)
  assert name is None or training.param_paths[int(np.argmax(kicks))] == name


def test_compat_optimizer_trains_end_to_end_with_a_schedule_and_validation(tmp_path):
  data = _synthetic(64, 20, seed=1)
  config = train.Config(optimizer="torch_sgd", hparams={"learning_rate": 0.05, "momentum": 0.9},
                        width=4, epochs=2, batch_size=16, eval_batch_size=20,
                        schedule="cosine", validation_fraction=0.25)
  seen = []
  history = train.train_and_evaluate(config, data, tmp_path, log=seen.append,
                                     callback=lambda e, m: True)  # Stop after epoch 1.
  assert len(history) == 1 and len(seen) == 1 and "val accuracy" not in seen[0]
  m = history[0]
  assert {"val_loss", "val_accuracy", "learning_rate"} <= set(m)
  assert np.isfinite([m[k] for k in METRICS]).all()
  assert 0 < m["learning_rate"] < 0.05  # Halfway down the cosine.
  # Resuming with another optimizer in the same directory is refused.
  other = dataclasses.replace(config, optimizer="sgd", hparams={})
  with pytest.raises(train.RunError, match="optimizer='torch_sgd'"):
    train.train_and_evaluate(other, data, tmp_path, resume=True, log=None)


_DEVICES_SCRIPT = """
import json
import jax
from flax import nnx
from examples.cifar10 import train, train_test
assert jax.device_count() == 8, jax.devices()
train_split, test_split = train_test._synthetic(200, 90)
out = {}
for n in (1, 8):
  config = train.Config(optimizer="phase_shift", width=4, epochs=2, batch_size=64,
                        eval_batch_size=32, num_devices=n)
  training = train.create_training(config, steps_per_epoch=4)
  history = []
  for epoch in (1, 2):
    metrics = train.train_epoch(training, train_split, epoch)
    metrics.update({f"test_{k}": v for k, v in train.evaluate(training, test_split).items()})
    history.append(metrics)
  leaves = jax.tree.leaves(nnx.to_pure_dict(nnx.state((training.model, training.optimizer))))
  out[n] = {"history": history, "mesh": training.mesh.devices.size,
            "replicated": all(x.sharding.is_fully_replicated and len(x.sharding.device_set) == n
                              for x in leaves),
            "batch_devices": len(training.data_sharding.device_set)}
print("RESULT" + json.dumps(out))
"""


def test_one_and_eight_devices_give_the_same_metrics():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
  proc = subprocess.run([sys.executable, "-c", _DEVICES_SCRIPT], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.split("RESULT", 1)[1])
  for n in ("1", "8"):  # Batch sharded over n devices; params and optimizer state replicated.
    assert out[n]["mesh"] == out[n]["batch_devices"] == int(n)
    assert out[n]["replicated"]
  one, eight = out["1"]["history"], out["8"]["history"]
  assert len(one) == len(eight) == 2
  for a, b in zip(one, eight):
    for key in METRICS:
      assert abs(a[key] - b[key]) <= 1e-5, (key, a[key], b[key])
    assert a["phase_shift"] == b["phase_shift"]
