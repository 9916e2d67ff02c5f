r"""Every ``torch.optim.lr_scheduler`` class, giving torch's learning rates step for step.

Each factory is named after its torch class in snake case and takes torch's arguments, with the
optimizer's learning rate ``lr`` in place of the optimizer. It returns a :class:`TorchSchedule`:
an optax schedule (``count -> rate``, jit-able, branchless, float64 under ``jax.enable_x64``;
``count`` = the number of ``scheduler.step()`` calls so far, 0 at the first optimizer step) that
also carries torch's recursion on the shared group rate, which the composites use.
``ReduceLROnPlateau`` needs the metric: it is a transformation (:func:`reduce_lr_on_plateau`), or
a :class:`Plateau` member of :func:`scheduled_lr`, torch's loop (``opt.step()``, then each
scheduler's ``step``) as an optax transformation. The table is in :mod:`phaseshift_jax.schedules`.

::

  from phaseshift_jax.schedules import torch as lrs
  sched = lrs.sequential_lr([lrs.linear_lr(0.1, 0.01, total_iters=50),
                             lrs.cosine_annealing_lr(0.1, T_max=950)], milestones=[50])
  tx = compat.torch.sgd(sched, momentum=0.9)
"""

from phaseshift_jax.schedules.torch._base import TorchSchedule
from phaseshift_jax.schedules.torch._chainable import (
    constant_lr,
    cosine_annealing_lr,
    exponential_lr,
    lambda_lr,
    linear_lr,
    multi_step_lr,
    multiplicative_lr,
    polynomial_lr,
    step_lr,
)
from phaseshift_jax.schedules.torch._composite import chained_scheduler, sequential_lr
from phaseshift_jax.schedules.torch._convert import FromTorch, from_torch_scheduler
from phaseshift_jax.schedules.torch._cycles import (
    cosine_annealing_warm_restarts,
    cyclic_lr,
    one_cycle_lr,
)
from phaseshift_jax.schedules.torch._inject import with_momentum_schedule
from phaseshift_jax.schedules.torch._stepped import (
    Plateau,
    PlateauState,
    ScheduledLrState,
    reduce_lr_on_plateau,
    scheduled_hyperparam,
    scheduled_lr,
)

__all__ = [
    "FromTorch",
    "Plateau",
    "PlateauState",
    "ScheduledLrState",
    "TorchSchedule",
    "chained_scheduler",
    "constant_lr",
    "cosine_annealing_lr",
    "cosine_annealing_warm_restarts",
    "cyclic_lr",
    "exponential_lr",
    "from_torch_scheduler",
    "lambda_lr",
    "linear_lr",
    "multi_step_lr",
    "multiplicative_lr",
    "one_cycle_lr",
    "polynomial_lr",
    "reduce_lr_on_plateau",
    "scheduled_hyperparam",
    "scheduled_lr",
    "sequential_lr",
    "step_lr",
    "with_momentum_schedule",
]
