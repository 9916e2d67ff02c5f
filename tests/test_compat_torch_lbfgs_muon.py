"""compat.torch.adafactor, lbfgs and muon against torch.optim (torch's own test configurations).

LBFGS and Muon: every configuration that ``optim_inputs_func`` of torch's ``optim_db`` yields for
device "cpu", read at test time, in float64 (LBFGS: 100 ``step(closure)`` calls on the full-batch
loss of the MLP, with torch's counters of evaluations and iterations equal; Muon: 100 steps on
the bias-free MLP, every parameter a matrix). The bound is
1e-10, or, where torch's own trajectory is chaotic (moving its initial weights by one ulp moves
its final weights further), 10x that measured sensitivity, printed. Adafactor: the MLP and the CNN
as ``tests/test_compat_torch.py`` does (``tests/test_torch_optim_db.py`` also runs torch's
Adafactor inputs). LBFGS with complex parameters: complex128 least squares against torch, params
and state (flattened as torch flattens) to 1e-10.
"""

import inspect

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.testing._internal.common_optimizers import optim_db

from phaseshift_jax.compat import torch as ours
from tests.crosscheck.checks import case, check_case
from tests.crosscheck.harness import (
    run_closure_crosscheck, run_crosscheck, state_diff, torch_sensitivity)

O = torch.optim
STEPS = 100
# LBFGS: 100 step(closure) calls, as many as the other optimizers' steps, each up to 20 inner
# iterations (chaotic with lr=1e-3 and lr=0.01: held to 10x torch's own one-ulp sensitivity).
LBFGS_STEPS = 100
TOLERANCE = 1e-10


def torch_inputs(cls):
  """``(desc, kwargs)`` of torch's test configurations of ``cls`` for "cpu" (tensor lr: float)."""
  (info,) = [i for i in optim_db if i.optim_cls is cls]
  return [
      pytest.param({k: float(v) if isinstance(v, torch.Tensor) else v
                    for k, v in oi.kwargs.items()}, id=oi.desc)
      for oi in info.optim_inputs_func(device="cpu")
  ]


def bound(diff, sensitivity_fn, what):
  """1e-10, or 10x torch's one-ulp sensitivity where that is larger (measured only then)."""
  if diff <= TOLERANCE:
    return TOLERANCE
  sensitivity = sensitivity_fn()
  print(f"{what}: diff {diff:.3e}, torch's one-ulp sensitivity {sensitivity:.3e}")
  return max(TOLERANCE, 10 * sensitivity)


@pytest.mark.parametrize("kwargs", torch_inputs(O.LBFGS))
def test_lbfgs_matches_torch_on_torchs_configs(kwargs):
  make = lambda params: O.LBFGS(params, **kwargs)  # noqa: E731
  result = run_closure_crosscheck(make, ours.lbfgs(**kwargs), ours.lbfgs_step, steps=LBFGS_STEPS)
  torch_state = result.torch_optimizer.state[result.torch_optimizer._params[0]]
  # The counters are exact: every inner iteration, line-search trial and early exit as torch's.
  assert int(result.opt_state.func_evals) == torch_state["func_evals"]
  assert int(result.opt_state.n_iter) == torch_state["n_iter"]
  limit = bound(result.max_abs_param_diff, lambda: torch_sensitivity(
      make, steps=LBFGS_STEPS, closure=True, baseline=result.torch_params), f"lbfgs {kwargs}")
  assert result.max_abs_param_diff <= limit


@pytest.mark.parametrize("kwargs", torch_inputs(O.Muon))
def test_muon_matches_torch_on_torchs_configs(kwargs):
  make = lambda params: O.Muon(params, **kwargs)  # noqa: E731
  result = run_crosscheck(make, ours.muon(**kwargs, ns_kernels="torch_cpu"), model="mlp_nobias",
                          steps=STEPS, dtype="float64")
  limit = bound(result.max_abs_param_diff, lambda: torch_sensitivity(
      make, model="mlp_nobias", steps=STEPS, baseline=result.torch_params), f"muon {kwargs}")
  assert result.max_abs_param_diff <= limit
  assert state_diff(result.torch_optimizer, "momentum_buffer", result.opt_state, "trace") <= limit


