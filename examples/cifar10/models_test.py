"""Tests of the CIFAR-10 models: shapes, names, and masked BatchNorm statistics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from examples.cifar10 import models


@nnx.jit(static_argnames="train")
def _apply(model, x, train, mask=None):
  return model(x, train=train, mask=mask)


@pytest.mark.parametrize("name,width", [("cnn", 4), ("resnet", 4)])
def test_logits_shape_and_modes(name, width):
  model = models.create_model(name, width=width, seed=0)
  x = jax.random.normal(jax.random.key(1), (5, 32, 32, 3))
  stats_before = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
  logits = _apply(model, x, True)
  assert logits.shape == (5, 10) and bool(jnp.isfinite(logits).all())
  stats_after = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))
  moved = jax.tree.leaves(jax.tree.map(lambda a, b: bool((a != b).any()),
                                       stats_before, stats_after))
  assert all(moved)  # Training mode updates every running statistic ...
  eval_logits = _apply(model, x, False)
  np.testing.assert_array_equal(_apply(model, x, False), eval_logits)  # ... evaluation none.


def test_cnn_has_five_blocks_of_stride_two():
  model = nnx.eval_shape(lambda: models.create_model("cnn"))  # Shapes only, nothing runs.
  assert len(model.blocks) == 4
  assert [b.conv.kernel.shape[-1] for b in model.blocks] == [16, 32, 64, 128]
  assert model.head.kernel.shape == (3, 3, 128, 10)


def test_mask_leaves_padding_out_of_batch_statistics():
  x = jax.random.normal(jax.random.key(2), (6, 32, 32, 3))
  mask = jnp.array([True] * 4 + [False] * 2)
  padded = x.at[4:].set(100.0)  # Garbage in the padding rows.
  a = models.create_model("cnn", width=4, seed=0)
  b = models.create_model("cnn", width=4, seed=0)
  out_masked = _apply(a, padded, True, mask)[:4]
  out_alone = _apply(b, x[:4], True)
  np.testing.assert_allclose(out_masked, out_alone, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(nnx.state(a, nnx.BatchStat)["blocks"][0]["norm"]["mean"][...],
                             nnx.state(b, nnx.BatchStat)["blocks"][0]["norm"]["mean"][...],
                             rtol=1e-5, atol=1e-6)


def test_seed_fixes_the_initialization_and_bad_names_fail():
  a = nnx.to_pure_dict(nnx.state(models.create_model("cnn", width=4, seed=3)))
  b = nnx.to_pure_dict(nnx.state(models.create_model("cnn", width=4, seed=3)))
  c = nnx.to_pure_dict(nnx.state(models.create_model("cnn", width=4, seed=4)))
  assert all(jax.tree.leaves(jax.tree.map(lambda u, v: bool((u == v).all()), a, b)))
  assert not all(jax.tree.leaves(jax.tree.map(lambda u, v: bool((u == v).all()), a, c)))
  with pytest.raises(ValueError, match="unknown model 'vgg'"):
    models.create_model("vgg")
  with pytest.raises(ValueError, match="width"):
    models.create_model("cnn", width=0)
