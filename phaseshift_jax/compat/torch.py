r"""``torch.optim`` optimizers as optax transformations that reproduce torch step for step.

Same argument names and defaults as ``torch.optim`` (torch 2.x), and torch's order of operations:
negate the gradient if ``maximize``, add the L2 term ``weight_decay * theta`` (``adamw``: shrink
the parameters by ``1 - lr * weight_decay`` instead), then the optimizer's own rule, then the
learning rate. Each optimizer is an ``optax.chain`` of optax primitives, with a custom piece only
where optax has no exact equivalent (Adagrad's ``eps`` placement, torch's AMSGrad maximum, SGD's
undamped first momentum buffer); the docstrings say where.

``lr`` may be a float or an optax schedule (the step count starts at 0, as after zero
``scheduler.step()`` calls in torch). This module does not import torch.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from phaseshift_jax import schedules
from phaseshift_jax.compat._common import chain, check_non_negative, check_unit_interval
from phaseshift_jax.compat._torch_transforms import scale_by_torch_adagrad, scale_by_torch_amsgrad

__all__ = [
    "sgd",
    "adagrad",
    "rmsprop",
    "adam",
    "adamw",
    "scale_by_torch_adagrad",
    "scale_by_torch_amsgrad",
]


def _negate_if(maximize: bool):
  return optax.scale(-1.0) if maximize else None


def _l2(weight_decay):
  return optax.add_decayed_weights(weight_decay) if weight_decay else None


def sgd(
    lr: optax.ScalarOrSchedule = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.SGD``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \qquad
      b_1 = d_1, \quad b_t = \mu\,b_{t-1} + (1-\tau)\,d_t, \qquad
      \theta_t = \theta_{t-1} - \alpha\,(d_t + \mu b_t \text{ if nesterov else } b_t)

  (:math:`-g_t` when ``maximize``; no buffer when :math:`\mu = 0`.) Built from ``optax.scale``,
  ``optax.add_decayed_weights``, ``optax.trace`` and ``optax.scale_by_learning_rate``.
  ``optax.trace`` starts from a zero buffer, so :math:`b_1 = d_1` comes out right by itself; for
  ``dampening`` :math:`\tau \ne 0` the input of the trace is scaled by an
  ``optax.scale_by_schedule`` that is 1 at the first step and :math:`1-\tau` afterwards, because
  torch does not damp the first buffer.

  Differs from ``optax.sgd``: L2 weight decay, ``dampening``, ``maximize``; the default
  ``lr=1e-3`` is torch's.
  """
  check_non_negative("lr", lr)
  check_non_negative("momentum", momentum)
  check_non_negative("weight_decay", weight_decay)
  if nesterov and (momentum <= 0 or dampening != 0):
    raise ValueError("nesterov requires momentum > 0 and dampening == 0")
  damp = None
  if momentum and dampening:
    damp = optax.scale_by_schedule(lambda count: jnp.where(count == 0, 1.0, 1.0 - dampening))
  return chain(
      _negate_if(maximize),
      _l2(weight_decay),
      damp,
      optax.trace(decay=momentum, nesterov=nesterov) if momentum else None,
      optax.scale_by_learning_rate(lr),
  )


