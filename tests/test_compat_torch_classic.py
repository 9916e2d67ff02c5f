"""compat.torch's asgd, adadelta, adamax and rprop against torch.optim, and complex parameters.

* Cross-checks (``tests/crosscheck``): 200 steps on the MLP and the CNN (the defaults on the MLP
  only), float32 and float64, the parameters and the state quantities named in each case, as
  ``tests/test_compat_torch.py`` does;
  the configurations cover every keyword (the no-op ``foreach`` set on, which runs torch's
  multi-tensor path: it gives the same numbers, but for ASGD, whose multi-tensor path computes
  ``eta`` in float32 arithmetic; ours follows the single-tensor path, the reference).
* ASGD's scalars (``eta``, ``mu``) step for step, its averaged parameters through
  ``asgd_averaged_params``, and an injected ``t0`` (which changes the average only).
* Defaults and keywords are torch 2.13's (``inspect.signature``); bad values are named.
* Complex parameters: a complex linear least-squares model (complex128, 50 steps) trained by
  torch and by ours, for every compat.torch optimizer that supports complex parameters: the
  parameters and the (complex) state equal torch's to 1e-10.
"""

from __future__ import annotations

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from phaseshift_jax.compat import torch as ours
from tests.crosscheck.checks import case, check_case
from tests.crosscheck.harness import MODELS, run_crosscheck

O = torch.optim

ADADELTA = (("square_avg", "e_g"), ("acc_delta", "e_x"))
ADAMAX = (("exp_avg", "mu"), ("exp_inf", "nu"))
RPROP = (("prev", "prev"), ("step_size", "step_size"))

CASES = [
    case("torch.asgd()", O.ASGD, ours.asgd, (("ax", "ax"),)),
    case(
        "torch.asgd(lambd, alpha, t0, weight_decay, maximize)", O.ASGD, ours.asgd,
        (("ax", "ax"),),
        lr=0.05, lambd=1e-3, alpha=0.6, t0=50.0, weight_decay=0.01, maximize=True,
    ),
    case("torch.adadelta()", O.Adadelta, ours.adadelta, ADADELTA),
    case(
        "torch.adadelta(rho, eps, weight_decay, maximize, foreach)", O.Adadelta, ours.adadelta,
        ADADELTA, lr=0.5, rho=0.8, eps=1e-5, weight_decay=0.01, maximize=True, foreach=True,
    ),
    case("torch.adamax()", O.Adamax, ours.adamax, ADAMAX),
    case(
        "torch.adamax(betas, eps, weight_decay, maximize, foreach)", O.Adamax, ours.adamax,
        ADAMAX, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01, maximize=True,
        foreach=True,
    ),
    case("torch.rprop()", O.Rprop, ours.rprop, RPROP),
    case(
        "torch.rprop(etas, step_sizes, maximize, foreach)", O.Rprop, ours.rprop, RPROP,
        lr=1e-3, etas=(0.4, 1.3), step_sizes=(1e-5, 0.05), maximize=True, foreach=True,
    ),
]

NEW = [(ours.asgd, O.ASGD), (ours.adadelta, O.Adadelta), (ours.adamax, O.Adamax),
       (ours.rprop, O.Rprop)]
ALL = NEW + [(ours.sgd, O.SGD), (ours.adagrad, O.Adagrad), (ours.rmsprop, O.RMSprop)]


# The keyword-rich cases on both models; the defaults on the MLP only (the test-time budget).
CROSSCHECKS = [(c, model) for c in CASES
               for model in (("mlp",) if c.name.endswith("()") else MODELS)]


