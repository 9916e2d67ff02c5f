"""End-to-end: the CIFAR-10 train step with each optimizer, and the optimizer's share of it.

The train step is the one of ``examples/cifar10/train.py`` (``train_step``:
forward, backward, optimizer update, metrics; model, optimizer and metrics donated), on one fixed
batch of random ``uint8`` images (the data do not change the cost). The
optimizer's share is the time of its step alone on the model's parameter tree
(:func:`benchmarks.step_cost.jax_runner`) over the time of the train step. All
steps are interleaved in one run. Run ``python -m benchmarks.end_to_end``.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from benchmarks import step_cost
from benchmarks import timing
from benchmarks import trees

OPTIMIZERS = ("sgd", "adam", "phase_shift", "phase_shift_adam", "torch_adam", "minima_adam",
              "miniai_adam")


def _train_runner(name: str, model: str, batch_size: int, width: int | None
                  ) -> Callable[[int], Callable[[], Any]]:
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=import-outside-toplevel
  from examples.cifar10 import train  # pylint: disable=import-outside-toplevel
  from examples.cifar10.configs import default  # pylint: disable=import-outside-toplevel

  config = dataclasses.replace(default.Config(), optimizer=name, model=model,
                               batch_size=batch_size, width=width)
  mesh = train.make_mesh(config)
  network, optimizer = train.create_train_state(config, 100, mesh)
  metrics = train.replicate(train.create_metrics(train.kickable(network, optimizer)), mesh)
  rng = np.random.default_rng(0)
  batch = (rng.integers(0, 256, (batch_size, 32, 32, 3), dtype=np.uint8),
           rng.integers(0, 10, batch_size).astype(np.int32))
  images, labels = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
  key = jax.device_put(jax.random.key(0), NamedSharding(mesh, PartitionSpec()))

  def run_once(_):
    def thunk():
      loss = train.train_step(network, optimizer, metrics, images, labels, key)
      loss.block_until_ready()  # all outputs of one execution are ready together
    return thunk

  return run_once


def run(model: str = "cnn", batch_size: int = 128, names=OPTIMIZERS, *, width: int | None = None,
        warmup: int = 3, steps: int = 20, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Images/s and optimizer share for each name of ``examples/cifar10/optimizers.py``.

  ``width`` is the model's first-layer width (None: the model's default).
  """
  from examples.cifar10 import optimizers  # pylint: disable=import-outside-toplevel
  from examples.cifar10.configs import default  # pylint: disable=import-outside-toplevel

  shapes = trees.model_shapes(model, width)
  params = trees.random_tree(shapes, 0)
  grads = [trees.random_tree(shapes, seed) for seed in (1, 2)]
  runners: dict[str, Callable[[int], Callable[[], Any]]] = {}
  notes: list[str] = []
  for name in names:
    try:
      runners[f"train {name}"] = _train_runner(name, model, batch_size, width)
    except ValueError as e:  # e.g. a compat optimizer whose module is missing
      notes.append(f"{name} skipped: {e}")
      continue
    runners[f"train {name}"](0)()  # compile before timing (jax_runner compiles its own)
    runners[f"optimizer {name}"] = step_cost.jax_runner(
        lambda name=name: optimizers.create_optimizer(
            dataclasses.replace(default.Config(), optimizer=name)), params, grads)
  stats = timing.interleaved_medians(runners, warmup=warmup, steps=steps)
  rows = {}
  for name in names:
    if f"train {name}" not in stats:
      continue
    step_s = stats[f"train {name}"]["median_s"]
    optimizer_s = stats[f"optimizer {name}"]["median_s"]
    rows[name] = {"step_s": step_s, "images_per_s": batch_size / step_s,
                  "optimizer_s": optimizer_s, "optimizer_share": optimizer_s / step_s,
                  "step_p10_s": stats[f"train {name}"]["p10_s"],
                  "step_p90_s": stats[f"train {name}"]["p90_s"]}
    log(f"  {model}: {name:18s} {rows[name]['images_per_s']:8.0f} images/s, "
        f"optimizer {rows[name]['optimizer_share']:.1%} of the step")
  return {"model": model, "width": width, "batch_size": batch_size,
          "params": trees.count(shapes)[1], "optimizers": rows, "notes": notes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="cnn", help="cnn or resnet")
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args(argv)
  from benchmarks import report  # pylint: disable=import-outside-toplevel

  result = {"environment": timing.environment(),
            "end_to_end": run(args.model, args.batch_size, args.optimizers.split(","),
                              steps=args.steps)}
  print(report.end_to_end_table(result["end_to_end"]))
  return result


if __name__ == "__main__":
  main()
