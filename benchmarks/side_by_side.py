"""K seeds side by side (``nnx.vmap`` of the example's train step) against K steps one by one.

``examples/cifar10`` trains the seeds of ``compare --seeds K`` one after another. This
times the alternative: the K models and optimizers stacked on a leading axis and
``examples.cifar10.train``'s own step under ``nnx.vmap``, with no custom batching rule
(each convolution over K kernels becomes one grouped convolution). One step of the K
seeds each way, on the same random batches, interleaved in rounds
(:func:`benchmarks.timing.interleaved_medians`); it also checks that both ways compute
the same losses.

``python -m benchmarks.side_by_side --seeds 4 [--optimizer phase_shift] [--width 16]``
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from benchmarks import timing
from examples.cifar10 import train
from examples.cifar10.configs import default


def _stack(nodes: Sequence[Any]) -> Any:
  """The nnx objects ``nodes`` (alike) as one, their arrays stacked on a leading axis."""
  graphdef, _ = nnx.split(nodes[0])
  return nnx.merge(graphdef, jax.tree.map(lambda *xs: jnp.stack(xs),
                                          *(nnx.state(n) for n in nodes)))


def step_times(config: default.Config, seeds: Sequence[int], *, steps: int = 30,
               warmup: int = 3) -> dict[str, Any]:
  """Median ms of one train step of every seed: one by one, and side by side."""
  k, batch = len(seeds), config.batch_size
  rng = np.random.default_rng(0)
  images = jnp.asarray(rng.integers(0, 256, (k, batch, 32, 32, 3), dtype=np.uint8))
  labels = jnp.asarray(rng.integers(0, 10, (k, batch)).astype(np.int32))
  keys = jax.vmap(jax.random.key)(jnp.asarray(seeds))
  mesh = train.make_mesh(dataclasses.replace(config, num_devices=1))
  alone = []
  for seed in seeds:
    model, optimizer = train.create_train_state(dataclasses.replace(config, seed=seed), 100, mesh)
    alone.append((model, optimizer, train.create_metrics(train.kickable(model, optimizer))))
  model, optimizer, metrics = (_stack([a[i] for a in alone]) for i in range(3))
  step = nnx.jit(nnx.vmap(train.train_step.__wrapped__), donate_argnums=(0, 1, 2))
  losses = {"one_by_one": [train.train_step(*alone[i], images[i], labels[i], keys[i])
                           for i in range(k)],
            "side_by_side": step(model, optimizer, metrics, images, labels, keys)}

  def one_by_one(_):
    def thunk():
      jax.block_until_ready([train.train_step(*alone[i], images[i], labels[i], keys[i])
                             for i in range(k)])
    return thunk

  def side_by_side(_):
    return lambda: jax.block_until_ready(step(model, optimizer, metrics, images, labels, keys))

  stats = timing.interleaved_medians({"one_by_one": one_by_one, "side_by_side": side_by_side},
                                     warmup=warmup, steps=steps)
  alone_ms, together_ms = (stats[n]["median_s"] * 1e3 for n in ("one_by_one", "side_by_side"))
  return {"seeds": k, "backend": jax.default_backend(), "one_by_one_step_ms": alone_ms,
          "side_by_side_step_ms": together_ms, "speedup": alone_ms / together_ms,
          "first_losses": {n: np.asarray(v, float).ravel().tolist() for n, v in losses.items()}}


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.side_by_side",
                                   description=__doc__.splitlines()[0])
  parser.add_argument("--optimizer", default="adam")
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--width", type=int, default=None)
  parser.add_argument("--steps", type=int, default=30)
  args = parser.parse_args(argv)
  config = dataclasses.replace(default.Config(), optimizer=args.optimizer,
                               batch_size=args.batch_size, width=args.width)
  result = step_times(config, range(args.seeds), steps=args.steps)
  for key, value in result.items():
    print(f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
  main()
