"""Every compat optimizer: jit-able, keeps the parameters' dtype, small int32 counters."""

import jax
import jax.numpy as jnp
import pytest

from phaseshift_jax import schedules
from phaseshift_jax.compat import miniai, minima, torch as torch_optim

FACTORIES = {
    "minima.sgd": lambda: minima.sgd(momentum=0.9, wd=0.1),
    "minima.adagrad": lambda: minima.adagrad(wd=0.1),
    "minima.rmsprop": lambda: minima.rmsprop(wd=0.1),
    "minima.adam": lambda: minima.adam(weight_decay=0.1),
    "miniai.sgd": lambda: miniai.sgd(0.1, wd=0.1),
    "miniai.adam": lambda: miniai.adam(0.1, wd=0.1),
    "miniai.adam_with_annealing": lambda: miniai.adam_with_annealing(0.1, wd=0.1, anneal_every=2),
    "torch.sgd": lambda: torch_optim.sgd(momentum=0.9, dampening=0.1, weight_decay=0.1),
    "torch.adagrad": lambda: torch_optim.adagrad(lr_decay=0.1, weight_decay=0.1),
    "torch.rmsprop": lambda: torch_optim.rmsprop(momentum=0.9, centered=True, maximize=True),
    "torch.adam": lambda: torch_optim.adam(amsgrad=True, weight_decay=0.1),
    "torch.adamw": lambda: torch_optim.adamw(amsgrad=True),
}


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize("name", FACTORIES)
def test_jit_step_keeps_dtype(name, dtype):
  tx = FACTORIES[name]()
  params = {"w": jnp.ones((2, 3), dtype), "b": jnp.zeros(3, dtype)}
  grads = jax.tree.map(lambda p: jnp.full_like(p, 0.5), params)
  state = tx.init(params)
  step = jax.jit(tx.update)
  for _ in range(3):
    updates, state = step(grads, state, params)
  for leaf in jax.tree.leaves(updates):
    assert leaf.dtype == dtype
    assert bool(jnp.all(jnp.isfinite(leaf.astype(jnp.float32))))
  for leaf in jax.tree.leaves(state):
    if leaf.ndim == 0 and jnp.issubdtype(leaf.dtype, jnp.integer):
      assert leaf.dtype == jnp.int32


def test_reduce_lr_on_plateau_keeps_dtype():
  tx = schedules.reduce_lr_on_plateau(patience=0)
  params = jnp.ones(3, jnp.bfloat16)
  state = tx.init(params)
  for value in [1.0, 2.0]:
    updates, state = jax.jit(tx.update)(params, state, params, value=value)
  assert updates.dtype == jnp.bfloat16
  assert float(updates[0]) == pytest.approx(0.1, rel=1e-2)
