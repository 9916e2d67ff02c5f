"""Train the MLP on the singular function with plain gradient descent, Adam and PhaseShift.

Full-batch training on the whole grid, as in the video; every optimizer gets the same
number of steps, the same learning rate and the same initialisations (one per seed).
The steps are a ``jax.lax.scan``; the seeds are ``jax.vmap``-ed; one compiled program
per optimizer.

Settings (the video gives none besides 3000 epochs per notebook cell):

* learning rate ``LEARNING_RATE = 1e-3`` for all three (Adam's usual default), so that
  the comparison is about the update rule, not the step size. The ordering does not
  hinge on it: in a sweep while writing this demo (lr 1e-3, 3e-3 and 1e-2 for both,
  4 seeds, a 401-point grid) GD ended between MSE 780 and 1210 and Adam between 205
  and 620;
* **GD**: ``optax.sgd(lr)``, the video's ``p -= lr * p.grad``;
* **Adam**: ``optax.adam(lr)`` (torch's defaults otherwise);
* **PhaseShift**: ``phase_shift(lr, threshold, shift_boundary, min_gradient_magnitude)``
  with the values of ``PHASE_SHIFT``: gradient descent, plus, on steps where some
  tensor's gradient changed by more than ``min_gradient_magnitude`` in one entry, every
  entry of the tensor that changed most moves by ``threshold`` along the sign of its
  gradient (uphill). We measured the largest per-entry gradient change under plain
  GD: about 3 on the first step (against zero history), 0.001 to 0.08 while the loss
  creeps down, and 10 to 240 once GD turns unstable (after about 2000 steps). A bar of
  1.0 therefore kicks on the first step and on those abrupt changes only. A kick of
  1e-3 is small next to the weights (of order 0.1 to 1).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import phaseshift_jax
from examples.singular_fit import mlp
from examples.singular_fit import target

LEARNING_RATE = 1e-3
STEPS = 3000
PHASE_SHIFT = dict(threshold=1e-3, shift_boundary=1e-3, min_gradient_magnitude=1.0)


def optimizers(learning_rate: float = LEARNING_RATE) -> dict[str, optax.GradientTransformation]:
  """The optimizers of the demo, with the settings of the module docstring."""
  return {
      "GD": optax.sgd(learning_rate),
      "Adam": optax.adam(learning_rate),
      "PhaseShift": phaseshift_jax.phase_shift(learning_rate, **PHASE_SHIFT),
  }


class Fit(NamedTuple):
  """One optimizer's training runs, one per seed (leading axis).

  Attributes:
    losses: ``(seeds, steps)``, the training MSE before each step.
    final_loss: ``(seeds,)``, the MSE after the last step.
    prediction: ``(seeds, target.N_PLOT)``, the trained MLP on the drawing grid
      ``target.dataset(target.N_PLOT)``.
    kicks: ``(seeds,)``, how many steps kicked a tensor (PhaseShift; 0 otherwise).
  """

  losses: np.ndarray
  final_loss: np.ndarray
  prediction: np.ndarray
  kicks: np.ndarray


def _kicked(opt_state) -> jax.Array:
  try:
    state = phaseshift_jax.find_phase_shift_state(opt_state)
  except ValueError:  # not a PhaseShift optimizer
    return jnp.asarray(False)
  return state.shifted_leaf >= 0


def train(optimizer: optax.GradientTransformation, keys: jax.Array, steps: int = STEPS,
          n_points: int = target.N_POINTS) -> Fit:
  """Trains one MLP per key (its initialisation) with ``optimizer`` for ``steps`` steps."""
  x, y = target.dataset(n_points)
  x_plot, _ = target.dataset(target.N_PLOT)

  def one_seed(key):
    params = mlp.init(key)

    def step(carry, _):
      params, opt_state = carry
      loss, grads = jax.value_and_grad(mlp.mse)(params, x, y)
      updates, opt_state = optimizer.update(grads, opt_state, params)
      return (optax.apply_updates(params, updates), opt_state), (loss, _kicked(opt_state))

    (params, _), (losses, kicked) = jax.lax.scan(
        step, (params, optimizer.init(params)), length=steps)
    return losses, mlp.mse(params, x, y), mlp.apply(params, x_plot)[:, 0], kicked.sum()

  out = jax.jit(jax.vmap(one_seed))(keys)
  return Fit(*(np.asarray(a) for a in out))


def train_all(seeds: int = 4, seed: int = 0, steps: int = STEPS,
              n_points: int = target.N_POINTS) -> dict[str, Fit]:
  """Every optimizer of :func:`optimizers`, from the same ``seeds`` initialisations."""
  keys = jax.random.split(jax.random.key(seed), seeds)
  return {name: train(opt, keys, steps, n_points) for name, opt in optimizers().items()}


def markdown_table(fits: dict[str, Fit], steps: int) -> str:
  """Final training MSE per optimizer: mean, min and max over seeds, and NaN check."""
  lines = [f"| optimizer | final MSE after {steps} steps (mean over seeds) | best seed | "
           "worst seed | kicks per run | any NaN |",
           "|---|---|---|---|---|---|"]
  for name, fit in fits.items():
    nan = bool(np.isnan(fit.losses).any() or np.isnan(fit.prediction).any())
    kicks = f"{fit.kicks.mean():.0f}" if fit.kicks.any() else "-"
    lines.append(f"| {name} | {fit.final_loss.mean():.1f} | {fit.final_loss.min():.1f} | "
                 f"{fit.final_loss.max():.1f} | {kicks} | {'yes' if nan else 'no'} |")
  return "\n".join(lines) + "\n"
