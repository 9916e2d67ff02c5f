"""``torch.optim.ASGD``, and its rule ``scale_by_torch_asgd`` (optax has no averaged SGD: its
``eta``, ``mu`` schedule and the averaged parameters ``ax``)."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import chain, check_non_negative
from phaseshift_jax.compat.torch._complex import as_real_pairs
from phaseshift_jax.compat.torch._shared import _negate_if


class ScaleByTorchAsgdState(NamedTuple):
  """State of :func:`scale_by_torch_asgd`: torch's ``step``, ``eta``, ``mu`` and ``ax``.

  ``eta`` and ``mu`` are float32 scalars, as torch keeps them (its ``_get_scalar_dtype()``, the
  default dtype float32) and shares them by every parameter of a group; ``ax`` (params-shaped,
  the params' dtypes) is the running average of the parameters.
  """

  count: jax.Array
  eta: jax.Array
  mu: jax.Array
  ax: optax.Updates


def scale_by_torch_asgd(
    learning_rate: optax.ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
) -> optax.GradientTransformation:
  r"""The step of ``torch.optim.ASGD`` on a (decayed) gradient :math:`d_t`, with the rate in it.

  .. math::
      \theta_t = \theta_{t-1}(1 - \lambda\eta_t) - \eta_t d_t, \qquad
      \bar\theta_t = \begin{cases} \theta_t & \mu_t = 1 \\
                       \bar\theta_{t-1} + \mu_t(\theta_t - \bar\theta_{t-1}) & \text{else,}
                       \end{cases}

  .. math::
      \eta_{t+1} = \frac{\alpha_t}{(1 + \lambda\alpha_t t)^{a}}, \qquad
      \mu_{t+1} = \frac{1}{\max(1, t - t_0)}, \qquad \eta_1 = \alpha_1, \ \mu_1 = 1

  (:math:`\alpha_t` the learning rate at step :math:`t`, i.e. ``learning_rate(t - 1)`` for a
  schedule, :math:`a` = ``alpha``). The returned update is :math:`\theta_t - \theta_{t-1}`, so
  ``params`` are needed. :math:`\eta` and :math:`\mu` are computed in the default float dtype
  (float64 under x64, as torch's Python arithmetic) and stored as float32, as torch stores them.
  The state is :class:`ScaleByTorchAsgdState`.
  """

  def rate(count):
    return learning_rate(count) if callable(learning_rate) else learning_rate

  def init_fn(params):
    return ScaleByTorchAsgdState(
        count=jnp.zeros([], jnp.int32),
        eta=jnp.asarray(rate(jnp.zeros([], jnp.int32)), jnp.float32),
        mu=jnp.ones([], jnp.float32),
        ax=optax.tree.zeros_like(params),
    )

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError("scale_by_torch_asgd needs params: call update(updates, state, params)")
    real = jnp.result_type(float)
    eta = state.eta.astype(real)
    shrink = lambd * eta
    # torch computes theta (1 - lambd eta) - eta d; the update itself is computed directly (not
    # as a difference of parameters, which would lose the digits of a small update).
    updates = jax.tree.map(
        lambda p, d: -(eta.astype(p.dtype) * d + shrink.astype(p.dtype) * p), params, updates)
    new_params = jax.tree.map(lambda p, u: p + u, params, updates)
    averaged = jax.tree.map(
        lambda p, ax: jnp.where(state.mu == 1, p, ax + (p - ax) * state.mu.astype(p.dtype)),
        new_params, state.ax)
    count = optax.safe_increment(state.count)
    step = count.astype(real)
    lr = rate(state.count)
    new_eta = lr / (1 + lambd * lr * step) ** alpha
    new_mu = 1 / jnp.maximum(1, step - t0)
    return updates, ScaleByTorchAsgdState(
        count=count, eta=jnp.asarray(new_eta, jnp.float32), mu=jnp.asarray(new_mu, jnp.float32),
        ax=averaged)

  return optax.GradientTransformation(init_fn, update_fn)


def asgd(
    lr: optax.ScalarOrSchedule = 1e-2,
    lambd: float = 1e-4,
    alpha: float = 0.75,
    t0: float = 1e6,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
    differentiable: bool = False,
    capturable: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.ASGD`` (averaged SGD, Polyak and Juditsky).

  .. math::
      d_t = \pm g_t + \lambda_w\theta_{t-1}, \qquad
      \theta_t = \theta_{t-1}(1 - \lambda\eta_t) - \eta_t d_t,

  .. math::
      \bar\theta_t = \theta_t \ (\mu_t = 1), \quad
      \bar\theta_t = \bar\theta_{t-1} + \mu_t(\theta_t - \bar\theta_{t-1}) \ \text{(else)},
      \qquad
      \eta_{t+1} = \frac{\alpha_t}{(1 + \lambda\alpha_t t)^{a}}, \quad
      \mu_{t+1} = \frac{1}{\max(1, t - t_0)}

  with :math:`\eta_1 = \alpha_1`, :math:`\mu_1 = 1` (:math:`\alpha_t` = ``lr`` at step
  :math:`t`, :math:`a` = ``alpha``, :math:`\lambda` = ``lambd``, :math:`\lambda_w` =
  ``weight_decay``). As in torch, the step size :math:`\eta_t` used at step :math:`t` was
  computed at the end of step :math:`t-1`, from that step's learning rate (so a scheduled or
  injected ``lr`` takes effect one step later than in the other optimizers). The parameters
  follow the plain SGD-with-decay iterate :math:`\theta_t`; the average :math:`\bar\theta_t`
  (torch's ``ax``) is only kept in the state: read it with :func:`asgd_averaged_params`
  (averaging starts after step :math:`t_0`; until then :math:`\bar\theta_t = \theta_t`).
  optax has no averaged SGD; the piece is :func:`scale_by_torch_asgd`, after
  ``optax.add_decayed_weights``.

  The state holds a :class:`ScaleByTorchAsgdState` (``count`` = torch's ``step``, ``eta``,
  ``mu``, ``ax``): ``eta`` and ``mu`` are float32 scalars shared by every leaf, as torch stores
  them (one 0-d float32 tensor per parameter, all equal), and computed from float32-rounded
  values as torch does. Complex parameters: stepped as torch does, as the pair of their real
  and imaginary parts (:func:`as_real_pairs`; ``ax`` of a complex leaf is complex).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    lambd: decay term :math:`\lambda` of the step size.
    alpha: power :math:`a` of the step-size decay.
    t0: step :math:`t_0` after which averaging starts.
    weight_decay: L2 coefficient :math:`\lambda_w`, >= 0.
    foreach: accepted for torch's signature; changes nothing. (torch's multi-tensor path,
      ``foreach=True``, computes :math:`\eta` in float32 tensor arithmetic and so differs from
      its single-tensor path by float32 rounding of :math:`\eta`, about 1e-7 relative; this
      follows the single-tensor path.)
    maximize: ascend instead of descend (static).
    differentiable: accepted for torch's signature; changes nothing.
    capturable: accepted for torch's signature; changes nothing.

  References:
    ``torch.optim.ASGD``, https://pytorch.org/docs/stable/generated/torch.optim.ASGD.html;
    Polyak and Juditsky, `Acceleration of stochastic approximation by averaging
    <https://doi.org/10.1137/0330046>`_, 1992.
  """
  del foreach, differentiable, capturable
  check_non_negative("lr", lr)
  check_non_negative("weight_decay", weight_decay)
  return as_real_pairs(chain(
      _negate_if(maximize),
      optax.add_decayed_weights(weight_decay),
      scale_by_torch_asgd(lr, lambd, alpha, t0),
  ))


def asgd_averaged_params(state) -> optax.Params:
  """The averaged parameters :math:`\\bar\\theta` (torch's ``ax``) in a state of :func:`asgd`.

  Works on the state of ``asgd(...)`` and on states that hold one (inside ``optax.chain``,
  ``optax.inject_hyperparams``, ...). Raises ``ValueError`` if ``state`` holds none, or more than
  one.
  """
  found = optax.tree_utils.tree_get_all_with_path(
      state, "ScaleByTorchAsgdState")
  if len(found) != 1:
    raise ValueError(f"expected one ScaleByTorchAsgdState in the state, found {len(found)}")
  ((_, asgd_state),) = found
  assert isinstance(asgd_state, ScaleByTorchAsgdState)
  return asgd_state.ax
