"""phaseshift_jax.compat.miniai against torch re-implementations of the post's optimizers."""

import inspect

import jax.numpy as jnp
import pytest

from phaseshift_jax.compat import miniai
from tests.crosscheck import torch_reference_miniai as ref
from tests.crosscheck.checks import case, check_case
from tests.crosscheck.harness import MODELS

POST_LR = 6e-3  # the learning rate the post trains with; miniai's optimizers have no default


ADAM = (("avg", "mu"), ("sqr_avg", "nu"))

CASES = [
    case("miniai.sgd(lr)", ref.SGD, miniai.sgd, lr=POST_LR),
    case("miniai.sgd(lr, wd)", ref.SGD, miniai.sgd, lr=0.05, wd=0.01),
    case("miniai.adam(lr)", ref.Adam, miniai.adam, ADAM, lr=POST_LR),
    case(
        "miniai.adam(lr, wd, betas, eps)", ref.Adam, miniai.adam, ADAM,
        lr=1e-3, wd=0.05, beta1=0.8, beta2=0.999, eps=1e-6,
    ),
    case(
        "miniai.adam_with_annealing(lr)", ref.AdamWithAnnealing, miniai.adam_with_annealing, ADAM,
        lr=POST_LR,
    ),
    case(
        "miniai.adam_with_annealing(lr, wd, betas, eps, anneal_rate)", ref.AdamWithAnnealing,
        miniai.adam_with_annealing, ADAM,
        lr=1e-3, wd=0.05, beta1=0.8, beta2=0.999, eps=1e-7, anneal_rate=0.99,
    ),
    case(
        "miniai.adam_with_annealing(lr, anneal_every)", ref.AdamWithAnnealing,
        miniai.adam_with_annealing, ADAM, lr=3e-3, anneal_rate=0.5, anneal_every=50,
    ),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


@pytest.mark.parametrize(
    "factory, defaults",
    [
        (miniai.sgd, dict(lr=inspect.Parameter.empty, wd=0.0)),
        (miniai.adam, dict(lr=inspect.Parameter.empty, wd=0.0, beta1=0.9, beta2=0.99, eps=1e-5)),
        (
            miniai.adam_with_annealing,
            dict(lr=inspect.Parameter.empty, wd=0.0, beta1=0.9, beta2=0.99, eps=1e-5,
                 anneal_rate=0.97, anneal_every=1),
        ),
    ],
)
def test_defaults_are_the_posts(factory, defaults):
  signature = inspect.signature(factory).parameters
  assert {name: p.default for name, p in signature.items()} == defaults


def test_eps_placement_differs_between_the_two_adams():
  """With a zero second moment, eps inside the root gives g/sqrt(eps), outside g/eps."""
  params = [jnp.zeros(3)]
  tiny = [jnp.full(3, 1e-6)]  # bias-corrected v = 1e-12, far below eps = 1e-5
  inside = miniai.adam(1.0)
  outside = miniai.adam_with_annealing(1.0)
  step_inside, _ = inside.update(tiny, inside.init(params), params)
  step_outside, _ = outside.update(tiny, outside.init(params), params)
  assert jnp.allclose(step_inside[0], -1e-6 / jnp.sqrt(1e-12 + 1e-5), rtol=1e-5)
  assert jnp.allclose(step_outside[0], -1e-6 / (1e-6 + 1e-5), rtol=1e-5)


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (miniai.sgd, dict(lr=-0.1), "lr"),
        (miniai.adam, dict(lr=0.1, beta2=1.0), "beta2"),
        (miniai.adam_with_annealing, dict(lr=0.1, anneal_every=0), "anneal_every"),
        (miniai.adam_with_annealing, dict(lr=0.1, anneal_rate=-0.5), "anneal_rate"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)
