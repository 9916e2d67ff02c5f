"""The optimizer study: an Optuna search per optimizer (Adam vs PhaseShift), resumable and shareable.

``python -m examples.cifar10 study --optimizers adam,phase_shift --trials 35 --epochs 10``

* One Optuna study per optimizer (``<study-name>-<optimizer>``) in one RDB storage,
  a SQLite file in the run directory by default. The search space is
  :data:`SEARCH_SPACES` (all log-uniform); the sampler is TPE, seeded per trial
  from ``(--seed, trial number)``; a median pruner stops a trial whose validation
  accuracy after an epoch is below the median of earlier trials at that epoch.
* The validation split is held out from the training set (``--validation-fraction``,
  the same images for every trial); trials never see the test set. The objective is
  the validation accuracy after the last epoch. Only the best trial of each optimizer
  is evaluated on the test set, by training its configuration once more (same seed,
  same data: the same model).
* ``--trials N`` is the number of finished (complete or pruned) trials the study
  must hold; a rerun continues a stopped or killed study up to N. Every running
  trial sends a heartbeat; a trial whose worker died (no heartbeat for
  ``--grace-period`` seconds) is marked failed and queued again with the same
  hyperparameters and seed. Several workers may run the same command at once:
  they share the storage, never start a trial beyond N, and each writes the report
  when the study is done.
* ``--side-by-side K`` trains K trials at once with :mod:`vmapped_trials`; a
  finished or pruned trial's slot takes the next trial.
* Outputs in the run directory: ``results.md`` (the table), ``results.json``,
  ``best_params.json``, ``history.png`` (optimization history of every optimizer)
  and ``importances_<optimizer>.png`` (parameter importances).
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import json
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from examples.cifar10 import input_pipeline
from examples.cifar10 import optimizers
from examples.cifar10 import train
from examples.cifar10 import vmapped_trials

# Log-uniform ranges of the searched hyperparameters. The PhaseShift kick is
# +-min(threshold, shift_boundary) per element, not scaled by the learning rate.
_KICK = {"threshold": (1e-6, 1e-1), "shift_boundary": (1e-6, 1e-1),
         "min_gradient_magnitude": (1e-6, 1.0)}
SEARCH_SPACES: dict[str, dict[str, tuple[float, float]]] = {
    "adam": {"learning_rate": (1e-5, 1e-1)},
    "phase_shift": {"learning_rate": (1e-3, 1.0), **_KICK},
    "phase_shift_adam": {"learning_rate": (1e-5, 1e-1), **_KICK},
    "sgd": {"learning_rate": (1e-3, 1.0)},
}
DEFAULT_WORKDIR = "runs/cifar10/study"
LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyError(Exception):
  """A study that cannot be run as asked (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every trial of a study shares; a resumed study must have the same."""

  epochs: int = 10
  model: str = "cnn"
  width: int | None = None
  batch_size: int = 128
  eval_batch_size: int = 512
  augment: bool = True
  schedule: str = "constant"
  validation_fraction: float = 0.1
  train_size: int | None = None
  seed: int = 0
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def config(self, optimizer: str, hparams: Mapping[str, Any], seed: int) -> train.Config:
    """The training configuration of one trial."""
    return train.Config(optimizer=optimizer, hparams={**self.fixed, **hparams},
                        model=self.model, width=self.width, epochs=self.epochs,
                        batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                        seed=seed, augment=self.augment, schedule=self.schedule)

  def to_json(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "fixed": dict(self.fixed)}


def suggest(trial: optuna.Trial, optimizer: str) -> dict[str, float]:
  """The trial's hyperparameters from ``SEARCH_SPACES[optimizer]``."""
  return {name: trial.suggest_float(name, low, high, log=True)
          for name, (low, high) in SEARCH_SPACES[optimizer].items()}


# ------------------------------------------------------------------------------ storage


def make_storage(url: str, heartbeat_interval: int, grace_period: int
                 ) -> optuna.storages.RDBStorage:
  """An RDB storage whose running trials send heartbeats; stale ones are retried."""
  kwargs = {"connect_args": {"timeout": 120}} if url.startswith("sqlite") else None
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    return optuna.storages.RDBStorage(
        url, engine_kwargs=kwargs, heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
            max_retry=3))


