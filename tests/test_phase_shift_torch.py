"""PhaseShift against a torch implementation of the original, side by side for 200 steps."""

import numpy as np
import pytest

import phaseshift_jax as ps
from tests.crosscheck.harness import run_crosscheck
from tests.crosscheck.report import crosscheck_report
from tests.crosscheck.torch_phase_shift import TorchPhaseShift

# Small kicks so the models keep training; mgm filters out the smallest changes.
HYPER = dict(threshold=0.01, shift_boundary=0.005, min_gradient_magnitude=1e-3)
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


@pytest.mark.parametrize("model", ["mlp", "cnn"])
@pytest.mark.parametrize("selection", ["last", "argmax"])
def test_matches_torch_original(selection, model, pytestconfig):
  """``last`` against the original's behaviour, ``argmax`` against the corrected torch version."""
  diffs = {}
  for dtype in ("float32", "float64"):
    result = run_crosscheck(
        lambda params: TorchPhaseShift(params, lr=0.05, literal=selection == "last", **HYPER),
        ps.phase_shift(0.05, selection=selection, **HYPER),
        model=model, steps=200, dtype=dtype,
        torch_record=lambda opt: opt.last_shifted,
        jax_record=lambda state: int(state.shifted_leaf))
    assert result.jax_records == result.torch_records  # the same leaf kicked at every step
    kicked = [k for k in result.torch_records if k >= 0]
    assert len(kicked) >= 10, "the comparison must exercise the kick"
    if selection == "argmax":
      assert len(set(kicked)) >= 2, "argmax should pick different leaves over the run"
    assert np.all(np.isfinite(np.concatenate([p.ravel() for p in result.jax_params])))
    diffs[dtype] = result.max_abs_param_diff
  crosscheck_report(pytestconfig).add(
      f"phase_shift(selection={selection!r}) [{model}]", 200, diffs["float32"], diffs["float64"])
  assert diffs["float32"] <= TOLERANCE["float32"]
  assert diffs["float64"] <= TOLERANCE["float64"]
