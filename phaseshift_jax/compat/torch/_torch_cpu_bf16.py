"""torch's CPU bfloat16 matrix kernels, rounding for rounding, for ``newton_schulz(kernels="torch_cpu")``.

What it buys: ``compat.torch.muon(ns_kernels="torch_cpu")`` equals torch's Muon bit for bit on
CPU for small matrices (torch runs its Newton-Schulz iteration in bfloat16, so float32 sums in
another order round to another bfloat16 now and then, and the runs part along the way). The
summation orders were measured on torch 2.13's CPU kernels (8 interleaved float32 lanes for norms
and Gram sums, 4 lanes for ``addmm``, one rounding per fused add); they hold up to about 32 x 64,
and torch calls other kernels for larger matrices or on other hardware. The loops are sequential
over the inner dimension: ``benchmarks/muon.py`` measures what that costs against XLA's matmuls
(the default ``ns_kernels="xla"``) and torch.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def two_sum(x, y):
  """``(s, e)`` with ``s = fl(x + y)`` and ``s + e = x + y`` exactly (Knuth)."""
  s = x + y
  yy = s - x
  return s, (x - (s - yy)) + (y - yy)


def round_to_bits(x, bits: int):
  """``x`` (a float array) rounded to ``bits`` significant bits (exact arithmetic in its dtype)."""
  mantissa, exponent = jnp.frexp(x)
  return jnp.ldexp(jnp.round(jnp.ldexp(mantissa, bits)), exponent - bits).astype(x.dtype)


def fused(beta: float, c, ab):
  """``bfloat16(float32(beta * c + ab))`` with one rounding to float32 (torch's CPU ``addmm``).

  torch's bfloat16 ``addmm(c, a, b, beta=beta, alpha=alpha)`` on CPU sums ``a @ b`` in float32
  (``addmm_product``), scales it by ``alpha`` in float32 and adds ``beta * c`` with a fused
  multiply-add, then rounds to bfloat16. In float64 (``jax.enable_x64``) ``beta * c`` (a float32
  times a bfloat16) and the sum are exact, so one rounding to float32 is the fused one. In
  float32 ``beta`` is split into a 16-bit head and an 8-bit tail, whose products with the 8-bit
  ``c`` are exact, and the three terms are added with an error-free ``two_sum`` (correctly
  rounded but for rare double roundings).
  """
  beta32 = np.float32(beta)
  if jax.dtypes.canonicalize_dtype(jnp.float64) == jnp.float64:
    out = jnp.asarray(beta32, jnp.float64) * c.astype(jnp.float64) + ab.astype(jnp.float64)
    return out.astype(jnp.float32).astype(jnp.bfloat16)
  head = np.float32(float(np.frexp(beta32)[0] * 2**16).__round__() * 2.0**(np.frexp(beta32)[1] - 16))
  tail = np.float32(beta32 - head)
  c = c.astype(jnp.float32)
  total, error = two_sum(head * c, ab)
  return (total + (error + tail * c)).astype(jnp.bfloat16)


def addmm_product(u, v):
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


LANES = 8  # torch's CPU kernels sum float32 in 8 interleaved lanes, then halve the lanes


def lane_tree(acc):
  """Sum the leading lane axis of ``acc`` by halving it (lanes 0-3 + 4-7, then 0-1 + 2-3, ...)."""
  while acc.shape[0] > 1:
    half = acc.shape[0] // 2
    acc = acc[:half] + acc[half:]
  return acc[0]


def lanes(k: int) -> int:
  return -(-k // LANES)


def sum_of_squares(x):
  """The float32 sum of squares of ``x`` (row-major) in torch's order: 8 lanes, then halved."""
  v = x.astype(jnp.float32).reshape(-1)
  v = jnp.pad(v, (0, lanes(v.size) * LANES - v.size)).reshape(-1, LANES)
  acc = jax.lax.fori_loop(0, v.shape[0], lambda i, acc: acc + jnp.square(v[i]),
                          jnp.zeros((LANES,), jnp.float32))
  return lane_tree(acc)


def gram(x):
  """``x @ x.T`` summed in float32 in torch's order (8 lanes over the inner index, then halved)."""
  k = x.shape[1]
  v = jnp.pad(x.astype(jnp.float32), ((0, 0), (0, lanes(k) * LANES - k)))
  v = v.reshape(x.shape[0], -1, LANES)  # (rows, groups, lanes)

  def body(i, acc):
    chunk = v[:, i, :].T  # (lanes, rows)
    return acc + chunk[:, :, None] * chunk[:, None, :]

  acc = jnp.zeros((LANES, x.shape[0], x.shape[0]), jnp.float32)
  return lane_tree(jax.lax.fori_loop(0, v.shape[1], body, acc))
