"""How a worker trains the trials of a study: one by one, or K side by side.

:func:`run_one_by_one` trains each trial with :func:`train.train_and_evaluate`;
:func:`run_side_by_side` trains up to K at once with :mod:`vmapped_trials`, a
finished or pruned trial's slot taking the next trial. Both take their trials from
:func:`study_storage.next_trial`, report each epoch's validation accuracy to the
median pruner and tell the study how each trial ended.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
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


def _finish(study: optuna.Study, trial: optuna.Trial, state: TrialState, history: Sequence[Any],
            log: Callable[[str], None]) -> None:
  trial.set_user_attr("epochs", len(history))
  trial.set_user_attr("val_accuracy", [m["test_accuracy"] for m in history])
  trial.set_user_attr("train_loss", [m["train_loss"] for m in history])
  value = history[-1]["test_accuracy"] if state == TrialState.COMPLETE else None
  study.tell(trial, value, state=state)
  params = ", ".join(f"{k}={v:.3g}" for k, v in trial.params.items())
  log(f"{study.study_name} trial {trial.number}: {state.name.lower()} after {len(history)} "
      f"epochs, val acc {history[-1]['test_accuracy']:.2%} ({params})")


def _report_epoch(trial: optuna.Trial, epoch: int, accuracy: float, epochs: int) -> bool:
  """Reports the epoch's validation accuracy; True if the trial should be pruned."""
  trial.report(accuracy, epoch)
  return epoch < epochs and trial.should_prune()


def run_one_by_one(study: optuna.Study, n_trials: int, optimizer: str,
                   settings: study_space.Settings,
                   data: tuple[input_pipeline.Split, input_pipeline.Split],
                   heartbeat: study_storage.Heartbeat, budget: list[int],
                   log: Callable[[str], None]) -> None:
  """Trains trials one at a time with :func:`train.train_and_evaluate` until none is left."""
  while budget[0] > 0 and (trial := study_storage.next_trial(study, n_trials, optimizer, settings)):
    heartbeat.add(trial)
    history: list[dict[str, Any]] = []

    def callback(epoch, metrics, trial=trial, history=history):
      history.append(metrics)
      if _report_epoch(trial, epoch, metrics["test_accuracy"], settings.epochs):
        raise optuna.TrialPruned()

    try:
      train.train_and_evaluate(trial_config(trial, optimizer, settings), data, log=None,
                               callback=callback)
      _finish(study, trial, TrialState.COMPLETE, history, log)
    except optuna.TrialPruned:
      _finish(study, trial, TrialState.PRUNED, history, log)
    except BaseException:
      with contextlib.suppress(Exception):  # It may have been told already.
        study.tell(trial, state=TrialState.FAIL)
      raise
    finally:
      heartbeat.remove(trial)
    budget[0] -= 1


def run_side_by_side(study: optuna.Study, n_trials: int, optimizer: str,
                     settings: study_space.Settings,
                     data: tuple[input_pipeline.Split, input_pipeline.Split],
                     heartbeat: study_storage.Heartbeat, budget: list[int],
                     log: Callable[[str], None], k: int, conv_batching: str = "auto") -> None:
  """Trains up to ``k`` trials at once; a finished or pruned slot takes the next trial."""
  train_split, val_split = data
  slots: list[optuna.Trial | None] = []
  while len(slots) < min(k, budget[0]) and (
      trial := study_storage.next_trial(study, n_trials, optimizer, settings)):
    heartbeat.add(trial)
    slots.append(trial)
  if not slots:
    return
  budget[0] -= len(slots)
  steps = input_pipeline.num_batches(len(train_split), settings.batch_size)
  try:
    trials = vmapped_trials.SideBySide.create(
        [trial_config(t, optimizer, settings) for t in slots], steps, conv_batching,
        injected=tuple(study_space.SEARCH_SPACES[optimizer]))
    epochs = [0] * len(slots)
    histories: list[list[dict[str, Any]]] = [[] for _ in slots]
    while any(slots):
      epochs = [e + 1 for e in epochs]
      metrics = trials.train_epoch(train_split, epochs)
      results = trials.evaluate(val_split)
      for i, trial in enumerate(slots):
        if trial is None:
          continue  # An idle slot trains on; its results are ignored.
        histories[i].append({**metrics[i], "test_loss": results[i]["loss"],
                             "test_accuracy": results[i]["accuracy"]})
        prune = _report_epoch(trial, epochs[i], results[i]["accuracy"], settings.epochs)
        if not prune and epochs[i] < settings.epochs:
          continue
        _finish(study, trial, TrialState.PRUNED if prune else TrialState.COMPLETE,
                histories[i], log)
        heartbeat.remove(trial)
        slots[i] = None
        if budget[0] > 0 and (
            new := study_storage.next_trial(study, n_trials, optimizer, settings)):
          heartbeat.add(new)
          trials.replace(i, trial_config(new, optimizer, settings))
          slots[i], epochs[i], histories[i] = new, 0, []
          budget[0] -= 1
  except BaseException:
    for trial in slots:
      if trial is not None:
        heartbeat.remove(trial)
        with contextlib.suppress(Exception):  # It may have been told already.
          study.tell(trial, state=TrialState.FAIL)
    raise
