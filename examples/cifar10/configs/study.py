"""The original write-up's study: 35 trials x 10 epochs each for Adam and PhaseShift, judged
on a tenth of the training set held out; one line per trial instead of progress bars."""

import dataclasses

from examples.cifar10.configs import default


def get_config() -> default.Config:
  return dataclasses.replace(default.get_config(), optimizers="adam,phase_shift", trials=35,
                             epochs=10, validation_fraction=0.1, progress=False)
