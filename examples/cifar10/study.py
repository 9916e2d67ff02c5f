"""The optimizer study: an Optuna search per optimizer (Adam vs PhaseShift), resumable and shareable.

``python -m examples.cifar10 study --optimizers adam,phase_shift --trials 35 --epochs 10``

* One Optuna study per optimizer (``<study-name>-<optimizer>``) in one RDB storage,
  a SQLite file in the run directory by default. The search space is
  :data:`study_space.SEARCH_SPACES` (all log-uniform); the sampler is TPE, seeded
  per trial from ``(--seed, trial number)``; a median pruner stops a trial whose
  validation accuracy after an epoch is below the median of earlier trials at that
  epoch.
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

Modules: this one holds the ``study`` command (its options and :func:`run_study`);
:mod:`study_space` the search spaces and the settings every trial shares,
:mod:`study_storage` the storage, heartbeats and which worker runs which trial,
:mod:`study_trials` the training of trials one by one or side by side, and
:mod:`study_report` the summaries, the test number of the best trials and the report.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import optuna

from examples.cifar10 import input_pipeline
from examples.cifar10 import optimizers
from examples.cifar10 import study_report
from examples.cifar10 import study_space
from examples.cifar10 import study_storage
from examples.cifar10 import study_trials
from examples.cifar10 import vmapped_trials

DEFAULT_WORKDIR = "runs/cifar10/study"


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
          for o, s in study_space.SEARCH_SPACES.items()))
  p.add_argument("--optimizers", default="adam,phase_shift",
                 help=f"comma-separated, from {', '.join(study_space.SEARCH_SPACES)} "
                 "(default adam,phase_shift)")
  p.add_argument("--trials", type=optimizers.positive_int, default=35,
                 help="finished trials per optimizer the study must hold (default 35)")
  p.add_argument("--epochs", type=optimizers.positive_int, default=10,
                 help="epochs per trial (default 10)")
  p.add_argument("--side-by-side", type=optimizers.positive_int, default=1, metavar="K",
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
  p.add_argument("--worker-trials", type=optimizers.positive_int,
                 help="this process starts at most N trials per optimizer, then exits "
                 "(the study stays resumable)")
  p.add_argument("--pruner-startup-trials", type=int, default=5,
                 help="trials finished before the median pruner prunes (default 5)")
  p.add_argument("--top", type=optimizers.positive_int, default=5,
                 help="report mean and std of the best N trials (default 5)")
  p.add_argument("--heartbeat-interval", type=optimizers.positive_int, default=30,
                 help="seconds between a running trial's heartbeats (default 30)")
  p.add_argument("--grace-period", type=optimizers.positive_int, default=90,
                 help="a trial without heartbeat for this long is failed and retried (default 90)")
  p.add_argument("--set", dest="assignments", action="append",
                 type=optimizers.parse_assignment, default=[],
                 metavar="[OPTIMIZER.]NAME=VALUE",
                 help="fix a hyperparameter that is not searched, e.g. phase_shift.selection=last")
  data = p.add_argument_group("data and training")
  data.add_argument("--data-dir", help="directory holding cifar-10-batches-py/")
  data.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading when the data is missing")
  data.add_argument("--train-size", type=optimizers.positive_int,
                    help="use only the first N training images (before the validation split)")
  data.add_argument("--test-size", type=optimizers.positive_int,
                    help="use only the first N test images for the final number")
  data.add_argument("--validation-fraction", type=float, default=0.1,
                    help="fraction of the training images held out for validation (default 0.1)")
  data.add_argument("--model", default="cnn", help="model name (default cnn)")
  data.add_argument("--width", type=optimizers.positive_int, help="channels of the first layer")
  data.add_argument("--batch-size", type=optimizers.positive_int, default=128)
  data.add_argument("--eval-batch-size", type=optimizers.positive_int, default=512)
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
      raise study_space.StudyError(f"--set {key}: no optimizer among {', '.join(names)} takes it")
    for t in targets:
      if key in study_space.SEARCH_SPACES[t]:
        raise study_space.StudyError(f"--set {key}: {t} searches {key}; it cannot be fixed")
      fixed[t][key] = value
  for n in names:
    optimizers.resolve(n, fixed[n])
  return fixed


def _head(split: input_pipeline.Split, n: int | None) -> input_pipeline.Split:
  """The first ``n`` examples of ``split`` (all of it when ``n`` is None)."""
  return input_pipeline.Split(split.images[:n], split.labels[:n]) if n else split


def _load_data(args: argparse.Namespace):
  train_split, test = input_pipeline.load_cifar10(args.data_dir, download=args.download,
                                                  progress=args.progress)
  fit, val = input_pipeline.split_validation(_head(train_split, args.train_size),
                                             args.validation_fraction, args.seed)
  return fit, val, _head(test, args.test_size)


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
  spaces = study_space.SEARCH_SPACES
  try:
    names = [n.strip() for n in args.optimizers.split(",") if n.strip()]
    unknown = [n for n in names if n not in spaces]
    if not names or unknown or len(set(names)) != len(names):
      raise study_space.StudyError(f"--optimizers must list distinct names from "
                                   f"{', '.join(spaces)}, got {args.optimizers!r}")
    if args.grace_period <= args.heartbeat_interval:
      raise study_space.StudyError("--grace-period must be longer than --heartbeat-interval")
    fixed = _fixed_hparams(args.assignments, names)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    url = args.storage or f"sqlite:///{(workdir / 'study.db').resolve()}"
    base = study_space.Settings(
        epochs=args.epochs, model=args.model, width=args.width, batch_size=args.batch_size,
        eval_batch_size=args.eval_batch_size, augment=args.augment, schedule=args.schedule,
        validation_fraction=args.validation_fraction, train_size=args.train_size,
        seed=args.seed)
    settings = {n: dataclasses.replace(base, fixed=fixed[n]) for n in names}
    for n in names:
      settings[n].config(n, {k: lo for k, (lo, _) in spaces[n].items()}, 0).validate()
    fit, val, test = _load_data(args)
    storage = study_storage.make_storage(url, args.heartbeat_interval, args.grace_period)
    with _quiet_optuna():
      studies = [study_storage.open_study(storage, f"{args.study_name}-{n}", settings[n], n,
                                          pruner_startup_trials=args.pruner_startup_trials)
                 for n in names]
  except (study_space.StudyError, ValueError, input_pipeline.DataError) as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2

  complete = True
  try:
    with _quiet_optuna():
      for name, study in zip(names, studies):
        budget = [args.worker_trials or sys.maxsize]
        with study_storage.Heartbeat(study, args.heartbeat_interval) as heartbeat:
          common = (study, args.trials, name, settings[name], (fit, val), heartbeat, budget, log)
          run = (functools.partial(study_trials.run_side_by_side, *common, args.side_by_side,
                                   args.conv_batching) if args.side_by_side > 1
                 else functools.partial(study_trials.run_one_by_one, *common))
          complete &= study_storage.optimize(study, args.trials, run, budget,
                                             args.heartbeat_interval, log)
      if not complete:
        log(f"stopped after --worker-trials {args.worker_trials}; rerun to continue the study")
        return 0
      summaries = []
      for name, study in zip(names, studies):
        summary = study_report.summarize(study, args.top)
        summary["final_test"] = study_report.final_test(study, summary, settings[name],
                                                        (fit, test), log)
        summaries.append(summary)
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; rerun the same command to continue", file=sys.stderr)
    return 130
  seconds = time.perf_counter() - start
  argv = sys.argv[sys.argv.index("study"):] if "study" in sys.argv else ["study"]
  command = "python -m examples.cifar10 " + " ".join(argv)
  study_report.write_report(studies, summaries, workdir, command, seconds)
  log("\n" + study_report.results_table(summaries))
  log(f"report: {workdir / 'results.md'} ({seconds:.0f} s)")
  return 0
