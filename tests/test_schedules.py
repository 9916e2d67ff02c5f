"""Schedules (ours and the optax ones the README maps) against torch.optim.lr_scheduler.

Every schedule is evaluated over 1,000 steps under float64 and must equal the rate torch's
scheduler sets (or the post's formula) to 1e-7 relative.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler as S

from phaseshift_jax import schedules

STEPS = 1000
LR = 0.1
RTOL = 1e-7


def torch_rates(make_scheduler, lr=LR, momentum=0.0):
  """The rate torch's optimizer uses at steps 0..STEPS-1 (one scheduler.step() per step)."""
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([param], lr=lr, momentum=momentum)
  scheduler = make_scheduler(optimizer)
  rates = []
  for _ in range(STEPS):
    rates.append(optimizer.param_groups[0]["lr"])
    optimizer.step()
    scheduler.step()
  return np.array(rates)


def our_rates(schedule):
  """``schedule`` at the int32 counts an optimizer passes, evaluated in float64."""
  with jax.enable_x64(True):
    counts = jnp.arange(STEPS, dtype=jnp.int32)
    return np.asarray(schedules.on_float_count(schedule)(counts), dtype=np.float64)


PAIRS = {
    "StepLR ~ optax.exponential_decay(staircase)": (
        lambda o: S.StepLR(o, step_size=30, gamma=0.5),
        optax.exponential_decay(LR, 30, 0.5, staircase=True),
    ),
    "MultiStepLR ~ optax.piecewise_constant_schedule": (
        lambda o: S.MultiStepLR(o, milestones=[100, 250, 600], gamma=0.3),
        optax.piecewise_constant_schedule(LR, {100: 0.3, 250: 0.3, 600: 0.3}),
    ),
    "ExponentialLR ~ optax.exponential_decay": (
        lambda o: S.ExponentialLR(o, gamma=0.995),
        optax.exponential_decay(LR, 1, 0.995),
    ),
    "LambdaLR(1/(1+kt)) ~ time_based_decay": (
        lambda o: S.LambdaLR(o, lambda t: 1 / (1 + 0.01 * t)),
        schedules.time_based_decay(LR, 0.01),
    ),
    "LambdaLR(1/(1+k floor(t/N))) ~ time_based_decay(staircase)": (
        lambda o: S.LambdaLR(o, lambda t: 1 / (1 + 0.5 * (t // 100))),
        schedules.time_based_decay(LR, 0.5, decay_steps=100, staircase=True),
    ),
    "CosineAnnealingLR ~ cosine_annealing_schedule": (
        lambda o: S.CosineAnnealingLR(o, T_max=300, eta_min=1e-3),
        schedules.cosine_annealing_schedule(LR, 300, eta_min=1e-3),
    ),
    "CosineAnnealingLR(eta_min=0) ~ cosine_annealing_schedule": (
        lambda o: S.CosineAnnealingLR(o, T_max=400),
        schedules.cosine_annealing_schedule(LR, 400),
    ),
    "LinearLR ~ optax.linear_schedule": (
        lambda o: S.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=100),
        optax.linear_schedule(LR * 0.1, LR, 100),
    ),
    "SequentialLR(LinearLR, CosineAnnealingLR) ~ optax.warmup_cosine_decay_schedule": (
        lambda o: S.SequentialLR(
            o,
            [S.LinearLR(o, start_factor=0.01, total_iters=50), S.CosineAnnealingLR(o, 950, 1e-5)],
            milestones=[50],
        ),
        optax.warmup_cosine_decay_schedule(LR * 0.01, LR, 50, STEPS, end_value=1e-5),
    ),
}

CYCLIC = {
    "triangular": {},
    "triangular2": {},
    "exp_range": {"gamma": 0.999},
}


def assert_same_rates(ours, theirs):
  np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", PAIRS)
def test_schedule_matches_torch(name):
  make_scheduler, schedule = PAIRS[name]
  assert_same_rates(our_rates(schedule), torch_rates(make_scheduler))


@pytest.mark.parametrize("mode", CYCLIC)
def test_cyclic_matches_torch(mode):
  kwargs = dict(base_lr=1e-3, max_lr=1e-2, step_size_up=100, step_size_down=150, mode=mode)
  kwargs.update(CYCLIC[mode])
  expected = torch_rates(lambda o: S.CyclicLR(o, **kwargs), momentum=0.9)
  assert_same_rates(our_rates(schedules.cyclic_schedule(**kwargs)), expected)


def test_optax_cosine_equals_torch_only_up_to_t_max():
  """Why cosine_annealing_schedule exists: optax's cosine stays at the floor after T_max."""
  expected = torch_rates(lambda o: S.CosineAnnealingLR(o, T_max=300, eta_min=1e-3))
  optax_rates = our_rates(optax.cosine_decay_schedule(LR, 300, alpha=1e-3 / LR))
  assert_same_rates(optax_rates[:301], expected[:301])
  assert not np.allclose(optax_rates[301:], expected[301:], rtol=RTOL)


@pytest.mark.parametrize("anneal_every", [1, 50])
def test_miniai_annealing_factor_is_the_posts_formula(anneal_every):
  """The post anneals by anneal_rate ** i; per epoch, by anneal_rate ** (i // steps_per_epoch)."""
  steps = np.arange(STEPS)
  expected = LR * 0.97 ** (steps // anneal_every)
  schedule = optax.exponential_decay(LR, anneal_every, 0.97, staircase=True)
  assert_same_rates(our_rates(schedule), expected)


def test_own_schedules_are_float64_at_int32_counts_under_x64():
  """optax divides the int32 count and gets float32; ours keep the rate in float64."""
  with jax.enable_x64(True):
    count = jnp.asarray(7, jnp.int32)
    assert optax.exponential_decay(1.0, 1, 0.97)(count).dtype == jnp.float32
    for schedule in [
        schedules.time_based_decay(1.0, 0.1),
        schedules.cosine_annealing_schedule(1.0, 10),
        schedules.cyclic_schedule(0.1, 1.0, 5),
        schedules.on_float_count(optax.exponential_decay(1.0, 1, 0.97)),
    ]:
      assert schedule(count).dtype == jnp.float64


# ----------------------------------------------------------------------------- plateau


def plateau_metrics():
  """A noisy, decaying metric with long stretches that do not improve."""
  rng = np.random.RandomState(0)
  t = np.arange(STEPS)
  return np.exp(-t / 250) + 0.05 * rng.standard_normal(STEPS) * np.exp(-t / 500)


def torch_plateau_rates(metrics, lr, **kwargs):
  param = torch.nn.Parameter(torch.zeros(1))
  optimizer = torch.optim.SGD([param], lr=lr)
  scheduler = S.ReduceLROnPlateau(optimizer, **kwargs)
  rates = []
  for value in metrics:
    optimizer.step()
    scheduler.step(float(value))
    rates.append(optimizer.param_groups[0]["lr"])
  return np.array(rates)


def transform_rates(tx, metrics, lr):
  """``lr * scale`` after each ``update(..., value=metric)`` of a plateau transformation."""
  with jax.enable_x64(True):
    params = jnp.zeros(1)
    update = jax.jit(lambda state, value: tx.update(params, state, params, value=value)[1])
    state, rates = tx.init(params), []
    for value in metrics:
      state = update(state, jnp.asarray(value))
      rates.append(lr * float(state.scale))
  return np.array(rates)


PLATEAU_LR = 0.1
PLATEAU = {
    "defaults": dict(),
    "factor, patience, rel threshold, cooldown, min_lr": dict(
        factor=0.5, patience=5, threshold=1e-2, cooldown=3, min_lr=1e-3
    ),
    "abs threshold": dict(factor=0.7, patience=3, threshold=5e-3, threshold_mode="abs", cooldown=2),
}


@pytest.mark.parametrize("name", PLATEAU)
def test_reduce_lr_on_plateau_matches_torch(name):
  torch_kwargs = PLATEAU[name]
  ours_kwargs = {k: v for k, v in torch_kwargs.items() if k != "min_lr"}
  ours_kwargs["min_scale"] = torch_kwargs.get("min_lr", 0.0) / PLATEAU_LR
  ours_kwargs["eps"] = 1e-8 / PLATEAU_LR  # torch's default eps, in units of the scale
  metrics = plateau_metrics()
  expected = torch_plateau_rates(metrics, PLATEAU_LR, **torch_kwargs)
  assert len(np.unique(expected)) >= 4, "the metric should trigger several reductions"
  ours = transform_rates(schedules.reduce_lr_on_plateau(**ours_kwargs), metrics, PLATEAU_LR)
  assert_same_rates(ours, expected)


def test_optax_plateau_counts_patience_differently():
  """Why reduce_lr_on_plateau exists: optax reduces one non-improving step earlier than torch."""
  metrics = plateau_metrics()
  expected = torch_plateau_rates(metrics, 1.0, patience=5)
  optax_rates = transform_rates(optax.contrib.reduce_on_plateau(patience=5), metrics, 1.0)
  first_torch = np.argmax(expected < 1.0)
  first_optax = np.argmax(optax_rates < 1.0)
  assert first_optax < first_torch


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (schedules.time_based_decay, dict(init_value=1.0, decay_rate=-1.0), "decay_rate"),
        (
            schedules.time_based_decay, dict(init_value=1.0, decay_rate=1.0, decay_steps=0),
            "decay_steps",
        ),
        (schedules.cosine_annealing_schedule, dict(init_value=1.0, t_max=0), "t_max"),
        (schedules.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, mode="sine"), "mode"),
        (schedules.cyclic_schedule, dict(base_lr=0.1, max_lr=1.0, step_size_up=-2), "step_size_up"),
        (schedules.reduce_lr_on_plateau, dict(threshold_mode="relative"), "threshold_mode"),
        (schedules.reduce_lr_on_plateau, dict(threshold=0.0), "threshold"),
        (schedules.reduce_lr_on_plateau, dict(patience=-1), "patience"),
    ],
)
def test_invalid_arguments_are_named(factory, kwargs, name):
  with pytest.raises(ValueError, match=name):
    factory(**kwargs)


