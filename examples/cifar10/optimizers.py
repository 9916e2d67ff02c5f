"""Optimizers by name: ``name -> optax.GradientTransformation``, with validated hyperparameters.

Hyperparameters use one vocabulary across optimizers (the CLI flags):
``learning_rate``, ``momentum``, ``nesterov``, ``weight_decay``, ``b1``, ``b2``,
``eps``, ``threshold``, ``shift_boundary``, ``min_gradient_magnitude``,
``selection``, ``granularity``. The compat families
(``phaseshift_jax.compat.{torch,minima,miniai}``) are registered as
``<family>_<function>`` (``torch_sgd``, ``minima_adam``,
``miniai_adam_with_annealing``, ...); they take the
common names that match their signature (``learning_rate`` is their ``lr``;
``b1``/``b2`` fill torch's ``betas``) and any of their own arguments by name.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

import optax

import phaseshift_jax
from phaseshift_jax import compat
from phaseshift_jax import schedules

# PhaseShift defaults for CIFAR-10 (see README.md, "PhaseShift hyperparameters"): the kick
# is a fixed +-min(threshold, shift_boundary) on every element of one tensor, uphill, at
# nearly every step and not scaled by the learning rate. On the small CNN a kick of 1e-4
# costs no accuracy, 1e-3 costs several points and 1e-2 stops learning; the boundary caps
# a larger --threshold at 1e-3.
PHASE_SHIFT_DEFAULTS = {
    "threshold": 1e-4,
    "shift_boundary": 1e-3,
    "min_gradient_magnitude": 0.0,
    "selection": "argmax",
    "granularity": "tensor",
}


def _check_number(name: str, value: Any, *, low: float | None = None,
                  high: float | None = None, low_open: bool = False,
                  high_open: bool = True) -> None:
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ValueError(f"{name} must be a finite number, got {value!r}")
  if low is not None and (value <= low if low_open else value < low):
    raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
  if high is not None and (value >= high if high_open else value > high):
    raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}, got {value}")


def _check_choice(choices: tuple[str, ...]) -> Callable[[str, Any], None]:
  def check(name: str, value: Any) -> None:
    if value not in choices:
      raise ValueError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
  return check


def _check_bool(name: str, value: Any) -> None:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be true or false, got {value!r}")


# Validation of the common hyperparameters, whichever optimizer takes them.
CHECKS: dict[str, Callable[[str, Any], None]] = {
    "learning_rate": lambda n, v: _check_number(n, v, low=0, low_open=True),
    "momentum": lambda n, v: _check_number(n, v, low=0, high=1),
    "nesterov": _check_bool,
    "weight_decay": lambda n, v: _check_number(n, v, low=0),
    "b1": lambda n, v: _check_number(n, v, low=0, high=1),
    "b2": lambda n, v: _check_number(n, v, low=0, high=1),
    "eps": lambda n, v: _check_number(n, v, low=0),
    "threshold": _check_number,
    "shift_boundary": lambda n, v: _check_number(n, v, low=0),
    "min_gradient_magnitude": lambda n, v: _check_number(n, v, low=0),
    "selection": _check_choice(("argmax", "last")),
    "granularity": _check_choice(("tensor", "element")),
}
COMMON = tuple(CHECKS)
# Names the compat functions may use for a common hyperparameter.
ALIASES = {"learning_rate": ("lr",), "b1": ("beta1",), "b2": ("beta2",),
           "weight_decay": ("wd",), "eps": ("epsilon",)}


@dataclasses.dataclass(frozen=True)
class Spec:
  """An optimizer: its hyperparameters with defaults, and how to build it from them."""

  name: str
  defaults: Mapping[str, Any]
  build: Callable[..., optax.GradientTransformation]
  description: str


def _sgd(learning_rate, momentum, nesterov, weight_decay):
  return optax.chain(optax.add_decayed_weights(weight_decay),
                     optax.sgd(learning_rate, momentum or None, nesterov))


def _phase_shift_adam(learning_rate, b1, b2, eps, **kick):
  return phaseshift_jax.with_phase_shift(optax.adam(learning_rate, b1, b2, eps), **kick)


_ADAM = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
BUILTIN: dict[str, Spec] = {s.name: s for s in (
    Spec("adam", _ADAM, optax.adam, "optax.adam"),
    Spec("adamw", {**_ADAM, "weight_decay": 1e-4}, optax.adamw, "optax.adamw"),
    Spec("sgd", {"learning_rate": 0.1, "momentum": 0.0, "nesterov": False,
                 "weight_decay": 0.0}, _sgd,
         "optax.sgd (momentum, nesterov) after add_decayed_weights"),
    Spec("phase_shift", {"learning_rate": 0.1, **PHASE_SHIFT_DEFAULTS},
         phaseshift_jax.phase_shift, "phaseshift_jax.phase_shift: SGD plus the PhaseShift kick"),
    Spec("phase_shift_adam", {**_ADAM, **PHASE_SHIFT_DEFAULTS}, _phase_shift_adam,
         "phaseshift_jax.with_phase_shift(optax.adam(...)): Adam plus the kick"),
)}

# Compat families: (module, functions).
COMPAT: dict[str, tuple[ModuleType, tuple[str, ...]]] = {
    "torch": (compat.torch, ("sgd", "adagrad", "rmsprop", "adam", "adamw")),
    "minima": (compat.minima, ("sgd", "adagrad", "rmsprop", "adam")),
    "miniai": (compat.miniai, ("sgd", "adam", "adam_with_annealing")),
}
COMPAT_NAMES = {f"{family}_{fn}": (module, fn)
                for family, (module, fns) in COMPAT.items() for fn in fns}


def names() -> list[str]:
  """Every registered optimizer name."""
  return [*BUILTIN, *COMPAT_NAMES]


def _default_lr(fn_name: str) -> float:
  """A starting learning rate for a compat optimizer whose ``lr`` has no default."""
  if "adagrad" in fn_name:
    return 1e-2
  if "sgd" in fn_name:
    return 0.05
  return 1e-3


def _compat_spec(name: str) -> Spec:
  module, fn_name = COMPAT_NAMES[name]
  module_name = module.__name__
  fn = getattr(module, fn_name)
  params = inspect.signature(fn).parameters
  if any(p.kind == p.VAR_POSITIONAL for p in params.values()):
    raise ValueError(f"optimizer {name}: cannot map arguments of {module_name}.{fn_name}")
  defaults: dict[str, Any] = {}
  rename: dict[str, str] = {}  # common name -> the function's own name
  for common in COMMON:
    for own in (common, *ALIASES.get(common, ())):
      if own in params:
        rename[common] = own
        break
  if "betas" in params and isinstance(params["betas"].default, tuple):
    defaults["b1"], defaults["b2"] = params["betas"].default
  for own, p in params.items():
    if p.kind == p.VAR_KEYWORD or own == "betas":
      continue
    common = next((c for c, o in rename.items() if o == own), own)
    if p.default is not inspect.Parameter.empty:
      defaults[common] = p.default
    elif common == "learning_rate":
      defaults[common] = _default_lr(fn_name)
    else:
      raise ValueError(f"optimizer {name}: argument {own!r} of {module_name}.{fn_name} has "
                       "no default")

  def build(**hparams):
    if "betas" in params:  # torch style: b1 and b2 (both always resolved) fill one tuple.
      hparams["betas"] = (hparams.pop("b1"), hparams.pop("b2"))
    return fn(**{rename.get(k, k): v for k, v in hparams.items()})

  return Spec(name, defaults, build, f"{module_name}.{fn_name}")


def get_spec(name: str) -> Spec:
  """The :class:`Spec` of optimizer ``name``; ValueError naming the choices if unknown."""
  if name in BUILTIN:
    return BUILTIN[name]
  if name in COMPAT_NAMES:
    return _compat_spec(name)
  raise ValueError(f"unknown optimizer {name!r}; choose from {', '.join(names())}")


def resolve(name: str, hparams: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """All hyperparameters of ``name``: its defaults overridden by ``hparams``, validated.

  Raises:
    ValueError: a hyperparameter the optimizer does not take, or a bad value.
  """
  spec = get_spec(name)
  hparams = dict(hparams or {})
  unknown = sorted(set(hparams) - set(spec.defaults))
  if unknown:
    raise ValueError(f"optimizer {name} does not take {', '.join(unknown)} "
                     f"(it takes {', '.join(spec.defaults)})")
  resolved = {**spec.defaults, **hparams}
  for key, value in resolved.items():
    if key in CHECKS and (key in hparams or value is not None):
      CHECKS[key](f"{name}: {key}", value)
  return resolved


def create(name: str, hparams: Mapping[str, Any] | None = None, *,
           schedule: Callable[[float], optax.Schedule] | None = None
           ) -> optax.GradientTransformation:
  """The optimizer ``name`` with ``hparams`` (missing ones at their defaults).

  Args:
    name: one of :func:`names`.
    hparams: hyperparameters by common name (or a compat function's own name).
    schedule: maps the peak learning rate to an optax schedule (see
      :func:`make_schedule`); None for a constant learning rate.
  """
  resolved = resolve(name, hparams)
  if schedule is not None:
    resolved["learning_rate"] = schedule(resolved["learning_rate"])
  try:
    return get_spec(name).build(**resolved)
  except TypeError as e:
    raise ValueError(f"optimizer {name}: {e}") from e


SCHEDULES = ("constant", "cosine", "warmup_cosine", "onecycle", "cosine_annealing",
             "time_based", "cyclic")


def make_schedule(kind: str, total_steps: int, warmup_steps: int = 0,
                  steps_per_epoch: int | None = None
                  ) -> Callable[[float], optax.Schedule] | None:
  """A learning-rate schedule over ``total_steps``, as a function of the peak rate ``lr``.

  * ``constant``: None (a plain float).
  * ``cosine``: ``optax.cosine_decay_schedule`` from ``lr`` to 0.
  * ``warmup_cosine``: linear warm-up from 0 over ``warmup_steps``, then cosine to 0.
  * ``onecycle``: ``optax.cosine_onecycle_schedule`` (warm-up over the first 30%).
  * ``cosine_annealing``: torch's ``CosineAnnealingLR(T_max=total_steps)``
    (``phaseshift_jax.schedules.cosine_annealing_schedule``).
  * ``time_based``: ``lr / (1 + t / steps_per_epoch)``, the 004 write-up's
    time-based decay (``phaseshift_jax.schedules.time_based_decay``).
  * ``cyclic``: torch's triangular ``CyclicLR`` between ``lr / 10`` and ``lr``, one
    epoch up and one down (``phaseshift_jax.schedules.cyclic_schedule``).
  """
  if kind not in SCHEDULES:
    raise ValueError(f"unknown schedule {kind!r}; choose from {', '.join(SCHEDULES)}")
  if total_steps < 1:
    raise ValueError(f"a schedule needs at least one step, got {total_steps}")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"warm-up steps must be in 0..{total_steps}, got {warmup_steps}")
  if kind == "constant":
    return None
  if kind == "cosine":
    return lambda lr: optax.cosine_decay_schedule(lr, total_steps)
  if kind == "warmup_cosine":
    return lambda lr: optax.warmup_cosine_decay_schedule(0.0, lr, warmup_steps, total_steps)
  if kind == "onecycle":
    return lambda lr: optax.cosine_onecycle_schedule(total_steps, lr)
  epoch = max(1, steps_per_epoch or total_steps)
  if kind == "cosine_annealing":
    return lambda lr: schedules.cosine_annealing_schedule(lr, total_steps)
  if kind == "time_based":
    return lambda lr: schedules.time_based_decay(lr, 1.0, decay_steps=epoch)
  return lambda lr: schedules.cyclic_schedule(lr / 10, lr, step_size_up=epoch)


# ------------------------------------------------- command-line types (__main__.py, study.py)


def parse_assignment(text: str) -> tuple[str | None, str, Any]:
  """``--set [OPTIMIZER.]NAME=VALUE`` -> (optimizer or None, name, value).

  The value is a Python literal (number, tuple, True/False/None; ``true``/``false``
  in any case too), else the string itself.
  """
  key, sep, value = text.partition("=")
  if not sep or not key:
    raise argparse.ArgumentTypeError(f"expected [OPTIMIZER.]NAME=VALUE, got {text!r}")
  target, dot, name = key.rpartition(".")
  return (target if dot else None), name.strip().replace("-", "_"), _literal(value)


def _literal(text: str) -> Any:
  lowered = text.strip().lower()
  if lowered in ("true", "false"):
    return lowered == "true"
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError):
    return text


def positive_int(text: str) -> int:
  """An ``int`` >= 1 (an argparse ``type``)."""
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
  return value