def open_study(storage: optuna.storages.BaseStorage, name: str, settings: Settings,
               optimizer: str, *, pruner_startup_trials: int = 5) -> optuna.Study:
  """Creates or loads study ``name``; a loaded one must have the same settings."""
  study = optuna.create_study(
      study_name=name, storage=storage, direction="maximize", load_if_exists=True,
      sampler=optuna.samplers.TPESampler(seed=settings.seed),
      pruner=optuna.pruners.MedianPruner(n_startup_trials=pruner_startup_trials))
  wanted = {"optimizer": optimizer, "settings": settings.to_json(),
            "search_space": {k: list(v) for k, v in SEARCH_SPACES[optimizer].items()}}
  saved = study.user_attrs
  if "settings" not in saved:
    for key, value in wanted.items():
      study.set_user_attr(key, value)
  else:
    for key, value in wanted.items():
      if saved.get(key) != json.loads(json.dumps(value)):
        raise StudyError(f"study {name} in this storage was run with another {key} "
                         f"({saved.get(key)} instead of {value}); use another --study-name, "
                         "--storage or --workdir")
  return study


@contextlib.contextmanager
def _heartbeat_warnings_off() -> Iterator[None]:
  """Optuna warns that its heartbeat is experimental and meant for ``Study.optimize``;
  this module sends the heartbeats of the trials it asks for itself (:class:`Heartbeat`)."""
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", "Heartbeat of storage is supposed to be used")
    yield


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
    record_heartbeat(self._study, trial.number)
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


# ---------------------------------------------------------------------------- trials


def next_trial(study: optuna.Study, n_trials: int, optimizer: str,
               settings: Settings) -> optuna.Trial | None:
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
  suggest(trial, optimizer)
  return trial


def trial_config(trial: optuna.Trial | optuna.trial.FrozenTrial, optimizer: str,
                 settings: Settings) -> train.Config:
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


def run_one_by_one(study: optuna.Study, n_trials: int, optimizer: str, settings: Settings,
                   data: tuple[input_pipeline.Split, input_pipeline.Split], heartbeat: Heartbeat,
                   budget: list[int], log: Callable[[str], None]) -> None:
  """Trains trials one at a time with :func:`train.train_and_evaluate` until none is left."""
  while budget[0] > 0 and (trial := next_trial(study, n_trials, optimizer, settings)):
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


def run_side_by_side(study: optuna.Study, n_trials: int, optimizer: str, settings: Settings,
                     data: tuple[input_pipeline.Split, input_pipeline.Split],
                     heartbeat: Heartbeat, budget: list[int], log: Callable[[str], None],
                     k: int, conv_batching: str = "auto") -> None:
  """Trains up to ``k`` trials at once; a finished or pruned slot takes the next trial."""
  train_split, val_split = data
  slots: list[optuna.Trial | None] = []
  while len(slots) < min(k, budget[0]) and (
      trial := next_trial(study, n_trials, optimizer, settings)):
    heartbeat.add(trial)
    slots.append(trial)
  if not slots:
    return
  budget[0] -= len(slots)
  steps = input_pipeline.num_batches(len(train_split), settings.batch_size)
  try:
    trials = vmapped_trials.SideBySide.create(
        [trial_config(t, optimizer, settings) for t in slots], steps, conv_batching,
        injected=tuple(SEARCH_SPACES[optimizer]))
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
        if budget[0] > 0 and (new := next_trial(study, n_trials, optimizer, settings)):
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


# ----------------------------------------------------------------------------- report


