"""``torch.optim.NAdam``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import check_non_negative
from phaseshift_jax.compat.torch._adam import _betas, _weight_decay_chain
from phaseshift_jax.compat.torch._transforms import scale_by_torch_nadam


def nadam(
    lr: optax.ScalarOrSchedule = 2e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    momentum_decay: float = 4e-3,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.NAdam`` (Adam with Dozat's Nesterov momentum schedule).

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      \mu_t = \beta_1\,(1 - \tfrac12\,0.96^{t\psi}), \quad \Pi_t = \prod_{s \le t} \mu_s,

  .. math::
      \theta_t = \theta_{t-1} - \alpha\,
      \frac{\frac{1-\mu_t}{1-\Pi_t}\, d_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\, m_t}
           {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`m_t, v_t` Adam's moments of :math:`d_t` and :math:`\psi` = ``momentum_decay``
  (:func:`scale_by_torch_nadam`). With ``decoupled_weight_decay`` (torch's NAdamW) there is no
  L2 term in :math:`d_t` and the parameters shrink by :math:`1-\alpha\lambda` beside the step.

  ``optax.nadam`` is another rule: a constant momentum :math:`\beta_1` (no schedule, no
  ``momentum_decay``), corrections :math:`1-\beta_1^{t+1}` and :math:`1-\beta_1^t` in place of
  the products :math:`\Pi`, no default learning rate, no weight decay and no ``maximize``. The state
  holds torch's ``mu_product`` as one float32 scalar (torch keeps one per parameter, all equal,
  in its default dtype).
  Complex parameters: stepped as torch does, as the pair of their real and imaginary parts
  (:func:`as_real_pairs`: each part squared separately; the moments of a complex leaf are
  complex).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda` (the decoupled one with
      ``decoupled_weight_decay``), >= 0.
    momentum_decay: :math:`\psi`, >= 0.
    decoupled_weight_decay: decoupled decay :math:`(1-\alpha\lambda)\theta` instead of the L2
      term (static).
    foreach: accepted so that torch calls port unchanged; no effect.
    maximize: ascend instead of descend (static).
    capturable: accepted so that torch calls port unchanged; no effect.
    differentiable: accepted so that torch calls port unchanged; no effect (every update here
      is differentiable).

  References:
    ``torch.optim.NAdam``, https://pytorch.org/docs/stable/generated/torch.optim.NAdam.html;
    Dozat, `Incorporating Nesterov Momentum into Adam
    <https://openreview.net/forum?id=OM0jvwB8jIp57ZJjtNEZ>`_, 2016.
  """
  del foreach, capturable, differentiable
  check_non_negative("eps", eps)
  check_non_negative("momentum_decay", momentum_decay)
  b1, b2 = _betas(betas)
  core = scale_by_torch_nadam(b1, b2, eps, momentum_decay)
  return _weight_decay_chain(core, lr, weight_decay, maximize, decoupled_weight_decay)
