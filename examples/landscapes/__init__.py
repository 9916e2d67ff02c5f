"""Loss-landscape demo: SGD, SGD with momentum, Adam and PhaseShift on one-weight problems.

Reproduces a (Spanish) lab notebook on SGD with momentum: plain SGD stalls at the
saddle of ``w**3`` and stops in the local minimum of a quartic, SGD with momentum 0.9
passes both. See ``objectives`` for the problems (and how we read the lab), ``run`` for
the optimizers and their settings, ``plot`` for the figures, and ``README.md``.

Run it with ``python -m examples.landscapes --outdir DIR``.
"""
