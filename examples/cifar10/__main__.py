"""Command line: ``python -m examples.cifar10 {train,compare,study,optimizers} [flags]``.

Every setting of ``configs/default.py`` is a flag (``learning_rate`` is ``--learning-rate``,
``augment`` is ``--augment`` / ``--no-augment``); ``--config`` starts from another config.
Bad input ends in a one-line error (exit status 2), a diverging run in one too (status 1),
Ctrl-C in a hint (status 130).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import runpy
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, NoReturn

from examples.cifar10 import checkpoints
from examples.cifar10 import distributed
from examples.cifar10 import input_pipeline
from examples.cifar10.configs import default

GROUPS = {"train": ("optimizer", "training", "data", "distributed"),
          "compare": ("optimizer", "training", "data", "compare", "distributed"),
          "study": ("optimizer", "training", "data", "compare", "study")}
NOT_IN = {"train": ("optimizers", "per_optimizer", "seeds"),
          "compare": ("optimizer", "per_optimizer"),
          "study": ("optimizer", "per_optimizer", "seeds")}


class _Parser(argparse.ArgumentParser):
  def error(self, message: str) -> NoReturn:  # One line, not the usage text.
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parse(kind: Any):
  """The argparse ``type`` of a setting annotated ``kind`` (``none`` for an optional's None)."""
  optional = isinstance(kind, types.UnionType) and type(None) in typing.get_args(kind)
  base = next(k for k in typing.get_args(kind) if k is not type(None)) if optional else kind
  convert = {dict: json.loads, bool: lambda t: {"true": True, "false": False}[t.lower()]}.get(
      base, base)

  def parse(text: str) -> Any:
    if optional and text.lower() == "none":
      return None
    try:
      return convert(text)
    except (ValueError, KeyError) as e:
      raise argparse.ArgumentTypeError(f"not a {base.__name__}: {text!r}") from e
  return parse


HINTS = typing.get_type_hints(default.Config)


def _assignment(text: str) -> tuple[str, str, Any]:
  """``--set OPTIMIZER.SETTING=VALUE`` as ``(optimizer, setting, value)``."""
  key, equals, value = text.partition("=")
  optimizer, _, name = key.partition(".")
  name = name.replace("-", "_")
  if not (optimizer and equals) or name not in HINTS:
    raise argparse.ArgumentTypeError(f"expected OPTIMIZER.SETTING=VALUE with a setting of "
                                     f"configs/default.py, got {text!r}")
  return optimizer, name, _parse(HINTS[name])(value)


def make_parser() -> argparse.ArgumentParser:
  parser = _Parser(prog="python -m examples.cifar10", description="CIFAR-10 with Flax NNX: "
                   "train, compare and study optimizers (Adam, SGD, PhaseShift, ...).")
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("optimizers", help="list every optimizer and what it reads")
  for command, text in (("train", "train one optimizer"), ("compare", "train optimizers x "
                        "seeds, plot and tabulate"), ("study", "Optuna study of optimizers "
                        "(from configs/study.py: the defaults below but validation_fraction 0.1)")):
    p = commands.add_parser(command, help=text, description=text, usage="%(prog)s [flags]")
    p.add_argument("--config", default="study" if command == "study" else "default",
                   help="a config of configs/ (default, resnet, study) or a .py file with "
                   "get_config(); the flags below override it")
    p.add_argument("--workdir", help="output directory (default runs/cifar10/" + (
        "<optimizer>)" if command == "train" else f"{command})"))
    if command != "study":
      p.add_argument("--resume", action="store_true", help="continue from the newest "
                     "checkpoint that restores")
      p.add_argument("--overwrite", action="store_true", help="delete a previous run first")
    if command != "train":
      p.add_argument("--set", dest="assignments", action="append", default=[], type=_assignment,
                     metavar="OPTIMIZER.SETTING=VALUE", help="a setting for one optimizer, e.g. "
                     "sgd.learning_rate=0.02 (study: one that is not searched)")
    groups = {g: p.add_argument_group(g) for g in GROUPS[command]}
    for field in dataclasses.fields(default.Config):
      if field.metadata["group"] not in groups or field.name in NOT_IN[command]:
        continue
      flag = "--" + field.name.replace("_", "-")
      kind = HINTS[field.name]
      is_bool = kind in (bool, bool | None)
      shown = field.default not in (None, dataclasses.MISSING) and not is_bool
      groups[field.metadata["group"]].add_argument(
          flag, dest=field.name, default=argparse.SUPPRESS,
          help=field.metadata["help"] + (f" (default {field.default!r})" if shown else ""),
          **({"action": argparse.BooleanOptionalAction} if is_bool else
             {"type": _parse(kind), "metavar": "X"}))
  return parser


def load_config(name: str) -> default.Config:
  """``get_config()`` of ``configs/<name>.py``, or of the file ``name`` ending in ``.py``."""
  try:
    return (runpy.run_path(name) if name.endswith(".py") else vars(
        importlib.import_module(f"examples.cifar10.configs.{name}")))["get_config"]()
  except (ImportError, OSError, KeyError) as e:
    raise ValueError(f"--config {name}: {e}") from e


def make_config(args: argparse.Namespace) -> default.Config:
  config = load_config(args.config)
  given = {f.name: getattr(args, f.name) for f in dataclasses.fields(config)
           if hasattr(args, f.name)}
  per_optimizer = {k: dict(v) for k, v in config.per_optimizer.items()}
  for optimizer, name, value in getattr(args, "assignments", []):
    per_optimizer.setdefault(optimizer, {})[name] = value
  return dataclasses.replace(config, **given, per_optimizer=per_optimizer)


def main(argv: Sequence[str] | None = None) -> int:
  args = make_parser().parse_args(argv)
  from examples.cifar10 import compare, optimizers, study, train  # pylint: disable=C0415
  prog = f"python -m examples.cifar10 {args.command}"
  if args.command == "optimizers":
    print("\n".join(optimizers.describe(name) for name in optimizers.OPTIMIZERS))
    return 0
  try:
    config = make_config(args)
    if args.command == "study":
      study.run_study(config, args.workdir or "runs/cifar10/study")
      return 0
    if args.resume and args.overwrite:
      raise ValueError("--resume and --overwrite exclude each other")
    distributed.initialize(config)  # Before JAX does anything else.
    if args.command == "train":
      optimizers.check_settings([config])
      workdir = args.workdir or f"runs/cifar10/{config.optimizer}"
      train.train_and_evaluate(config, workdir, resume=args.resume, overwrite=args.overwrite)
      if distributed.is_primary():
        print(f"metrics: {workdir}/{checkpoints.METRICS_FILE}")
    else:
      workdir = args.workdir or "runs/cifar10/compare"
      results = compare.run_comparison(config, workdir, resume=args.resume,
                                       overwrite=args.overwrite)
      if distributed.is_primary():
        print("\n" + compare.table(results) + f"plot: {workdir}/{compare.PLOT_FILE}\n"
              f"table: {workdir}/{compare.TABLE_FILE}")
  except train.Diverged as e:
    print(f"{prog}: {e}", file=sys.stderr)
    return 1
  except (ValueError, input_pipeline.DataError, checkpoints.RunError, study.StudyError,
          distributed.DistributedError) as e:
    print(f"{prog}: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    hint = "rerun the same command" if args.command == "study" else "add --resume"
    print(f"{prog}: interrupted; to continue, {hint}", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