@pytest.mark.parametrize("case, model", CROSSCHECKS, ids=[f"{c}-{m}" for c, m in CROSSCHECKS])
def test_matches_torch(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


def test_asgd_scalars_and_average_step_for_step():
  """``eta`` and ``mu`` after every step equal torch's (float32, bit for bit), and
  ``asgd_averaged_params`` is torch's ``ax`` (averaging from step ``t0 = 20`` on)."""
  kwargs = dict(lr=0.05, lambd=1e-2, alpha=0.6, t0=20.0)

  def torch_record(optimizer):
    state = optimizer.state[optimizer.param_groups[0]["params"][0]]
    return float(state["eta"]), float(state["mu"]), state["eta"].dtype

  def jax_record(state):
    (_, asgd_state), = optax.tree_utils.tree_get_all_with_path(state, "ScaleByTorchAsgdState")
    return float(asgd_state.eta), float(asgd_state.mu), asgd_state.eta.dtype

  result = run_crosscheck(lambda p: O.ASGD(p, **kwargs), ours.asgd(**kwargs), steps=60,
                          dtype="float64", torch_record=torch_record, jax_record=jax_record)
  assert result.max_abs_param_diff <= 1e-10
  assert [r[:2] for r in result.jax_records] == [r[:2] for r in result.torch_records]
  assert result.torch_records[0][2] == torch.float32 and result.jax_records[0][2] == jnp.float32
  mus = [r[1] for r in result.torch_records]
  assert mus[20] == 1.0 and mus[30] == np.float32(1 / 11)  # mu = 1 / max(1, t - t0)
  torch_ax = [result.torch_optimizer.state[p]["ax"].numpy()
              for p in result.torch_optimizer.param_groups[0]["params"]]
  for expected, got in zip(torch_ax, ours.asgd_averaged_params(result.opt_state)):
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
  # The average differs from the iterate once averaging has started.
  assert max(np.max(np.abs(a - p)) for a, p in zip(torch_ax, result.torch_params)) > 1e-4


def test_asgd_averaged_params_finds_the_average_in_wrapped_states():
  params = {"w": jnp.ones(3)}
  tx = optax.inject_hyperparams(ours.asgd)(lr=0.1)
  state = tx.init(params)
  _, state = tx.update({"w": jnp.full(3, 0.5)}, state, params)
  np.testing.assert_allclose(ours.asgd_averaged_params(state)["w"], 1 - 1e-4 * 0.1 - 0.1 * 0.5,
                             rtol=1e-6)
  with pytest.raises(ValueError, match="ScaleByTorchAsgdState"):
    ours.asgd_averaged_params(ours.adamax().init(params))


def test_asgd_injected_t0_changes_the_average_as_the_plain_factory():
  """``t0`` only moves ``mu`` (so the average, not the iterate): a mid-run change of the
  injected value gives the plain factory's average with the new value from then on."""
  params = {"w": jnp.array([1.0, -2.0, 0.5])}
  grads = [{"w": jnp.array([0.5, -1.0, 2.0]) * (t + 1)} for t in range(6)]
  tx = optax.inject_hyperparams(ours.asgd)(lr=0.1, t0=10.0)
  state, p = tx.init(params), params
  plain = ours.asgd(lr=0.1, t0=10.0)
  plain_state, q = plain.init(params), params
  for t, g in enumerate(grads):
    if t == 2:
      state.hyperparams["t0"] = jnp.asarray(0.0)
      plain = ours.asgd(lr=0.1, t0=0.0)
    u, state = tx.update(g, state, p)
    v, plain_state = plain.update(g, plain_state, q)
    p, q = optax.apply_updates(p, u), optax.apply_updates(q, v)
  np.testing.assert_allclose(ours.asgd_averaged_params(state)["w"],
                             ours.asgd_averaged_params(plain_state)["w"], rtol=1e-6)
  assert not np.allclose(ours.asgd_averaged_params(state)["w"], p["w"], rtol=1e-3)


@pytest.mark.parametrize("ours_fn, torch_cls", ALL, ids=lambda x: getattr(x, "__name__", ""))
def test_defaults_and_keywords_are_torchs(ours_fn, torch_cls):
  """Every torch keyword is accepted (the no-op ones keyword-only), with torch's default."""
  torch_parameters = dict(inspect.signature(torch_cls).parameters)
  del torch_parameters["params"]
  parameters = inspect.signature(ours_fn).parameters
  assert set(parameters) == set(torch_parameters)
  for name, parameter in parameters.items():
    assert parameter.default == torch_parameters[name].default, name
  for name in ("foreach", "fused", "capturable", "differentiable"):
    if name in parameters:
      assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY, name


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (ours.asgd, dict(lr=-1.0), "lr"),
        (ours.asgd, dict(weight_decay=-0.1), "weight_decay"),
        (ours.adadelta, dict(rho=1.5), "rho"),
        (ours.adadelta, dict(eps=-1e-6), "eps"),
        (ours.adamax, dict(betas=(1.0, 0.999)), "betas[0]"),
        (ours.adamax, dict(betas=(0.9,)), "betas"),
        (ours.adamax, dict(weight_decay=-1.0), "weight_decay"),
        (ours.rprop, dict(etas=(1.5, 2.0)), "etas[0]"),
        (ours.rprop, dict(etas=(0.5, 1.0)), "etas[1]"),
        (ours.rprop, dict(lr=-0.1), "lr"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name.replace("[", r"\[")):
    factory(**kwargs)


# --- complex parameters ------------------------------------------------------------------------

COMPLEX_STEPS = 50
_RNG = np.random.default_rng(0)
_X = _RNG.standard_normal((16, 4)) + 1j * _RNG.standard_normal((16, 4))
_Y = _RNG.standard_normal((16, 3)) + 1j * _RNG.standard_normal((16, 3))
_W0 = 0.5 * (_RNG.standard_normal((3, 4)) + 1j * _RNG.standard_normal((3, 4)))
_B0 = 0.5 * (_RNG.standard_normal(3) + 1j * _RNG.standard_normal(3))

MOMENTUM = (("momentum_buffer", "trace"),)
COMPLEX_CASES = [
    (O.SGD, ours.sgd, dict(lr=0.02, momentum=0.9, weight_decay=0.01, nesterov=True), MOMENTUM),
    (O.Adagrad, ours.adagrad,
     dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1),
     (("sum", "sum_of_squares"),)),
    (O.RMSprop, ours.rmsprop, dict(lr=0.01, momentum=0.5, centered=True, weight_decay=0.01),
     (("square_avg", "nu"), ("grad_avg", "mu")) + MOMENTUM),
    (O.ASGD, ours.asgd, dict(lr=0.02, lambd=1e-2, t0=10.0, weight_decay=0.01), (("ax", "ax"),)),
    (O.Adadelta, ours.adadelta, dict(lr=1.0, weight_decay=0.01, maximize=True), ADADELTA),
    (O.Adamax, ours.adamax, dict(lr=0.05, weight_decay=0.01), ADAMAX),
    (O.Rprop, ours.rprop, dict(lr=0.01, step_sizes=(1e-6, 1.0)), RPROP),
]