def adagrad(
    lr: optax.ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adagrad``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      G_t = G_{t-1} + d_t^2, \quad G_0 = \text{initial\_accumulator\_value},

  .. math::
      \theta_t = \theta_{t-1} - \frac{\alpha}{1 + (t-1)\,\kappa}\,
                 \frac{d_t}{\sqrt{G_t} + \epsilon}

  with :math:`\kappa` = ``lr_decay`` (:func:`phaseshift_jax.schedules.time_based_decay`).
  The preconditioner is :func:`scale_by_torch_adagrad`, custom because ``optax.scale_by_rss``
  puts :math:`\epsilon` inside the root. Differs from ``optax.adagrad`` in that placement, in
  the accumulator's start (optax: 0.1), ``eps`` (optax: 1e-7), ``lr_decay`` and L2 decay.
  """
  for name, value in [
      ("lr", lr),
      ("lr_decay", lr_decay),
      ("weight_decay", weight_decay),
      ("initial_accumulator_value", initial_accumulator_value),
      ("eps", eps),
  ]:
    check_non_negative(name, value)
  rate = lr
  if lr_decay:
    decay = schedules.time_based_decay(1.0, lr_decay)
    base = lr if callable(lr) else optax.constant_schedule(lr)
    rate = lambda count: base(count) * decay(count)  # noqa: E731
  return chain(
      _negate_if(maximize),
      _l2(weight_decay),
      scale_by_torch_adagrad(initial_accumulator_value, eps),
      optax.scale_by_learning_rate(rate),
  )


def rmsprop(
    lr: optax.ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.RMSprop``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      v_t = \alpha_s v_{t-1} + (1-\alpha_s) d_t^2, \quad
      \bar d_t = \alpha_s \bar d_{t-1} + (1-\alpha_s) d_t \ (\text{centered}),

  .. math::
      u_t = \frac{d_t}{\sqrt{v_t - \bar d_t^2} + \epsilon} \ (\bar d_t = 0 \text{ unless
      centered}), \qquad b_t = \mu b_{t-1} + u_t, \qquad \theta_t = \theta_{t-1} - \alpha b_t

  (:math:`\alpha_s` = ``alpha``, :math:`\alpha` = ``lr``; :math:`b_t = u_t` when
  :math:`\mu = 0`). Built from ``optax.scale_by_rms`` / ``optax.scale_by_stddev`` with
  ``eps_in_sqrt=False``, ``optax.trace`` and ``optax.scale_by_learning_rate``, in torch's order
  (the learning rate after the momentum buffer). Differs from ``optax.rmsprop``: :math:`\epsilon`
  outside the root (optax's default is inside), ``decay`` default 0.99 (optax 0.9), L2 decay,
  and optax applies the rate *before* its momentum trace (the same only for a constant rate).
  """
  for name, value in [("lr", lr), ("eps", eps), ("weight_decay", weight_decay)]:
    check_non_negative(name, value)
  check_unit_interval("alpha", alpha)
  check_non_negative("momentum", momentum)
  scale = optax.scale_by_stddev if centered else optax.scale_by_rms
  return chain(
      _negate_if(maximize),
      _l2(weight_decay),
      scale(decay=alpha, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
      optax.trace(decay=momentum) if momentum else None,
      optax.scale_by_learning_rate(lr),
  )


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
  check_non_negative("lr", lr)
  check_non_negative("eps", eps)
  check_non_negative("weight_decay", weight_decay)
  b1, b2 = betas
  check_unit_interval("betas[0]", b1)
  check_unit_interval("betas[1]", b2)
  if amsgrad:
    core = scale_by_torch_amsgrad(b1, b2, eps)
  else:
    core = optax.scale_by_adam(b1, b2, eps)
  return chain(
      _negate_if(maximize),
      None if decoupled else _l2(weight_decay),
      core,
      _l2(weight_decay) if decoupled else None,
      optax.scale_by_learning_rate(lr),
  )


def adam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adam`` (L2 weight decay).

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      m_t = \beta_1 m_{t-1} + (1-\beta_1) d_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) d_t^2,

  .. math::
      \theta_t = \theta_{t-1} - \alpha\,\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)}
      + \epsilon}

  With ``amsgrad``, :math:`v_t` in the denominator is replaced by the running maximum of the raw
  :math:`v` (:func:`scale_by_torch_amsgrad`, custom because ``optax.scale_by_amsgrad`` takes the
  maximum of the bias-corrected moment). Without it the rule is ``optax.scale_by_adam``, so with
  the defaults this is ``optax.adam(1e-3)``; the additions are the L2 term and ``maximize``.
  """
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=False)


def adamw(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.AdamW`` (decoupled weight decay).

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`m_t, v_t` of the raw (or, with ``maximize``, negated) gradient as in :func:`adam`.
  Without ``amsgrad`` this is the chain of ``optax.adamw``; it differs from ``optax.adamw`` by the
  default ``weight_decay`` (torch 1e-2, optax 1e-4), the default ``lr``, ``maximize`` and
  torch's AMSGrad.
  """
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)
