r"""Learning-rate schedules: every ``torch.optim.lr_scheduler`` class, and the miniai post's list.

A schedule maps the step count ``t`` (0 at the first optimizer step) to a rate; with torch, ``t``
is the number of ``scheduler.step()`` calls made so far (one per optimizer step). The
``schedules.torch`` factories (:mod:`phaseshift_jax.schedules.torch`) give torch's rates step for
step (tested against torch over 1,000 steps, relative 1e-7, float64), named after torch's
classes, with the optimizer's ``lr`` in place of the optimizer:

=================================  ===============================  ============================
``torch.optim.lr_scheduler``       ``schedules.torch``              optax (how it differs)
=================================  ===============================  ============================
``LambdaLR``                       ``lambda_lr(lr, fn)``            a schedule is a function
``MultiplicativeLR``               ``multiplicative_lr(lr, fn)``    none (product of factors)
``StepLR``                         ``step_lr``                      ``exponential_decay(...,
                                                                    staircase=True)``: same rate
``MultiStepLR``                    ``multi_step_lr``                ``piecewise_constant_
                                                                    schedule``: same rate
``ConstantLR``                     ``constant_lr``                  ``piecewise_constant_
                                                                    schedule``: same rate
``LinearLR``                       ``linear_lr``                    ``linear_schedule``: same
``ExponentialLR``                  ``exponential_lr``               ``exponential_decay(lr, 1,
                                                                    gamma)``: same rate
``PolynomialLR``                   ``polynomial_lr``                ``polynomial_schedule(lr, 0,
                                                                    power, N)``: same rate
``CosineAnnealingLR``              ``cosine_annealing_lr``          ``cosine_decay_schedule``:
                                                                    same up to ``T_max`` only,
                                                                    then stays at its floor
``CosineAnnealingWarmRestarts``    ``cosine_annealing_warm_         ``sgdr_schedule``: other
                                   restarts``                       pieces (no ``T_mult``)
``CyclicLR`` (+ momentum)          ``cyclic_lr``                    none
``OneCycleLR`` (+ momentum)        ``one_cycle_lr``                 ``cosine_onecycle_schedule``:
                                                                    other phase ends, no momentum
``SequentialLR``                   ``sequential_lr``                ``join_schedules``; not
                                                                    MultiplicativeLR's restart
``ChainedScheduler``               ``chained_scheduler``            none
``ReduceLROnPlateau``              ``reduce_lr_on_plateau`` (a      ``contrib.reduce_on_plateau``:
                                   transformation), ``Plateau``     one step earlier, cuts the
                                                                    current update, no max / eps
several schedulers stepped in a    ``scheduled_lr([...])``          none
loop (with ReduceLROnPlateau)
a torch scheduler to continue      ``from_torch_scheduler``         none
=================================  ===============================  ============================

optax's schedules compute at the optimizer's int32 count in float32 even under x64; the
``schedules.torch`` ones (and this module's) give float64 there, like torch. The cycling
schedulers' momentum schedule (``.momentum``) feeds an optimizer through
``schedules.torch.with_momentum_schedule``.

This module also keeps the miniai post's schedules (:func:`time_based_decay`,
:func:`cosine_annealing_schedule`, :func:`cyclic_schedule`, :func:`on_float_count`) and
:func:`reduce_lr_on_plateau`, which cuts the current update (torch's loop cuts from the next
one: ``schedules.torch.reduce_lr_on_plateau``).
"""

from phaseshift_jax.schedules import torch
from phaseshift_jax.schedules._optax_style import (
    cosine_annealing_schedule,
    cyclic_schedule,
    on_float_count,
    reduce_lr_on_plateau,
    time_based_decay,
)

__all__ = [
    "cosine_annealing_schedule",
    "cyclic_schedule",
    "on_float_count",
    "reduce_lr_on_plateau",
    "time_based_decay",
    "torch",
]