def summarize(study: optuna.Study, top: int) -> dict[str, Any]:
  """Counts, best trial, mean and std of the top trials' accuracy, and times."""
  trials = study.get_trials(deepcopy=False)
  complete = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                    key=lambda t: -t.value)
  finished = [t for t in trials if t.state in FINISHED]
  values = np.array([t.value for t in complete[:top]], float)
  starts = [t.datetime_start for t in finished if t.datetime_start]
  ends = [t.datetime_complete for t in finished if t.datetime_complete]
  durations = [t.duration.total_seconds() for t in finished if t.duration]
  span = (max(ends) - min(starts)).total_seconds() if starts and ends else math.nan
  summary = {
      "study": study.study_name, "optimizer": study.user_attrs.get("optimizer"),
      "complete": len(complete),
      "pruned": sum(t.state == TrialState.PRUNED for t in trials),
      "failed": sum(t.state == TrialState.FAIL for t in trials),
      "top": len(values),
      "top_mean": float(values.mean()) if len(values) else math.nan,
      "top_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
      "study_seconds": span, "trial_seconds": float(sum(durations)),
      "seconds_per_trial": span / len(finished) if finished else math.nan,
      "best": None,
  }
  if complete:
    best = complete[0]
    summary["best"] = {"trial": best.number, "val_accuracy": best.value,
                       "params": dict(best.params), "seed": best.user_attrs["seed"]}
  return summary


def final_test(study: optuna.Study, summary: dict[str, Any], settings: Settings,
               data: tuple[input_pipeline.Split, input_pipeline.Split],
               log: Callable[[str], None]) -> dict[str, Any] | None:
  """Trains the best trial's configuration again and evaluates it on the test set (cached)."""
  best = summary["best"]
  if best is None:
    return None
  cached = study.user_attrs.get("final_test")
  if cached and cached.get("trial") == best["trial"]:
    return cached
  config = settings.config(summary["optimizer"], best["params"], best["seed"])
  history = train.train_and_evaluate(config, data, log=None)
  result = {"trial": best["trial"], "test_accuracy": history[-1]["test_accuracy"],
            "test_loss": history[-1]["test_loss"]}
  study.set_user_attr("final_test", result)
  log(f"{study.study_name}: best trial {best['trial']} on the test set: "
      f"{result['test_accuracy']:.2%}")
  return result


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "-"
  return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def results_table(summaries: Sequence[dict[str, Any]]) -> str:
  """The markdown table of a study's results, one row per optimizer."""
  lines = ["| optimizer | trials (complete / pruned) | best val acc | top-k val acc, mean ± std "
           "| test acc (best) | study time | time per trial |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for s in summaries:
    best, test = s["best"], s.get("final_test")
    if not s["top"]:
      mean = "-"
    elif s["top"] == 1:
      mean = f"{s['top_mean']:.2%} (k=1)"
    else:
      mean = f"{s['top_mean']:.2%} ± {s['top_std']:.2%} (k={s['top']})"
    cells = [s["optimizer"], f"{s['complete'] + s['pruned']} ({s['complete']} / {s['pruned']})",
             f"{best['val_accuracy']:.2%}" if best else "-", mean,
             f"{test['test_accuracy']:.2%}" if test else "-",
             _duration(s["study_seconds"]), _duration(s["seconds_per_trial"])]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "| optimizer | best trial | hyperparameters |", "| --- | --- | --- |"]
  for s in summaries:
    if s["best"]:
      params = ", ".join(f"{k}={v:.4g}" for k, v in s["best"]["params"].items())
      lines.append(f"| {s['optimizer']} | {s['best']['trial']} | {params} |")
  return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
  """``value`` with NaN floats replaced by None (strict JSON has no NaN)."""
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_finite(v) for v in value]
  return None if isinstance(value, float) and not math.isfinite(value) else value


