"""What the optimizer study searches and what its trials share.

:data:`SEARCH_SPACES` holds the searched hyperparameters of every optimizer,
:func:`suggest` draws a trial's values from them, and :class:`Settings` is
everything else a trial's :class:`train.Config` is made of, the same for every
trial of a study (a resumed study must have the same). The other study modules
(:mod:`study_storage`, :mod:`study_trials`, :mod:`study_report` and the command
in :mod:`study`) build on these.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import optuna

from examples.cifar10 import train

# Log-uniform ranges of the searched hyperparameters. The PhaseShift kick is
# +-min(threshold, shift_boundary) per element, not scaled by the learning rate.
_KICK = {"threshold": (1e-6, 1e-1), "shift_boundary": (1e-6, 1e-1),
         "min_gradient_magnitude": (1e-6, 1.0)}
SEARCH_SPACES: dict[str, dict[str, tuple[float, float]]] = {
    "adam": {"learning_rate": (1e-5, 1e-1)},
    "phase_shift": {"learning_rate": (1e-3, 1.0), **_KICK},
    "phase_shift_adam": {"learning_rate": (1e-5, 1e-1), **_KICK},
    "sgd": {"learning_rate": (1e-3, 1.0)},
}


class StudyError(Exception):
  """A study that cannot be run as asked (one-line message)."""


@dataclasses.dataclass(frozen=True)
class Settings:
  """What every trial of a study shares; a resumed study must have the same."""

  epochs: int = 10
  model: str = "cnn"
  width: int | None = None
  batch_size: int = 128
  eval_batch_size: int = 512
  augment: bool = True
  schedule: str = "constant"
  validation_fraction: float = 0.1
  train_size: int | None = None
  seed: int = 0
  fixed: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def config(self, optimizer: str, hparams: Mapping[str, Any], seed: int) -> train.Config:
    """The training configuration of one trial."""
    return train.Config(optimizer=optimizer, hparams={**self.fixed, **hparams},
                        model=self.model, width=self.width, epochs=self.epochs,
                        batch_size=self.batch_size, eval_batch_size=self.eval_batch_size,
                        seed=seed, augment=self.augment, schedule=self.schedule)

  def to_json(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "fixed": dict(self.fixed)}


def suggest(trial: optuna.Trial, optimizer: str) -> dict[str, float]:
  """The trial's hyperparameters from ``SEARCH_SPACES[optimizer]``."""
  return {name: trial.suggest_float(name, low, high, log=True)
          for name, (low, high) in SEARCH_SPACES[optimizer].items()}
