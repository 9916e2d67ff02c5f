"""``torch.optim.Rprop``, and its rule ``scale_by_torch_rprop`` (``optax.scale_by_rprop`` is another
variant: it keeps the signed step, returns the previous one, and leaves the step size alone where
the product of gradients is 0, where torch multiplies it by 1 and clamps it)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import check_non_negative, concrete_scalar, chain
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if, _pair


class ScaleByTorchRpropState(NamedTuple):
  """State of :func:`scale_by_torch_rprop`: torch's ``step``, ``prev`` and ``step_size``."""

  count: jax.Array
  prev: optax.Updates
  step_size: optax.Updates


def scale_by_torch_rprop(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    etaminus: float = 0.5,
    etaplus: float = 1.2,
    step_size_min: float = 1e-6,
    step_size_max: float = 50.0,
) -> optax.GradientTransformation:
  r"""``torch.optim.Rprop``'s step (the update, learning rate included).

  .. math::
      s_t = \operatorname{sign}(g_t\,p_{t-1}), \quad
      f_t = \eta_+ \ (s_t > 0), \ \eta_- \ (s_t < 0), \ 1 \ (s_t = 0), \quad
      \Delta_t = \operatorname{clip}(f_t \Delta_{t-1}, \Delta_{\min}, \Delta_{\max}),

  .. math::
      p_t = 0 \text{ where } f_t = \eta_-, \ g_t \text{ elsewhere}, \qquad
      u_t = -\operatorname{sign}(p_t)\,\Delta_t

  with :math:`\Delta_0` = ``learning_rate`` (a schedule is read at step 0 only: torch reads the
  group's ``lr`` when it creates the state) and :math:`p_0 = 0`. The state is
  :class:`ScaleByTorchRpropState` (``prev`` = :math:`p`, ``step_size`` = :math:`\Delta`).
  """

  def init_fn(params):
    lr = learning_rate(jnp.zeros([], jnp.int32)) if callable(learning_rate) else learning_rate
    return ScaleByTorchRpropState(
        count=jnp.zeros([], jnp.int32),
        prev=optax.tree.zeros_like(params),
        step_size=optax.tree.full_like(params, lr),
    )

  def factor(g, prev):
    def cast(x):
      return jnp.asarray(x, g.dtype)

    s = jnp.sign(g * prev)
    return jnp.where(s > 0, cast(etaplus),
                     jnp.where(s < 0, cast(etaminus), jnp.where(s == 0, cast(1), s)))

  def update_fn(updates, state, params=None):
    del params
    factors = jax.tree.map(factor, updates, state.prev)
    sizes = jax.tree.map(
        lambda size, f: jnp.clip(size * f, jnp.asarray(step_size_min, size.dtype),
                                 jnp.asarray(step_size_max, size.dtype)),
        state.step_size, factors)
    prev = jax.tree.map(
        lambda g, f: jnp.where(f == jnp.asarray(etaminus, g.dtype), jnp.zeros_like(g), g),
        updates, factors)
    updates = jax.tree.map(lambda g, size: -jnp.sign(g) * size, prev, sizes)
    return updates, ScaleByTorchRpropState(
        count=optax.safe_increment(state.count), prev=prev, step_size=sizes)

  return optax.GradientTransformation(init_fn, update_fn)


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
