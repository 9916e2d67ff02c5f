"""The one-parameter loss landscapes of the momentum lab (a lab notebook on SGD with momentum).

Our reading of the lab (its code lost its formatting in the write-up):

* The model is a bias-free ``nn.Linear(1, 1)`` evaluated at ``x = 1``, so its output is
  the single weight ``w``. We write it as :func:`one_param` ``(w, x) = w * x`` and
  always call it with ``x = 1``.
* **Cubic** ``l(w) = w**3``: a saddle point (zero gradient, no minimum) at ``w = 0``.
  Start ``w = 4``, SGD with ``lr = 0.01``, plotted over ``w`` in ``[-4, 4)``. The lab
  runs 10 steps; we run 100 (after 10 steps plain SGD is still at ``w ~ 1.7``: it is
  slowing down, and only the longer run shows that it stalls at the saddle). The cubic
  has no lower bound, so a run is stopped once ``w`` drops below the plotted window
  (``w < -4``): past that point the optimizer only accelerates towards ``-inf``.
* **Quartic** ``l(w) = 2 w**4 - 9 w**3 - 21 w**2 + 88 w + 48`` (the lab writes it as a
  ``torch.mean`` of that expression of the model output). Its derivative is
  ``(w - 4)(w + 2)(8 w - 11)``: a local minimum at ``w = 4`` (``l = 0``), a maximum at
  ``w = 11/8`` and the global minimum at ``w = -2`` (``l = -108``). The constant term is
  cut off in the write-up; ``+48`` puts the local minimum at ``l = 0`` and matches the
  range of the lab's plots, and it changes no gradient. Start ``w = 6``, SGD with
  ``lr = 0.001``, 100 steps, plotted over ``w`` in ``[-4, 6)``.
* **Noise.** The lab adds ``std * N(0, 1)`` to the loss (``std = 10``, and ``std = 100`` in
  its exercise). That term does not depend on ``w``, so it has no gradient: the
  optimizers take exactly the same path as without noise, and only the loss values
  that the lab plots are scattered. We reproduce that (``noise="loss"``). The lab's
  text speaks of noise in the gradient, so we also offer ``noise="gradient"``, which
  adds ``std * N(0, 1) * w`` to the loss: its gradient is ``std * N(0, 1)``, a fresh
  Gaussian on every step's gradient.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Literal

import jax
import jax.numpy as jnp

Noise = Literal["none", "loss", "gradient"]


def one_param(w: jax.Array, x: jax.Array | float = 1.0) -> jax.Array:
  """The lab's one-weight linear model without bias: ``yhat = w * x``."""
  return w * x


def cubic(yhat: jax.Array) -> jax.Array:
  """``l = yhat**3``: a saddle point at 0 and no minimum."""
  return jnp.mean(yhat**3)


def quartic(yhat: jax.Array) -> jax.Array:
  """``l = 2 y^4 - 9 y^3 - 21 y^2 + 88 y + 48``: local minimum at 4, global at -2."""
  return jnp.mean(2 * yhat**4 - 9 * yhat**3 - 21 * yhat**2 + 88 * yhat + 48)


@dataclasses.dataclass(frozen=True)
class Landscape:
  """One demo problem: an objective, where SGD starts, and how the lab ran it.

  Attributes:
    name: short identifier, used in file names.
    title: human-readable title for plots and tables.
    objective: the loss as a function of the model output.
    start: initial weight.
    learning_rate: the lab's SGD learning rate (also used by PhaseShift).
    steps: number of optimizer steps.
    window: the ``w`` range the lab plots the objective over.
    stop_below: a run is frozen once ``w`` falls below this (``None``: never).
    noise: where Gaussian noise enters (see the module docstring).
    noise_std: its standard deviation.
  """

  name: str
  title: str
  objective: Callable[[jax.Array], jax.Array]
  start: float
  learning_rate: float
  steps: int
  window: tuple[float, float]
  stop_below: float | None = None
  noise: Noise = "none"
  noise_std: float = 0.0

  def loss(self, w: jax.Array, eps: jax.Array | float = 0.0) -> jax.Array:
    """The training loss of weight ``w``, with ``eps`` a standard normal draw."""
    clean = self.objective(one_param(w, 1.0))
    if self.noise == "none":
      return clean
    tilt = w if self.noise == "gradient" else 1.0
    return clean + self.noise_std * eps * tilt


CUBIC = Landscape("cubic", "Cubic $w^3$ (saddle at 0)", cubic, start=4.0,
                  learning_rate=0.01, steps=100, window=(-4.0, 4.0), stop_below=-4.0)
QUARTIC = Landscape("quartic", "Quartic (local min at 4, global at -2)", quartic,
                    start=6.0, learning_rate=0.001, steps=100, window=(-4.0, 6.0))
QUARTIC_LOSS_NOISE = dataclasses.replace(
    QUARTIC, name="quartic_loss_noise", noise="loss", noise_std=10.0,
    title="Quartic + N(0, 10²) on the loss (as in the lab)")
QUARTIC_GRADIENT_NOISE = dataclasses.replace(
    QUARTIC, name="quartic_gradient_noise", noise="gradient", noise_std=100.0,
    title="Quartic + N(0, 100²) on the gradient")

LANDSCAPES: dict[str, Landscape] = {
    ls.name: ls for ls in (CUBIC, QUARTIC, QUARTIC_LOSS_NOISE, QUARTIC_GRADIENT_NOISE)}
