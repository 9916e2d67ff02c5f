"""``torch.optim.RAdam``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import check_non_negative
from phaseshift_jax.compat.torch._adam import _betas, _weight_decay_chain
from phaseshift_jax.compat.torch._transforms import scale_by_torch_radam


def radam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    decoupled_weight_decay: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.RAdam`` (Adam with the variance rectification).

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      \theta_t = \theta_{t-1} - \alpha\,\hat m_t \cdot
      \begin{cases}
        r_t\, \sqrt{1-\beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
        1 & \text{otherwise}
      \end{cases}

  with :math:`m_t, v_t` Adam's moments of :math:`d_t`, :math:`\hat m_t = m_t/(1-\beta_1^t)`,
  and the length :math:`\rho_t` of the approximated SMA and the rectification :math:`r_t` of
  :func:`scale_by_torch_radam`. With ``decoupled_weight_decay`` (torch's RAdamW) there is no L2
  term in :math:`d_t` and the parameters shrink by :math:`1-\alpha\lambda` beside the step.

  Differs from ``optax.radam`` in the placement of :math:`\epsilon` (optax:
  :math:`\sqrt{\hat v_t} + \epsilon`, i.e. :math:`\epsilon` not scaled by
  :math:`1/\sqrt{1-\beta_2^t}`), the threshold (optax rectifies from :math:`\rho_t \ge 5`),
  weight decay and ``maximize``; ``optax.radam`` has no default learning rate, and takes
  ``b1``, ``b2`` where torch takes ``betas``. The state is ``optax.scale_by_radam``'s.
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
    decoupled_weight_decay: decoupled decay :math:`(1-\alpha\lambda)\theta` instead of the L2
      term (static).
    foreach: accepted so that torch calls port unchanged; no effect.
    maximize: ascend instead of descend (static).
    capturable: accepted so that torch calls port unchanged; no effect.
    differentiable: accepted so that torch calls port unchanged; no effect (every update here
      is differentiable).

  References:
    ``torch.optim.RAdam``, https://pytorch.org/docs/stable/generated/torch.optim.RAdam.html;
    Liu et al., `On the Variance of the Adaptive Learning Rate and Beyond
    <https://arxiv.org/abs/1908.03265>`_, ICLR 2020.
  """
  del foreach, capturable, differentiable
  check_non_negative("eps", eps)
  b1, b2 = _betas(betas)
  core = scale_by_torch_radam(b1, b2, eps)
  return _weight_decay_chain(core, lr, weight_decay, maximize, decoupled_weight_decay)
