"""compat.torch's nadam, radam and adam/adamw's decoupled_weight_decay against torch.optim.

200 steps on the MLP and the CNN, float32 and float64 (``tests/crosscheck/checks.py``), with the
moments compared by name; torch's ``mu_product`` and ``step`` after every step; the signatures
(names, kinds, order, defaults) against torch's; the no-effect keywords; the argument checks;
complex parameters (complex128 least squares, 50 steps, parameters and complex moments to 1e-10).
"""

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

ADAM = (("exp_avg", "mu"), ("exp_avg_sq", "nu"))
AMSGRAD = ADAM + (("max_exp_avg_sq", "nu_max"),)

CASES = [
    case("torch.nadam()", O.NAdam, ours.nadam, ADAM),
    case(
        "torch.nadam(betas, eps, weight_decay, momentum_decay, foreach)", O.NAdam, ours.nadam,
        ADAM, lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, momentum_decay=0.01,
        foreach=True,
    ),
    case(
        "torch.nadam(decoupled_weight_decay, maximize, capturable, differentiable)", O.NAdam,
        ours.nadam, ADAM, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True, maximize=True,
        capturable=False, differentiable=False,
    ),
    case("torch.radam()", O.RAdam, ours.radam, ADAM),
    case(
        "torch.radam(betas, eps, weight_decay, foreach)", O.RAdam, ours.radam, ADAM,
        lr=1e-3, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1, foreach=True,
    ),
    case(
        "torch.radam(decoupled_weight_decay, maximize)", O.RAdam, ours.radam, ADAM,
        lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True, maximize=True,
    ),
    case(
        "torch.adam(decoupled_weight_decay, amsgrad, maximize, fused)", O.Adam, ours.adam,
        AMSGRAD, lr=1e-3, weight_decay=0.1, decoupled_weight_decay=True, amsgrad=True,
        maximize=True, fused=True,
    ),
]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("case", CASES, ids=str)
def test_matches_torch(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


@pytest.mark.parametrize("dtype, rtol", [("float64", 0.0), ("float32", 1e-5)])
def test_mu_product_and_step_are_torchs_after_every_step(dtype, rtol):
  """torch's ``mu_product`` (float32 under its default dtype, one per parameter, all equal) and
  ``step`` against the state's scalar ``mu_product`` and ``count``. 40 steps: the product falls
  by about 0.45 a step, so it is still a normal float32 at the end (1e-14)."""

  def torch_record(optimizer):
    states = [optimizer.state[p] for p in optimizer.param_groups[0]["params"]]
    return [float(s["mu_product"]) for s in states], [float(s["step"]) for s in states]

  def jax_record(state):
    return (float(optax.tree_utils.tree_get(state, "mu_product")),
            int(optax.tree_utils.tree_get(state, "count")))

  kwargs = dict(momentum_decay=0.02, betas=(0.95, 0.999))
  result = run_crosscheck(lambda p: O.NAdam(p, **kwargs), ours.nadam(**kwargs), steps=40,
                          dtype=dtype, torch_record=torch_record, jax_record=jax_record)
  for t, ((products, steps), (product, count)) in enumerate(
      zip(result.torch_records, result.jax_records)):
    assert steps == [t + 1.0] * len(steps) and count == t + 1
    assert len(set(products)) == 1, products
    np.testing.assert_allclose(product, products[0], rtol=rtol, atol=0, err_msg=f"step {t}")
  assert 0 < product < 1e-10


def test_mu_product_is_float32_whatever_the_params_dtype():
  with jax.enable_x64(True):
    state = ours.nadam().init({"w": jnp.ones(2, jnp.float64)})
    assert optax.tree_utils.tree_get(state, "mu_product").dtype == jnp.float32


def test_radam_rectifies_from_rho_above_5():
  """With betas (0, 0.999), eps 0 and a constant gradient ``g``: ``m_hat = g`` and
  ``v_t = (1 - b2^t) g^2``, so the step is ``-lr g`` while rho_t <= 5 (steps 1-5; rho_5 = 4.996)
  and ``-lr r_t sign(g)`` from step 6 (rho_6 = 5.994)."""
  b2, lr = 0.999, 0.1
  tx = ours.radam(lr, betas=(0.0, b2), eps=0.0)
  with jax.enable_x64(True):
    params = {"w": jnp.asarray([2.0, -0.5], jnp.float64)}
    state, update = tx.init(params), jax.jit(tx.update)
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, 9):
      updates, state = update({"w": params["w"]}, state, params)
      rho = rho_inf - 2 * t * b2**t / (1 - b2**t)
      if rho > 5:
        r = np.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
        expected = -lr * r * np.sign(params["w"])
      else:
        expected = -lr * params["w"]
      assert (rho > 5) == (t >= 6)
      # rtol: rho_t cancels 1999 against about 1993 (digits lost in both computations).
      np.testing.assert_allclose(updates["w"], expected, rtol=1e-9, err_msg=f"step {t}")


