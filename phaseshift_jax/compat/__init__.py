"""Optimizers that reproduce other code bases exactly, as optax transformations.

* :mod:`phaseshift_jax.compat.torch`: ``torch.optim`` (one private module per optimizer).
* :mod:`phaseshift_jax.compat.minima`: the ``minima`` library's ``optim`` module.
* :mod:`phaseshift_jax.compat.miniai`: the miniai-style optimizers of the "Adam with annealing"
  post.

Each factory's docstring gives its formulas and how it differs from optax's optimizer of
the same name.
"""

from phaseshift_jax.compat import miniai, minima, torch

__all__ = ["miniai", "minima", "torch"]
