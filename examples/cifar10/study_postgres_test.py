"""The study on a PostgreSQL server: worker processes share one study, a killed one's trial
is retried by another, an unreachable database is a one-line error.

Real components: a throwaway server (``conftest.postgres``), the command line in
subprocesses, SIGKILL. Skipped, saying why, where PostgreSQL or psycopg is missing (failed
under CI, whose ``.ci/run`` installs both).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from examples.cifar10 import __main__ as cli
from examples.cifar10 import study
from examples.cifar10.conftest import REPO, learnable, require_postgres, tiny_config, write_cifar10

TRIALS = 5
HEARTBEAT, GRACE = 1, 4


def _command(url: str, data_dir: Path, workdir: Path) -> list[str]:
  """A study worker of ``TRIALS`` one-epoch Adam trials of a width-4 CNN on 96 images."""
  return [sys.executable, "-m", "examples.cifar10", "study", "--config", "default",
          "--storage", url, "--workdir", str(workdir), "--data-dir", str(data_dir),
          "--no-download", "--no-progress", "--width", "4", "--epochs", "1", "--batch-size", "32",
          "--eval-batch-size", "64", "--validation-fraction", "0.25", "--optimizers", "adam",
          "--trials", str(TRIALS), "--heartbeat-interval", str(HEARTBEAT),
          "--grace-period", str(GRACE)]


def _start(command: list[str]) -> subprocess.Popen:
  env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
  return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)


def _trials(storage: optuna.storages.BaseStorage) -> list[optuna.trial.FrozenTrial]:
  try:
    return optuna.load_study(study_name="cifar10-adam", storage=storage).get_trials()
  except KeyError:  # No worker has created the study yet.
    return []


def test_three_workers_share_one_study_and_retry_a_killed_workers_trial(postgres, tmp_path):
  write_cifar10(tmp_path / "data", learnable(128, 4), learnable(32, 5))

  def command(i):
    return _command(postgres, tmp_path / "data", tmp_path / f"host{i}")

  workers = [_start(command(i)) for i in range(3)]
  victim = workers[2]
  try:
    storage = study.create_storage(tiny_config(storage=postgres), tmp_path)
    # SIGKILL the third worker in the middle of its first trial (its heartbeat thread has
    # recorded one before the trial began).
    deadline = time.monotonic() + 120
    owner = f"{socket.gethostname()}:{victim.pid}"
    while not any(t.user_attrs.get("worker") == owner for t in _trials(storage)):
      assert time.monotonic() < deadline and victim.poll() is None, "the worker took no trial"
      time.sleep(0.2)
    time.sleep(0.5)  # Its trial is compiling its train step.
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(30) == -signal.SIGKILL
    (killed,) = [t for t in _trials(storage)
                 if t.user_attrs.get("worker") == owner and t.state == TrialState.RUNNING]
    # Its replacement starts once the trial is stale (as a requeued job would): whether the
    # two others are still running or done, a worker fails the trial and one runs it again.
    time.sleep(GRACE)
    workers.append(_start(command(3)))
    live = [w for w in workers if w is not victim]
    outputs = [w.communicate(timeout=300)[0] for w in live]
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
        w.wait()
  assert [w.returncode for w in live] == [0, 0, 0], outputs

  trials = _trials(storage)
  counts = Counter(t.state for t in trials)
  finished = [t for t in trials if t.state in study.FINISHED]
  assert len(finished) == TRIALS, (counts, outputs)  # Exactly N, each number once:
  assert len({t.number for t in finished}) == TRIALS
  assert counts[TrialState.RUNNING] == counts[TrialState.WAITING] == 0, counts
  # The only failed trial that trained is the killed one: the heartbeat failed it...
  surplus = [t for t in trials if t.user_attrs.get("surplus")]
  assert all(t.state == TrialState.FAIL and not t.params for t in surplus)
  failed = [t for t in trials if t.state == TrialState.FAIL and not t.user_attrs.get("surplus")]
  assert [t.number for t in failed] == [killed.number], (counts, outputs)
  # ... and one of the other workers ran it again, once, with its hyperparameters and seed.
  (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
  assert retry.state in study.FINISHED and retry.system_attrs["retry_history"] == [killed.number]
  assert retry.params == failed[0].params and retry.user_attrs["seed"] == killed.number
  hosts = {f"{socket.gethostname()}:{w.pid}" for w in live}
  assert retry.user_attrs["worker"] in hosts
  by_worker = Counter(t.user_attrs["worker"] for t in finished)
  assert set(by_worker) <= hosts and len(by_worker) >= 2, by_worker  # Shared, not one by one.
  # The last worker to finish wrote the report, with the killed trial counted as failed.
  reports = [p.read_text() for p in tmp_path.glob("host*/results.md")]
  assert reports and all(f"| adam | {TRIALS} ({TRIALS} / 0) | 1 |" in r for r in reports), reports


def test_an_unreachable_database_is_a_one_line_error(tmp_path, capsys):
  require_postgres(server=False)
  with socket.socket() as s:  # A port that nothing listens on: refused at once.
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
  url = f"postgresql://postgres@127.0.0.1:{port}/study"
  start = time.monotonic()
  assert cli.main(_command(url, tmp_path, tmp_path / "w")[3:]) == 2
  assert time.monotonic() - start < study.CONNECT_TIMEOUT
  out, err = capsys.readouterr()
  assert not out and len(err.strip().splitlines()) == 1, err
  assert err.startswith(f"python -m examples.cifar10 study: error: cannot open the storage "
                        f"{url}: OperationalError: ") and "Connection refused" in err


def test_a_server_that_never_answers_times_out(tmp_path, monkeypatch):
  require_postgres(server=False)
  monkeypatch.setattr(study, "CONNECT_TIMEOUT", 2)  # The default connect timeout: 10 s.
  with socket.socket() as silent:  # Accepts the TCP connection, never says a word.
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"postgresql://postgres@127.0.0.1:{silent.getsockname()[1]}/study"
    for given, waited in ((url, 2), (url + "?connect_timeout=1", 1)):  # The URL's wins.
      start = time.monotonic()
      with pytest.raises(study.StudyError, match="^cannot open the storage .*timeout") as error:
        study.create_storage(tiny_config(storage=given), tmp_path)
      assert waited - 0.5 < time.monotonic() - start < waited + 5
      assert "\n" not in str(error.value)
