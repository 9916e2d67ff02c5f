"""schedules.torch against torch.optim.lr_scheduler: every class, 1,000 steps, relative 1e-7.

Each case builds torch's scheduler(s) on a torch optimizer and our schedule with the same
arguments; the rate (and, for the cycling schedulers, the momentum) torch's optimizer uses at
each of 1,000 steps must equal ours (float64, under ``jax.enable_x64``) to 1e-7 relative: as a
plain schedule under ``jax.jit`` (and eagerly at some steps), and through ``scheduled_lr``, which
runs torch's recursion on a rate kept in its state.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as S

from phaseshift_jax.compat import torch as torch_optim
from phaseshift_jax.schedules import torch as lrs

STEPS = 1000
LR = 0.1
RTOL = 1e-7


@pytest.fixture(autouse=True)
def _x64():
  with jax.enable_x64(True):
    yield


def torch_run(make, steps=STEPS, lr=LR, optimizer="sgd"):
  """torch's (rate, momentum) at each step: one ``step()`` per scheduler after ``opt.step()``."""
  param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  if optimizer == "sgd":
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
  else:
    opt = torch.optim.Adam([param], lr=lr)
  made = make(opt)
  scheds = made if isinstance(made, list) else [made]
  rates, moms = [], []
  for _ in range(steps):
    group = opt.param_groups[0]
    rates.append(float(group["lr"]))
    moms.append(float(group["momentum"] if optimizer == "sgd" else group["betas"][0]))
    opt.step()
    for s in scheds:
      s.step()
  return np.array(rates), np.array(moms), opt, scheds


def our_rates(schedule, steps=STEPS):
  counts = jnp.arange(steps, dtype=jnp.int32)
  return np.asarray(jax.jit(jax.vmap(schedule))(counts), dtype=np.float64)


def evaluate(schedule, steps=STEPS, start=0, tx=None, state=None):
  """In one compiled function (compilation dominates the runtime): the schedule (and its
  momentum) at counts ``start .. start+steps-1``, and scheduled_lr's rate and momentum before
  each of ``steps`` updates from ``state`` (default: its init)."""
  tx = lrs.scheduled_lr([schedule]) if tx is None else tx
  state = tx.init(None) if state is None else state
  momentum = getattr(schedule, "momentum", None)

  def body(state, _):
    _, new = tx.update(None, state)
    return new, (state.lr, state.momentum)

  @jax.jit
  def run(state):
    counts = start + jnp.arange(steps, dtype=jnp.int32)
    rates = jax.vmap(schedule)(counts) if schedule is not None else None
    moms = jax.vmap(momentum)(counts) if momentum is not None else None
    _, stepped = jax.lax.scan(body, state, None, length=steps)
    return rates, moms, stepped

  rates, moms, (stepped, stepped_moms) = run(state)
  as_np = lambda x: None if x is None else np.asarray(x, dtype=np.float64)
  return as_np(rates), as_np(moms), as_np(stepped), as_np(stepped_moms)


def close(ours, theirs, rtol=RTOL):
  np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=0)


