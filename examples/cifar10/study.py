"""The optimizer study: an Optuna study per optimizer, resumable and shared by several workers.

Optuna's own machinery: a study ``<study_name>-<optimizer>`` per optimizer in an RDB
storage whose running trials send heartbeats; a trial silent for ``grace_period`` seconds
(its worker was killed) is failed and queued again with its hyperparameters and seed
(``RetryHeartbeatStaleTrialCallback``, formerly ``RetryFailedTrialCallback``). Workers run
``study.optimize`` with a ``MaxTrialsCallback`` counting finished and running trials: none
starts more than ``trials``, none waits for another (a trial that two workers created for
the last place at once is failed before it trains: :class:`Surplus`). The storage may be a
SQLite file (the default, one machine) or a server (``postgresql://``: several machines),
whose connections are checked before use and time out. TPE is seeded from ``(seed, trial
number)``; the median pruner judges the validation accuracy after each epoch. A complete
trial also evaluates its model on the test set once (the report shows it for the best).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import socket
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.trial import TrialState

from examples.cifar10 import input_pipeline
from examples.cifar10 import train
from examples.cifar10.configs import default

# Log-uniform search spaces. The PhaseShift kick is +-min(threshold, shift_boundary) per
# element, not scaled by the learning rate.
_KICK = {"threshold": (1e-6, 1e-1), "shift_boundary": (1e-6, 1e-1),
         "min_gradient_magnitude": (1e-6, 1.0)}
SEARCH_SPACES = {
    "adam": {"learning_rate": (1e-5, 1e-1)},
    "phase_shift": {"learning_rate": (1e-3, 1.0), **_KICK},
    "phase_shift_adam": {"learning_rate": (1e-5, 1e-1), **_KICK},
    "sgd": {"learning_rate": (1e-3, 1.0)},
}
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


class StudyError(Exception):
  """A study that cannot be run as asked (a one-line message)."""


class Surplus(Exception):
  """A trial created after the study's trials were all taken (by workers that checked the
  count at the same moment): it is failed at once, before it trains, and not counted."""

  def __init__(self, number: int, trials: int):
    super().__init__(f"trial {number}: the {trials} trials are taken")
    self.number = number


class _QuietSurplus(logging.Filter):
  """Drops Optuna's two warnings (one with a traceback) about a trial failed with
  :class:`Surplus`; ``log_trial`` says it in one line."""

  def __init__(self):
    super().__init__()
    self.numbers: set[int] = set()

  def filter(self, record: logging.LogRecord) -> bool:
    if record.exc_info and isinstance(record.exc_info[1], Surplus):
      self.numbers.add(record.exc_info[1].number)
      return False
    message = record.getMessage()
    return not any(message.startswith(f"Trial {n} failed with value") for n in self.numbers)


def quiet_surplus() -> None:
  """Installs :class:`_QuietSurplus` on Optuna's optimize logger (once)."""
  optimize_logger = optuna.logging.get_logger("optuna.study._optimize")
  if not any(isinstance(f, _QuietSurplus) for f in optimize_logger.filters):
    optimize_logger.addFilter(_QuietSurplus())


def taken_before(trial: optuna.Trial) -> int:
  """How many trials numbered before ``trial`` are finished, running or queued.

  Workers check ``MaxTrialsCallback``'s count and then create a trial, two steps: on a
  server database two workers can both see one trial left. Trial numbers are given under
  a lock of the study's row, so the later of the two finds the earlier one here.
  """
  return sum(t.number < trial.number for t in trial.study.get_trials(
      deepcopy=False, states=(*FINISHED, TrialState.RUNNING, TrialState.WAITING)))


