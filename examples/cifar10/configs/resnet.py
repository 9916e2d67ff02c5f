"""A CIFAR ResNet-14 (3 stages of 2 basic blocks, 16-32-64 channels): slower, stronger."""

import dataclasses

from examples.cifar10.configs import default


def get_config() -> default.Config:
  return dataclasses.replace(default.get_config(), model="resnet")
