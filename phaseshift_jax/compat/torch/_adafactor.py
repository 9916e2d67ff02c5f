"""``torch.optim.Adafactor``."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from phaseshift_jax.compat._common import chain, check_non_negative, concrete_scalar, real_only
from phaseshift_jax.compat.torch._shared import _negate_if


class ScaleByTorchAdafactorState(NamedTuple):
  """State of :func:`scale_by_torch_factored_rms`.

  ``row_var`` / ``col_var``: torch's ``row_var`` (shape ``(..., R, 1)``) and ``col_var``
  (``(..., 1, C)``) for a leaf of two or more dimensions, a ``(1,)`` placeholder otherwise;
  ``variance``: torch's ``variance`` (the leaf's shape) for a leaf of zero or one dimension, a
  ``(1,)`` placeholder otherwise (optax's ``FactoredState`` convention). ``count``: steps taken.
  """

  count: jax.Array
  row_var: optax.Updates
  col_var: optax.Updates
  variance: optax.Updates


def _torch_lerp(start, end, weight):
  """``torch.lerp`` as torch's CPU kernel evaluates it (two forms, split at ``weight = 0.5``)."""
  diff = end - start
  return jnp.where(jnp.abs(weight) < 0.5, start + weight * diff, end - diff * (1 - weight))


def _eps1(eps1, dtype):
  return jnp.finfo(dtype).eps if eps1 is None else eps1


def scale_by_torch_factored_rms(
    beta2_decay: float = -0.8, eps1: float | None = None
) -> optax.GradientTransformation:
  r"""Adafactor's preconditioner as ``torch.optim.Adafactor`` computes it.

  With :math:`\hat\beta_t = t^{c}` (``beta2_decay`` :math:`c \le 0`; torch's "one minus
  beta2"), for a leaf of two or more dimensions (factored over the last two)

  .. math::
      R_t = (1-\hat\beta_t) R_{t-1} + \hat\beta_t\,\mathrm{mean}_{-1}(g^2), \quad
      C_t = (1-\hat\beta_t) C_{t-1} + \hat\beta_t\,\mathrm{mean}_{-2}(g^2), \quad
      \hat V_t = \frac{R_t C_t}{\max(\mathrm{mean}_{-2}(R_t), \epsilon_1)}

  and for a vector or a scalar :math:`\hat V_t = V_t = (1-\hat\beta_t)V_{t-1} + \hat\beta_t g^2`;
  then :math:`u_t = g_t / \sqrt{\max(\hat V_t, \epsilon_1^2)}`. The moving averages are torch's
  ``lerp`` (:math:`\hat\beta_1 = 1`, so the first step takes the new statistics whole).

  Custom: ``optax.scale_by_factored_rms`` decays with :math:`1 - t^{-0.8}` too but adds its
  ``epsilon`` to :math:`g^2` before averaging, normalises :math:`R` by its mean without the
  :math:`\epsilon_1` floor, and factors only dimensions of at least 128; torch factors every
  leaf of two or more dimensions over its last two.

  Args:
    beta2_decay: :math:`c`, <= 0.
    eps1: :math:`\epsilon_1`, >= 0; ``None`` is the machine epsilon of each leaf's dtype.
  """

  def init_fn(params):
    def row(p):
      return jnp.zeros((*p.shape[:-1], 1), p.dtype) if p.ndim > 1 else jnp.zeros((1,), p.dtype)

    def col(p):
      if p.ndim > 1:
        return jnp.zeros((*p.shape[:-2], 1, p.shape[-1]), p.dtype)
      return jnp.zeros((1,), p.dtype)

    def full(p):
      return jnp.zeros((1,), p.dtype) if p.ndim > 1 else jnp.zeros_like(p)

    return ScaleByTorchAdafactorState(
        count=jnp.zeros([], jnp.int32),
        row_var=jax.tree.map(row, params),
        col_var=jax.tree.map(col, params),
        variance=jax.tree.map(full, params),
    )

  def update_fn(updates, state, params=None):
    del params
    count = optax.safe_increment(state.count)

    def one(g, r, c, v):
      wide = jnp.promote_types(g.dtype, jnp.float32)
      weight = (count.astype(wide) ** jnp.asarray(beta2_decay, wide)).astype(g.dtype)
      eps = jnp.asarray(_eps1(eps1, g.dtype), g.dtype)
      if g.ndim > 1:
        row_mean = jnp.square(jnp.linalg.norm(g, axis=-1, keepdims=True)) / g.shape[-1]
        col_mean = jnp.square(jnp.linalg.norm(g, axis=-2, keepdims=True)) / g.shape[-2]
        r = _torch_lerp(r, row_mean, weight)
        c = _torch_lerp(c, col_mean, weight)
        estimate = (r * c) / jnp.maximum(jnp.mean(r, axis=-2, keepdims=True), eps)
      else:
        v = _torch_lerp(v, g * g, weight)
        estimate = v
      u = jax.lax.rsqrt(jnp.maximum(estimate, eps * eps)) * g
      return u, r, c, v

    out = jax.tree.map(one, updates, state.row_var, state.col_var, state.variance)
    u, r, c, v = (jax.tree.map(lambda _, o, i=i: o[i], updates, out) for i in range(4))
    return u, ScaleByTorchAdafactorState(count=count, row_var=r, col_var=c, variance=v)

  return optax.GradientTransformation(init_fn, update_fn)


def _add_decoupled_decay(lr, weight_decay) -> optax.GradientTransformation:
  r"""``u - \alpha_t \lambda \theta`` with :math:`\alpha_t` = ``lr`` (float or schedule).

  Custom because the rate of the decay (``lr``) is not the rate of the step (Adafactor's relative
  step): ``optax.add_decayed_weights`` before ``optax.scale_by_learning_rate`` would scale both
  by one rate.
  """

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    rate = lr(state.count) if callable(lr) else lr
    updates = jax.tree.map(
        lambda u, p: u - jnp.asarray(rate * weight_decay, p.dtype) * p, updates, params)
    return updates, optax.ScaleByScheduleState(count=optax.safe_increment(state.count))

  return optax.GradientTransformation(init_fn, update_fn)


def adafactor(
    lr: optax.ScalarOrSchedule = 1e-2,
    beta2_decay: float = -0.8,
    eps: tuple[float | None, float] = (None, 1e-3),
    d: float = 1.0,
    weight_decay: float = 0.0,
    *,
    foreach: bool | None = None,
    maximize: bool = False,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Adafactor``.

  .. math::
      \rho_t = \min(\alpha_t, 1/\sqrt t), \quad
      u_t = \frac{\pm g_t}{\sqrt{\max(\hat V_t, \epsilon_1^2)}}, \quad
      \theta_t = (1 - \alpha_t\lambda)\,\theta_{t-1}
        - \rho_t\,\max\!\big(\epsilon_2, \mathrm{RMS}(\theta_{t-1})\big)\,
          \frac{u_t}{\max(1, \mathrm{RMS}(u_t)/d)}

  per leaf, with :math:`\hat V_t` torch's factored second moment
  (:func:`scale_by_torch_factored_rms`: row and column factors over the last two dimensions of a
  leaf of two or more dimensions, the full second moment of a vector or scalar). The chain is
  ``scale_by_torch_factored_rms`` (custom), ``optax.clip_by_block_rms(d)``,
  ``optax.scale_by_param_block_rms(eps2)``, ``optax.scale_by_learning_rate`` of the relative
  step :math:`\rho_t`, then the decoupled decay with ``lr`` itself (custom, one line: its rate is
  not the step's). Both the parameter RMS and the decay read :math:`\theta_{t-1}`, as torch does.

  Differs from ``optax.adafactor``: torch's step is always relative (:math:`\rho_t` caps ``lr`` by
  :math:`1/\sqrt t`, where optax uses ``learning_rate`` as given and multiplies by the parameter
  scale only with ``multiply_by_parameter_scale``), no momentum, every leaf of two or more
  dimensions is factored (optax: only dimensions >= 128), :math:`\epsilon_1` is a floor on
  :math:`\hat V` and on the row mean (optax adds ``1e-30`` to :math:`g^2`), the decay is
  decoupled with ``lr``. The state is ``ScaleByTorchAdafactorState`` (torch's ``row_var``,
  ``col_var``, ``variance``, placeholders of shape ``(1,)`` where torch keeps none) plus two step
  counts.

  Args:
    lr: :math:`\alpha` (float or schedule), >= 0: the cap of the relative step and the decay's
      rate.
    beta2_decay: :math:`c` in :math:`\hat\beta_t = t^c`, <= 0.
    eps: :math:`(\epsilon_1, \epsilon_2)`, each >= 0; :math:`\epsilon_1` ``None`` is the machine
      epsilon of each leaf's dtype. A tuple: static under ``optax.inject_hyperparams``.
    d: clipping threshold :math:`d`, >= 1.
    weight_decay: decoupled coefficient :math:`\lambda`, >= 0.
    foreach: accepted for torch's signature; no effect.
    maximize: ascend instead of descend (static).

  References:
    ``torch.optim.Adafactor``,
    https://pytorch.org/docs/stable/generated/torch.optim.Adafactor.html;
    Shazeer and Stern, Adafactor: adaptive learning rates with sublinear memory cost, 2018.
  """
  del foreach
  check_non_negative("lr", lr)
  beta = concrete_scalar("beta2_decay", beta2_decay)
  if beta is not None and not beta <= 0:
    raise ValueError(f"beta2_decay must be <= 0, got {beta2_decay!r}")
  eps1, eps2 = eps
  if eps1 is not None:
    check_non_negative("eps[0]", eps1)
  check_non_negative("eps[1]", eps2)
  clip = concrete_scalar("d", d)
  if clip is not None and not clip >= 1:
    raise ValueError(f"d must be >= 1, got {d!r}")
  check_non_negative("weight_decay", weight_decay)

  def relative_step(count):
    rate = lr(count) if callable(lr) else lr
    return jnp.minimum(rate, jax.lax.rsqrt(jnp.asarray(count + 1, jnp.result_type(float))))

  return real_only(chain(
      _negate_if(maximize),
      scale_by_torch_factored_rms(beta2_decay, eps1),
      optax.clip_by_block_rms(d),
      optax.scale_by_param_block_rms(eps2),
      optax.scale_by_learning_rate(relative_step),
      _add_decoupled_decay(lr, weight_decay),
  ), "compat.torch.adafactor")
