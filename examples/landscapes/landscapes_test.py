"""The behaviours the momentum lab reports, asserted."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
import pytest
import torch

import phaseshift_jax
from phaseshift_jax.compat import torch as torch_compat
from examples.landscapes import objectives
from examples.landscapes import run
from examples.landscapes.__main__ import main

STALL_STEP = 3e-3  # |dw| per step below which SGD counts as stalled


def _torch_lab_path(landscape, momentum, steps):
  """The lab's loop, literally: a bias-free nn.Linear(1, 1) at x = 1 and torch SGD."""
  torch.manual_seed(0)
  model = torch.nn.Linear(1, 1, bias=False)
  with torch.no_grad():
    model.weight.fill_(landscape.start)
  opt = torch.optim.SGD(model.parameters(), lr=landscape.learning_rate, momentum=momentum)
  objective = {objectives.cubic: lambda y: y**3,
               objectives.quartic: lambda y: torch.mean(
                   2 * y**4 - 9 * y**3 - 21 * y**2 + 88 * y + 48)}[landscape.objective]
  path = [model.weight.item()]
  for _ in range(steps):
    opt.zero_grad()
    loss = objective(model(torch.tensor([[1.0]]))).sum()
    loss.backward()
    opt.step()
    path.append(model.weight.item())
  return np.array(path)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("landscape,steps", [(objectives.QUARTIC, 100),
                                             (objectives.CUBIC, 10)])
def test_sgd_is_torch_sgd(landscape, steps, momentum):
  expected = _torch_lab_path(landscape, momentum, steps)
  paths = run.run(landscape, torch_compat.sgd(landscape.learning_rate, momentum=momentum),
                  jax.random.split(jax.random.key(0), 1), steps=steps)
  np.testing.assert_allclose(paths.w[0], expected, rtol=1e-5, atol=1e-5)


def test_quartic_sgd_ends_at_local_momentum_at_global_minimum():
  results = run.run_all(objectives.QUARTIC)
  sgd, momentum = results["SGD"].w[0], results["SGD momentum 0.9"].w[0]
  assert abs(sgd[-1] - 4.0) < 0.05, sgd[-1]
  assert np.all(sgd > 11 / 8)  # never left the local basin
  assert abs(momentum[-1] + 2.0) < 0.05, momentum[-1]
  assert momentum.max() <= 6.0 and momentum.min() < 11 / 8  # crossed the barrier
  for paths in results.values():
    assert np.isfinite(paths.w).all() and np.isfinite(paths.loss).all()


def test_cubic_sgd_stalls_at_saddle_momentum_passes_it():
  results = run.run_all(objectives.CUBIC)
  sgd = results["SGD"].w[0]
  assert np.all(sgd > 0) and np.all(np.diff(sgd) < 0)  # descends, never crosses 0
  assert sgd[-1] < 0.5 and abs(sgd[-1] - sgd[-2]) < STALL_STEP
  assert run.ending(objectives.CUBIC, sgd[-1], False) == "stalled at the saddle"
  # Ten times longer: still on the positive side, creeping towards 0.
  longer = run.run(objectives.CUBIC, torch_compat.sgd(0.01),
                   jax.random.split(jax.random.key(0), 1), steps=1000).w[0]
  assert np.all(longer > 0) and longer[-1] < 0.05
  momentum = results["SGD momentum 0.9"]
  assert momentum.w[0].min() < 0 and momentum.stopped[0]
  crossed = int(np.argmax(momentum.w[0] < 0))
  assert crossed <= 10, crossed  # within the lab's 10 steps


def test_noise_on_the_loss_has_no_gradient_so_paths_are_unchanged():
  clean = run.run_all(objectives.QUARTIC)
  noisy = run.run_all(objectives.QUARTIC_LOSS_NOISE, seeds=4)
  for name in clean:
    np.testing.assert_array_equal(noisy[name].w, np.repeat(clean[name].w, 4, axis=0))
    clean_loss = np.repeat(clean[name].loss, 4, axis=0)
    spread = np.std(noisy[name].loss - clean_loss)
    assert 7.0 < spread < 13.0, spread  # the noise is there, with std 10


def test_gradient_noise_is_gaussian_on_the_gradient():
  landscape = objectives.QUARTIC_GRADIENT_NOISE
  eps = jax.random.normal(jax.random.key(1), (4000,))
  w = np.float32(3.0)
  grads = jax.vmap(jax.grad(landscape.loss), in_axes=(None, 0))(w, eps)
  clean = jax.grad(objectives.QUARTIC.loss)(w)
  noise = np.asarray(grads - clean)
  assert abs(noise.mean()) < 5.0 and 95.0 < noise.std() < 105.0


def test_with_the_labs_noise_level_on_the_gradient_momentum_still_wins():
  landscape = dataclasses.replace(objectives.QUARTIC_GRADIENT_NOISE, noise_std=10.0)
  results = run.run_all(landscape, seeds=16)
  assert np.all(np.abs(results["SGD"].w[:, -1] - 4.0) < 0.5)
  assert np.all(np.abs(results["SGD momentum 0.9"].w[:, -1] + 2.0) < 0.5)


def test_phase_shift_kicks_while_moving_fast_then_settles():
  results = run.run_all(objectives.QUARTIC)
  kicked = results["PhaseShift"].kicked[0]
  assert kicked[0] and kicked.sum() >= 2 and not kicked[50:].any()
  assert abs(results["PhaseShift"].w[0, -1] - 4.0) < 0.05
  # With a threshold below the change a kick itself causes (l''(4) * 0.1 = 12.6),
  # the kicks keep triggering each other and w hovers above the minimum.
  small = phaseshift_jax.phase_shift(0.001, 0.1, 0.1, 5.0)
  hover = run.run(objectives.QUARTIC, small, jax.random.split(jax.random.key(0), 1))
  assert hover.kicked[0, 50:].mean() > 0.5 and hover.w[0, -1] > 4.2


def test_adam_moves_about_lr_per_step():
  paths = run.run(objectives.QUARTIC, optax.adam(run.ADAM_LEARNING_RATE),
                  jax.random.split(jax.random.key(0), 1), steps=10)
  assert np.all(np.abs(np.diff(paths.w[0])) <= 1.05 * run.ADAM_LEARNING_RATE)


def test_cli_writes_pngs_and_table(tmp_path, capsys):
  main(["--outdir", str(tmp_path), "--seeds", "4"])
  for name in objectives.LANDSCAPES:
    png = tmp_path / f"landscape_{name}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = (tmp_path / "landscapes.md").read_text()
  assert table.count("\n") == 2 + 4 * len(objectives.LANDSCAPES)
  assert "| quartic | SGD momentum 0.9 | -1.991 | global minimum (-2) |" in table
  assert "wrote" in capsys.readouterr().out
