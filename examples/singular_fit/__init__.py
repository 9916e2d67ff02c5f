"""Singular-function demo: an MLP fits a function with poles, with GD, Adam and PhaseShift.

Reproduces a video on fitting a function with singularities by an MLP: with the targets clamped to
``[-100, 100]`` nothing turns NaN, and for the same number of steps Adam gets a much
lower loss than plain gradient descent. See ``target`` for the function (and the
numerator we chose), ``mlp`` for the model, ``run`` for the training and the
optimizers' settings, ``plot`` for the figure, and ``README.md``.

Run it with ``python -m examples.singular_fit --outdir DIR``.
"""
