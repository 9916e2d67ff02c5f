"""torch implementations of minima's optimizers, written from its ``optim`` documentation.

The reference side of the minima cross-check (reference 002): each optimizer first shrinks every
parameter by ``1 - lr * wd`` and then takes its own step, with the formulas and defaults that the
document gives. State is kept per parameter under the keys named in each class.
"""

from __future__ import annotations

import torch


class _Minima(torch.optim.Optimizer):
  """Runs ``_update(p, grad, state, group)`` for every parameter after the weight-decay shrink."""

  @torch.no_grad()
  def step(self):
    for group in self.param_groups:
      for p in group["params"]:
        if p.grad is None:
          continue
        if group["wd"] != 0:
          p.mul_(1 - group["lr"] * group["wd"])
        self._update(p, p.grad, self.state[p], group)


class SGD(_Minima):
  """v <- mu v + (1 - mu) g;  p <- p - lr v.  State: ``velocity``."""

  def __init__(self, params, lr=0.01, momentum=0.0, wd=0.0):
    super().__init__(params, dict(lr=lr, momentum=momentum, wd=wd))

  def _update(self, p, grad, state, group):
    mu = group["momentum"]
    velocity = state.setdefault("velocity", torch.zeros_like(p))
    velocity.mul_(mu).add_(grad, alpha=1 - mu)
    p.sub_(group["lr"] * velocity)


class AdaGrad(_Minima):
  """G <- G + g^2;  p <- p - lr g / sqrt(G + eps).  State: ``sum_sq``."""

  def __init__(self, params, lr=0.001, wd=0.0, eps=1e-7):
    super().__init__(params, dict(lr=lr, wd=wd, eps=eps))

  def _update(self, p, grad, state, group):
    total = state.setdefault("sum_sq", torch.zeros_like(p))
    total.add_(grad * grad)
    p.sub_(group["lr"] * grad / torch.sqrt(total + group["eps"]))


class RMSProp(_Minima):
  """c <- rho c + (1 - rho) g^2;  p <- p - lr g / sqrt(c + eps).  State: ``cache``."""

  def __init__(self, params, lr=0.001, wd=0.0, eps=1e-7, rho=0.9):
    super().__init__(params, dict(lr=lr, wd=wd, eps=eps, rho=rho))

  def _update(self, p, grad, state, group):
    rho = group["rho"]
    cache = state.setdefault("cache", torch.zeros_like(p))
    cache.mul_(rho).add_((1 - rho) * grad * grad)
    p.sub_(group["lr"] * grad / torch.sqrt(cache + group["eps"]))


class Adam(_Minima):
  """Bias-corrected Adam, eps outside the root. State: ``step``, ``exp_avg``, ``exp_avg_sq``."""

  def __init__(self, params, lr=1e-5, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
    super().__init__(params, dict(lr=lr, beta1=beta1, beta2=beta2, eps=eps, wd=weight_decay))

  def _update(self, p, grad, state, group):
    b1, b2 = group["beta1"], group["beta2"]
    state["step"] = t = state.get("step", 0) + 1
    m = state.setdefault("exp_avg", torch.zeros_like(p))
    v = state.setdefault("exp_avg_sq", torch.zeros_like(p))
    m.mul_(b1).add_((1 - b1) * grad)
    v.mul_(b2).add_((1 - b2) * grad * grad)
    m_hat = m / (1 - b1**t)
    v_hat = v / (1 - b2**t)
    p.sub_(group["lr"] * m_hat / (torch.sqrt(v_hat) + group["eps"]))
