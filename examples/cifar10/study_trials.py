"""How a worker trains the trials of a study: one by one, or K side by side.

:func:`run_one_by_one` trains each trial with :func:`train.train_and_evaluate`;
:func:`run_side_by_side` trains up to K at once with :mod:`vmapped_trials`, a
finished or pruned trial's slot taking the next trial. Both take their trials from
:func:`study_storage.next_trial`, report each epoch's validation accuracy to the
median pruner and tell the study how each trial ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from examples.cifar10 import input_pipeline
from examples.cifar10 import study_space
from examples.cifar10 import study_storage
from examples.cifar10 import train
from examples.cifar10 import vmapped_trials


def trial_config(trial: optuna.Trial | optuna.trial.FrozenTrial, optimizer: str,
                 settings: study_space.Settings) -> train.Config:
  """The training configuration of ``trial``: its hyperparameters and seed, ``settings``' rest."""
  return settings.config(optimizer, trial.params, trial.user_attrs["seed"])


def _start(study: optuna.Study, n_trials: int, optimizer: str, settings: study_space.Settings,
           heartbeat: study_storage.Heartbeat, budget: list[int]) -> optuna.Trial | None:
  """The next trial, its heartbeat on and one trial of the worker's budget spent; None if none."""
  if budget[0] <= 0:
    return None
  trial = study_storage.next_trial(study, n_trials, optimizer, settings)
  if trial is not None:
    heartbeat.add(trial)
    budget[0] -= 1
  return trial


def _end_epoch(study: optuna.Study, trial: optuna.Trial, history: Sequence[dict[str, Any]],
               settings: study_space.Settings, heartbeat: study_storage.Heartbeat,
               log: Callable[[str], None]) -> bool:
  """Reports the last epoch of ``history`` to the pruner; True once the trial is over and told.

  A trial is over after its last epoch (complete) or when the pruner stops it (pruned).
  """
  epoch, accuracy = len(history), history[-1]["test_accuracy"]
  trial.report(accuracy, epoch)
  prune = epoch < settings.epochs and trial.should_prune()
  if not prune and epoch < settings.epochs:
    return False
  state = TrialState.PRUNED if prune else TrialState.COMPLETE
  trial.set_user_attr("epochs", epoch)
  trial.set_user_attr("val_accuracy", [m["test_accuracy"] for m in history])
  trial.set_user_attr("train_loss", [m["train_loss"] for m in history])
  study.tell(trial, accuracy if state == TrialState.COMPLETE else None, state=state)
  heartbeat.remove(trial)
  params = ", ".join(f"{k}={v:.3g}" for k, v in trial.params.items())
  log(f"{study.study_name} trial {trial.number}: {state.name.lower()} after {epoch} "
      f"epochs, val acc {accuracy:.2%} ({params})")
  return True


def _fail(study: optuna.Study, trials: Iterable[optuna.Trial | None],
          heartbeat: study_storage.Heartbeat) -> None:
  """Tells the study that ``trials`` (those still running) failed."""
  for trial in trials:
    if trial is not None:
      heartbeat.remove(trial)
      with contextlib.suppress(Exception):  # It may have been told already.
        study.tell(trial, state=TrialState.FAIL)


def run_one_by_one(study: optuna.Study, n_trials: int, optimizer: str,
                   settings: study_space.Settings,
                   data: tuple[input_pipeline.Split, input_pipeline.Split],
                   heartbeat: study_storage.Heartbeat, budget: list[int],
                   log: Callable[[str], None]) -> None:
  """Trains trials one at a time with :func:`train.train_and_evaluate` until none is left."""
  while trial := _start(study, n_trials, optimizer, settings, heartbeat, budget):
    history: list[dict[str, Any]] = []

    def callback(_epoch, metrics, trial=trial, history=history):  # True stops training.
      history.append(metrics)
      return _end_epoch(study, trial, history, settings, heartbeat, log)

    try:
      train.train_and_evaluate(trial_config(trial, optimizer, settings), data, log=None,
                               callback=callback)
    except BaseException:
      _fail(study, [trial], heartbeat)
      raise


def run_side_by_side(study: optuna.Study, n_trials: int, optimizer: str,
                     settings: study_space.Settings,
                     data: tuple[input_pipeline.Split, input_pipeline.Split],
                     heartbeat: study_storage.Heartbeat, budget: list[int],
                     log: Callable[[str], None], k: int, conv_batching: str = "auto") -> None:
  """Trains up to ``k`` trials at once; a finished or pruned slot takes the next trial."""
  train_split, val_split = data
  slots: list[optuna.Trial | None] = []
  while len(slots) < k and (trial := _start(study, n_trials, optimizer, settings, heartbeat,
                                            budget)):
    slots.append(trial)
  if not slots:
    return
  steps = input_pipeline.num_batches(len(train_split), settings.batch_size)
  try:
    side = vmapped_trials.SideBySide.create(
        [trial_config(t, optimizer, settings) for t in slots], steps, conv_batching,
        injected=tuple(study_space.SEARCH_SPACES[optimizer]))
    histories: list[list[dict[str, Any]]] = [[] for _ in slots]
    while any(slots):
      # An idle slot (None) trains on in the order of epoch 1; its results are ignored.
      metrics = side.train_epoch(train_split, [len(h) + 1 for h in histories])
      results = side.evaluate(val_split)
      for i, trial in enumerate(slots):
        if trial is None:
          continue
        histories[i].append({**metrics[i], "test_loss": results[i]["loss"],
                             "test_accuracy": results[i]["accuracy"]})
        if not _end_epoch(study, trial, histories[i], settings, heartbeat, log):
          continue
        slots[i], histories[i] = None, []
        if new := _start(study, n_trials, optimizer, settings, heartbeat, budget):
          slots[i] = new
          side.replace(i, trial_config(new, optimizer, settings))
  except BaseException:
    _fail(study, slots, heartbeat)
    raise
