"""``torch.optim.Muon``."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from phaseshift_jax.compat._common import (
    chain, check_non_negative, concrete_scalar, real_only)
from phaseshift_jax._checks import check_choice
from phaseshift_jax.compat.torch._adafactor import _torch_lerp

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch's defaults (Keller Jordan's quintic)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def _two_sum(x, y):
  """``(s, e)`` with ``s = fl(x + y)`` and ``s + e = x + y`` exactly (Knuth)."""
  s = x + y
  yy = s - x
  return s, (x - (s - yy)) + (y - yy)


def _round_to_bits(x, bits: int):
  """``x`` (a float array) rounded to ``bits`` significant bits (exact arithmetic in its dtype)."""
  mantissa, exponent = jnp.frexp(x)
  return jnp.ldexp(jnp.round(jnp.ldexp(mantissa, bits)), exponent - bits).astype(x.dtype)


def _fused(beta: float, c, ab):
  """``bfloat16(float32(beta * c + ab))`` with one rounding to float32 (torch's CPU ``addmm``).

  torch's bfloat16 ``addmm(c, a, b, beta=beta, alpha=alpha)`` on CPU sums ``a @ b`` in float32
  (``_addmm_product``), scales it by ``alpha`` in float32 and adds ``beta * c`` with a fused
  multiply-add, then rounds to bfloat16. In float64 (``jax.enable_x64``) ``beta * c`` (a float32
  times a bfloat16) and the sum are exact, so one rounding to float32 is the fused one. In
  float32 ``beta`` is split into a 16-bit head and an 8-bit tail, whose products with the 8-bit
  ``c`` are exact, and the three terms are added with an error-free ``_two_sum`` (correctly
  rounded but for rare double roundings).
  """
  beta32 = np.float32(beta)
  if jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64:
    out = jnp.asarray(beta32, jnp.float64) * c.astype(jnp.float64) + ab.astype(jnp.float64)
    return out.astype(jnp.float32).astype(jnp.bfloat16)
  head = np.float32(float(np.frexp(beta32)[0] * 2**16).__round__() * 2.0**(np.frexp(beta32)[1] - 16))
  tail = np.float32(beta32 - head)
  c = c.astype(jnp.float32)
  total, error = _two_sum(head * c, ab)
  return (total + (error + tail * c)).astype(jnp.bfloat16)


def _addmm_product(u, v):
  """``u @ v`` of bfloat16 matrices summed in float32 as torch's CPU ``addmm`` sums it: inner
  index ``k`` into lane ``k % 4``, each lane in order, then the lanes one after another (the
  products are exact in float32)."""
  k = u.shape[1]
  groups = -(-k // 4)
  u = jnp.pad(u.astype(jnp.float32), ((0, 0), (0, groups * 4 - k))).reshape(u.shape[0], groups, 4)
  v = jnp.pad(v.astype(jnp.float32), ((0, groups * 4 - k), (0, 0))).reshape(groups, 4, v.shape[1])

  def body(i, acc):
    return acc + u[:, i, :].T[:, :, None] * v[i][:, None, :]

  acc = jax.lax.fori_loop(0, groups, body, jnp.zeros((4, u.shape[0], v.shape[2]), jnp.float32))
  return ((acc[0] + acc[1]) + acc[2]) + acc[3]


_LANES = 8  # torch's CPU kernels sum float32 in 8 interleaved lanes, then halve the lanes


def _lane_tree(acc):
  """Sum the leading lane axis of ``acc`` by halving it (lanes 0-3 + 4-7, then 0-1 + 2-3, ...)."""
  while acc.shape[0] > 1:
    half = acc.shape[0] // 2
    acc = acc[:half] + acc[half:]
  return acc[0]


def _lanes(k: int) -> int:
  return -(-k // _LANES)


def _sum_of_squares(x):
  """The float32 sum of squares of ``x`` (row-major) in torch's order: 8 lanes, then halved."""
  v = x.astype(jnp.float32).reshape(-1)
  v = jnp.pad(v, (0, _lanes(v.size) * _LANES - v.size)).reshape(-1, _LANES)
  acc = jax.lax.fori_loop(0, v.shape[0], lambda i, acc: acc + jnp.square(v[i]),
                          jnp.zeros((_LANES,), jnp.float32))
  return _lane_tree(acc)


def _gram(x):
  """``x @ x.T`` summed in float32 in torch's order (8 lanes over the inner index, then halved)."""
  k = x.shape[1]
  v = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, _lanes(k) * _LANES - k)))
  v = v.reshape(x.shape[0], -1, _LANES)  # (rows, groups, lanes)

  def body(i, acc):
    chunk = v[:, i, :].T  # (lanes, rows)
    return acc + chunk[:, :, None] * chunk[:, None, :]

  acc = jnp.zeros((_LANES, x.shape[0], x.shape[0]), jnp.float32)
  return _lane_tree(jax.lax.fori_loop(0, v.shape[1], body, acc))


