"""The torch optimizers the benchmarks compare: two PhaseShift implementations and torch.optim.

* :class:`OriginalStylePhaseShift` runs a step the way the original optimizer does
  (``docs/phase-shift.md``): a Python loop over the parameters that syncs
  with the host for every one (a tensor comparison in an ``if``, ``.item()`` and
  ``.cpu()`` for the per-step details), a fresh ``lr * grad`` and ``zeros_like``
  per parameter, and the history kept as clones in a ``deque``. It is the
  "original" contender, with the literal selection (only the last leaf can win).
* :class:`ForeachPhaseShift` is PhaseShift written for speed in torch: ``torch._foreach_*``
  ops over all parameters at once, the selection on device, no host syncs. It is
  the strongest torch peer (argmax selection, like ``phase_shift``'s default).
* ``torch.optim.SGD`` / ``Adam`` with ``foreach=True``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from benchmarks.contenders import KICK
from benchmarks.contenders import LR


class OriginalStylePhaseShift(torch.optim.Optimizer):
  """PhaseShift with the original's control flow and host syncs (one param group)."""

  def __init__(self, params, lr, threshold, shift_boundary, min_gradient_magnitude):
    super().__init__(params, dict(lr=lr, threshold=threshold, shift_boundary=shift_boundary,
                                  min_gradient_magnitude=min_gradient_magnitude))
    self.gradient_history: collections.deque = collections.deque(maxlen=2)

  @torch.no_grad()
  def step(self, closure=None):
    details = []
    group = self.param_groups[0]
    lr, floor = group["lr"], group["min_gradient_magnitude"]
    candidate, running_max = None, 0
    for index, p in enumerate(group["params"]):
      if p.grad is None:
        continue
      grad = p.grad
      p.data -= lr * grad
      previous = (self.gradient_history[-1][index] if self.gradient_history
                  else torch.zeros_like(grad))
      change = torch.abs(grad - previous).max()
      candidate = None  # every leaf that sets no new maximum drops the candidate
      if change > running_max and change > floor:  # bool(tensor): a host sync
        running_max = change
        candidate = p
        details.append({"gradient_change": running_max.item(),
                        "phase_shift_value": change.cpu().numpy().tolist()})
    if candidate is not None:
      kick = torch.sign(candidate.grad) * group["threshold"]
      candidate += torch.clamp(kick, -group["shift_boundary"], group["shift_boundary"])
    self.gradient_history.append([p.grad.clone() for p in group["params"]])
    return details


class ForeachPhaseShift(torch.optim.Optimizer):
  """PhaseShift (argmax selection) with ``torch._foreach_*`` ops and no host syncs.

  ``p -= lr * g`` on every parameter; the changes ``max|g - h|`` are a
  ``_foreach_max`` over the history turned into ``|h - g|`` in place (faster on
  CPU than ``_foreach_norm(inf)``); the pick is an ``argmax``
  on device that yields a kick size per parameter (zero on all but one), so the
  kick ``size_i * sign(g_i)`` is added to every parameter without a branch.
  """

  def __init__(self, params, lr, threshold, shift_boundary, min_gradient_magnitude):
    super().__init__(params, dict(lr=lr, threshold=threshold, shift_boundary=shift_boundary,
                                  min_gradient_magnitude=min_gradient_magnitude))
    self.history: list[torch.Tensor] | None = None

  @torch.no_grad()
  def step(self, closure=None):
    group = self.param_groups[0]
    params = [p for p in group["params"] if p.grad is not None]
    grads = [p.grad for p in params]
    if self.history is None:
      self.history = [torch.zeros_like(g) for g in grads]
    torch._foreach_add_(params, grads, alpha=-group["lr"])
    torch._foreach_sub_(self.history, grads)  # |h - g|, in place
    torch._foreach_abs_(self.history)
    changes = torch.stack(torch._foreach_max(self.history))  # NaN propagates
    changes = torch.where(torch.isnan(changes), float("-inf"), changes)
    best = torch.argmax(changes)
    size = min(max(group["threshold"], -group["shift_boundary"]), group["shift_boundary"])
    hit = (torch.arange(len(params), device=changes.device) == best) & (
        changes[best] > max(0.0, group["min_gradient_magnitude"]))
    kicks = torch._foreach_sign(grads)
    torch._foreach_mul_(kicks, list(torch.unbind(hit.to(changes.dtype) * size)))
    torch._foreach_add_(params, kicks)
    torch._foreach_copy_(self.history, grads)


# name -> factory of an optimizer over a list of tensors
CONTENDERS: dict[str, Callable[[list[torch.Tensor]], torch.optim.Optimizer]] = {
    "torch original-style PhaseShift": lambda ps: OriginalStylePhaseShift(ps, LR, **KICK),
    "torch foreach PhaseShift": lambda ps: ForeachPhaseShift(ps, LR, **KICK),
    "torch.optim.SGD(foreach)": lambda ps: torch.optim.SGD(ps, lr=LR, foreach=True),
    "torch.optim.Adam(foreach)": lambda ps: torch.optim.Adam(ps, lr=LR, foreach=True),
}


def device_for(jax_backend: str) -> str | None:
  """The torch device to compare with JAX's backend: ``"cpu"``, ``"cuda"``, or None (none here)."""
  if jax_backend == "cpu":
    return "cpu"
  if jax_backend in ("gpu", "cuda") and torch.cuda.is_available():
    return "cuda"
  return None


def waiting(call: Callable[[], Any], device: str) -> Callable[[], Any]:
  """``call``, made to return only once ``device``'s queued work is done (CUDA runs it later)."""
  if device != "cuda":
    return call

  def call_and_wait():
    call()
    torch.cuda.synchronize()

  return call_and_wait


def tensors(arrays: list[Any], device: str = "cpu") -> list[torch.Tensor]:
  """Torch copies (float32, contiguous) of a list of arrays, on ``device``."""
  return [torch.from_numpy(np.array(a, dtype=np.float32, copy=True)).to(device) for a in arrays]
