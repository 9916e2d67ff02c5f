"""Command line: ``python -m examples.cifar10 {train,compare,optimizers} [flags]``.

  python -m examples.cifar10 train --optimizer phase_shift --epochs 10 --data-dir DIR --workdir DIR
  python -m examples.cifar10 compare --optimizers adam,phase_shift --epochs 10 --data-dir DIR
  python -m examples.cifar10 optimizers        # every optimizer name and its defaults

Bad flags and data or run-directory problems end with a one-line error (exit
status 2), not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

DEFAULT_WORKDIR = "runs/cifar10"


class _Parser(argparse.ArgumentParser):
  """An ArgumentParser whose errors are one line: ``prog: error: message``."""

  def error(self, message: str) -> NoReturn:
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


# (flag, hyperparameter, type, help) of the optimizer hyperparameters.
HYPERPARAMETER_FLAGS = (
    ("--learning-rate", "learning_rate", float,
     "peak learning rate, > 0 (defaults: adam 1e-3, sgd and phase_shift 0.1)"),
    ("--momentum", "momentum", float, "SGD momentum in [0, 1) (sgd default 0)"),
    ("--nesterov", "nesterov", None, "Nesterov momentum (sgd)"),
    ("--weight-decay", "weight_decay", float, "weight decay, >= 0 (sgd, adamw, compat)"),
    ("--b1", "b1", float, "Adam's first-moment decay in [0, 1) (default 0.9)"),
    ("--b2", "b2", float, "Adam's second-moment decay in [0, 1) (default 0.999)"),
    ("--eps", "eps", float, "Adam's epsilon, >= 0 (default 1e-8)"),
    ("--threshold", "threshold", float,
     "PhaseShift kick size (default 1e-4; the kick is NOT scaled by the learning rate)"),
    ("--shift-boundary", "shift_boundary", float,
     "PhaseShift clips the kick to [-b, b], >= 0 (default 1e-3)"),
    ("--min-gradient-magnitude", "min_gradient_magnitude", float,
     "PhaseShift kicks only a tensor whose gradient changed by more, >= 0 (default 0)"),
    ("--selection", "selection", str, "PhaseShift: argmax (default) or last (the original code)"),
    ("--granularity", "granularity", str,
     "PhaseShift: kick the whole tensor (default) or one element"),
)


def _add_common(parser: argparse.ArgumentParser) -> None:
  from examples.cifar10 import input_pipeline, models, optimizers  # pylint: disable=import-outside-toplevel

  data = parser.add_argument_group("data")
  data.add_argument("--data-dir", help="directory holding cifar-10-batches-py/ (or being it); "
                    "when it lacks the data, --cache-dir is used (never written to)")
  data.add_argument("--cache-dir", help="where the archive is downloaded, checked and extracted "
                    "when --data-dir lacks the data (default: $XDG_CACHE_HOME or ~/.cache, "
                    "then phaseshift_jax/cifar10)")
  data.add_argument("--no-download", dest="download", action="store_false",
                    help="fail instead of downloading when the data is missing")
  data.add_argument("--data-url", default=input_pipeline.URL,
                    help="URL of cifar-10-python.tar.gz (default: the official one)")
  data.add_argument("--data-md5", default=input_pipeline.MD5,
                    help="expected MD5 of the archive; 'none' skips the check "
                    "(default: the official checksum)")

  run = parser.add_argument_group("training")
  run.add_argument("--model", default="cnn", choices=sorted(models.MODELS),
                   help="cnn: 5 stride-2 conv blocks with BatchNorm (fast); resnet: ResNet-14")
  run.add_argument("--width", type=optimizers.positive_int,
                   help="channels of the first layer (cnn 16, resnet 16), doubling after")
  run.add_argument("--epochs", type=optimizers.positive_int, default=10,
                   help="epochs (default 10)")
  run.add_argument("--batch-size", type=optimizers.positive_int, default=128,
                   help="training batch size, divisible by the device count (default 128)")
  run.add_argument("--eval-batch-size", type=optimizers.positive_int, default=512,
                   help="evaluation batch size; the last batch is padded, never dropped "
                   "(default 512)")
  run.add_argument("--seed", type=int, default=0,
                   help="seed of initialization, data order and augmentation (default 0)")
  run.add_argument("--no-augment", dest="augment", action="store_false",
                   help="no random crop and flip")
  run.add_argument("--validation-fraction", type=float, default=0.0,
                   help="hold out this fraction of the training set and report val_* "
                   "metrics (default 0)")
  run.add_argument("--schedule", default="constant", choices=optimizers.SCHEDULES,
                   help="learning-rate schedule over all steps, peaking at --learning-rate: "
                   "cosine/warmup_cosine/onecycle (optax), cosine_annealing (torch), time_based "
                   "(lr/(1+epoch)), cyclic (lr/10..lr, one epoch up, one down); default constant")
  run.add_argument("--warmup-epochs", type=float, default=0.0,
                   help="linear warm-up for --schedule warmup_cosine (default 0)")
  run.add_argument("--num-devices", type=optimizers.positive_int,
                   help="data-parallel over the first N devices (default: all)")

  out = parser.add_argument_group("output")
  out.add_argument("--workdir", help="run directory: config.json, metrics.jsonl, a "
                   f"checkpoint per epoch (default {DEFAULT_WORKDIR}/<name>)")
  out.add_argument("--resume", action="store_true",
                   help="continue from the latest checkpoint in --workdir")
  out.add_argument("--overwrite", action="store_true",
                   help="delete a previous run in --workdir first")
  out.add_argument("--keep-checkpoints", type=optimizers.positive_int,
                   help="keep only the N latest epoch checkpoints (default: all)")
  out.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bar")

  hp = parser.add_argument_group(
      "optimizer hyperparameters",
      "Unset ones take the optimizer's default; an optimizer that does not take a set one is "
      "an error (with compare: only if none of them takes it).")
  for flag, dest, kind, text in HYPERPARAMETER_FLAGS:
    if kind is None:
      hp.add_argument(flag, dest=dest, action="store_true", default=None, help=text)
    else:
      hp.add_argument(flag, dest=dest, type=kind, help=text)
  hp.add_argument("--set", dest="assignments", action="append",
                  type=optimizers.parse_assignment, default=[], metavar="[OPTIMIZER.]NAME=VALUE",
                  help="any hyperparameter by name, e.g. --set sgd.learning_rate=0.1 or "
                  "--set miniai_adam_with_annealing.anneal_rate=0.97 (repeatable)")


def make_parser() -> argparse.ArgumentParser:
  from examples.cifar10 import optimizers  # pylint: disable=import-outside-toplevel

  parser = _Parser(
      prog="python -m examples.cifar10",
      description="Train CNNs on CIFAR-10 with Flax NNX and compare optimizers "
      "(Adam, SGD, PhaseShift, PhaseShift-Adam, the compat families).",
      epilog=f"optimizers: {', '.join(optimizers.names())}")
  sub = parser.add_subparsers(dest="command", required=True, metavar="{train,compare,study,optimizers}")
  train = sub.add_parser("train", help="train one optimizer",
                         description="Train one optimizer; per-epoch metrics go to "
                         "WORKDIR/metrics.jsonl and a checkpoint per epoch to WORKDIR/checkpoints.",
                         epilog=parser.epilog)
  train.add_argument("--optimizer", default="adam",
                     help="optimizer name, see the list below (default adam)")
  _add_common(train)
  compare = sub.add_parser("compare", help="train several optimizers, plot and tabulate",
                           description="Train each optimizer with the same data, model and "
                           "seed into WORKDIR/<optimizer>/, then write WORKDIR/comparison.png "
                           "and WORKDIR/comparison.md.", epilog=parser.epilog)
  compare.add_argument("--optimizers", default="adam,phase_shift",
                       help="comma-separated optimizer names (default adam,phase_shift)")
  _add_common(compare)
  sub.add_parser("optimizers", help="list every optimizer with its default hyperparameters")
  from examples.cifar10 import study as study_lib  # pylint: disable=import-outside-toplevel
  study_lib.add_study_parser(sub)
  return parser


def hyperparameters(args: argparse.Namespace, names: Sequence[str]) -> dict[str, dict[str, Any]]:
  """Per optimizer, the hyperparameters set on the command line that it takes.

  A flag (or an untargeted ``--set``) applies to each optimizer that takes it and
  must be taken by at least one; a targeted ``--set name.key=value`` must be
  taken by ``name``.
  """
  from examples.cifar10 import optimizers  # pylint: disable=import-outside-toplevel

  accepted = {n: set(optimizers.get_spec(n).defaults) for n in names}
  result: dict[str, dict[str, Any]] = {n: {} for n in names}
  given = [(None, dest, getattr(args, dest), flag)
           for flag, dest, _, _ in HYPERPARAMETER_FLAGS if getattr(args, dest) is not None]
  given += [(target, key, value, f"--set {key}") for target, key, value in args.assignments]
  for target, key, value, flag in given:
    if target is not None:
      if target not in names:
        raise ValueError(f"{flag}: {target} is not among the optimizers ({', '.join(names)})")
      if key not in accepted[target]:
        raise ValueError(f"optimizer {target} does not take {key} "
                         f"(it takes {', '.join(sorted(accepted[target]))})")
      result[target][key] = value
      continue
    takers = [n for n in names if key in accepted[n]]
    if not takers and len(names) == 1:
      raise ValueError(f"{flag}: optimizer {names[0]} does not take {key} "
                       f"(it takes {', '.join(sorted(accepted[names[0]]))})")
    if not takers:
      raise ValueError(f"{flag}: none of {', '.join(names)} takes {key}")
    for n in takers:
      result[n][key] = value
  for n in names:
    optimizers.resolve(n, result[n])  # Validate the values.
  return result


def _list_optimizers() -> None:
  from examples.cifar10 import optimizers  # pylint: disable=import-outside-toplevel

  for name in optimizers.names():
    try:
      spec = optimizers.get_spec(name)
      defaults = ", ".join(f"{k}={v!r}" for k, v in spec.defaults.items())
      print(f"{name}: {spec.description}\n    {defaults}")
    except ValueError as e:
      print(f"{name}: unavailable ({e})")


def main(argv: Sequence[str] | None = None) -> int:
  parser = make_parser()
  args = parser.parse_args(argv)
  if args.command == "optimizers":
    _list_optimizers()
    return 0
  if args.command == "study":
    from examples.cifar10 import study as study_lib  # pylint: disable=import-outside-toplevel
    return study_lib.run_study(args)

  from examples.cifar10 import compare, input_pipeline, train  # pylint: disable=import-outside-toplevel

  prog = f"{parser.prog} {args.command}"
  try:
    names = ([args.optimizer] if args.command == "train"
             else [n.strip() for n in args.optimizers.split(",") if n.strip()])
    if not names:
      raise ValueError("--optimizers is empty")
    if len(set(names)) != len(names):
      raise ValueError(f"--optimizers lists an optimizer twice: {args.optimizers}")
    if args.resume and args.overwrite:
      raise ValueError("--resume and --overwrite exclude each other")
    hparams = hyperparameters(args, names)
    config = train.Config(
        optimizer=names[0], hparams=hparams[names[0]], model=args.model, width=args.width,
        epochs=args.epochs, batch_size=args.batch_size, eval_batch_size=args.eval_batch_size,
        seed=args.seed, augment=args.augment, schedule=args.schedule,
        warmup_epochs=args.warmup_epochs, validation_fraction=args.validation_fraction,
        num_devices=args.num_devices, keep_checkpoints=args.keep_checkpoints)
    for name in names:
      train.check_config(dataclasses.replace(config, optimizer=name, hparams=hparams[name]))
    md5 = None if args.data_md5.lower() == "none" else args.data_md5
    batches_dir = input_pipeline.locate_cifar10(
        args.data_dir, download=args.download, cache_dir=args.cache_dir, url=args.data_url,
        md5=md5, progress=args.progress)
    data = input_pipeline.read_cifar10(batches_dir)
    print(f"data: {batches_dir} ({len(data[0]):,} training, {len(data[1]):,} test images)")
  except (ValueError, input_pipeline.DataError) as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2

  kwargs = dict(resume=args.resume, overwrite=args.overwrite, progress=args.progress)
  try:
    if args.command == "train":
      workdir = args.workdir or f"{DEFAULT_WORKDIR}/{names[0]}"
      train.train_and_evaluate(config, data, workdir, **kwargs)
      print(f"metrics: {workdir}/{train.METRICS_FILE}\ncheckpoints: {workdir}/"
            f"{train.CHECKPOINT_DIR}")
    else:
      workdir = args.workdir or f"{DEFAULT_WORKDIR}/compare"
      histories, plot_path, table_path = compare.run_comparison(
          names, config, hparams, data, workdir, **kwargs)
      print("\n" + compare.table(histories))
      print(f"plot: {plot_path}\ntable: {table_path}")
  except train.RunError as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"{prog}: interrupted; continue with --resume", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
