r"""Complex parameters as torch steps them: each complex leaf as the pair of its real parts.

torch's optimizers step a complex parameter ``p`` of shape ``S`` through ``torch.view_as_real``:
the parameter, its gradient and every state tensor of the same shape are viewed as real arrays of
shape ``S + (2,)`` (real part at index 0, imaginary part at index 1), the real rule is applied to
that view, and the state tensors stay complex. :func:`as_real_pairs` does the same around any
optax transformation ``tx``, so ``tx`` itself only ever sees real arrays.

* ``init(params)``: each complex leaf becomes its real-pair view (``[..., 0]`` the real part,
  ``[..., 1]`` the imaginary part) and ``tx.init`` runs on that tree.
* ``update(updates, state, params)``: the complex leaves of ``updates`` and ``params`` become
  their views, the complex leaves of ``state`` too, ``tx.update`` runs, and its updates come back
  as complex leaves of the input's dtype (``u[..., 0] + 1j * u[..., 1]``).
* The state: in every params-shaped tree of ``tx``'s state (the trees
  ``optax.tree.map_params`` finds), the leaf of a complex parameter is stored as a complex array
  of the parameter's shape and dtype, whose real and imaginary parts are ``tx``'s state for the
  real and the imaginary part: torch's state tensor of that parameter, value for value. So the
  state has the params' structure, shapes and dtypes (the optax convention), for real and complex
  leaves alike. A state leaf whose shape is not the pair view's (a factored moment, say) is kept
  as ``tx`` made it, real, with the trailing pair axis; scalars (step counts, ASGD's ``eta``)
  are shared by the two parts, as in torch.

Real leaves pass through untouched, so on a tree without complex leaves ``as_real_pairs(tx)``
gives ``tx``'s updates and state exactly. Leaves without a dtype pass too (``map_params``'s
placeholder has no leaves at all). Complex hyperparameters are not supported: under
``optax.inject_hyperparams`` on complex params pass ``hyperparam_dtype`` (a real dtype), or
the factories' checks raise a ``TypeError`` saying so.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

__all__ = ["as_real_pairs"]


def _is_complex(leaf: Any) -> bool:
  dtype = getattr(leaf, "dtype", None)
  return dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating)


def _to_pair(leaf: Any) -> Any:
  """A complex leaf as its real view ``S + (2,)``; anything else unchanged."""
  if not _is_complex(leaf):
    return leaf
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(tuple(leaf.shape) + (2,), jnp.finfo(leaf.dtype).dtype)
  return jnp.stack([jnp.real(leaf), jnp.imag(leaf)], axis=-1)


def _from_pair(leaf: Any, like: Any) -> Any:
  """``leaf`` (the real view of a leaf like ``like``) as a complex leaf of ``like``'s dtype.

  Unchanged unless ``like`` is complex and ``leaf`` is a real array of the pair view's shape.
  """
  if not _is_complex(like) or getattr(leaf, "dtype", None) is None or _is_complex(leaf):
    return leaf
  if tuple(leaf.shape) != tuple(like.shape) + (2,):
    return leaf
  if isinstance(leaf, jax.ShapeDtypeStruct):
    return jax.ShapeDtypeStruct(tuple(like.shape), like.dtype)
  return jax.lax.complex(leaf[..., 0], leaf[..., 1]).astype(like.dtype)


def _pairs(tree: Any) -> Any:
  return jax.tree.map(_to_pair, tree)


def as_real_pairs(tx: optax.GradientTransformation) -> optax.GradientTransformationExtraArgs:
  r"""``tx`` stepping each complex leaf as torch does: as the pair of its real and imaginary parts.

  For a complex leaf :math:`p = a + ib` with gradient :math:`g = c + id`, ``tx`` sees the real
  leaf :math:`[a, b]` (shape ``S + (2,)``, torch's ``torch.view_as_real``) with gradient
  :math:`[c, d]`, so an elementwise rule squares, takes absolute values and signs of each part
  separately (:math:`c^2` and :math:`d^2`, not :math:`g^2` nor :math:`|g|^2`); its update
  :math:`[u, v]` comes back as :math:`u + iv`. In the state, the params-shaped trees hold a
  complex leaf of the parameter's shape and dtype whose real and imaginary parts are ``tx``'s
  state for the two parts (see the module docstring). Real leaves are untouched.

  Args:
    tx: the transformation for real leaves (``params`` and extra arguments are passed on).

  Returns:
    An ``optax.GradientTransformationExtraArgs`` with ``tx``'s updates on real leaves and torch's
    real-pair step on complex ones.
  """
  tx = optax.with_extra_args_support(tx)

  def restore(state, like):
    """The pair views in the params-shaped trees of ``state`` as complex leaves (as ``like``)."""
    if not any(_is_complex(leaf) for leaf in jax.tree.leaves(like)):
      return state
    return optax.tree.map_params(tx, _from_pair, state, like)

  def init_fn(params):
    return restore(tx.init(_pairs(params)), params)

  def update_fn(updates, state, params=None, **extra_args):
    if not any(_is_complex(leaf) for leaf in jax.tree.leaves(updates)):
      return tx.update(updates, state, params, **extra_args)
    pair_updates, pair_state = tx.update(
        _pairs(updates), _pairs(state), _pairs(params), **extra_args)
    return jax.tree.map(_from_pair, pair_updates, updates), restore(pair_state, updates)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
