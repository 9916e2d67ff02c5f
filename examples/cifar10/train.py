"""Training and evaluation: the jitted steps, the epoch loop, metrics, checkpoints and resume.

``train_and_evaluate(config, workdir)`` trains ``config.epochs`` epochs and evaluates
every split but ``train`` after each one. Data parallelism: the batch is sharded over a
one-axis mesh (``"data"``) of ``config.num_devices`` devices (all by default), the model
and optimizer state are replicated, and XLA adds the cross-device reductions, so the
numbers do not depend on the device count beyond float rounding. Every random number
comes from ``config.seed``: the initialization, the order of epoch ``e`` (from ``(seed,
e)``) and the augmentation of step ``t`` (``fold_in(key(seed), t)``), so a run gives the
same metrics whether it was interrupted or not.
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
from examples.cifar10 import checkpoints
from examples.cifar10 import input_pipeline
from examples.cifar10 import models
from examples.cifar10 import optimizers
from examples.cifar10.configs import default

# What may differ between a run and its resumption (the rest of config.json may not).
MAY_CHANGE_ON_RESUME = (
    "epochs", "eval_batch_size", "num_devices", "keep_checkpoints", "progress", "data_dir",
    "cache_dir", "download", "data_url", "data_md5", "optimizers", "per_optimizer", "seeds",
    *(f.name for f in dataclasses.fields(default.Config) if f.metadata["group"] == "study"))


class Diverged(checkpoints.RunError):
  """The training loss became NaN or infinite."""


def validate(config: default.Config) -> None:
  """Raises ValueError naming the first bad setting (the optimizer's by its library)."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if (type(value) is int and value < 1  # pylint: disable=unidiomatic-typecheck
        and field.name not in ("seed", "pruner_startup_trials")):
      raise ValueError(f"{field.name} must be >= 1, got {value}")
  if not 0 <= config.validation_fraction < 1:
    raise ValueError(f"validation_fraction must be in [0, 1), got {config.validation_fraction}")
  if not 0 <= config.warmup_epochs <= config.epochs:
    raise ValueError(f"warmup_epochs must be in [0, epochs], got {config.warmup_epochs}")
  if config.model not in models.MODELS:
    raise ValueError(f"unknown model {config.model!r}; choose from {', '.join(models.MODELS)}")
  optimizers.create_optimizer(config)


def make_mesh(config: default.Config) -> Mesh:
  """A one-axis ``data`` mesh over the first ``num_devices`` devices; the batch sizes must
  divide by their number."""
  devices = jax.devices()
  if (config.num_devices or 0) > len(devices):
    raise ValueError(f"num_devices={config.num_devices}, but only {len(devices)} devices")
  mesh = Mesh(np.asarray(devices[:config.num_devices or len(devices)]), ("data",))
  for name in ("batch_size", "eval_batch_size"):
    if getattr(config, name) % mesh.size:
      raise ValueError(f"{name}={getattr(config, name)} does not divide by the {mesh.size} devices")
  return mesh


class KickCounts(nnx.Metric):
  """How often PhaseShift kicked each parameter tensor (the last slot: steps without kick)."""

  def __init__(self, num_leaves: int):
    self.counts = nnx.metrics.MetricState(jnp.zeros(num_leaves + 1, jnp.int32))

  def reset(self) -> None:
    self.counts[...] = jnp.zeros_like(self.counts[...])

  def update(self, *, shifted_leaf: jax.Array, **_) -> None:  # -1 (no kick) is the last slot.
    self.counts[...] = self.counts[...].at[shifted_leaf].add(1)

  def compute(self) -> jax.Array:
    return self.counts[...]


def create_metrics(num_leaves: int | None = None) -> nnx.MultiMetric:
  """Mean loss and accuracy (and PhaseShift's kicks per tensor, given ``num_leaves``)."""
  kicks = {} if num_leaves is None else {"kicks": KickCounts(num_leaves)}
  return nnx.MultiMetric(loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy(),
                         **kicks)


def parameter_names(model: nnx.Module) -> list[str]:
  """The ``/`` path of every parameter in the order PhaseShift's ``shifted_leaf`` counts."""
  leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.as_pure(nnx.state(model, nnx.Param)))
  return [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in leaves]


def has_phase_shift(optimizer: nnx.Optimizer) -> bool:
  try:
    phaseshift_jax.find_phase_shift_state(nnx.as_pure(optimizer.opt_state))
    return True
  except ValueError:
    return False


