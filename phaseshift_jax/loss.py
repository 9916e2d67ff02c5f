"""The phase-shift loss term of the original optimizer, as a differentiable function."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def phase_shift_loss(
    w: jax.typing.ArrayLike,
    *,
    optimal_weight: jax.typing.ArrayLike,
    A: jax.typing.ArrayLike,  # pylint: disable=invalid-name
    f: jax.typing.ArrayLike,
    phi: jax.typing.ArrayLike,
    C: jax.typing.ArrayLike,  # pylint: disable=invalid-name
    transition_slope: jax.typing.ArrayLike,
) -> jax.Array:
  r"""The phase-shift loss of one weight array, a scalar.

  .. math::

    L(w) = \operatorname{mean}_e \begin{cases}
      A \sin(2\pi f w_e + \phi) & w_e < w^* \\
      C + s\,(w_e - w^*) & w_e \ge w^*
    \end{cases}

  with :math:`w^*` = ``optimal_weight`` and :math:`s` = ``transition_slope``.
  The original optimizer defines this term but never calls it; add
  ``phase_shift_loss_weight * L(w)`` to a training loss for the weights of your
  choice (or use :func:`tree_phase_shift_loss`). Differentiable and jit-able; the
  gradient of an element is that of the branch it falls in.

  Args:
    w: the weights (any shape; a scalar counts as one element).
    optimal_weight, A, f, phi, C, transition_slope: the shape of the loss, named
      as in the original.

  Returns:
    The mean over the elements of ``w``, in ``w``'s (floating) dtype.
  """
  w = jnp.asarray(w)
  if not jnp.issubdtype(w.dtype, jnp.floating):
    w = w.astype(jnp.result_type(float))
  if w.size == 0:
    raise ValueError("phase_shift_loss: w has no elements, the mean is undefined")
  sinusoidal = A * jnp.sin(2 * jnp.pi * f * w + phi)
  linear = C + transition_slope * (w - optimal_weight)
  return jnp.mean(jnp.where(w < optimal_weight, sinusoidal, linear)).astype(w.dtype)


def tree_phase_shift_loss(
    tree,
    *,
    phase_shift_loss_weight: jax.typing.ArrayLike = 1.0,
    optimal_weight: jax.typing.ArrayLike,
    A: jax.typing.ArrayLike,  # pylint: disable=invalid-name
    f: jax.typing.ArrayLike,
    phi: jax.typing.ArrayLike,
    C: jax.typing.ArrayLike,  # pylint: disable=invalid-name
    transition_slope: jax.typing.ArrayLike,
) -> jax.Array:
  r"""The weighted phase-shift loss of a pytree of weights: :math:`\lambda \sum_i L(w_i)`.

  Each leaf contributes its own mean (:func:`phase_shift_loss`), as if the term
  were added once per weight tensor; ``None`` leaves and zero-size leaves are
  skipped. Select the weights first (e.g. only kernels) with ordinary pytree
  code or ``nnx.state(model, filter)``.

  Args:
    tree: a pytree of weight arrays.
    phase_shift_loss_weight: :math:`\lambda`, the weight of the term.
    optimal_weight, A, f, phi, C, transition_slope: as in :func:`phase_shift_loss`.

  Returns:
    A scalar (float32 for an empty tree).
  """
  shape = dict(optimal_weight=optimal_weight, A=A, f=f, phi=phi, C=C,
               transition_slope=transition_slope)
  terms = [phase_shift_loss(leaf, **shape) for leaf in jax.tree.leaves(tree)
           if jnp.size(leaf) > 0]
  if not terms:
    return jnp.zeros([], jnp.float32)
  return phase_shift_loss_weight * sum(terms[1:], terms[0])
