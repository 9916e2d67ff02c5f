"""The torch preconditioners that optax has no exact equivalent for.

* ``scale_by_torch_adagrad``: ``optax.scale_by_rss`` adds ``eps`` inside the square root; torch's
  Adagrad adds it outside.
* ``scale_by_torch_amsgrad``: ``optax.scale_by_amsgrad`` keeps the running maximum of the
  bias-corrected second moment (or of the raw one without correcting it at all); torch keeps the
  maximum of the raw second moment and divides it by the *current* bias correction.
* ``scale_by_torch_nadam``: ``optax.scale_by_adam(nesterov=True)`` has a constant momentum;
  torch's NAdam has Dozat's momentum schedule and its running product ``mu_product``.
* ``scale_by_torch_radam``: ``optax.scale_by_radam`` places ``eps`` after the bias correction of
  the second moment and rectifies from ``rho_t >= 5``; torch adds ``eps`` to the raw root and
  rectifies from ``rho_t > 5``.
"""

from __future__ import annotations

from typing import NamedTuple

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


def _power_and_complement(b, count):
  r""":math:`(b^t, 1 - b^t)` as :math:`(e^x, -\mathrm{expm1}(x))`, :math:`x = t \log(1 - (1 - b))`.

  torch computes these in Python floats (float64) whatever the parameters' dtype. In float32
  ``1 - b**t`` loses most of its digits for ``b`` near 1 (0.999: relative 1e-5 at small ``t``);
  this form keeps them (``1 - b`` is exact for a float32 ``b`` and rounds once for a Python one).
  """
  x = count * jnp.log1p(-(1.0 - b))
  return jnp.exp(x), -jnp.expm1(x)


class ScaleByTorchNadamState(NamedTuple):
  """State of :func:`scale_by_torch_nadam`.

  ``count`` is torch's ``step``; ``mu_product`` its ``mu_product`` (one scalar for the whole
  tree: torch keeps one per parameter, all equal); ``mu`` and ``nu`` are ``exp_avg`` and
  ``exp_avg_sq``.
  """

  count: jax.Array
  mu_product: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def scale_by_torch_nadam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
  r"""NAdam's preconditioner as ``torch.optim.NAdam`` computes it (Dozat's momentum schedule).

  .. math::
      \mu_t = \beta_1\,(1 - \tfrac12\,0.96^{t\psi}), \quad \Pi_t = \Pi_{t-1}\,\mu_t, \quad
      \Pi_0 = 1,

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      u_t = \frac{\frac{1-\mu_t}{1-\Pi_t}\, g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\, m_t}
                 {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`\psi` = ``momentum_decay``. Custom because ``optax.scale_by_adam(nesterov=True)``
  (``optax.nadam``) has a constant momentum :math:`\beta_1` and corrects the two terms by
  :math:`1-\beta_1^{t+1}` and :math:`1-\beta_1^t`, where torch uses the schedule :math:`\mu_t`
  and the products :math:`\Pi`. :math:`\Pi_t` is kept in float32 whatever the parameters' dtype,
  as torch keeps ``mu_product`` under its default dtype; the coefficients are computed from it in
  the precision of :math:`\mu_t` (float64 under ``jax.enable_x64``), as torch computes them in
  Python floats.
  """

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    return ScaleByTorchNadamState(
        count=jnp.zeros([], jnp.int32), mu_product=jnp.ones([], jnp.float32), mu=zeros, nu=zeros
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    momentum = b1 * (1.0 - 0.5 * 0.96 ** (count * momentum_decay))
    momentum_next = b1 * (1.0 - 0.5 * 0.96 ** ((count + 1) * momentum_decay))
    # torch multiplies its float32 mu_product in place: a float32 product of float32 factors.
    mu_product = state.mu_product * jnp.asarray(momentum).astype(state.mu_product.dtype)
    product = mu_product.astype(jnp.result_type(momentum))
    grad_coef = (1.0 - momentum) / (1.0 - product)
    moment_coef = momentum_next / (1.0 - product * momentum_next)
    _, correction2 = _power_and_complement(b2, count)

    def step(g, m, v):
      denom = jnp.sqrt(v / correction2.astype(v.dtype)) + eps
      return (grad_coef.astype(g.dtype) * g + moment_coef.astype(m.dtype) * m) / denom

    updates = jax.tree.map(step, updates, mu, nu)
    return updates, ScaleByTorchNadamState(count=count, mu_product=mu_product, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


def scale_by_torch_radam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  r"""RAdam's preconditioner as ``torch.optim.RAdam`` computes it.

  .. math::
      \rho_\infty = \frac{2}{1-\beta_2} - 1, \quad
      \rho_t = \rho_\infty - \frac{2t\beta_2^t}{1-\beta_2^t}, \quad
      r_t = \sqrt{\frac{(\rho_t-4)(\rho_t-2)\rho_\infty}{(\rho_\infty-4)(\rho_\infty-2)\rho_t}},

  .. math::
      u_t = \begin{cases}
        \hat m_t\, r_t\, \dfrac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon} & \rho_t > 5 \\
        \hat m_t & \text{otherwise}
      \end{cases}

  with :math:`m_t, v_t` as in Adam and :math:`\hat m_t = m_t / (1-\beta_1^t)`. Custom because
  ``optax.scale_by_radam`` divides by :math:`\sqrt{\hat v_t} + \epsilon` (torch:
  :math:`(\sqrt{v_t} + \epsilon) / \sqrt{1-\beta_2^t}`, i.e. :math:`\epsilon` scaled by
  :math:`1/\sqrt{1-\beta_2^t}`) and rectifies for :math:`\rho_t \ge 5` (torch: :math:`> 5`).
  The state is ``optax.ScaleByAdamState(count, mu=m, nu=v)``, the same as
  ``optax.scale_by_radam``.
  """

  rho_inf = 2.0 / (1.0 - b2) - 1.0

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros)

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    _, correction1 = _power_and_complement(b1, count)
    b2t, correction2 = _power_and_complement(b2, count)
    rho = rho_inf - 2 * count * b2t / correction2
    rectify = rho > 5.0
    ratio = (rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho)
    # The unrectified steps (rho <= 5, where the ratio may be negative) take the root of 1.
    rect = jnp.sqrt(jnp.where(rectify, ratio, 1.0))
    root_correction2 = jnp.sqrt(correction2)

    def step(m, v):
      m_hat = m / correction1.astype(m.dtype)
      adaptive = root_correction2.astype(v.dtype) / (jnp.sqrt(v) + eps)
      return jnp.where(rectify, m_hat * adaptive * rect.astype(m.dtype), m_hat)

    updates = jax.tree.map(step, mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)
