r"""``torch.optim`` optimizers as optax transformations that reproduce torch step for step.

Same argument names and defaults as ``torch.optim`` (torch 2.x), and torch's order of operations:
negate the gradient if ``maximize``, add the L2 term ``weight_decay * theta`` (``adamw``: shrink
the parameters by ``1 - lr * weight_decay`` instead), then the optimizer's own rule, then the
learning rate. Each optimizer is an ``optax.chain`` of optax primitives, with a custom piece only
where optax has no exact equivalent (Adagrad's ``eps`` placement, torch's AMSGrad maximum, SGD's
undamped first momentum buffer); the docstrings say where.

``lr`` may be a float or an optax schedule (the step count starts at 0, as after zero
``scheduler.step()`` calls in torch). This module does not import torch.

Every float hyperparameter can be injected with ``optax.inject_hyperparams`` (``betas`` as a
length-2 array, e.g. ``betas=jnp.array([0.9, 0.999])``; a tuple stays static): the chain is the
same whatever the numeric values, and a value that switches a piece off in torch (``momentum=0``,
``weight_decay=0``, ``lr_decay=0``, ``dampening=0``) makes that piece an exact identity here (for
finite parameters and gradients). The state therefore has the same structure for every value
(the optax convention: it depends on the static flags ``nesterov``, ``amsgrad``, ``centered``,
``maximize`` only), and holds a few pieces torch does not keep for a zero value; each docstring
says which. Concrete bad values raise ``ValueError`` naming the argument; traced ones are not
checked. ``update`` needs ``params`` (the weight-decay piece reads them even for a zero decay).

Complex parameters: ``sgd`` steps them as torch does (its rule is linear, so a complex parameter
steps as the pair of its real and imaginary parts); ``adagrad``, ``rmsprop``, ``adam`` and ``adamw``
refuse them at ``init`` with a ``TypeError``, since torch squares the two parts separately where
optax's accumulators and moments would not (``_common.real_only``).
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from phaseshift_jax import schedules
from phaseshift_jax.compat._common import (
    chain,
    check_non_negative,
    check_unit_interval,
    concrete_scalar,
    real_only,
)
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


def _check_nesterov(momentum, dampening) -> None:
  """torch's condition for ``nesterov``, on whichever of ``momentum``, ``dampening`` is concrete."""
  mu = concrete_scalar("momentum", momentum)
  tau = concrete_scalar("dampening", dampening)
  if (mu is not None and mu <= 0) or (tau is not None and tau != 0):
    raise ValueError(
        f"nesterov requires momentum > 0 and dampening == 0, got momentum={momentum!r}, "
        f"dampening={dampening!r}"
    )


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

  (:math:`-g_t` when ``maximize``; :math:`\mu = 0` gives plain SGD,
  :math:`\theta_t = \theta_{t-1} - \alpha d_t`, and ignores :math:`\tau`, as in torch.)
  Built from ``optax.scale``, ``optax.add_decayed_weights``, ``optax.scale_by_schedule``,
  ``optax.trace`` and ``optax.scale_by_learning_rate``. ``optax.trace`` starts from a zero
  buffer, so :math:`b_1 = d_1` comes out right by itself; its input is scaled by an
  ``optax.scale_by_schedule`` that is :math:`1-\tau` from the second step on and 1 at the first
  step (torch does not damp the first buffer) and whenever :math:`\mu = 0`.

  The state has the same structure for every value: ``ScaleByScheduleState`` (the dampening's
  step count) and ``TraceState`` (torch's ``momentum_buffer``) are there also for
  :math:`\mu = 0`, where torch keeps no buffer; the trace then holds :math:`d_t` and adds
  :math:`0 \cdot b_{t-1}`, an exact no-op for finite values.

  Differs from ``optax.sgd``: L2 weight decay, ``dampening``, ``maximize``; the default
  ``lr=1e-3`` is torch's.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    momentum: :math:`\mu`, >= 0.
    dampening: :math:`\tau`.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    nesterov: Nesterov momentum (static); needs :math:`\mu > 0` and :math:`\tau = 0`, checked
      for concrete values.
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.SGD``, https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
  """
  check_non_negative("lr", lr)
  check_non_negative("momentum", momentum)
  check_non_negative("weight_decay", weight_decay)
  if nesterov:
    _check_nesterov(momentum, dampening)

  def damping(count):
    undamped = jnp.logical_or(count == 0, momentum == 0)
    return jnp.where(undamped, 1.0, 1.0 - dampening)

  return chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      optax.scale_by_schedule(damping),
      optax.trace(decay=momentum, nesterov=nesterov),
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

  with :math:`\kappa` = ``lr_decay`` (the rule of
  :func:`phaseshift_jax.schedules.time_based_decay`). The preconditioner is
  :func:`scale_by_torch_adagrad`, custom because ``optax.scale_by_rss`` puts :math:`\epsilon`
  inside the root. Differs from ``optax.adagrad`` in that placement, in the accumulator's start
  (optax: 0.1), ``eps`` (optax: 1e-7), ``lr_decay`` and L2 decay.

  The rate is always the schedule :math:`\alpha_t / (1 + (t-1)\kappa)` (exactly
  :math:`\alpha_t` for :math:`\kappa = 0`), so the state holds its step count
  (``ScaleByScheduleState``) for every ``lr`` and ``lr_decay``.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    lr_decay: :math:`\kappa`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    initial_accumulator_value: :math:`G_0`, >= 0.
    eps: :math:`\epsilon`, >= 0, added outside the root.
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.Adagrad``, https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html
  """
  for name, value in [
      ("lr", lr),
      ("lr_decay", lr_decay),
      ("weight_decay", weight_decay),
      ("initial_accumulator_value", initial_accumulator_value),
      ("eps", eps),
  ]:
    check_non_negative(name, value)
  base = lr if callable(lr) else optax.constant_schedule(lr)
  decay = schedules.time_based_decay(1.0, lr_decay)
  rate = lambda count: base(count) * decay(count)  # noqa: E731
  return real_only(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      scale_by_torch_adagrad(initial_accumulator_value, eps),
      optax.scale_by_learning_rate(rate),
  ), "compat.torch.adagrad")


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

  The momentum buffer (``TraceState``, torch's ``momentum_buffer``) is in the state also for
  :math:`\mu = 0`, where torch keeps none; it then holds :math:`u_t` and adds
  :math:`0 \cdot b_{t-1}`, an exact no-op for finite values.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    alpha: smoothing constant :math:`\alpha_s`, in [0, 1).
    eps: :math:`\epsilon`, >= 0, added outside the root.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    momentum: :math:`\mu`, >= 0.
    centered: subtract the squared mean gradient (static).
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.RMSprop``, https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html
  """
  for name, value in [("lr", lr), ("eps", eps), ("weight_decay", weight_decay)]:
    check_non_negative(name, value)
  check_unit_interval("alpha", alpha)
  check_non_negative("momentum", momentum)
  scale = optax.scale_by_stddev if centered else optax.scale_by_rms
  return real_only(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      scale(decay=alpha, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
      optax.trace(decay=momentum),
      optax.scale_by_learning_rate(lr),
  ), "compat.torch.rmsprop")


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
  check_non_negative("lr", lr)
  check_non_negative("eps", eps)
  check_non_negative("weight_decay", weight_decay)
  b1, b2 = betas
  check_unit_interval("betas[0]", b1)
  check_unit_interval("betas[1]", b2)
  # Concrete betas step as Python floats: the elements of a float32 array would promote the
  # moments (and updates) of bfloat16 params to float32. Traced ones (under inject_hyperparams,
  # which casts them to the params' dtype) stay as they are.
  b1, b2 = (b if concrete_scalar("betas", b) is None else float(b) for b in (b1, b2))
  if amsgrad:
    core = scale_by_torch_amsgrad(b1, b2, eps)
  else:
    core = optax.scale_by_adam(b1, b2, eps)
  decay = optax.add_decayed_weights(weight_decay)
  return real_only(chain(
      _negate_if(maximize),
      None if decoupled else decay,
      core,
      decay if decoupled else None,
      optax.scale_by_learning_rate(lr),
  ), "compat.torch.adamw" if decoupled else "compat.torch.adam")


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

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    amsgrad: torch's AMSGrad (static).
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.Adam``, https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
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

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: decoupled coefficient :math:`\lambda`, >= 0.
    amsgrad: torch's AMSGrad (static).
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.AdamW``, https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
  """
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)
