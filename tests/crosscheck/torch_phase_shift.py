"""A torch PhaseShift optimizer that behaves like the original, written from the spec.

``literal=True`` keeps the original's quirk: the candidate variable is reset by every
leaf that does not set a new running maximum, so only the last leaf can be kicked.
``literal=False`` is the corrected version (keep the best candidate), which is what
``phase_shift(selection="argmax")`` implements. The original also syncs with the host
for every leaf (``.item()``); this reference does the same comparisons on tensors.
"""

from __future__ import annotations

import torch


class TorchPhaseShift(torch.optim.Optimizer):
  """In-place descent ``p -= lr * g``, then ``p += clamp(sign(g_k) * threshold, +-boundary)``."""

  def __init__(self, params, lr, threshold, shift_boundary, min_gradient_magnitude,
               literal=True):
    defaults = dict(lr=lr, threshold=threshold, shift_boundary=shift_boundary,
                    min_gradient_magnitude=min_gradient_magnitude)
    super().__init__(params, defaults)
    self.literal = literal
    self.history = None  # the previous step's gradients, one per parameter
    self.last_shifted = -1  # index of the kicked parameter in the last step, or -1

  @torch.no_grad()
  def step(self, closure=None):
    loss = closure() if closure is not None else None
    group = self.param_groups[0]
    lr, threshold = group["lr"], group["threshold"]
    boundary, floor = group["shift_boundary"], group["min_gradient_magnitude"]
    running_max = 0
    chosen = None
    for index, p in enumerate(group["params"]):
      if p.grad is None:
        continue
      grad = p.grad
      p.sub_(lr * grad)
      previous = self.history[index] if self.history is not None else torch.zeros_like(grad)
      change = (grad - previous).abs().max()
      if change > running_max and change > floor:
        running_max = change
        chosen = index
      elif self.literal:
        chosen = None
    self.last_shifted = -1 if chosen is None else chosen
    if chosen is not None:
      p = group["params"][chosen]
      p.add_(torch.clamp(torch.sign(p.grad) * threshold, -boundary, boundary))
    self.history = [p.grad.clone() for p in group["params"]]
    return loss
