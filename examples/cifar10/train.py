"""Training and evaluation: the jitted steps, the epoch loop, metrics, checkpoints and resume.

Data parallelism: the batch is sharded over a one-axis mesh (``"data"``) of
``config.num_devices`` devices (all by default), model and optimizer state are replicated
and XLA adds the cross-device reductions. With several processes (``distributed.py``) the
mesh spans the devices of all of them: every process draws the same order, takes its own
rows of each global batch and ``jax.make_array_from_process_local_data`` makes the global
batch of them, so the run computes what one process with as many devices would.

Every random number comes from ``config.seed``: the initialization, the order of epoch ``e``
(from ``(seed, e)``) and the augmentation of step ``t`` (``fold_in(key(seed), t)``), so a run
is the same whether interrupted or not.
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
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

import phaseshift_jax
from examples.cifar10 import checkpoints
from examples.cifar10 import distributed
from examples.cifar10 import input_pipeline
from examples.cifar10 import models
from examples.cifar10 import optimizers
from examples.cifar10.configs import default

# What may differ between a run and its resumption (the rest of config.json may not).
MAY_CHANGE_ON_RESUME = (
    "epochs", "eval_batch_size", "num_devices", "keep_checkpoints", "progress", "data_dir",
    "cache_dir", "download", "data_url", "data_md5", "optimizers", "per_optimizer", "seeds",
    *(f.name for f in dataclasses.fields(default.Config)
      if f.metadata["group"] in ("study", "distributed")))


class Diverged(checkpoints.RunError):
  """The training loss became NaN or infinite."""


def validate(config: default.Config) -> None:
  """Raises ValueError naming the first bad setting (the optimizer's by its library)."""
  for field in dataclasses.fields(config):
    value = getattr(config, field.name)
    if (type(value) is int and value < 1  # pylint: disable=unidiomatic-typecheck
        and field.name not in ("seed", "pruner_startup_trials", "process_id")):
      raise ValueError(f"{field.name} must be >= 1, got {value}")
  if not 0 <= config.validation_fraction < 1:
    raise ValueError(f"validation_fraction must be in [0, 1), got {config.validation_fraction}")
  if not 0 <= config.warmup_epochs <= config.epochs:
    raise ValueError(f"warmup_epochs must be in [0, epochs], got {config.warmup_epochs}")
  if config.model not in models.MODELS:
    raise ValueError(f"unknown model {config.model!r}; choose from {', '.join(models.MODELS)}")
  optimizers.create_optimizer(config)


def make_mesh(config: default.Config) -> Mesh:
  """A one-axis ``data`` mesh over the first ``num_devices`` devices (of every process); the
  batch sizes must divide by their number."""
  devices = jax.devices()
  if (config.num_devices or 0) > len(devices):
    raise ValueError(f"num_devices={config.num_devices}, but only {len(devices)} devices")
  if jax.process_count() > 1 and config.num_devices not in (None, len(devices)):
    raise ValueError(f"num_devices={config.num_devices}: with {jax.process_count()} processes "
                     f"the run uses all {len(devices)} devices")
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


def create_metrics(kicked: list[str] | None = None) -> nnx.MultiMetric:
  """Mean loss and accuracy, and with PhaseShift (:func:`kickable`) its kicks per tensor."""
  kicks = {} if kicked is None else {"kicks": KickCounts(len(kicked))}
  return nnx.MultiMetric(loss=nnx.metrics.Average("loss"), accuracy=nnx.metrics.Accuracy(),
                         **kicks)


def kickable(model: nnx.Module, optimizer: nnx.Optimizer) -> list[str] | None:
  """The ``/`` path of every parameter in the order PhaseShift's ``shifted_leaf`` counts
  them; None for an optimizer without PhaseShift."""
  try:
    phaseshift_jax.find_phase_shift_state(nnx.as_pure(optimizer.opt_state))
  except ValueError:
    return None
  leaves, _ = jax.tree_util.tree_flatten_with_path(nnx.as_pure(nnx.state(model, nnx.Param)))
  return [jax.tree_util.keystr(path, simple=True, separator="/") for path, _ in leaves]


@nnx.jit(donate_argnums=(0, 1, 2))  # Model, optimizer, metrics: updated in place.
def train_step(model, optimizer, metrics, images, labels, key):
  """One step on a batch, augmented with ``fold_in(key, step)`` (no augmentation: None)."""
  if key is not None:
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


@nnx.jit(donate_argnums=1)
def eval_step(model, metrics, images, labels, mask):
  logits = model(input_pipeline.preprocess(images), train=False)
  loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
  metrics.update(loss=loss, logits=logits, labels=labels, mask=mask)


def process_rows(mesh: Mesh, batch_size: int) -> slice:
  """The rows of a global batch of ``batch_size`` that this process's devices hold (all of
  them with one process)."""
  index = NamedSharding(mesh, PartitionSpec("data")).addressable_devices_indices_map(
      (batch_size,))
  starts, stops = zip(*(i[0].indices(batch_size)[:2] for i in index.values()), strict=True)
  if max(stops) - min(starts) != sum(b - a for a, b in zip(starts, stops, strict=True)):
    raise ValueError("this process's devices do not hold one block of rows of the batch")
  return slice(min(starts), max(stops))


def shard(batch: tuple[np.ndarray, ...], mesh: Mesh, batch_size: int) -> tuple[jax.Array, ...]:
  """This process's rows (:func:`process_rows`) of a global batch of ``batch_size`` as the
  global arrays, sharded along ``data``."""
  sharding = NamedSharding(mesh, PartitionSpec("data"))
  return tuple(jax.make_array_from_process_local_data(sharding, x, (batch_size, *x.shape[1:]))
               for x in batch)


def replicated(tree: Any, mesh: Mesh) -> Any:
  """The arrays of ``tree`` (the same on every process) on every device of ``mesh``."""
  if jax.process_count() == 1:
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
  return multihost_utils.host_local_array_to_global_array(tree, mesh, PartitionSpec())


def replicate(node: Any, mesh: Mesh) -> Any:
  """Puts the state of the nnx object(s) ``node`` on every device of ``mesh``."""
  nnx.update(node, replicated(nnx.state(node), mesh))
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
  for batch in input_pipeline.eval_batches(split, batch_size, process_rows(mesh, batch_size)):
    eval_step(model, metrics, *shard(batch, mesh, batch_size))
  return {k: float(v) for k, v in metrics.compute().items()}


def train_epoch(model: nnx.Module, optimizer: nnx.Optimizer, split: input_pipeline.Split,
                config: default.Config, epoch: int, mesh: Mesh) -> dict[str, Any]:
  """One epoch in the order of ``(config.seed, epoch)``; the epoch's training metrics."""
  names = kickable(model, optimizer)
  metrics = replicate(create_metrics(names), mesh)
  key = replicated(jax.random.key(config.seed), mesh)
  batches = input_pipeline.train_batches(split, config.batch_size, config.seed, epoch,
                                        process_rows(mesh, config.batch_size))
  steps, start, pending = len(split) // config.batch_size, time.perf_counter(), collections.deque()
  with tqdm(total=steps * config.batch_size, unit="img", unit_scale=True, leave=False,
            desc=f"{config.optimizer} seed {config.seed} {epoch}/{config.epochs}",
            disable=not config.progress or jax.process_index() > 0) as bar:
    for batch in batches:  # Transfers and steps are asynchronous: the host runs ahead.
      pending.append(train_step(model, optimizer, metrics, *shard(batch, mesh, config.batch_size),
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
  line = (f"{config.optimizer} seed {config.seed} epoch {metrics['epoch']}/{config.epochs}: "
          f"train loss {metrics['train_loss']:.4f} acc {metrics['train_accuracy']:.2%}")
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
    data: the splits (default ``input_pipeline.load(config)``): ``train`` is trained on,
      every other one evaluated after each epoch (``<name>_loss``, ``<name>_accuracy``).
    resume: continue from the newest checkpoint in ``workdir`` that restores.
    overwrite: delete the run in ``workdir`` first.
    callback: ``callback(epoch, metrics)`` after each epoch; True stops.
    log: where the per-epoch lines go (None: nowhere); with several processes, process 0's
      only (each returns the same history).

  With several processes (``distributed.initialize``) every one of them calls this with
  the same config and ``workdir`` (a shared directory) and ``data``.

  Raises:
    ValueError: a bad setting. RunError: a run directory that cannot be used. Diverged:
    a non-finite training loss (that epoch is neither checkpointed nor logged).
    DistributedError: the processes disagree (config, data) or another one failed.
  """
  distributed.check_agreement(config)
  log = log if log is not None and jax.process_index() == 0 else (lambda _: None)
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
      error = None
      try:
        data = input_pipeline.load(config, log)
      except input_pipeline.DataError as e:
        error = e
      distributed.raise_if_any(error)
    distributed.check_same_data(data.items())
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

