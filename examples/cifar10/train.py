"""Training and evaluation: jitted steps, the epoch loop, metrics, checkpoints and resume.

Entry points for other code:

* :func:`create_training` builds the model, the optimizer and the jitted
  ``train_step`` / ``eval_step`` for a :class:`Config` (benchmarks time one step).
* :func:`train_and_evaluate` trains one configuration for ``config.epochs``
  epochs and reports each epoch's metrics to an optional ``callback`` (a
  hyperparameter search can prune there); ``config.validation_fraction`` holds
  out part of the training set and adds ``val_loss`` / ``val_accuracy``.

Data parallelism: the batch is sharded over a one-axis ``Mesh`` (``"data"``) of
all (or ``config.num_devices``) devices and the model and optimizer state are
replicated; XLA inserts the cross-device reductions (gradients, BatchNorm
statistics, metrics), so the numbers do not depend on the device count beyond
float rounding.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

import phaseshift_jax
from examples.cifar10 import input_pipeline
from examples.cifar10 import models
from examples.cifar10 import optimizers
from examples.cifar10 import rundir

# The run directory's files (re-exported for callers of this module).
METRICS_FILE, CONFIG_FILE, CHECKPOINT_DIR = (
    rundir.METRICS_FILE, rundir.CONFIG_FILE, rundir.CHECKPOINT_DIR)
RunError = rundir.RunError
# Config fields that may change when a run is resumed.
RESUMABLE_CHANGES = ("epochs", "num_devices", "eval_batch_size", "keep_checkpoints")


@dataclasses.dataclass(frozen=True)
class Config:
  """One training configuration. ``hparams`` overrides the optimizer's defaults."""

  optimizer: str = "adam"
  hparams: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  model: str = "cnn"
  width: int | None = None
  epochs: int = 10
  batch_size: int = 128
  eval_batch_size: int = 512
  seed: int = 0
  augment: bool = True
  schedule: str = "constant"
  warmup_epochs: float = 0.0
  validation_fraction: float = 0.0
  num_devices: int | None = None
  keep_checkpoints: int | None = None

  def validate(self) -> None:
    """Raises ValueError naming the first bad field."""
    for name in ("epochs", "batch_size", "eval_batch_size"):
      if getattr(self, name) < 1:
        raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
    if self.num_devices is not None and self.num_devices < 1:
      raise ValueError(f"num_devices must be >= 1, got {self.num_devices}")
    if self.keep_checkpoints is not None and self.keep_checkpoints < 1:
      raise ValueError(f"keep_checkpoints must be >= 1, got {self.keep_checkpoints}")
    if not 0 <= self.validation_fraction < 1:
      raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
    if not 0 <= self.warmup_epochs <= self.epochs:
      raise ValueError(f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
    if self.model not in models.MODELS:
      raise ValueError(f"unknown model {self.model!r}; choose from {', '.join(models.MODELS)}")
    if self.schedule not in optimizers.SCHEDULES:
      raise ValueError(f"unknown schedule {self.schedule!r}; choose from "
                       f"{', '.join(optimizers.SCHEDULES)}")
    optimizers.resolve(self.optimizer, self.hparams)

  def to_json(self) -> dict[str, Any]:
    return {**dataclasses.asdict(self), "hparams": dict(self.hparams)}

  def make_schedule(self, steps_per_epoch: int) -> Callable[[float], optax.Schedule] | None:
    """:func:`optimizers.make_schedule` of ``schedule`` over ``epochs`` epochs."""
    return optimizers.make_schedule(self.schedule, self.epochs * steps_per_epoch,
                                    round(self.warmup_epochs * steps_per_epoch), steps_per_epoch)


# ------------------------------------------------------------------------------- steps


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A one-axis mesh ``("data",)`` over the first ``num_devices`` devices (default all)."""
  devices = jax.devices()
  if num_devices is not None:
    if num_devices > len(devices):
      raise ValueError(f"num_devices={num_devices} but only {len(devices)} devices are visible")
    devices = devices[:num_devices]
  return Mesh(np.asarray(devices), ("data",))


def _new_stats(num_leaves: int | None) -> dict[str, jax.Array]:
  stats = {"loss": jnp.zeros([], jnp.float32), "correct": jnp.zeros([], jnp.int32),
           "count": jnp.zeros([], jnp.int32)}
  if num_leaves is not None:  # Kicks per leaf; the extra last slot counts "no kick".
    stats["kicks"] = jnp.zeros([num_leaves + 1], jnp.int32)
  return stats


def batch_sums(logits, labels, mask):
  """Summed cross-entropy, correct predictions and count over the unmasked rows."""
  ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
  correct = (jnp.argmax(logits, -1) == labels) & mask
  return jnp.sum(jnp.where(mask, ce, 0.0)), jnp.sum(correct, dtype=jnp.int32)


def add_batch(stats, loss_sum, correct, mask) -> dict[str, jax.Array]:
  """``stats`` (loss, correct, count) with one batch's :func:`batch_sums` added."""
  return {"loss": stats["loss"] + loss_sum, "correct": stats["correct"] + correct,
          "count": stats["count"] + jnp.sum(mask, dtype=jnp.int32)}


def _means(stats: Mapping[str, Any]) -> tuple[float, float]:
  """Mean loss and accuracy of host ``stats``."""
  count = int(stats["count"])
  return float(stats["loss"]) / count, int(stats["correct"]) / count


@dataclasses.dataclass
class Training:
  """A model, its optimizer and the jitted steps, placed on ``mesh``.

  ``train_step(model, optimizer, stats, images, labels, mask)`` and
  ``eval_step(model, stats, images, labels, mask)`` take one batch (``uint8``
  images, ``int32`` labels, ``bool`` mask, sharded with ``data_sharding``) and
  return ``stats`` with the batch's sums added (``train_step`` returns
  ``(stats, batch mean loss)``; that scalar is not donated, so a caller can
  wait on it); ``model``, ``optimizer`` and ``stats`` are donated. Start from
  ``new_train_stats()`` / ``new_eval_stats()``.
  """

  config: Config
  model: nnx.Module
  optimizer: nnx.Optimizer
  train_step: Callable[..., tuple[dict[str, jax.Array], jax.Array]]
  eval_step: Callable[..., dict[str, jax.Array]]
  mesh: Mesh
  data_sharding: NamedSharding
  replicated: NamedSharding
  param_paths: list[str]
  has_phase_shift: bool
  learning_rate: Callable[[int], float]

  def new_train_stats(self) -> dict[str, jax.Array]:
    stats = _new_stats(len(self.param_paths) if self.has_phase_shift else None)
    return jax.device_put(stats, self.replicated)

  def new_eval_stats(self) -> dict[str, jax.Array]:
    return jax.device_put(_new_stats(None), self.replicated)

  def state(self) -> dict[str, Any]:
    """Model and optimizer state as a pure dict of arrays (what a checkpoint holds)."""
    return {"model": nnx.to_pure_dict(nnx.state(self.model)),
            "optimizer": nnx.to_pure_dict(nnx.state(self.optimizer))}

  def load_state(self, state: Mapping[str, Any]) -> None:
    """Sets model and optimizer state from :meth:`state`'s layout, replicated on the mesh."""
    for key, node in (("model", self.model), ("optimizer", self.optimizer)):
      current = nnx.state(node)
      nnx.replace_by_pure_dict(current, jax.device_put(state[key], self.replicated))
      nnx.update(node, current)


def check_config(config: Config, mesh: Mesh | None = None) -> Mesh:
  """Validates ``config`` against the devices; returns the mesh to train on.

  Raises:
    ValueError: a bad field or hyperparameter, more devices asked for than
      visible, or a batch size not divisible by the device count.
  """
  config.validate()
  mesh = make_mesh(config.num_devices) if mesh is None else mesh
  num_devices = mesh.devices.size
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % num_devices:
      raise ValueError(f"{name}={getattr(config, name)} is not divisible by the "
                       f"{num_devices} devices")
  return mesh


def create_training(config: Config, steps_per_epoch: int, mesh: Mesh | None = None) -> Training:
  """Builds model, optimizer and jitted steps for ``config``, replicated over ``mesh``.

  ``steps_per_epoch`` sets the length of a learning-rate schedule. ``mesh``
  defaults to :func:`make_mesh` of ``config.num_devices``.
  """
  mesh = check_config(config, mesh)
  schedule = config.make_schedule(steps_per_epoch)
  tx = optimizers.create(config.optimizer, config.hparams, schedule=schedule)
  peak = optimizers.resolve(config.optimizer, config.hparams)["learning_rate"]
  learning_rate = schedule(peak) if schedule is not None else (lambda step: peak)

  model = models.create_model(config.model, width=config.width, seed=config.seed)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  replicated = NamedSharding(mesh, PartitionSpec())
  params = nnx.as_pure(nnx.state(model, nnx.Param))
  try:
    phaseshift_jax.find_phase_shift_state(nnx.as_pure(optimizer.opt_state))
    has_phase_shift = True
  except ValueError:
    has_phase_shift = False
  augment = config.augment
  base_key = jax.device_put(jax.random.key(config.seed), replicated)

  @nnx.jit(donate_argnums=(0, 1, 2))
  def train_step(model, optimizer, stats, images, labels, mask):
    # The augmentation key depends only on (seed, step): resumable and device-count free.
    key = jax.random.fold_in(base_key, optimizer.step[...]) if augment else None
    x = input_pipeline.preprocess(images, key)
    count = jnp.maximum(jnp.sum(mask), 1)

    def loss_fn(model):
      logits = model(x, train=True, mask=mask)
      loss_sum, correct = batch_sums(logits, labels, mask)
      return loss_sum / count, (loss_sum, correct)

    grads, (loss_sum, correct) = nnx.grad(loss_fn, has_aux=True)(model)
    optimizer.update(model, grads)
    new = add_batch(stats, loss_sum, correct, mask)
    if "kicks" in stats:
      leaf = phaseshift_jax.find_phase_shift_state(nnx.as_pure(optimizer.opt_state)).shifted_leaf
      new["kicks"] = stats["kicks"].at[leaf].add(1)  # -1 (no kick) is the last slot.
    return new, loss_sum / count

  @nnx.jit(donate_argnums=(1,))
  def eval_step(model, stats, images, labels, mask):
    logits = model(input_pipeline.preprocess(images), train=False)
    return add_batch(stats, *batch_sums(logits, labels, mask), mask)

  training = Training(
      config=config, model=model, optimizer=optimizer, train_step=train_step,
      eval_step=eval_step, mesh=mesh, data_sharding=NamedSharding(mesh, PartitionSpec("data")),
      replicated=replicated, param_paths=phaseshift_jax.leaf_paths(params),
      has_phase_shift=has_phase_shift, learning_rate=learning_rate)
  training.load_state(jax.device_get(training.state()))  # Replicate on the mesh.
  return training


# ------------------------------------------------------------------------------ epochs


def evaluate(training: Training, split: input_pipeline.Split) -> dict[str, float]:
  """Mean loss and accuracy over every example of ``split`` (the last batch padded)."""
  stats = training.new_eval_stats()
  for images, labels, mask in input_pipeline.prefetch(
      input_pipeline.batches(split, training.config.eval_batch_size), training.data_sharding):
    stats = training.eval_step(training.model, stats, images, labels, mask)
  loss, accuracy = _means(jax.device_get(stats))
  return {"loss": loss, "accuracy": accuracy}


def train_epoch(training: Training, split: input_pipeline.Split, epoch: int, *,
                progress: bool = False) -> dict[str, Any]:
  """One pass over ``split`` in the order of ``(seed, epoch)``; returns the epoch's metrics."""
  config = training.config
  order = input_pipeline.epoch_order(len(split), config.seed, epoch)
  stats = training.new_train_stats()
  start = time.perf_counter()
  in_flight: collections.deque[tuple[jax.Array, int]] = collections.deque()
  with tqdm(total=len(split), unit="img", unit_scale=True, leave=False, disable=not progress,
            desc=f"{config.optimizer} {epoch}/{config.epochs}") as bar:
    batches = input_pipeline.batches(split, config.batch_size, order=order)
    for i, (images, labels, mask) in enumerate(
        input_pipeline.prefetch(batches, training.data_sharding)):
      stats, loss = training.train_step(training.model, training.optimizer, stats, images,
                                        labels, mask)
      if progress:
        # Count images once their step has run (keeping two steps queued), so that the
        # bar's images/s is the real throughput rather than the dispatch rate.
        in_flight.append((loss, min(config.batch_size, len(split) - i * config.batch_size)))
        while len(in_flight) > 2:
          done, n = in_flight.popleft()
          bar.set_postfix(loss=f"{float(done):.3f}", refresh=False)
          bar.update(n)
    stats = jax.device_get(stats)  # Waits for the last step.
    bar.update(sum(n for _, n in in_flight))
  seconds = time.perf_counter() - start
  loss, accuracy = _means(stats)
  metrics = {"train_loss": loss, "train_accuracy": accuracy,
             "train_seconds": seconds, "images_per_sec": int(stats["count"]) / seconds}
  if "kicks" in stats:
    kicks = stats["kicks"]
    steps = int(kicks.sum())
    by_leaf = {training.param_paths[i]: int(n) for i, n in enumerate(kicks[:-1]) if n}
    metrics["phase_shift"] = {
        "steps": steps, "kicks": steps - int(kicks[-1]),
        "kicked": dict(sorted(by_leaf.items(), key=lambda kv: -kv[1]))}
  return metrics


def _format(metrics: Mapping[str, Any], config: Config) -> str:
  line = (f"{config.optimizer} epoch {metrics['epoch']}/{config.epochs}: "
          f"train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.2%} | ")
  if "val_loss" in metrics:
    line += f"val loss {metrics['val_loss']:.4f} acc {metrics['val_accuracy']:.2%} | "
  line += (f"test loss {metrics['test_loss']:.4f} acc {metrics['test_accuracy']:.2%} | "
           f"{metrics['images_per_sec']:,.0f} img/s")
  if "phase_shift" in metrics:
    ps = metrics["phase_shift"]
    top = ", ".join(f"{k} x{v}" for k, v in list(ps["kicked"].items())[:3])
    line += f" | kicks {ps['kicks']}/{ps['steps']} steps" + (f": {top}" if top else "")
  return line


def train_and_evaluate(
    config: Config,
    data: tuple[input_pipeline.Split, input_pipeline.Split],
    workdir: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = print,
    mesh: Mesh | None = None,
) -> list[dict[str, Any]]:
  """Trains ``config`` on ``data = (train, test)``; returns one metrics dict per epoch.

  Args:
    config: what to train.
    data: the training and test splits (see :func:`input_pipeline.load_cifar10`).
    workdir: the run directory (config.json, metrics.jsonl, a checkpoint per
      epoch in checkpoints/); None keeps nothing on disk.
    resume: continue from the latest checkpoint in ``workdir`` (starting afresh
      if there is none). The continued run gives the same metrics as an
      uninterrupted one: data order and augmentation depend only on the seed,
      the epoch and the step.
    overwrite: delete a previous run in ``workdir`` first. Without ``resume`` or
      ``overwrite``, a ``workdir`` that holds a run is an error.
    callback: called as ``callback(epoch, metrics)`` after each epoch (after its
      checkpoint); returning True stops training (an exception propagates).
    progress: show a progress bar with images/s.
    log: receives one summary line per epoch; None for silence.
    mesh: the device mesh (default: :func:`make_mesh` of ``config.num_devices``).

  Each metrics dict holds ``epoch``, ``train_loss``, ``train_accuracy``,
  ``test_loss``, ``test_accuracy`` (and ``val_loss``, ``val_accuracy`` with a
  validation split), ``learning_rate`` (of ``config.schedule`` at the epoch's end;
  an optimizer's own annealing is not included), ``images_per_sec``,
  ``train_seconds``, ``eval_seconds`` and, for PhaseShift optimizers,
  ``phase_shift`` = ``{"steps", "kicks", "kicked": {parameter path: count}}``.
  """
  config.validate()
  train, test = data
  val = None
  if config.validation_fraction:
    train, val = input_pipeline.split_validation(train, config.validation_fraction, config.seed)
  steps_per_epoch = input_pipeline.num_batches(len(train), config.batch_size)
  training = create_training(config, steps_per_epoch, mesh)

  run = None
  if workdir is not None:
    run = rundir.RunDir(workdir, config.keep_checkpoints, overwrite=overwrite)
  splits = {"val": val, "test": test} if val is not None else {"test": test}
  history: list[dict[str, Any]] = []
  try:
    if run is not None:
      if run.has_run() and not resume:
        raise RunError(f"{run.path} already holds a run; pass --resume to continue it or "
                       "--overwrite to start over")
      if resume and run.latest_epoch() is not None:
        may_change = set(RESUMABLE_CHANGES)
        if config.schedule != "constant":
          may_change.discard("epochs")  # The schedule's length depends on it.
        run.check_config(config.to_json(), may_change)
        state, history = run.restore(jax.device_get(training.state()))
        training.load_state(state)
        if log:
          log(f"{config.optimizer}: resumed {run.path} after epoch {history[-1]['epoch']}")
      else:
        run.write_history([])
      run.write_config(config.to_json())

    for epoch in range(len(history) + 1, config.epochs + 1):
      metrics: dict[str, Any] = {"epoch": epoch}
      metrics.update(train_epoch(training, train, epoch, progress=progress))
      start = time.perf_counter()
      for name, split in splits.items():
        metrics.update({f"{name}_{k}": v for k, v in evaluate(training, split).items()})
      metrics["eval_seconds"] = time.perf_counter() - start
      metrics["learning_rate"] = float(training.learning_rate(epoch * steps_per_epoch))
      if "phase_shift" in metrics:  # Keep the per-parameter counts last in the file.
        metrics["phase_shift"] = metrics.pop("phase_shift")
      history.append(metrics)
      if run is not None:
        # Host copies: the device buffers are donated to the next step.
        run.save(epoch, jax.device_get(training.state()), history)
      if log:
        log(_format(metrics, config))
      if callback is not None and callback(epoch, metrics):
        break
  finally:
    if run is not None:
      run.close()
  return history


def final_images_per_sec(history: list[dict[str, Any]]) -> float:
  """Training throughput of a run: the median over epochs after the first (which compiles)."""
  rates = [m["images_per_sec"] for m in history]
  if not rates:
    return math.nan
  return float(np.median(rates[1:] if len(rates) > 1 else rates))
