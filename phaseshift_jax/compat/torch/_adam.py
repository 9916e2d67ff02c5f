"""``torch.optim.Adam`` and ``torch.optim.AdamW``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import (
    chain, check_non_negative, check_unit_interval, concrete_scalar, real_only)
from phaseshift_jax.compat.torch._shared import _negate_if
from phaseshift_jax.compat.torch._transforms import scale_by_torch_amsgrad


def _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled):
  check_non_negative("lr", lr)
  check_non_negative("eps", eps)
  check_non_negative("weight_decay", weight_decay)
  b1, b2 = betas
  check_unit_interval("betas[0]", b1)
  check_unit_interval("betas[1]", b2)
  # Concrete betas step as Python floats: the elements of a float32 array would promote the
  # moments (and updates) of bfloat16 params to float32. Traced ones (under inject_hyperparams,
  # which casts them to the params' dtype) stay as they are.
  b1, b2 = (b if concrete_scalar("betas", b) is None else float(b) for b in (b1, b2))
  if amsgrad:
    core = scale_by_torch_amsgrad(b1, b2, eps)
  else:
    core = optax.scale_by_adam(b1, b2, eps)
  decay = optax.add_decayed_weights(weight_decay)
  return real_only(chain(
      _negate_if(maximize),
      None if decoupled else decay,
      core,
      decay if decoupled else None,
      optax.scale_by_learning_rate(lr),
  ), "compat.torch.adamw" if decoupled else "compat.torch.adam")


def adam(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adam`` (L2 weight decay).

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

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    amsgrad: torch's AMSGrad (static).
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.Adam``, https://pytorch.org/docs/stable/generated/torch.optim.Adam.html
  """
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=False)


def adamw(
    lr: optax.ScalarOrSchedule = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.AdamW`` (decoupled weight decay).

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,\frac{m_t / (1-\beta_1^t)}{\sqrt{v_t / (1-\beta_2^t)} + \epsilon}

  with :math:`m_t, v_t` of the raw (or, with ``maximize``, negated) gradient as in :func:`adam`.
  Without ``amsgrad`` this is the chain of ``optax.adamw``; it differs from ``optax.adamw`` by the
  default ``weight_decay`` (torch 1e-2, optax 1e-4), the default ``lr``, ``maximize`` and
  torch's AMSGrad.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    betas: :math:`(\beta_1, \beta_2)`, each in [0, 1); a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    eps: :math:`\epsilon`, >= 0.
    weight_decay: decoupled coefficient :math:`\lambda`, >= 0.
    amsgrad: torch's AMSGrad (static).
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.AdamW``, https://pytorch.org/docs/stable/generated/torch.optim.AdamW.html
  """
  return _adam(lr, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)