def test_reduce_lr_on_plateau_chains_after_an_optimizer():
  tx = optax.chain(optax.sgd(1.0), schedules.reduce_lr_on_plateau(factor=0.5, patience=0))
  params = jnp.ones(2)
  state = tx.init(params)
  scales = []
  for value in [1.0, 2.0, 2.0]:  # improve, then two steps without improvement
    updates, state = tx.update(jnp.ones(2), state, params, value=value)
    scales.append(float(-updates[0]))
  assert scales == [1.0, 0.5, 0.25]


def test_integer_arguments_take_numpy_and_jax_integers():
  """t_max, step sizes and patience as NumPy / JAX integers (inject_hyperparams hands ints over
  as int32 arrays) give the Python int's schedule; a float or a negative one is refused."""
  from phaseshift_jax import schedules as S  # noqa: PLC0415
  for t_max in (np.int64(5), jnp.int32(5)):
    np.testing.assert_allclose(S.cosine_annealing_schedule(1.0, t_max)(3),
                               S.cosine_annealing_schedule(1.0, 5)(3), rtol=1e-7)
  np.testing.assert_allclose(S.cyclic_schedule(0.1, 1.0, np.int64(4))(2),
                             S.cyclic_schedule(0.1, 1.0, 4)(2), rtol=1e-7)
  S.reduce_lr_on_plateau(patience=np.int64(3))
  traced = jax.jit(lambda t, c: S.cosine_annealing_schedule(1.0, t)(c))(10, 5)
  np.testing.assert_allclose(traced, S.cosine_annealing_schedule(1.0, 10)(5), rtol=1e-6)
  for bad in (2.5, np.int64(-1), np.float32(3.0)):
    with pytest.raises(ValueError, match="t_max must be a non-negative integer"):
      S.cosine_annealing_schedule(1.0, bad)