def test_muon_float32_matches_torch():
  """float32 too (torch's default input): the same bfloat16 roundings, the same fused step."""
  result = run_crosscheck(O.Muon, ours.muon(ns_kernels="torch_cpu"), model="mlp_nobias",
                          steps=STEPS, dtype="float32")
  assert result.max_abs_param_diff <= 1e-5


# bfloat16's unit roundoff is 2^-8; the iteration rounds each of its products to bfloat16, so
# float32 sums taken in another order move the result by a few units: 4 allowed (measured up to
# 1.0 unit, 4.0e-3, on 512 x 1024).
NS_RELATIVE_TOLERANCE = 4 * 2.0**-8


@pytest.mark.parametrize("shape", [(3, 6), (64, 128), (256, 256), (300, 100)], ids=str)
def test_muon_xla_kernels_orthogonalise_as_torch(shape):
  """``ns_kernels="xla"`` (the default): one Newton-Schulz call on a float32 matrix equals
  torch's to a few bfloat16 units in the Frobenius norm, wide and tall; the emulated kernels give
  torch's bits on the small matrix."""
  from torch.optim._muon import _zeropower_via_newtonschulz  # pylint: disable=import-outside-toplevel

  from phaseshift_jax.compat.torch._muon import NS_COEFFICIENTS, newton_schulz  # pylint: disable=import-outside-toplevel

  g = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
  expected = _zeropower_via_newtonschulz(torch.tensor(g), NS_COEFFICIENTS, 5, 1e-7).float().numpy()
  got = np.asarray(newton_schulz(jnp.asarray(g)).astype(jnp.float32))
  relative = np.linalg.norm(got - expected) / np.linalg.norm(expected)
  print(f"newton_schulz {shape}: relative difference to torch {relative:.2e}")
  assert relative <= NS_RELATIVE_TOLERANCE
  if shape == (3, 6):
    emulated = newton_schulz(jnp.asarray(g), kernels="torch_cpu").astype(jnp.float32)
    np.testing.assert_array_equal(np.asarray(emulated), expected)


def test_muon_xla_kernels_follow_torchs_run():
  """The default kernels over torch's 100-step float32 run: the parameters stay within 1% of
  how far torch's moved (bfloat16 rounding differences grow along a run; measured 3e-4 of
  about 0.08)."""
  result = run_crosscheck(O.Muon, ours.muon(), model="mlp_nobias", steps=STEPS, dtype="float32")
  result_start = run_crosscheck(O.Muon, ours.muon(), model="mlp_nobias", steps=0,
                                dtype="float32")
  moved = max(float(np.max(np.abs(a - b))) for a, b in zip(result.torch_params,
                                                           result_start.torch_params))
  print(f"muon xla kernels: {result.max_abs_param_diff:.2e} off torch, which moved {moved:.2e}")
  assert 0 < result.max_abs_param_diff <= 0.01 * moved


# The state (row_var / col_var of the matrices, variance of the biases) is compared in
# test_adafactor_state_is_torchs_for_every_rank: check_case wants one torch key for every leaf.
ADAFACTOR_CASES = [
    case("torch.adafactor()", O.Adafactor, ours.adafactor),
    case("torch.adafactor(weight_decay, maximize)", O.Adafactor, ours.adafactor,
         weight_decay=0.1, maximize=True),
    case("torch.adafactor(lr, beta2_decay, eps, d)", O.Adafactor, ours.adafactor,
         lr=0.02, beta2_decay=-0.6, eps=(1e-4, 1e-2), d=1.5),
]
# On the MLP (each run costs a compilation per dtype; a 3-D leaf's factoring is checked in
# test_adafactor_state_is_torchs_for_every_rank, torch's own inputs by tests/test_torch_optim_db.py).
ADAFACTOR_RUNS = [(c, "mlp") for c in ADAFACTOR_CASES]


@pytest.mark.parametrize("case, model", ADAFACTOR_RUNS, ids=lambda x: str(x))
def test_adafactor_matches_torch(case, model, pytestconfig):
  check_case(case, model, pytestconfig)


