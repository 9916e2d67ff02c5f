"""``torch.optim.RAdam``, and its rule ``scale_by_torch_radam`` (``optax.scale_by_radam`` places
``eps`` after the bias correction and rectifies from ``rho_t >= 5``; torch adds ``eps`` to the
raw root and rectifies from ``rho_t > 5``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import check_non_negative
from phaseshift_jax.compat.torch._adam import _betas, _weight_decay_chain
from phaseshift_jax.compat.torch._shared import _power_and_complement


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