def _train_step(model, optimizer, metrics, images, labels, key):
  if key is not None:  # The augmentation of step t: fold_in(key(seed), t).
    key = jax.random.fold_in(key, optimizer.step[...])
  x = input_pipeline.preprocess(images, key)

  def loss_fn(model):
    logits = model(x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean(), logits

  (loss, logits), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
  optimizer.update(model, grads)
  kick = {}
  if hasattr(metrics, "kicks"):
    state = phaseshift_jax.find_phase_shift_state(nnx.as_pure(optimizer.opt_state))
    kick = {"shifted_leaf": state.shifted_leaf}
  metrics.update(loss=loss, logits=logits, labels=labels, **kick)
  return loss


def _eval_step(model, metrics, images, labels, mask):
  logits = model(input_pipeline.preprocess(images), train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  metrics.update(loss=loss, logits=logits, labels=labels, mask=mask)


# Model, optimizer and metrics are donated: updated in place, not copied.
train_step = nnx.jit(_train_step, donate_argnums=(0, 1, 2))
eval_step = nnx.jit(_eval_step, donate_argnums=1)


def replicate(node: Any, mesh: Mesh) -> Any:
  """Puts the state of the nnx object(s) ``node`` on every device of ``mesh``."""
  nnx.update(node, jax.device_put(nnx.state(node), NamedSharding(mesh, PartitionSpec())))
  return node


def create_train_state(config: default.Config, steps_per_epoch: int, mesh: Mesh
                       ) -> tuple[nnx.Module, nnx.Optimizer]:
  """The model (from ``config.seed``) and its ``nnx.Optimizer``, replicated over ``mesh``."""
  model = models.create_model(config.model, width=config.width, seed=config.seed)
  optimizer = nnx.Optimizer(model, optimizers.create_optimizer(config, steps_per_epoch),
                            wrt=nnx.Param)
  return replicate((model, optimizer), mesh)


def evaluate(model: nnx.Module, split: input_pipeline.Split, batch_size: int, mesh: Mesh
             ) -> dict[str, float]:
  """Mean loss and accuracy over every example of ``split``."""
  metrics = replicate(create_metrics(), mesh)
  for batch in input_pipeline.prefetch(input_pipeline.eval_batches(split, batch_size),
                                       NamedSharding(mesh, PartitionSpec("data"))):
    eval_step(model, metrics, *batch)
  return {k: float(v) for k, v in metrics.compute().items()}


def train_epoch(model: nnx.Module, optimizer: nnx.Optimizer, split: input_pipeline.Split,
                config: default.Config, epoch: int, mesh: Mesh) -> dict[str, Any]:
  """One epoch in the order of ``(config.seed, epoch)``; the epoch's training metrics."""
  names = parameter_names(model) if has_phase_shift(optimizer) else None
  metrics = replicate(create_metrics(None if names is None else len(names)), mesh)
  key = jax.device_put(jax.random.key(config.seed), NamedSharding(mesh, PartitionSpec()))
  batches = input_pipeline.train_batches(split, config.batch_size, config.seed, epoch)
  steps, start, pending = len(split) // config.batch_size, time.perf_counter(), collections.deque()
  with tqdm(total=steps * config.batch_size, unit="img", unit_scale=True, leave=False,
            disable=not config.progress, desc=f"{config.optimizer} {epoch}/{config.epochs}") as bar:
    for images, labels in input_pipeline.prefetch(batches, NamedSharding(mesh, PartitionSpec("data"))):
      pending.append(train_step(model, optimizer, metrics, images, labels,
                                key if config.augment else None))
      while config.progress and len(pending) > 2:  # Count images once their step has run.
        bar.set_postfix(loss=f"{float(pending.popleft()):.3f}", refresh=False)
        bar.update(config.batch_size)
    result = jax.device_get(metrics.compute())
    bar.update(bar.total - bar.n)
  seconds = time.perf_counter() - start
  out = {"train_loss": float(result["loss"]), "train_accuracy": float(result["accuracy"]),
         "train_seconds": seconds, "images_per_sec": steps * config.batch_size / seconds}
  if names is not None:
    kicks = result["kicks"]
    kicked = {names[i]: int(n) for i, n in enumerate(kicks[:-1]) if n}
    out["phase_shift"] = {"steps": steps, "kicks": steps - int(kicks[-1]),
                          "kicked": dict(sorted(kicked.items(), key=lambda kv: -kv[1]))}
  return out


def summary(metrics: Mapping[str, Any], config: default.Config) -> str:
  """The console line of one epoch."""
  line = (f"{config.optimizer} epoch {metrics['epoch']}/{config.epochs}: train loss "
          f"{metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.2%}")
  for split in ("val", "test"):
    if f"{split}_loss" in metrics:
      line += (f" | {split} loss {metrics[f'{split}_loss']:.4f} acc "
               f"{metrics[f'{split}_accuracy']:.2%}")
  line += f" | {metrics['images_per_sec']:,.0f} img/s"
  if ps := metrics.get("phase_shift"):
    top = ", ".join(f"{k} x{v}" for k, v in list(ps["kicked"].items())[:3])
    line += f" | kicks {ps['kicks']}/{ps['steps']}" + (f": {top}" if top else "")
  return line


def train_and_evaluate(
    config: default.Config,
    workdir: str | Path | None = None,
    *,
    data: Mapping[str, input_pipeline.Split] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    callback: Callable[[int, dict[str, Any]], bool | None] | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[nnx.Module, list[dict[str, Any]]]:
  """Trains ``config`` and returns the model and one metrics dict per epoch.

  Args:
    config: the run.
    workdir: the run directory (``checkpoints.RunDir``); None keeps nothing on disk.
    data: the splits (default ``input_pipeline.load(config)``): ``train`` is trained
      on, every other one evaluated after each epoch as ``<name>_loss`` and
      ``<name>_accuracy``.
    resume: continue the run in ``workdir`` from its newest checkpoint that restores.
    overwrite: delete the run in ``workdir`` first.
    callback: called as ``callback(epoch, metrics)`` after each epoch; True stops.
    log: where the per-epoch lines go (None: nowhere).

  Raises:
    ValueError: a bad setting. Diverged: a non-finite training loss (that epoch is
    neither checkpointed nor logged). RunError: a run directory that cannot be used.
  """
  log = log or (lambda _: None)
  validate(config)
  mesh = make_mesh(config)
  run = None
  if workdir is not None:
    run = checkpoints.RunDir(workdir, config, resume=resume, overwrite=overwrite,
                             may_change=MAY_CHANGE_ON_RESUME if config.schedule == "constant"
                             else set(MAY_CHANGE_ON_RESUME) - {"epochs"})
  history: list[dict[str, Any]] = []
  try:
    if data is None:
      data = input_pipeline.load(config)
      log("data: " + ", ".join(f"{len(v):,} {k}" for k, v in data.items()) + " images")
    steps_per_epoch = len(data["train"]) // config.batch_size
    if steps_per_epoch < 1:
      raise ValueError(f"{len(data['train'])} training images make no batch of "
                       f"{config.batch_size}")
    model, optimizer = create_train_state(config, steps_per_epoch, mesh)
    schedule = optimizers.create_schedule(config, steps_per_epoch)
    train_state = {"model": model, "optimizer": optimizer}  # What a checkpoint holds.
    if run is not None and resume:
      state, history = run.restore(jax.device_get(nnx.to_pure_dict(nnx.state(train_state))), log)
      if history:
        current = nnx.state(train_state)
        nnx.replace_by_pure_dict(current, state)
        nnx.update(train_state, current)
        replicate(train_state, mesh)
        log(f"{config.optimizer}: resumed {run.path} after epoch {len(history)}")
    for epoch in range(len(history) + 1, config.epochs + 1):
      metrics = {"epoch": epoch, **train_epoch(model, optimizer, data["train"], config, epoch,
                                               mesh)}
      if not math.isfinite(metrics["train_loss"]):
        raise Diverged(f"{config.optimizer} diverged in epoch {epoch} (training loss "
                       f"{metrics['train_loss']}); last good checkpoint: "
                       f"{run.last_checkpoint() if run else 'none (no --workdir)'}")
      start = time.perf_counter()
      for name, split in data.items():
        if name != "train":
          metrics.update({f"{name}_{k}": v for k, v in evaluate(
              model, split, config.eval_batch_size, mesh).items()})
      metrics["eval_seconds"] = time.perf_counter() - start
      lr = schedule(epoch * steps_per_epoch) if callable(schedule) else schedule
      metrics["learning_rate"] = float(lr)
      if "phase_shift" in metrics:  # The per-parameter counts last.
        metrics["phase_shift"] = metrics.pop("phase_shift")
      history.append(metrics)
      if run is not None:
        run.save(epoch, jax.device_get(nnx.to_pure_dict(nnx.state(train_state))), history)
      log(summary(metrics, config))
      if callback is not None and callback(epoch, metrics):
        break
  finally:
    if run is not None:
      run.close()
  return model, history


def median_images_per_sec(history: list[dict[str, Any]]) -> float:
  """A run's training throughput: the median over epochs after the first (which compiles)."""
  rates = [m["images_per_sec"] for m in history]
  return float(np.median(rates[1:] or rates)) if rates else math.nan
