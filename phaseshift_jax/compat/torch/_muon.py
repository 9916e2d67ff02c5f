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
from phaseshift_jax.compat.torch import _torch_cpu_bf16 as torch_cpu_bf16
from phaseshift_jax.compat.torch._adafactor import _torch_lerp

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)  # torch's defaults (Keller Jordan's quintic)
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")
NS_KERNELS = ("torch_cpu", "xla")


def _gathered(x):
  """``x`` with its explicit mesh axes gathered, and the function that shards a result like it.

  Under explicit mesh axes a product such as :math:`X X^\top` of a row-sharded :math:`X` has no
  sharding JAX can name (both of its axes on one mesh axis), so the iteration runs on the
  gathered matrix and its result is sharded back as the parameter. Arrays without explicit
  axes (one device, or ``AxisType.Auto``, where XLA partitions the products) pass untouched.
  """
  sharding = jax.typeof(x).sharding
  if all(axis is None for axis in getattr(sharding, "spec", ())):
    return x, lambda y: y
  return (jax.sharding.reshard(x, jax.sharding.PartitionSpec()),
          lambda y: jax.sharding.reshard(y, sharding))


def newton_schulz(x, ns_coefficients=NS_COEFFICIENTS, ns_steps=5, eps=1e-7, kernels="xla"):
  r"""torch's Newton-Schulz orthogonalisation of a matrix, in bfloat16 as torch computes it.

  .. math::
      X_0 = \frac{G}{\max(\lVert G\rVert_F, \epsilon)}, \qquad
      A_k = X_k X_k^\top, \quad X_{k+1} = a X_k + (b A_k + c A_k^2) X_k

  on the transpose of a tall matrix (so :math:`X X^\top` is the smaller Gram matrix), every
  quantity rounded to bfloat16 where torch rounds it (the norm, :math:`X_0`, :math:`A_k`,
  :math:`b A_k + c A_k^2` and :math:`X_{k+1}`), each matrix product accumulated in float32.
  ``kernels`` says how those float32 sums are taken: ``"torch_cpu"`` in the order of torch's
  CPU kernels, with torch's fused additions (the helpers of ``_torch_cpu_bf16``: bit for bit
  torch's CPU result, at the cost of sequential loops over the inner dimension); ``"xla"`` by
  XLA's own bfloat16 matmuls with float32 accumulation (``preferred_element_type``), the fast
  form on any backend, equal to torch's to bfloat16 rounding but not bit for bit. Returns a
  bfloat16 matrix of ``x``'s shape and sharding (on explicit mesh axes the iteration runs on the
  gathered matrix, :func:`_gathered`). ``ns_steps`` may be traced (a ``lax.fori_loop``).
  """
  check_choice("kernels", kernels, NS_KERNELS)
  a, b, c = (float(v) for v in ns_coefficients)
  tall = x.shape[0] > x.shape[1]
  f32, bf16 = jnp.float32, jnp.bfloat16
  x, shard_like_x = _gathered(x.astype(bf16))
  if kernels == "torch_cpu":
    sum_of_squares, gram = torch_cpu_bf16.sum_of_squares, torch_cpu_bf16.gram
    product, fused = torch_cpu_bf16.addmm_product, torch_cpu_bf16.fused
  else:
    sum_of_squares = lambda v: jnp.sum(jnp.square(v.astype(f32)))  # noqa: E731
    product = lambda u, v: jnp.matmul(u, v, preferred_element_type=f32)  # noqa: E731
    gram = lambda v: product(v, v.T)  # noqa: E731
    fused = lambda beta, u, uv: (np.float32(beta) * u.astype(f32) + uv).astype(bf16)  # noqa: E731
  norm = jnp.sqrt(sum_of_squares(x)).astype(bf16)  # over x's own (row-major) layout
  if tall:
    x = x.T
  norm = jnp.maximum(norm.astype(f32), jnp.asarray(eps, f32)).astype(bf16)
  x = (x.astype(f32) / norm.astype(f32)).astype(bf16)

  def body(_, x):
    gram_x = gram(x).astype(bf16)
    poly = fused(b, gram_x, np.float32(c) * product(gram_x, gram_x))
    return fused(a, x, product(poly, x))

  x = jax.lax.fori_loop(0, ns_steps, body, x)
  return shard_like_x(x.T if tall else x)


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
    ns_kernels: str = "xla",
) -> optax.GradientTransformation:
  r"""Muon's direction as ``torch.optim.Muon`` computes it.

  .. math::
      B_t = \mathrm{lerp}(B_{t-1}, g_t, 1-\mu), \quad
      \tilde B_t = \mathrm{lerp}(g_t, B_t, \mu) \text{ if nesterov else } B_t, \quad
      u_t = \mathrm{NS}(\tilde B_t)

  (:func:`newton_schulz` with ``kernels=ns_kernels``, in bfloat16, returned in the leaf's dtype;
  ``lerp`` in torch's two-branch form). The state is
  ``optax.TraceState(trace=B)`` (torch's ``momentum_buffer``). ``init`` raises ``ValueError``
  naming the leaf for a leaf that is not a matrix (torch refuses those in its constructor).
  """
  check_choice("ns_kernels", ns_kernels, NS_KERNELS)

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
      ortho = newton_schulz(direction, ns_coefficients, ns_steps, eps, ns_kernels)
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
    *,
    ns_kernels: str = "xla",
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
  torch's through the next bfloat16 rounding; with ``ns_kernels="torch_cpu"``: bit-equal
  parameters to torch's over 100 steps in float32 and float64 on torch's test inputs). Every leaf must be a matrix: ``init`` raises
  ``ValueError`` naming any other leaf, as torch's constructor does (put the others under another
  optimizer with ``optax.partition``); complex leaves raise ``TypeError``.

  Differs from ``optax.contrib.muon``: that one is a whole optimizer (Muon on matrices, Adam on
  the rest, chosen by ``muon_weight_dimension_numbers``), runs the iteration in the parameters'
  precision with its own coefficients and normalisation, uses heavy-ball momentum
  :math:`B = \mu B + g` and scales by :math:`\sqrt{\max(1, A/B)}` only; here momentum is torch's
  EMA, the iteration is torch's bfloat16 one, the decay is decoupled (default 0.1) and every
  non-matrix leaf is refused.

  ``ns_kernels`` (not a torch keyword) picks how the bfloat16 products are summed. ``"xla"``
  (the default): XLA's bfloat16 matmuls with float32 accumulation, the fast form on every
  backend. Each iteration rounds where torch's does, but float32 sums in another order round to
  another bfloat16 now and then, and over a run those differences grow as any bfloat16 rounding
  difference does (as between torch on CPU and on GPU): measured on torch's own test inputs,
  100 steps part by about 3e-4 in the parameters. ``"torch_cpu"``: torch's CPU kernels emulated
  rounding for rounding (the helpers of ``_torch_cpu_bf16``; without ``jax.enable_x64`` the fused
  additions in float32, correctly rounded but for rare double roundings), which gives torch's
  CPU parameters bit for bit on matrices up to about 32 x 64 (measured; torch calls other
  kernels for larger ones, where neither form is bit-exact), at the cost of sequential loops over
  the inner dimension: use it to check a small model against torch, not to train. On a mesh
  with explicit axes the iteration of a sharded matrix runs on the gathered matrix (every device
  computes it whole) and its result takes the parameter's sharding; with auto axes XLA
  partitions the products.

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
    ns_kernels: ``"xla"`` or ``"torch_cpu"`` (see above), static.

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
  check_choice("ns_kernels", ns_kernels, NS_KERNELS)
  return real_only(chain(
      scale_by_torch_muon(momentum, nesterov, ns_coefficients, eps, ns_steps, ns_kernels),
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
      head = torch_cpu_bf16.round_to_bits(step, 16)
      total, error = torch_cpu_bf16.two_sum(head * u, decayed)
      return (total + (error + (step - head) * u)) - p

    return (jax.tree.map(one, updates, params),
            optax.ScaleByScheduleState(count=optax.safe_increment(state.count)))

  return optax.GradientTransformation(init_fn, update_fn)
