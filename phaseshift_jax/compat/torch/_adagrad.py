"""``torch.optim.Adagrad``, and its preconditioner ``scale_by_torch_adagrad``
(``optax.scale_by_rss`` adds ``eps`` inside the square root; torch adds it outside)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax import schedules
from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if


def scale_by_torch_adagrad(
    initial_accumulator_value: float = 0.0, eps: float = 1e-10
) -> optax.GradientTransformation:
  r"""Adagrad's preconditioner as ``torch.optim.Adagrad`` computes it.

  .. math:: G_t = G_{t-1} + g_t^2, \quad G_0 = \text{initial\_accumulator\_value}, \qquad
            u_t = \frac{g_t}{\sqrt{G_t} + \epsilon}

  The state is ``optax.ScaleByRssState(sum_of_squares=G)``, the same as ``optax.scale_by_rss``.
  """

  def init_fn(params):
    return optax.ScaleByRssState(
        sum_of_squares=optax.tree.full_like(params, initial_accumulator_value)
    )

  def update_fn(updates, state, params=None):
    del params
    sums = jax.tree.map(lambda g, s: s + g * g, updates, state.sum_of_squares)
    updates = jax.tree.map(lambda g, s: g / (jnp.sqrt(s) + eps), updates, sums)
    return updates, optax.ScaleByRssState(sum_of_squares=sums)

  return optax.GradientTransformation(init_fn, update_fn)


def adagrad(
    lr: optax.ScalarOrSchedule = 1e-2,
    lr_decay: float = 0.0,
    weight_decay: float = 0.0,
    initial_accumulator_value: float = 0.0,
    eps: float = 1e-10,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    fused: bool | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adagrad``.

  .. math::
      d_t = \pm g_t + \lambda\theta_{t-1}, \quad
      G_t = G_{t-1} + d_t^2, \quad G_0 = \text{initial\_accumulator\_value},

  .. math::
      \theta_t = \theta_{t-1} - \frac{\alpha}{1 + (t-1)\,\kappa}\,
                 \frac{d_t}{\sqrt{G_t} + \epsilon}

  with :math:`\kappa` = ``lr_decay`` (the rule of
  :func:`phaseshift_jax.schedules.time_based_decay`). The preconditioner is
  :func:`scale_by_torch_adagrad`, custom because ``optax.scale_by_rss`` puts :math:`\epsilon`
  inside the root. Differs from ``optax.adagrad`` in that placement, in the accumulator's start
  (optax: 0.1), ``eps`` (optax: 1e-7), ``lr_decay`` and L2 decay.

  The rate is always the schedule :math:`\alpha_t / (1 + (t-1)\kappa)` (exactly
  :math:`\alpha_t` for :math:`\kappa = 0`), so the state holds its step count
  (``ScaleByScheduleState``) for every ``lr`` and ``lr_decay``.

  Complex parameters: stepped as torch does, as the pair of their real and imaginary parts
  (:func:`as_real_pairs`: each part squared into its own accumulator; the accumulator of a
  complex leaf is complex, real part for the real part).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    lr_decay: :math:`\kappa`, >= 0.
    weight_decay: L2 coefficient :math:`\lambda`, >= 0.
    initial_accumulator_value: :math:`G_0`, >= 0.
    eps: :math:`\epsilon`, >= 0, added outside the root.
    foreach: accepted for torch's signature; changes nothing.
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.
    fused: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.Adagrad``, https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html
  """
  del foreach, differentiable, fused
  for name, value in [
      ("lr", lr),
      ("lr_decay", lr_decay),
      ("weight_decay", weight_decay),
      ("initial_accumulator_value", initial_accumulator_value),
      ("eps", eps),
  ]:
    check_non_negative(name, value)
  base = lr if callable(lr) else optax.constant_schedule(lr)
  decay = schedules.time_based_decay(1.0, lr_decay)
  rate = lambda count: base(count) * decay(count)  # noqa: E731
  return as_real_pairs(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      scale_by_torch_adagrad(initial_accumulator_value, eps),
      optax.scale_by_learning_rate(rate),
  ))
