"""Step cost: one optimizer step (update + apply) for every contender, on the same trees.

For each tree (3M float32 parameters in 10 leaves of 300k, 100 of 30k or 1,000
of 3k elements, and the CIFAR-10 CNN and ResNet parameter trees) and each contender:

* JAX: ``jit(update + apply_updates)`` with params and optimizer state donated, the
  gradients not (:func:`benchmarks.contenders.make_step`); a fresh copy of one of
  two fixed gradient trees before each step (untimed), so the gradient changes
  every step and PhaseShift kicks. ``--previous DIR`` adds the PhaseShift of
  another checkout (e.g. the previous main) to the same interleaved run.
* torch: ``optimizer.step()`` with ``p.grad`` set to one of the same two gradient
  lists before each step (untimed), with the torch thread count (1 or the
  default) that copies fastest on this machine.

Each figure is the median over many timed steps after warm-up, all contenders in
one process, interleaved (each round steps every contender once). Reported with
it: ratios to ``optax.sgd`` and ``optax.adam``, and the fraction of the
memory-bandwidth limit, ``(bytes the step must move / measured copy bandwidth) /
time``, where a step must read the gradients, params and state
and write params and state: ``(3 + 2 s) * 4`` bytes per float32 parameter with
``s`` state arrays per parameter (SGD 3, Adam 7, PhaseShift 5, PhaseShift-Adam 9
times 4 bytes), less what a step need not read or write
(``contenders.STATE_TRAFFIC``: the floors 3, or 4 with one pass).
Run ``python -m benchmarks.step_cost``.
"""

from __future__ import annotations

import argparse
import importlib
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from benchmarks import bandwidth
from benchmarks import contenders
from benchmarks import memory
from benchmarks import timing
from benchmarks import trees

# (leaves, elements per leaf): 3M parameters each, in few large or many small leaves.
SIZES = ((10, 300_000), (100, 30_000), (1000, 3_000))
MODELS = ("cnn", "resnet")

# State arrays per parameter of the torch contenders (their algorithm's minimum).
TORCH_STATE_ARRAYS = {"torch original-style PhaseShift": 1, "torch foreach PhaseShift": 1,
                      "torch.optim.SGD(foreach)": 0, "torch.optim.Adam(foreach)": 2}


def bytes_per_param(read_state_arrays: float, written_state_arrays: float,
                    itemsize: int = 4) -> float:
  """Bytes a step must move per parameter: read g, p and the state; write p and the state.

  A step writes all of its state except where ``contenders.STATE_TRAFFIC`` says otherwise.
  """
  return (3 + read_state_arrays + written_state_arrays) * itemsize


_fresh_copy = jax.jit(lambda tree: jax.tree.map(jnp.copy, tree))


def jax_runner(factory: Callable[[], Any], params: Any, grads: list[Any]
               ) -> Callable[[int], Callable[[], None]]:
  """A runner (see :func:`benchmarks.timing.interleaved_medians`) of one donated jitted step.

  The step starts from a copy of ``params`` (it donates its params) and alternates
  between the two trees of ``grads`` (a fresh copy each step); it is compiled
  (one step run) before this returns.
  """
  tx = factory()
  params = _fresh_copy(params)
  box = [params, tx.init(params)]
  step = contenders.make_step(tx)

  def run_once(i):
    g = jax.block_until_ready(_fresh_copy(grads[i % 2]))

    def thunk():
      box[0], box[1] = step(box[0], box[1], g)
      # All outputs of one execution are ready together: waiting on one leaf waits
      # for the step without adding a per-leaf cost to the measurement.
      jax.tree.leaves(box[0])[0].block_until_ready()

    return thunk

  with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
    run_once(0)()  # compile before timing
  return run_once


def fastest_torch_threads(num_elements: int) -> int:
  """1 or torch's default thread count, whichever makes an in-place pass faster here."""
  import torch  # pylint: disable=import-outside-toplevel

  default = torch.get_num_threads()
  x = torch.zeros(num_elements)
  best, best_time = default, float("inf")
  for threads in sorted({1, default}):
    torch.set_num_threads(threads)
    t = timing.median_seconds(lambda _: lambda: x.add_(1), warmup=3, steps=15)["median_s"]
    if t < best_time:
      best, best_time = threads, t
  torch.set_num_threads(default)
  return best


