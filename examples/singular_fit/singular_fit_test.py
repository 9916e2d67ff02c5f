"""The singular-function fit (the MLP video): Adam beats plain GD, no NaN."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from examples.singular_fit import mlp
from examples.singular_fit import target
from examples.singular_fit.__main__ import main

STEPS = 1000  # a third of the demo's; Adam's lead is already clear there
SEEDS = 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
  """The demo's command line, run once with a smaller budget: (outdir, fits)."""
  outdir = tmp_path_factory.mktemp("singular_fit")
  fits = main(["--outdir", str(outdir), "--steps", str(STEPS), "--seeds", str(SEEDS)])
  return outdir, fits


@pytest.fixture(scope="module")
def fits(demo):
  return demo[1]


def test_target_has_its_poles_where_the_video_says_and_is_clamped():
  x, y = (np.asarray(a)[:, 0] for a in target.dataset())
  assert np.isfinite(y).all() and np.abs(y).max() == target.CLAMP
  assert np.all(np.asarray(target.numerator(x)) > 0)  # nothing cancels a pole
  for pole in target.POLES:
    i = int(np.argmin(np.abs(x - pole)))
    assert abs(x[i] - pole) < 1e-6, pole  # every pole is a training point
    assert abs(y[i]) == target.CLAMP, (pole, y[i])
    assert abs(float(target.denominator(jnp.float32(pole)))) < 1e-5
  # Away from the poles the function is moderate: the clamp only bites near them.
  far = np.min(np.abs(x[:, None] - np.array(target.POLES)[None, :]), axis=1) > 0.05
  assert np.abs(y[far]).max() < target.CLAMP


def test_without_the_clamp_training_would_see_nan():
  x, _ = target.dataset()
  raw = target.numerator(x) / target.denominator(x)
  assert not np.isfinite(np.asarray(raw)).all()
  params = mlp.init(jax.random.key(0))
  loss, grads = jax.jit(jax.value_and_grad(mlp.mse))(params, x, raw)
  assert np.isinf(float(loss))
  assert any(np.isnan(np.asarray(g)).any() for g in jax.tree.leaves(grads))


def test_adam_ends_lower_than_plain_gradient_descent(fits):
  assert set(fits) == {"GD", "Adam", "PhaseShift"}
  gd, adam = fits["GD"].final_loss, fits["Adam"].final_loss
  assert np.all(adam < gd), (adam, gd)  # seed by seed, same initialisation
  assert adam.mean() < 0.85 * gd.mean(), (adam, gd)
  # Same initialisations: every optimizer starts from the same loss.
  np.testing.assert_allclose(fits["GD"].losses[:, 0], fits["Adam"].losses[:, 0])
  np.testing.assert_allclose(fits["GD"].losses[:, 0], fits["PhaseShift"].losses[:, 0])


def test_no_nan_anywhere_and_phase_shift_kicks(fits):
  for name, fit in fits.items():
    for array in fit[:3]:
      assert np.isfinite(array).all(), name
    assert fit.losses.shape == (SEEDS, STEPS)
  assert np.all(fits["PhaseShift"].kicks > 0)
  assert not fits["GD"].kicks.any() and not fits["Adam"].kicks.any()


def test_cli_writes_png_and_table(demo, fits):
  outdir, _ = demo
  png = outdir / "singular_fit.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = (outdir / "singular_fit.md").read_text()
  assert f"after {STEPS} steps" in table and table.count("\n") == 2 + 3
  assert "| yes |" not in table  # the NaN column says no everywhere
  assert f"| Adam | {fits['Adam'].final_loss.mean():.1f} |" in table
