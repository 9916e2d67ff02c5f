"""Markdown from a results JSON: tables of step cost, compile time, memory, end-to-end, targets.

``python -m benchmarks.report benchmarks/results/<file>.json`` prints the report;
:mod:`benchmarks.run_all` writes it next to the JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

# The targets, checked on every recorded run.
PHASE_SHIFT = "phase_shift"
ORIGINAL = "torch original-style PhaseShift"
FOREACH = "torch foreach PhaseShift"
# Step time against optax: (max x adam, max x sgd) on trees of fewer than MANY_LEAVES
# leaves, and max x adam from MANY_LEAVES on.
FEW_LEAVES_LIMITS = {"optax.adam": 0.85, "optax.sgd": 2.2}
MANY_LEAVES, MANY_LEAVES_LIMITS = 1000, {"optax.adam": 1.0}
MIN_VS_ORIGINAL, MAX_COMPILE_VS_ADAM, MAX_TRAIN_STEP_VS_SGD = 2.0, 2.0, 1.03


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
  lines += ["| " + " | ".join(row) + " |" for row in rows]
  return "\n".join(lines)


def _names(cases: list[dict[str, Any]]) -> list[str]:
  names: list[str] = []
  for case in cases:
    names += [n for n in case["results"] if n not in names]
  return names


def _cell(case: dict[str, Any], name: str, fmt) -> str:
  row = case["results"].get(name)
  return "-" if row is None else fmt(row)


_LIMIT_WORDS = {
    "same size": "The copy bandwidth is that of an array of the tree's size.",
    "device memory": "The copy bandwidth is the device memory's (HBM's): that of a 1 GiB "
                     "array, past every cache; a step whose arrays fit in a cache can exceed 100%.",
}


def step_cost_table(step_cost: dict[str, Any]) -> str:
  """Time, ratios to optax.sgd / optax.adam and fraction of the bandwidth limit."""
  cases = step_cost["cases"]
  header = ["optimizer"] + [c["label"] for c in cases]
  names = _names(cases)
  time_rows = [[n] + [_cell(c, n, lambda r: f"{r['median_s'] * 1e3:.3g}") for c in cases]
               for n in names]
  ratio_rows = [[n] + [_cell(c, n, lambda r: (
      f"{r.get('vs_optax.sgd', float('nan')):.2f} / {r.get('vs_optax.adam', float('nan')):.2f}"))
                       for c in cases] for n in names]
  limit_rows = [[n] + [_cell(c, n, lambda r: f"{r['fraction_of_limit']:.0%}") for c in cases]
                for n in names]
  bandwidth_row = [["copy bandwidth (GB/s)"] + [f"{c['bandwidth']['limit_gbps']:.1f}"
                                                for c in cases]]
  parts = [
      "### Step time (ms, median)", markdown_table(header, time_rows),
      "### Time relative to optax.sgd / optax.adam", markdown_table(header, ratio_rows),
      "### Fraction of the memory-bandwidth limit",
      "Bytes the step must move (read gradients, params and state; write params and "
      "state) over the measured copy bandwidth, divided by the measured time. "
      + _LIMIT_WORDS[cases[0]["bandwidth"].get("limit", "same size") if cases else "same size"],
      markdown_table(header, limit_rows + bandwidth_row),
  ]
  for note in step_cost.get("notes", []):
    parts.append(f"Note: {note}")
  return "\n\n".join(parts)


def bandwidth_table(step_cost: dict[str, Any]) -> str:
  """The copy bandwidth measured for each case, every way (see benchmarks/bandwidth.py)."""
  cases = step_cost["cases"]
  ways = [w for w in ("jax_in_place", "jax_fresh", "numpy_in_place", "torch_in_place")
          if any(w in c["bandwidth"]["gbps"] for c in cases)]
  def row(measured: dict[str, Any], torch_used: Any) -> list[str]:
    return ([f"{measured['elements']:,} float32"]
            + [f"{measured['gbps'][w]:.1f}" if w in measured["gbps"] else "-" for w in ways]
            + [str(torch_used or "-")])

  rows = [row(c["bandwidth"], c.get("torch_threads") or c.get("torch_device")) for c in cases]
  if cases and "device_memory" in cases[0]["bandwidth"]:  # the one limit of every case
    rows.append(row(cases[0]["bandwidth"]["device_memory"], cases[0].get("torch_device")))
  return ("### Copy bandwidth (GB/s, an elementwise pass reads and writes 8 bytes per value)\n\n"
          + markdown_table(["array"] + ways + ["torch threads (or device)"], rows))


def compile_table(compile_time: dict[str, Any]) -> str:
  cases = compile_time["cases"]
  header = ["optimizer"] + [f"{c['leaves']} leaves" for c in cases]
  names = _names(cases)
  rows = [[n] + [_cell(c, n, lambda r: f"{r['seconds']:.2f} s ({r['vs_optax.adam']:.2f}x adam)")
                 for c in cases] for n in names]
  return ("### Compile time of one step (trace + lower + compile)\n\n"
          + markdown_table(header, rows))


def memory_table(memory: dict[str, Any]) -> str:
  rows = [[n, f"{r['bytes_per_param']:.2f}"] for n, r in memory["optimizers"].items()]
  return ("### Optimizer state per parameter (float32)\n\n"
          + markdown_table(["optimizer", "bytes / param"], rows))


def end_to_end_table(end_to_end: dict[str, Any]) -> str:
  rows = [[n, f"{r['images_per_s']:.0f}", f"{r['step_s'] * 1e3:.1f}",
           f"{r['optimizer_s'] * 1e3:.2f}", f"{r['optimizer_share']:.1%}"]
          for n, r in end_to_end["optimizers"].items()]
  text = (f"### End-to-end: CIFAR-10 `{end_to_end['model']}` train step, batch "
          f"{end_to_end['batch_size']}\n\n"
          + markdown_table(["optimizer", "images/s", "step (ms)", "optimizer step (ms)",
                    "optimizer share"], rows))
  for note in end_to_end.get("notes", []):
    text += f"\n\nNote: {note}"
  return text


def _step_checks(case: dict[str, Any], name: str) -> list[dict[str, Any]]:
  """The step-cost targets of one PhaseShift row of one case (none if it did not run)."""
  rows = case["results"]
  ps = rows.get(name)
  if ps is None:
    return []
  checks = []
  label = f"{case['label']}: {name}"
  if case.get("kind") == "synthetic":
    limits = MANY_LEAVES_LIMITS if case["leaves"] >= MANY_LEAVES else FEW_LEAVES_LIMITS
    for base, limit in limits.items():
      if f"vs_{base}" in ps:
        checks.append({"target": f"{label} <= {limit}x {base}",
                       "value": ps[f"vs_{base}"], "ok": ps[f"vs_{base}"] <= limit})
  for torch_name, least, what in ((ORIGINAL, MIN_VS_ORIGINAL, "x faster than the"),
                                  (FOREACH, 1.0, "x as fast as the")):
    if torch_name in rows:
      speedup = rows[torch_name]["median_s"] / ps["median_s"]
      checks.append({"target": f"{label} >= {least:g}{what} {torch_name}",
                     "value": speedup, "ok": speedup >= least})
  return checks


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
  """Each target of the issue with the measured value and whether it holds."""
  checks: list[dict[str, Any]] = []
  for case in result.get("step_cost", {}).get("cases", []):
    checks += _step_checks(case, PHASE_SHIFT)
  compile_cases = result.get("compile_time", {}).get("cases", [])
  if compile_cases:
    largest = max(compile_cases, key=lambda c: c["leaves"])
    row = largest["results"].get(PHASE_SHIFT)
    if row is not None:
      checks.append({"target": f"compile time at {largest['leaves']} leaves <= "
                               f"{MAX_COMPILE_VS_ADAM}x optax.adam's",
                     "value": row["vs_optax.adam"], "ok": row["vs_optax.adam"] <= MAX_COMPILE_VS_ADAM})
  train_steps = result.get("end_to_end", {}).get("optimizers", {})
  if PHASE_SHIFT in train_steps and "sgd" in train_steps:
    ratio = train_steps[PHASE_SHIFT]["step_s"] / train_steps["sgd"]["step_s"]
    checks.append({"target": f"CIFAR-10 train step with {PHASE_SHIFT} <= "
                             f"{MAX_TRAIN_STEP_VS_SGD}x sgd's",
                   "value": ratio, "ok": ratio <= MAX_TRAIN_STEP_VS_SGD})
  return checks


def targets_table(checks: list[dict[str, Any]]) -> str:
  rows = [[c["target"], f"{c['value']:.2f}", "yes" if c["ok"] else "**no**"] for c in checks]
  return "### Targets\n\n" + markdown_table(["target", "measured", "met"], rows)


def markdown(result: dict[str, Any]) -> str:
  """The whole report of a results dict (the parts it has)."""
  env = result["environment"]
  device = env["device"]
  versions = ", ".join(f"{k} {v}" for k, v in env["versions"].items() if v)
  load = env.get("load_average")
  machine = (f"{device.get('cpu') or device['kind']}, {device.get('cpu_count')} cores"
             if device["platform"] == "cpu" else
             f"{device['count']} x {device['kind']}; host {device.get('cpu')}, "
             f"{device.get('cpu_count')} cores")
  lines = [f"## Benchmarks: {device['platform']} ({machine}), {env['date']}", "",
           f"Versions: {versions}."]
  if load:
    lines.append(f"Load average at the start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}.")
  if "command" in result:
    lines.append(f"Command: `{result['command']}`")
  parts = ["\n".join(lines)]
  if result.get("step_cost"):
    parts.append(step_cost_table(result["step_cost"]))
    parts.append(bandwidth_table(result["step_cost"]))
  if result.get("compile_time"):
    parts.append(compile_table(result["compile_time"]))
  if result.get("memory"):
    parts.append(memory_table(result["memory"]))
  if result.get("end_to_end"):
    parts.append(end_to_end_table(result["end_to_end"]))
  checks = targets(result)
  if checks:
    parts.append(targets_table(checks))
  return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("results", help="a results JSON written by benchmarks.run_all")
  args = parser.parse_args(argv)
  with open(args.results, encoding="utf-8") as f:
    print(markdown(json.load(f)))


if __name__ == "__main__":
  main()
