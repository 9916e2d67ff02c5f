"""torch's strong-Wolfe line search (``torch.optim.lbfgs._strong_wolfe``) on params trees.

torch's port of minFunc's ``lswolfe``: a bracketing phase, then a zoom by cubic interpolation,
with torch's tests, safeguards and evaluation counts, as two ``lax.while_loop``s. The tree
helpers are the vector operations of torch's flat LBFGS on params-shaped trees (dot products
per leaf, summed).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax


def dot(a, b, dtype):
  return sum((jnp.vdot(x, y).astype(dtype) for x, y in zip(jax.tree.leaves(a),
                                                            jax.tree.leaves(b))),
             jnp.zeros([], dtype))


def max_abs(a, dtype):
  return jnp.max(jnp.stack([jnp.max(jnp.abs(x)).astype(dtype) for x in jax.tree.leaves(a)]
                           or [jnp.zeros([], dtype)]))


def sum_abs(a, dtype):
  return sum((jnp.sum(jnp.abs(x)).astype(dtype) for x in jax.tree.leaves(a)), jnp.zeros([], dtype))


def axpy(alpha, x, y):
  """``y + alpha * x`` leaf by leaf (torch's ``y.add_(x, alpha=alpha)``)."""
  return jax.tree.map(lambda u, v: v + alpha.astype(v.dtype) * u, x, y)


def select(pred, a, b):
  return jax.tree.map(lambda u, v: jnp.where(pred, u, v), a, b)


def _cubic_interpolate(x1, f1, g1, x2, f2, g2, bounds=None):
  """torch's ``_cubic_interpolate``: the minimiser of the cubic through two points, clamped."""
  if bounds is None:
    lo, hi = jnp.where(x1 <= x2, x1, x2), jnp.where(x1 <= x2, x2, x1)
  else:
    lo, hi = bounds
  d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
  d2_square = d1**2 - g1 * g2
  d2 = jnp.sqrt(jnp.maximum(d2_square, 0))
  min_pos = jnp.where(
      x1 <= x2,
      x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2)),
      x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2)))
  # Python's min(max(m, lo), hi): max returns m unless lo > m, min returns it unless hi < it.
  clamped = jnp.where(lo > min_pos, lo, min_pos)
  clamped = jnp.where(hi < clamped, hi, clamped)
  return jnp.where(d2_square >= 0, clamped, (lo + hi) / 2.0)


class _Bracket(NamedTuple):
  t: jax.Array  # (2,)
  f: jax.Array  # (2,)
  g: Any  # a pair of params-shaped trees (leading axis 2)
  gtd: jax.Array  # (2,)


