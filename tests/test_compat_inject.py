"""Every compat optimizer under ``optax.inject_hyperparams``, for every numeric hyperparameter.

One list of configurations (``CASES``, as in optax's ``alias_test.py``) drives the shared checks:
the injected optimizer, ``init`` and ``update`` both jitted (so every hyperparameter is a tracer
inside the factory), gives the plain factory's updates and state; each injected value matters
(changing it in ``state.hyperparams`` mid-run gives what the plain factory with the new value gives
from the same state); the state's structure does not depend on the numeric values. Then the
argument checks: concrete bad values raise ``ValueError`` naming the argument, traced ones pass.

The plain factories run eagerly and each case's injected ``init`` / ``update`` is compiled once and
shared by the checks (a new value in ``state.hyperparams`` needs no new compilation), which keeps
the file fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import pathlib
import re
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from phaseshift_jax.compat import miniai, minima, torch as torch_optim

STEPS = 3
# RAdam rectifies from rho_t > 5, i.e. from step 6 (beta2 near 1) or later: its cases run longer,
# so that eps and beta2 matter.
RADAM_STEPS = 8
CHANGE_AT = 1  # the mid-run change of a hyperparameter comes before this step (0-based)
# float32. Injected hyperparameters are float32 arrays, plain ones Python floats (doubles), so
# e.g. 1 - beta2 rounds differently (relative 1.3e-5 for beta2 = 0.999, 1e-6 for 0.99): the
# cases use betas whose complements round closely, or the same array in both.
RTOL, ATOL = 2e-6, 1e-8


@dataclasses.dataclass(frozen=True)
class Case:
  name: str
  factory: Callable[..., optax.GradientTransformation]
  kwargs: dict
  static_args: tuple = ()
  steps: int = STEPS

  def __str__(self):
    return self.name


BETAS = jnp.array([0.8, 0.99])  # an array is injected; the tuple default stays static
CASES = [
    Case("torch.sgd(momentum, dampening, weight_decay)", torch_optim.sgd,
         dict(lr=0.05, momentum=0.8, dampening=0.3, weight_decay=0.1)),
    Case("torch.sgd(nesterov)", torch_optim.sgd,
         dict(lr=0.05, momentum=0.7, weight_decay=0.1, nesterov=True)),
    Case("torch.sgd(maximize)", torch_optim.sgd,
         dict(lr=0.05, momentum=0.5, dampening=0.2, weight_decay=0.1, maximize=True)),
    Case("torch.sgd(lr): momentum, dampening, decay 0", torch_optim.sgd, dict(lr=0.05)),
    Case("torch.adagrad(lr_decay, weight_decay, initial_accumulator_value, eps)",
         torch_optim.adagrad,
         dict(lr=0.05, lr_decay=0.1, weight_decay=0.1, initial_accumulator_value=0.2, eps=1e-3)),
    Case("torch.adagrad(maximize)", torch_optim.adagrad,
         dict(lr=0.05, lr_decay=0.2, weight_decay=0.05, maximize=True)),
    Case("torch.adagrad(lr): lr_decay, decay 0", torch_optim.adagrad, dict(lr=0.05)),
    Case("torch.rmsprop(alpha, eps, weight_decay, momentum)", torch_optim.rmsprop,
         dict(lr=0.02, alpha=0.9, eps=1e-3, weight_decay=0.1, momentum=0.5)),
    Case("torch.rmsprop(centered)", torch_optim.rmsprop,
         dict(lr=0.02, alpha=0.8, eps=1e-2, weight_decay=0.1, momentum=0.5, centered=True)),
    Case("torch.rmsprop(maximize)", torch_optim.rmsprop,
         dict(lr=0.02, alpha=0.9, eps=1e-3, momentum=0.3, maximize=True)),
    Case("torch.rmsprop(lr): momentum, decay 0", torch_optim.rmsprop, dict(lr=0.02, eps=1e-3)),
    Case("torch.adam(betas array, eps, weight_decay)", torch_optim.adam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.1)),
    Case("torch.adam(amsgrad)", torch_optim.adam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.1, amsgrad=True)),
    Case("torch.adam(maximize, betas tuple)", torch_optim.adam,
         dict(lr=0.01, betas=(0.7, 0.9), eps=1e-3, weight_decay=0.1, maximize=True)),
    Case("torch.adamw(betas array, eps, weight_decay)", torch_optim.adamw,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.2)),
    Case("torch.adamw(amsgrad, maximize)", torch_optim.adamw,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.2, amsgrad=True, maximize=True)),
    Case("torch.asgd(lambd, alpha, t0, weight_decay)", torch_optim.asgd,
         dict(lr=0.05, lambd=0.5, alpha=0.5, t0=1.0, weight_decay=0.1)),
    Case("torch.asgd(maximize)", torch_optim.asgd,
         dict(lr=0.05, lambd=0.5, alpha=0.6, weight_decay=0.1, maximize=True)),
    Case("torch.adadelta(rho, eps, weight_decay)", torch_optim.adadelta,
         dict(lr=0.5, rho=0.8, eps=1e-3, weight_decay=0.1)),
    Case("torch.adadelta(maximize)", torch_optim.adadelta,
         dict(lr=0.5, rho=0.7, eps=1e-2, weight_decay=0.1, maximize=True)),
    Case("torch.adamax(betas array, eps, weight_decay)", torch_optim.adamax,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.1)),
    Case("torch.adamax(maximize, betas tuple)", torch_optim.adamax,
         dict(lr=0.01, betas=(0.7, 0.9), eps=1e-3, weight_decay=0.1, maximize=True)),
    # etas chosen so that halved (``changed``) they are still valid: 0 < 0.3 < 1 < 1.25.
    Case("torch.rprop(etas array, step_sizes array)", torch_optim.rprop,
         dict(lr=0.05, etas=jnp.array([0.6, 2.5]), step_sizes=jnp.array([1e-2, 0.3]))),
    Case("torch.rprop(maximize, tuples)", torch_optim.rprop,
         dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2), maximize=True)),
    Case("torch.adam(decoupled_weight_decay, betas array)", torch_optim.adam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.2, decoupled_weight_decay=True)),
    Case("torch.nadam(betas array, eps, weight_decay, momentum_decay)", torch_optim.nadam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.1, momentum_decay=0.3)),
    Case("torch.nadam(decoupled_weight_decay, maximize)", torch_optim.nadam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.2, momentum_decay=0.3,
              decoupled_weight_decay=True, maximize=True)),
    Case("torch.radam(betas array, eps, weight_decay)", torch_optim.radam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.1), steps=RADAM_STEPS),
    Case("torch.radam(decoupled_weight_decay, maximize)", torch_optim.radam,
         dict(lr=0.01, betas=BETAS, eps=1e-3, weight_decay=0.2, decoupled_weight_decay=True,
              maximize=True), steps=RADAM_STEPS),
    # d >= 2 in every case (a change halves it; torch needs d >= 1); beta2_decay = -3 keeps
    # little of the last second moment, so the RMS of the step exceeds d = 1 and the clip acts.
    Case("torch.adafactor(lr, beta2_decay, d, weight_decay)", torch_optim.adafactor,
         dict(lr=0.05, beta2_decay=-3.0, d=2.0, weight_decay=0.1)),
    Case("torch.adafactor(maximize)", torch_optim.adafactor,
         dict(lr=0.05, beta2_decay=-3.0, weight_decay=0.1, d=2.0, maximize=True)),
    # momentum 0.5 and eps 10 (> the Frobenius norm of the gradients): exact in float32, and a
    # change of eps mid-run changes the Newton-Schulz start.
    Case("torch.muon(lr, weight_decay, momentum, eps, ns_steps)", torch_optim.muon,
         dict(lr=0.05, weight_decay=0.2, momentum=0.5, eps=10.0, ns_steps=3)),
    Case("torch.muon(nesterov=False)", torch_optim.muon,
         dict(lr=0.05, momentum=0.5, nesterov=False)),
    Case("torch.lbfgs(lr, max_iter=1)", torch_optim.lbfgs, dict(lr=0.5, max_iter=1,
                                                                  history_size=2),
         static_args=("max_iter", "history_size")),
    Case("minima.sgd(momentum, wd)", minima.sgd, dict(lr=0.05, momentum=0.8, wd=0.1)),
    Case("minima.sgd(lr): momentum, wd 0", minima.sgd, dict(lr=0.05)),
    Case("minima.adagrad(wd, eps)", minima.adagrad, dict(lr=0.05, wd=0.1, eps=1e-3)),
    Case("minima.rmsprop(wd, eps, rho)", minima.rmsprop,
         dict(lr=0.01, wd=0.1, eps=1e-3, rho=0.8)),
    Case("minima.adam(beta1, beta2, eps, weight_decay)", minima.adam,
         dict(lr=0.01, beta1=0.8, beta2=0.99, eps=1e-3, weight_decay=0.1)),
    Case("miniai.sgd(lr, wd)", miniai.sgd, dict(lr=0.05, wd=0.1)),
    Case("miniai.adam(lr, wd, beta1, beta2, eps)", miniai.adam,
         dict(lr=0.01, wd=0.1, beta1=0.8, beta2=0.9, eps=1e-3)),
    Case("miniai.adam_with_annealing(all, anneal_every injected)", miniai.adam_with_annealing,
         dict(lr=0.01, wd=0.1, beta1=0.8, beta2=0.9, eps=1e-3, anneal_rate=0.5, anneal_every=2)),
    Case("miniai.adam_with_annealing(anneal_every static)", miniai.adam_with_annealing,
         dict(lr=0.01, wd=0.1, anneal_rate=0.5, anneal_every=2), static_args=("anneal_every",)),
]

FACTORIES = {
    "torch.sgd": torch_optim.sgd,
    "torch.adagrad": torch_optim.adagrad,
    "torch.rmsprop": torch_optim.rmsprop,
    "torch.adam": torch_optim.adam,
    "torch.adamw": torch_optim.adamw,
    "torch.asgd": torch_optim.asgd,
    "torch.adadelta": torch_optim.adadelta,
    "torch.adamax": torch_optim.adamax,
    "torch.rprop": torch_optim.rprop,
    "torch.nadam": torch_optim.nadam,
    "torch.radam": torch_optim.radam,
    "torch.adafactor": torch_optim.adafactor,
    "torch.muon": torch_optim.muon,
    "torch.lbfgs": torch_optim.lbfgs,
    "minima.sgd": minima.sgd,
    "minima.adagrad": minima.adagrad,
    "minima.rmsprop": minima.rmsprop,
    "minima.adam": minima.adam,
    "miniai.sgd": miniai.sgd,
    "miniai.adam": miniai.adam,
    "miniai.adam_with_annealing": miniai.adam_with_annealing,
}
STRUCTURAL = ("nesterov", "amsgrad", "centered", "maximize", "decoupled_weight_decay")
# torch's no-op keywords (accepted so that a torch call ports unchanged; no numbers change).
NO_OP = ("foreach", "fused", "capturable", "differentiable")
INIT_ONLY = ("initial_accumulator_value",)  # read by init only: a change mid-run does nothing
# Per factory, the values that a change mid-run does not show in the updates: Rprop reads ``lr``
# at init only (its initial step size, as torch); ASGD's ``t0`` moves the average only
# (tests/test_compat_torch_classic.py checks that one).
NOT_IN_UPDATES = {torch_optim.rprop: ("lr",), torch_optim.asgd: ("t0",)}


# Arguments that are not injected numbers, by factory, with the reason.
NOT_INJECTED = {
    torch_optim.adafactor: {"eps": "a tuple (None allowed), static"},
    torch_optim.muon: {"ns_coefficients": "a tuple, static", "adjust_lr_fn": "a string",
                       "ns_kernels": "a string"},
    # lbfgs: max_iter and max_eval are injected (loop bounds) in
    # tests/test_compat_torch_lbfgs_muon.py::test_lbfgs_under_inject_hyperparams, which steps it
    # with a closure; here the fixed gradients allow max_iter=1 only, where a traced max_iter
    # (not known to be 1) would need the closure, max_eval changes nothing and the tolerances
    # decide no stop.
    torch_optim.lbfgs: {"history_size": "the length of the history buffers, static",
                        "line_search_fn": "a string",
                        "max_iter": "static here (see above)", "max_eval": "see above",
                        "tolerance_grad": "see above", "tolerance_change": "see above"},
}


def numeric_hyperparameters(factory) -> list[str]:
  """Every argument of ``factory`` but the structural bools, torch's no-op keywords and those
  in ``NOT_INJECTED``."""
  return [name for name in inspect.signature(factory).parameters
          if name not in STRUCTURAL + NO_OP and name not in NOT_INJECTED.get(factory, {})]


def injected_names(case: Case) -> set[str]:
  """The names ``inject_hyperparams`` puts in ``state.hyperparams`` (tuples, strings and
  ``None`` stay static)."""
  bound = inspect.signature(case.factory).bind(**case.kwargs)
  bound.apply_defaults()
  return {
      name for name, value in bound.arguments.items()
      if name not in case.static_args and value is not None
      and not isinstance(value, (bool, tuple, str))
  }


def changed(value: Any) -> Any:
  """Another valid value: an int + 1, a float (or array of floats) halved."""
  if isinstance(value, int) or jnp.issubdtype(jnp.asarray(value).dtype, jnp.integer):
    return value + 1
  return value * 0.5


def _tree(seed: int, scale: float = 1.0):
  """A one-leaf tree (a second leaf would double the compile time; test_compat_api has trees)."""
  return {"w": scale * jax.random.normal(jax.random.key(seed), (2, 3))}


PARAMS = _tree(0)
GRADS = [_tree(10 + t, 0.5) for t in range(max(STEPS, RADAM_STEPS))]


def assert_trees_close(actual, expected, what: str):
  """Leaf by leaf, to ``RTOL`` of each element or of the leaf's largest element (cancellations in
  a momentum buffer leave small elements with the rounding of the large ones)."""
  assert jax.tree.structure(actual) == jax.tree.structure(expected), what
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    e = np.asarray(e)
    atol = ATOL + RTOL * float(np.max(np.abs(e), initial=0.0))
    np.testing.assert_allclose(np.asarray(a), e, rtol=RTOL, atol=atol, err_msg=what)


def run(tx, steps=range(STEPS), state=None, params=PARAMS, edit=None, jitted=None):
  """``tx`` over ``steps`` from ``state`` (``tx.init``'s by default); ``edit(state)`` before step
  ``CHANGE_AT``. ``jitted``: compiled ``(init, update)`` of ``tx`` (else ``tx`` runs eagerly)."""
  init, update = jitted or (tx.init, tx.update)
  state = init(params) if state is None else state
  outputs = []
  for t in steps:
    if edit is not None and t == CHANGE_AT:
      state = edit(state)
    updates, state = update(GRADS[t], state, params)
    params = optax.apply_updates(params, updates)
    outputs.append(updates)
  return outputs, state, params


_INJECTED = {}


def run_injected(case: Case, edit=None):
  """``run`` of the injected ``case``, init and update jitted (compiled once per case)."""
  if case.name not in _INJECTED:
    tx = optax.inject_hyperparams(case.factory, static_args=case.static_args)(**case.kwargs)
    _INJECTED[case.name] = (jax.jit(tx.init), jax.jit(tx.update))
  return run(None, range(case.steps), edit=edit, jitted=_INJECTED[case.name])


def argument(case: Case, name: str):
  bound = inspect.signature(case.factory).bind(**case.kwargs)
  bound.apply_defaults()
  return bound.arguments[name]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_injected_matches_plain(case):
  plain_updates, plain_state, _ = run(case.factory(**case.kwargs), range(case.steps))
  updates, state, _ = run_injected(case)
  assert set(state.hyperparams) == injected_names(case)
  for t, (a, e) in enumerate(zip(updates, plain_updates)):
    assert_trees_close(a, e, f"updates at step {t}")
  assert_trees_close(state.inner_state, plain_state, "state")


@pytest.mark.parametrize("case", CASES, ids=str)
def test_each_injected_value_matters(case):
  """Changing one injected value mid-run = the plain factory with that value from then on."""
  before, plain_state, plain_params = run(case.factory(**case.kwargs), range(CHANGE_AT))
  unchanged, _, _ = run_injected(case)
  checked = 0
  for name in sorted(injected_names(case)):
    value = argument(case, name)
    if name == "dampening" and case.kwargs.get("nesterov"):
      continue  # torch's nesterov needs dampening == 0
    new = changed(value)
    if np.array_equal(np.asarray(new), np.asarray(value)):
      continue  # 0 halved is 0: the zero-valued cases check the zeros
    edit = lambda s, name=name, new=new: s._replace(
        hyperparams={**s.hyperparams, name: jnp.asarray(new, s.hyperparams[name].dtype)}
    )
    updates, _, _ = run_injected(case, edit=edit)
    after, _, _ = run(
        case.factory(**{**case.kwargs, name: new}), range(CHANGE_AT, case.steps),
        state=plain_state, params=plain_params,
    )
    for t, (a, e) in enumerate(zip(updates, before + after)):
      assert_trees_close(a, e, f"{name} changed, updates at step {t}")
    unseen = INIT_ONLY + NOT_IN_UPDATES.get(case.factory, ())
    if name in case.kwargs and name not in unseen:  # the values chosen to matter
      differs = any(
          not np.allclose(np.asarray(a), np.asarray(u), rtol=1e-4, atol=0)
          for a, u in zip(jax.tree.leaves(updates[-1]), jax.tree.leaves(unchanged[-1]))
      )
      assert differs, f"changing {name} mid-run did not change the update"
    checked += 1
  assert checked


@pytest.mark.parametrize("family", FACTORIES)
def test_every_numeric_hyperparameter_is_injected_with_a_nonzero_value(family):
  """CASES covers, for every factory, every numeric argument with a non-default nonzero value."""
  factory = FACTORIES[family]
  covered = set()
  for case in CASES:
    if case.factory is factory:
      covered |= {
          name for name, value in case.kwargs.items()
          if name in injected_names(case) and np.all(np.asarray(value) != 0)
          and not np.array_equal(
              np.asarray(value), np.asarray(inspect.signature(factory).parameters[name].default)
          )
      }
  assert covered == set(numeric_hyperparameters(factory))


@pytest.mark.parametrize("case", CASES, ids=str)
def test_state_structure_does_not_depend_on_the_values(case):
  """Only the structural flags shape the state (zero values switch nothing off)."""
  baseline = {k: v for k, v in case.kwargs.items() if k in STRUCTURAL or k == "lr"}
  if case.kwargs.get("nesterov"):
    baseline["momentum"] = case.kwargs["momentum"]
  expected = jax.tree.structure(case.factory(**baseline).init(PARAMS))
  assert jax.tree.structure(case.factory(**case.kwargs).init(PARAMS)) == expected


@pytest.mark.parametrize(
    "factory, kwargs",
    [
        (torch_optim.sgd, dict(momentum=0.9, dampening=0.3)),
        (torch_optim.adagrad, dict(lr_decay=0.1)),
        (minima.adam, dict(beta2=0.99, weight_decay=0.1)),
        (miniai.adam_with_annealing, dict(anneal_rate=0.5, anneal_every=2)),
    ],
    ids=["torch.sgd", "torch.adagrad", "minima.adam", "miniai.adam_with_annealing"],
)
def test_injected_schedule_as_lr_matches_plain(factory, kwargs):
  schedule = optax.exponential_decay(0.05, 1, 0.8)
  plain_updates, _, _ = run(factory(lr=schedule, **kwargs))
  tx = optax.inject_hyperparams(factory)(lr=schedule, **kwargs)
  updates, _, _ = run(tx, jitted=(jax.jit(tx.init), jax.jit(tx.update)))
  for t, (a, e) in enumerate(zip(updates, plain_updates)):
    assert_trees_close(a, e, f"updates at step {t}")


def test_batched_hyperparameters_under_vmap():
  """A batch of values (one per trial) is traced under vmap and not checked as an array."""
  lrs, momenta = jnp.array([0.01, 0.1]), jnp.array([0.0, 0.9])
  tx = optax.inject_hyperparams(torch_optim.sgd)(lr=lrs, momentum=momenta, dampening=0.1)

  def trial(hyperparams):
    state = tx.init(PARAMS)
    state = state._replace(hyperparams={**state.hyperparams, **hyperparams})
    return tx.update(GRADS[0], state, PARAMS)[0]

  updates = jax.jit(jax.vmap(trial))({"lr": lrs, "momentum": momenta})
  for i in range(2):
    plain = torch_optim.sgd(lr=float(lrs[i]), momentum=float(momenta[i]), dampening=0.1)
    expected, _ = plain.update(GRADS[0], plain.init(PARAMS), PARAMS)
    assert_trees_close(jax.tree.map(lambda u: u[i], updates), expected, f"trial {i}")


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (torch_optim.sgd, dict(lr=-1.0), "lr"),
        (torch_optim.sgd, dict(momentum=np.float32(-0.5)), "momentum"),
        (torch_optim.sgd, dict(momentum=jnp.float32(0.0), nesterov=True), "nesterov"),
        (torch_optim.sgd, dict(momentum=0.9, dampening=jnp.asarray(0.1), nesterov=True),
         "nesterov"),
        (torch_optim.adagrad, dict(lr_decay=jnp.asarray(-0.1)), "lr_decay"),
        (torch_optim.rmsprop, dict(alpha=jnp.asarray(-0.5)), "alpha"),
        (torch_optim.rmsprop, dict(eps=float("nan")), "eps"),
        (torch_optim.adam, dict(betas=jnp.array([0.9, 1.0])), r"betas\[1\]"),
        (torch_optim.adamw, dict(weight_decay=np.float64(-0.1)), "weight_decay"),
        (torch_optim.asgd, dict(weight_decay=jnp.asarray(-0.1)), "weight_decay"),
        (torch_optim.adadelta, dict(rho=np.float32(1.5)), "rho"),
        (torch_optim.adamax, dict(betas=jnp.array([0.9, 1.0])), r"betas\[1\]"),
        (torch_optim.rprop, dict(etas=jnp.array([0.5, 0.9])), r"etas\[1\]"),
        (torch_optim.rprop, dict(etas=(0.0, 1.2)), r"etas\[0\]"),
        (torch_optim.nadam, dict(momentum_decay=jnp.asarray(-0.1)), "momentum_decay"),
        (torch_optim.nadam, dict(betas=jnp.array([1.0, 0.999])), r"betas\[0\]"),
        (torch_optim.radam, dict(eps=np.float32(-1e-8)), "eps"),
        (minima.sgd, dict(momentum=jnp.asarray(1.0)), "momentum"),
        (minima.rmsprop, dict(rho=jnp.asarray(-0.1)), "rho"),
        (miniai.adam, dict(lr=0.1, eps=jnp.asarray(-1e-5)), "eps"),
        (miniai.adam_with_annealing, dict(lr=0.1, anneal_every=jnp.asarray(0)), "anneal_every"),
        (miniai.adam_with_annealing, dict(lr=0.1, anneal_every=2.0), "anneal_every"),
    ],
)
def test_bad_concrete_values_are_named_plain_and_injected(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)
  with pytest.raises(ValueError, match=name):
    optax.inject_hyperparams(factory)(**kwargs).init(PARAMS)  # init sees concrete arrays


def test_a_non_number_is_a_type_error_naming_the_argument():
  with pytest.raises(TypeError, match="lr"):
    torch_optim.sgd(lr="0.1")


def test_a_non_scalar_array_is_not_checked():
  torch_optim.sgd(lr=jnp.array([-1.0, 0.1]))
  miniai.adam_with_annealing(0.1, anneal_every=jnp.array([0, 2]))


def test_traced_values_are_not_checked():
  """Bad values pass when traced (checking them would need a host round trip)."""

  def step(lr, momentum, anneal_every):
    sgd = torch_optim.sgd(lr=lr, momentum=momentum, nesterov=True)
    annealing = miniai.adam_with_annealing(lr, anneal_every=anneal_every)
    for tx in (sgd, annealing):
      tx.update(GRADS[0], tx.init(PARAMS), PARAMS)
    return lr

  jax.jit(step)(-1.0, 0.0, 0)


def test_zero_anneal_rate_follows_the_posts_formula():
  """r = 0: the factor r ** (i // N) is 1 for the first N steps and 0 afterwards."""
  tx = miniai.adam_with_annealing(1.0, anneal_rate=0.0, anneal_every=2)
  updates, _, _ = run(tx, range(3))
  assert [bool(jnp.any(u["w"] != 0)) for u in updates] == [True, True, False]


def test_compat_readme_example_runs():
  readme = pathlib.Path(__file__).resolve().parents[1] / "docs" / "compat.md"
  (code,) = [
      block for block in re.findall(r"```python\n(.*?)```", readme.read_text(), re.S)
      if "inject_hyperparams" in block
  ]
  namespace: dict = {}
  exec(compile(code, str(readme), "exec"), namespace)  # pylint: disable=exec-used
  assert float(namespace["state"].hyperparams["momentum"]) == 0.5
  expected = -0.1 * (0.5 + 5e-4 * 1.0)  # the first step: no momentum yet
  np.testing.assert_allclose(namespace["updates"]["w"], expected, rtol=1e-6)
  for name in ("adam", "annealing"):
    tx = namespace[name]
    tx.update(namespace["grads"], tx.init(namespace["params"]), namespace["params"])