def torch_runner(factory, param_arrays: list[Any], grad_arrays: list[list[Any]],
                 device: str = "cpu") -> Callable[[int], Callable[[], Any]]:
  """A runner of ``optimizer.step()`` of ``factory(params)``; ``p.grad`` set before each.

  On ``"cuda"`` the timed call waits for the GPU (``torch.cuda.synchronize``).
  """
  from benchmarks import torch_contenders  # pylint: disable=import-outside-toplevel

  params = [t.requires_grad_() for t in torch_contenders.tensors(param_arrays, device)]
  grads = [torch_contenders.tensors(g, device) for g in grad_arrays]
  optimizer = factory(params)
  step = torch_contenders.waiting(optimizer.step, device)

  def run_once(i):
    for p, g in zip(params, grads[i % 2]):
      p.grad = g
    return step

  return run_once


def run_case(label: str, kind: str, shapes: trees.Shapes, *,
             jax_contenders: dict[str, Callable[[], Any]], torch_device: str | None,
             warmup: int, steps: int, log: Callable[[str], None] = print) -> dict[str, Any]:
  """Every contender on one tree, interleaved; ratios and fractions of the bandwidth limit.

  ``torch_device``: where the torch contenders run (``"cpu"``, ``"cuda"``), None for none.
  """
  num_leaves, num_params = trees.count(shapes)
  limit = bandwidth.step_limit(num_params)
  params = trees.random_tree(shapes, 0)
  grads = [trees.random_tree(shapes, seed) for seed in (1, 2)]
  runners: dict[str, Callable[[int], Callable[[], Any]]] = {}
  state_arrays: dict[str, float] = {}
  for name, factory in jax_contenders.items():
    runners[name] = jax_runner(factory, params, grads)
    state_arrays[name] = memory.jax_state_bytes(factory, shapes) / (4 * num_params)
  torch_threads = None
  if torch_device is not None:
    import torch  # pylint: disable=import-outside-toplevel
    from benchmarks import torch_contenders  # pylint: disable=import-outside-toplevel

    if torch_device == "cpu":
      torch_threads = fastest_torch_threads(num_params)
    param_arrays = jax.tree.leaves(params)
    grad_arrays = [jax.tree.leaves(g) for g in grads]
    for name, factory in torch_contenders.CONTENDERS.items():
      runners[name] = torch_runner(factory, param_arrays, grad_arrays, torch_device)
      state_arrays[name] = TORCH_STATE_ARRAYS[name]
    default_threads = torch.get_num_threads()
    torch.set_num_threads(torch_threads or default_threads)
  try:
    stats = timing.interleaved_medians(runners, warmup=warmup, steps=steps)
  finally:
    if torch_device is not None:
      torch.set_num_threads(default_threads)
  results: dict[str, dict[str, Any]] = {}
  for name, row in stats.items():
    results[name] = {**row, "framework": "torch" if name in TORCH_STATE_ARRAYS else "jax",
                     "state_arrays": round(state_arrays[name], 3),
                     "bytes_per_param": bytes_per_param(*contenders.STATE_TRAFFIC.get(
                         name, (round(state_arrays[name]),) * 2))}
    log(f"  {label}: {name:34s} {row['median_s'] * 1e3:9.3f} ms")
  for row in results.values():
    row["fraction_of_limit"] = (row["bytes_per_param"] * num_params / (limit["limit_gbps"] * 1e9)
                                / row["median_s"])
    for base in contenders.BASELINES:
      if base in results:
        row[f"vs_{base}"] = row["median_s"] / results[base]["median_s"]
  return {"label": label, "kind": kind, "leaves": num_leaves, "params": num_params,
          "bandwidth": limit, "torch_threads": torch_threads, "torch_device": torch_device,
          "results": results}


