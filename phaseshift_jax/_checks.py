"""Argument checks shared by every factory of the library.

The checks look at concrete values only, so that every numeric hyperparameter can be traced
(``optax.inject_hyperparams`` calls the factory inside ``update`` with its hyperparameters as
arrays, traced under ``jax.jit``; ``jax.vmap`` over trials batches them):

* a concrete value (a Python number, a NumPy or JAX scalar) that breaks the rule raises
  ``ValueError`` naming the argument, at construction;
* a ``jax.core.Tracer``, a schedule (any callable, where a schedule is allowed) and a
  non-scalar array (e.g. a batch of values, one per trial) pass unchecked;
* something that is not a real number at all raises ``TypeError`` naming the argument.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def concrete_scalar(name: str, value: Any) -> np.ndarray | None:
  """``value`` as a 0-d NumPy array if it is a concrete real scalar, else ``None``.

  ``None`` for a tracer, a callable (a schedule) and a non-scalar array; ``TypeError`` naming
  ``name`` for a value that is not a real number (a string, ``None``, a complex number).
  """
  if callable(value) or isinstance(value, jax.core.Tracer):
    return None
  if isinstance(value, (str, bytes)):
    raise TypeError(f"{name} must be a real number, got {value!r}")
  array = np.asarray(value)
  if array.dtype.kind == "c":
    raise TypeError(
        f"{name} must be a real number, got {value!r} (optax.inject_hyperparams casts the "
        "hyperparameters to the params' dtype: for complex params pass "
        "hyperparam_dtype=jnp.float32)")
  if array.dtype.kind not in "biuf":
    if not jnp.issubdtype(array.dtype, jnp.floating):  # bfloat16 & co. are kind "V"
      raise TypeError(f"{name} must be a real number, got {value!r}")
    array = array.astype(np.float64)  # exact, and NumPy compares and tests it for NaN
  if array.shape != ():
    return None  # a batch of values (e.g. under jax.vmap): not checked here.
  return array


def _rounding_hint(value) -> str:
  """A hint for a value that a low-precision dtype may have rounded out of its range."""
  dtype = getattr(value, "dtype", None)
  if dtype is None or jnp.dtype(dtype).itemsize > 2:
    return ""
  return (f" ({jnp.dtype(dtype).name} rounds it: optax.inject_hyperparams casts the "
          "hyperparameters to the params' dtype; pass hyperparam_dtype=jnp.float32)")


def check_non_negative(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is >= 0 (or not concrete)."""
  array = concrete_scalar(name, value)
  if array is not None and not array >= 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_unit_interval(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``0 <= value < 1`` (or not concrete)."""
  array = concrete_scalar(name, value)
  if array is not None and not 0 <= array < 1:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}{_rounding_hint(value)}")


def check_positive_int(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1 (or traced).

  Python ints and NumPy / JAX integer scalars are checked (``optax.inject_hyperparams`` hands
  an int over as an int32 array); tracers and non-scalar integer arrays pass.
  """
  if isinstance(value, jax.core.Tracer):
    return
  if isinstance(value, bool) or not isinstance(value, (int, np.integer, np.ndarray, jax.Array)):
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
  array = np.asarray(value)
  if array.dtype.kind not in "iu" or (array.shape == () and array < 1):
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def check_not_nan(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` if ``value`` is a concrete NaN."""
  array = concrete_scalar(name, value)
  if array is not None and np.isnan(array):
    raise ValueError(f"{name} must not be NaN")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is one of ``choices``."""
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")
