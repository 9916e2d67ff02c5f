r"""The optimizers of the ``minima`` library's ``optim`` module, as optax transformations.

Source: the documentation of the ``optim`` module of the minima library. Defaults and update rules are the ones that document writes. Every optimizer
there applies weight decay the way its SGD section writes it, as a multiplicative shrink of the
parameters before the step:

.. math:: \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \alpha\,s_t,

where :math:`s_t` is the optimizer's step direction. In optax terms that is
``add_decayed_weights(wd)`` placed just before ``scale_by_learning_rate(lr)`` (decoupled weight
decay, as in AdamW), not torch's L2 term added to the gradient.

Each factory accepts a float or an optax schedule as ``lr``; the decay then uses the scheduled rate.

Every float hyperparameter can be injected with ``optax.inject_hyperparams``: the chain is the
same whatever the values (``wd=0`` and ``momentum=0`` make their pieces exact identities for
finite values), so the state's structure does not depend on them, and ``update`` needs
``params``. Concrete bad values raise ``ValueError`` naming the argument; traced ones are not
checked.

Complex parameters: ``sgd`` steps them as the pair of their real and imaginary parts (torch's
rule); ``adagrad``, ``rmsprop`` and ``adam``, whose squared gradients would not be squared per
part, refuse them at ``init`` with a ``TypeError``.
"""

from __future__ import annotations

import optax

from phaseshift_jax.compat._common import check_non_negative, check_unit_interval, real_only

__all__ = ["sgd", "adagrad", "rmsprop", "adam"]


def _check(lr, wd, eps=None):
  check_non_negative("lr", lr)
  check_non_negative("wd", wd)
  if eps is not None:
    check_non_negative("eps", eps)


def sgd(
    lr: optax.ScalarOrSchedule = 0.01, momentum: float = 0.0, wd: float = 0.0
) -> optax.GradientTransformationExtraArgs:
  r"""minima's ``SGD``: gradient descent with EMA momentum and multiplicative weight decay.

  .. math::
      v_t = \mu\,v_{t-1} + (1-\mu)\,g_t, \quad v_0 = 0, \qquad
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \alpha\,v_t

  with :math:`\alpha` = ``lr``, :math:`\mu` = ``momentum``, :math:`\lambda` = ``wd``. Built from
  ``optax.ema(momentum, debias=False)``, ``optax.add_decayed_weights`` and
  ``optax.scale_by_learning_rate``. The ``EmaState`` (the document's velocity) is in the state
  also for ``momentum == 0``, where :math:`v_t = 1 \cdot g_t + 0 \cdot v_{t-1} = g_t` exactly
  (for finite values).

  Differs from ``optax.sgd(lr, momentum)``, whose momentum is heavy-ball
  (:math:`v_t = \mu v_{t-1} + g_t`, steps about :math:`1/(1-\mu)` times larger) and which has no
  weight decay; and from ``torch.optim.SGD``, whose buffer is also heavy-ball (EMA only with
  ``dampening=momentum``, and even then its first buffer is :math:`g_1`, not
  :math:`(1-\mu) g_1`) and whose ``weight_decay`` is an L2 term added to the gradient.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    momentum: EMA coefficient :math:`\mu`, in [0, 1).
    wd: decoupled weight decay :math:`\lambda`, >= 0.

  References:
    minima's ``optim`` documentation, ``SGD``.
  """
  _check(lr, wd)
  check_unit_interval("momentum", momentum)
  return optax.chain(
      optax.ema(momentum, debias=False),
      optax.add_decayed_weights(wd),
      optax.scale_by_learning_rate(lr),
  )


def adagrad(
    lr: optax.ScalarOrSchedule = 0.001, wd: float = 0.0, eps: float = 1e-7
) -> optax.GradientTransformationExtraArgs:
  r"""minima's ``AdaGrad``: steps scaled by the root of the sum of all squared gradients.

  .. math::
      G_t = G_{t-1} + g_t^2, \quad G_0 = 0, \qquad
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \frac{\alpha}{\sqrt{G_t + \epsilon}}\,g_t

  Built from ``optax.scale_by_rss(initial_accumulator_value=0, eps=eps)`` (same placement of
  :math:`\epsilon`, inside the root), ``optax.add_decayed_weights`` and
  ``optax.scale_by_learning_rate``.

  Differs from ``optax.adagrad``, which starts the accumulator at 0.1 and has no weight decay;
  and from ``torch.optim.Adagrad``, which adds :math:`\epsilon` (default 1e-10) outside the root,
  uses ``lr=1e-2`` and an L2 ``weight_decay``.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    wd: decoupled weight decay :math:`\lambda`, >= 0.
    eps: :math:`\epsilon`, >= 0, added inside the root.

  References:
    minima's ``optim`` documentation, ``AdaGrad``.
  """
  _check(lr, wd, eps)
  return real_only(optax.chain(
      optax.scale_by_rss(initial_accumulator_value=0.0, eps=eps),
      optax.add_decayed_weights(wd),
      optax.scale_by_learning_rate(lr),
  ), "compat.minima.adagrad")


