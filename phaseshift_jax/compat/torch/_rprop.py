"""``torch.optim.Rprop``."""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import check_non_negative, concrete_scalar, chain
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if, _pair
from phaseshift_jax.compat.torch._transforms import scale_by_torch_rprop


def rprop(
    lr: optax.ScalarOrSchedule = 1e-2,
    etas: tuple[float, float] = (0.5, 1.2),
    step_sizes: tuple[float, float] = (1e-6, 50),
    *,
    capturable: bool = False,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Rprop`` (resilient backpropagation, Rprop without weight-backtracking).

  .. math::
      s_t = \operatorname{sign}(d_t\,p_{t-1}), \ d_t = \pm g_t, \quad
      \Delta_t = \operatorname{clip}(f(s_t)\,\Delta_{t-1}, \Delta_{\min}, \Delta_{\max}), \quad
      f = \eta_+ \ (s_t > 0), \ \eta_- \ (s_t < 0), \ 1 \ (s_t = 0),

  .. math::
      p_t = 0 \text{ where } s_t < 0, \ d_t \text{ elsewhere}, \qquad
      \theta_t = \theta_{t-1} - \operatorname{sign}(p_t)\,\Delta_t

  with :math:`\Delta_0` = ``lr`` and :math:`p_0 = 0` (:math:`p` is torch's ``prev``,
  :math:`\Delta` its ``step_size``). The learning rate is only the initial step size: torch reads
  the group's ``lr`` once, when it creates the state, so a schedule is read at step 0 only and a
  later change of an injected ``lr`` changes nothing. The piece is :func:`scale_by_torch_rprop`:
  ``optax.rprop`` keeps the signed step :math:`\Delta_t\operatorname{sign}(g_t)` instead of the
  gradient, returns the previous step as the update, leaves :math:`\Delta` unclamped where
  :math:`s_t = 0`, and has no ``maximize``. The state is ``ScaleByTorchRpropState(count, prev,
  step_size)``. Complex parameters: stepped as torch does, as the pair of their real and
  imaginary parts (:func:`as_real_pairs`; ``prev`` and ``step_size`` of a complex leaf are
  complex, the step size starting at ``lr + 1j * lr``, as torch's).

  Args:
    lr: initial step size :math:`\Delta_0` (float, or a schedule read at step 0), >= 0.
    etas: :math:`(\eta_-, \eta_+)` with :math:`0 < \eta_- < 1 < \eta_+`; a tuple (static under
      ``optax.inject_hyperparams``) or a length-2 array (injected).
    step_sizes: :math:`(\Delta_{\min}, \Delta_{\max})`; a tuple or a length-2 array. Unchecked,
      as in torch.
    capturable: accepted for torch's signature; changes nothing.
    foreach: accepted for torch's signature; changes nothing.
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.Rprop``, https://pytorch.org/docs/stable/generated/torch.optim.Rprop.html;
    Riedmiller and Braun, `A direct adaptive method for faster backpropagation learning: the
    RPROP algorithm <https://doi.org/10.1109/ICNN.1993.298623>`_, 1993.
  """
  del capturable, foreach, differentiable
  check_non_negative("lr", lr)
  etaminus, etaplus = _pair("etas", etas)
  minus, plus = concrete_scalar("etas[0]", etaminus), concrete_scalar("etas[1]", etaplus)
  if minus is not None and not 0 < minus < 1:
    raise ValueError(f"etas[0] must be in (0, 1), got {etaminus!r}")
  if plus is not None and not plus > 1:
    raise ValueError(f"etas[1] must be > 1, got {etaplus!r}")
  step_size_min, step_size_max = _pair("step_sizes", step_sizes)
  return as_real_pairs(chain(
      _negate_if(maximize),
      scale_by_torch_rprop(lr, etaminus, etaplus, step_size_min, step_size_max),
  ))
