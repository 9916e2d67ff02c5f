"""A small tanh MLP as pure functions (a params pytree), easy to ``jax.vmap`` over seeds."""

from __future__ import annotations

from typing import Sequence

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]


def init(key: jax.Array, sizes: Sequence[int] = (1, 64, 64, 1)) -> Params:
  """LeCun-normal weights (std ``1/sqrt(fan_in)``) and zero biases, one dict per layer."""
  keys = jax.random.split(key, len(sizes) - 1)
  return [{"w": jax.random.normal(k, (fan_in, fan_out)) / jnp.sqrt(fan_in),
           "b": jnp.zeros((fan_out,))}
          for k, fan_in, fan_out in zip(keys, sizes[:-1], sizes[1:])]


def apply(params: Params, x: jax.Array) -> jax.Array:
  """``x`` of shape ``(batch, sizes[0])`` to ``(batch, sizes[-1])``; tanh between layers."""
  for layer in params[:-1]:
    x = jnp.tanh(x @ layer["w"] + layer["b"])
  return x @ params[-1]["w"] + params[-1]["b"]


def mse(params: Params, x: jax.Array, y: jax.Array) -> jax.Array:
  """Mean squared error of the fit."""
  return jnp.mean((apply(params, x) - y) ** 2)
