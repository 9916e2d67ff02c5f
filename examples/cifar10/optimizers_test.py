"""Tests of create_optimizer: every name builds the library's optimizer with the config's values."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phaseshift_jax
from examples.cifar10 import optimizers
from examples.cifar10.configs import default
from phaseshift_jax.compat import miniai
from phaseshift_jax.compat import torch


def _config(**settings):
  return dataclasses.replace(default.Config(), **settings)


def _run(tx, steps=3):
  params = {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([[0.5, 0.25]])}
  state = tx.init(params)
  for i in range(steps):
    grads = {"a": jnp.array([0.1, -0.2, 0.3]) * (i + 1), "b": jnp.array([[0.05, -0.1]]) / (i + 1)}
    updates, state = tx.update(grads, state, params)
    params = optax.apply_updates(params, updates)
  return params


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(optimizers.OPTIMIZERS))
def test_every_optimizer_builds_and_moves_the_parameters(name):
  params = _run(optimizers.create_optimizer(_config(optimizer=name)))
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(params))
  assert not np.allclose(params["a"], [1.0, -2.0, 3.0])
  assert name in optimizers.describe(name)


def test_the_names_build_the_library_optimizers_with_the_configs_values():
  kick = {"threshold": 0.01, "shift_boundary": 0.005, "min_gradient_magnitude": 0.0}
  pairs = [
      (_config(optimizer="adam", learning_rate=0.01, b2=0.99), optax.adam(0.01, b2=0.99)),
      (_config(optimizer="sgd", momentum=0.9), optax.sgd(0.1, 0.9)),
      (_config(optimizer="phase_shift", **kick), phaseshift_jax.phase_shift(0.1, **kick)),
      (_config(optimizer="phase_shift_adam", selection="last", **kick),
       phaseshift_jax.with_phase_shift(optax.adam(1e-3), **kick, selection="last")),
      (_config(optimizer="torch_adam", learning_rate=0.01, b2=0.9),
       torch.adam(0.01, betas=(0.9, 0.9))),
      (_config(optimizer="torch_sgd", learning_rate=0.1, momentum=0.9,
               optimizer_kwargs={"dampening": 0.1}), torch.sgd(0.1, 0.9, dampening=0.1)),
      (_config(optimizer="miniai_adam_with_annealing", learning_rate=0.01, weight_decay=0.1,
               b1=0.8, optimizer_kwargs={"anneal_rate": 0.9}),
       miniai.adam_with_annealing(0.01, wd=0.1, beta1=0.8, anneal_rate=0.9)),
  ]
  for config, reference in pairs:
    _assert_same(_run(optimizers.create_optimizer(config)), _run(reference))


@pytest.mark.parametrize("settings,match", [
    ({"optimizer": "adamax"}, "unknown optimizer 'adamax'.*phase_shift_adam"),
    ({"learning_rate": -0.1}, "learning_rate must be > 0"),
    ({"optimizer": "phase_shift", "shift_boundary": -1.0}, "shift_boundary must be >= 0"),
    ({"optimizer": "phase_shift", "selection": "first"}, "selection must be one of"),
    ({"optimizer": "torch_sgd", "nesterov": True}, "nesterov requires momentum"),
    ({"optimizer": "torch_sgd", "optimizer_kwargs": {"bogus": 1}}, "torch_sgd.*bogus"),
    ({"schedule": "linear"}, "unknown schedule 'linear'"),
    ({"schedule": "warmup_cosine", "epochs": 2, "warmup_epochs": 2.0},
     r"warmup_epochs must be in \[0, epochs\) for warmup_cosine"),
    ({"schedule": "warmup_cosine", "epochs": 1, "warmup_epochs": 5.0},
     r"warmup_epochs must be in \[0, epochs\) for warmup_cosine"),
])
def test_bad_settings_are_rejected_by_the_library_or_the_mapping(settings, match):
  with pytest.raises(ValueError, match=match):
    optimizers.create_optimizer(_config(**settings))


def test_a_setting_that_no_optimizer_reads_is_an_error():
  optimizers.check_settings([_config(optimizer="sgd", momentum=0.9), _config(momentum=0.9)])
  with pytest.raises(ValueError, match="momentum is set but adam does not take it"):
    optimizers.check_settings([_config(optimizer="adam", momentum=0.9)])
  with pytest.raises(ValueError, match="threshold is set but adam, sgd does not take it"):
    optimizers.check_settings([_config(optimizer=n, threshold=1e-3) for n in ("adam", "sgd")])


@pytest.mark.parametrize("schedule", optimizers.SCHEDULES)
def test_schedules_peak_at_the_learning_rate_and_drive_the_optimizer(schedule):
  config = _config(optimizer="sgd", learning_rate=0.2, schedule=schedule, epochs=10,
                   warmup_epochs=1.0)
  lr = optimizers.create_schedule(config, steps_per_epoch=10)
  values = np.array([float(lr(t)) if callable(lr) else lr for t in range(100)])
  assert values.max() == pytest.approx(0.2, rel=1e-3) and values.min() >= 0
  assert (schedule == "constant") == (values.min() == values.max())
  tx = optimizers.create_optimizer(config, steps_per_epoch=10)  # Step t moves by -lr(t) * g.
  state, g = tx.init({"w": jnp.zeros(1)}), {"w": jnp.ones(1)}
  for t in range(3):
    updates, state = tx.update(g, state, {"w": jnp.zeros(1)})
    np.testing.assert_allclose(updates["w"], -values[t], rtol=1e-5)
