"""Argument checks (from :mod:`phaseshift_jax._checks`) and chaining shared by the compat families.

``real_only`` refuses complex parameters at ``init`` for the optimizers whose complex step would
not be torch's (see its docstring).
"""

from __future__ import annotations


import jax
import jax.numpy as jnp
import optax

from phaseshift_jax._checks import (  # noqa: F401  (re-exported for the families)
    check_non_negative, check_positive_int, check_unit_interval, concrete_scalar)


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
  something else (``compat.torch.as_real_pairs`` is the other way: it steps the pair). The
  update and the state are ``tx``'s, unchanged (``init`` on a tree with no complex leaf is
  ``tx.init``). Leaves without a dtype (``optax.tree.map_params``'s placeholder has no leaves at
  all) pass.
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
