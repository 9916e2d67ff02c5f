"""``torch.optim.Adamax``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import chain, check_non_negative, check_unit_interval
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if, _pair


def adamax(
    lr: optax.ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adamax``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      m_t = \beta_1 m_{t-1} + (1-\beta_1) d_t, \quad
      u_t = \max(\beta_2 u_{t-1}, |d_t| + \epsilon), \quad
      \theta_t = \theta_{t-1} - \frac{\alpha}{1-\beta_1^t}\,\frac{m_t}{u_t}

  (:math:`m` is torch's ``exp_avg``, :math:`u` its ``exp_inf``). ``optax.scale_by_adamax`` is
  this rule exactly (:math:`\epsilon` inside the maximum, no correction of :math:`u`, the bias
  correction of :math:`m`), so with the defaults this is ``optax.adamax(2e-3)``; the additions
  are the L2 term and ``maximize``, and the default rate is torch's (optax has none). The state
  is ``optax.ScaleByAdamState(count, mu=m, nu=u)``. Complex parameters: stepped as torch does,
  as the pair of their real and imaginary parts (:func:`as_real_pairs`; the state of a complex
  leaf is complex).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    foreach: accepted for torch's signature; changes nothing.
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.
    capturable: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.Adamax``, https://pytorch.org/docs/stable/generated/torch.optim.Adamax.html;
    Kingma and Ba, `Adam: A Method for Stochastic Optimization
    <https://arxiv.org/abs/1412.6980>`_ (section 7.1), 2014.
  """
  del foreach, differentiable, capturable
  check_non_negative("lr", lr)
  check_non_negative("eps", eps)
  check_non_negative("weight_decay", weight_decay)
  b1, b2 = _pair("betas", betas)
  check_unit_interval("betas[0]", b1)
  check_unit_interval("betas[1]", b2)
  return as_real_pairs(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      optax.scale_by_adamax(b1, b2, eps),
      optax.scale_by_learning_rate(lr),
  ))
