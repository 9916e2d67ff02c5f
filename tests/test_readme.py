"""The README's Python examples run as written, and do what the README says."""

import pathlib
import re

import jax.numpy as jnp
import numpy as np
import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def example(marker: str) -> str:
  """The one ```python block of the README that contains ``marker``."""
  found = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(), re.S) if marker in b]
  assert len(found) == 1, f"expected one README example with {marker!r}, found {len(found)}"
  return found[0]


def run(code: str) -> dict:
  namespace: dict = {}
  exec(compile(code, str(README), "exec"), namespace)  # pylint: disable=exec-used
  return namespace


def test_quick_start_prints_the_kicked_parameter(capsys):
  namespace = run(example("ps.shifted_parameter(state)"))
  assert capsys.readouterr().out.strip() in {"w", "b", "None"}
  assert int(namespace["state"].count) == 1


def test_nnx_train_step_updates_the_model():
  pytest.importorskip("flax", reason="the NNX example needs flax (the examples extra)")
  namespace = run(example("nnx.Optimizer"))
  model, optimizer = namespace["model"], namespace["optimizer"]
  before = np.array(model.kernel[...])
  x, y = jnp.ones((4, 3)), jnp.zeros((4, 2))
  namespace["train_step"](model, optimizer, x, y)
  namespace["train_step"](model, optimizer, x, y)
  assert not np.array_equal(np.asarray(model.kernel[...]), before)
  assert int(optimizer.opt_state.phase_shift.count) == 2


def test_sharded_init_gives_the_state_the_params_shardings():
  namespace = run(example("optax.tree.map_params"))
  state, params = namespace["state"], namespace["params"]
  assert state.prev_grads["w"].sharding.is_equivalent_to(params["w"].sharding, 2)
  np.testing.assert_array_equal(state.prev_grads["w"], 0)
  assert int(state.count) == 0
