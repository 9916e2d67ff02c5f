"""The CIFAR ResNet-14 of models.py instead of the CNN: slower, stronger."""

import dataclasses

from examples.cifar10.configs import default


def get_config() -> default.Config:
  return dataclasses.replace(default.get_config(), model="resnet")