def lam(t):
  """A step function both torch (int) and JAX (int32 array) evaluate: decays, with bumps."""
  return 0.5 ** (t // 100) * (1 + 0.3 * ((t % 7) == 0))


def mult(t):
  return 0.997 + 0.2 * ((t % 150) == 0)


CASES = {
    # name: (torch scheduler(s) from an optimizer, our schedule)
    "LambdaLR bumps": (lambda o: S.LambdaLR(o, lam), lrs.lambda_lr(LR, lam)),
    "MultiplicativeLR": (lambda o: S.MultiplicativeLR(o, mult), lrs.multiplicative_lr(LR, mult)),
    "StepLR 30 0.5": (lambda o: S.StepLR(o, 30, 0.5), lrs.step_lr(LR, 30, 0.5)),
    "MultiStepLR": (
        lambda o: S.MultiStepLR(o, [100, 250, 600], 0.3), lrs.multi_step_lr(LR, [100, 250, 600], 0.3)
    ),
    "MultiStepLR 0 and repeated": (
        lambda o: S.MultiStepLR(o, [0, 5, 5, 999], 0.5), lrs.multi_step_lr(LR, [0, 5, 5, 999], 0.5)
    ),
    "ConstantLR 0.25 300": (lambda o: S.ConstantLR(o, 0.25, 300), lrs.constant_lr(LR, 0.25, 300)),
    "ConstantLR total_iters=0": (lambda o: S.ConstantLR(o, 0.5, 0), lrs.constant_lr(LR, 0.5, 0)),
    "LinearLR warm-up": (lambda o: S.LinearLR(o, 0.1, 1.0, 100), lrs.linear_lr(LR, 0.1, 1.0, 100)),
    "LinearLR to 0": (lambda o: S.LinearLR(o, 1.0, 0.0, 999), lrs.linear_lr(LR, 1.0, 0.0, 999)),
    "LinearLR total_iters=0": (lambda o: S.LinearLR(o, 0.5, 0.8, 0), lrs.linear_lr(LR, 0.5, 0.8, 0)),
    "ExponentialLR": (lambda o: S.ExponentialLR(o, 0.995), lrs.exponential_lr(LR, 0.995)),
    "PolynomialLR 400 2": (lambda o: S.PolynomialLR(o, 400, 2.0), lrs.polynomial_lr(LR, 400, 2.0)),
    "PolynomialLR 999 0.5": (lambda o: S.PolynomialLR(o, 999, 0.5), lrs.polynomial_lr(LR, 999, 0.5)),
    "PolynomialLR total_iters=0": (lambda o: S.PolynomialLR(o, 0), lrs.polynomial_lr(LR, 0)),
    "CosineAnnealingLR 300 1e-3": (
        lambda o: S.CosineAnnealingLR(o, 300, 1e-3), lrs.cosine_annealing_lr(LR, 300, 1e-3)
    ),
    "CosineAnnealingLR 400": (lambda o: S.CosineAnnealingLR(o, 400), lrs.cosine_annealing_lr(LR, 400)),
    "CosineAnnealingLR 7 0.05": (
        lambda o: S.CosineAnnealingLR(o, 7, 0.05), lrs.cosine_annealing_lr(LR, 7, 0.05)
    ),
    "CosineAnnealingLR 1": (lambda o: S.CosineAnnealingLR(o, 1), lrs.cosine_annealing_lr(LR, 1)),
    "CosineAnnealingWarmRestarts 10 1": (
        lambda o: S.CosineAnnealingWarmRestarts(o, 10, 1, 0.02),
        lrs.cosine_annealing_warm_restarts(LR, 10, 1, 0.02),
    ),
    "CosineAnnealingWarmRestarts 7 2 1e-3": (
        lambda o: S.CosineAnnealingWarmRestarts(o, 7, 2, 1e-3),
        lrs.cosine_annealing_warm_restarts(LR, 7, 2, 1e-3),
    ),
    "CosineAnnealingWarmRestarts 1 3": (
        lambda o: S.CosineAnnealingWarmRestarts(o, 1, 3), lrs.cosine_annealing_warm_restarts(LR, 1, 3)
    ),
    "CyclicLR triangular": (
        lambda o: S.CyclicLR(o, 1e-3, 1e-2, 100, 150),
        lrs.cyclic_lr(1e-3, 1e-2, 100, 150),
    ),
    "CyclicLR triangular2 momentum": (
        lambda o: S.CyclicLR(o, 1e-3, 1e-2, 60, mode="triangular2", base_momentum=0.7,
                             max_momentum=0.95),
        lrs.cyclic_lr(1e-3, 1e-2, 60, mode="triangular2", base_momentum=0.7, max_momentum=0.95),
    ),
    "CyclicLR exp_range": (
        lambda o: S.CyclicLR(o, 1e-3, 1e-2, 100, 50, mode="exp_range", gamma=0.999),
        lrs.cyclic_lr(1e-3, 1e-2, 100, 50, mode="exp_range", gamma=0.999),
    ),
    "CyclicLR scale_fn cycle": (
        lambda o: S.CyclicLR(o, 1e-3, 1e-2, 40, 90, scale_fn=lambda x: 1 / (1.0 + x)),
        lrs.cyclic_lr(1e-3, 1e-2, 40, 90, scale_fn=lambda x: 1 / (1.0 + x)),
    ),
    "CyclicLR scale_fn iterations, no momentum": (
        lambda o: S.CyclicLR(o, 1e-3, 1e-2, 33, scale_fn=lambda x: 0.998**x,
                             scale_mode="iterations", cycle_momentum=False),
        lrs.cyclic_lr(1e-3, 1e-2, 33, scale_fn=lambda x: 0.998**x, scale_mode="iterations",
                      cycle_momentum=False),
    ),
    "OneCycleLR cos": (
        lambda o: S.OneCycleLR(o, 1.0, total_steps=STEPS), lrs.one_cycle_lr(1.0, total_steps=STEPS)
    ),
    "OneCycleLR linear three_phase": (
        lambda o: S.OneCycleLR(o, 0.5, epochs=10, steps_per_epoch=100, pct_start=0.25,
                               anneal_strategy="linear", three_phase=True, div_factor=10.0,
                               final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
        lrs.one_cycle_lr(0.5, epochs=10, steps_per_epoch=100, pct_start=0.25,
                         anneal_strategy="linear", three_phase=True, div_factor=10.0,
                         final_div_factor=100.0, base_momentum=0.8, max_momentum=0.9),
    ),
    "OneCycleLR cos three_phase, no momentum": (
        lambda o: S.OneCycleLR(o, 0.3, total_steps=STEPS, pct_start=0.4, three_phase=True,
                               cycle_momentum=False),
        lrs.one_cycle_lr(0.3, total_steps=STEPS, pct_start=0.4, three_phase=True,
                         cycle_momentum=False),
    ),
    "SequentialLR Linear, Cosine (rises after T_max)": (
        lambda o: S.SequentialLR(o, [S.LinearLR(o, 0.01, total_iters=50),
                                     S.CosineAnnealingLR(o, 300, 1e-5)], [50]),
        lrs.sequential_lr([lrs.linear_lr(LR, 0.01, total_iters=50),
                           lrs.cosine_annealing_lr(LR, 300, 1e-5)], [50]),
    ),
    "SequentialLR Constant, Exponential, Multiplicative": (
        lambda o: S.SequentialLR(o, [S.ConstantLR(o, 0.5, 10), S.ExponentialLR(o, 0.99),
                                     S.MultiplicativeLR(o, mult)], [100, 400]),
        lrs.sequential_lr([lrs.constant_lr(LR, 0.5, 10), lrs.exponential_lr(LR, 0.99),
                           lrs.multiplicative_lr(LR, mult)], [100, 400]),
    ),
    "SequentialLR repeated and 0 milestones": (
        lambda o: S.SequentialLR(o, [S.ExponentialLR(o, 0.9), S.StepLR(o, 10, 0.5),
                                     S.LinearLR(o, 0.2, 0.9, 50), S.PolynomialLR(o, 300, 1.5)],
                                 [0, 300, 300]),
        lrs.sequential_lr([lrs.exponential_lr(LR, 0.9), lrs.step_lr(LR, 10, 0.5),
                           lrs.linear_lr(LR, 0.2, 0.9, 50), lrs.polynomial_lr(LR, 300, 1.5)],
                          [0, 300, 300]),
    ),
    "SequentialLR Cyclic, Step, Lambda (momentum held)": (
        lambda o: S.SequentialLR(o, [S.CyclicLR(o, 0.05, 0.2, 50, mode="triangular2"),
                                     S.StepLR(o, 20, 0.8), S.LambdaLR(o, lam)], [275, 610]),
        lrs.sequential_lr([lrs.cyclic_lr(0.05, 0.2, 50, mode="triangular2"),
                           lrs.step_lr(0.05, 20, 0.8), lrs.lambda_lr(0.05, lam)], [275, 610]),
    ),
    "ChainedScheduler Constant, Exponential (product)": (
        lambda o: S.ChainedScheduler([S.ConstantLR(o, 0.4, 4), S.ExponentialLR(o, 0.99)]),
        lrs.chained_scheduler([lrs.constant_lr(LR, 0.4, 4), lrs.exponential_lr(LR, 0.99)]),
    ),
    "ChainedScheduler Step, Linear, MultiStep, Multiplicative, Polynomial (product)": (
        lambda o: S.ChainedScheduler([S.StepLR(o, 10, 0.9), S.LinearLR(o, 0.4, 0.6, 4),
                                      S.MultiStepLR(o, [0, 500], 0.5), S.MultiplicativeLR(o, mult),
                                      S.PolynomialLR(o, 700, 0.9)]),
        lrs.chained_scheduler([lrs.step_lr(LR, 10, 0.9), lrs.linear_lr(LR, 0.4, 0.6, 4),
                               lrs.multi_step_lr(LR, [0, 500], 0.5), lrs.multiplicative_lr(LR, mult),
                               lrs.polynomial_lr(LR, 700, 0.9)]),
    ),
    "ChainedScheduler Step, Lambda, Exponential, Cosine (overwrite)": (
        lambda o: S.ChainedScheduler([S.StepLR(o, 10, 0.9), S.LambdaLR(o, lam),
                                      S.ExponentialLR(o, 0.9), S.CosineAnnealingLR(o, 90, 0.01)]),
        lrs.chained_scheduler([lrs.step_lr(LR, 10, 0.9), lrs.lambda_lr(LR, lam),
                               lrs.exponential_lr(LR, 0.9), lrs.cosine_annealing_lr(LR, 90, 0.01)]),
    ),
    "ChainedScheduler Cosine, Exponential (recursion)": (
        lambda o: S.ChainedScheduler([S.CosineAnnealingLR(o, 100, 0.01), S.ExponentialLR(o, 0.999)]),
        lrs.chained_scheduler([lrs.cosine_annealing_lr(LR, 100, 0.01), lrs.exponential_lr(LR, 0.999)]),
    ),
    "ChainedScheduler Sequential, OneCycle momentum (overwrite)": (
        lambda o: S.ChainedScheduler([
            S.SequentialLR(o, [S.ConstantLR(o, 0.5, 3), S.ExponentialLR(o, 0.99)], [20]),
            S.OneCycleLR(o, 0.2, total_steps=STEPS)]),
        lrs.chained_scheduler([
            lrs.sequential_lr([lrs.constant_lr(LR, 0.5, 3), lrs.exponential_lr(LR, 0.99)], [20]),
            lrs.one_cycle_lr(0.2, total_steps=STEPS)]),
    ),
    "list StepLR, LinearLR (torch's optim_db input)": (
        lambda o: [S.StepLR(o, gamma=0.9, step_size=10), S.LinearLR(o, 0.4, 0.6, 4)],
        lrs.chained_scheduler([lrs.step_lr(LR, 10, 0.9), lrs.linear_lr(LR, 0.4, 0.6, 4)]),
    ),
}


EAGER = ["LambdaLR bumps", "MultiplicativeLR", "MultiStepLR", "LinearLR warm-up",
         "PolynomialLR 400 2", "CosineAnnealingLR 7 0.05", "CosineAnnealingWarmRestarts 7 2 1e-3",
         "CyclicLR exp_range", "OneCycleLR linear three_phase",
         "SequentialLR Constant, Exponential, Multiplicative",
         "ChainedScheduler Step, Lambda, Exponential, Cosine (overwrite)"]


@pytest.mark.parametrize("name", CASES)
def test_schedule_matches_torch(name):
  make, ours = CASES[name]
  rates, moms, _, _ = torch_run(make)
  jitted, jitted_moms, stepped, stepped_moms = evaluate(ours)
  close(jitted, rates)
  close(stepped, rates)
  if name in EAGER:  # the plain (not jitted) schedule too, at a step past every boundary
    close(float(ours(jnp.asarray(733, jnp.int32))), rates[733])
  if ours.momentum is not None:
    assert len(np.unique(moms)) > 3
    close(jitted_moms, moms)
    close(stepped_moms, moms)
  else:
    assert np.all(np.isnan(stepped_moms))


def test_cosine_closed_form_equals_torch_alone_but_not_in_a_chain():
  """Alone, torch's recursive cosine is the closed form (to rounding); chained, it is not."""
  alone, _, _, _ = torch_run(lambda o: S.CosineAnnealingLR(o, 50, 0.01))
  closed = 0.01 + (LR - 0.01) * (1 + np.cos(np.pi * np.arange(STEPS) / 50)) / 2
  close(alone, closed, rtol=1e-12)
  chained, _, _, _ = torch_run(
      lambda o: [S.ConstantLR(o, 0.5, 120), S.CosineAnnealingLR(o, 50, 0.01)])
  as_product = np.where(np.arange(STEPS) < 120, 0.5, 1.0) * closed
  assert not np.allclose(chained, as_product, rtol=1e-3)
  ours = lrs.chained_scheduler([lrs.constant_lr(LR, 0.5, 120), lrs.cosine_annealing_lr(LR, 50, 0.01)])
  close(our_rates(ours), chained)


def test_momentum_schedules_drive_sgd_and_adam_like_torch():
  """with_momentum_schedule: torch's CyclicLR on SGD's momentum, OneCycleLR on Adam's beta1."""
  steps = 200
  target = np.linspace(-1.0, 1.0, 5)
  for optimizer, make, ours, kind, factory in [
      ("sgd", lambda o: S.CyclicLR(o, 0.01, 0.1, 30), lrs.cyclic_lr(0.01, 0.1, 30), "momentum",
       torch_optim.sgd),
      ("adam", lambda o: S.OneCycleLR(o, 0.05, total_steps=steps), lrs.one_cycle_lr(
          0.05, total_steps=steps), "betas", torch_optim.adam),
  ]:
    param = torch.nn.Parameter(torch.zeros(5, dtype=torch.float64))
    opt = (torch.optim.SGD([param], lr=LR, momentum=0.9) if optimizer == "sgd"
           else torch.optim.Adam([param], lr=LR))
    sched = make(opt)
    for _ in range(steps):
      opt.zero_grad()
      loss = ((param - torch.as_tensor(target)) ** 4).sum()
      loss.backward()
      opt.step()
      sched.step()
    tx = lrs.with_momentum_schedule(factory, ours, momentum=kind)
    params = jnp.zeros(5)
    state = tx.init(params)
    grad_fn = jax.jit(jax.grad(lambda p: jnp.sum((p - target) ** 4)))
    step = jax.jit(tx.update)
    for _ in range(steps):
      updates, state = step(grad_fn(params), state, params)
      params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(np.asarray(params), param.detach().numpy(), rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------------------- plateau


def plateau_metrics(steps=400):
  """A noisy, decaying metric with long stretches that do not improve."""
  rng = np.random.RandomState(0)
  t = np.arange(steps)
  return np.exp(-t / 100) + 0.05 * rng.standard_normal(steps) * np.exp(-t / 200)


PLATEAU = {
    "min rel defaults": dict(),
    "min abs, cooldown, min_lr reached": dict(factor=0.5, patience=3, threshold=5e-3,
                                              threshold_mode="abs", cooldown=2, min_lr=2e-3),
    "max rel, cooldown": dict(mode="max", factor=0.7, patience=5, threshold=1e-2, cooldown=3),
    "max abs, eps skips the last cut": dict(mode="max", factor=0.5, patience=4, threshold=1e-3,
                                            threshold_mode="abs", min_lr=0.04, eps=0.02),
    "min rel, threshold 0, patience 0": dict(threshold=0.0, patience=0, factor=0.9, min_lr=1e-4),
}


@pytest.mark.parametrize("name", PLATEAU)
def test_reduce_lr_on_plateau_in_torchs_loop(name):
  """loss, opt.step(), sched.step(metric): torch's SGD + ReduceLROnPlateau against ours."""
  kwargs = PLATEAU[name]
  metrics = plateau_metrics()
  if kwargs.get("mode") == "max":
    metrics = 2.0 - metrics
  target = np.linspace(-1.0, 1.0, 4)
  param = torch.nn.Parameter(torch.zeros(4, dtype=torch.float64))
  opt = torch.optim.SGD([param], lr=LR, momentum=0.9)
  sched = S.ReduceLROnPlateau(opt, **kwargs)
  torch_rates, torch_params = [], []
  for value in metrics:
    torch_rates.append(opt.param_groups[0]["lr"])
    opt.zero_grad()
    ((param - torch.as_tensor(target)) ** 2).sum().backward()
    opt.step()
    sched.step(float(value))
    torch_params.append(param.detach().numpy().copy())
  cuts = 1 if "eps" in name else 2  # with eps, one cut and one skipped
  assert len(np.unique(torch_rates)) >= cuts + 1, "the metric should trigger cuts"
  if "min_lr reached" in name:
    assert min(torch_rates) == kwargs["min_lr"]
  if "eps" in name:
    assert min(torch_rates) == 0.05  # the cut to max(0.025, 0.04) is below eps: skipped

  tx = optax.chain(torch_optim.sgd(1.0, momentum=0.9), lrs.reduce_lr_on_plateau(LR, **kwargs))

  def step(carry, value):
    params, state = carry
    grads = jax.grad(lambda p: jnp.sum((p - target) ** 2))(params)
    updates, state = tx.update(grads, state, params, value=value)
    params = optax.apply_updates(params, updates)
    return (params, state), (state_rate(carry[1]), params)

  def state_rate(state):
    return state[1].lr

  params = jnp.zeros(4)
  _, (rates, ours) = jax.jit(lambda c, m: jax.lax.scan(step, c, m))(
      (params, tx.init(params)), jnp.asarray(metrics))
  close(np.asarray(rates), np.array(torch_rates))
  np.testing.assert_allclose(np.asarray(ours), np.array(torch_params), rtol=1e-12, atol=1e-14)


def test_reduce_lr_on_plateau_under_inject_hyperparams():
  """Every float argument injectable: a traced factor/threshold/min_lr/eps gives torch's rates."""
  metrics = plateau_metrics(150)
  param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
  opt = torch.optim.SGD([param], lr=LR)
  sched = S.ReduceLROnPlateau(opt, factor=0.5, patience=2, threshold=1e-3, min_lr=1e-3)
  expected = []
  for value in metrics:
    expected.append(opt.param_groups[0]["lr"])
    opt.step()
    sched.step(float(value))
  tx = optax.inject_hyperparams(lrs.reduce_lr_on_plateau, static_args=("patience", "cooldown"))(
      lr=LR, factor=0.5, patience=2, threshold=1e-3, min_lr=1e-3)
  params = jnp.ones(1)
  state = tx.init(params)
  step = jax.jit(lambda s, v: tx.update(params, s, params, value=v))
  rates = []
  for value in metrics:
    updates, state = step(state, value)
    rates.append(float(updates[0]))
  close(np.array(rates), np.array(expected))


def test_scheduled_hyperparam_feeds_inject_hyperparams_in_torchs_order():
  """[StepLR, ReduceLROnPlateau] on torch's Adam vs inject_hyperparams(adam)(lr=stateful)."""
  metrics = plateau_metrics(200)
  target = np.linspace(-1.0, 1.0, 3)
  param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
  opt = torch.optim.Adam([param], lr=LR)
  scheds = [S.StepLR(opt, 10, 0.9), S.ReduceLROnPlateau(opt, patience=3)]
  for value in metrics:
    opt.zero_grad()
    ((param - torch.as_tensor(target)) ** 2).sum().backward()
    opt.step()
    scheds[0].step()
    scheds[1].step(float(value))
  members = [lrs.step_lr(LR, 10, 0.9), lrs.Plateau(patience=3)]
  tx = optax.inject_hyperparams(torch_optim.adam)(lr=lrs.scheduled_hyperparam(members))
  params = jnp.zeros(3)
  state = tx.init(params)
  grad_fn = jax.grad(lambda p: jnp.sum((p - target) ** 2))
  step = jax.jit(lambda p, s, v: tx.update(grad_fn(p), s, p, value=v))
  for value in metrics:
    updates, state = step(params, state, value)
    params = optax.apply_updates(params, updates)
  assert float(state.hyperparams["lr"]) < LR * 0.9**19 * 0.1, "the plateau should have cut"
  np.testing.assert_allclose(np.asarray(params), param.detach().numpy(), rtol=1e-10, atol=1e-12)
  close(float(state.hyperparams_states["lr"].lr), opt.param_groups[0]["lr"])


# ----------------------------------------------------------------------------- conversion

CONVERT = {
    name: CASES[name][0]
    for name in [
        "LambdaLR bumps", "MultiplicativeLR", "CosineAnnealingLR 7 0.05",
        "CosineAnnealingWarmRestarts 7 2 1e-3", "CyclicLR triangular2 momentum",
        "OneCycleLR linear three_phase", "SequentialLR Cyclic, Step, Lambda (momentum held)",
        "ChainedScheduler Cosine, Exponential (recursion)",
        "list StepLR, LinearLR (torch's optim_db input)",
    ]
}
FIRST, MORE = 137, 300  # torch steps before the conversion, and after it


@pytest.mark.parametrize("name", CONVERT)
def test_conversion_continues_a_torch_run(name):
  rates, moms, _, _ = torch_run(CONVERT[name], steps=FIRST + MORE)
  # The same run stopped after FIRST steps, converted, then continued in JAX.
  _, _, _, stopped = torch_run(CONVERT[name], steps=FIRST)
  conv = lrs.from_torch_scheduler(stopped if len(stopped) > 1 else stopped[0])
  assert conv.count == FIRST
  jitted, jitted_moms, stepped, stepped_moms = evaluate(
      conv.schedule, MORE, start=FIRST, tx=conv.transformation, state=conv.state)
  close(jitted, rates[FIRST:])
  close(stepped, rates[FIRST:])
  if conv.momentum is not None:
    close(jitted_moms, moms[FIRST:])
    close(stepped_moms, moms[FIRST:])


def test_conversion_from_state_dicts_with_class_names():
  """A state_dict alone (plus the class names, the group, the lambda torch does not store)."""
  make = lambda o: [S.SequentialLR(o, [S.LinearLR(o, 0.1, total_iters=20),
                                       S.OneCycleLR(o, 0.3, total_steps=500)], [20]),
                    S.MultiplicativeLR(o, mult)]
  rates, _, _, _ = torch_run(make, steps=400)
  _, _, opt, scheds = torch_run(make, steps=150)
  conv = lrs.from_torch_scheduler(
      [s.state_dict() for s in scheds],
      class_name=[("SequentialLR", ["LinearLR", "OneCycleLR"]), "MultiplicativeLR"],
      group=opt.state_dict()["param_groups"][0], lr_lambda=mult)
  assert conv.count == 150
  jitted, _, stepped, _ = evaluate(conv.schedule, 250, 150, conv.transformation, conv.state)
  close(jitted, rates[150:])
  close(stepped, rates[150:])


def test_conversion_with_plateau_continues_torchs_loop():
  """torch's optim_db input [StepLR, ReduceLROnPlateau]: convert mid-run, continue both."""
  metrics = plateau_metrics(300)
  target = np.linspace(-1.0, 1.0, 3)

  def torch_loop(opt, scheds, values):
    params = []
    for value in values:
      opt.zero_grad()
      ((opt.param_groups[0]["params"][0] - torch.as_tensor(target)) ** 2).sum().backward()
      opt.step()
      scheds[0].step()
      scheds[1].step(float(value))
      params.append(opt.param_groups[0]["params"][0].detach().numpy().copy())
    return params

  param = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
  opt = torch.optim.SGD([param], lr=LR)
  scheds = [S.StepLR(opt, gamma=0.9, step_size=10), S.ReduceLROnPlateau(opt, patience=2)]
  torch_loop(opt, scheds, metrics[:120])
  conv = lrs.from_torch_scheduler(scheds)
  assert conv.schedule is None and conv.count == 120
  assert int(conv.state.plateaus[0].num_bad_epochs) == scheds[1].num_bad_epochs
  start = jnp.asarray(param.detach().numpy())
  expected = torch_loop(opt, scheds, metrics[120:])
  assert opt.param_groups[0]["lr"] < LR * 0.9**29, "the plateau should have cut"
  tx = optax.chain(torch_optim.sgd(1.0), conv.transformation)
  state = (tx.init(start)[0], conv.state)
  params, ours = start, []
  grad_fn = jax.grad(lambda p: jnp.sum((p - target) ** 2))
  step = jax.jit(lambda p, s, v: tx.update(grad_fn(p), s, p, value=v))
  for value in metrics[120:]:
    updates, state = step(params, state, value)
    params = optax.apply_updates(params, updates)
    ours.append(np.asarray(params))
  np.testing.assert_allclose(np.array(ours), np.array(expected), rtol=1e-12, atol=1e-14)


def test_schedules_never_import_torch():
  """The library duck-types torch's schedulers: no module of the package imports torch."""
  import ast
  import pathlib

  import phaseshift_jax.schedules as package

  files = sorted(pathlib.Path(package.__file__).parent.rglob("*.py"))
  assert len(files) >= 8
  for path in files:
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0
               else [])
      assert not any(n == "torch" or n.startswith("torch.") for n in names), path


# ----------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (lrs.step_lr, dict(lr=0.1, step_size=0), "step_size"),
        (lrs.step_lr, dict(lr=-0.1, step_size=3), "lr"),
        (lrs.multi_step_lr, dict(lr=0.1, milestones=[3, -1]), "milestones"),
        (lrs.constant_lr, dict(lr=0.1, factor=1.5), "factor"),
        (lrs.constant_lr, dict(lr=0.1, factor=0.0, total_iters=3), "factor"),
        (lrs.linear_lr, dict(lr=0.1, start_factor=0.0), "start_factor"),
        (lrs.linear_lr, dict(lr=0.1, end_factor=2.0), "end_factor"),
        (lrs.linear_lr, dict(lr=0.1, total_iters=-1), "total_iters"),
        (lrs.exponential_lr, dict(lr=0.1, gamma=-1.0), "gamma"),
        (lrs.polynomial_lr, dict(lr=0.1, power=-1.0), "power"),
        (lrs.cosine_annealing_lr, dict(lr=0.1, T_max=0), "T_max"),
        (lrs.cosine_annealing_warm_restarts, dict(lr=0.1, T_0=0), "T_0"),
        (lrs.cosine_annealing_warm_restarts, dict(lr=0.1, T_0=3, T_mult=0), "T_mult"),
        (lrs.lambda_lr, dict(lr=0.1, lr_lambda=3.0), "lr_lambda"),
        (lrs.multiplicative_lr, dict(lr=0.1, lr_lambda=None), "lr_lambda"),
        (lrs.cyclic_lr, dict(base_lr=0.1, max_lr=1.0, mode="sine"), "mode"),
        (lrs.cyclic_lr, dict(base_lr=0.1, max_lr=1.0, step_size_up=0), "step_size_up"),
        (lrs.cyclic_lr, dict(base_lr=0.1, max_lr=1.0, scale_fn=abs, scale_mode="x"), "scale_mode"),
        (lrs.one_cycle_lr, dict(max_lr=1.0), "total_steps"),
        (lrs.one_cycle_lr, dict(max_lr=1.0, total_steps=10, pct_start=1.5), "pct_start"),
        (lrs.one_cycle_lr, dict(max_lr=1.0, total_steps=10, pct_start=0.1), "pct_start"),
        (lrs.one_cycle_lr, dict(max_lr=1.0, total_steps=10, anneal_strategy="cosine"),
         "anneal_strategy"),
        (lrs.sequential_lr, dict(schedulers=[lrs.step_lr(0.1, 2)], milestones=[3]), "milestones"),
        (lrs.sequential_lr, dict(schedulers=[lrs.step_lr(0.1, 2)] * 3, milestones=[5, 3]),
         "milestones"),
        (lrs.sequential_lr, dict(schedulers=[], milestones=[]), "schedulers"),
        (lrs.chained_scheduler, dict(schedulers=[lrs.Plateau()]), "schedulers"),
        (lrs.reduce_lr_on_plateau, dict(lr=0.1, mode="maximum"), "mode"),
        (lrs.reduce_lr_on_plateau, dict(lr=0.1, threshold_mode="relative"), "threshold_mode"),
        (lrs.reduce_lr_on_plateau, dict(lr=0.1, factor=1.0), "factor"),
        (lrs.reduce_lr_on_plateau, dict(lr=0.1, patience=-1), "patience"),
        (lrs.reduce_lr_on_plateau, dict(lr=0.1, min_lr=-1.0), "min_lr"),
        (lrs.scheduled_lr, dict(schedulers=[lrs.Plateau()]), "lr"),
        (lrs.from_torch_scheduler, dict(scheduler={"last_epoch": 3}), "class_name"),
        (lrs.from_torch_scheduler, dict(scheduler={}, class_name="LRNone"), "no counterpart"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


def test_a_plateau_member_needs_the_metric():
  tx = lrs.scheduled_lr([lrs.step_lr(0.1, 2), lrs.Plateau()])
  with pytest.raises(ValueError, match="value"):
    tx.update(None, tx.init(None))


def test_rates_are_float64_at_int32_counts_under_x64():
  count = jnp.asarray(7, jnp.int32)
  for name, (_, ours) in CASES.items():
    assert jax.eval_shape(ours, count).dtype == jnp.float64, name
  assert math.isfinite(float(lrs.one_cycle_lr(1.0, total_steps=10)(20)))  # past T: continues


def test_float_arguments_may_be_traced():
  """Branchless: every float argument may be a tracer (e.g. under jax.jit or inject_hyperparams)."""
  builders = [
      (lambda v: lrs.step_lr(0.1, 30, v), 0.5),
      (lambda v: lrs.exponential_lr(v, 0.99), 0.1),
      (lambda v: lrs.cosine_annealing_lr(0.1, 50, v), 1e-3),
      (lambda v: lrs.cyclic_lr(1e-3, v, 40, gamma=0.99, mode="exp_range"), 1e-2),
      (lambda v: lrs.one_cycle_lr(v, total_steps=STEPS, pct_start=0.25), 0.5),
      (lambda v: lrs.one_cycle_lr(0.5, total_steps=STEPS, pct_start=v, three_phase=True), 0.25),
      (lambda v: lrs.polynomial_lr(0.1, 400, v), 2.0),
      (lambda v: lrs.linear_lr(0.1, v, 1.0, 100), 0.1),
      (lambda v: lrs.constant_lr(0.1, v, 100), 0.3),
      (lambda v: lrs.cosine_annealing_warm_restarts(0.1, 7, 2, v), 1e-3),
      (lambda v: lrs.multi_step_lr(0.1, [10, 300], v), 0.3),
  ]
  counts = jnp.arange(0, STEPS, 7, dtype=jnp.int32)
  values = jnp.asarray([v for _, v in builders])

  @jax.jit
  def both(values):  # one compilation: the rates from traced and from Python float arguments
    traced = [jax.vmap(build(values[i]))(counts) for i, (build, _) in enumerate(builders)]
    concrete = [jax.vmap(build(value))(counts) for build, value in builders]
    return traced, concrete

  traced, concrete = both(values)
  for i, (build, value) in enumerate(builders):
    close(np.asarray(traced[i]), np.asarray(concrete[i]), rtol=1e-12)
    assert len(np.unique(np.asarray(concrete[i]))) > 1
