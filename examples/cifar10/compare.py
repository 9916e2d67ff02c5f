"""Compare optimizers: train each one on the same data and seed, then plot and tabulate.

``run_comparison`` writes ``WORKDIR/<optimizer>/`` (one run directory each, see
``train.py``), ``WORKDIR/comparison.png`` (loss and accuracy curves of all
optimizers) and ``WORKDIR/comparison.md`` (a markdown table of final metrics).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from examples.cifar10 import input_pipeline
from examples.cifar10 import rundir
from examples.cifar10 import train

PLOT_FILE = "comparison.png"
TABLE_FILE = "comparison.md"
History = list[dict[str, Any]]


def plot(histories: Mapping[str, History], path: str | Path, title: str = "") -> Path:
  """Saves a 2x2 figure (train/test loss, train/test accuracy per epoch) to ``path``."""
  figure = Figure(figsize=(11, 8), layout="constrained")
  FigureCanvasAgg(figure)
  axes = figure.subplots(2, 2, sharex=True)
  panels = (("train_loss", "train loss"), ("test_loss", "test loss"),
            ("train_accuracy", "train accuracy"), ("test_accuracy", "test accuracy"))
  for ax, (key, label) in zip(axes.flat, panels):
    for name, history in histories.items():
      epochs = [m["epoch"] for m in history]
      values = [m[key] * (100 if "accuracy" in key else 1) for m in history]
      ax.plot(epochs, values, marker="o", markersize=3, label=name)
    ax.set_title(label)
    ax.set_ylabel("%" if "accuracy" in key else "cross-entropy")
    ax.grid(alpha=0.3)
  for ax in axes[1]:
    ax.set_xlabel("epoch")
  axes[0, 0].legend()
  if title:
    figure.suptitle(title)
  path = Path(path)
  figure.savefig(path, dpi=110)
  return path


def table(histories: Mapping[str, History]) -> str:
  """A markdown table of each optimizer's final epoch (throughput: median after epoch 1)."""
  lines = ["| optimizer | epochs | test acc | best test acc | test loss | train loss "
           "| train acc | images/s | PhaseShift kicks/step |",
           "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
  for name, history in histories.items():
    if not history:
      lines.append(f"| {name} | 0 | | | | | | | |")
      continue
    last = history[-1]
    best = max(m["test_accuracy"] for m in history)
    kicks = [m["phase_shift"] for m in history if "phase_shift" in m]
    rate = (f"{sum(k['kicks'] for k in kicks) / sum(k['steps'] for k in kicks):.2f}"
            if kicks else "-")
    speed = train.final_images_per_sec(history)
    lines.append(
        f"| {name} | {last['epoch']} | {last['test_accuracy']:.2%} | {best:.2%} "
        f"| {last['test_loss']:.4f} | {last['train_loss']:.4f} | {last['train_accuracy']:.2%} "
        f"| {'-' if math.isnan(speed) else f'{speed:,.0f}'} | {rate} |")
  return "\n".join(lines) + "\n"


def run_comparison(
    names: Sequence[str],
    config: train.Config,
    hparams: Mapping[str, Mapping[str, Any]],
    data: tuple[input_pipeline.Split, input_pipeline.Split],
    workdir: str | Path,
    **train_kwargs: Any,
) -> tuple[dict[str, History], Path, Path]:
  """Trains ``config`` with each optimizer in ``names``; writes the plot and the table.

  Args:
    names: optimizer names (distinct).
    config: everything but the optimizer, shared by all runs.
    hparams: per optimizer name, its hyperparameters.
    data: ``(train, test)``.
    workdir: the comparison directory; run ``n`` goes to ``workdir/n``.
    **train_kwargs: passed to :func:`train.train_and_evaluate` (resume, overwrite,
      progress, log, ...).

  Returns:
    ``(histories, plot path, table path)``.
  """
  if len(set(names)) != len(names):
    raise ValueError(f"optimizers must be distinct, got {', '.join(names)}")
  workdir = Path(workdir)
  configs = {n: dataclasses.replace(config, optimizer=n, hparams=dict(hparams.get(n, {})))
             for n in names}
  for n, c in configs.items():  # Everything is checked before the first run trains.
    c.validate()
    if not (train_kwargs.get("resume") or train_kwargs.get("overwrite")) and rundir.holds_run(
        workdir / n):
      raise rundir.RunError(f"{workdir / n} already holds a run; pass --resume to continue it "
                            "or --overwrite to start over")
  histories = {n: train.train_and_evaluate(c, data, workdir / n, **train_kwargs)
               for n, c in configs.items()}
  title = (f"CIFAR-10, {config.model}, {len(data[0]):,} training images, "
           f"batch {config.batch_size}, seed {config.seed}")
  plot_path = plot(histories, workdir / PLOT_FILE, title)
  table_path = workdir / TABLE_FILE
  table_path.write_text(table(histories))
  return histories, plot_path, table_path
