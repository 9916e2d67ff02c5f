"""Run SGD, SGD with momentum, Adam and PhaseShift on the landscapes of ``objectives``.

Each run is a ``jax.lax.scan`` over the steps, ``jax.vmap``-ed over noise seeds, and
jit-compiled once per (landscape, optimizer).

Optimizer settings:

* **SGD** and **SGD momentum 0.9**: the lab's ``torch.optim.SGD(lr=...)`` and
  ``torch.optim.SGD(lr=..., momentum=0.9)``, torch's heavy-ball form
  ``b <- mu b + g`` (``b = g`` on the first step, no dampening), ``w <- w - lr b``, as
  ``phaseshift_jax.compat.torch.sgd``; ``landscapes_test.py`` checks the paths against
  torch's step by step.
* **Adam**: ``optax.adam(0.1)``. Adam's step is about ``lr`` long whatever the size of
  the gradient, so the lab's ``lr = 0.001`` would move ``w`` by at most ~0.1 in 100 steps;
  0.1 lets it cross the plotted windows (8 to 10 units) within the step budget.
* **PhaseShift**: ``phase_shift(lr, threshold=0.1, shift_boundary=0.1,
  min_gradient_magnitude=20)`` with the lab's SGD ``lr``. With one parameter, the
  "most significant" leaf is always ``w``, so a step kicks ``w`` by ``0.1 * sign(g)``
  (uphill, as in the original; the boundary 0.1 does not clip it) whenever the
  gradient changed by more than 20 since the previous step. 20 is above the change a
  kick itself causes near the quartic's local minimum (``l''(4) * 0.1 = 12.6``), so
  kicks happen while ``w`` moves fast and stop once it settles; with a smaller value
  each kick triggers the next one and ``w`` hovers above the minimum instead.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import phaseshift_jax
from phaseshift_jax.compat import torch as torch_compat
from examples.landscapes import objectives
from examples.landscapes.objectives import Landscape

MOMENTUM = 0.9
ADAM_LEARNING_RATE = 0.1
PHASE_SHIFT = dict(threshold=0.1, shift_boundary=0.1, min_gradient_magnitude=20.0)


def optimizers(landscape: Landscape) -> dict[str, optax.GradientTransformation]:
  """The four optimizers of the demo, with the settings of the module docstring.

  The same transformation objects are returned for the same landscape, so that the
  compiled runs of :func:`run` are reused.
  """
  return dict(_optimizers(landscape))


@functools.lru_cache(maxsize=None)
def _optimizers(landscape: Landscape) -> tuple[tuple[str, optax.GradientTransformation], ...]:
  lr = landscape.learning_rate
  return (
      ("SGD", torch_compat.sgd(lr)),
      (f"SGD momentum {MOMENTUM}", torch_compat.sgd(lr, momentum=MOMENTUM)),
      ("Adam", optax.adam(ADAM_LEARNING_RATE)),
      ("PhaseShift", phaseshift_jax.phase_shift(lr, **PHASE_SHIFT)),
  )


class Paths(NamedTuple):
  """What one optimizer did on one landscape, for every seed (leading axis).

  Attributes:
    w: ``(seeds, steps + 1)``, the weight before each step and after the last one.
    loss: ``(seeds, steps)``, the training loss each step was computed from (noise
      included, as the lab plots it).
    kicked: ``(seeds, steps)``, whether PhaseShift kicked ``w`` in that step.
    stopped: ``(seeds,)``, whether the run was frozen for falling below
      ``landscape.stop_below``.
  """

  w: np.ndarray
  loss: np.ndarray
  kicked: np.ndarray
  stopped: np.ndarray


def _kicked(opt_state) -> jax.Array:
  try:
    state = phaseshift_jax.find_phase_shift_state(opt_state)
  except ValueError:  # not a PhaseShift optimizer
    return jnp.asarray(False)
  return state.shifted_leaf >= 0


@functools.partial(jax.jit, static_argnums=(0, 1))
def _run_seeds(landscape: Landscape, optimizer: optax.GradientTransformation,
               noise: jax.Array) -> tuple[jax.Array, ...]:
  """The compiled runs, one per row of ``noise`` (standard normals, one per step)."""
  stop_below = -jnp.inf if landscape.stop_below is None else landscape.stop_below

  def one_seed(noise):
    w0 = jnp.asarray(landscape.start, jnp.float32)

    def step(carry, eps):
      w, opt_state = carry
      loss, grad = jax.value_and_grad(landscape.loss)(w, eps)
      updates, opt_state = optimizer.update(grad, opt_state, w)
      frozen = w < stop_below
      w_next = jnp.where(frozen, w, optax.apply_updates(w, updates))
      kicked = _kicked(opt_state) & ~frozen
      return (w_next, opt_state), (w, loss, kicked)

    (w_last, _), (ws, losses, kicked) = jax.lax.scan(
        step, (w0, optimizer.init(w0)), noise)
    return jnp.append(ws, w_last), losses, kicked, w_last < stop_below

  return jax.vmap(one_seed)(noise)


@functools.partial(jax.jit, static_argnums=1)
def _standard_normals(keys: jax.Array, steps: int) -> jax.Array:
  return jax.vmap(lambda key: jax.random.normal(key, (steps,)))(keys)


def run(landscape: Landscape, optimizer: optax.GradientTransformation,
        keys: jax.Array, steps: int | None = None) -> Paths:
  """Runs ``optimizer`` from ``landscape.start``, once per key in ``keys``.

  ``keys`` draw the noise of every step (unused on a noise-free landscape). The run
  is compiled once per (landscape, optimizer object, number of seeds and steps).
  """
  steps = landscape.steps if steps is None else steps
  noise = _standard_normals(keys, steps)
  return Paths(*(np.asarray(a) for a in _run_seeds(landscape, optimizer, noise)))


def run_all(landscape: Landscape, seeds: int = 64, seed: int = 0,
            steps: int | None = None) -> dict[str, Paths]:
  """Every optimizer of :func:`optimizers` on ``landscape``.

  Without noise the runs are deterministic and one seed is used whatever ``seeds``
  says.
  """
  n = 1 if landscape.noise == "none" else seeds
  keys = jax.random.split(jax.random.key(seed), n)
  return {name: run(landscape, opt, keys, steps)
          for name, opt in optimizers(landscape).items()}


def ending(landscape: Landscape, w: float, stopped: bool) -> str:
  """Where a run that ended at ``w`` ended up, in words."""
  if landscape.objective is objectives.cubic:
    if stopped:
      return f"past the saddle (left at w < {landscape.stop_below:g})"
    if w < 0:
      return "past the saddle"
    return "stalled at the saddle" if w < 0.5 else "still above the saddle"
  if abs(w - 4.0) < 0.5:
    return "local minimum (4)"
  if abs(w + 2.0) < 0.5:
    return "global minimum (-2)"
  # The barrier between the basins is the maximum at w = 11/8.
  return "global basin, off the minimum" if w < 11 / 8 else "local basin, off the minimum"


def summary_row(landscape: Landscape, name: str, paths: Paths) -> dict[str, str]:
  """One row of the results table: final weight and where the runs ended."""
  finals = paths.w[:, -1]
  labels = [ending(landscape, float(w), bool(s)) for w, s in zip(finals, paths.stopped)]
  # Most frequent first; ties in order of first appearance (sorted is stable).
  order = sorted(dict.fromkeys(labels), key=labels.count, reverse=True)
  counts = {label: labels.count(label) for label in order}
  n = len(labels)
  ended = ", ".join(label if n == 1 else f"{label} {count}/{n}"
                    for label, count in counts.items())
  final_w = f"{finals[0]:.3f}" if n == 1 else (
      f"{np.median(finals):.3f} (median of {n})")
  kicks = f"{paths.kicked.sum(axis=1).mean():.1f}" if paths.kicked.any() else "-"
  return {"landscape": landscape.name, "optimizer": name, "final w": final_w,
          "ended at": ended, "kicks per run": kicks}


def markdown_table(rows: list[dict[str, str]]) -> str:
  """A markdown table of :func:`summary_row` rows."""
  header = list(rows[0])
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  lines += ["| " + " | ".join(row[key] for key in header) + " |" for row in rows]
  return "\n".join(lines) + "\n"
