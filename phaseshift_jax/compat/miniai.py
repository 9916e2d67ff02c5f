r"""The hand-written miniai-style optimizers of the "Adam with annealing" post, as optax transforms.

Source: Alex Kelly's blog post on optimizers (January 2024; SGD, Adam and Adam with annealing for a
fastai/miniai ``Learner``). Its optimizers run, for every parameter and every ``step()``, first a
weight-decay step :math:`\theta \leftarrow (1 - \alpha\lambda)\,\theta` (with the *base* learning
rate) and then the optimizer step, and count steps with ``i`` (0 at the first step). In optax terms
the decay is ``add_decayed_weights(wd)`` just before ``scale_by_learning_rate(lr)``.

The two Adams of the post put :math:`\epsilon` in different places, and this module keeps both:
``adam`` adds it *inside* the square root, ``adam_with_annealing`` *outside*.

``lr`` has no default in the post (the ``Learner`` passes it); here too it is required.

Every float hyperparameter can be injected with ``optax.inject_hyperparams``: the chain is the
same whatever the values (``wd=0`` makes the decay an exact identity for finite parameters), so
the state's structure does not depend on them, and ``update`` needs ``params``. Concrete bad
values raise ``ValueError`` naming the argument; traced ones are not checked.

Complex parameters: ``sgd`` steps them as the pair of their real and imaginary parts (torch's
rule); ``adam`` and ``adam_with_annealing``, whose squared gradients would not be squared per
part, refuse them at ``init`` with a ``TypeError``.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from phaseshift_jax.schedules import on_float_count
from phaseshift_jax.compat._common import (
    check_non_negative,
    check_positive_int,
    check_unit_interval,
    real_only,
)

__all__ = ["sgd", "adam", "adam_with_annealing"]


def _check(lr, wd, beta1=0.0, beta2=0.0, eps=0.0):
  check_non_negative("lr", lr)
  check_non_negative("wd", wd)
  check_unit_interval("beta1", beta1)
  check_unit_interval("beta2", beta2)
  check_non_negative("eps", eps)


def sgd(lr: optax.ScalarOrSchedule, wd: float = 0.0) -> optax.GradientTransformationExtraArgs:
  r"""The post's ``SGD``: plain gradient descent with multiplicative weight decay.

  .. math:: \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \alpha\,g_t

  Equals ``optax.sgd(lr)`` when ``wd == 0``; ``torch.optim.SGD``'s ``weight_decay`` is the L2 form
  :math:`\theta_t = \theta_{t-1} - \alpha(g_t + \lambda\theta_{t-1})`, the same number in exact
  arithmetic for plain SGD (the two differ once momentum is involved).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    wd: decoupled weight decay :math:`\lambda`, >= 0.

  References:
    The "Adam with annealing" post, ``SGD``.
  """
  _check(lr, wd)
  return optax.chain(optax.add_decayed_weights(wd), optax.scale_by_learning_rate(lr))


def adam(
    lr: optax.ScalarOrSchedule,
    wd: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.99,
    eps: float = 1e-5,
) -> optax.GradientTransformationExtraArgs:
  r"""The post's ``Adam``, with :math:`\epsilon` inside the square root.

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      \hat m_t = \frac{m_t}{1-\beta_1^{t}}, \quad \hat v_t = \frac{v_t}{1-\beta_2^{t}},

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,\frac{\hat m_t}{\sqrt{\hat v_t + \epsilon}}

  (:math:`t = i + 1` is the step count). That is ``optax.adamw(lr, beta1, beta2, eps=0,
  eps_root=eps, weight_decay=wd)``, which is what this returns.

  Differs from ``optax.adam`` / ``torch.optim.Adam``: :math:`\epsilon` (default ``1e-5``, not
  ``1e-8``) sits inside the root, so it bounds the step by :math:`\alpha|\hat m|/\sqrt{\epsilon}`
  rather than :math:`\alpha|\hat m|/\epsilon`; ``beta2`` defaults to 0.99; weight decay is
  decoupled (AdamW-like) where torch's ``Adam`` adds an L2 term to the gradient.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    wd: decoupled weight decay :math:`\lambda`, >= 0.
    beta1: :math:`\beta_1`, in [0, 1).
    beta2: :math:`\beta_2`, in [0, 1).
    eps: :math:`\epsilon`, >= 0, added inside the root.

  References:
    The "Adam with annealing" post, ``Adam``.
  """
  _check(lr, wd, beta1, beta2, eps)
  return real_only(optax.adamw(lr, b1=beta1, b2=beta2, eps=0.0, eps_root=eps, weight_decay=wd),
                   "compat.miniai.adam")


def adam_with_annealing(
    lr: optax.ScalarOrSchedule,
    wd: float = 0.0,
    beta1: float = 0.9,
    beta2: float = 0.99,
    eps: float = 1e-5,
    anneal_rate: float = 0.97,
    anneal_every: int = 1,
) -> optax.GradientTransformationExtraArgs:
  r"""The post's ``AdamWithAnnealing``: Adam (:math:`\epsilon` outside the root), annealed rate.

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,r^{\lfloor i / N \rfloor}\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

  with :math:`\hat m_t, \hat v_t` as in :func:`adam`, :math:`i = t - 1` the number of earlier
  steps, :math:`r` = ``anneal_rate`` and :math:`N` = ``anneal_every``. The post anneals at every
  step (``N = 1``, the default); pass the number of steps per epoch to anneal once per epoch.
  As in the post, the weight decay uses the base rate :math:`\alpha`, not the annealed one.

  Built from ``optax.scale_by_adam``, ``optax.scale_by_schedule`` of the factor
  :math:`r^{\lfloor i / N \rfloor}` (the arithmetic of ``optax.exponential_decay(1, N, r,
  staircase=True)``, written out so that :math:`r` and :math:`N` may be traced; unlike that
  schedule it also follows the formula for :math:`r = 0`, as the post does: 1 for the first
  :math:`N` steps, 0 afterwards), ``optax.add_decayed_weights`` and
  ``optax.scale_by_learning_rate``. Differs from ``optax.adam`` / ``torch.optim.Adam`` by the
  annealing factor, ``beta2=0.99``, ``eps=1e-5`` and the decoupled weight decay; it equals
  ``torch.optim.AdamW`` with a per-step ``ExponentialLR(gamma=r)`` only when ``wd == 0``
  (torch would anneal the decay too).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    wd: decoupled weight decay :math:`\lambda`, >= 0.
    beta1: :math:`\beta_1`, in [0, 1).
    beta2: :math:`\beta_2`, in [0, 1).
    eps: :math:`\epsilon`, >= 0, added outside the root.
    anneal_rate: :math:`r`, >= 0.
    anneal_every: :math:`N`, an integer >= 1. Under ``optax.inject_hyperparams`` it is
      injected as an int32 array like the floats (left at its default it is injected too), or
      pass ``static_args=("anneal_every",)`` to keep it a Python int.

  References:
    The "Adam with annealing" post, ``AdamWithAnnealing``.
  """
  _check(lr, wd, beta1, beta2, eps)
  check_non_negative("anneal_rate", anneal_rate)
  check_positive_int("anneal_every", anneal_every)

  def anneal(count):
    factor = jnp.power(anneal_rate, jnp.floor(count / anneal_every))
    return jnp.where(count <= 0, 1.0, factor)

  return real_only(optax.chain(
      optax.scale_by_adam(b1=beta1, b2=beta2, eps=eps),
      optax.scale_by_schedule(on_float_count(anneal)),
      optax.add_decayed_weights(wd),
      optax.scale_by_learning_rate(lr),
  ), "compat.miniai.adam_with_annealing")
