"""Tests of the models: shapes, the two BatchNorm modes, structure, seeds, bad names."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.cifar10 import models


@nnx.jit(static_argnames="train")
def _apply(model, x, train):
  return model(x, train=train)


def _leaves(model, kind=nnx.Variable):
  return jax.tree.leaves(nnx.to_pure_dict(nnx.state(model, kind)))


@pytest.mark.parametrize("name", ["cnn", "resnet"])
def test_logits_and_the_two_batchnorm_modes(name):
  model = models.create_model(name, width=4, seed=0)
  x = jax.random.normal(jax.random.key(1), (5, 32, 32, 3))
  before = _leaves(model, nnx.BatchStat)
  logits = _apply(model, x, True)
  assert logits.shape == (5, 10) and bool(jnp.isfinite(logits).all())
  after = _leaves(model, nnx.BatchStat)
  assert all((a != b).any() for a, b in zip(before, after))  # Training moves every statistic,
  np.testing.assert_array_equal(_apply(model, x, False), _apply(model, x, False))
  assert all((a == b).all() for a, b in zip(after, _leaves(model, nnx.BatchStat)))  # eval none.


def test_cnn_halves_the_image_four_times_with_doubling_channels():
  model = nnx.eval_shape(lambda: models.create_model("cnn"))  # Shapes only.
  assert [b.conv.kernel.shape[-1] for b in model.blocks] == [16, 32, 64, 128]
  assert [b.conv.strides for b in model.blocks] == [2] * 4 and model.head.strides == 2
  assert model.head.kernel.shape == (3, 3, 128, 10)


def test_the_seed_fixes_the_initialization_and_bad_names_fail():
  a, b, c = (_leaves(models.create_model("cnn", width=4, seed=s)) for s in (3, 3, 4))
  assert all((x == y).all() for x, y in zip(a, b))
  assert not all((x == y).all() for x, y in zip(a, c))
  with pytest.raises(ValueError, match="unknown model 'vgg'"):
    models.create_model("vgg")
  with pytest.raises(ValueError, match="width"):
    models.create_model("cnn", width=0)