def strong_wolfe(obj, x, t, d, f, g, gtd, max_ls, tolerance_change, dtype,
                  c1=1e-4, c2=0.9):
  """torch's ``strong_wolfe`` (bracketing, then zoom), as two ``lax.while_loop``s.

  ``obj(t)`` is ``(loss, grad)`` at ``x + t d``. Returns ``(f_new, g_new, t, evals)``.
  """
  d_norm = max_abs(d, dtype)
  f_new, g_new = obj(t)
  gtd_new = dot(g_new, d, dtype)
  zero = jnp.zeros([], dtype)

  def broke(c):
    t_, t_prev, f_prev, g_prev, gtd_prev, f_new, g_new, gtd_new, ls_iter, evals = c
    armijo = (f_new > (f + c1 * t_ * gtd)) | ((ls_iter > 1) & (f_new >= f_prev))
    wolfe = jnp.abs(gtd_new) <= -c2 * gtd
    return armijo, wolfe, gtd_new >= 0

  def cond1(c):
    armijo, wolfe, curvature = broke(c)
    return (c[8] < max_ls) & ~(armijo | wolfe | curvature)

  def body1(c):
    t_, t_prev, f_prev, g_prev, gtd_prev, f_new, g_new, gtd_new, ls_iter, evals = c
    min_step = t_ + 0.01 * (t_ - t_prev)
    max_step = t_ * 10
    t_next = _cubic_interpolate(t_prev, f_prev, gtd_prev, t_, f_new, gtd_new,
                                bounds=(min_step, max_step))
    f_next, g_next = obj(t_next)
    return (t_next, t_, f_new, g_new, gtd_new, f_next, g_next, dot(g_next, d, dtype),
            ls_iter + 1, evals + 1)

  c = lax.while_loop(cond1, body1, (t, zero, f, g, gtd, f_new, g_new, gtd_new,
                                    jnp.zeros([], jnp.int32), jnp.ones([], jnp.int32)))
  t, t_prev, f_prev, g_prev, gtd_prev, f_new, g_new, gtd_new, ls_iter, evals = c
  armijo, wolfe, _ = broke(c)
  at_max = ls_iter == max_ls
  single = ~at_max & ~armijo & wolfe  # torch's one-point bracket: the Wolfe point itself
  stack = lambda a, b: jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)  # noqa: E731
  bracket = _Bracket(
      t=jnp.where(at_max, jnp.stack([zero, t]),
                  jnp.where(single, jnp.stack([t, t]), jnp.stack([t_prev, t]))),
      f=jnp.where(at_max, jnp.stack([f, f_new]),
                  jnp.where(single, jnp.stack([f_new, f_new]), jnp.stack([f_prev, f_new]))),
      g=select(at_max, stack(g, g_new), select(single, stack(g_new, g_new),
                                                 stack(g_prev, g_new))),
      gtd=jnp.where(single, jnp.stack([gtd_new, gtd_new]), jnp.stack([gtd_prev, gtd_new])),
  )
  done = single

  def low_high(f2):
    low = jnp.where(f2[0] <= f2[1], 0, 1)
    return low, 1 - low

  def cond2(z):
    bracket, done, insuf, ls_iter, evals, low = z
    small = jnp.abs(bracket.t[1] - bracket.t[0]) * d_norm < tolerance_change
    return ~done & (ls_iter < max_ls) & ~small

  def body2(z):
    bracket, done, insuf, ls_iter, evals, low = z
    high = 1 - low
    b = bracket.t
    t_ = _cubic_interpolate(b[0], bracket.f[0], bracket.gtd[0], b[1], bracket.f[1],
                            bracket.gtd[1])
    b_max, b_min = jnp.max(b), jnp.min(b)
    eps = 0.1 * (b_max - b_min)
    near = jnp.minimum(b_max - t_, t_ - b_min) < eps
    move = near & (insuf | (t_ >= b_max) | (t_ <= b_min))
    moved = jnp.where(jnp.abs(t_ - b_max) < jnp.abs(t_ - b_min), b_max - eps, b_min + eps)
    t_ = jnp.where(move, moved, t_)
    insuf = near & ~move
    f_new, g_new = obj(t_)
    gtd_new = dot(g_new, d, dtype)
    ls_iter, evals = ls_iter + 1, evals + 1

    def put(bracket, i, t_, f_, g_, gtd_):
      return _Bracket(bracket.t.at[i].set(t_), bracket.f.at[i].set(f_),
                      jax.tree.map(lambda s, v: s.at[i].set(v), bracket.g, g_),
                      bracket.gtd.at[i].set(gtd_))

    def take(bracket, i):
      return (bracket.t[i], bracket.f[i], jax.tree.map(lambda s: s[i], bracket.g),
              bracket.gtd[i])

    worse = (f_new > (f + c1 * t_ * gtd)) | (f_new >= bracket.f[low])
    # Armijo fails or no lower than the low point: the new point becomes the high end.
    as_high = put(bracket, high, t_, f_new, g_new, gtd_new)
    # Otherwise: Wolfe (done), or the old high becomes the old low; the new point is the low.
    wolfe = jnp.abs(gtd_new) <= -c2 * gtd
    flip = ~wolfe & (gtd_new * (b[high] - b[low]) >= 0)
    flipped = _Bracket(*jax.tree.map(
        lambda a, b_: jnp.where(flip, a, b_), put(bracket, high, *take(bracket, low)), bracket))
    as_low = put(flipped, low, t_, f_new, g_new, gtd_new)
    bracket = _Bracket(*jax.tree.map(lambda a, b_: jnp.where(worse, a, b_), as_high, as_low))
    new_low, _ = low_high(bracket.f)
    low = jnp.where(worse, new_low, low)
    done = done | (~worse & wolfe)
    return bracket, done, insuf, ls_iter, evals, low

  low, _ = low_high(bracket.f)
  z = (bracket, done, jnp.zeros([], bool), ls_iter, evals, low)
  bracket, done, _, ls_iter, evals, low = lax.while_loop(cond2, body2, z)
  return (bracket.f[low], jax.tree.map(lambda s: s[low], bracket.g), bracket.t[low], evals)
