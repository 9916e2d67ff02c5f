"""``torch.optim.SGD``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._shared import _check_nesterov, _negate_if, momentum_buffer


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
  Built from ``optax.scale``, ``optax.add_decayed_weights``, :func:`momentum_buffer` (an
  ``optax.trace`` that, as torch's ``momentum_buffer``, starts undamped with the first step whose
  :math:`\mu \ne 0` and is left alone by steps with :math:`\mu = 0`) and
  ``optax.scale_by_learning_rate``. The state has the same structure for every value: the
  buffer (``MomentumBufferState``) is there also for :math:`\mu = 0`, where torch keeps none.

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

  return chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      momentum_buffer(momentum, dampening, nesterov),
      optax.scale_by_learning_rate(lr),
  )
