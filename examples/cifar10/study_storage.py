"""The study's shared storage: opening a study, heartbeats, and which worker runs which trial.

A study lives in an Optuna RDB storage (:func:`make_storage`), a SQLite file or a
database server that several workers may share. :func:`open_study` creates a study
or loads one, refusing a study run with other settings. Every running trial sends
a heartbeat (:class:`Heartbeat`); a trial whose worker died (no heartbeat for the
grace period) is marked failed and queued again with the same hyperparameters and
seed. :func:`next_trial` starts a trial only while fewer than N are finished or
running, and :func:`optimize` runs a worker's trials until the study holds N
finished ones, waiting for those that run elsewhere.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from collections.abc import Callable, Iterator

import numpy as np
import optuna
from optuna.trial import TrialState

from examples.cifar10 import study_space

LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@contextlib.contextmanager
def _heartbeat_warnings_off() -> Iterator[None]:
  """Optuna warns that its heartbeat is experimental and meant for ``Study.optimize``;
  this module sends the heartbeats of the trials it asks for itself (:class:`Heartbeat`)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
    yield


def make_storage(url: str, heartbeat_interval: int, grace_period: int
                 ) -> optuna.storages.RDBStorage:
  """An RDB storage whose running trials send heartbeats; stale ones are retried."""
  kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
  with _heartbeat_warnings_off():
    return optuna.storages.RDBStorage(
        url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3))


def open_study(storage: optuna.storages.BaseStorage, name: str, settings: study_space.Settings,
               optimizer: str, *, pruner_startup_trials: int = 5) -> optuna.Study:
  """Creates or loads study ``name``; a loaded one must have the same settings."""
  study = optuna.create_study(
      study_name=name, storage=storage, direction="maximize", load_if_exists=True,
      sampler=optuna.samplers.TPESampler(seed=settings.seed),
      pruner=optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials))
  space = study_space.SEARCH_SPACES[optimizer]
  wanted = {"optimizer": optimizer, "settings": settings.to_json(),
            "search_space": {k: list(v) for k, v in space.items()}}
  saved = study.user_attrs
  if "settings" not in saved:
    for key, value in wanted.items():
      study.set_user_attr(key, value)
  else:
    for key, value in wanted.items():
      if saved.get(key) != json.loads(json.dumps(value)):
        raise study_space.StudyError(
            f"study {name} in this storage was run with another {key} ({saved.get(key)} "
            f"instead of {value}); use another --study-name, --storage or --workdir")
  return study


def record_heartbeat(study: optuna.Study, number: int) -> None:
  """Records that trial ``number`` of ``study`` is alive (the storage must enable heartbeats)."""
  storage = study._storage  # pylint: disable=protected-access  # Optuna has no public handle.
  storage.record_heartbeat(storage.get_trial_id_from_study_id_trial_number(
      storage.get_study_id_from_name(study.study_name), number))


class Heartbeat:
  """Records a heartbeat for every registered trial every ``interval`` seconds (a thread)."""

  def __init__(self, study: optuna.Study, interval: float):
    self._study = study
    self._interval = interval
    self._numbers: set[int] = set()
    self._lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)

  def __enter__(self) -> Heartbeat:
    self._thread.start()
    return self

  def __exit__(self, *exc) -> None:
    self._stop.set()
    self._thread.join()

  def add(self, trial: optuna.Trial) -> None:
    """Keeps ``trial`` alive (:func:`next_trial` has recorded its first heartbeat)."""
    with self._lock:
      self._numbers.add(trial.number)

  def remove(self, trial: optuna.Trial) -> None:
    with self._lock:
      self._numbers.discard(trial.number)

  def _run(self) -> None:
    while not self._stop.wait(self._interval):
      with self._lock:
        numbers = sorted(self._numbers)
      for number in numbers:
        record_heartbeat(self._study, number)


def next_trial(study: optuna.Study, n_trials: int, optimizer: str,
               settings: study_space.Settings) -> optuna.Trial | None:
  """A new (or re-queued) trial with its hyperparameters, or None when N are under way.

  Fails stale trials first (their retries are queued as WAITING). A trial is
  started when a WAITING one is queued or fewer than ``n_trials`` are finished or
  running. If two workers start one at the same moment, the one beyond
  ``n_trials`` (by trial number) is marked FAIL (user attribute ``surplus``).
  """
  with _heartbeat_warnings_off():
    optuna.storages.fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False, states=LIVE)
    if len(trials) >= n_trials and not any(t.state == TrialState.WAITING for t in trials):
      return None
    trial = study.ask()
  # A first heartbeat at once: if this worker dies before training, the trial goes stale.
  record_heartbeat(study, trial.number)
  # A sampler seeded from the trial number: reproducible, and different across workers.
  seed = int(np.random.SeedSequence([settings.seed, trial.number]).generate_state(1)[0])
  study.sampler = optuna.samplers.TPESampler(seed=seed)
  earlier = [t for t in study.get_trials(deepcopy=False, states=LIVE) if t.number < trial.number]
  if len(earlier) >= n_trials:
    trial.set_user_attr("surplus", True)
    study.tell(trial, state=TrialState.FAIL)
    return None
  if "seed" not in trial.user_attrs:  # A retried trial keeps its original seed.
    trial.set_user_attr("seed", settings.seed + trial.number)
  study_space.suggest(trial, optimizer)
  return trial


def optimize(study: optuna.Study, n_trials: int, run: Callable[[], None], budget: list[int],
             poll_seconds: float, log: Callable[[str], None]) -> bool:
  """Runs trials until the study holds ``n_trials`` finished ones; False if the budget ran out.

  When no trial is left to start but others run in other workers, waits for them
  (a dead worker's trial becomes stale and is queued again, then run here).
  """
  announced = False
  while True:
    run()
    if budget[0] <= 0 and len(study.get_trials(deepcopy=False, states=FINISHED)) < n_trials:
      return False
    with _heartbeat_warnings_off():
      optuna.storages.fail_stale_trials(study)
    pending = study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    if not pending:
      return True
    if any(t.state == TrialState.WAITING for t in pending):
      continue
    if not announced:
      log(f"{study.study_name}: waiting for {len(pending)} trial(s) running elsewhere")
      announced = True
    time.sleep(poll_seconds)