def test_adafactor_state_is_torchs_for_every_rank():
  """row/col factors of a >= 2-D leaf (over its last two dims), the full moment of a vector."""
  shapes = {"matrix": (3, 4), "tensor": (2, 3, 4), "vector": (5,), "scalar": ()}
  rng = np.random.default_rng(0)
  params = {k: rng.standard_normal(s) for k, s in shapes.items()}
  grads = {k: rng.standard_normal(s) for k, s in shapes.items()}
  with jax.enable_x64(True):
    tx = ours.adafactor(lr=0.1, weight_decay=0.1)
    jparams = jax.tree.map(jnp.asarray, params)
    updates, state = jax.jit(tx.update)(jax.tree.map(jnp.asarray, grads), tx.init(jparams),
                                        jparams)
  tparams = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
  opt = O.Adafactor(list(tparams.values()), lr=0.1, weight_decay=0.1)
  for k, p in tparams.items():
    p.grad = torch.tensor(grads[k])
  opt.step()
  get = lambda field, k: np.asarray(optax.tree_utils.tree_get(state, field)[k])  # noqa: E731
  for k, p in tparams.items():
    np.testing.assert_allclose(params[k] + np.asarray(updates[k]), p.detach().numpy(),
                               rtol=0, atol=1e-15)
    torch_state = opt.state[p]
    if p.dim() > 1:
      np.testing.assert_allclose(get("row_var", k), torch_state["row_var"].numpy(), atol=1e-15)
      np.testing.assert_allclose(get("col_var", k), torch_state["col_var"].numpy(), atol=1e-15)
    else:
      np.testing.assert_allclose(get("variance", k), torch_state["variance"].numpy(), atol=1e-15)


OURS_ONLY = {ours.muon: ("ns_kernels",)}  # keyword-only, after torch's keywords


@pytest.mark.parametrize(
    "ours_fn, torch_cls",
    [(ours.adafactor, O.Adafactor), (ours.lbfgs, O.LBFGS), (ours.muon, O.Muon)])
