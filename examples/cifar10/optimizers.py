"""``create_optimizer(config)``: an optimizer name to an optax transformation, and the schedules.

``OPTIMIZERS`` maps every name to its library function, the config settings it reads and
its default learning rate. Settings left at ``None`` are not passed (the function's own
default applies); the libraries (optax, ``phaseshift_jax``, its ``compat``) validate them.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence

import optax

import phaseshift_jax
from examples.cifar10.configs import default
from phaseshift_jax import schedules
from phaseshift_jax.compat import miniai
from phaseshift_jax.compat import minima
from phaseshift_jax.compat import torch

_ADAM = ("b1", "b2", "eps")
_KICK = ("threshold", "shift_boundary", "min_gradient_magnitude", "selection", "granularity")
_SGD = ("momentum", "nesterov", "weight_decay")


def _sgd(learning_rate, momentum=0.0, nesterov=False, weight_decay=0.0):
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum or None, nesterov))


def _phase_shift_adam(learning_rate, threshold, shift_boundary, min_gradient_magnitude,
                      selection, granularity, **adam):
  return phaseshift_jax.with_phase_shift(
      optax.adam(learning_rate, **adam), threshold, shift_boundary, min_gradient_magnitude,
      selection=selection, granularity=granularity)


def _betas(fn):
  """torch's ``betas=(b1, b2)`` from the config's ``b1`` and ``b2``."""
  default_betas = inspect.signature(fn).parameters["betas"].default

  def build(learning_rate, b1=None, b2=None, **kwargs):
    betas = (default_betas[0] if b1 is None else b1, default_betas[1] if b2 is None else b2)
    return fn(learning_rate, betas=betas, **kwargs)
  return build


def _renamed(fn, **names):
  """``fn`` taking the config's names (``weight_decay``, ``b1``) for its own (``wd``, ``beta1``)."""
  return lambda learning_rate, **kwargs: fn(
      learning_rate, **{names.get(k, k): v for k, v in kwargs.items()})


@dataclasses.dataclass(frozen=True)
class Optimizer:
  source: Callable[..., optax.GradientTransformation]  # The library's function.
  reads: tuple[str, ...]  # The config settings it takes besides the learning rate.
  learning_rate: float  # Its default learning rate.
  build: Callable[..., optax.GradientTransformation] | None = None  # (lr, **settings); source.


_MINIAI = {"weight_decay": "wd", "b1": "beta1", "b2": "beta2"}
OPTIMIZERS: dict[str, Optimizer] = {
    "adam": Optimizer(optax.adam, _ADAM, 1e-3),
    "adamw": Optimizer(optax.adamw, (*_ADAM, "weight_decay"), 1e-3),
    "sgd": Optimizer(optax.sgd, _SGD, 0.1, _sgd),
    "phase_shift": Optimizer(phaseshift_jax.phase_shift, _KICK, 0.1),
    "phase_shift_adam": Optimizer(phaseshift_jax.with_phase_shift, (*_ADAM, *_KICK), 1e-3,
                                  _phase_shift_adam),
    "torch_sgd": Optimizer(torch.sgd, _SGD, 1e-3),
    "torch_adagrad": Optimizer(torch.adagrad, ("weight_decay", "eps"), 1e-2),
    "torch_rmsprop": Optimizer(torch.rmsprop, ("momentum", "weight_decay", "eps"), 1e-2),
    "torch_adam": Optimizer(torch.adam, (*_ADAM, "weight_decay"), 1e-3, _betas(torch.adam)),
    "torch_adamw": Optimizer(torch.adamw, (*_ADAM, "weight_decay"), 1e-3, _betas(torch.adamw)),
    "minima_sgd": Optimizer(minima.sgd, ("momentum", "weight_decay"), 0.01,
                            _renamed(minima.sgd, weight_decay="wd")),
    "minima_adagrad": Optimizer(minima.adagrad, ("weight_decay", "eps"), 1e-3,
                                _renamed(minima.adagrad, weight_decay="wd")),
    "minima_rmsprop": Optimizer(minima.rmsprop, ("weight_decay", "eps"), 1e-3,
                                _renamed(minima.rmsprop, weight_decay="wd")),
    "minima_adam": Optimizer(minima.adam, (*_ADAM, "weight_decay"), 1e-5,
                             _renamed(minima.adam, b1="beta1", b2="beta2")),
    "miniai_sgd": Optimizer(miniai.sgd, ("weight_decay",), 0.05, _renamed(miniai.sgd, **_MINIAI)),
    "miniai_adam": Optimizer(miniai.adam, (*_ADAM, "weight_decay"), 1e-3,
                             _renamed(miniai.adam, **_MINIAI)),
    "miniai_adam_with_annealing": Optimizer(
        miniai.adam_with_annealing, (*_ADAM, "weight_decay"), 1e-3,
        _renamed(miniai.adam_with_annealing, **_MINIAI)),
}
SCHEDULES = ("constant", "cosine", "warmup_cosine", "onecycle", "cosine_annealing",
             "time_based", "cyclic")