def run(sizes=SIZES, models=MODELS, *, include_compat: bool = True, include_torch: bool = True,
        only: list[str] | None = None, previous: str | None = None, warmup: int = 5,
        steps: int = 50, log: Callable[[str], None] = print) -> dict[str, Any]:
  """All cases; ``only`` restricts the JAX contenders by name (the baselines always run).

  ``previous``: a directory with another version's ``phaseshift_jax`` package, whose
  PhaseShift contenders run beside this one's (:func:`contenders.previous_contenders`).
  """
  jax_contenders, notes = contenders.all_contenders(include_compat)
  if only is not None:
    keep = set(only) | set(contenders.BASELINES)
    jax_contenders = {k: v for k, v in jax_contenders.items() if k in keep}
  if previous is not None:
    jax_contenders.update(contenders.previous_contenders(previous))
  torch_device = None
  if include_torch:
    try:
      torch_contenders = importlib.import_module("benchmarks.torch_contenders")  # imports torch
    except ImportError as e:
      notes.append(f"torch contenders skipped: {e}")
    else:
      torch_device = torch_contenders.device_for(jax.default_backend())
      if torch_device is None:
        notes.append(f"torch contenders skipped: this torch has no device for JAX's "
                     f"{jax.default_backend()!r} backend")
  cases = []
  for num_leaves, leaf_size in sizes:
    shapes = trees.uniform_shapes(num_leaves, leaf_size)
    label = f"{num_leaves} x {leaf_size:,}"
    cases.append(run_case(label, "synthetic", shapes, jax_contenders=jax_contenders,
                          torch_device=torch_device, warmup=warmup, steps=steps, log=log))
  for model in models:
    shapes = trees.model_shapes(model)
    num_leaves, num_params = trees.count(shapes)
    label = f"{model} ({num_leaves} leaves, {num_params / 1e6:.2f}M)"
    cases.append(run_case(label, "model", shapes, jax_contenders=jax_contenders,
                          torch_device=torch_device, warmup=warmup, steps=steps, log=log))
  return {"cases": cases, "notes": notes}


def parse_sizes(text: str) -> list[tuple[int, int]]:
  """``"10x3e5,1000x3000"`` -> ``[(10, 300000), (1000, 3000)]`` (an argparse type)."""
  sizes = []
  for item in filter(None, text.split(",")):
    leaves, total = item.lower().split("x")
    sizes.append((int(leaves), int(float(total))))
  return sizes


def add_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--sizes", type=parse_sizes,
                      default=",".join(f"{n}x{t}" for n, t in SIZES),
                      help="comma-separated LEAVESxELEMENTS (per leaf), e.g. 10x300000,1000x3000")
  parser.add_argument("--models", default=",".join(MODELS),
                      help="comma-separated CIFAR-10 models (cnn, resnet), or empty")
  parser.add_argument("--only", default=None,
                      help="comma-separated JAX contenders to run (besides optax.sgd/adam)")
  parser.add_argument("--previous", default=None, metavar="DIR",
                      help="also run the PhaseShift of the phaseshift_jax package in DIR "
                           "(e.g. a worktree of the previous main)")
  parser.add_argument("--no-compat", action="store_true", help="skip phaseshift_jax.compat")
  parser.add_argument("--no-torch", action="store_true", help="skip the torch contenders")
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--warmup", type=int, default=5)


def run_from_args(args: argparse.Namespace, log: Callable[[str], None] = print
                  ) -> dict[str, Any]:
  return run(args.sizes, [m for m in args.models.split(",") if m],
             include_compat=not args.no_compat, include_torch=not args.no_torch,
             only=args.only.split(",") if args.only else None,
             previous=args.previous, warmup=args.warmup,
             steps=args.steps, log=log)


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  add_arguments(parser)
  args = parser.parse_args(argv)
  from benchmarks import report  # pylint: disable=import-outside-toplevel

  result = {"environment": timing.environment(), "step_cost": run_from_args(args)}
  print(report.step_cost_table(result["step_cost"]))
  return result


if __name__ == "__main__":
  main()
