"""Tests of training: the real subset, resume, corrupt checkpoints, divergence, metrics, devices."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import nnx

import phaseshift_jax
from examples.cifar10 import checkpoints
from examples.cifar10 import input_pipeline
from examples.cifar10 import train
from examples.cifar10.conftest import REPO, learnable, tiny_config

METRICS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


def _lines(workdir: Path) -> list[dict]:
  return [json.loads(line)
          for line in (workdir / checkpoints.METRICS_FILE).read_text().splitlines()]


def _numbers(history: list[dict]) -> list[dict]:
  """The metrics of ``history`` without its timings."""
  return [{k: v for k, v in m.items() if "seconds" not in k and k != "images_per_sec"}
          for m in history]


def _checkpoints(workdir: Path) -> list[str]:
  return sorted(p.name for p in (workdir / checkpoints.CHECKPOINT_DIR).iterdir())


@pytest.fixture(scope="module")
def real_runs(subset, tmp_path_factory):
  """3 epochs of adam and of phase_shift on the real subset, each with its run directory."""
  runs = {}
  for name in ("adam", "phase_shift"):
    config = tiny_config(optimizer=name, data_dir=str(subset), width=None, epochs=3,
                         batch_size=128, eval_batch_size=512)
    workdir = tmp_path_factory.mktemp(name)
    runs[name] = (config, workdir, train.train_and_evaluate(config, workdir, log=None)[1])
  return runs


@pytest.mark.parametrize("name", ["adam", "phase_shift"])
def test_three_epochs_on_the_real_subset_learn_and_fill_the_run_directory(real_runs, name):
  config, workdir, history = real_runs[name]
  assert [m["epoch"] for m in history] == [1, 2, 3]
  assert history[-1]["test_accuracy"] > 0.20
  assert history[-1]["train_loss"] < history[0]["train_loss"]
  assert _lines(workdir) == json.loads(json.dumps(history))
  assert json.loads((workdir / checkpoints.CONFIG_FILE).read_text()) == dataclasses.asdict(config)
  assert _checkpoints(workdir) == ["1", "2", "3"]
  if name == "phase_shift":
    kicks = history[-1]["phase_shift"]
    assert kicks["steps"] == 3000 // 128  # The last partial batch is dropped.
    assert 0 < kicks["kicks"] <= kicks["steps"] and sum(kicks["kicked"].values()) == kicks["kicks"]
  else:
    assert "phase_shift" not in history[-1]


def test_a_resumed_run_equals_the_uninterrupted_one_bit_for_bit(real_runs, tmp_path):
  config, _, uninterrupted = real_runs["phase_shift"]

  def interrupt(epoch, metrics):
    raise KeyboardInterrupt

  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path, log=None, callback=interrupt)
  assert [m["epoch"] for m in _lines(tmp_path)] == [1]
  with pytest.raises(checkpoints.RunError, match="--resume"):
    train.train_and_evaluate(config, tmp_path, log=None)
  _, resumed = train.train_and_evaluate(config, tmp_path, resume=True, log=None)
  assert _numbers(resumed) == _numbers(uninterrupted)  # Epoch 1: a second fresh run.
  assert [m["epoch"] for m in _lines(tmp_path)] == [1, 2, 3]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  """3 epochs of phase_shift on 96 synthetic images, and their run directory."""
  data = {"train": learnable(96), "test": learnable(40, 1)}
  config = tiny_config(optimizer="phase_shift", epochs=3)
  workdir = tmp_path_factory.mktemp("tiny")
  return config, data, workdir, train.train_and_evaluate(config, workdir, data=data, log=None)[1]


def _truncate_largest_file(step: Path) -> None:
  largest = max((f for f in step.rglob("*") if f.is_file()), key=lambda f: f.stat().st_size)
  os.truncate(largest, largest.stat().st_size // 2)


CORRUPTIONS = {
    "truncated data file": _truncate_largest_file,
    "missing index": lambda step: (step / "state" / "manifest.ocdbt").unlink(),
    "missing metadata": lambda step: (step / "state" / "_METADATA").unlink(),
}


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # orbax's loop.
@pytest.mark.parametrize("case", CORRUPTIONS)
def test_resume_falls_back_past_a_corrupt_checkpoint(tiny_run, tmp_path, case):
  corrupt = CORRUPTIONS[case]
  config, data, workdir, uninterrupted = tiny_run
  run = tmp_path / "run"
  shutil.copytree(workdir, run)
  corrupt(run / "checkpoints" / "3")
  before = {p: p.read_bytes() for p in (run / "checkpoints" / "2").rglob("*") if p.is_file()}
  said = []
  _, history = train.train_and_evaluate(config, run, data=data, resume=True, log=said.append)
  skipped = [line for line in said if line.startswith("skipped checkpoint")]
  assert len(skipped) == 1 and f"{run}/checkpoints/3: " in skipped[0], said
  assert "\n" not in skipped[0] and "after epoch 2" in said[1]
  assert _numbers(history) == _numbers(uninterrupted)
  assert _lines(run) == json.loads(json.dumps(history)) and _checkpoints(run) == ["1", "2", "3"]
  assert before == {p: p.read_bytes() for p in (run / "checkpoints" / "2").rglob("*")
                    if p.is_file()}  # The good checkpoints are untouched.


def test_an_epoch_is_logged_only_once_its_checkpoint_is_committed(tiny_run, tmp_path,
                                                                  monkeypatch):
  config, data, _, uninterrupted = tiny_run
  save = ocp.CheckpointManager.save

  def killed_in_epoch_2(self, step, *args, **kwargs):
    if step == 2:
      raise KeyboardInterrupt  # As if killed while writing the checkpoint.
    return save(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", killed_in_epoch_2)
  with pytest.raises(KeyboardInterrupt):
    train.train_and_evaluate(config, tmp_path, data=data, log=None)
  assert [m["epoch"] for m in _lines(tmp_path)] == [1] and _checkpoints(tmp_path) == ["1"]
  monkeypatch.undo()
  _, resumed = train.train_and_evaluate(config, tmp_path, data=data, resume=True, log=None)
  assert _numbers(resumed) == _numbers(uninterrupted)


def test_a_diverging_run_stops_at_once_naming_the_epoch_and_the_last_checkpoint(
    tiny_run, tmp_path):
  config, data, _, _ = tiny_run
  with pytest.raises(train.Diverged) as raised:
    train.train_and_evaluate(dataclasses.replace(config, optimizer="sgd", learning_rate=1e4),
                             tmp_path, data=data, log=None)
  match = re.fullmatch(r"sgd diverged in epoch (\d) \(training loss (nan|inf)\); last good "
                       r"checkpoint: (.*)", str(raised.value))
  assert match, raised.value
  epoch = int(match[1])  # 2 on these images: epoch 1 is checkpointed and logged.
  assert match[3] == (f"{tmp_path}/checkpoints/{epoch - 1}" if epoch > 1 else "none")
  assert [m["epoch"] for m in _lines(tmp_path)] == list(range(1, epoch))
  assert _checkpoints(tmp_path) == [str(e) for e in range(1, epoch)]
  assert "NaN" not in (tmp_path / checkpoints.METRICS_FILE).read_text()


def test_a_workdir_that_is_a_file_or_not_writable_is_a_one_line_error(tiny_run, tmp_path):
  config, data, _, _ = tiny_run
  (tmp_path / "file").write_text("")
  readonly = tmp_path / "readonly"
  readonly.mkdir(mode=0o500)
  if os.access(readonly, os.W_OK):  # Root ignores the mode; sysfs refuses even root.
    readonly = Path("/sys/phaseshift_jax_test")
    if not Path("/sys/kernel").is_dir():
      pytest.skip("cannot make an unwritable directory here (root, and no sysfs)")
  for workdir, reason in ((tmp_path / "file", "File exists"),
                          (tmp_path / "file" / "sub", "Not a directory"),
                          (readonly, "Permission denied|Operation not permitted")):
    with pytest.raises(checkpoints.RunError, match=f"cannot use {workdir} as a run directory: "
                       f"({reason})$"):
      train.train_and_evaluate(config, workdir, data=data, log=None)


def test_evaluation_counts_every_example_once_whatever_the_batch_size():
  model = train.create_train_state(tiny_config(), 1, train.make_mesh(tiny_config()))[0]
  test = learnable(30, 2)
  logits = model(input_pipeline.preprocess(test.images), train=False)
  want_loss = float(optax.softmax_cross_entropy_with_integer_labels(logits, test.labels).mean())
  want_accuracy = float((np.argmax(logits, -1) == test.labels).mean())
  for batch_size in (7, 30, 64):  # 7: four full batches and one of 2 plus 5 padding rows.
    got = train.evaluate(model, test, batch_size, train.make_mesh(tiny_config()))
    assert got["loss"] == pytest.approx(want_loss, rel=1e-5)
    assert got["accuracy"] == pytest.approx(want_accuracy)


def test_kick_counts_follow_the_phase_shift_state():
  config = tiny_config(optimizer="phase_shift")
  mesh = train.make_mesh(config)
  model, optimizer = train.create_train_state(config, 3, mesh)
  metrics = train.train_epoch(model, optimizer, learnable(96), config, 1, mesh)
  assert metrics["phase_shift"]["steps"] == 3 and metrics["train_accuracy"] * 96 == pytest.approx(
      round(metrics["train_accuracy"] * 96))
  assert train.kickable(*train.create_train_state(tiny_config(), 3, mesh)) is None  # Adam.
  names = train.kickable(model, optimizer)
  counts = train.create_metrics(names)
  batch = next(input_pipeline.train_batches(learnable(96), 32, 0, 2))
  replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
  train.train_step(model, optimizer, train.replicate(counts, mesh), *jax.device_put(
      batch, jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))),
                   jax.device_put(jax.random.key(0), replicated))
  kicks = np.asarray(counts.compute()["kicks"])
  opt_state = nnx.as_pure(optimizer.opt_state)
  assert kicks.sum() == 1 and kicks[int(phaseshift_jax.find_phase_shift_state(
      opt_state).shifted_leaf)] == 1
  kicked = phaseshift_jax.shifted_parameter(opt_state, nnx.as_pure(nnx.state(model, nnx.Param)))
  assert kicked == (names[int(np.argmax(kicks))] if kicks[-1] == 0 else None)


def test_a_compat_optimizer_trains_with_a_schedule_and_a_validation_split(tmp_path):
  data = {"train": learnable(64, 1), "val": learnable(16, 2), "test": learnable(20, 3)}
  config = tiny_config(optimizer="torch_sgd", learning_rate=0.05, momentum=0.9, batch_size=16,
                       epochs=2, schedule="cosine")
  seen = []
  _, history = train.train_and_evaluate(config, tmp_path, data=data, log=seen.append,
                                        callback=lambda epoch, metrics: True)  # Stop after 1.
  assert len(history) == 1 and len(seen) == 1 and " val loss " in seen[0]
  assert {"val_loss", "val_accuracy", "test_accuracy"} <= set(history[0])
  assert 0 < history[0]["learning_rate"] < 0.05  # Halfway down the cosine.
  with pytest.raises(checkpoints.RunError, match="optimizer='torch_sgd', not 'sgd'"):
    train.train_and_evaluate(dataclasses.replace(config, optimizer="sgd"), tmp_path, data=data,
                             resume=True, log=None)


_DEVICES = """
import json, jax
from examples.cifar10 import train
from examples.cifar10.conftest import learnable, tiny_config
from flax import nnx
assert jax.device_count() == 8, jax.devices()
data = {"train": learnable(256), "test": learnable(90, 1)}
out = {}
for n in (1, 8):
  config = tiny_config(optimizer="phase_shift", epochs=2, batch_size=64, num_devices=n)
  model, history = train.train_and_evaluate(config, data=data, log=None)
  leaves = jax.tree.leaves(nnx.state(model))
  out[n] = {"history": history, "replicated": all(
      x.sharding.is_fully_replicated and len(x.sharding.device_set) == n for x in leaves)}
print("RESULT" + json.dumps(out))
"""


def test_one_and_eight_devices_give_the_same_metrics():
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(REPO)}
  proc = subprocess.run([sys.executable, "-c", _DEVICES], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  out = json.loads(proc.stdout.split("RESULT", 1)[1])
  assert out["1"]["replicated"] and out["8"]["replicated"]
  for a, b in zip(out["1"]["history"], out["8"]["history"], strict=True):
    for key in METRICS:
      assert abs(a[key] - b[key]) <= 1e-5, (key, a[key], b[key])
    assert a["phase_shift"] == b["phase_shift"]
