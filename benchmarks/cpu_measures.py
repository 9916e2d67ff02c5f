"""Do the XLA:CPU measures of ``phaseshift_jax/_xla_cpu.py`` still pay? Each one switched off.

On the step-cost trees, interleaved in one process, this times the PhaseShift step
(params and state donated, as in :mod:`benchmarks.step_cost`) as the library
builds it and with each measure replaced by the identity:

* ``without fold_in_half``: each leaf's change reduced without the fold;
* ``without in_rows``: a large leaf reduced to its change in one pass, not in rows;
* ``without written_after``: the new history not ordered after the changes;
* ``plain``: neither.

A measure pays where the step without it is slower (ratio > 1). Beside the
times, a regression check of the compiled step: whether the new history of a
leaf overwrites the old one's donated buffer (``history in place``), and how many
copies of a leaf-sized array the compiled program makes. Run
``python -m benchmarks.cpu_measures``; ``--sizes`` as in step_cost.
"""

from __future__ import annotations

import argparse
import contextlib
import re
from collections.abc import Callable, Iterator
from typing import Any

import jax

from benchmarks import contenders
from benchmarks import report
from benchmarks import step_cost
from benchmarks import timing
from benchmarks import trees
from phaseshift_jax import _xla_cpu

MEASURES = ("fold_in_half", "in_rows", "written_after")
IDENTITY = {"fold_in_half": lambda x: x, "in_rows": lambda x: None,
            "written_after": lambda x, _: x}
VARIANTS: dict[str, tuple[str, ...]] = {
    "phase_shift": (),
    "without fold_in_half": ("fold_in_half",),
    "without in_rows": ("in_rows",),
    "without written_after": ("written_after",),
    "plain": MEASURES,
}


@contextlib.contextmanager
def switched_off(measures: tuple[str, ...]) -> Iterator[None]:
  """Within the block, the named helpers of ``_xla_cpu`` do nothing (as off the CPU)."""
  saved = {name: getattr(_xla_cpu, name) for name in measures}
  try:
    for name in measures:
      setattr(_xla_cpu, name, IDENTITY[name])
    yield
  finally:
    for name, fn in saved.items():
      setattr(_xla_cpu, name, fn)


def compiled_copies(shapes: trees.Shapes, measures: tuple[str, ...] = ()) -> dict[str, Any]:
  """Copies of leaf-sized arrays in the compiled donated step, and whether the history stays in place."""
  factory = contenders.BUILTIN["phase_shift"]
  with switched_off(measures):
    tx = factory()
    step = contenders.make_step(tx)
    params = trees.random_tree(shapes, 0)
    state = tx.init(params)
    text = step.lower(params, state, params).compile().as_text()
    state = step(params, state, trees.random_tree(shapes, 1))[1]  # a first step
    old = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state.prev_grads)]
    params = trees.random_tree(shapes, 0)
    state = step(params, state, trees.random_tree(shapes, 2))[1]
    new = [x.unsafe_buffer_pointer() for x in jax.tree.leaves(state.prev_grads)]
  sizes = {"x".join(map(str, s)) for s in jax.tree.leaves(shapes, is_leaf=trees.is_shape)}
  copies = [m for m in re.findall(r"= f32\[([\d,]+)\]\{[\d,]*\} copy\(", text)
            if m.replace(",", "x") in sizes]
  return {"leaf_copies": len(copies),
          "history_in_place": sum(a == b for a, b in zip(old, new)) / len(old)}


def run_case(label: str, shapes: trees.Shapes, *, warmup: int, steps: int,
             log: Callable[[str], None] = print) -> dict[str, Any]:
  params = trees.random_tree(shapes, 0)
  grads = [trees.random_tree(shapes, seed) for seed in (1, 2)]
  runners = {name: step_cost.jax_runner(contenders.BUILTIN[name], params, grads)
             for name in contenders.BASELINES}
  for name, measures in VARIANTS.items():
    with switched_off(measures):  # the runner compiles its step before it returns
      runners[name] = step_cost.jax_runner(contenders.BUILTIN["phase_shift"], params, grads)
  stats = timing.interleaved_medians(runners, warmup=warmup, steps=steps)
  full = stats["phase_shift"]["median_s"]
  results = {}
  for name, row in stats.items():
    results[name] = {**row, "vs_phase_shift": row["median_s"] / full,
                     **{f"vs_{b}": row["median_s"] / stats[b]["median_s"]
                        for b in contenders.BASELINES}}
    if name in VARIANTS:
      results[name].update(compiled_copies(shapes, VARIANTS[name]))
    log(f"  {label}: {name:24s} {row['median_s'] * 1e3:8.3f} ms")
  return {"label": label, "results": results}


def run(sizes=step_cost.SIZES, models=("cnn",), *, warmup: int = 5, steps: int = 40,
        log: Callable[[str], None] = print) -> list[dict[str, Any]]:
  cases = [run_case(f"{n} x {m:,}", trees.uniform_shapes(n, m), warmup=warmup, steps=steps,
                    log=log) for n, m in sizes]
  for model in models:
    shapes = trees.model_shapes(model)
    cases.append(run_case(model, shapes, warmup=warmup, steps=steps, log=log))
  return cases


def table(cases: list[dict[str, Any]]) -> str:
  header = ["step"] + [c["label"] for c in cases]
  names = list(cases[0]["results"])

  def cell(row: dict[str, Any]) -> str:
    text = (f"{row['median_s'] * 1e3:.3g} ms ({row['vs_phase_shift']:.2f}x; "
            f"{row['vs_optax.adam']:.2f}x adam)")
    if "history_in_place" in row:
      text += f"; in place {row['history_in_place']:.0%}, {row['leaf_copies']} copies"
    return text

  rows = [[n] + [cell(c["results"][n]) for c in cases] for n in names]
  return ("### XLA:CPU measures switched off (time; x the library's step; x optax.adam)\n\n"
          + report.markdown_table(header, rows))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=step_cost.parse_sizes,
                      default=",".join(f"{n}x{m}" for n, m in step_cost.SIZES))
  parser.add_argument("--models", default="cnn")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args(argv)
  cases = run(args.sizes, [m for m in args.models.split(",") if m], warmup=args.warmup,
              steps=args.steps)
  print(f"Environment: {timing.environment()}")
  print(table(cases))
  return cases


if __name__ == "__main__":
  main()
