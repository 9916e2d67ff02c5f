"""phaseshift_jax.compat.minima against torch re-implementations of minima's documented rules."""

import inspect

import pytest

from phaseshift_jax.compat import minima
from tests.crosscheck import torch_reference_minima as ref
from tests.crosscheck.checks import case, check_case
from tests.crosscheck.harness import MODELS


ADAM = (("exp_avg", "mu"), ("exp_avg_sq", "nu"))

CASES = [
    case("minima.sgd()", ref.SGD, minima.sgd),
    case(
        "minima.sgd(momentum, wd)", ref.SGD, minima.sgd, (("velocity", "ema"),),
        lr=0.05, momentum=0.9, wd=0.01,
    ),
    case("minima.adagrad()", ref.AdaGrad, minima.adagrad, (("sum_sq", "sum_of_squares"),)),
    case(
        "minima.adagrad(wd, eps)", ref.AdaGrad, minima.adagrad, (("sum_sq", "sum_of_squares"),),
        lr=0.05, wd=0.01, eps=1e-6,
    ),
    case("minima.rmsprop()", ref.RMSProp, minima.rmsprop, (("cache", "nu"),)),
    case(
        "minima.rmsprop(wd, eps, rho)", ref.RMSProp, minima.rmsprop, (("cache", "nu"),),
        lr=3e-3, wd=0.01, eps=1e-6, rho=0.8,
    ),
    case("minima.adam()", ref.Adam, minima.adam, ADAM),
    case(
        "minima.adam(betas, eps, weight_decay)", ref.Adam, minima.adam, ADAM,
        lr=1e-3, beta1=0.8, beta2=0.99, eps=1e-7, weight_decay=0.05,
    ),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_reference(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


@pytest.mark.parametrize(
    "factory, defaults",
    [
        (minima.sgd, dict(lr=0.01, momentum=0.0, wd=0.0)),
        (minima.adagrad, dict(lr=0.001, wd=0.0, eps=1e-7)),
        (minima.rmsprop, dict(lr=0.001, wd=0.0, eps=1e-7, rho=0.9)),
        (minima.adam, dict(lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0)),
    ],
)
def test_defaults_are_the_documents(factory, defaults):
  signature = inspect.signature(factory).parameters
  assert {name: p.default for name, p in signature.items()} == defaults


@pytest.mark.parametrize(
    "reference, factory",
    [(ref.SGD, minima.sgd), (ref.AdaGrad, minima.adagrad), (ref.RMSProp, minima.rmsprop),
     (ref.Adam, minima.adam)],
)
def test_reference_has_the_same_defaults(reference, factory):
  ours = {n: p.default for n, p in inspect.signature(factory).parameters.items()}
  theirs = {
      n: p.default for n, p in inspect.signature(reference).parameters.items() if n != "params"
  }
  assert ours == theirs


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (minima.sgd, dict(momentum=1.0), "momentum"),
        (minima.sgd, dict(wd=-1.0), "wd"),
        (minima.adagrad, dict(eps=-1.0), "eps"),
        (minima.rmsprop, dict(rho=-0.1), "rho"),
        (minima.adam, dict(beta1=1.5), "beta1"),
        (minima.adam, dict(lr=-1.0), "lr"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)
