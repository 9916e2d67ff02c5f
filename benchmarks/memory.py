"""Optimizer-state memory: bytes of state per parameter for every optimizer.

JAX contenders: the bytes of ``tx.init(params)`` (shapes only, nothing is
allocated). Torch contenders: the tensors an optimizer holds after a few steps
(``optimizer.state`` plus PhaseShift's gradient history; the original keeps the
last two gradient lists in a ``deque(maxlen=2)``). The figure is per float32
parameter, over the synthetic tree given; scalars (step counts) add a few bytes in
total. Run ``python -m benchmarks.memory``.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax

from benchmarks import contenders
from benchmarks import timing
from benchmarks import trees


def jax_state_bytes(factory, shapes: trees.Shapes) -> int:
  """Bytes of the optimizer state of ``factory()`` for a float32 tree of these shapes."""
  state = jax.eval_shape(factory().init, trees.abstract_tree(shapes))
  return int(sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)))


def torch_state_bytes(factory, shapes: trees.Shapes, steps: int = 3) -> int:
  """Bytes of the tensors a torch optimizer holds after ``steps`` steps on this tree."""
  import torch  # pylint: disable=import-outside-toplevel

  leaves = jax.tree.leaves(shapes, is_leaf=trees.is_shape)
  params = [torch.zeros(s, requires_grad=True) for s in leaves]
  optimizer = factory(params)
  for i in range(steps):
    for p in params:
      p.grad = torch.full_like(p, float(i + 1))
    optimizer.step()
  held = [t for state in optimizer.state.values() for t in state.values()
          if isinstance(t, torch.Tensor)]
  for name in ("gradient_history", "history"):  # PhaseShift's gradient history
    history = getattr(optimizer, name, None) or []
    held += [t for item in history for t in (item if isinstance(item, list) else [item])]
  return int(sum(t.numel() * t.element_size() for t in held))


def run(num_leaves: int = 100, total: int = 1_000_000, include_torch: bool = True
        ) -> dict[str, Any]:
  shapes = trees.synthetic_shapes(num_leaves, total)
  _, num_params = trees.count(shapes)
  rows: dict[str, dict[str, float]] = {}
  jax_contenders, notes = contenders.all_contenders()
  for name, factory in jax_contenders.items():
    nbytes = jax_state_bytes(factory, shapes)
    rows[name] = {"state_bytes": nbytes, "bytes_per_param": nbytes / num_params}
  if include_torch:
    try:
      from benchmarks import torch_contenders  # pylint: disable=import-outside-toplevel
    except ImportError as e:
      notes.append(f"torch contenders skipped: {e}")
    else:
      for name, factory in torch_contenders.CONTENDERS.items():
        nbytes = torch_state_bytes(factory, shapes)
        rows[name] = {"state_bytes": nbytes, "bytes_per_param": nbytes / num_params}
  return {"tree": {"leaves": num_leaves, "params": num_params}, "optimizers": rows,
          "notes": notes}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--leaves", type=int, default=100)
  parser.add_argument("--params", type=int, default=1_000_000)
  args = parser.parse_args(argv)
  result = {"environment": timing.environment(), "memory": run(args.leaves, args.params)}
  memory = result["memory"]
  print(f"optimizer state per float32 parameter ({memory['tree']['leaves']} leaves, "
        f"{memory['tree']['params']:,} params):")
  for name, row in memory["optimizers"].items():
    print(f"  {name:34s} {row['bytes_per_param']:6.2f} B/param")
  for note in memory["notes"]:
    print("  note:", note)
  return result


if __name__ == "__main__":
  main()
