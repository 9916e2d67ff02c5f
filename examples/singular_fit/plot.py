"""PNG of the fits and the loss curves of the singular-function demo."""

from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from examples.singular_fit import target  # noqa: E402
from examples.singular_fit.run import Fit  # noqa: E402

COLORS = {"GD": "tab:blue", "Adam": "tab:green", "PhaseShift": "tab:purple"}
STYLES = {"PhaseShift": "--"}  # dashed: it often runs on top of GD


def plot_fits(fits: dict[str, Fit], path: pathlib.Path) -> pathlib.Path:
  """Left: the clamped target and each optimizer's fit (first seed), both drawn on a
  grid finer than the training grid. Right: training MSE per step, mean over seeds
  (line) and min to max over seeds (band), log scale."""
  x, y = (np.asarray(a)[:, 0] for a in target.dataset(target.N_PLOT))
  fig, (ax_fit, ax_loss) = plt.subplots(1, 2, figsize=(13, 5))
  ax_fit.plot(x, y, color="black", lw=1, label="target (clamped to ±100)")
  for pole in target.POLES:
    ax_fit.axvline(pole, color="grey", ls=":", lw=0.8)
  ax_fit.plot([], [], color="grey", ls=":", lw=0.8, label="poles")
  n_seeds = 0
  for name, fit in fits.items():
    color = COLORS.get(name)
    n_seeds, steps = fit.losses.shape
    style = STYLES.get(name, "-")
    ax_fit.plot(x, fit.prediction[0], color=color, lw=2, ls=style,
                label=f"{name} (final MSE {fit.final_loss[0]:.0f})")
    step = np.arange(1, steps + 1)
    ax_loss.plot(step, fit.losses.mean(axis=0), color=color, ls=style, label=name)
    ax_loss.fill_between(step, fit.losses.min(axis=0), fit.losses.max(axis=0),
                         color=color, alpha=0.2)
  ax_fit.set(xlabel="x", ylabel="y", ylim=(-110, 110),
             title="MLP fits of (1 + x²) / ((x + 0.2)(x - 0.9) sin 2πx), seed 0")
  ax_fit.legend(fontsize=8, loc="lower left")
  ax_loss.set(xlabel="step", ylabel="training MSE", yscale="log",
              title=f"Training loss (mean and range over {n_seeds} seeds)")
  ax_loss.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path
