"""Side by side against one by one: K CIFAR-10 trials in one vmapped program, and the same K alone.

Trains K trials of one optimizer (learning rates from a tenth of its default to the
default, seeds ``--seed`` to ``--seed + K - 1``) twice on the same held-out split of
the CIFAR-10 training set: one after the other with
:func:`examples.cifar10.train.train_and_evaluate`, then all together with
:func:`examples.cifar10.vmapped_trials.train_side_by_side`. Prints the wall seconds
of each way (compiles included), the speedup, the steady time of one epoch of all K
trials each way, and per metric the largest difference between the two ways.

With ``--steps-only`` (no data needed) it times just the train step instead: one
step of the K trials side by side against one step of each of the K trials alone
(:func:`examples.cifar10.train.create_training`), on the same random batch,
interleaved in rounds (:func:`benchmarks.timing.interleaved_medians`), so both see
the same machine load.

``python -m benchmarks.side_by_side --data-dir DIR --trials 4 --epochs 3 --validation-fraction 0.2``
``python -m benchmarks.side_by_side --steps-only --trials 4``
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence

import jax
import numpy as np

from benchmarks import timing
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


def step_times(configs: Sequence[train.Config], *, steps: int = 30, warmup: int = 3,
               conv_batching: str = "auto") -> dict[str, float]:
  """Median ms of one train step of all K trials: side by side, and one by one.

  Each round runs K single steps (one per trial, each trial with its own jitted
  step, as :mod:`train` builds them) and one side-by-side step, in shuffled
  order; the batch is the same random ``uint8`` batch for every trial.
  """
  k, batch_size = len(configs), configs[0].batch_size
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (k, batch_size, 32, 32, 3), dtype=np.uint8)
  labels = rng.integers(0, 10, (k, batch_size)).astype(np.int32)
  mask = np.ones((k, batch_size), bool)
  alone = [train.create_training(c, steps_per_epoch=100) for c in configs]
  alone_stats = [t.new_train_stats() for t in alone]
  together = vmapped_trials.SideBySide.create(configs, 100, conv_batching)
  together_stats = [together.new_stats()]

  def one_by_one(_):
    def thunk():
      for i, t in enumerate(alone):
        alone_stats[i], loss = t.train_step(t.model, t.optimizer, alone_stats[i],
                                            images[i], labels[i], mask[i])
        jax.block_until_ready(loss)
    return thunk

  def side_by_side(_):
    def thunk():
      together.state, together_stats[0] = together.train_step(
          together.state, together_stats[0], images, labels, mask)
      jax.block_until_ready(together_stats[0])
    return thunk

  stats = timing.interleaved_medians({"one_by_one": one_by_one, "side_by_side": side_by_side},
                                     warmup=warmup, steps=steps)
  alone_ms = stats["one_by_one"]["median_s"] * 1e3
  together_ms = stats["side_by_side"]["median_s"] * 1e3
  return {"trials": k, "one_by_one_step_ms": alone_ms, "side_by_side_step_ms": together_ms,
          "step_speedup": alone_ms / together_ms}


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
  parser.add_argument("--steps-only", action="store_true",
                      help="time one train step each way on a random batch (no data needed)")
  args = parser.parse_args(argv)
  # The trials differ in seed and learning rate (from a tenth of the default to the default).
  default = optimizers.resolve(args.optimizer)["learning_rate"]
  rates = np.geomspace(default / 10, default, args.trials)
  configs = [train.Config(optimizer=args.optimizer, hparams={"learning_rate": float(lr)},
                          epochs=args.epochs, batch_size=args.batch_size, width=args.width,
                          seed=args.seed + k) for k, lr in enumerate(rates)]
  if args.steps_only:
    result = step_times(configs, conv_batching=args.conv_batching)
    print(f"backend {jax.default_backend()}, batch {args.batch_size} per trial, {args.optimizer}")
  else:
    train_split, _ = input_pipeline.load_cifar10(args.data_dir, download=args.data_dir is None)
    if args.train_size:
      train_split = input_pipeline.Split(train_split.images[:args.train_size],
                                         train_split.labels[:args.train_size])
    data = input_pipeline.split_validation(train_split, args.validation_fraction, args.seed)
    result = benchmark(configs, data, args.conv_batching)
    print(f"backend {jax.default_backend()}, {len(data[0])} training images, "
          f"{args.epochs} epochs, {args.optimizer}")
  for key, value in result.items():
    print(f"{key}: {value:.6g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
  main()
