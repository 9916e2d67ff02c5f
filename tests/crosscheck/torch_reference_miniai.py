"""torch implementations of the miniai-style optimizers of the "Adam with annealing" post.

The reference side of the miniai cross-check (reference 004), written from the post's description:
one ``step()`` shrinks each parameter by ``1 - lr * wd`` (base rate) and then applies the rule;
the step counter ``i`` starts at 0 and grows by one per ``step()``. ``Adam`` adds ``eps`` inside
the square root, ``AdamWithAnnealing`` outside, and the latter scales the rate by
``anneal_rate ** (i // anneal_every)`` (the post: ``anneal_every = 1``).
"""

from __future__ import annotations

import torch


class _MiniAI(torch.optim.Optimizer):
  """One ``step()``: weight-decay shrink, then ``_update`` for every parameter; then ``i += 1``."""

  def __init__(self, params, **defaults):
    super().__init__(params, defaults)
    self.i = 0

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        if group["wd"] != 0:
          p.mul_(1 - group["lr"] * group["wd"])
        self._update(p, p.grad, self.state[p], group)
    self.i += 1

  def _moments(self, grad, state, group):
    """Update the averages in ``state`` (``avg``, ``sqr_avg``); return them bias-corrected."""
    b1, b2 = group["beta1"], group["beta2"]
    avg = state.setdefault("avg", torch.zeros_like(grad))
    sqr_avg = state.setdefault("sqr_avg", torch.zeros_like(grad))
    avg.mul_(b1).add_((1 - b1) * grad)
    sqr_avg.mul_(b2).add_((1 - b2) * grad * grad)
    t = self.i + 1
    return avg / (1 - b1**t), sqr_avg / (1 - b2**t)


class SGD(_MiniAI):
  """p <- (1 - lr wd) p - lr g."""

  def __init__(self, params, lr, wd=0.0):
    super().__init__(params, lr=lr, wd=wd)

  def _update(self, p, grad, state, group):
    p.sub_(group["lr"] * grad)


class Adam(_MiniAI):
  """p <- (1 - lr wd) p - lr m_hat / sqrt(v_hat + eps)."""

  def __init__(self, params, lr, wd=0.0, beta1=0.9, beta2=0.99, eps=1e-5):
    super().__init__(params, lr=lr, wd=wd, beta1=beta1, beta2=beta2, eps=eps)

  def _update(self, p, grad, state, group):
    m_hat, v_hat = self._moments(grad, state, group)
    p.sub_(group["lr"] * m_hat / torch.sqrt(v_hat + group["eps"]))


class AdamWithAnnealing(_MiniAI):
  """p <- (1 - lr wd) p - lr * anneal_rate**(i // anneal_every) * m_hat / (sqrt(v_hat) + eps)."""

  def __init__(
      self, params, lr, wd=0.0, beta1=0.9, beta2=0.99, eps=1e-5, anneal_rate=0.97, anneal_every=1
  ):
    super().__init__(
        params, lr=lr, wd=wd, beta1=beta1, beta2=beta2, eps=eps,
        anneal_rate=anneal_rate, anneal_every=anneal_every,
    )

  def _update(self, p, grad, state, group):
    m_hat, v_hat = self._moments(grad, state, group)
    annealed_lr = group["lr"] * group["anneal_rate"] ** (self.i // group["anneal_every"])
    p.sub_(annealed_lr * m_hat / (torch.sqrt(v_hat) + group["eps"]))