@pytest.mark.parametrize(
    "ours_fn, torch_cls",
    [(ours.nadam, O.NAdam), (ours.radam, O.RAdam), (ours.adam, O.Adam), (ours.adamw, O.AdamW)],
    ids=["nadam", "radam", "adam", "adamw"],
)
def test_signature_is_torchs(ours_fn, torch_cls):
  """The same names in the same order, of the same kinds (keyword-only after ``*``), with the
  same defaults (adamw has no ``decoupled_weight_decay``, as torch's AdamW has none)."""
  expected = [(p.name, p.kind, p.default) for p in inspect.signature(torch_cls).parameters.values()
              if p.name != "params"]
  got = [(p.name, p.kind, p.default) for p in inspect.signature(ours_fn).parameters.values()]
  assert got == expected


NO_OP = dict(foreach=True, capturable=True, differentiable=True)


@pytest.mark.parametrize(
    "factory, kwargs, extra",
    [(ours.adam, dict(weight_decay=0.1, decoupled_weight_decay=True), dict(NO_OP, fused=True)),
     (ours.adamw, dict(amsgrad=True), dict(NO_OP, fused=True)),
     (ours.nadam, dict(weight_decay=0.1), NO_OP),
     (ours.radam, dict(weight_decay=0.1, decoupled_weight_decay=True), NO_OP)],
    ids=["adam", "adamw", "nadam", "radam"],
)
def test_no_effect_keywords_change_nothing(factory, kwargs, extra):
  """``foreach``, ``capturable``, ``differentiable`` (and ``fused``): the same updates, bit for
  bit."""
  params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  txs = [factory(**kwargs), factory(**kwargs, **extra)]
  states = [tx.init(params) for tx in txs]
  for t in range(3):
    grads = {"w": jnp.asarray([0.3, -0.1, 0.2]) * (t + 1) + params["w"]}
    (u0, s0), (u1, s1) = (tx.update(grads, s, params) for tx, s in zip(txs, states))
    np.testing.assert_array_equal(u0["w"], u1["w"])
    states = [s0, s1]
    params = optax.apply_updates(params, u0)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_decoupled_is_adamw(amsgrad):
  """Bit for bit (torch's AdamW is its Adam with ``decoupled_weight_decay=True``; adamw's
  cross-checks are in test_compat_torch.py), and not adam's L2 rule."""
  params = {"w": jnp.asarray([1.0, -2.0, 0.5])}
  kwargs = dict(lr=0.01, betas=(0.8, 0.9), weight_decay=0.3, amsgrad=amsgrad)
  a, w = ours.adam(**kwargs, decoupled_weight_decay=True), ours.adamw(**kwargs)
  sa, sw = a.init(params), w.init(params)
  for t in range(3):
    grads = {"w": jnp.asarray([0.3, -0.1, 0.2]) * (t + 1)}
    (ua, sa), (uw, sw) = a.update(grads, sa, params), w.update(grads, sw, params)
    np.testing.assert_array_equal(ua["w"], uw["w"])
  # adam's L2 rule: the first step is -lr sign(d), d = g + 0.3 w; the decoupled one
  # -lr (sign(g) + 0.3 w).
  l2 = ours.adam(**kwargs)
  first, _ = l2.update(grads, l2.init(params), params)
  np.testing.assert_allclose(first["w"], -0.01 * np.sign(grads["w"] + 0.3 * params["w"]),
                             rtol=1e-6)
  first, _ = a.update(grads, a.init(params), params)
  np.testing.assert_allclose(first["w"], -0.01 * (np.sign(grads["w"]) + 0.3 * params["w"]),
                             rtol=1e-6)


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (ours.nadam, dict(lr=-1e-3), "lr"),
        (ours.nadam, dict(betas=(1.0, 0.999)), "betas[0]"),
        (ours.nadam, dict(eps=-1e-8), "eps"),
        (ours.nadam, dict(weight_decay=-0.1, decoupled_weight_decay=True), "weight_decay"),
        (ours.nadam, dict(momentum_decay=-0.004), "momentum_decay"),
        (ours.radam, dict(lr=-1e-3), "lr"),
        (ours.radam, dict(betas=(0.9, -0.1)), "betas[1]"),
        (ours.radam, dict(eps=-1e-8), "eps"),
        (ours.radam, dict(weight_decay=-0.1), "weight_decay"),
        (ours.adam, dict(weight_decay=-0.1, decoupled_weight_decay=True), "weight_decay"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name.replace("[", r"\[")):
    factory(**kwargs)


