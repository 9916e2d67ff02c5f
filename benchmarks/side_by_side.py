"""Side by side against one by one: K CIFAR-10 trials in one vmapped program, and the same K alone.

Trains K trials of one optimizer (learning rates from a tenth of its default to the
default, seeds ``--seed`` to ``--seed + K - 1``) twice on the same held-out split of
the CIFAR-10 training set: one after the other with
:func:`examples.cifar10.train.train_and_evaluate`, then all together with
:func:`examples.cifar10.vmapped_trials.train_side_by_side`. Prints the wall seconds
of each way (compiles included), the speedup, the steady time of one epoch of all K
trials each way, and per metric the largest difference between the two ways.

``python -m benchmarks.side_by_side --data-dir DIR --trials 4 --epochs 3 --validation-fraction 0.2``
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import jax
import numpy as np

from examples.cifar10 import input_pipeline
from examples.cifar10 import optimizers
from examples.cifar10 import train
from examples.cifar10 import vmapped_trials


def benchmark(configs: Sequence[train.Config],
              data: tuple[input_pipeline.Split, input_pipeline.Split],
              conv_batching: str = "auto") -> dict[str, float]:
  """Wall seconds of the trials one by one (:mod:`train`) and side by side, compiles included.

  Also the steady epoch time of all trials (median over epochs after the first)
  and, per metric, the largest difference between the two ways.
  """
  start = time.perf_counter()
  one_by_one = [train.train_and_evaluate(c, data, log=None) for c in configs]
  sequential = time.perf_counter() - start
  start = time.perf_counter()
  side = vmapped_trials.train_side_by_side(configs, data, conv_batching=conv_batching)
  vmapped = time.perf_counter() - start

  def steady(histories, scale):  # Seconds of one epoch of all trials.
    epochs = [m["train_seconds"] + m["eval_seconds"] for h in histories for m in h[1:]]
    return float(np.median(epochs)) * scale if epochs else math.nan

  result = {"trials": len(configs), "one_by_one_seconds": sequential,
            "side_by_side_seconds": vmapped, "speedup": sequential / vmapped,
            "one_by_one_epoch_seconds": steady(one_by_one, len(configs)),
            "side_by_side_epoch_seconds": steady(side, 1)}
  for key in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
    result[f"max_difference_{key}"] = max(
        abs(a[key] - b[key]) for h1, h2 in zip(one_by_one, side) for a, b in zip(h1, h2))
  return result


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m benchmarks.side_by_side",
      description="Time K trials trained side by side against the same K one by one.")
  parser.add_argument("--data-dir", default=None, help="directory holding cifar-10-batches-py")
  parser.add_argument("--optimizer", default="adam")
  parser.add_argument("--trials", type=int, default=4)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--width", type=int, default=None)
  parser.add_argument("--train-size", type=int, default=None,
                      help="use the first N training images (default all)")
  parser.add_argument("--validation-fraction", type=float, default=0.2)
  parser.add_argument("--conv-batching", choices=vmapped_trials.CONV_BATCHING, default="auto")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  train_split, _ = input_pipeline.load_cifar10(args.data_dir, download=args.data_dir is None)
  if args.train_size:
    train_split = input_pipeline.Split(train_split.images[:args.train_size],
                                       train_split.labels[:args.train_size])
  data = input_pipeline.split_validation(train_split, args.validation_fraction, args.seed)
  # The trials differ in seed and learning rate (from a tenth of the default to the default).
  default = optimizers.resolve(args.optimizer)["learning_rate"]
  rates = np.geomspace(default / 10, default, args.trials)
  configs = [train.Config(optimizer=args.optimizer, hparams={"learning_rate": float(lr)},
                          epochs=args.epochs, batch_size=args.batch_size, width=args.width,
                          seed=args.seed + k) for k, lr in enumerate(rates)]
  result = benchmark(configs, data, args.conv_batching)
  print(f"backend {jax.default_backend()}, {len(data[0])} training images, "
        f"{args.epochs} epochs, {args.optimizer}")
  for key, value in result.items():
    print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
  main()