def rmsprop(
    lr: optax.ScalarOrSchedule = 0.001, wd: float = 0.0, eps: float = 1e-7, rho: float = 0.9
) -> optax.GradientTransformationExtraArgs:
  r"""minima's ``RMSProp``: steps scaled by the root of an EMA of squared gradients.

  .. math::
      c_t = \rho\,c_{t-1} + (1-\rho)\,g_t^2, \quad c_0 = 0, \qquad
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1} - \frac{\alpha}{\sqrt{c_t + \epsilon}}\,g_t

  Built from ``optax.scale_by_rms(decay=rho, eps=eps, eps_in_sqrt=True)``,
  ``optax.add_decayed_weights`` and ``optax.scale_by_learning_rate``.

  Same rule as ``optax.rmsprop(lr, decay=rho, eps=eps)``, whose defaults differ (``eps=1e-8``) and
  which has no weight decay; ``torch.optim.RMSprop`` adds :math:`\epsilon` outside the root and
  defaults to ``alpha=0.99`` (the :math:`\rho` here), ``eps=1e-8``, ``lr=1e-2``, L2 decay.

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    wd: decoupled weight decay :math:`\lambda`, >= 0.
    eps: :math:`\epsilon`, >= 0, added inside the root.
    rho: EMA coefficient :math:`\rho`, in [0, 1).

  References:
    minima's ``optim`` documentation, ``RMSProp``.
  """
  _check(lr, wd, eps)
  check_unit_interval("rho", rho)
  return real_only(optax.chain(
      optax.scale_by_rms(decay=rho, eps=eps, initial_scale=0.0, eps_in_sqrt=True),
      optax.add_decayed_weights(wd),
      optax.scale_by_learning_rate(lr),
  ), "compat.minima.rmsprop")


def adam(
    lr: optax.ScalarOrSchedule = 1e-5,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
) -> optax.GradientTransformationExtraArgs:
  r"""minima's ``Adam``, with the weight decay of the minima module (decoupled).

  .. math::
      m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
      v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2, \quad
      \hat m_t = \frac{m_t}{1-\beta_1^t}, \quad \hat v_t = \frac{v_t}{1-\beta_2^t},

  .. math::
      \theta_t = (1 - \alpha\lambda)\,\theta_{t-1}
                 - \alpha\,\frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

  with :math:`t` the step count (1 at the first step). The document leaves the form of Adam's
  ``weight_decay`` open (it points to a ``WeightDecay`` class it does not show); this module uses
  the multiplicative form that the document writes for SGD and that minima applies in all its
  optimizers. The bias corrections use the step count, as the document's formula says (one
  published version of minima's code raises the betas to the parameter's index instead; that is
  not reproduced).

  With that reading the rule is exactly ``optax.adamw(lr, beta1, beta2, eps,
  weight_decay=weight_decay)``, which is what this returns; it differs from ``optax.adam`` (no
  weight decay, ``lr`` has no default) and from ``torch.optim.Adam`` (L2 decay added to the
  gradient, ``lr=1e-3``) only in those points and in the defaults (``lr=1e-5`` here).

  Args:
    lr: learning rate :math:`\alpha` (float or schedule), >= 0.
    beta1: :math:`\beta_1`, in [0, 1).
    beta2: :math:`\beta_2`, in [0, 1).
    eps: :math:`\epsilon`, >= 0, added outside the root.
    weight_decay: decoupled weight decay :math:`\lambda`, >= 0.

  References:
    minima's ``optim`` documentation, ``Adam``.
  """
  _check(lr, weight_decay, eps)
  check_unit_interval("beta1", beta1)
  check_unit_interval("beta2", beta2)
  return real_only(optax.adamw(lr, b1=beta1, b2=beta2, eps=eps, weight_decay=weight_decay),
                   "compat.minima.adam")
