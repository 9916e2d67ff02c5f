"""``torch.optim.RMSprop``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if, momentum_buffer


def rmsprop(
    lr: optax.ScalarOrSchedule = 1e-2,
    alpha: float = 0.99,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    centered: bool = False,
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
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
  ``eps_in_sqrt=False``, ``optax.trace`` (in :func:`momentum_buffer`) and ``optax.scale_by_learning_rate``, in torch's order
  (the learning rate after the momentum buffer). Differs from ``optax.rmsprop``: :math:`\epsilon`
  outside the root (optax's default is inside), ``decay`` default 0.99 (optax 0.9), L2 decay,
  and optax applies the rate *before* its momentum trace (the same only for a constant rate).

  The momentum buffer (:func:`momentum_buffer`, torch's ``momentum_buffer``) is in the state
  also for :math:`\mu = 0`, where torch keeps none; a step with :math:`\mu = 0` leaves it
  as it is, as torch does.

  Complex parameters: stepped as torch does, as the pair of their real and imaginary parts
  (:func:`as_real_pairs`: each part squared separately; the state of a complex leaf is
  complex, real part for the real part).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    alpha: smoothing constant :math:`\alpha_s`, >= 0 (torch's check).
    eps: :math:`\epsilon`, >= 0, added outside the root.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    momentum: :math:`\mu`, >= 0.
    centered: subtract the squared mean gradient (static).
    capturable: accepted for torch's signature; changes nothing.
    foreach: accepted for torch's signature; changes nothing.
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.RMSprop``, https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html
  """
  del capturable, foreach, differentiable
  for name, value in [("lr", lr), ("eps", eps), ("weight_decay", weight_decay)]:
    check_non_negative(name, value)
  check_non_negative("alpha", alpha)  # torch's check (above 1, v grows: torch allows it)
  check_non_negative("momentum", momentum)
  scale = optax.scale_by_stddev if centered else optax.scale_by_rms
  return as_real_pairs(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      scale(decay=alpha, eps=eps, initial_scale=0.0, eps_in_sqrt=False),
      momentum_buffer(momentum),
      optax.scale_by_learning_rate(lr),
  ))