def _write(path: Path, text: str) -> None:
  """Writes atomically, so that concurrent workers never leave a half-written file."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_text(text, encoding="utf-8")
  os.replace(tmp, path)


def write_plots(studies: Sequence[optuna.Study], workdir: Path) -> dict[str, str]:
  """history.png of all studies and importances_<optimizer>.png; returns what was skipped."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from optuna.visualization import matplotlib as vis  # pylint: disable=import-outside-toplevel

  skipped: dict[str, str] = {}
  jobs = [("history.png", "optimization history (objective: validation accuracy)",
           lambda: vis.plot_optimization_history(list(studies)))]
  jobs += [(f"importances_{s.user_attrs['optimizer']}.png",
            f"hyperparameter importances: {s.user_attrs['optimizer']}",
            lambda s=s: vis.plot_param_importances(s)) for s in studies]
  for name, title, plot in jobs:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        axes = np.ravel(plot())[0]
      except (ValueError, RuntimeError) as e:  # e.g. importances need two complete trials.
        skipped[name] = str(e)
        continue
    figure = axes.figure
    for loc in ("left", "center", "right"):  # Optuna's own titles.
      axes.set_title("", loc=loc)
    figure.suptitle(title)
    figure.set_size_inches(10, 5)
    figure.tight_layout()
    tmp = workdir / f".{name}.{os.getpid()}.tmp.png"
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, workdir / name)
    plt.close(figure)
  return skipped


def write_report(studies: Sequence[optuna.Study], summaries: list[dict[str, Any]],
                 workdir: Path, command: str, seconds: float) -> None:
  """results.md, results.json, best_params.json and the plots, in ``workdir``."""
  table = results_table(summaries)
  skipped = write_plots(studies, workdir)
  notes = "".join(f"- {name} not drawn: {why}\n" for name, why in skipped.items())
  _write(workdir / "results.md",
         f"# Optimizer study\n\n`{command}`\n\nWall time of this run: {_duration(seconds)}. "
         "Study time: from the first trial's start to the last one's end (pauses between "
         "resumed runs included); time per trial: study time / finished trials. Accuracies "
         "are on the validation split, except the test accuracy of the best trial.\n\n"
         f"{table}" + (f"\n{notes}" if notes else ""))
  _write(workdir / "results.json", json.dumps(_finite(
      {"command": command, "seconds": seconds, "optimizers": summaries}), indent=2) + "\n")
  best = {s["optimizer"]: {**s["best"], **(s.get("final_test") or {})}
          for s in summaries if s["best"]}
  _write(workdir / "best_params.json", json.dumps(best, indent=2) + "\n")


# -------------------------------------------------------------------------------- CLI


def _assignment(text: str) -> tuple[str | None, str, Any]:
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise argparse.ArgumentTypeError(f"expected [OPTIMIZER.]NAME=VALUE, got {text!r}")
  try:
    value = ast.literal_eval(value)
  except (ValueError, SyntaxError):
    pass
  target, dot, name = key.rpartition(".")
  return (target if dot else None), name.strip().replace("-", "_"), value


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value


