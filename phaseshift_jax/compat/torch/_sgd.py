"""``torch.optim.SGD``."""

from __future__ import annotations

import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._shared import _check_nesterov, _negate_if


def sgd(
    lr: optax.ScalarOrSchedule = 1e-3,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    differentiable: bool = False,
    fused: bool | None = None,
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
    foreach: accepted for torch's signature; changes nothing.
    differentiable: accepted for torch's signature; changes nothing.
    fused: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.SGD``, https://pytorch.org/docs/stable/generated/torch.optim.SGD.html
  """
  del foreach, differentiable, fused
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