CONNECT_TIMEOUT = 10  # Seconds to reach a database server (``?connect_timeout=N`` in the URL).
DRIVERS = {"postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}  # psycopg 3.


def storage_url(config: default.Config, workdir: Path) -> str:
  """``config.storage`` (``sqlite:///WORKDIR/study.db`` by default); ``postgresql://`` is
  ``postgresql+psycopg://`` (psycopg 3, the ``postgres`` extra)."""
  url = config.storage or f"sqlite:///{(workdir / 'study.db').resolve()}"
  scheme, sep, rest = url.partition("://")
  return f"{DRIVERS.get(scheme, scheme)}{sep}{rest}"


def _engine_kwargs(url: str) -> dict[str, Any]:
  """SQLite: wait up to 120 s for the file's lock. A server: test a pooled connection before
  using it (a server restart or an idle timeout closed it) and give up connecting after
  ``CONNECT_TIMEOUT`` s (the URL's ``connect_timeout`` wins)."""
  if url.startswith("sqlite"):
    return {"connect_args": {"timeout": 120}}
  kwargs: dict[str, Any] = {"pool_pre_ping": True}
  if url.startswith(("postgresql", "mysql")) and "connect_timeout=" not in url:
    kwargs["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT}
  return kwargs


def create_storage(config: default.Config, workdir: Path) -> optuna.storages.RDBStorage:
  """The RDB storage of :func:`storage_url`, with heartbeats; several workers may create it
  at once (the one that loses the race for the tables retries)."""
  url = storage_url(config, workdir)
  try:  # In messages, as typed but without its password.
    shown = sqlalchemy.engine.make_url(config.storage or url).render_as_string(hide_password=True)
  except sqlalchemy.exc.ArgumentError:
    shown = config.storage or url
  for attempt in range(3):
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.storages.RDBStorage(
            url, engine_kwargs=_engine_kwargs(url), heartbeat_interval=config.heartbeat_interval,
            grace_period=config.grace_period,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(3))
    except ImportError as e:
      hint = (": pip install 'phaseshift_jax[postgres]'" if url.startswith("postgresql+psycopg")
              else "")
      raise StudyError(f"cannot open the storage {shown}: no driver ({e}){hint}") from e
    except (sqlalchemy.exc.SQLAlchemyError, ValueError) as e:
      racing = isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)
      if not racing or attempt == 2:  # Not another worker creating the tables right now.
        reason = (str(e).strip().splitlines() or [""])[0]
        raise StudyError(f"cannot open the storage {shown}: {type(e).__name__}: {reason}") from e
      time.sleep(1)
  raise AssertionError("unreachable")


def trial_config(config: default.Config, optimizer: str) -> default.Config:
  """``config`` for ``optimizer``'s trials: with its ``per_optimizer`` settings."""
  fixed = config.per_optimizer.get(optimizer, {})
  if searched := sorted(set(fixed) & set(SEARCH_SPACES[optimizer])):
    raise StudyError(f"--set {optimizer}.{searched[0]}: the study searches it")
  return dataclasses.replace(config, optimizer=optimizer, **fixed)


def open_study(storage: optuna.storages.BaseStorage, config: default.Config,
               optimizer: str) -> optuna.Study:
  """Creates or loads ``<study_name>-<optimizer>``; a loaded one must have the same settings."""
  study = optuna.create_study(
      study_name=f"{config.study_name}-{optimizer}", storage=storage, direction="maximize",
      load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=config.seed),
      pruner=optuna.pruners.MedianPruner(n_startup_trials=config.pruner_startup_trials))
  settings = {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(
      trial_config(config, optimizer)))).items()
      if k == "epochs" or k not in train.MAY_CHANGE_ON_RESUME}
  saved = study.user_attrs.get("settings")
  if saved is None:
    study.set_user_attr("settings", settings)
    study.set_user_attr("optimizer", optimizer)
  elif changed := [k for k in settings if saved.get(k) != settings[k]]:
    raise StudyError(f"study {study.study_name} was run with {changed[0]}={saved.get(changed[0])!r}"
                     f", not {settings[changed[0]]!r}; use another --study-name or --workdir")
  return study


def objective(trial: optuna.Trial, config: default.Config,
              data: Mapping[str, input_pipeline.Split]) -> float:
  """Trains one trial; returns its validation accuracy after the last epoch."""
  trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")  # Which ran it.
  if taken_before(trial) >= config.trials:
    trial.set_user_attr("surplus", True)
    raise Surplus(trial.number, config.trials)
  trial.study.sampler = optuna.samplers.TPESampler(  # Reproducible, a stream per trial.
      seed=int(np.random.SeedSequence([config.seed, trial.number]).generate_state(1)[0]))
  if "seed" not in trial.user_attrs:  # A retried trial keeps its seed.
    trial.set_user_attr("seed", config.seed + trial.number)
  params = {k: trial.suggest_float(k, low, high, log=True)
            for k, (low, high) in SEARCH_SPACES[config.optimizer].items()}
  config = dataclasses.replace(config, seed=trial.user_attrs["seed"], **params)

  def report(epoch, metrics):
    trial.report(metrics["val_accuracy"], epoch)
    if epoch < config.epochs and trial.should_prune():
      raise optuna.TrialPruned()

  try:
    model, history = train.train_and_evaluate(
        config, data={"train": data["train"], "val": data["val"]}, callback=report, log=None)
  except train.Diverged as e:  # Pruned: it counts, and TPE ranks it below every other.
    raise optuna.TrialPruned(str(e)) from e
  test = train.evaluate(model, data["test"], config.eval_batch_size, train.make_mesh(config))
  trial.set_user_attr("test_accuracy", test["accuracy"])
  return history[-1]["val_accuracy"]