def add_study_parser(subparsers: Any) -> argparse.ArgumentParser:
  """Adds the ``study`` command to ``subparsers`` (of ``python -m examples.cifar10``)."""
  p = subparsers.add_parser(
      "study", help="Optuna study of optimizers' hyperparameters",
      description="An Optuna study per optimizer (TPE, median pruning on validation "
      "accuracy, validation split held out from the training set), stored in an RDB "
      "storage so that it resumes after a kill and several workers can share it. "
      "Writes results.md, results.json, best_params.json and plots into --workdir.",
      epilog="search spaces (log-uniform): " + "; ".join(
          f"{o}: " + ", ".join(f"{k} [{lo:g}, {hi:g}]" for k, (lo, hi) in s.items())
          for o, s in SEARCH_SPACES.items()))
  p.add_argument("--optimizers", default="adam,phase_shift",
                 help=f"comma-separated, from {', '.join(SEARCH_SPACES)} (default adam,phase_shift)")
  p.add_argument("--trials", type=_positive_int, default=35,
                 help="finished trials per optimizer the study must hold (default 35)")
  p.add_argument("--epochs", type=_positive_int, default=10, help="epochs per trial (default 10)")
  p.add_argument("--side-by-side", type=_positive_int, default=1, metavar="K",
                 help="train K trials at once, vmapped in one program (default 1: one by one)")
  p.add_argument("--conv-batching", default="auto", choices=vmapped_trials.CONV_BATCHING,
                 help="how vmapped convolutions run (auto: unrolled on CPU, native elsewhere)")
  p.add_argument("--workdir", default=DEFAULT_WORKDIR,
                 help=f"run directory for the storage and the report (default {DEFAULT_WORKDIR})")
  p.add_argument("--storage", help="Optuna RDB URL (default sqlite:///WORKDIR/study.db)")
  p.add_argument("--study-name", default="cifar10",
                 help="studies are named NAME-<optimizer> (default cifar10)")
  p.add_argument("--seed", type=int, default=0, help="seed of the sampler, the validation split "
                 "and the trials (trial n uses seed + n) (default 0)")
  p.add_argument("--worker-trials", type=_positive_int,
                 help="this process starts at most N trials per optimizer, then exits "
                 "(the study stays resumable)")
  p.add_argument("--pruner-startup-trials", type=int, default=5,
                 help="trials finished before the median pruner prunes (default 5)")
  p.add_argument("--top", type=_positive_int, default=5,
                 help="report mean and std of the best N trials (default 5)")
  p.add_argument("--heartbeat-interval", type=_positive_int, default=30,
                 help="seconds between a running trial's heartbeats (default 30)")
  p.add_argument("--grace-period", type=_positive_int, default=90,
                 help="a trial without heartbeat for this long is failed and retried (default 90)")
  p.add_argument("--set", dest="assignments", action="append", type=_assignment, default=[],
                 metavar="[OPTIMIZER.]NAME=VALUE",
                 help="fix a hyperparameter that is not searched, e.g. phase_shift.selection=last")
  data = p.add_argument_group("data and training")
  data.add_argument("--data-dir", help="directory holding cifar-10-batches-py/")
  data.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading when the data is missing")
  data.add_argument("--train-size", type=_positive_int,
                    help="use only the first N training images (before the validation split)")
  data.add_argument("--test-size", type=_positive_int,
                    help="use only the first N test images for the final number")
  data.add_argument("--validation-fraction", type=float, default=0.1,
                    help="fraction of the training images held out for validation (default 0.1)")
  data.add_argument("--model", default="cnn", help="model name (default cnn)")
  data.add_argument("--width", type=_positive_int, help="channels of the first layer")
  data.add_argument("--batch-size", type=_positive_int, default=128)
  data.add_argument("--eval-batch-size", type=_positive_int, default=512)
  data.add_argument("--no-augment", dest="augment", action="store_false")
  data.add_argument("--schedule", default="constant", choices=optimizers.SCHEDULES)
  data.add_argument("--no-progress", dest="progress", action="store_false",
                    help="no per-trial lines")
  p.set_defaults(run=run_study)
  return p


def _fixed_hparams(assignments, names: Sequence[str]) -> dict[str, dict[str, Any]]:
  fixed: dict[str, dict[str, Any]] = {n: {} for n in names}
  for target, key, value in assignments:
    targets = [target] if target else [n for n in names if key in optimizers.get_spec(n).defaults]
    if not targets or any(t not in names for t in targets):
      raise StudyError(f"--set {key}: no optimizer among {', '.join(names)} takes it")
    for t in targets:
      if key in SEARCH_SPACES[t]:
        raise StudyError(f"--set {key}: {t} searches {key}; it cannot be fixed")
      fixed[t][key] = value
  for n in names:
    optimizers.resolve(n, fixed[n])
  return fixed