def test_defaults_and_keywords_are_torchs(ours_fn, torch_cls):
  torch_parameters = dict(inspect.signature(torch_cls).parameters)
  del torch_parameters["params"]
  ours_parameters = {name: p for name, p in inspect.signature(ours_fn).parameters.items()
                     if name not in OURS_ONLY.get(ours_fn, ())}
  assert list(ours_parameters) == list(torch_parameters)
  for name, parameter in ours_parameters.items():
    assert parameter.default == torch_parameters[name].default, name
    assert parameter.kind == torch_parameters[name].kind, name
  for name in OURS_ONLY.get(ours_fn, ()):  # a torch call's positional arguments still fit
    assert inspect.signature(ours_fn).parameters[name].kind == inspect.Parameter.KEYWORD_ONLY


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (ours.adafactor, dict(lr=-1.0), "lr"),
        (ours.adafactor, dict(beta2_decay=0.5), "beta2_decay"),
        (ours.adafactor, dict(eps=(-1e-30, 1e-3)), r"eps\[0\]"),
        (ours.adafactor, dict(eps=(None, -1.0)), r"eps\[1\]"),
        (ours.adafactor, dict(d=0.5), "d must"),
        (ours.adafactor, dict(weight_decay=-0.1), "weight_decay"),
        (ours.lbfgs, dict(lr=-1.0), "lr"),
        (ours.lbfgs, dict(max_iter=0), "max_iter"),
        (ours.lbfgs, dict(max_eval=0), "max_eval"),
        (ours.lbfgs, dict(history_size=0), "history_size"),
        (ours.lbfgs, dict(tolerance_grad=-1.0), "tolerance_grad"),
        (ours.lbfgs, dict(line_search_fn="armijo"), "line_search_fn"),
        (ours.muon, dict(lr=-1.0), "lr"),
        (ours.muon, dict(momentum=-0.1), "momentum"),
        (ours.muon, dict(weight_decay=-0.1), "weight_decay"),
        (ours.muon, dict(ns_steps=100), "ns_steps"),
        (ours.muon, dict(ns_coefficients=(1.0, 2.0)), "ns_coefficients"),
        (ours.muon, dict(adjust_lr_fn="spectral"), "adjust_lr_fn"),
        (ours.muon, dict(ns_kernels="cuda"), "ns_kernels"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


def test_muon_refuses_non_matrix_leaves_naming_them():
  tx = ours.muon()
  with pytest.raises(ValueError, match=r"params\['b'\] has shape \(3,\)"):
    tx.init({"w": jnp.ones((2, 3)), "b": jnp.ones(3)})
  with pytest.raises(TypeError, match="complex"):
    tx.init({"w": jnp.ones((2, 3), jnp.complex64)})


def test_muon_adjust_lr_fn_scales_as_torch():
  """``match_rms_adamw`` and ``original`` on a tall and a wide matrix, one step against torch."""
  rng = np.random.default_rng(1)
  for shape in ((6, 3), (3, 6)):
    for fn in ("original", "match_rms_adamw"):
      w, g = rng.standard_normal(shape), rng.standard_normal(shape)
      p = torch.tensor(w, requires_grad=True)
      opt = O.Muon([p], lr=0.1, adjust_lr_fn=fn, nesterov=False)
      p.grad = torch.tensor(g)
      opt.step()
      with jax.enable_x64(True):
        tx = ours.muon(lr=0.1, adjust_lr_fn=fn, nesterov=False, ns_kernels="torch_cpu")
        u, _ = tx.update(jnp.asarray(g), tx.init(jnp.asarray(w)), jnp.asarray(w))
      np.testing.assert_allclose(w + np.asarray(u), p.detach().numpy(), rtol=0, atol=1e-15)


def quadratic(params):
  return jnp.sum((params["w"] - jnp.arange(3.0)) ** 2) + jnp.sum(params["v"] ** 4)


def test_lbfgs_calling_conventions():
  """``update`` needs ``value`` and ``value_and_grad_fn`` where torch calls the closure again;
  with ``max_iter=1`` and no line search it is a plain update (no value); ``lbfgs_step`` jits and
  converges."""
  params = {"w": jnp.zeros(3), "v": jnp.ones(2)}
  fn = jax.value_and_grad(quadratic)
  value, grads = fn(params)
  tx = ours.lbfgs()
  with pytest.raises(ValueError, match="value="):
    tx.update(grads, tx.init(params), params)
  with pytest.raises(ValueError, match="value_and_grad_fn="):
    tx.update(grads, tx.init(params), params, value=value)
  single = ours.lbfgs(lr=0.1, max_iter=1)
  updates, _ = single.update(grads, single.init(params), params)
  # torch's first step: -min(1, 1/|g|_1) * lr * g
  scale = min(1.0, 1.0 / float(sum(jnp.sum(jnp.abs(g)) for g in jax.tree.leaves(grads))))
  for u, g in zip(jax.tree.leaves(updates), jax.tree.leaves(grads)):
    np.testing.assert_allclose(u, -scale * 0.1 * g, rtol=1e-6)
  tx = ours.lbfgs(line_search_fn="strong_wolfe", history_size=5)
  step = jax.jit(lambda state, params: ours.lbfgs_step(tx, state, params, fn))
  state = tx.init(params)
  for _ in range(3):
    _, params, state = step(state, params)
  assert step._cache_size() == 1  # pylint: disable=protected-access
  np.testing.assert_allclose(params["w"], jnp.arange(3.0), atol=1e-4)
  assert float(quadratic(params)) < 1e-6


def test_lbfgs_under_inject_hyperparams():
  """Floats and the loop bounds injected (history_size static): the same steps as plain."""
  params = {"w": jnp.zeros(3), "v": jnp.ones(2)}
  fn = jax.value_and_grad(quadratic)
  kwargs = dict(lr=0.5, max_iter=4, max_eval=6, tolerance_grad=1e-9, tolerance_change=1e-12,
                history_size=3)
  plain = ours.lbfgs(**kwargs)
  injected = optax.inject_hyperparams(ours.lbfgs, static_args=("history_size",))(**kwargs)
  assert set(injected.init(params).hyperparams) == {
      "lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change"}
  traced = optax.inject_hyperparams(ours.lbfgs)(**kwargs)  # history_size traced in update
  with pytest.raises(ValueError, match="static_args"):
    jax.jit(lambda s, p: ours.lbfgs_step(traced, s, p, fn))(traced.init(params), params)
  a, b = params, params
  sa, sb = plain.init(params), injected.init(params)
  step_a = jax.jit(lambda s, p: ours.lbfgs_step(plain, s, p, fn))
  step_b = jax.jit(lambda s, p: ours.lbfgs_step(injected, s, p, fn))
  for _ in range(3):
    _, a, sa = step_a(sa, a)
    _, b, sb = step_b(sb, b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
  assert int(sa.func_evals) == int(sb.inner_state.func_evals)


def _torch_flat(tree):
  """A params tree flattened as torch's LBFGS flattens: each leaf's ``view_as_real`` (a complex
  leaf's real and imaginary parts interleaved), ``view(-1)``, concatenated in order."""
  return np.concatenate([
      (np.stack([leaf.real, leaf.imag], -1) if np.iscomplexobj(leaf) else leaf).reshape(-1)
      for leaf in (np.asarray(v) for v in jax.tree.leaves(tree))])


COMPLEX_LBFGS_CASES = [
    pytest.param(dict(), 5, id="defaults"),
    pytest.param(dict(line_search_fn="strong_wolfe"), 5, id="strong_wolfe"),
    pytest.param(dict(lr=0.1, max_iter=1, history_size=3), 20, id="max_iter=1"),
    pytest.param(dict(lr=0.5, max_iter=4, history_size=3, line_search_fn="strong_wolfe"), 3,
                 id="strong_wolfe-ring"),
]


@pytest.mark.parametrize("kwargs, steps", COMPLEX_LBFGS_CASES)
def test_lbfgs_complex_parameters_match_torch(kwargs, steps):
  """torch's LBFGS steps a complex parameter as the pair of its real and imaginary parts (its
  flat vectors hold ``view_as_real``); so does ours: complex128 least squares, ``steps``
  ``step(closure)`` calls, params to 1e-10, the state (``d``, ``prev_flat_grad``, the history
  read from the ring's oldest slot, the counters) to 1e-10 relative to its scale."""
  from tests.test_compat_torch_classic import _B0, _W0, _X, _Y, _loss  # noqa: PLC0415
  w, b = (torch.tensor(v, requires_grad=True) for v in (_W0, _B0))
  optimizer = O.LBFGS([w, b], **kwargs)
  x, y = torch.tensor(_X), torch.tensor(_Y)

  def closure():
    optimizer.zero_grad()
    loss = _loss(w, b, x, y)
    loss.backward()
    return loss

  torch_losses = [float(optimizer.step(closure).detach()) for _ in range(steps)]
  with jax.enable_x64(True):
    tx = ours.lbfgs(**kwargs)
    value_and_grad = jax.value_and_grad(lambda p: _loss(*p, jnp.asarray(_X), jnp.asarray(_Y)))

    def fn(params):  # torch's z.grad is dL/da + i dL/db: the conjugate of jax.grad's
      loss, grads = value_and_grad(params)
      return loss, jax.tree.map(jnp.conj, grads)

    step = jax.jit(lambda state, params: ours.lbfgs_step(tx, state, params, fn))
    params = [jnp.asarray(_W0), jnp.asarray(_B0)]
    state = tx.init(params)
    losses = []
    for _ in range(steps):
      loss, params, state = step(state, params)
      losses.append(float(loss))

  assert all(p.dtype == jnp.complex128 for p in params)
  for got, expected in zip(params, (w, b)):
    np.testing.assert_allclose(np.asarray(got), expected.detach().numpy(), rtol=0, atol=1e-10)
  assert np.max(np.abs(np.asarray(params[0]) - _W0)) > 1e-1  # it moved
  np.testing.assert_allclose(losses, torch_losses, rtol=1e-10)
  torch_state = optimizer.state[optimizer._params[0]]  # pylint: disable=protected-access
  assert int(state.func_evals) == torch_state["func_evals"]
  assert int(state.n_iter) == torch_state["n_iter"]
  assert all(v.dtype == jnp.complex128 for v in state.d + state.prev_flat_grad)
  assert all(v.dtype == jnp.float64 and v.shape[-1] == 2 for v in state.old_dirs + state.old_stps)

  def close(got, expected, what):
    expected = np.asarray(expected)
    scale = max(1.0, float(np.max(np.abs(expected))))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-10 * scale, err_msg=what)

  close(_torch_flat(state.d), torch_state["d"].numpy(), "d")
  close(_torch_flat(state.prev_flat_grad), torch_state["prev_flat_grad"].numpy(),
        "prev_flat_grad")
  close(float(state.t), float(torch_state["t"]), "t")
  close(float(state.h_diag), float(torch_state["H_diag"]), "H_diag")
  history = state.ro.shape[0]
  live = min(int(state.stored), history)
  assert live == len(torch_state["old_dirs"]) > 0
  if "history_size" in kwargs:
    assert int(state.stored) > history  # the ring wrapped
  for i in range(live):
    k = (int(state.stored) - live + i) % history
    slot = lambda ring: jax.tree.map(lambda r: r[k], ring)  # noqa: E731
    close(_torch_flat(slot(state.old_dirs)), torch_state["old_dirs"][i].numpy(), f"old_dirs[{i}]")
    close(_torch_flat(slot(state.old_stps)), torch_state["old_stps"][i].numpy(), f"old_stps[{i}]")
    close(float(state.ro[k]), float(torch_state["ro"][i]), f"ro[{i}]")


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float32])
def test_muon_keeps_dtypes_and_state_types_under_jit_and_cond(dtype):
  """The battery's dtype and ``lax.cond`` checks on matrices (its own trees hold vectors)."""
  tx = ours.muon(lr=0.02)
  params = {"w": jnp.ones((4, 3), dtype), "v": jnp.full((2, 5), 0.5, dtype)}
  grads = jax.tree.map(lambda p: jnp.linspace(-1, 1, p.size, dtype=dtype).reshape(p.shape),
                       params)
  traces = []

  @jax.jit
  def step(params, state, pred):
    traces.append(1)
    return jax.lax.cond(pred, lambda: tx.update(grads, state, params), lambda: (params, state))

  state0 = state = tx.init(params)
  for _ in range(2):
    updates, state = step(params, state, jnp.asarray(True))
    assert jax.tree.map(lambda u: u.dtype, updates) == jax.tree.map(lambda p: p.dtype, params)
    assert jax.tree.map(lambda a: (a.shape, a.dtype), state) == jax.tree.map(
        lambda a: (a.shape, a.dtype), state0)
    assert all(bool(jnp.all(jnp.isfinite(u.astype(jnp.float32))))
               for u in jax.tree.leaves(updates))
  assert len(traces) == 1


