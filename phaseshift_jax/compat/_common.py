"""Argument checks and chaining shared by the compat optimizer families.

The checks look at concrete values only, so that every numeric hyperparameter can be traced
(``optax.inject_hyperparams`` calls the factory inside ``update`` with its hyperparameters as
arrays, traced under ``jax.jit``; ``jax.vmap`` over trials batches them):

* a concrete value (a Python number, a NumPy or JAX scalar) that breaks the rule raises
  ``ValueError`` naming the argument, at construction;
* a ``jax.core.Tracer``, a schedule (any callable, where a schedule is allowed) and a
  non-scalar array (e.g. a batch of values, one per trial) pass unchecked;
* something that is not a real number at all raises ``TypeError`` naming the argument.

``real_only`` refuses complex parameters at ``init`` for the optimizers whose complex step would
not be torch's (see its docstring).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


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
    raise TypeError(f"{name} must be a real number, got {value!r}")
  if array.shape != ():
    return None  # a batch of values (e.g. under jax.vmap): not checked here.
  return array


def check_non_negative(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is >= 0 (or not concrete)."""
  array = concrete_scalar(name, value)
  if array is not None and not array >= 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_unit_interval(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``0 <= value < 1`` (or not concrete)."""
  array = concrete_scalar(name, value)
  if array is not None and not 0 <= array < 1:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}")


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


def chain(*transforms) -> optax.GradientTransformationExtraArgs:
  """``optax.chain`` of the given transforms, skipping ``None`` (a piece a static flag omits)."""
  return optax.chain(*(t for t in transforms if t is not None))


def real_only(tx: optax.GradientTransformation, name: str) -> optax.GradientTransformationExtraArgs:
  """``tx`` with an ``init`` that raises ``TypeError`` for a complex leaf of the params.

  torch steps a complex parameter as the pair of its real and imaginary parts
  (``torch.view_as_real``), so a squared gradient is squared per part. optax's moments and
  accumulators square a complex gradient as ``|g|^2`` (or, in a plain ``g * g``, as a complex
  square), so an optimizer with such a piece (Adagrad, RMSprop, Adam and their kin) would not
  step a complex parameter as the pair of reals; ``init`` refuses one instead of returning
  something else. The update and the state are ``tx``'s, unchanged (``init`` on a tree with no
  complex leaf is ``tx.init``). Leaves without a dtype (``optax.tree.map_params``'s placeholder
  has no leaves at all) pass.
  """
  tx = optax.with_extra_args_support(tx)

  def init_fn(params):
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
      dtype = getattr(leaf, "dtype", None)
      if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
        raise TypeError(
            f"{name} does not support complex parameters (params{jax.tree_util.keystr(path)} "
            f"is {jnp.dtype(dtype).name}): torch steps a complex parameter as the pair of its "
            "real and imaginary parts, squaring each, and this optimizer's squared gradients "
            "would not; pass the real and imaginary parts as separate real leaves")
    return tx.init(params)

  return optax.GradientTransformationExtraArgs(init_fn, tx.update)
