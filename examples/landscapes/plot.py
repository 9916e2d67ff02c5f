"""One PNG per landscape: each optimizer's path over the objective, and ``w`` per step."""

from __future__ import annotations

import pathlib

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from examples.landscapes.objectives import Landscape  # noqa: E402
from examples.landscapes.run import Paths  # noqa: E402

COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple")
MARKERS = ("o", "s", "^", "D")
STYLES = ("-", "-", "-", "--")  # PhaseShift dashed: it often runs on top of SGD


def plot_landscape(landscape: Landscape, results: dict[str, Paths],
                   path: pathlib.Path) -> pathlib.Path:
  """Draws ``results`` (from ``run.run_all``) over ``landscape`` into ``path``.

  Left: the objective (noise-free) and, for the first seed, every point the optimizer
  visited, end point starred; on a noisy landscape also, as faint dots, the noisy
  training loss that each step saw (what the lab plots). Right: ``w`` against the
  step, first seed as a line and, with several seeds, the band between their 10th
  and 90th percentiles.
  """
  fig, (ax_path, ax_w) = plt.subplots(1, 2, figsize=(13, 5))
  lo = min(landscape.window[0], *(p.w[0].min() for p in results.values()))
  hi = max(landscape.window[1], *(p.w[0].max() for p in results.values()))
  grid = np.linspace(lo, hi, 400)
  objective = jax.jit(jax.vmap(landscape.objective))
  curve = np.asarray(objective(grid.astype(np.float32)))
  ax_path.plot(grid, curve, color="black", lw=1.5, label="objective l(w)")
  for (name, paths), color, marker, style in zip(results.items(), COLORS, MARKERS,
                                                 STYLES):
    w = paths.w[0]
    on_curve = np.asarray(objective(w))
    ax_path.plot(w, on_curve, marker=marker, ms=4, lw=0.6, ls=style, color=color,
                 alpha=0.8, label=name)
    if landscape.noise != "none":
      ax_path.plot(w[:-1], paths.loss[0], ".", ms=3, color=color, alpha=0.35)
    ax_path.plot(w[-1], on_curve[-1], marker="*", ms=16, color=color, mec="black")
    steps = np.arange(w.shape[0])
    ax_w.plot(steps, w, color=color, lw=1.5, ls=style, label=name)
    if paths.w.shape[0] > 1:
      low, high = np.percentile(paths.w, [10, 90], axis=0)
      ax_w.fill_between(steps, low, high, color=color, alpha=0.15)
  ax_path.plot([], [], "k*", ms=12, label="end point")
  if landscape.noise != "none":
    ax_path.plot([], [], "k.", alpha=0.35, label="noisy training loss seen")
  ax_path.set(xlabel="w", ylabel="l(w)",
              title=f"{landscape.title}: paths from w = {landscape.start:g}")
  ax_path.legend(fontsize=8)
  n_seeds = next(iter(results.values())).w.shape[0]
  band = f"; bands: 10-90% of {n_seeds} seeds" if n_seeds > 1 else ""
  ax_w.set(xlabel="step", ylabel="w", title=f"w per step (seed 0{band})")
  ax_w.axhline(0.0, color="grey", lw=0.5)
  if landscape.stop_below is not None:
    ax_w.axhline(landscape.stop_below, color="grey", ls=":",
                 label=f"run stopped below w = {landscape.stop_below:g}")
  ax_w.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