def _load_data(args: argparse.Namespace, seed: int, fraction: float):
  train_split, test = input_pipeline.load_cifar10(args.data_dir, download=args.download,
                                                  progress=args.progress)
  if args.train_size:
    train_split = input_pipeline.Split(train_split.images[:args.train_size],
                                       train_split.labels[:args.train_size])
  if args.test_size:
    test = input_pipeline.Split(test.images[:args.test_size], test.labels[:args.test_size])
  fit, val = input_pipeline.split_validation(train_split, fraction, seed)
  return fit, val, test


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
  """Optuna's per-trial INFO lines off (this module prints its own)."""
  level = optuna.logging.get_verbosity()
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  try:
    yield
  finally:
    optuna.logging.set_verbosity(level)


def run_study(args: argparse.Namespace) -> int:
  """Runs the ``study`` command; returns the exit status (2 for a usage or data error)."""
  prog = "study"
  log = print if args.progress else (lambda _: None)
  start = time.perf_counter()
  try:
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in SEARCH_SPACES]
    if not names or unknown or len(set(names)) != len(names):
      raise StudyError(f"--optimizers must list distinct names from {', '.join(SEARCH_SPACES)}, "
                       f"got {args.optimizers!r}")
    if args.grace_period <= args.heartbeat_interval:
      raise StudyError("--grace-period must be longer than --heartbeat-interval")
    fixed = _fixed_hparams(args.assignments, names)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{(workdir / 'study.db').resolve()}"
    base = Settings(epochs=args.epochs, model=args.model, width=args.width,
                    batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
                    augment=args.augment, schedule=args.schedule,
                    validation_fraction=args.validation_fraction, train_size=args.train_size,
                    seed=args.seed)
    settings = {n: dataclasses.replace(base, fixed=fixed[n]) for n in names}
    for n in names:
      settings[n].config(n, {k: lo for k, (lo, _) in SEARCH_SPACES[n].items()}, 0).validate()
    fit, val, test = _load_data(args, args.seed, args.validation_fraction)
    storage = make_storage(url, args.heartbeat_interval, args.grace_period)
    with _quiet_optuna():
      studies = [open_study(storage, f"{args.study_name}-{n}", settings[n], n,
                            pruner_startup_trials=args.pruner_startup_trials) for n in names]
  except (StudyError, ValueError, input_pipeline.DataError) as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2

  complete = True
  try:
    with _quiet_optuna():
      for name, study in zip(names, studies):
        budget = [args.worker_trials or sys.maxsize]
        with Heartbeat(study, args.heartbeat_interval) as heartbeat:
          common = (study, args.trials, name, settings[name], (fit, val), heartbeat, budget, log)
          if args.side_by_side > 1:
            run = lambda common=common: run_side_by_side(*common, args.side_by_side,
                                                         args.conv_batching)
          else:
            run = lambda common=common: run_one_by_one(*common)
          complete &= optimize(study, args.trials, run, budget, args.heartbeat_interval, log)
      if not complete:
        log(f"stopped after --worker-trials {args.worker_trials}; rerun to continue the study")
        return 0
      summaries = []
      for name, study in zip(names, studies):
        summary = summarize(study, args.top)
        summary["final_test"] = final_test(study, summary, settings[name], (fit, test), log)
        summaries.append(summary)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; rerun the same command to continue", file=sys.stderr)
    return 130
  seconds = time.perf_counter() - start
  argv = sys.argv[sys.argv.index("study"):] if "study" in sys.argv else ["study"]
  command = "python -m examples.cifar10 " + " ".join(argv)
  write_report(studies, summaries, workdir, command, seconds)
  log("\n" + results_table(summaries))
  log(f"report: {workdir / 'results.md'} ({seconds:.0f} s)")
  return 0
