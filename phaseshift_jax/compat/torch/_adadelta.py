"""``torch.optim.Adadelta``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _check_closed_unit_interval, _negate_if


def adadelta(
    lr: optax.ScalarOrSchedule = 1.0,
    rho: float = 0.9,
    eps: float = 1e-6,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    capturable: bool = False,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adadelta``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      v_t = \rho v_{t-1} + (1-\rho) d_t^2, \quad
      \Delta_t = \frac{\sqrt{u_{t-1} + \epsilon}}{\sqrt{v_t + \epsilon}}\,d_t, \quad
      u_t = \rho u_{t-1} + (1-\rho)\Delta_t^2, \quad
      \theta_t = \theta_{t-1} - \alpha\Delta_t

  (:math:`v` is torch's ``square_avg``, :math:`u` its ``acc_delta``). The rule is
  ``optax.scale_by_adadelta``, exact, so this is ``optax.adadelta``'s chain (L2 decay, the rule,
  the rate) with ``maximize``; it differs from ``optax.adadelta`` by the default ``lr=1.0``
  (optax requires one) and ``maximize``. The state is ``optax.ScaleByAdaDeltaState(e_g=v,
  e_x=u)``. Complex parameters: stepped as torch does, as the pair of their real and imaginary
  parts (:func:`as_real_pairs`; the state of a complex leaf is complex).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    rho: :math:`\rho`, in [0, 1] (torch allows 1).
    eps: :math:`\epsilon`, >= 0, inside both roots.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    foreach: accepted for torch's signature; changes nothing.
    capturable: accepted for torch's signature; changes nothing.
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.Adadelta``, https://pytorch.org/docs/stable/generated/torch.optim.Adadelta.html;
    Zeiler, `ADADELTA: An Adaptive Learning Rate Method <https://arxiv.org/abs/1212.5701>`_, 2012.
  """
  del foreach, capturable, differentiable
  check_non_negative("lr", lr)
  _check_closed_unit_interval("rho", rho)
  check_non_negative("eps", eps)
  check_non_negative("weight_decay", weight_decay)
  return as_real_pairs(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      optax.scale_by_adadelta(rho=rho, eps=eps),
      optax.scale_by_learning_rate(lr),
  ))