def run_study(config: default.Config, workdir: str | Path,
              log: Callable[[str], None] = print) -> bool:
  """Runs this worker's share of the study; writes the report once every study is done.

  Returns whether the report was written (False: this worker stopped after
  ``worker_trials``, or trials still run elsewhere).
  """
  workdir = Path(workdir)
  names = [n.strip() for n in config.optimizers.split(",") if n.strip()]
  if not names or len(set(names)) != len(names) or not set(names) <= set(SEARCH_SPACES):
    raise StudyError(f"optimizers must be distinct names from {', '.join(SEARCH_SPACES)} "
                     f"(those with a search space), got {config.optimizers!r}")
  if not config.validation_fraction:
    raise StudyError("the study needs a validation split: set --validation-fraction")
  if config.grace_period <= config.heartbeat_interval:
    raise StudyError("grace_period must be longer than heartbeat_interval")
  for name in names:
    train.validate(dataclasses.replace(
        trial_config(config, name), **{k: lo for k, (lo, _) in SEARCH_SPACES[name].items()}))
  try:
    workdir.mkdir(parents=True, exist_ok=True)
  except OSError as e:
    raise StudyError(f"cannot use {workdir} as the study's directory: {e.strerror}") from e
  storage = create_storage(config, workdir)
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  quiet_surplus()
  studies = {n: open_study(storage, config, n) for n in names}
  data = input_pipeline.load(config)

  def log_trial(study, trial):
    if trial.user_attrs.get("surplus"):
      log(f"{study.study_name} trial {trial.number}: not run, the {config.trials} trials are "
          "taken (another worker started the last one at the same time)")
      return
    value = math.nan if trial.value is None else trial.value
    log(f"{study.study_name} trial {trial.number}: {trial.state.name.lower()} after "
        f"{len(trial.intermediate_values)} epochs, val acc {value:.2%} (" +
        ", ".join(f"{k}={v:.3g}" for k, v in trial.params.items()) + ")")

  for name, study in studies.items():
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      optuna.storages.fail_stale_trials(study)  # Killed workers' trials: failed, queued again.
    taken = study.get_trials(deepcopy=False, states=(*FINISHED, TrialState.RUNNING))
    if len(taken) < config.trials:  # MaxTrialsCallback's count, before the first trial.
      study.optimize(
          lambda trial, name=name: objective(trial, trial_config(config, name), data),
          n_trials=config.worker_trials, gc_after_trial=False, catch=(Surplus,),
          callbacks=[optuna.study.MaxTrialsCallback(
              config.trials, states=(*FINISHED, TrialState.RUNNING)), log_trial])
  finished = {s.study_name: len(s.get_trials(deepcopy=False, states=FINISHED))
              for s in studies.values()}
  if unfinished := [f"{n} {k}/{config.trials}" for n, k in finished.items() if k < config.trials]:
    log(f"not finished yet ({', '.join(unfinished)} trials): rerun the command to continue. "
        "Trials running elsewhere are left to their workers; a killed worker's trial is "
        f"retried once it has had no heartbeat for {config.grace_period} s")
    return False
  write_report(storage, config, workdir, log)
  return True


