"""The two torch preconditioners that optax has no exact equivalent for.

* ``scale_by_torch_adagrad``: ``optax.scale_by_rss`` adds ``eps`` inside the square root; torch's
  Adagrad adds it outside.
* ``scale_by_torch_amsgrad``: ``optax.scale_by_amsgrad`` keeps the running maximum of the
  bias-corrected second moment (or of the raw one without correcting it at all); torch keeps the
  maximum of the raw second moment and divides it by the *current* bias correction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def scale_by_torch_adagrad(
    initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
  r"""Adagrad's preconditioner as ``torch.optim.Adagrad`` computes it.

  .. math:: G_t = G_{t-1} + g_t^2, \quad G_0 = \text{initial\_accumulator\_value}, \qquad
            u_t = \frac{g_t}{\sqrt{G_t} + \epsilon}

  The state is ``optax.ScaleByRssState(sum_of_squares=G)``, the same as ``optax.scale_by_rss``.
  """

  def init_fn(params):
    return optax.ScaleByRssState(
        sum_of_squares=optax.tree.full_like(params, initial_accumulator_value)
    )

  def update_fn(updates, state, params=None):
    del params
    sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
    updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sums)
    return updates, optax.ScaleByRssState(sum_of_squares=sums)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_torch_amsgrad(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  r"""AMSGrad as ``torch.optim.Adam(amsgrad=True)`` computes it.

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      \bar v_t = \max(\bar v_{t-1}, v_t),

  .. math::
      u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\bar v_t} / \sqrt{1-\beta_2^t} + \epsilon}

  The state is ``optax.ScaleByAmsgradState(count, mu=m, nu=v, nu_max=v_bar)``; ``nu_max`` holds
  the maximum of the raw (uncorrected) second moment, as torch's ``max_exp_avg_sq`` does.
  """

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    return optax.ScaleByAmsgradState(
        count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    root_correction = jnp.sqrt(1 - b2**count)
    updates = jax.tree.map(
        lambda m, v: m / (jnp.sqrt(v) / root_correction.astype(v.dtype) + eps), mu_hat, nu_max
    )
    return updates, optax.ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)
