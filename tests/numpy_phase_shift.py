"""A straightforward NumPy PhaseShift step, written as the original's scan (spec reading).

Used as the oracle of the property tests: a Python loop with a running maximum,
the candidate overwritten per leaf in "last" mode, kept in "argmax" mode.
"""

from __future__ import annotations

import numpy as np


def numpy_phase_shift_step(params, grads, prev, *, lr, threshold, shift_boundary,
                           min_gradient_magnitude, selection, granularity):
  """One step on lists of arrays (a grad may be None). Returns (params, prev, shifted)."""
  params = [None if p is None else np.array(p) for p in params]
  new_prev = list(prev)
  running_max = 0.0
  candidate = None
  for i, (p, g, h) in enumerate(zip(params, grads, prev)):
    if g is None:
      continue
    params[i] = p - lr * g
    diff = np.abs(g - h)
    change = diff.max() if diff.size else 0.0
    if change > running_max and change > min_gradient_magnitude:
      running_max = change
      candidate = i
    elif selection == "last":
      candidate = None
    new_prev[i] = g
  if candidate is not None:
    g = grads[candidate]
    kick = np.clip(np.sign(g) * threshold, -shift_boundary, shift_boundary).astype(g.dtype)
    if granularity == "element":
      mask = np.zeros(g.size, bool)
      mask[np.argmax(np.abs(g - prev[candidate]).ravel())] = True
      kick = np.where(mask.reshape(g.shape), kick, 0).astype(g.dtype)
    params[candidate] = params[candidate] + kick
  return params, new_prev, (-1 if candidate is None else candidate)
