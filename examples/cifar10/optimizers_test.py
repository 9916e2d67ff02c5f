"""Tests of the optimizer registry: names, defaults, validation, compat mapping, schedules."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import phaseshift_jax
from examples.cifar10 import optimizers
from phaseshift_jax.compat import miniai
from phaseshift_jax.compat import torch as torch_compat


def _params():
  return {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array([[0.5, 0.25]])}


def _grads(i):
  return {"a": jnp.array([0.1, -0.2, 0.3]) * (i + 1), "b": jnp.array([[0.05, -0.1]]) / (i + 1)}


def _run(tx, steps=3):
  params, state = _params(), tx.init(_params())
  for i in range(steps):
    updates, state = tx.update(_grads(i), state, params)
    params = optax.apply_updates(params, updates)
  return params


def _assert_same(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", list(optimizers.BUILTIN))
def test_every_builtin_optimizer_steps(name):
  params = _run(optimizers.create(name))
  assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(params))
  assert any(bool((x != y).any()) for x, y in zip(jax.tree.leaves(params),
                                                    jax.tree.leaves(_params())))


def test_builtins_are_the_library_optimizers():
  _assert_same(_run(optimizers.create("adam", {"learning_rate": 0.01, "b2": 0.99})),
               _run(optax.adam(0.01, b2=0.99)))
  _assert_same(_run(optimizers.create("sgd", {"learning_rate": 0.1, "momentum": 0.9})),
               _run(optax.sgd(0.1, 0.9)))
  kick = {"threshold": 0.01, "shift_boundary": 0.005, "min_gradient_magnitude": 0.0}
  _assert_same(_run(optimizers.create("phase_shift", {"learning_rate": 0.1, **kick})),
               _run(phaseshift_jax.phase_shift(0.1, **kick)))
  _assert_same(_run(optimizers.create("phase_shift_adam", {"learning_rate": 0.01, **kick})),
               _run(phaseshift_jax.with_phase_shift(optax.adam(0.01), **kick)))


def test_phase_shift_defaults_kick_by_one_tenth_of_a_milli():
  resolved = optimizers.resolve("phase_shift")
  assert min(resolved["threshold"], resolved["shift_boundary"]) == pytest.approx(1e-4)
  assert resolved["learning_rate"] == pytest.approx(0.1)


@pytest.mark.parametrize("name,hparams,match", [
    ("adam", {"learning_rate": -0.1}, "learning_rate must be > 0"),
    ("adam", {"learning_rate": 0.0}, "learning_rate must be > 0"),
    ("adam", {"learning_rate": float("nan")}, "finite"),
    ("sgd", {"momentum": 1.0}, "momentum must be < 1"),
    ("adam", {"b2": -0.5}, "b2 must be >= 0"),
    ("phase_shift", {"shift_boundary": -1.0}, "shift_boundary must be >= 0"),
    ("phase_shift", {"selection": "first"}, "selection must be one of argmax, last"),
    ("sgd", {"nesterov": "yes"}, "nesterov must be true or false"),
    ("adam", {"momentum": 0.9}, "adam does not take momentum"),
])
def test_bad_hyperparameters_name_the_problem(name, hparams, match):
  with pytest.raises(ValueError, match=match):
    optimizers.create(name, hparams)


def test_unknown_optimizer_lists_the_choices():
  with pytest.raises(ValueError, match="unknown optimizer 'adamax'.*phase_shift_adam"):
    optimizers.get_spec("adamax")
  assert {"adam", "sgd", "phase_shift", "phase_shift_adam", "torch_sgd", "minima_adam",
          "miniai_adam_with_annealing"} <= set(optimizers.names())


def test_torch_family_maps_common_names():
  spec = optimizers.get_spec("torch_adam")
  assert {"learning_rate", "b1", "b2", "eps", "weight_decay"} <= set(spec.defaults)
  _assert_same(_run(optimizers.create("torch_adam", {"learning_rate": 0.01, "b2": 0.9})),
               _run(torch_compat.adam(0.01, betas=(0.9, 0.9))))
  _assert_same(
      _run(optimizers.create("torch_sgd", {"learning_rate": 0.1, "momentum": 0.9,
                                           "dampening": 0.1})),
      _run(torch_compat.sgd(0.1, momentum=0.9, dampening=0.1)))
  with pytest.raises(ValueError, match="torch_sgd does not take b1"):
    optimizers.create("torch_sgd", {"b1": 0.9})


def test_miniai_family_maps_lr_wd_and_betas():
  hp = {"learning_rate": 0.01, "weight_decay": 0.1, "b1": 0.8, "anneal_rate": 0.9}
  _assert_same(_run(optimizers.create("miniai_adam_with_annealing", hp)),
               _run(miniai.adam_with_annealing(0.01, wd=0.1, beta1=0.8, anneal_rate=0.9)))


def test_schedules_peak_at_the_learning_rate():
  for kind in optimizers.SCHEDULES:
    make = optimizers.make_schedule(kind, total_steps=100, warmup_steps=10, steps_per_epoch=10)
    if kind == "constant":
      assert make is None
      continue
    values = np.array([float(make(0.2)(t)) for t in range(100)])
    assert values.max() == pytest.approx(0.2, rel=1e-3), kind
    assert values.min() >= 0, kind
  with pytest.raises(ValueError, match="unknown schedule"):
    optimizers.make_schedule("linear", 10)
  # An optimizer with a schedule follows it: step t of cosine-decayed SGD is -lr(t) * g.
  tx = optimizers.create("sgd", {"learning_rate": 1.0},
                         schedule=optimizers.make_schedule("cosine", 4))
  state = tx.init(_params())
  for t in range(4):
    updates, state = tx.update(_grads(0), state, _params())
    np.testing.assert_allclose(updates["a"], -0.5 * (1 + np.cos(np.pi * t / 4)) * _grads(0)["a"],
                               rtol=1e-5)
