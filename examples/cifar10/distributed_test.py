"""Tests of multi-process training: 2 processes x 2 CPU devices against 1 x 4, resume, bad input.

Every run is ``python -m examples.cifar10 train`` in subprocesses on 127.0.0.1 (gloo between
them), on a slice of the real subset; each subprocess is killed when its test ends, whatever
happened.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from examples.cifar10 import __main__ as cli
from examples.cifar10 import checkpoints
from examples.cifar10 import distributed
from examples.cifar10 import input_pipeline
from examples.cifar10 import train
from examples.cifar10.conftest import REPO, learnable, tiny_config

# 8 steps of 32 a epoch, a ragged last evaluation batch (100 = 64 + 36), PhaseShift's kicks.
RUN = ("--optimizer", "phase_shift", "--train-size", "256", "--test-size", "100", "--width", "4",
       "--batch-size", "32", "--eval-batch-size", "64", "--epochs", "2", "--no-progress",
       "--no-download")
NUMBERS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "learning_rate")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _run(tmp: Path, argvs: Sequence[Sequence[str]], timeout: float = 300
         ) -> list[tuple[int, str, str]]:
  """Runs ``python -m examples.cifar10 train ARGV`` once per argv, all at once; returns
  ``(status, stdout, stderr)`` of each. Each is killed (its whole process group) if it
  is still running when this returns or raises."""
  env = {k: v for k, v in os.environ.items()  # No cluster manager for JAX to detect.
         if k != "XLA_FLAGS" and not k.startswith(("SLURM_", "OMPI_", "JAX_COORDINATOR"))}
  env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
  tmp.mkdir(parents=True, exist_ok=True)
  procs, files = [], []
  try:
    for i, argv in enumerate(argvs):
      out, err = open(tmp / f"{i}.out", "w"), open(tmp / f"{i}.err", "w")  # pylint: disable=R1732
      files += [out, err]
      procs.append(subprocess.Popen(  # pylint: disable=consider-using-with
          [sys.executable, "-m", "examples.cifar10", "train", *map(str, argv)], cwd=REPO,
          env=env, stdout=out, stderr=err, start_new_session=True))
    deadline = time.monotonic() + timeout
    for p in procs:
      p.wait(timeout=max(1, deadline - time.monotonic()))
  finally:
    for p in procs:
      if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
    for f in files:
      f.close()
  return [(p.returncode, (tmp / f"{i}.out").read_text(), (tmp / f"{i}.err").read_text())
          for i, p in enumerate(procs)]


def _processes(subset: Path, workdir: Path, *extra: str, count: int = 2,
               per_process: Sequence[Sequence[str]] = ()) -> list[list[str]]:
  """The argv of each of ``count`` processes x 2 CPU devices of one run."""
  address = f"127.0.0.1:{_free_port()}"
  return [[*RUN, "--data-dir", subset, "--workdir", workdir, "--cpu-devices", "2",
           "--coordinator-address", address, "--num-processes", count, "--process-id", i,
           "--initialization-timeout", "60", *extra, *(per_process[i] if per_process else ())]
          for i in range(count)]


def _ok(results: list[tuple[int, str, str]]) -> None:
  for i, (status, out, err) in enumerate(results):
    assert status == 0, f"process {i} exited with {status}:\n{out[-2000:]}\n{err[-3000:]}"


def _metrics(workdir: Path) -> list[dict]:
  return [json.loads(line)
          for line in (workdir / checkpoints.METRICS_FILE).read_text().splitlines()]


def _numbers(history: list[dict]) -> list[dict]:
  return [{k: m[k] for k in (*NUMBERS, "phase_shift")} for m in history]


def _one_line(err: str) -> str:
  lines = err.strip().splitlines()
  assert len(lines) == 1 and "Traceback" not in err, err
  return lines[0]


@pytest.fixture(scope="module")
def runs(subset, tmp_path_factory):
  """The run on 1 process x 4 devices, and on 2 processes x 2 devices."""
  tmp = tmp_path_factory.mktemp("runs")
  one = _run(tmp / "one", [[*RUN, "--data-dir", subset, "--workdir", tmp / "one" / "run",
                            "--cpu-devices", "4"]])
  _ok(one)
  two = _run(tmp / "two", _processes(subset, tmp / "two" / "run"))
  _ok(two)
  return {"one": (one, tmp / "one" / "run"), "two": (two, tmp / "two" / "run")}


def test_two_processes_end_with_the_metrics_of_one_process_with_as_many_devices(runs):
  (_, one_dir), (two, two_dir) = runs["one"], runs["two"]
  single, multi = _metrics(one_dir), _metrics(two_dir)
  assert [m["epoch"] for m in multi] == [1, 2] == [m["epoch"] for m in single]
  for a, b in zip(single, multi, strict=True):
    for key in NUMBERS:
      assert abs(a[key] - b[key]) <= 1e-5, (a["epoch"], key, a[key], b[key])
    assert a["phase_shift"] == b["phase_shift"]  # The same kicks: the same steps.
  assert multi[-1]["train_loss"] < multi[0]["train_loss"]
  assert sorted(p.name for p in (two_dir / checkpoints.CHECKPOINT_DIR).iterdir()) == ["1", "2"]
  config = json.loads((two_dir / checkpoints.CONFIG_FILE).read_text())
  assert (config["num_processes"], config["process_id"], config["cpu_devices"]) == (2, 0, 2)
  (_, out0, _), (_, out1, _) = two
  assert out0.count(" epoch ") == 2 and "metrics: " in out0  # Process 0 logs ...
  assert " epoch " not in out1 and "metrics: " not in out1  # ... and process 1 does not.


def test_a_two_process_run_resumed_from_its_checkpoint_ends_where_the_uninterrupted_one_does(
    runs, subset, tmp_path):
  _, uninterrupted = runs["two"]
  workdir = tmp_path / "run"
  _ok(_run(tmp_path / "first", _processes(subset, workdir, "--epochs", "1")))
  assert [m["epoch"] for m in _metrics(workdir)] == [1]
  resumed = _run(tmp_path / "second", _processes(subset, workdir, "--resume"))
  _ok(resumed)
  assert "resumed" in resumed[0][1] and "after epoch 1" in resumed[0][1]
  assert _numbers(_metrics(workdir)) == _numbers(_metrics(uninterrupted))  # Bit for bit.


def test_processes_given_different_configs_stop_at_once_with_one_line(subset, tmp_path):
  start = time.monotonic()
  results = _run(tmp_path, _processes(subset, tmp_path / "run", per_process=[
      [], ["--learning-rate", "0.05"]]), timeout=120)
  for status, _, err in results:
    assert status == 2, err
    assert _one_line(err).endswith("error: the 2 processes were given different configs: "
                                   "process 1 has learning_rate=0.05 where process 0 has None")
  assert time.monotonic() - start < 60
  assert not (tmp_path / "run").exists()  # Nothing was written.


def test_an_unreachable_coordinator_is_a_one_line_error_within_the_timeout(tmp_path):
  port = _free_port()  # Nobody listens there.
  start = time.monotonic()
  [(status, _, err)] = _run(tmp_path, [[
      *RUN, "--workdir", tmp_path / "run", "--coordinator-address", f"127.0.0.1:{port}",
      "--num-processes", "2", "--process-id", "1", "--initialization-timeout", "3"]], timeout=60)
  assert status == 2, err
  assert f"error: no coordinator at 127.0.0.1:{port} after 3 s (" in _one_line(err)
  assert time.monotonic() - start < 3 + 30  # The timeout, plus starting Python and JAX.


def test_distributed_without_coordinates_or_cluster_manager_is_a_one_line_error(tmp_path):
  [(status, _, err)] = _run(tmp_path, [[*RUN, "--workdir", tmp_path / "run", "--distributed"]],
                            timeout=60)
  assert status == 2, err
  line = _one_line(err)
  assert "error: jax.distributed.initialize: coordinator_address should be defined." in line
  assert line.endswith("or run under a cluster manager JAX detects, e.g. srun)")


@pytest.mark.parametrize("argv,match", [
    (["--num-processes", "2", "--process-id", "2"],
     "process_id must be in 0..num_processes-1 = 0..1, got 2"),
    (["--num-processes", "0"], "num_processes must be >= 1, got 0"),
    (["--process-id", "-1"], "process_id must be >= 0, got -1"),
    (["--coordinator-address", "localhost"], "coordinator_address must be HOST:PORT, got "
     "'localhost'"),
    (["--initialization-timeout", "0"], "initialization_timeout must be >= 1, got 0"),
])
def test_bad_process_settings_are_one_line_errors(capsys, tmp_path, argv, match):
  code = cli.main(["train", "--workdir", str(tmp_path), *argv])  # Checked before JAX starts.
  err = capsys.readouterr().err
  assert code == 2 and _one_line(err).endswith(f"error: {match}"), err


def test_the_processes_rows_make_up_the_batches_of_one_process():
  split = learnable(70)
  for rows in (slice(0, 16), slice(16, 32)):
    whole = list(input_pipeline.train_batches(split, 32, 0, 1))
    part = list(input_pipeline.train_batches(split, 32, 0, 1, rows))
    assert len(part) == len(whole) == 2
    for (images, labels), (part_images, part_labels) in zip(whole, part, strict=True):
      np.testing.assert_array_equal(part_images, images[rows])
      np.testing.assert_array_equal(part_labels, labels[rows])
    whole = list(input_pipeline.eval_batches(split, 32))
    part = list(input_pipeline.eval_batches(split, 32, rows))
    assert len(part) == len(whole) == 3  # 70 = 32 + 32 + 6 and 26 masked.
    for a, b in zip(whole, part, strict=True):
      for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(y, x[rows])
  mesh = train.make_mesh(tiny_config())
  assert train.process_rows(mesh, 32) == slice(0, 32)  # One process holds every row.


def test_differences_name_each_setting_a_process_has_otherwise():
  assert distributed.differences([{"a": 1, "b": 2}, {"a": 1, "b": 2}]) == ""
  assert distributed.differences([{"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": 0, "b": 2}]) == (
      "process 1 has b=3 where process 0 has 2; process 2 has a=0 where process 0 has 1")
  config = tiny_config()
  distributed.check_agreement(config)  # One process: nothing to disagree with.
  distributed.raise_if_any(None)
  with pytest.raises(ValueError, match="mine"):
    distributed.raise_if_any(ValueError("mine"))
