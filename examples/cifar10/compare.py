"""Compare optimizers: train each with ``config.seeds`` seeds on the same data; plot and tabulate.

Run ``s`` of optimizer ``o`` goes to the run directory ``WORKDIR/o/seed_s/``. The curves over
the seeds (``comparison.png``, ``.md``, ``.json``) are ``mean ± half-width`` of the 95%
interval of the mean (Student's t).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.stats
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from examples.cifar10 import checkpoints
from examples.cifar10 import distributed
from examples.cifar10 import input_pipeline
from examples.cifar10 import optimizers
from examples.cifar10 import train
from examples.cifar10.configs import default

PLOT_FILE, TABLE_FILE, JSON_FILE = "comparison.png", "comparison.md", "comparison.json"
CURVES = ("train_loss", "test_loss", "train_accuracy", "test_accuracy")


def run_configs(config: default.Config) -> dict[str, list[default.Config]]:
  """Per optimizer of ``config.optimizers``, its config for each seed (validated)."""
  names = [n.strip() for n in config.optimizers.split(",") if n.strip()]
  if not names or len(set(names)) != len(names):
    raise ValueError(f"optimizers must list distinct names, got {config.optimizers!r}")
  if unknown := sorted(set(config.per_optimizer) - set(names)):
    raise ValueError(f"--set {unknown[0]}.*: {unknown[0]} is not among {', '.join(names)}")
  try:
    runs = {n: [dataclasses.replace(config, optimizer=n, seed=config.seed + i,
                                    **config.per_optimizer.get(n, {}))
                for i in range(config.seeds)] for n in names}
  except TypeError as e:  # A setting that does not exist.
    raise ValueError(f"per_optimizer: {e}") from e
  for configs in runs.values():
    train.validate(configs[0])
  optimizers.check_settings([c[0] for c in runs.values()])
  return runs


def interval(values: Sequence[float]) -> tuple[float, float]:
  """Mean and half-width of the 95% confidence interval of the mean (NaN for one value)."""
  values, n = np.asarray(values, float), len(values)
  half = scipy.stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n) if n > 1 else math.nan
  return float(values.mean()), float(half)


def aggregate(histories: Sequence[list[dict[str, Any]]]) -> dict[str, Any]:
  """Mean and half-width per epoch of every curve over the seeds' ``histories``."""
  epochs = min(len(h) for h in histories)
  result: dict[str, Any] = {"seeds": len(histories), "epochs": epochs}
  for key in CURVES:
    pairs = [interval([h[e][key] for h in histories]) for e in range(epochs)]
    result[key] = {"mean": [p[0] for p in pairs], "half_width": [p[1] for p in pairs]}
  best = interval([max(m["test_accuracy"] for m in h[:epochs]) for h in histories])
  result["best_test_accuracy"] = {"mean": best[0], "half_width": best[1]}
  rates = [[m["images_per_sec"] for m in h] for h in histories]  # Epoch 1 compiles.
  result["images_per_sec"] = float(np.median([np.median(r[1:] or r) for r in rates]))
  result["final_test_accuracy"] = [h[epochs - 1]["test_accuracy"] for h in histories]
  kicks = [m["phase_shift"] for h in histories for m in h if "phase_shift" in m]
  if kicks:
    result["kicks_per_step"] = sum(k["kicks"] for k in kicks) / sum(k["steps"] for k in kicks)
  return result


def _pm(mean: float, half: float, percent: bool) -> str:
  scale, unit, digits = (100, "%", 2) if percent else (1, "", 4)
  text = f"{mean * scale:.{digits}f}{unit}"
  return text if math.isnan(half) else f"{text} ± {half * scale:.{digits}f}{unit}"


