"""Run one optimizer case through the harness in float32 and float64, report it and assert."""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import optax

from tests.crosscheck.harness import DTYPES, jax_state, max_abs_diff, run_crosscheck, torch_state
from tests.crosscheck.report import crosscheck_report

STEPS = 200
TOLERANCE = {"float32": 1e-5, "float64": 1e-10}


@dataclasses.dataclass(frozen=True)
class OptimizerCase:
  """A (torch reference, optax transformation) pair and the optimizer state they share.

  ``state`` lists ``(torch state key, optax state field)`` pairs compared after the last step,
  to the parameters' tolerance scaled by ``max(1, max |torch state|)`` (momentum buffers of
  RMSprop, for one, grow far beyond 1).
  """

  name: str
  make_torch: Callable[[list], object]
  make_tx: Callable[[], optax.GradientTransformation]
  state: tuple = ()

  def __str__(self):
    return self.name


def case(name: str, torch_cls, ours_fn, state: tuple = (), **kwargs) -> OptimizerCase:
  """The case of ``torch_cls(params, **kwargs)`` against ``ours_fn(**kwargs)``: the same arguments."""
  return OptimizerCase(
      name=name,
      make_torch=lambda params: torch_cls(params, **kwargs),
      make_tx=lambda: ours_fn(**kwargs),
      state=state,
  )


def check_case(case: OptimizerCase, model: str, config) -> None:
  """Cross-check ``case`` on ``model`` for both dtypes; add a report line; assert tolerances."""
  param_diffs, failures = {}, []
  for dtype in DTYPES:
    result = run_crosscheck(case.make_torch, case.make_tx(), model=model, steps=STEPS, dtype=dtype)
    param_diffs[dtype] = result.max_abs_param_diff
    diffs = {"params": result.max_abs_param_diff}
    for torch_key, jax_field in case.state:
      expected = torch_state(result.torch_optimizer, torch_key)
      scale = max(1.0, max(float(np.max(np.abs(x))) for x in expected))
      diffs[f"state {torch_key}/{jax_field} (/{scale:.3g})"] = (
          max_abs_diff(expected, jax_state(result.opt_state, jax_field)) / scale
      )
    failures += [
        f"{dtype} {what}: max abs diff {diff:.3e} > {TOLERANCE[dtype]:.0e}"
        for what, diff in diffs.items()
        if not diff <= TOLERANCE[dtype]
    ]
  crosscheck_report(config).add(
      f"{case.name} [{model}]", STEPS, param_diffs["float32"], param_diffs["float64"]
  )
  assert not failures, f"{case.name} [{model}]: " + "; ".join(failures)
