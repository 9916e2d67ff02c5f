"""Flax NNX models for CIFAR-10, selectable by name: ``cnn`` and ``resnet``.

Every model is called as ``model(images, train=..., mask=...)`` on normalized
``(B, 32, 32, 3)`` images and returns ``(B, num_classes)`` logits. ``train``
selects batch statistics (True) or the running averages (False) in BatchNorm;
``mask`` (``bool (B,)``) leaves padding rows out of the batch statistics.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

LEAK = 0.1  # GeneralRelu of the 004 write-up: leaky ReLU (slope 0.1) shifted down by 0.4.
SUB = 0.4
BN_MOMENTUM = 0.9  # torch's BatchNorm momentum 0.1: running stats settle within an epoch.


def general_relu(x: jax.Array) -> jax.Array:
  """Leaky ReLU with slope ``LEAK`` minus ``SUB``, so activations are centred nearer 0."""
  return jax.nn.leaky_relu(x, LEAK) - SUB


def _kaiming(leak: float = 0.0) -> nnx.Initializer:
  """He-normal initialization for a (leaky) ReLU with negative slope ``leak``."""
  return nnx.initializers.variance_scaling(2.0 / (1.0 + leak**2), "fan_in", "normal")


def _bn_mask(mask: jax.Array | None) -> jax.Array | None:
  return None if mask is None else mask.astype(bool)[:, None, None, None]


class ConvBlock(nnx.Module):
  """3x3 convolution (stride 2 halves the image) -> BatchNorm -> GeneralRelu."""

  def __init__(self, in_features: int, out_features: int, *, stride: int = 2,
               rngs: nnx.Rngs):
    self.conv = nnx.Conv(in_features, out_features, (3, 3), strides=stride, padding="SAME",
                         use_bias=False, kernel_init=_kaiming(LEAK), rngs=rngs)
    self.norm = nnx.BatchNorm(out_features, momentum=BN_MOMENTUM, rngs=rngs)

  def __call__(self, x, *, train: bool, mask: jax.Array | None = None):
    x = self.norm(self.conv(x), use_running_average=not train, mask=_bn_mask(mask))
    return general_relu(x)


class CNN(nnx.Module):
  """The small CNN: four stride-2 ConvBlocks (32 -> 2 pixels) and a stride-2 conv head.

  Five blocks in the spirit of the 004 write-up's ``get_model(act_gr,
  norm=BatchNorm2d)``: convolutions that halve the image until a 1x1 map of
  class scores remains, which is flattened to logits.
  """

  def __init__(self, *, widths: tuple[int, ...] = (16, 32, 64, 128), num_classes: int = 10,
               rngs: nnx.Rngs):
    channels = (3, *widths)
    self.blocks = nnx.List([ConvBlock(a, b, rngs=rngs)
                            for a, b in zip(channels[:-1], channels[1:])])
    self.head = nnx.Conv(widths[-1], num_classes, (3, 3), strides=2, padding="SAME",
                         rngs=rngs)

  def __call__(self, x, *, train: bool = False, mask: jax.Array | None = None):
    for block in self.blocks:
      x = block(x, train=train, mask=mask)
    return jnp.mean(self.head(x), axis=(1, 2))  # 1x1 for 32x32 inputs: a flatten.


class ResidualBlock(nnx.Module):
  """Basic ResNet block: two 3x3 conv-BN layers plus a (projected) shortcut, then ReLU."""

  def __init__(self, in_features: int, out_features: int, *, stride: int, rngs: nnx.Rngs):
    conv = functools.partial(nnx.Conv, padding="SAME", use_bias=False,
                             kernel_init=_kaiming(), rngs=rngs)
    bn = functools.partial(nnx.BatchNorm, momentum=BN_MOMENTUM, rngs=rngs)
    self.conv1 = conv(in_features, out_features, (3, 3), strides=stride)
    self.norm1 = bn(out_features)
    self.conv2 = conv(out_features, out_features, (3, 3))
    # Zero scale: each block starts as the identity, which makes deep stacks train easily.
    self.norm2 = bn(out_features, scale_init=nnx.initializers.zeros)
    if stride != 1 or in_features != out_features:
      self.proj = conv(in_features, out_features, (1, 1), strides=stride)
      self.proj_norm = bn(out_features)
    else:
      self.proj = self.proj_norm = None

  def __call__(self, x, *, train: bool, mask: jax.Array | None = None):
    ra, m = not train, _bn_mask(mask)
    y = jax.nn.relu(self.norm1(self.conv1(x), use_running_average=ra, mask=m))
    y = self.norm2(self.conv2(y), use_running_average=ra, mask=m)
    if self.proj is not None:
      x = self.proj_norm(self.proj(x), use_running_average=ra, mask=m)
    return jax.nn.relu(x + y)


class ResNet(nnx.Module):
  """A CIFAR ResNet (He et al. 2016, section 4.2): a 3x3 stem and three stages of blocks.

  Stage ``s`` has ``blocks_per_stage`` residual blocks of ``width * 2**s``
  channels; stages 2 and 3 halve the image. ``blocks_per_stage=3`` with width
  16 is ResNet-20; the default (2 blocks, width 16) is ResNet-14.
  """

  def __init__(self, *, width: int = 16, blocks_per_stage: int = 2, num_classes: int = 10,
               rngs: nnx.Rngs):
    self.stem = nnx.Conv(3, width, (3, 3), padding="SAME", use_bias=False,
                         kernel_init=_kaiming(), rngs=rngs)
    self.stem_norm = nnx.BatchNorm(width, momentum=BN_MOMENTUM, rngs=rngs)
    blocks, features = [], width
    for stage in range(3):
      for i in range(blocks_per_stage):
        out = width * 2**stage
        blocks.append(ResidualBlock(features, out, stride=2 if stage and not i else 1,
                                    rngs=rngs))
        features = out
    self.blocks = nnx.List(blocks)
    self.head = nnx.Linear(features, num_classes, rngs=rngs)

  def __call__(self, x, *, train: bool = False, mask: jax.Array | None = None):
    x = self.stem_norm(self.stem(x), use_running_average=not train, mask=_bn_mask(mask))
    x = jax.nn.relu(x)
    for block in self.blocks:
      x = block(x, train=train, mask=mask)
    return self.head(jnp.mean(x, axis=(1, 2)))


def _cnn(width: int | None, rngs: nnx.Rngs) -> CNN:
  w = 16 if width is None else width
  return CNN(widths=(w, 2 * w, 4 * w, 8 * w), rngs=rngs)


def _resnet(width: int | None, rngs: nnx.Rngs) -> ResNet:
  return ResNet(width=16 if width is None else width, rngs=rngs)


MODELS: dict[str, Callable[[int | None, nnx.Rngs], nnx.Module]] = {
    "cnn": _cnn,
    "resnet": _resnet,
}


def create_model(name: str, *, width: int | None = None, seed: int = 0) -> nnx.Module:
  """The model called ``name`` (see ``MODELS``), initialized from ``seed``.

  ``width`` is the channel count of the first layer (cnn: 16, doubling per block;
  resnet: 16, doubling per stage). On XLA:CPU the cnn's backward pass slows down
  sharply from width 32 on (the input gradient of its last stride-2 conv, 4x4 to
  2x2 pixels with many channels, takes a slow path), so 16 is the default.
  """
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
  if width is not None and width < 1:
    raise ValueError(f"width must be >= 1, got {width}")
  key = jax.random.key(seed)
  if isinstance(key, jax.core.Tracer):  # Inside nnx.eval_shape, jax.jit and the like.
    return MODELS[name](width, nnx.Rngs(key))
  graphdef, init = _initializer(name, width)
  return nnx.merge(graphdef, init(key))


@functools.cache
def _initializer(name: str, width: int | None):
  """The model's graph and a jitted ``key -> state`` initializer, built once per shape.

  XLA:CPU spends seconds optimizing the random-number code of every kernel shape
  (more for small ones), far longer than running it; initialization runs once,
  so it is compiled at LLVM optimization level 0: ten times faster to build, and the
  same values as an optimized or eager initialization up to one float32 rounding.
  """
  graphdef, _ = nnx.split(nnx.eval_shape(lambda: MODELS[name](width, nnx.Rngs(0))))
  init = jax.jit(lambda key: nnx.state(MODELS[name](width, nnx.Rngs(key))),
                 compiler_options={"xla_backend_optimization_level": 0})
  return graphdef, init
