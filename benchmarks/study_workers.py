"""Trials per minute of one PostgreSQL study run by 1, 2, ... worker processes.

For each worker count K, K processes run ``python -m examples.cifar10 study`` on one new
study (its own ``--study-name``) of ``--trials`` Adam trials on a PostgreSQL server: a
throwaway one (``examples/cifar10/postgres_fixture.py``) unless ``--storage`` names one.
Pruning is off (``--pruner-startup-trials`` above the trial count), so every trial trains
every epoch and the counts do the same work. Trials per minute are counted from the first
trial's start to the last one's end (the study's own timestamps); the wall time from the
start of the processes to the end of the last one is printed beside them.

``python -m benchmarks.study_workers [--workers 1,2] [--trials 8] [--epochs 2]
[--data-dir ../shared/data/cifar-10-subset] [--storage postgresql://...] [-- study flags]``
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna

from examples.cifar10 import postgres_fixture
from examples.cifar10 import study
from examples.cifar10.configs import default

REPO = Path(__file__).resolve().parents[1]


def run(storage: str, workers: int, trials: int, epochs: int, data_dir: str,
        extra: Sequence[str] = (), log=print) -> dict[str, Any]:
  """Runs one study with ``workers`` processes; returns its counts and rates."""
  name = f"workers{workers}-{time.strftime('%Y%m%d-%H%M%S')}"
  with tempfile.TemporaryDirectory(prefix="study-workers-") as tmp:
    command = [sys.executable, "-m", "examples.cifar10", "study", "--config", "study",
               "--storage", storage, "--study-name", name, "--optimizers", "adam",
               "--trials", str(trials), "--epochs", str(epochs), "--validation-fraction", "0.2",
               "--pruner-startup-trials", str(trials + 1), "--data-dir", data_dir,
               "--no-download", "--no-progress", *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.monotonic()
    processes = [subprocess.Popen([*command, "--workdir", f"{tmp}/{i}"], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                 for i in range(workers)]
    try:
      outputs = [p.communicate()[0] for p in processes]
    finally:
      for p in processes:
        if p.poll() is None:
          p.kill()
          p.wait()
    wall = time.monotonic() - start
  if failed := [o for p, o in zip(processes, outputs) if p.returncode]:
    raise RuntimeError(f"a worker failed:\n{failed[0]}")
  handle = study.create_storage(default.Config(storage=storage), Path(tmp))
  done = [t for t in optuna.load_study(study_name=f"{name}-adam", storage=handle).get_trials()
          if t.state in study.FINISHED]
  span = (max(t.datetime_complete for t in done) - min(t.datetime_start for t in done))
  result = {"workers": workers, "trials": len(done), "epochs": epochs,
            "trials_seconds": span.total_seconds(), "wall_seconds": wall,
            "trials_per_minute": 60 * len(done) / span.total_seconds(),
            "seconds_per_trial": sum((t.datetime_complete - t.datetime_start).total_seconds()
                                     for t in done) / len(done)}
  log(f"{workers} worker(s): {result['trials']} trials in {result['trials_seconds']:.0f} s, "
      f"{result['trials_per_minute']:.2f} trials/min ({result['seconds_per_trial']:.1f} s per "
      f"trial; wall {wall:.0f} s with start-up)")
  return result


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m benchmarks.study_workers",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--workers", default="1,2", help="worker counts, comma-separated")
  parser.add_argument("--trials", type=int, default=8)
  parser.add_argument("--epochs", type=int, default=2)
  parser.add_argument("--data-dir", default=str(REPO.parent / "shared/data/cifar-10-subset"))
  parser.add_argument("--storage", help="a PostgreSQL URL (default: a throwaway local server)")
  parser.add_argument("--out", help="also write the results to this JSON file")
  parser.add_argument("extra", nargs="*", help="after --: more flags for every worker")
  args = parser.parse_args(argv)
  counts = [int(k) for k in args.workers.split(",")]
  load = os.getloadavg()
  with (contextlib.nullcontext(args.storage) if args.storage
        else postgres_fixture.server()) as storage:
    results = [run(storage, k, args.trials, args.epochs, args.data_dir, args.extra)
               for k in counts]
  base = results[0]["trials_per_minute"]
  print("\n| workers | trials | trials/min | vs first | s per trial | wall (with start-up) |\n"
        "| ---: | ---: | ---: | ---: | ---: | ---: |")
  for r in results:
    print(f"| {r['workers']} | {r['trials']} | {r['trials_per_minute']:.2f} | "
          f"{r['trials_per_minute'] / base:.2f}x | {r['seconds_per_trial']:.1f} | "
          f"{r['wall_seconds']:.0f} s |")
  print(f"\nload average before: {load[0]:.1f}, after: {os.getloadavg()[0]:.1f} "
        f"({os.cpu_count()} CPUs)")
  if args.out:
    Path(args.out).write_text(json.dumps({"command": "python -m benchmarks.study_workers " +
                                          " ".join(sys.argv[1:]), "load_before": load,
                                          "results": results}, indent=2) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