def newton_schulz(x, ns_coefficients=NS_COEFFICIENTS, ns_steps=5, eps=1e-7):
  r"""torch's Newton-Schulz orthogonalisation of a matrix, in bfloat16 as torch computes it.

  .. math::
      X_0 = \frac{G}{\max(\lVert G\rVert_F, \epsilon)}, \qquad
      A_k = X_k X_k^\top, \quad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

  on the transpose of a tall matrix (so :math:`X X^\top` is the smaller Gram matrix), every
  quantity rounded to bfloat16 where torch rounds it: the norm and the Gram matrix summed in
  float32 in the order of torch's CPU kernels (``_sum_of_squares``, ``_gram``), the two
  ``addmm`` products accumulated in float32 and added with one rounding (``_fused``). Returns a
  bfloat16 matrix of ``x``'s shape. ``ns_steps`` may be traced (a ``lax.fori_loop``).
  """
  a, b, c = (float(v) for v in ns_coefficients)
  tall = x.shape[0] > x.shape[1]
  f32, bf16 = jnp.float32, jnp.bfloat16
  x = x.astype(bf16)
  norm = jnp.sqrt(_sum_of_squares(x)).astype(bf16)  # over x's own (row-major) layout
  if tall:
    x = x.T
  norm = jnp.maximum(norm.astype(f32), jnp.asarray(eps, f32)).astype(bf16)
  x = (x.astype(f32) / norm.astype(f32)).astype(bf16)

  def body(_, x):
    gram = _gram(x).astype(bf16)
    poly = _fused(b, gram, np.float32(c) * _addmm_product(gram, gram))
    return _fused(a, x, _addmm_product(poly, x))

  x = jax.lax.fori_loop(0, ns_steps, body, x)
  return x.T if tall else x


def _lr_ratio(shape, adjust_lr_fn) -> float:
  rows, cols = shape[:2]
  if adjust_lr_fn == "match_rms_adamw":
    return 0.2 * math.sqrt(max(rows, cols))
  return math.sqrt(max(1, rows / cols))


def scale_by_torch_muon(
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
) -> optax.GradientTransformation:
  r"""Muon's direction as ``torch.optim.Muon`` computes it.

  .. math::
      B_t = \mathrm{lerp}(B_{t-1}, g_t, 1-\mu), \quad
      \tilde B_t = \mathrm{lerp}(g_t, B_t, \mu) \text{ if nesterov else } B_t, \quad
      u_t = \mathrm{NS}(\tilde B_t)

  (:func:`newton_schulz`, in bfloat16, returned in the leaf's dtype; ``lerp`` in torch's
  two-branch form). The state is
  ``optax.TraceState(trace=B)`` (torch's ``momentum_buffer``). ``init`` raises ``ValueError``
  naming the leaf for a leaf that is not a matrix (torch refuses those in its constructor).
  """
  def init_fn(params):
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
      if getattr(leaf, "ndim", 2) != 2:
        raise ValueError(
            f"compat.torch.muon only supports 2-D parameters (as torch.optim.Muon), but "
            f"params{jax.tree_util.keystr(path)} has shape {tuple(leaf.shape)}: optimise it with "
            "another optimizer (e.g. optax.partition with compat.torch.adamw)")
    return optax.TraceState(trace=optax.tree.zeros_like(params))

  def update_fn(updates, state, params=None):
    del params

    def one(g, buf):
      buf = _torch_lerp(buf, g, 1 - momentum).astype(g.dtype)
      direction = _torch_lerp(g, buf, momentum).astype(g.dtype) if nesterov else buf
      ortho = newton_schulz(direction, ns_coefficients, ns_steps, eps)
      return ortho.astype(g.dtype), buf

    out = jax.tree.map(one, updates, state.trace)
    new_updates = jax.tree.map(lambda _, o: o[0], updates, out)
    trace = jax.tree.map(lambda _, o: o[1], updates, out)
    return new_updates, optax.TraceState(trace=trace)

  return optax.GradientTransformation(init_fn, update_fn)