def test_lbfgs_line_search_keeps_torchs_own_tolerance():
  """torch's ``LBFGS.step`` calls ``_strong_wolfe`` without the group's ``tolerance_change``, so
  the zoom stops at its default 1e-9, not at a large ``tolerance_change`` (0.1 here, which
  would stop it on a bracket of 0.1 and return the step of the bracket's low end, 0)."""
  kwargs = dict(lr=0.08, max_iter=2, max_eval=10, line_search_fn="strong_wolfe",
                tolerance_change=0.1)
  x = torch.zeros((), dtype=torch.float64, requires_grad=True)
  optimizer = O.LBFGS([x], **kwargs)

  def closure():
    optimizer.zero_grad()
    loss = 100 * (x - 0.01) ** 2
    loss.backward()
    return loss

  optimizer.step(closure)
  with jax.enable_x64(True):
    tx = ours.lbfgs(**kwargs)
    fn = jax.value_and_grad(lambda p: 100 * (p - 0.01) ** 2)
    params = jnp.zeros((), jnp.float64)
    _, params, state = ours.lbfgs_step(tx, tx.init(params), params, fn)
  reached = float(x.detach())
  assert abs(reached - 0.01) < 1e-12  # torch's search reaches the minimum
  np.testing.assert_allclose(float(params), reached, rtol=0, atol=1e-15)
  assert int(state.func_evals) == optimizer.state[x]["func_evals"]
