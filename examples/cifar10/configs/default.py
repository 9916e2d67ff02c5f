"""Every setting of the CIFAR-10 example with its default: the one place that lists them.

The command line overrides any of them (``--learning-rate 0.01``, ``--no-augment``,
``--set sgd.learning_rate=0.02`` for one optimizer of a comparison); ``--config`` picks
another file of this folder (``resnet``, ``study``) or any ``.py`` file with a
``get_config()``. Optimizer hyperparameters left at ``None`` take the optimizer's own
default (``python -m examples.cifar10 optimizers`` lists them).
"""

from __future__ import annotations

import dataclasses
from typing import Any


def _setting(default: Any, group: str, help: str) -> Any:  # pylint: disable=redefined-builtin
  value = {"default_factory": dict} if default == {} else {"default": default}
  return dataclasses.field(**value, metadata={"group": group, "help": help})


@dataclasses.dataclass(frozen=True)
class Config:
  """A run of the example (``config.json`` in its run directory)."""

  # The optimizer (optimizers.py); its hyperparameters, None: the optimizer's default.
  optimizer: str = _setting("adam", "optimizer", "optimizer name (see the optimizers command)")
  learning_rate: float | None = _setting(
      None, "optimizer", "peak learning rate (default: the optimizer's, e.g. adam 1e-3, sgd 0.1)")
  momentum: float | None = _setting(None, "optimizer", "SGD-style momentum in [0, 1)")
  nesterov: bool | None = _setting(None, "optimizer", "Nesterov momentum")
  weight_decay: float | None = _setting(None, "optimizer", "weight decay (miniai's wd)")
  b1: float | None = _setting(None, "optimizer", "Adam's first-moment decay (torch's betas[0])")
  b2: float | None = _setting(None, "optimizer", "Adam's second-moment decay (torch's betas[1])")
  eps: float | None = _setting(None, "optimizer", "Adam's epsilon")
  threshold: float = _setting(
      1e-4, "optimizer", "PhaseShift kick size (not scaled by the learning rate; uphill)")
  shift_boundary: float = _setting(1e-3, "optimizer", "PhaseShift clips the kick to [-b, b]")
  min_gradient_magnitude: float = _setting(
      0.0, "optimizer", "PhaseShift kicks only a tensor whose gradient changed by more")
  selection: str = _setting("argmax", "optimizer", "PhaseShift: argmax, or last (the original)")
  granularity: str = _setting("tensor", "optimizer", "PhaseShift: kick a tensor, or an element")
  optimizer_kwargs: dict = _setting(
      {}, "optimizer", "other arguments by the optimizer's own names, JSON: '{\"dampening\": 0.1}'")
  schedule: str = _setting("constant", "optimizer", "constant, cosine, warmup_cosine, onecycle, "
                           "cosine_annealing, time_based or cyclic, peaking at learning_rate")
  warmup_epochs: float = _setting(0.0, "optimizer", "linear warm-up of warmup_cosine")

  # Model and training (train.py, models.py).
  model: str = _setting("cnn", "training", "cnn (5 stride-2 conv blocks) or resnet (ResNet-14)")
  width: int | None = _setting(None, "training", "channels of the first layer (default 16)")
  epochs: int = _setting(10, "training", "epochs")
  batch_size: int = _setting(128, "training", "training batch (an epoch's last partial one is "
                             "dropped), divisible by the device count")
  eval_batch_size: int = _setting(512, "training", "evaluation batch (the last one is masked)")
  seed: int = _setting(0, "training", "seed of initialization, data order and augmentation")
  augment: bool = _setting(True, "training", "random crop and horizontal flip")
  validation_fraction: float = _setting(0.0, "training", "hold out this fraction for val_*")
  train_size: int | None = _setting(None, "training", "use only the first N training images")
  test_size: int | None = _setting(None, "training", "use only the first N test images")
  num_devices: int | None = _setting(None, "training", "data-parallel over N devices (all)")
  keep_checkpoints: int | None = _setting(None, "training", "keep the N latest checkpoints (all)")
  progress: bool = _setting(True, "training", "progress bar")

  # Data (input_pipeline.py).
  data_dir: str | None = _setting(None, "data", "holds cifar-10-batches-py/ (never written to)")
  cache_dir: str | None = _setting(None, "data", "where data missing in data_dir is downloaded "
                                   "(~/.cache/phaseshift_jax/cifar10)")
  download: bool = _setting(True, "data", "download the data when it is missing")
  data_url: str = _setting("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "data",
                           "URL of cifar-10-python.tar.gz")
  data_md5: str = _setting("c58f30108f718f92721af3b95e74349a", "data",
                           "MD5 of the archive ('none' skips the check)")

  # Several processes (distributed.py): one run over the devices of every process.
  coordinator_address: str | None = _setting(
      None, "distributed", "HOST:PORT where process 0 serves the other processes (every process "
      "gets the same; JAX also reads JAX_COORDINATOR_ADDRESS)")
  num_processes: int | None = _setting(None, "distributed", "processes of the run")
  process_id: int | None = _setting(None, "distributed", "this process, in 0..num_processes-1")
  distributed: bool = _setting(False, "distributed", "join the other processes even without "
                               "the three settings above: JAX detects them (SLURM's srun, ...)")
  initialization_timeout: int = _setting(
      300, "distributed", "seconds to wait for the coordinator and the other processes")
  cpu_devices: int | None = _setting(None, "distributed", "CPU only: host devices of this "
                                     "process (jax_num_cpu_devices)")

  # Several optimizers (compare.py, study.py).
  optimizers: str = _setting("adam,phase_shift", "compare", "comma-separated optimizer names")
  per_optimizer: dict = _setting({}, "compare", "{optimizer: {setting: value}}, on the command "
                                 "line --set OPTIMIZER.SETTING=VALUE")
  seeds: int = _setting(1, "compare", "compare: train each optimizer with seeds seed..seed+N-1")

  # The Optuna study (study.py).
  trials: int = _setting(35, "study", "finished (complete or pruned) trials per optimizer")
  worker_trials: int | None = _setting(None, "study", "this process runs at most N per optimizer")
  storage: str | None = _setting(None, "study", "Optuna RDB URL (sqlite:///WORKDIR/study.db)")
  study_name: str = _setting("cifar10", "study", "the studies are NAME-<optimizer>")
  pruner_startup_trials: int = _setting(5, "study", "finished trials before the pruner prunes")
  top: int = _setting(5, "study", "report mean and std of the best N trials")
  heartbeat_interval: int = _setting(30, "study", "seconds between a trial's heartbeats")
  grace_period: int = _setting(90, "study", "a trial without heartbeat this long is retried")


def get_config() -> Config:
  """The default CNN on CIFAR-10, Adam, 10 epochs."""
  return Config()
