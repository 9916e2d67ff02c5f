"""Tests of the study: a killed worker's trial, resume, several workers, the report."""

from __future__ import annotations

import json
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from examples.cifar10 import study
from examples.cifar10.conftest import learnable, tiny_config, write_cifar10


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("cifar")
  write_cifar10(root, learnable(128, 4), learnable(32, 5))
  return root


def _config(data_dir, **settings):
  return tiny_config(**{"data_dir": str(data_dir), "validation_fraction": 0.25, "trials": 2,
                        "optimizers": "adam,phase_shift", "heartbeat_interval": 1,
                        "grace_period": 60, **settings})


def _trials(config, workdir, name):
  storage = study.create_storage(config, workdir)
  return optuna.load_study(study_name=f"cifar10-{name}", storage=storage).get_trials()


@pytest.mark.filterwarnings("ignore:Target and region quantiles")  # Importances of 2 trials.
def test_a_killed_workers_trial_is_retried_and_the_study_completes(data_dir, tmp_path):
  config = _config(data_dir)
  said: list[str] = []
  assert not study.run_study(_config(data_dir, worker_trials=1), tmp_path, said.append)
  assert "not finished yet (cifar10-adam 1/2, cifar10-phase_shift 1/2" in said[-1]
  assert not (tmp_path / "results.md").exists()

  # A worker that was killed while training phase_shift's second trial: RUNNING, a heartbeat.
  storage = study.create_storage(config, tmp_path)
  handle = optuna.load_study(study_name="cifar10-phase_shift", storage=storage)
  with pytest.warns(UserWarning, match="Heartbeat of storage"):  # Optuna: not in optimize.
    killed = handle.ask()
  killed.set_user_attr("seed", killed.number)
  for name, (low, high) in study.SEARCH_SPACES["phase_shift"].items():
    killed.suggest_float(name, low, high, log=True)
  storage.record_heartbeat(killed._trial_id)  # pylint: disable=protected-access

  # Rerun at once: adam's last trial runs; phase_shift's is taken by the killed worker,
  # whose heartbeat is fresh, so this worker neither waits nor starts a third.
  start = time.monotonic()
  assert not study.run_study(config, tmp_path, said.append)
  assert time.monotonic() - start < 30 and "cifar10-phase_shift 1/2" in said[-1]
  assert [t.state for t in _trials(config, tmp_path, "phase_shift")] == [
      TrialState.COMPLETE, TrialState.RUNNING]

  # Rerun once the heartbeat is older than the grace period: failed, retried, complete.
  time.sleep(2.5)
  assert study.run_study(_config(data_dir, grace_period=2), tmp_path, said.append)
  trials = _trials(config, tmp_path, "phase_shift")
  assert [t.state for t in trials] == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
  retry = trials[2]
  assert retry.system_attrs["failed_trial"] == killed.number
  assert retry.params == trials[1].params and retry.user_attrs["seed"] == killed.number
  assert [t.state for t in _trials(config, tmp_path, "adam")] == [TrialState.COMPLETE] * 2

  best = json.loads((tmp_path / "best_params.json").read_text())
  summaries = json.loads((tmp_path / "results.json").read_text())["optimizers"]
  assert [(s["optimizer"], s["complete"], s["failed"]) for s in summaries] == [
      ("adam", 2, 0), ("phase_shift", 2, 1)]
  for s in summaries:
    assert best[s["optimizer"]] == s["best"] and 0 <= s["best"]["test_accuracy"] <= 1
  assert (tmp_path / "history.png").stat().st_size > 1000
  assert (tmp_path / "importances_phase_shift.png").stat().st_size > 1000

  # A rerun with one optimizer starts nothing and keeps the other in the report.
  (tmp_path / "importances_phase_shift.png").unlink()
  assert study.run_study(_config(data_dir, optimizers="adam"), tmp_path, said.append)
  assert "| phase_shift | 2 (2 / 0) | 1 |" in (tmp_path / "results.md").read_text()
  assert (tmp_path / "importances_phase_shift.png").exists()
  assert len(_trials(config, tmp_path, "adam")) == 2


def test_two_workers_share_the_trials_without_waiting(data_dir, tmp_path):
  config = _config(data_dir)
  said: dict[str, list[str]] = {"a": [], "b": []}
  done: dict[str, bool] = {}

  def worker(name):
    done[name] = study.run_study(config, tmp_path, said[name].append)

  threads = [threading.Thread(target=worker, args=(n,)) for n in said]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  for name in ("adam", "phase_shift"):  # Trials are claimed under the storage's lock:
    states = [t.state for t in _trials(config, tmp_path, name)]  # no surplus one.
    assert states == [TrialState.COMPLETE] * 2, (name, states)
  assert any(done.values()) and (tmp_path / "results.md").exists()
  assert all(any(" trial " in line for line in lines) for lines in said.values()), said


def test_a_study_resumed_with_other_settings_is_refused(data_dir, tmp_path):
  config = _config(data_dir)
  storage = study.create_storage(config, tmp_path)
  study.open_study(storage, config, "adam")
  study.open_study(storage, _config(data_dir, trials=5, grace_period=30), "adam")  # May change.
  with pytest.raises(study.StudyError, match="was run with epochs=1, not 2"):
    study.open_study(storage, _config(data_dir, epochs=2), "adam")


def test_a_trial_created_past_the_count_is_failed_before_it_trains(tmp_path, caplog):
  config = _config(tmp_path / "no-data", trials=1)  # It never reads the data.
  storage = study.create_storage(config, tmp_path)
  handle = study.open_study(storage, config, "adam")
  with pytest.warns(UserWarning, match="Heartbeat of storage"):  # Optuna: not in optimize.
    last = handle.ask()  # Another worker has just taken the only trial...
  study.quiet_surplus()
  optuna.logging.enable_propagation()  # Let caplog see what Optuna prints.
  caplog.clear()
  try:  # ... and this one passed the count at the same moment (as run_study runs it).
    handle.optimize(lambda t: study.objective(t, study.trial_config(config, "adam"), {}),
                    n_trials=1, catch=(study.Surplus,))
  finally:
    optuna.logging.disable_propagation()
  running, surplus = handle.get_trials()
  assert (running.number, running.state, surplus.state) == (0, TrialState.RUNNING,
                                                            TrialState.FAIL)
  assert surplus.user_attrs["surplus"] and not surplus.params  # Nothing sampled or trained.
  assert study.taken_before(last) == 0
  assert not [r for r in caplog.records if "failed" in r.getMessage()], caplog.text
  last.set_user_attr("seed", 0)
  handle.tell(last, 0.5)
  summary = study.summarize(handle, top=5)
  assert (summary["complete"], summary["failed"]) == (1, 0)  # Not counted as a failure.
