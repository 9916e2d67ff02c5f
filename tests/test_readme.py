"""The README's Python examples run as written, and do what the README says."""

import pathlib
import re

import jax
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


@pytest.mark.filterwarnings("ignore:Some donated buffers were not usable")
def test_update_step_with_donated_grads_keeps_the_gradients_as_history():
  namespace = run(example("grads_donated=True"))
  tx, update_step = namespace["tx"], namespace["update_step"]
  params = {"w": jnp.ones((64, 128)), "b": jnp.zeros(128)}
  grads = {"w": jnp.full((64, 128), 0.5), "b": jnp.arange(128.0)}
  expected = jax.tree.map(np.array, grads)  # copies: a NumPy view would block the donation
  pointer = grads["w"].unsafe_buffer_pointer()
  params, state = update_step(params, grads, tx.init(params))
  assert state.history.own[0].unsafe_buffer_pointer() == pointer  # no copy
  jax.tree.map(np.testing.assert_array_equal, state.prev_grads, expected)
  # "b" changed most (by 127), so it got the kick sign(g) * min(threshold, shift_boundary).
  assert namespace["ps"].shifted_parameter(state) == "b"
  np.testing.assert_allclose(params["w"], 1 - 1e-3 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(params["b"][1:], -1e-3 * expected["b"][1:] + 0.005, rtol=1e-5)