def table(results: Mapping[str, dict[str, Any]]) -> str:
  """The markdown tables: each optimizer's last epoch, and test accuracy per epoch."""
  lines = ["| optimizer | seeds | epochs | test acc | best test acc | test loss | train loss "
           "| images/s | kicks/step |", "| --- |" + " ---: |" * 8]
  for name, r in results.items():
    last = {k: (r[k]["mean"][-1], r[k]["half_width"][-1]) for k in CURVES}
    kicks = f"{r['kicks_per_step']:.2f}" if "kicks_per_step" in r else "-"
    lines.append(f"| {name} | {r['seeds']} | {r['epochs']} | {_pm(*last['test_accuracy'], True)} "
                 f"| {_pm(*r['best_test_accuracy'].values(), True)} "
                 f"| {_pm(*last['test_loss'], False)} "
                 f"| {_pm(*last['train_loss'], False)} | {r['images_per_sec']:,.0f} | {kicks} |")
  names = list(results)
  lines += ["", "Test accuracy per epoch:", "", "| epoch | " + " | ".join(names) + " |",
            "| ---: |" + " ---: |" * len(names)]
  for e in range(max(r["epochs"] for r in results.values())):
    cells = [_pm(r["test_accuracy"]["mean"][e], r["test_accuracy"]["half_width"][e], True)
             if e < r["epochs"] else "" for r in results.values()]
    lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
  first, *others = names
  if others and results[first]["seeds"] > 1:  # The same seed: the same initialization and data.
    base = results[first]["final_test_accuracy"]
    lines += ["", f"Final test accuracy minus {first}'s, paired by seed:", ""] + [
        f"- {n}: {_pm(*interval(np.subtract(results[n]['final_test_accuracy'], base)), True)}"
        for n in others if results[n]["seeds"] == len(base)]
  return "\n".join(lines) + "\n"


def plot(results: Mapping[str, dict[str, Any]], path: Path, title: str) -> None:
  """Train/test loss and accuracy per epoch: the mean over seeds and its 95% band."""
  figure = Figure(figsize=(11, 8), layout="constrained")
  FigureCanvasAgg(figure)
  axes = figure.subplots(2, 2, sharex=True)
  for ax, key in zip(axes.T.flat, CURVES):
    scale = 100 if "accuracy" in key else 1
    for name, r in results.items():
      epochs = np.arange(1, r["epochs"] + 1)
      mean, half = scale * np.array(r[key]["mean"]), scale * np.array(r[key]["half_width"])
      line, = ax.plot(epochs, mean, marker="o", markersize=3, label=name)
      if r["seeds"] > 1:
        ax.fill_between(epochs, mean - half, mean + half, color=line.get_color(), alpha=0.2)
    ax.set_title(key.replace("_", " "))
    ax.set_ylabel("%" if scale == 100 else "cross-entropy")
    ax.grid(alpha=0.3)
  for ax in axes[1]:
    ax.set_xlabel("epoch")
  axes[0, 0].legend()
  figure.suptitle(title)
  figure.savefig(path, dpi=110)


def run_comparison(config: default.Config, workdir: str | Path, *,
                   data: Mapping[str, input_pipeline.Split] | None = None,
                   resume: bool = False, overwrite: bool = False,
                   log: Callable[[str], None] | None = print) -> dict[str, dict[str, Any]]:
  """Trains every optimizer of ``config.optimizers`` with every seed; writes the plot, the
  table and the JSON into ``workdir``; returns the aggregated results by optimizer. With
  several processes, each trains every run with the others and process 0 alone logs and
  writes."""
  log = log if distributed.is_primary() else None
  runs = run_configs(config)
  workdir = Path(workdir)
  for name, configs in runs.items():  # Everything is checked before anything trains.
    for c in configs:
      if checkpoints.holds_run(workdir / name / f"seed_{c.seed}") and not (resume or overwrite):
        raise checkpoints.RunError(f"{workdir / name / f'seed_{c.seed}'} already holds a run; "
                                   "pass --resume to continue it or --overwrite to start over")
  data = input_pipeline.load(config, log) if data is None else data
  results = {}
  for name, configs in runs.items():
    histories = [train.train_and_evaluate(c, workdir / name / f"seed_{c.seed}", data=data,
                                          resume=resume, overwrite=overwrite, log=log)[1]
                 for c in configs]
    results[name] = aggregate(histories)
  seeds = (f"seeds {config.seed}..{config.seed + config.seeds - 1} (mean, 95% band)"
           if config.seeds > 1 else f"seed {config.seed}")
  if not distributed.is_primary():
    return results
  plot(results, workdir / PLOT_FILE, f"CIFAR-10, {config.model}, {len(data['train']):,} "
       f"training images, batch {config.batch_size}, {seeds}")
  (workdir / TABLE_FILE).write_text(table(results))
  (workdir / JSON_FILE).write_text(json.dumps(checkpoints.finite(results), indent=1) + "\n")
  return results
