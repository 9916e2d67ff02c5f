"""Runs every benchmark in one process and records the results: JSON plus a markdown report.

``python -m benchmarks.run_all --out benchmarks/results/<date>-cpu.json`` writes the
JSON (device, versions, date, load and every measurement) and the report next to
it (same name, ``.md``). ``--quick`` runs tiny sizes only (a smoke test of the
machinery, not a measurement).
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import jax

from benchmarks import compile_time
from benchmarks import end_to_end
from benchmarks import memory
from benchmarks import report
from benchmarks import step_cost
from benchmarks import timing

QUICK = {"sizes": [(2, 2_000), (4, 20_000)], "models": [], "compile_leaves": [2, 4],
         "compile_repeats": 1, "steps": 3, "warmup": 1, "end_to_end_steps": 1,
         "end_to_end_batch": 8, "memory": (4, 20_000)}


def run(*, quick: bool = False, parts=("step_cost", "compile_time", "memory", "end_to_end"),
        step_args: argparse.Namespace | None = None, compile_repeats: int = 3,
        log=print) -> dict[str, Any]:
  """The results dict of every part asked for (see the module docstring)."""
  result: dict[str, Any] = {"environment": timing.environment()}
  started = time.perf_counter()
  if "step_cost" in parts:
    log("step cost ...")
    if quick:
      result["step_cost"] = step_cost.run(QUICK["sizes"], QUICK["models"], steps=QUICK["steps"],
                                          warmup=QUICK["warmup"], log=log)
    else:
      result["step_cost"] = step_cost.run_from_args(step_args, log=log)
  if "compile_time" in parts:
    log("compile time ...")
    result["compile_time"] = (
        compile_time.run(QUICK["compile_leaves"], total=20_000,
                         repeats=QUICK["compile_repeats"], log=log)
        if quick else compile_time.run(repeats=compile_repeats, log=log))
  if "memory" in parts:
    log("memory ...")
    result["memory"] = memory.run(*QUICK["memory"]) if quick else memory.run()
  if "end_to_end" in parts:
    log("end to end ...")
    result["end_to_end"] = (
        end_to_end.run(batch_size=QUICK["end_to_end_batch"], steps=QUICK["end_to_end_steps"],
                       warmup=1, log=log)
        if quick else end_to_end.run(log=log))
  result["environment"]["load_average_end"] = timing.load_average()
  result["seconds"] = time.perf_counter() - started
  return result


def default_out() -> Path:
  date = datetime.date.today().isoformat()
  return Path(__file__).parent / "results" / f"{date}-{jax.default_backend()}.json"


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--out", type=Path, default=None,
                      help="results JSON (default benchmarks/results/<date>-<backend>.json); "
                           "the markdown report goes next to it")
  parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
  parser.add_argument("--parts", default="step_cost,compile_time,memory,end_to_end")
  parser.add_argument("--compile-repeats", type=int, default=3,
                      help="fresh builds per compile-time measurement (the median is reported)")
  step_cost.add_arguments(parser)
  args = parser.parse_args(argv)
  out = args.out or default_out()
  result = run(quick=args.quick, parts=args.parts.split(","), step_args=args,
               compile_repeats=args.compile_repeats)
  result["command"] = "python -m benchmarks.run_all " + shlex.join(
      sys.argv[1:] if argv is None else argv)
  out.parent.mkdir(parents=True, exist_ok=True)
  out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
  text = report.markdown(result)
  out.with_suffix(".md").write_text(text, encoding="utf-8")
  print(text)
  print(f"wrote {out} and {out.with_suffix('.md')}")
  return result


if __name__ == "__main__":
  main()