def get(name: str) -> Optimizer:
  if name not in OPTIMIZERS:
    raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(OPTIMIZERS)}")
  return OPTIMIZERS[name]


def learning_rate(config: default.Config) -> float:
  """The peak learning rate: the config's, or the optimizer's default."""
  lr = config.learning_rate
  return get(config.optimizer).learning_rate if lr is None else lr


def create_schedule(config: default.Config, steps_per_epoch: int) -> optax.ScalarOrSchedule:
  """The learning rate of ``config.schedule`` over ``config.epochs`` epochs, peaking at
  :func:`learning_rate`: a float for ``constant``, else an optax schedule of the step."""
  lr, total = learning_rate(config), config.epochs * steps_per_epoch
  match config.schedule:
    case "constant":
      return lr
    case "cosine":
      return optax.cosine_decay_schedule(lr, total)
    case "warmup_cosine":
      warmup = round(config.warmup_epochs * steps_per_epoch)
      if not 0 <= warmup < total:  # optax's cosine needs at least one step after the warm-up
        raise ValueError(f"warmup_epochs must be in [0, epochs) for warmup_cosine, got "
                         f"{config.warmup_epochs} with epochs={config.epochs}")
      return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total)
    case "onecycle":
      return optax.cosine_onecycle_schedule(total, lr)
    case "cosine_annealing":  # torch's CosineAnnealingLR(T_max=total).
      return schedules.cosine_annealing_schedule(lr, total)
    case "time_based":  # lr / (1 + epoch), the 004 write-up's decay.
      return schedules.time_based_decay(lr, 1.0, decay_steps=steps_per_epoch)
    case "cyclic":  # torch's triangular CyclicLR, lr/10..lr, one epoch up, one down.
      return schedules.cyclic_schedule(lr / 10, lr, step_size_up=steps_per_epoch)
  raise ValueError(f"unknown schedule {config.schedule!r}; choose from {', '.join(SCHEDULES)}")


def create_optimizer(config: default.Config, steps_per_epoch: int = 1
                     ) -> optax.GradientTransformation:
  """The optax transformation of ``config.optimizer`` with the config's hyperparameters (the
  same object for the same ones: runs differing in seed share the compiled steps). Raises
  ValueError for an unknown name or schedule, or a value the library rejects."""
  optimizer = get(config.optimizer)
  lr = learning_rate(config)
  if not lr > 0:  # optax does not check its own optimizers' learning rates.
    raise ValueError(f"learning_rate must be > 0, got {lr}")
  settings = {name: getattr(config, name) for name in optimizer.reads
              if getattr(config, name) is not None}
  key = repr((config.optimizer, lr, settings, config.optimizer_kwargs, config.schedule,
              config.warmup_epochs, config.epochs, steps_per_epoch))
  try:
    if key not in _BUILT:
      _BUILT[key] = (optimizer.build or optimizer.source)(
          create_schedule(config, steps_per_epoch), **settings, **config.optimizer_kwargs)
  except TypeError as e:  # An optimizer_kwargs entry the function does not take.
    raise ValueError(f"{config.optimizer}: {e}") from e
  return _BUILT[key]


_BUILT: dict[str, optax.GradientTransformation] = {}


def check_settings(configs: Sequence[default.Config]) -> None:
  """Raises ValueError for a hyperparameter set away from its default that none of the
  ``configs``' optimizers reads (``--momentum`` for Adam), and builds each optimizer."""
  for config in configs:
    create_optimizer(config)
  defaults = default.Config()
  for name in sorted({name for o in OPTIMIZERS.values() for name in o.reads}):
    changed = [c for c in configs if getattr(c, name) != getattr(defaults, name)]
    if changed and not any(name in get(c.optimizer).reads for c in changed):
      names = ", ".join(sorted({c.optimizer for c in changed}))
      raise ValueError(f"{name} is set but {names} does not take it")


def describe(name: str) -> str:
  """One optimizer for the ``optimizers`` command: what it reads and the library function."""
  optimizer = get(name)
  fn = optimizer.source
  args = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                   for p in inspect.signature(fn).parameters.values())
  return (f"{name}: learning_rate={optimizer.learning_rate:g}, reads {', '.join(optimizer.reads)}"
          f"\n    {fn.__module__.split('._')[0]}.{fn.__name__}({args})")
