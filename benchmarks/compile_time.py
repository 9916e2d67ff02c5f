"""Compile time of one optimizer step, against optax.adam, for 10, 100 and 1,000 leaves.

Each measurement builds a new jitted step (:func:`benchmarks.contenders.make_step`)
and times ``lower`` (tracing included) and ``compile`` on abstract inputs, so
nothing is allocated and no cache is hit; the median of ``--repeats`` fresh
builds. Run ``python -m benchmarks.compile_time``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax

from benchmarks import contenders
from benchmarks import timing
from benchmarks import trees

LEAVES = (10, 100, 1000)
TOTAL = 3_000_000  # parameters, in LEAVES leaves of equal size (trees.uniform_shapes)
CONTENDERS = ("optax.sgd", "optax.adam", "phase_shift", "phase_shift[element]",
              "with_phase_shift(adam)")


def compile_seconds(factory: Callable[[], Any], shapes: trees.Shapes, repeats: int
                    ) -> dict[str, float]:
  """Median seconds to lower and to compile a fresh donated step, over ``repeats`` builds."""
  params = trees.abstract_tree(shapes)
  lower_s, compile_s = [], []
  for _ in range(repeats):
    tx = factory()
    state = jax.eval_shape(tx.init, params)
    step = contenders.make_step(tx)
    t0 = time.perf_counter()
    lowered = step.lower(params, state, params)
    t1 = time.perf_counter()
    lowered.compile()
    t2 = time.perf_counter()
    lower_s.append(t1 - t0)
    compile_s.append(t2 - t1)
  lower, comp = statistics.median(lower_s), statistics.median(compile_s)
  return {"seconds": lower + comp, "lower_s": lower, "compile_s": comp, "repeats": repeats}


def run(leaves=LEAVES, total: int = TOTAL, names=CONTENDERS, repeats: int = 3,
        log: Callable[[str], None] = print) -> dict[str, Any]:
  available, _ = contenders.all_contenders(include_compat=False)
  cases = []
  for num_leaves in leaves:
    shapes = trees.uniform_shapes(num_leaves, total // num_leaves)
    results = {}
    for name in names:
      results[name] = compile_seconds(available[name], shapes, repeats)
      log(f"  {num_leaves} leaves: {name:26s} {results[name]['seconds']:7.2f} s")
    for row in results.values():
      for base in contenders.BASELINES:
        if base in results:
          row[f"vs_{base}"] = row["seconds"] / results[base]["seconds"]
    cases.append({"leaves": num_leaves, "params": trees.count(shapes)[1], "results": results})
  return {"cases": cases}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--leaves", default=",".join(map(str, LEAVES)))
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args(argv)
  from benchmarks import report  # pylint: disable=import-outside-toplevel

  result = {"environment": timing.environment(),
            "compile_time": run([int(n) for n in args.leaves.split(",")],
                                repeats=args.repeats)}
  print(report.compile_table(result["compile_time"]))
  return result


if __name__ == "__main__":
  main()
