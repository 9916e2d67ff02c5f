"""``torch.optim.Adam`` and ``torch.optim.AdamW``; ``scale_by_torch_amsgrad``
(``optax.scale_by_amsgrad`` keeps the maximum of the bias-corrected second moment; torch keeps
the maximum of the raw one and divides it by the current correction); the ``betas`` check and the
weight-decay chain shared with ``nadam`` and ``radam``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import chain, check_non_negative, check_unit_interval
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if, _pair


def scale_by_torch_amsgrad(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> optax.GradientTransformation:
  r"""AMSGrad as ``torch.optim.Adam(amsgrad=True)`` computes it.

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      \bar v_t = \max(\bar v_{t-1}, v_t),

  .. math::
      u_t = \frac{m_t / (1-\beta_1^t)}{\sqrt{\bar v_t} / \sqrt{1-\beta_2^t} + \epsilon}

  The state is ``optax.ScaleByAmsgradState(count, mu=m, nu=v, nu_max=v_bar)``; ``nu_max`` holds
  the maximum of the raw (uncorrected) second moment, as torch's ``max_exp_avg_sq`` does.
  """

  def init_fn(params):
    zeros = optax.tree.zeros_like(params)
    return optax.ScaleByAmsgradState(
        count=jnp.zeros([], jnp.int32), mu=zeros, nu=zeros, nu_max=zeros
    )

  def update_fn(updates, state, params=None):
    del params
    mu = optax.tree.update_moment(updates, state.mu, b1, 1)
    nu = optax.tree.update_moment_per_elem_norm(updates, state.nu, b2, 2)
    nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu)
    count = optax.safe_increment(state.count)
    mu_hat = optax.tree.bias_correction(mu, b1, count)
    root_correction = jnp.sqrt(1 - b2**count)
    updates = jax.tree.map(
        lambda m, v: m / (jnp.sqrt(v) / root_correction.astype(v.dtype) + eps), mu_hat, nu_max
    )
    return updates, optax.ScaleByAmsgradState(count=count, mu=mu, nu=nu, nu_max=nu_max)

  return optax.GradientTransformation(init_fn, update_fn)


def _betas(betas):
  """``(b1, b2)`` checked, each in [0, 1); concrete ones as Python floats (``_pair``)."""
  b1, b2 = _pair("betas", betas)
  check_unit_interval("betas[0]", b1)
  check_unit_interval("betas[1]", b2)
  return b1, b2


def _weight_decay_chain(core, lr, weight_decay, maximize, decoupled):
  """torch's order around an Adam-like ``core``: negate for ``maximize``, the L2 term (or, when
  ``decoupled``, the decoupled decay after ``core``), then the learning rate; complex leaves
  stepped as torch's real pairs (:func:`as_real_pairs`)."""
  check_non_negative("lr", lr)
  check_non_negative("weight_decay", weight_decay)
  decay = optax.add_decayed_weights(weight_decay)
  return as_real_pairs(chain(
      _negate_if(maximize),
      None if decoupled else decay,
      core,
      decay if decoupled else None,
      optax.scale_by_learning_rate(lr),
  ))


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
  check_non_negative("eps", eps)
  b1, b2 = _betas(betas)
  if amsgrad:
    core = scale_by_torch_amsgrad(b1, b2, eps)
  else:
    core = optax.scale_by_adam(b1, b2, eps)
  return _weight_decay_chain(core, lr, weight_decay, maximize, decoupled)


def adam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
    decoupled_weight_decay: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adam`` (L2 weight decay, or decoupled with ``decoupled_weight_decay``).

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
  With ``decoupled_weight_decay`` there is no L2 term and the step is :func:`adamw`'s,
  :math:`\theta_t = (1 - \alpha\lambda)\theta_{t-1} - \ldots` (torch's ``AdamW`` is this
  ``Adam`` with ``decoupled_weight_decay=True``).
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
    amsgrad: torch's AMSGrad (static).
    foreach: accepted so that torch calls port unchanged; no effect.
    maximize: ascend instead of descend (static).
    capturable: accepted so that torch calls port unchanged; no effect.
    differentiable: accepted so that torch calls port unchanged; no effect (every update here
      is differentiable).
    fused: accepted so that torch calls port unchanged; no effect.
    decoupled_weight_decay: decoupled decay :math:`(1-\alpha\lambda)\theta` instead of the L2
      term (static).

  References:
    ``torch.optim.Adam``, https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
  """
  del foreach, capturable, differentiable, fused
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay)


def adamw(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
    foreach: bool | None = None,
    capturable: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.AdamW`` (decoupled weight decay).

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`m_t, v_t` of the raw (or, with ``maximize``, negated) gradient as in :func:`adam`.
  Without ``amsgrad`` this is the chain of ``optax.adamw``; it differs from ``optax.adamw`` by the
  default ``weight_decay`` (torch 1e-2, optax 1e-4), the default ``lr``, ``maximize`` and
  torch's AMSGrad. As in torch (whose ``AdamW`` is ``Adam(decoupled_weight_decay=True)``),
  there is no ``decoupled_weight_decay`` keyword: it is :func:`adam` with that flag set.
  Complex parameters as in :func:`adam`.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: decoupled coefficient :math:`\lambda`, >= 0.
    amsgrad: torch's AMSGrad (static).
    maximize: ascend instead of descend (static).
    foreach: accepted so that torch calls port unchanged; no effect.
    capturable: accepted so that torch calls port unchanged; no effect.
    differentiable: accepted so that torch calls port unchanged; no effect (every update here
      is differentiable).
    fused: accepted so that torch calls port unchanged; no effect.

  References:
    ``torch.optim.AdamW``, https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
  """
  del foreach, capturable, differentiable, fused
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, True)