def _loss(w, b, x, y):
  r = x @ w.T + b - y
  return (r.real**2 + r.imag**2).mean()


@pytest.mark.parametrize("torch_cls, ours_fn, kwargs, state", COMPLEX_CASES,
                         ids=[c[0].__name__ for c in COMPLEX_CASES])
def test_complex_parameters_match_torch(torch_cls, ours_fn, kwargs, state):
  """torch steps a complex parameter as the pair of its real and imaginary parts; so does ours,
  and its state holds torch's complex state tensors (complex128, 50 steps, to 1e-10)."""
  sign = -1.0 if kwargs.get("maximize") else 1.0
  w, b = (torch.tensor(v, requires_grad=True) for v in (_W0, _B0))
  optimizer = torch_cls([w, b], **kwargs)
  x, y = torch.tensor(_X), torch.tensor(_Y)
  for _ in range(COMPLEX_STEPS):
    optimizer.zero_grad()
    (sign * _loss(w, b, x, y)).backward()
    optimizer.step()

  with jax.enable_x64(True):
    tx = ours_fn(**kwargs)
    # torch's gradient of a real loss in a complex parameter z = a + ib is dL/da + i dL/db;
    # jax.grad gives its conjugate.
    grad = jax.grad(lambda p, x, y: sign * _loss(*p, x, y))

    @jax.jit
    def step(params, opt_state, x, y):
      grads = jax.tree.map(jnp.conj, grad(params, x, y))
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    params = [jnp.asarray(_W0), jnp.asarray(_B0)]
    opt_state = tx.init(params)
    for _ in range(COMPLEX_STEPS):
      params, opt_state = step(params, opt_state, jnp.asarray(_X), jnp.asarray(_Y))

  assert all(p.dtype == jnp.complex128 for p in params)
  for got, expected in zip(params, (w, b)):
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=0, atol=1e-10)
  assert np.max(np.abs(np.asarray(params[0]) - _W0)) > 1e-2  # it moved
  for torch_key, field in state:
    values = optax.tree_utils.tree_get(opt_state, field)
    for got, p in zip(values, (w, b)):
      expected = optimizer.state[p][torch_key].numpy()
      assert got.dtype == jnp.complex128 and got.shape == expected.shape, torch_key
      scale = max(1.0, float(np.max(np.abs(expected))))
      np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-10 * scale,
                                 err_msg=torch_key)


MOMENTUM_SWITCHES = [
    pytest.param(O.SGD, ours.sgd, dict(lr=0.1, dampening=0.5, weight_decay=0.01),
                 [0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 0.8, 0.8], id="sgd-0-then-on-off-on"),
    pytest.param(O.SGD, ours.sgd, dict(lr=0.1, nesterov=False),
                 [0.9, 0.9, 0.0, 0.9, 0.9], id="sgd-on-off-on"),
    pytest.param(O.RMSprop, ours.rmsprop, dict(lr=0.01, centered=True),
                 [0.9, 0.9, 0.0, 0.0, 0.9, 0.5], id="rmsprop-on-off-on"),
]


@pytest.mark.parametrize("torch_cls, ours_fn, kwargs, momenta", MOMENTUM_SWITCHES)
def test_momentum_switched_mid_run_follows_torch(torch_cls, ours_fn, kwargs, momenta):
  """torch keeps no momentum buffer while ``momentum == 0``: its first step with momentum starts
  the buffer undamped from that step's gradient, and a step with momentum 0 leaves an existing
  buffer as it is. With ``momentum`` injected and changed between steps, ours takes the same
  steps (float64, a parameter pair, gradients of a quadratic)."""
  target = np.array([[0.5, -1.0], [2.0, 0.25]])
  p = torch.zeros(2, 2, dtype=torch.float64, requires_grad=True)
  optimizer = torch_cls([p], momentum=momenta[0], **kwargs)
  with jax.enable_x64(True):
    tx = optax.inject_hyperparams(ours_fn)(momentum=momenta[0], **kwargs)
    q = jnp.zeros((2, 2))
    state = tx.init(q)
    for t, momentum in enumerate(momenta):
      optimizer.param_groups[0]["momentum"] = momentum
      state.hyperparams["momentum"] = jnp.asarray(momentum)
      p.grad = (p.detach() - torch.from_numpy(target)) * (t + 1)
      optimizer.step()
      updates, state = tx.update((q - target) * (t + 1), state, q)
      q = optax.apply_updates(q, updates)
      np.testing.assert_allclose(np.asarray(q), p.detach().numpy(), rtol=0, atol=1e-13,
                                 err_msg=f"step {t + 1}")