# --- complex parameters ------------------------------------------------------------------------

COMPLEX_STEPS = 50
_COMPLEX_RNG = np.random.default_rng(1)
_X = _COMPLEX_RNG.standard_normal((12, 4)) + 1j * _COMPLEX_RNG.standard_normal((12, 4))
_Y = _COMPLEX_RNG.standard_normal((12, 2)) + 1j * _COMPLEX_RNG.standard_normal((12, 2))
_W = 0.5 * (_COMPLEX_RNG.standard_normal((2, 4)) + 1j * _COMPLEX_RNG.standard_normal((2, 4)))
_B = 0.5 * (_COMPLEX_RNG.standard_normal(2) + 1j * _COMPLEX_RNG.standard_normal(2))

# One case per optimizer, L2 and decoupled decay both present (the decay pieces are linear, so
# their complex step is the pairs' anyway; the squared moments are what the pairs change).
COMPLEX_CASES = [
    (O.Adam, ours.adam, dict(lr=0.05, weight_decay=0.01, amsgrad=True), AMSGRAD),
    (O.AdamW, ours.adamw, dict(lr=0.05, maximize=True), ADAM),
    # NAdam at lr 0.05: moving one element of torch's initial weights by one ulp moves torch's
    # own parameters by 1.4e-9 after 50 steps (chaotic); at 0.02 by 1e-16.
    (O.NAdam, ours.nadam, dict(lr=0.02, weight_decay=0.01, momentum_decay=0.01), ADAM),
    (O.RAdam, ours.radam, dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True), ADAM),
]


def _residual_loss(w, b, x, y):
  r = x @ w.T + b - y
  return (r.real**2 + r.imag**2).mean()


@pytest.mark.parametrize(
    "torch_cls, ours_fn, kwargs, state", COMPLEX_CASES,
    ids=[f"{c[0].__name__}({', '.join(c[2])})" for c in COMPLEX_CASES],
)
def test_complex_parameters_match_torch(torch_cls, ours_fn, kwargs, state):
  """torch steps a complex parameter as the pair of its real and imaginary parts (each squared
  into its own second moment); so does ours, and the moments are torch's complex state tensors
  (complex128 least squares, 50 steps, to 1e-10)."""
  sign = -1.0 if kwargs.get("maximize") else 1.0
  w, b = (torch.tensor(v, requires_grad=True) for v in (_W, _B))
  optimizer = torch_cls([w, b], **kwargs)
  x, y = torch.tensor(_X), torch.tensor(_Y)
  for _ in range(COMPLEX_STEPS):
    optimizer.zero_grad()
    (sign * _residual_loss(w, b, x, y)).backward()
    optimizer.step()

  with jax.enable_x64(True):
    tx = ours_fn(**kwargs)
    loss_grad = jax.grad(lambda p, x, y: sign * _residual_loss(*p, x, y))

    @jax.jit
    def step(params, opt_state, x, y):
      # torch's gradient in z = a + ib is dL/da + i dL/db; jax.grad gives its conjugate.
      grads = jax.tree.map(jnp.conj, loss_grad(params, x, y))
      updates, opt_state = tx.update(grads, opt_state, params)
      return optax.apply_updates(params, updates), opt_state

    params = [jnp.asarray(_W), jnp.asarray(_B)]
    opt_state = tx.init(params)
    for _ in range(COMPLEX_STEPS):
      params, opt_state = step(params, opt_state, jnp.asarray(_X), jnp.asarray(_Y))

  assert all(p.dtype == jnp.complex128 for p in params)
  assert np.max(np.abs(np.asarray(params[0]) - _W)) > 1e-2  # it moved
  for got, expected in zip(params, (w, b)):
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=0, atol=1e-10)
  for torch_key, field in state:
    for got, p in zip(optax.tree_utils.tree_get(opt_state, field), (w, b)):
      expected = optimizer.state[p][torch_key].numpy()
      assert got.dtype == jnp.complex128 and got.shape == expected.shape, torch_key
      scale = max(1.0, float(np.max(np.abs(expected))))
      np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-10 * scale,
                                 err_msg=torch_key)
  if torch_cls is O.NAdam:
    np.testing.assert_allclose(float(optax.tree_utils.tree_get(opt_state, "mu_product")),
                               float(optimizer.state[w]["mu_product"]), rtol=0)
