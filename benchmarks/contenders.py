"""The JAX optimizers the benchmarks compare, by name, and their jitted donated step.

Every contender is an ``optax`` transformation with the usual defaults for the
hyperparameters that do not change the cost of a step. The PhaseShift kick is
``threshold = shift_boundary = 1e-3`` with ``min_gradient_magnitude = 0``, so a leaf
is kicked at (nearly) every step, which is the most work a step can do.
"""

from __future__ import annotations

import functools
import importlib
import pathlib
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

import phaseshift_jax

# The module, for its per-leaf change (the package's ``phase_shift`` is the function).
_phase_shift_module = importlib.import_module("phaseshift_jax.phase_shift")

LR = 1e-3
KICK = {"threshold": 1e-3, "shift_boundary": 1e-3, "min_gradient_magnitude": 0.0}

# The contenders the ratios are taken against.
BASELINES = ("optax.sgd", "optax.adam")


def _phase_shift(selection: str, granularity: str) -> Callable[[], optax.GradientTransformation]:
  return lambda: phaseshift_jax.phase_shift(LR, selection=selection, granularity=granularity,
                                            **KICK)


def io_floor(factory: Callable[[], optax.GradientTransformation]
             ) -> Callable[[], optax.GradientTransformation]:
  """A diagnostic: a step with the inputs and outputs of ``factory()`` that does no work.

  Its updates are the gradients (so applying them is one elementwise pass, like
  SGD's) and its state passes through untouched: what JAX's dispatch of a jitted
  step with that many input and output arrays costs at the least.
  """
  return lambda: optax.GradientTransformation(factory().init, optax.identity().update)


def io_floor_plus(part: str) -> Callable[[], optax.GradientTransformation]:
  """A diagnostic: ``floor[phase_shift I/O]`` plus one of PhaseShift's passes, alone.

  ``part="history write"`` adds the new history ``h <- g`` (read ``g``, write ``h``);
  ``part="changes"`` adds every leaf's change ``max|g - h|`` as the library computes
  it (read ``g``, ``h``), its maximum kept in the state so that it is computed. No
  selection, no kick: beside the floor and ``phase_shift``, they show what each pass
  of the step costs by itself and whether the step costs more than its passes.
  """
  if part not in ("history write", "changes"):
    raise ValueError(f"part must be 'history write' or 'changes', got {part!r}")
  base = _phase_shift("argmax", "tensor")

  def update_fn(updates, state, params=None):
    del params
    if part == "history write":  # ``g + 0``: a new array, not the input handed back
      return updates, state._replace(prev_grads=jax.tree.map(lambda g: g + 0, updates))
    changes = jax.tree.leaves(jax.tree.map(
        lambda g, h: _phase_shift_module._leaf_change(jnp.abs(g - h)), updates, state.prev_grads))
    largest = jnp.max(jnp.stack(changes), initial=0).astype(state.shift_change.dtype)
    return updates, state._replace(shift_change=largest)

  return lambda: optax.GradientTransformation(base().init, update_fn)


BUILTIN: dict[str, Callable[[], optax.GradientTransformation]] = {
    "optax.sgd": lambda: optax.sgd(LR),
    "optax.adam": lambda: optax.adam(LR),
    "phase_shift": _phase_shift("argmax", "tensor"),
    "phase_shift[last]": _phase_shift("last", "tensor"),
    "phase_shift[element]": _phase_shift("argmax", "element"),
    "phase_shift[last,element]": _phase_shift("last", "element"),
    "with_phase_shift(adam)": lambda: phaseshift_jax.with_phase_shift(optax.adam(LR), **KICK),
    "floor[phase_shift I/O]": io_floor(_phase_shift("argmax", "tensor")),
    "floor[I/O + history write]": io_floor_plus("history write"),
    "floor[I/O + changes]": io_floor_plus("changes"),
}

# (state arrays read, state arrays written) per parameter where a step does not
# read and write all of its state: the floors pass (some of) their state through
# untouched. The fraction of the bandwidth limit counts these bytes.
STATE_TRAFFIC: dict[str, tuple[int, int]] = {
    "floor[phase_shift I/O]": (0, 0),
    "floor[I/O + history write]": (0, 1),
    "floor[I/O + changes]": (1, 0),
}

# phaseshift_jax.compat.<family>.<function>, built with its defaults and lr=LR.
COMPAT: dict[str, tuple[str, ...]] = {
    "torch": ("sgd", "adagrad", "rmsprop", "adam", "adamw"),
    "minima": ("sgd", "adagrad", "rmsprop", "adam"),
    "miniai": ("sgd", "adam", "adam_with_annealing"),
}


def compat_contenders() -> tuple[dict[str, Callable[[], optax.GradientTransformation]], list[str]]:
  """The compat optimizers that import, and a note for each family that does not."""
  found: dict[str, Callable[[], optax.GradientTransformation]] = {}
  notes: list[str] = []
  for family, functions in COMPAT.items():
    try:
      module = importlib.import_module(f"phaseshift_jax.compat.{family}")
    except ImportError as e:
      notes.append(f"phaseshift_jax.compat.{family} skipped: {e}")
      continue
    for fn_name in functions:
      fn = getattr(module, fn_name, None)
      if fn is None:
        notes.append(f"phaseshift_jax.compat.{family}.{fn_name} skipped: not defined")
        continue
      found[f"compat.{family}.{fn_name}"] = functools.partial(fn, lr=LR)
  return found, notes


def all_contenders(include_compat: bool = True
                   ) -> tuple[dict[str, Callable[[], optax.GradientTransformation]], list[str]]:
  """Name -> factory of every JAX contender, and notes on the ones skipped."""
  if not include_compat:
    return dict(BUILTIN), []
  compat, notes = compat_contenders()
  return {**BUILTIN, **compat}, notes


def previous_contenders(source: str) -> dict[str, Callable[[], optax.GradientTransformation]]:
  """``phase_shift`` and ``with_phase_shift(adam)`` of another version of the library.

  ``source`` is a directory holding a ``phaseshift_jax`` package (e.g. a worktree
  of the previous main: ``git worktree add /tmp/prev main~1``). It is copied and
  imported as ``phaseshift_jax_previous``, so both versions run in one process.
  """
  package = pathlib.Path(source) / "phaseshift_jax"
  if not package.is_dir():
    raise ValueError(f"no phaseshift_jax package in {source}")
  target = pathlib.Path(tempfile.mkdtemp()) / "phaseshift_jax_previous"
  shutil.copytree(package, target, ignore=shutil.ignore_patterns("__pycache__"))
  for path in target.rglob("*.py"):
    path.write_text(re.sub(r"\bphaseshift_jax\b", "phaseshift_jax_previous", path.read_text()))
  sys.path.insert(0, str(target.parent))
  previous = importlib.import_module("phaseshift_jax_previous")
  return {
      "previous phase_shift": lambda: previous.phase_shift(LR, **KICK),
      "previous with_phase_shift(adam)": lambda: previous.with_phase_shift(optax.adam(LR), **KICK),
  }


def make_step(tx: optax.GradientTransformation) -> Callable[[Any, Any, Any], tuple[Any, Any]]:
  """``step(params, opt_state, grads) -> (params, opt_state)``: jitted update + apply_updates.

  Params and optimizer state are donated (as a training step should donate them:
  on CPU, writing into a fresh buffer costs page faults, several times the work
  of writing in place). JAX pairs each donated input with the output of its
  shape in order, so the new params and state take the old ones' buffers.
  """

  def update_and_apply(params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return jax.jit(update_and_apply, donate_argnums=(0, 1))
