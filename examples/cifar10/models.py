"""Flax NNX models for CIFAR-10, ``cnn`` (the default) and ``resnet``: normalized ``(B, 32, 32, 3)``
images to ``(B, 10)`` logits; ``train=True`` uses BatchNorm's batch statistics (and updates
the running averages that ``train=False`` uses)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

BN_MOMENTUM = 0.9  # torch's momentum 0.1: the running statistics settle within an epoch.


def general_relu(x: jax.Array) -> jax.Array:
  """The 004 write-up's GeneralRelu: leaky ReLU (slope 0.1) minus 0.4."""
  return jax.nn.leaky_relu(x, 0.1) - 0.4


def _he_normal(leak: float = 0.0) -> nnx.Initializer:
  return nnx.initializers.variance_scaling(2.0 / (1.0 + leak**2), "fan_in", "normal")


class ConvBlock(nnx.Module):
  """A 3x3 stride-2 convolution (halving the image), BatchNorm, GeneralRelu."""

  def __init__(self, in_features: int, out_features: int, *, rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, out_features, (3, 3), strides=2, use_bias=False,
                         kernel_init=_he_normal(0.1), rngs=rngs)
    self.norm = nnx.BatchNorm(out_features, momentum=BN_MOMENTUM, rngs=rngs)

  def __call__(self, x, *, train: bool):
    return general_relu(self.norm(self.conv(x), use_running_average=not train))


class CNN(nnx.Module):
  """The 004 write-up's ``get_model(act_gr, norm=BatchNorm2d)``: four ConvBlocks (32 to 2
  pixels) and a stride-2 convolution to the 10 class scores at 1x1."""

  def __init__(self, width: int = 16, *, rngs: nnx.Rngs):
    channels = (3, width, 2 * width, 4 * width, 8 * width)
    self.blocks = nnx.List([ConvBlock(a, b, rngs=rngs)
                            for a, b in zip(channels[:-1], channels[1:])])
    self.head = nnx.Conv(channels[-1], 10, (3, 3), strides=2, rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    for block in self.blocks:
      x = block(x, train=train)
    return jnp.mean(self.head(x), axis=(1, 2))


class ResidualBlock(nnx.Module):
  """A basic ResNet block: two 3x3 conv-BN layers and a (projected) shortcut."""

  def __init__(self, in_features: int, out_features: int, stride: int, *, rngs: nnx.Rngs):
    conv = functools.partial(nnx.Conv, use_bias=False, kernel_init=_he_normal(), rngs=rngs)
    norm = functools.partial(nnx.BatchNorm, out_features, momentum=BN_MOMENTUM, rngs=rngs)
    self.conv1, self.norm1 = conv(in_features, out_features, (3, 3), strides=stride), norm()
    # A zero scale makes each block start as the identity.
    self.conv2 = conv(out_features, out_features, (3, 3))
    self.norm2 = norm(scale_init=nnx.initializers.zeros)
    projected = stride != 1 or in_features != out_features
    self.proj = conv(in_features, out_features, (1, 1), strides=stride) if projected else None
    self.proj_norm = norm() if projected else None

  def __call__(self, x, *, train: bool):
    y = jax.nn.relu(self.norm1(self.conv1(x), use_running_average=not train))
    y = self.norm2(self.conv2(y), use_running_average=not train)
    if self.proj is not None:
      x = self.proj_norm(self.proj(x), use_running_average=not train)
    return jax.nn.relu(x + y)


class ResNet(nnx.Module):
  """A CIFAR ResNet (He et al. 2016, 4.2): a 3x3 stem, three stages of two blocks of
  ``width``, ``2 width``, ``4 width`` channels (ResNet-14), global average pooling."""

  def __init__(self, width: int = 16, blocks_per_stage: int = 2, *, rngs: nnx.Rngs):
    self.stem = nnx.Conv(3, width, (3, 3), use_bias=False, kernel_init=_he_normal(), rngs=rngs)
    self.stem_norm = nnx.BatchNorm(width, momentum=BN_MOMENTUM, rngs=rngs)
    blocks, features = [], width
    for stage in range(3):
      for i in range(blocks_per_stage):
        stride = 2 if stage and not i else 1
        blocks.append(ResidualBlock(features, width * 2**stage, stride, rngs=rngs))
        features = width * 2**stage
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(features, 10, rngs=rngs)

  def __call__(self, x, *, train: bool = False):
    x = jax.nn.relu(self.stem_norm(self.stem(x), use_running_average=not train))
    for block in self.blocks:
      x = block(x, train=train)
    return self.head(jnp.mean(x, axis=(1, 2)))


MODELS = {"cnn": CNN, "resnet": ResNet}


def create_model(name: str, *, width: int | None = None, seed: int | jax.Array = 0
                 ) -> nnx.Module:
  """Model ``name`` with first-layer ``width`` (16: XLA:CPU takes a slow path for the input
  gradient of the CNN's last stride-2 convolution with more channels), from ``seed``."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
  if width is not None and width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  width, key = width or 16, jax.random.key(seed)
  if isinstance(key, jax.core.Tracer):  # Under nnx.vmap, nnx.eval_shape and the like.
    return MODELS[name](width, rngs=nnx.Rngs(key))
  graphdef, init = _initializer(name, width)
  return nnx.merge(graphdef, init(key))


@functools.cache
def _initializer(name: str, width: int):
  """The graph and a jitted initializer at XLA's lowest optimization level: XLA:CPU spends
  seconds optimizing random-number code that runs once (same values to a float32 rounding)."""
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: MODELS[name](width, rngs=nnx.Rngs(0))))
  init = jax.jit(lambda key: nnx.state(MODELS[name](width, rngs=nnx.Rngs(key))),
                 compiler_options={"xla_backend_optimization_level": 0})
  return graphdef, init