def summarize(study: optuna.Study, top: int) -> dict[str, Any]:
  """Counts, the best trial, the top trials' mean and std, and the time spent in trials."""
  trials = study.get_trials(deepcopy=False)
  complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: -t.value)
  finished = [t for t in trials if t.state in FINISHED]
  values = np.array([t.value for t in complete[:top]])
  seconds = sum(t.duration.total_seconds() for t in finished)
  best = complete[0] if complete else None
  return {"study": study.study_name, "optimizer": study.user_attrs.get("optimizer"),
          "complete": len(complete), "pruned": len(finished) - len(complete),
          "failed": sum(t.state == TrialState.FAIL and not t.user_attrs.get("surplus")
                        for t in trials), "top": len(values),
          "top_mean": float(values.mean()) if len(values) else None,
          "top_std": float(values.std(ddof=1)) if len(values) > 1 else None,
          "trial_seconds": seconds, "seconds_per_trial": seconds / max(len(finished), 1),
          "best": best and {"trial": best.number, "val_accuracy": best.value,
                            "test_accuracy": best.user_attrs.get("test_accuracy"),
                            "seed": best.user_attrs["seed"], "params": best.params}}


def results_table(summaries: list[dict[str, Any]]) -> str:
  rows = ["| optimizer | trials (complete / pruned) | failed | best val acc | top-k val acc, "
          "mean ± std | test acc (best) | trial time | time per trial |",
          "| --- | --- | ---: | ---: | --- | ---: | ---: | ---: |"]
  for s in summaries:
    best = s["best"] or {}
    top = f"{s['top_mean'] or math.nan:.2%} ± {s['top_std'] or math.nan:.2%} (k={s['top']})"
    rows.append(f"| {s['optimizer']} | {s['complete'] + s['pruned']} ({s['complete']} / "
                f"{s['pruned']}) | {s['failed']} | {best.get('val_accuracy', math.nan):.2%} | "
                f"{top} | {best.get('test_accuracy') or math.nan:.2%} | "
                f"{s['trial_seconds']:.0f} s | {s['seconds_per_trial']:.0f} s |")
  rows += ["", "| optimizer | best trial | seed | hyperparameters |", "| --- | ---: | ---: | --- |"]
  rows += [f"| {s['optimizer']} | {s['best']['trial']} | {s['best']['seed']} | " + ", ".join(
      f"{k}={v:.4g}" for k, v in s["best"]["params"].items()) + " |"
           for s in summaries if s["best"]]
  return "\n".join(rows) + "\n"


def _write(path: Path, write: Callable[[Path], Any]) -> None:
  """Writes ``path`` through a temporary file: concurrent workers never leave half a file."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  write(tmp)
  os.replace(tmp, path)


def write_report(storage: optuna.storages.BaseStorage, config: default.Config, workdir: Path,
                 log: Callable[[str], None] = print) -> None:
  """``results.md``, ``results.json``, ``best_params.json`` and the plots, of every
  ``<study_name>-*`` study in ``storage`` (also those this run did not list)."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from optuna.visualization import matplotlib as vis  # pylint: disable=import-outside-toplevel
  prefix = f"{config.study_name}-"
  studies = [optuna.load_study(study_name=n, storage=storage)
             for n in sorted(optuna.get_all_study_names(storage)) if n.startswith(prefix)]
  summaries = [summarize(s, config.top) for s in studies]
  command = "python -m examples.cifar10 " + " ".join(sys.argv[1:])
  table = results_table(summaries)
  _write(workdir / "results.md", lambda p: p.write_text(
      f"# Optimizer study\n\n`{command}`\n\nAccuracies are on the validation split, but the "
      "test accuracy of the best trial.\n\n" + table))
  _write(workdir / "results.json", lambda p: p.write_text(json.dumps(
      {"command": command, "optimizers": summaries}, indent=2) + "\n"))
  _write(workdir / "best_params.json", lambda p: p.write_text(json.dumps(
      {s["optimizer"]: s["best"] for s in summaries if s["best"]}, indent=2) + "\n"))
  plots = [("history.png", lambda: vis.plot_optimization_history(studies))]
  plots += [(f"importances_{s.user_attrs['optimizer']}.png",
             lambda s=s: vis.plot_param_importances(s)) for s in studies]
  for name, draw in plots:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        figure = np.ravel(draw())[0].figure
      except (ValueError, RuntimeError) as e:  # Importances need two complete trials.
        log(f"{name} not drawn: {e}")
        continue
    figure.set_size_inches(10, 5)
    figure.tight_layout()
    _write(workdir / name, lambda p, figure=figure: figure.savefig(p, dpi=120, format="png"))
    plt.close(figure)
  log("\n" + table + f"report: {workdir / 'results.md'}")
