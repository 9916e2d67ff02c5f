"""The original write-up's study: 35 trials x 10 epochs for Adam and PhaseShift.

A tenth of the training set is held out as the validation split that the trials are
judged on; no progress bars, one line per trial.
"""

import dataclasses

from examples.cifar10.configs import default


def get_config() -> default.Config:
  return dataclasses.replace(default.get_config(), optimizers="adam,phase_shift", trials=35,
                             epochs=10, validation_fraction=0.1, progress=False)
