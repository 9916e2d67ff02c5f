"""``torch.optim.NAdam``, and its rule ``scale_by_torch_nadam``
(``optax.scale_by_adam(nesterov=True)`` has a constant momentum; torch has Dozat's momentum
schedule and its product ``mu_product``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import check_non_negative
from phaseshift_jax.compat.torch._adam import _betas, _weight_decay_chain
from phaseshift_jax.compat.torch._shared import _power_and_complement


class ScaleByTorchNadamState(NamedTuple):
  """State of :func:`scale_by_torch_nadam`.

  ``count`` is torch's ``step``; ``mu_product`` its ``mu_product`` (one scalar for the whole
  tree: torch keeps one per parameter, all equal); ``mu`` and ``nu`` are ``exp_avg`` and
  ``exp_avg_sq``.
  """

  count: jax.Array
  mu_product: jax.Array
  mu: optax.Updates
  nu: optax.Updates


def scale_by_torch_nadam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, momentum_decay: float = 4e-3
) -> optax.GradientTransformation:
  r"""NAdam's preconditioner as ``torch.optim.NAdam`` computes it (Dozat's momentum schedule).

  .. math::
      \mu_t = \beta_1\,(1 - \tfrac12\,0.96^{t\psi}), \quad \Pi_t = \Pi_{t-1}\,\mu_t, \quad
      \Pi_0 = 1,

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      u_t = \frac{\frac{1-\mu_t}{1-\Pi_t}\, g_t + \frac{\mu_{t+1}}{1-\Pi_t\mu_{t+1}}\, m_t}
                 {\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`\psi` = ``momentum_decay``. Custom because ``optax.scale_by_adam(nesterov=True)``
  (``optax.nadam``) has a constant momentum :math:`\beta_1` and corrects the two terms by
  :math:`1-\beta_1^{t+1}` and :math:`1-\beta_1^t`, where torch uses the schedule :math:`\mu_t`
  and the products :math:`\Pi`. :math:`\Pi_t` is kept in float32 whatever the parameters' dtype,
  as torch keeps ``mu_product`` under its default dtype; the coefficients are computed from it in
  the precision of :math:`\mu_t` (float64 under ``jax.enable_x64``), as torch computes them in
  Python floats.
  """

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    return ScaleByTorchNadamState(
        count=jnp.zeros([], jnp.int32), mu_product=jnp.ones([], jnp.float32), mu=zeros, nu=zeros
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    count = optax.safe_increment(state.count)
    momentum = b1 * (1.0 - 0.5 * 0.96 ** (count * momentum_decay))
    momentum_next = b1 * (1.0 - 0.5 * 0.96 ** ((count + 1) * momentum_decay))
    # torch multiplies its float32 mu_product in place: a float32 product of float32 factors.
    mu_product = state.mu_product * jnp.asarray(momentum).astype(state.mu_product.dtype)
    product = mu_product.astype(jnp.result_type(momentum))
    grad_coef = (1.0 - momentum) / (1.0 - product)
    moment_coef = momentum_next / (1.0 - product * momentum_next)
    _, correction2 = _power_and_complement(b2, count)

    def step(g, m, v):
      denom = jnp.sqrt(v / correction2.astype(v.dtype)) + eps
      return (grad_coef.astype(g.dtype) * g + moment_coef.astype(m.dtype) * m) / denom

    updates = jax.tree.map(step, updates, mu, nu)
    return updates, ScaleByTorchNadamState(count=count, mu_product=mu_product, mu=mu, nu=nu)

  return optax.GradientTransformation(init_fn, update_fn)


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
