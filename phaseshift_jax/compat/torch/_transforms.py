"""The torch rules that optax has no exact equivalent for.

* ``scale_by_torch_adagrad``: ``optax.scale_by_rss`` adds ``eps`` inside the square root; torch's
  Adagrad adds it outside.
* ``scale_by_torch_amsgrad``: ``optax.scale_by_amsgrad`` keeps the running maximum of the
  bias-corrected second moment (or of the raw one without correcting it at all); torch keeps the
  maximum of the raw second moment and divides it by the *current* bias correction.
* ``scale_by_torch_asgd``: optax has no averaged SGD (its ``eta``, ``mu`` schedule and the
  averaged parameters ``ax``).
* ``scale_by_torch_rprop``: ``optax.scale_by_rprop`` is another Rprop variant (it keeps the signed
  step instead of the gradient, returns the previous step, and leaves the step size alone where
  the product of gradients is 0, where torch multiplies it by 1 and clamps it).
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


class ScaleByTorchAsgdState(NamedTuple):
  """State of :func:`scale_by_torch_asgd`: torch's ``step``, ``eta``, ``mu`` and ``ax``.

  ``eta`` and ``mu`` are float32 scalars, as torch keeps them (its ``_get_scalar_dtype()``, the
  default dtype float32) and shares them by every parameter of a group; ``ax`` (params-shaped,
  the params' dtypes) is the running average of the parameters.
  """

  count: jax.Array
  eta: jax.Array
  mu: jax.Array
  ax: optax.Updates


def scale_by_torch_asgd(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
) -> optax.GradientTransformation:
  r"""The step of ``torch.optim.ASGD`` on a (decayed) gradient :math:`d_t`, with the rate in it.

  .. math::
      \theta_t = \theta_{t-1}(1 - \lambda\eta_t) - \eta_t d_t, \qquad
      \bar\theta_t = \begin{cases} \theta_t & \mu_t = 1 \\
                       \bar\theta_{t-1} + \mu_t(\theta_t - \bar\theta_{t-1}) & \text{else,}
                       \end{cases}

  .. math::
      \eta_{t+1} = \frac{\alpha_t}{(1 + \lambda\alpha_t t)^{a}}, \qquad
      \mu_{t+1} = \frac{1}{\max(1, t - t_0)}, \qquad \eta_1 = \alpha_1, \ \mu_1 = 1

  (:math:`\alpha_t` the learning rate at step :math:`t`, i.e. ``learning_rate(t - 1)`` for a
  schedule, :math:`a` = ``alpha``). The returned update is :math:`\theta_t - \theta_{t-1}`, so
  ``params`` are needed. :math:`\eta` and :math:`\mu` are computed in the default float dtype
  (float64 under x64, as torch's Python arithmetic) and stored as float32, as torch stores them.
  The state is :class:`ScaleByTorchAsgdState`.
  """

  def rate(count):
    return learning_rate(count) if callable(learning_rate) else learning_rate

  def init_fn(params):
    return ScaleByTorchAsgdState(
        count=jnp.zeros([], jnp.int32),
        eta=jnp.asarray(rate(jnp.zeros([], jnp.int32)), jnp.float32),
        mu=jnp.ones([], jnp.float32),
        ax=optax.tree.zeros_like(params),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("scale_by_torch_asgd needs params: call update(updates, state, params)")
    real = jnp.result_type(float)
    eta = state.eta.astype(real)
    shrink = lambd * eta
    # torch computes theta (1 - lambd eta) - eta d; the update itself is computed directly (not
    # as a difference of parameters, which would lose the digits of a small update).
    updates = jax.tree.map(
        lambda p, d: -(eta.astype(p.dtype) * d + shrink.astype(p.dtype) * p), params, updates)
    new_params = jax.tree.map(lambda p, u: p + u, params, updates)
    averaged = jax.tree.map(
        lambda p, ax: jnp.where(state.mu == 1, p, ax + (p - ax) * state.mu.astype(p.dtype)),
        new_params, state.ax)
    count = optax.safe_increment(state.count)
    step = count.astype(real)
    lr = rate(state.count)
    new_eta = lr / (1 + lambd * lr * step) ** alpha
    new_mu = 1 / jnp.maximum(1, step - t0)
    return updates, ScaleByTorchAsgdState(
        count=count, eta=jnp.asarray(new_eta, jnp.float32), mu=jnp.asarray(new_mu, jnp.float32),
        ax=averaged)

  return optax.GradientTransformation(init_fn, update_fn)


class ScaleByTorchRpropState(NamedTuple):
  """State of :func:`scale_by_torch_rprop`: torch's ``step``, ``prev`` and ``step_size``."""

  count: jax.Array
  prev: optax.Updates
  step_size: optax.Updates


def scale_by_torch_rprop(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    step_size_min: float = 1e-6,
    step_size_max: float = 50.0,
) -> optax.GradientTransformation:
  r"""``torch.optim.Rprop``'s step (the update, learning rate included).

  .. math::
      s_t = \operatorname{sign}(g_t\,p_{t-1}), \quad
      f_t = \eta_+ \ (s_t > 0), \ \eta_- \ (s_t < 0), \ 1 \ (s_t = 0), \quad
      \Delta_t = \operatorname{clip}(f_t \Delta_{t-1}, \Delta_{\min}, \Delta_{\max}),

  .. math::
      p_t = 0 \text{ where } f_t = \eta_-, \ g_t \text{ elsewhere}, \qquad
      u_t = -\operatorname{sign}(p_t)\,\Delta_t

  with :math:`\Delta_0` = ``learning_rate`` (a schedule is read at step 0 only: torch reads the
  group's ``lr`` when it creates the state) and :math:`p_0 = 0`. The state is
  :class:`ScaleByTorchRpropState` (``prev`` = :math:`p`, ``step_size`` = :math:`\Delta`).
  """

  def init_fn(params):
    lr = learning_rate(jnp.zeros([], jnp.int32)) if callable(learning_rate) else learning_rate
    return ScaleByTorchRpropState(
        count=jnp.zeros([], jnp.int32),
        prev=optax.tree.zeros_like(params),
        step_size=optax.tree.full_like(params, lr),
    )

  def factor(g, prev):
    def cast(x):
      return jnp.asarray(x, g.dtype)

    s = jnp.sign(g * prev)
    return jnp.where(s > 0, cast(etaplus),
                     jnp.where(s < 0, cast(etaminus), jnp.where(s == 0, cast(1), s)))

  def update_fn(updates, state, params=None):
    del params
    factors = jax.tree.map(factor, updates, state.prev)
    sizes = jax.tree.map(
        lambda size, f: jnp.clip(size * f, jnp.asarray(step_size_min, size.dtype),
                                 jnp.asarray(step_size_max, size.dtype)),
        state.step_size, factors)
    prev = jax.tree.map(
        lambda g, f: jnp.where(f == jnp.asarray(etaminus, g.dtype), jnp.zeros_like(g), g),
        updates, factors)
    updates = jax.tree.map(lambda g, size: -jnp.sign(g) * size, prev, sizes)
    return updates, ScaleByTorchRpropState(
        count=optax.safe_increment(state.count), prev=prev, step_size=sizes)

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
