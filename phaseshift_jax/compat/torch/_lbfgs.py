"""``torch.optim.LBFGS``: one ``update`` is one torch ``step(closure)``."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax import lax

from phaseshift_jax._checks import check_choice
from phaseshift_jax.compat._common import check_non_negative, check_positive_int, concrete_scalar
from phaseshift_jax.compat.torch._complex import _from_pair, _is_complex, _pairs, as_real_pairs
from phaseshift_jax.compat.torch._strong_wolfe import (
    axpy, dot, max_abs, select, strong_wolfe, sum_abs)

LINE_SEARCH_FNS = (None, "strong_wolfe")
# torch's ``_strong_wolfe`` default, which ``LBFGS.step`` keeps (the group's ``tolerance_change``
# is not passed on).
LINE_SEARCH_TOLERANCE = 1e-9


class LbfgsState(NamedTuple):
  """torch's LBFGS state (``optimizer.state[params[0]]``), with the history as ring buffers.

  ``count``: updates (``step`` calls) so far; ``func_evals``, ``n_iter``: torch's counters;
  ``d``, ``t``: the last direction and step length; ``old_dirs`` / ``old_stps``: the
  :math:`y` and :math:`s` pairs, params-shaped trees with a leading axis of ``history_size``
  (a ring: slot ``k % history_size`` holds the ``k``-th pair stored); ``ro``: :math:`1/(y^\\top
  s)` per slot; ``stored``: pairs stored so far (the ring holds the last ``min(stored,
  history_size)``); ``h_diag``: the initial inverse-Hessian scale; ``prev_flat_grad`` /
  ``prev_loss``: the gradient and loss at the start of the last inner iteration.

  For a complex parameter of shape ``S`` (:func:`as_real_pairs`): its leaves of ``d`` and
  ``prev_flat_grad`` are complex of shape ``S`` (real and imaginary parts those of the two
  parts), its leaves of ``old_dirs`` / ``old_stps`` real of shape ``(history_size, *S, 2)``
  (the pair view, real part at ``[..., 0]``); the scalars are real.
  """

  count: jax.Array
  func_evals: jax.Array
  n_iter: jax.Array
  d: optax.Updates
  t: jax.Array
  old_dirs: optax.Updates
  old_stps: optax.Updates
  ro: jax.Array
  stored: jax.Array
  h_diag: jax.Array
  prev_flat_grad: optax.Updates
  prev_loss: jax.Array


def lbfgs(
    lr: optax.ScalarOrSchedule = 1,
    max_iter: int = 20,
    max_eval: int | None = None,
    tolerance_grad: float = 1e-7,
    tolerance_change: float = 1e-9,
    history_size: int = 100,
    line_search_fn: str | None = None,
) -> optax.GradientTransformationExtraArgs:
  r"""``torch.optim.LBFGS``: ``update`` runs one whole torch ``step(closure)``.

  Call it as ``update(grads, state, params, *, value, value_and_grad_fn)`` with ``value`` and
  ``grads`` the loss and gradient at ``params`` (torch's first closure call of the step) and
  ``value_and_grad_fn(params) -> (loss, grads)`` for the evaluations inside the step (torch's
  later closure calls); or use :func:`lbfgs_step`, which makes the first call too::

      tx = compat.torch.lbfgs(line_search_fn="strong_wolfe")
      state = tx.init(params)
      fn = jax.value_and_grad(loss_fn)          # loss_fn(params) -> scalar
      step = jax.jit(lambda state, params: compat.torch.lbfgs_step(tx, state, params, fn))
      for _ in range(steps):                      # torch: for _ in ...: opt.step(closure)
        loss, params, state = step(state, params)

  The step is torch's, in order: stop at once if :math:`\max|g| \le` ``tolerance_grad``; then up
  to ``max_iter`` inner iterations, each: the direction (:math:`-g` at torch's first iteration,
  else the two-loop recursion over the stored :math:`(y, s)` pairs, a pair stored when
  :math:`y^\top s > 10^{-10}`, the initial scale :math:`y^\top s / y^\top y`), the step length
  (``lr``, at the very first iteration :math:`\min(1, 1/\lVert g\rVert_1)\,\mathrm{lr}`), a stop
  if :math:`g^\top d > -` ``tolerance_change``, then either a fixed step and a new evaluation
  (none after the last iteration) or torch's strong-Wolfe line search (cubic interpolation,
  :math:`c_1 = 10^{-4}`, :math:`c_2 = 0.9`, at most ``max_eval`` minus the evaluations so far),
  and torch's stops: ``max_iter``, ``max_eval`` evaluations, :math:`\max|g| \le`
  ``tolerance_grad``, :math:`\max|t d| \le` ``tolerance_change``, :math:`|f - f_{prev}| <`
  ``tolerance_change``. The line search stops its zoom when its bracket times
  :math:`\max|d|` is below :math:`10^{-9}`, whatever ``tolerance_change`` is: torch's
  ``step`` does not pass the group's value to ``_strong_wolfe``. All of it is ``lax.while_loop``s and ``jnp.where``s: it jits, and
  ``lr``, ``tolerance_grad``, ``tolerance_change``, ``max_iter`` and ``max_eval`` may be traced
  (``optax.inject_hyperparams``); ``history_size`` (a buffer length) and ``line_search_fn`` are
  static. The updates are ``new_params - params`` (one rounding off torch's parameters, which
  torch changes in place).

  The history is a ring of ``history_size`` params-shaped trees for each of :math:`y` and
  :math:`s`, as torch keeps up to ``history_size`` of them; dot products are per leaf, summed
  (torch's are over the concatenated vector: equal to rounding). ``update`` needs ``value``
  and ``value_and_grad_fn`` where torch calls the closure again (``max_iter > 1`` or a line
  search, also when ``max_iter`` is traced); with ``max_iter=1`` and no line search it is a
  plain ``update(grads, state, params)`` (one L-BFGS iteration per update, torch's loss is not
  read), which optax's wrappers can drive.

  Complex parameters are stepped as torch steps them, as the pairs of their real and imaginary
  parts (``torch.view_as_real``, through :func:`as_real_pairs`): the dot products,
  :math:`\max|g|` and :math:`\lVert g\rVert_1` are over the parts as separate reals, and
  ``value_and_grad_fn`` takes the complex params. Its gradients (and ``grads``) must be torch's:
  for a real loss :math:`L` of :math:`z = a + ib`, :math:`\partial L/\partial a + i\,\partial
  L/\partial b`, the conjugate of ``jax.grad``'s::

      def fn(params):                             # torch's z.grad: conj of jax.grad's
        loss, grads = jax.value_and_grad(loss_fn)(params)
        return loss, jax.tree.map(jnp.conj, grads)

  In the state the complex leaves of ``d`` and ``prev_flat_grad`` are complex, those of the
  history rings real with a trailing pair axis (see :class:`LbfgsState`). A tree with no complex
  leaf is stepped exactly as without this.

  Differs from ``optax.lbfgs``: optax's ``update`` is one iteration (one direction, one
  line search by ``optax.scale_by_zoom_linesearch``), with the scale of the initial Hessian from
  the newest pair, no ``y^T s`` threshold for storing a pair, and no tolerances; its zoom line
  search (Nocedal and Wright's, with safeguards and an approximate-Wolfe fallback) is not
  torch's port of minFunc's ``lswolfe``, and it starts at step 1 where torch's first step is
  :math:`\min(1, 1/\lVert g\rVert_1)\,\mathrm{lr}`. Here one ``update`` is torch's whole step.

  Args:
    lr: learning rate (float or schedule of the update count), >= 0.
    max_iter: inner iterations per step, >= 1.
    max_eval: evaluations per step; ``None`` is ``max_iter * 5 // 4`` (torch's).
    tolerance_grad: first-order optimality tolerance, >= 0.
    tolerance_change: tolerance on changes of the loss and the parameters, >= 0.
    history_size: stored pairs, >= 1 (static).
    line_search_fn: ``None`` (fixed steps) or ``"strong_wolfe"`` (static).

  References:
    ``torch.optim.LBFGS``, https://pytorch.org/docs/stable/generated/torch.optim.LBFGS.html;
    Nocedal and Wright, Numerical Optimization, 2006, algorithms 7.4 and 3.5-3.6; M. Schmidt,
    minFunc, https://www.cs.ubc.ca/~schmidtm/Software/minFunc.html
  """
  check_non_negative("lr", lr)
  check_non_negative("tolerance_grad", tolerance_grad)
  check_non_negative("tolerance_change", tolerance_change)
  check_choice("line_search_fn", line_search_fn, LINE_SEARCH_FNS)
  for name, value in (("max_iter", max_iter), ("max_eval", max_eval)):
    if value is not None:
      array = concrete_scalar(name, value)
      if array is not None and not (array.dtype.kind in "iu" and array >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  if isinstance(history_size, jax.core.Tracer):
    raise ValueError("history_size must be a concrete integer (the length of the history "
                     "buffers): under optax.inject_hyperparams name it in static_args")
  check_positive_int("history_size", history_size)
  history = int(history_size)
  if max_eval is None:
    max_eval = max_iter * 5 // 4
  needs_fn = line_search_fn is not None or concrete_scalar("max_iter", max_iter) is None or (
      int(max_iter) > 1)

  def init_fn(params):
    dtype = _scalar_dtype(params)
    zeros = optax.tree.zeros_like(params)
    ring = jax.tree.map(lambda p: jnp.zeros((history, *p.shape), p.dtype), params)
    return LbfgsState(
        count=jnp.zeros([], jnp.int32), func_evals=jnp.zeros([], jnp.int32),
        n_iter=jnp.zeros([], jnp.int32), d=zeros, t=jnp.zeros([], dtype), old_dirs=ring,
        old_stps=ring, ro=jnp.zeros((history,), dtype), stored=jnp.zeros([], jnp.int32),
        h_diag=jnp.ones([], dtype), prev_flat_grad=zeros, prev_loss=jnp.zeros([], dtype))

  def update_fn(updates, state, params=None, *, value=None,
                value_and_grad_fn: Callable | None = None, **extra_args):
    del extra_args
    if params is None:
      raise ValueError(optax.NO_PARAMS_MSG)
    if needs_fn and (value is None or value_and_grad_fn is None):
      raise ValueError(
          "compat.torch.lbfgs: update needs value= (the loss at params) and value_and_grad_fn= "
          "(params -> (loss, grads)) for the evaluations inside a step (max_iter > 1 or a line "
          "search); see lbfgs_step")
    dtype = _scalar_dtype(params)
    rate = jnp.asarray(lr(state.count) if callable(lr) else lr, dtype)
    tol_grad = jnp.asarray(tolerance_grad, dtype)
    tol_change = jnp.asarray(tolerance_change, dtype)
    n_max_iter = jnp.asarray(max_iter, jnp.int32)
    n_max_eval = jnp.asarray(max_eval, jnp.int32)

    def evaluate(x):
      loss, grads = value_and_grad_fn(x)
      return jnp.asarray(loss, dtype), grads

    # With one inner iteration and no line search the loss is never read (torch stores it as
    # prev_loss only): value may be left out, and prev_loss is then 0.
    f0 = jnp.asarray(0 if value is None else value, dtype)
    g0 = updates
    state = state._replace(func_evals=state.func_evals + 1)
    optimal0 = max_abs(g0, dtype) <= tol_grad

    class Carry(NamedTuple):
      x: Any
      f: jax.Array
      g: Any
      n_iter: jax.Array
      current_evals: jax.Array
      stop: jax.Array
      state: LbfgsState

    def direction(g, st):
      first = st.n_iter == 1
      y = jax.tree.map(jnp.subtract, g, st.prev_flat_grad)
      s = jax.tree.map(lambda u: u * st.t.astype(u.dtype), st.d)
      ys = dot(y, s, dtype)
      push = ~first & (ys > 1e-10)
      slot = st.stored % history
      write = lambda ring, v: jax.tree.map(  # noqa: E731
          lambda r, u: jnp.where(push, r.at[slot].set(u), r), ring, v)
      old_dirs, old_stps = write(st.old_dirs, y), write(st.old_stps, s)
      ro = jnp.where(push, st.ro.at[slot].set(1.0 / ys), st.ro)
      h_diag = jnp.where(push, ys / dot(y, y, dtype), st.h_diag)
      stored = st.stored + push.astype(jnp.int32)
      num_old = jnp.minimum(stored, history)
      oldest = stored - num_old

      def phys(i):
        return (oldest + i) % history

      def take(ring, i):
        return jax.tree.map(lambda r: r[phys(i)], ring)

      def loop1(j, carry):
        q, al = carry
        i = num_old - 1 - j
        a_i = dot(take(old_stps, i), q, dtype) * ro[phys(i)]
        return axpy(-a_i, take(old_dirs, i), q), al.at[i].set(a_i)

      q, al = lax.fori_loop(0, num_old, loop1, (jax.tree.map(jnp.negative, g),
                                                jnp.zeros((history,), dtype)))
      r = jax.tree.map(lambda u: u * h_diag.astype(u.dtype), q)

      def loop2(i, r):
        be_i = dot(take(old_dirs, i), r, dtype) * ro[phys(i)]
        return axpy(al[i] - be_i, take(old_stps, i), r)

      r = lax.fori_loop(0, num_old, loop2, r)
      d = select(first, jax.tree.map(jnp.negative, g), r)
      history_state = st._replace(old_dirs=old_dirs, old_stps=old_stps, ro=ro, stored=stored,
                                  h_diag=jnp.where(first, jnp.ones([], dtype), h_diag))
      return d, history_state

    def inner(c: Carry) -> Carry:
      n_iter = c.n_iter + 1
      st = c.state._replace(n_iter=c.state.n_iter + 1)
      d, st = direction(c.g, st)
      prev_loss = c.f
      first = st.n_iter == 1
      t = jnp.where(first, jnp.minimum(1.0, 1.0 / sum_abs(c.g, dtype)) * rate, rate)
      gtd = dot(c.g, d, dtype)
      st = st._replace(d=d, t=t, prev_flat_grad=c.g, prev_loss=prev_loss)
      no_descent = gtd > -tol_change

      def take_step(_):
        if line_search_fn is not None:
          obj = lambda s: evaluate(axpy(s, d, c.x))  # noqa: E731
          f, g, t_ls, ls_evals = strong_wolfe(obj, c.x, t, d, c.f, c.g, gtd,
                                               n_max_eval - c.current_evals,
                                               LINE_SEARCH_TOLERANCE, dtype)
          x = axpy(t_ls, d, c.x)
          return x, f, g, t_ls, ls_evals
        x = axpy(t, d, c.x)
        if not needs_fn:
          return x, c.f, c.g, t, jnp.zeros([], jnp.int32)
        last = n_iter == n_max_iter
        f, g = lax.cond(last, lambda: (c.f, c.g), lambda: evaluate(x))
        return x, f, g, t, jnp.where(last, 0, 1).astype(jnp.int32)

      def no_step(_):
        return c.x, c.f, c.g, t, jnp.zeros([], jnp.int32)

      x, f, g, t, ls_evals = lax.cond(no_descent, no_step, take_step, None)
      st = st._replace(t=t, func_evals=st.func_evals + ls_evals)
      current_evals = c.current_evals + ls_evals
      stop = (no_descent | (n_iter == n_max_iter) | (current_evals >= n_max_eval)
              | (max_abs(g, dtype) <= tol_grad)
              | (max_abs(jax.tree.map(lambda u: u * t.astype(u.dtype), d), dtype) <= tol_change)
              | (jnp.abs(f - prev_loss) < tol_change))
      return Carry(x, f, g, n_iter, current_evals, stop, st)

    carry = Carry(params, f0, g0, jnp.zeros([], jnp.int32), jnp.ones([], jnp.int32), optimal0,
                  state)
    carry = lax.while_loop(lambda c: ~c.stop & (c.n_iter < n_max_iter), inner, carry)
    new_state = carry.state._replace(count=optax.safe_increment(state.count))
    return jax.tree.map(jnp.subtract, carry.x, params), new_state

  paired = as_real_pairs(optax.GradientTransformationExtraArgs(init_fn, update_fn))

  def paired_update_fn(updates, state, params=None, *, value=None,
                       value_and_grad_fn: Callable | None = None, **extra_args):
    if value_and_grad_fn is not None and any(
        _is_complex(leaf) for leaf in jax.tree.leaves(params)):
      value_and_grad_fn = _on_pairs(value_and_grad_fn, params)
    return paired.update(updates, state, params, value=value,
                         value_and_grad_fn=value_and_grad_fn, **extra_args)

  return optax.GradientTransformationExtraArgs(paired.init, paired_update_fn)


def _on_pairs(value_and_grad_fn: Callable, like) -> Callable:
  """``value_and_grad_fn`` (complex params -> loss, torch's complex grads) over the pair views.

  The step runs on :func:`as_real_pairs`'s views, so its evaluations take and give pair trees:
  the pairs become complex params of ``like``'s dtypes, the complex grads their pair views.
  """

  def on_pairs(pairs):
    loss, grads = value_and_grad_fn(jax.tree.map(_from_pair, pairs, like))
    return loss, _pairs(grads)

  return on_pairs


def _scalar_dtype(params):
  leaves = [x for x in jax.tree.leaves(params) if hasattr(x, "dtype")]
  return jnp.result_type(*leaves) if leaves else jnp.float32


def lbfgs_step(tx: optax.GradientTransformationExtraArgs, state, params, value_and_grad_fn):
  """One torch ``LBFGS.step(closure)``: ``(loss, new_params, new_state)``.

  ``value_and_grad_fn(params) -> (loss, grads)`` plays torch's closure (e.g.
  ``jax.value_and_grad(loss_fn)``); ``loss`` is the loss at ``params`` before the step, as torch's
  ``step`` returns it. See :func:`lbfgs` for an example; jit it with ``value_and_grad_fn`` closed
  over. With complex params its grads must be torch's ``z.grad``, the conjugate of
  ``jax.grad``'s (:func:`lbfgs` shows such a function).
  """
  loss, grads = value_and_grad_fn(params)
  updates, state = tx.update(grads, state, params, value=loss,
                             value_and_grad_fn=value_and_grad_fn)
  return loss, optax.apply_updates(params, updates), state
