"""CIFAR-10 with Flax NNX: train, compare and study optimizers (``python -m examples.cifar10``)."""
