"""The function with singularities from a video on fitting it with an MLP.

The video shows the function only as a drawing; the transcript gives the zeros of its
denominator on ``[-1, 1]``: ``x = -0.2`` and ``x = 0.9`` from two linear factors, and
``-1, -0.5, 0, 0.5, 1`` from ``sin(2 pi x)``. We read the denominator as

    d(x) = (x + 0.2) (x - 0.9) sin(2 pi x).

The numerator is not given. We choose ``n(x) = 1 + x**2``: smooth and never zero, so
every zero of ``d`` is a true pole (nothing cancels). The target is ``y = n(x) / d(x)``,
clamped to ``[-100, 100]`` as in the video (where the unclamped values near the poles
made training produce NaN). At a grid point that is exactly a pole ``d`` is ``0`` or
``-0``, ``n / d`` is ``+-inf`` (never NaN, since ``n > 0``) and the clamp makes it
``+-100``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

CLAMP = 100.0
POLES = (-1.0, -0.5, -0.2, 0.0, 0.5, 0.9, 1.0)
N_POINTS = 201  # training grid: step 0.01, every pole is a grid point
N_PLOT = 2001  # finer grid for drawing the target and the fits


def numerator(x: jax.Array) -> jax.Array:
  """Our choice of a smooth, zero-free numerator: ``1 + x**2``."""
  return 1.0 + x**2


def denominator(x: jax.Array) -> jax.Array:
  """``(x + 0.2)(x - 0.9) sin(2 pi x)``, zero at every point of :data:`POLES`."""
  return (x + 0.2) * (x - 0.9) * jnp.sin(2 * jnp.pi * x)


def target(x: jax.Array) -> jax.Array:
  """``clip(n(x) / d(x), -100, 100)``."""
  return jnp.clip(numerator(x) / denominator(x), -CLAMP, CLAMP)


def dataset(n_points: int = N_POINTS) -> tuple[jax.Array, jax.Array]:
  """``x`` evenly spaced on ``[-1, 1]`` (both ends included) and ``y = target(x)``,
  each of shape ``(n_points, 1)``."""
  x = jnp.linspace(-1.0, 1.0, n_points, dtype=jnp.float32)[:, None]
  return x, target(x)
