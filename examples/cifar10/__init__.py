"""CIFAR-10 training with Flax NNX: input pipeline, models, optimizers by name, train/compare CLI."""