def muon(
    lr: optax.ScalarOrSchedule = 1e-3,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: tuple[float, float, float] = NS_COEFFICIENTS,
    eps: float = 1e-7,
    ns_steps: int = 5,
    adjust_lr_fn: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.Muon`` (2-D parameters only).

  .. math::
      B_t = \mu B_{t-1} + (1-\mu) g_t, \quad
      \tilde B_t = (1-\mu) g_t + \mu B_t \text{ if nesterov else } B_t,

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \alpha\,r\,\mathrm{NS}_{a,b,c}^{k}(\tilde B_t)

  with torch's Newton-Schulz iteration in bfloat16 (:func:`newton_schulz`: :math:`k` =
  ``ns_steps`` quintic steps with ``ns_coefficients`` :math:`(a, b, c)`, started from
  :math:`\tilde B / \max(\lVert\tilde B\rVert_F, \epsilon)`, rounded where torch rounds) and the
  shape ratio :math:`r` of ``adjust_lr_fn``. The chain is :func:`scale_by_torch_muon` (custom:
  optax has neither torch's bfloat16 iteration nor its EMA momentum) and ``_torch_step``
  (custom: the rule of ``optax.add_decayed_weights`` then ``optax.scale_by_learning_rate``, but
  rounded as torch's in-place decay and fused step are, so that float32 runs do not drift from
  torch's through the next bfloat16 rounding; measured: bit-equal parameters to torch's over 100
  steps in float32 and float64 on torch's test inputs). Every leaf must be a matrix: ``init`` raises
  ``ValueError`` naming any other leaf, as torch's constructor does (put the others under another
  optimizer with ``optax.partition``); complex leaves raise ``TypeError``.

  Differs from ``optax.contrib.muon``: that one is a whole optimizer (Muon on matrices, Adam on
  the rest, chosen by ``muon_weight_dimension_numbers``), runs the iteration in the parameters'
  precision with its own coefficients and normalisation, uses heavy-ball momentum
  :math:`B = \mu B + g` and scales by :math:`\sqrt{\max(1, A/B)}` only; here momentum is torch's
  EMA, the iteration is torch's bfloat16 one, the decay is decoupled (default 0.1) and every
  non-matrix leaf is refused.

  Without ``jax.enable_x64`` the fused additions are emulated in float32 (``_fused``), correctly
  rounded but for rare double roundings. The summation orders are those of torch's CPU kernels
  for small matrices (measured against them); for large matrices torch may call other kernels.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    weight_decay: decoupled coefficient :math:`\lambda`, >= 0.
    momentum: :math:`\mu`, >= 0.
    nesterov: Nesterov form (static).
    ns_coefficients: :math:`(a, b, c)`, a tuple of three floats (static).
    eps: :math:`\epsilon` of the starting normalisation, >= 0.
    ns_steps: :math:`k`, an int in [0, 100) (may be injected: the loop is a ``lax.fori_loop``).
    adjust_lr_fn: ``None`` or ``"original"`` (Keller Jordan's ratio) or ``"match_rms_adamw"``
      (Moonshot's), static.

  References:
    ``torch.optim.Muon``, https://pytorch.org/docs/stable/generated/torch.optim.Muon.html;
    K. Jordan, Muon: an optimizer for hidden layers in neural networks, 2024,
    https://kellerjordan.github.io/posts/muon/; J. Liu et al., Muon is scalable for LLM training,
    2025, https://arxiv.org/abs/2502.16982
  """
  check_non_negative("lr", lr)
  check_non_negative("weight_decay", weight_decay)
  check_non_negative("momentum", momentum)
  check_non_negative("eps", eps)
  check_choice("adjust_lr_fn", adjust_lr_fn, ADJUST_LR_FNS)
  if len(ns_coefficients) != 3:
    raise ValueError(f"ns_coefficients must be 3 floats, got {ns_coefficients!r}")
  steps = concrete_scalar("ns_steps", ns_steps)
  if steps is not None and not (steps.dtype.kind in "iu" and 0 <= steps < 100):
    raise ValueError(f"ns_steps must be an integer in [0, 100), got {ns_steps!r}")
  return real_only(chain(
      scale_by_torch_muon(momentum, nesterov, ns_coefficients, eps, ns_steps),
      _torch_step(lr, weight_decay, adjust_lr_fn),
  ), "compat.torch.muon")


def _torch_step(lr, weight_decay, adjust_lr_fn) -> optax.GradientTransformation:
  r"""torch's in-place step as an update: ``new - theta`` with
  :math:`	ext{new} = 	heta(1 - lpha\lambda) - lpha r\,u` rounded as torch rounds it.

  Custom (optax's ``add_decayed_weights`` then ``scale_by_learning_rate`` give the same rule):
  torch's update feeds a bfloat16 rounding at the next step, so a float32 parameter one ulp off
  torch's changes a later bfloat16 element now and then and the runs drift apart. ``new`` is
  computed in torch's two roundings (the decay, then the step); ``new - theta`` is exact
  wherever ``new`` is within a factor 2 of ``theta`` (Sterbenz), so ``optax.apply_updates``
  gives back torch's parameter there.
  """

  def init_fn(params):
    del params
    return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))

  def update_fn(updates, state, params=None):
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    rate = lr(state.count) if callable(lr) else lr

    def one(u, p):
      shrink = jnp.asarray(1 - rate * weight_decay, p.dtype)
      step = jnp.asarray(-(rate * _lr_ratio(p.shape, adjust_lr_fn)), p.dtype)
      decayed = p * shrink
      # torch's add_(u, alpha=step) is one fused multiply-add; u is a bfloat16 value, so with
      # step split into a 16-bit head and its tail both products are exact.
      head = _round_to_bits(step, 16)
      total, error = _two_sum(head * u, decayed)
      return (total + (error + (step - head) * u)) - p

    return (jax.tree.map(one, updates, params),
            optax.ScaleByScheduleState(count=optax.safe_increment(state.count)))

  return optax.GradientTransformation(init_fn, update_fn)
