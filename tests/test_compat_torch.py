"""phaseshift_jax.compat.torch against torch.optim: 200 steps, MLP and CNN, float32 and float64."""

import inspect
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from phaseshift_jax.compat import torch as ours
from tests.crosscheck.checks import case, check_case
from tests.crosscheck.harness import MODELS

O = torch.optim


MOMENTUM = (("momentum_buffer", "trace"),)
ADAM = (("exp_avg", "mu"), ("exp_avg_sq", "nu"))
AMSGRAD = ADAM + (("max_exp_avg_sq", "nu_max"),)

CASES = [
    case("torch.sgd()", O.SGD, ours.sgd),
    case("torch.sgd(momentum)", O.SGD, ours.sgd, MOMENTUM, lr=0.05, momentum=0.9),
    case(
        "torch.sgd(momentum, dampening, weight_decay)", O.SGD, ours.sgd, MOMENTUM,
        lr=0.05, momentum=0.9, dampening=0.5, weight_decay=0.01,
    ),
    case(
        "torch.sgd(nesterov, weight_decay)", O.SGD, ours.sgd, MOMENTUM,
        lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01,
    ),
    case(
        "torch.sgd(momentum, maximize)", O.SGD, ours.sgd, MOMENTUM,
        lr=0.01, momentum=0.5, maximize=True,
    ),
    case("torch.adagrad()", O.Adagrad, ours.adagrad, (("sum", "sum_of_squares"),)),
    case(
        "torch.adagrad(lr_decay, weight_decay, initial_accumulator_value, eps)", O.Adagrad,
        ours.adagrad, (("sum", "sum_of_squares"),),
        lr=0.05, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, eps=1e-6,
    ),
    case("torch.rmsprop()", O.RMSprop, ours.rmsprop, (("square_avg", "nu"),)),
    case(
        "torch.rmsprop(alpha, eps, weight_decay, momentum)", O.RMSprop, ours.rmsprop,
        (("square_avg", "nu"),) + MOMENTUM,
        lr=1e-3, alpha=0.9, eps=1e-6, weight_decay=0.01, momentum=0.5,
    ),
    case(
        "torch.rmsprop(centered, momentum, maximize)", O.RMSprop, ours.rmsprop,
        (("square_avg", "nu"), ("grad_avg", "mu")) + MOMENTUM,
        lr=1e-3, momentum=0.5, centered=True, maximize=True,
    ),
    case("torch.adam()", O.Adam, ours.adam, ADAM),
    case(
        "torch.adam(betas, eps, weight_decay)", O.Adam, ours.adam, ADAM,
        lr=2e-3, betas=(0.8, 0.99), eps=1e-7, weight_decay=0.01,
    ),
    case(
        "torch.adam(amsgrad, weight_decay)", O.Adam, ours.adam, AMSGRAD,
        lr=1e-3, weight_decay=0.01, amsgrad=True,
    ),
    case("torch.adamw()", O.AdamW, ours.adamw, ADAM),
    case(
        "torch.adamw(amsgrad, weight_decay, maximize)", O.AdamW, ours.adamw, AMSGRAD,
        lr=1e-3, weight_decay=0.1, amsgrad=True, maximize=True,
    ),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_torch(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


@pytest.mark.parametrize(
    "ours_fn, torch_cls",
    [(ours.sgd, O.SGD), (ours.adagrad, O.Adagrad), (ours.rmsprop, O.RMSprop),
     (ours.adam, O.Adam), (ours.adamw, O.AdamW)],
)
def test_defaults_are_torchs(ours_fn, torch_cls):
  torch_defaults = inspect.signature(torch_cls).parameters
  for name, parameter in inspect.signature(ours_fn).parameters.items():
    assert parameter.default == torch_defaults[name].default, name


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (ours.sgd, dict(lr=-1.0), "lr"),
        (ours.sgd, dict(momentum=0.0, nesterov=True), "nesterov"),
        (ours.sgd, dict(momentum=0.9, dampening=0.1, nesterov=True), "nesterov"),
        (ours.adagrad, dict(lr_decay=-0.1), "lr_decay"),
        (ours.adagrad, dict(initial_accumulator_value=-1.0), "initial_accumulator_value"),
        (ours.rmsprop, dict(alpha=-0.5), "alpha"),
        (ours.adam, dict(betas=(0.9, 1.0)), "betas[1]"),
        (ours.adamw, dict(weight_decay=-0.1), "weight_decay"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name.replace("[", r"\[")):
    factory(**kwargs)


@pytest.mark.parametrize("alpha", [1.0, 1.5])
def test_rmsprop_takes_any_alpha_torch_takes(alpha):
  """torch checks only ``alpha >= 0``; so do we, with torch's steps (float64, 3 steps)."""
  p = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
  optimizer = O.RMSprop([p], lr=0.01, alpha=alpha)
  tx = ours.rmsprop(lr=0.01, alpha=alpha)
  with jax.enable_x64(True):
    q = jnp.array([1.0, -2.0])
    state = tx.init(q)
    for _ in range(3):
      p.grad = 2 * p.detach()
      optimizer.step()
      updates, state = tx.update(2 * q, state, q)
      q = optax.apply_updates(q, updates)
  np.testing.assert_allclose(np.asarray(q), p.detach().numpy(), rtol=1e-12)


def test_compat_torch_does_not_import_torch():
  code = "import sys, phaseshift_jax.compat; assert 'torch' not in sys.modules, 'torch imported'"
  subprocess.run([sys.executable, "-c", code], check=True)
