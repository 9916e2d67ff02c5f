"""Trials side by side: K training runs in one compiled program, ``jax.vmap`` over models and optimizers.

Each trial is a :class:`train.Config` and gets what :func:`train.train_and_evaluate`
would give it, so a trial's metrics equal those of training it alone (to float
rounding): its model is ``models.create_model(..., seed=config.seed)``, its data
order ``input_pipeline.epoch_order(n, config.seed, epoch)``, its augmentation key
``fold_in(key(config.seed), step)``, and its optimizer the registry's one with its
own hyperparameters.

The K trials are stacked along a leading axis: model parameters, the rest of the
model state (BatchNorm statistics), the optimizer state, the step counter and the
PRNG key of every trial. The optimizer is ``optax.inject_hyperparams`` over the
registry's optimizer, so the hyperparameters in which the trials differ (learning
rate, threshold, ...) are arrays in each trial's own optimizer state and one
``update`` function serves all K; the trials must agree on everything else
(optimizer, model, batch size, augmentation, schedule, epochs and the other
hyperparameters).

Convolutions. ``jax.vmap`` of a convolution whose kernel is batched (K models)
becomes one grouped convolution; XLA on CPU runs those several times slower than K
plain ones, so on CPU each convolution gets a batching rule (``conv_batching=
"unrolled"``, via ``jax.custom_batching.custom_vmap`` and a ``jax.custom_vjp``) that
runs the K plain convolutions in the same program. Accelerators keep the grouped
convolution (``"native"``). Either way the values are those of the plain convolution.

Run ``python -m benchmarks.side_by_side --data-dir DIR`` to time K trials side by
side against the same K trials trained one by one with :mod:`train`.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from examples.cifar10 import input_pipeline
from examples.cifar10 import models
from examples.cifar10 import optimizers
from examples.cifar10 import train

CONV_BATCHING = ("auto", "unrolled", "native")
# Config fields every trial of one side-by-side run must share.
SHARED_FIELDS = ("optimizer", "model", "width", "epochs", "batch_size", "eval_batch_size",
                 "augment", "schedule", "warmup_epochs")


# --------------------------------------------------------------------------- convolution


def _stack(trees: Sequence[Any]) -> Any:
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def _unrolled(fn: Callable[..., Any]) -> Callable[..., Any]:
  """``fn`` with a batching rule that runs it once per slice when a kernel is batched."""
  batched_fn = jax.custom_batching.custom_vmap(fn)

  @batched_fn.def_vmap
  def rule(axis_size, in_batched, lhs, rhs, *rest):
    args = (lhs, rhs, *rest)
    if not in_batched[1]:
      # One kernel for the whole batch: the native rule folds the batch into the images'.
      out = jax.vmap(fn, in_axes=tuple(0 if b else None for b in in_batched))(*args)
    else:
      out = _stack([fn(*(a[k] if b else a for a, b in zip(args, in_batched)))
                    for k in range(axis_size)])
    return out, jax.tree.map(lambda _: True, out)

  return batched_fn


def unrolled_conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs):
  """``lax.conv_general_dilated`` whose ``vmap`` over kernels is K plain convolutions.

  Same arguments and values as ``jax.lax.conv_general_dilated``; under ``jax.vmap``
  with a batched kernel, the forward and both gradients are computed per slice
  instead of as one grouped convolution.
  """
  conv = functools.partial(jax.lax.conv_general_dilated, window_strides=window_strides,
                           padding=padding, **kwargs)
  forward = _unrolled(conv)
  backward = _unrolled(lambda x, w, g: jax.vjp(conv, x, w)[1](g))

  @jax.custom_vjp
  def f(x, w):
    return forward(x, w)

  f.defvjp(lambda x, w: (forward(x, w), (x, w)), lambda res, g: backward(*res, g))
  return f(lhs, rhs)


def use_unrolled_convs(model: nnx.Module) -> None:
  """Makes every ``nnx.Conv`` in ``model`` use :func:`unrolled_conv_general_dilated`."""
  for _, module in nnx.iter_modules(model):
    if isinstance(module, nnx.Conv):
      module.conv_general_dilated = unrolled_conv_general_dilated


# ---------------------------------------------------------------------------- optimizer


def _numeric(value: Any) -> bool:
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def injected_optimizer(config: train.Config, steps_per_epoch: int,
                       injected: Sequence[str] = ("learning_rate",)
                       ) -> optax.GradientTransformation:
  """``config``'s optimizer under ``optax.inject_hyperparams``, carrying ``injected`` in its state.

  The hyperparameters named in ``injected`` (numbers) become float32 arrays in the
  optimizer state (``state.hyperparams``), so trials that differ in them can share
  one ``update``; the others stay Python constants, as in :func:`optimizers.create`
  (``1 - b2`` of a float32 ``b2 = 0.999`` is off by 1e-5 relative, so constants that
  all trials share are better left alone). A learning-rate schedule is built inside
  from the injected peak rate, as :func:`train.create_training` builds it.
  """
  spec = optimizers.get_spec(config.optimizer)
  hparams = optimizers.resolve(config.optimizer, config.hparams)
  for name in injected:
    if name not in hparams or not _numeric(hparams[name]):
      raise ValueError(f"optimizer {config.optimizer} has no numeric hyperparameter {name!r} "
                       "to inject")
  make = config.make_schedule(steps_per_epoch)

  def factory(**kwargs):
    if make is not None:
      kwargs["learning_rate"] = make(kwargs["learning_rate"])
    return spec.build(**kwargs)

  # inject_hyperparams reads the hyperparameter names from the factory's signature.
  factory.__signature__ = inspect.Signature([
      inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in hparams])
  static = [name for name in hparams if name not in injected]
  return optax.inject_hyperparams(factory, static_args=static)(**hparams)


def differing_hyperparameters(configs: Sequence[train.Config]) -> tuple[str, ...]:
  """``learning_rate`` and every other numeric hyperparameter whose value differs among ``configs``."""
  resolved = [optimizers.resolve(c.optimizer, c.hparams) for c in configs]
  names = [n for n, v in resolved[0].items() if _numeric(v) and (
      n == "learning_rate" or any(r.get(n) != v for r in resolved[1:]))]
  return tuple(names)


# ------------------------------------------------------------------------------- trials


@dataclasses.dataclass
class SideBySide:
  """K trials stacked on a leading axis, with jitted, vmapped train and eval steps.

  Create with :meth:`create`. ``configs[k]`` is the trial in slot ``k``;
  :meth:`replace` puts a new trial into a slot (a study refills a finished or
  pruned slot), :meth:`train_epoch` trains every slot for one epoch (each in its own
  epoch's data order) and :meth:`evaluate` evaluates every slot on one split.
  """

  configs: list[train.Config]
  steps_per_epoch: int
  state: dict[str, Any]
  train_step: Callable[..., Any]
  eval_step: Callable[..., Any]
  injected: tuple[str, ...]

  @classmethod
  def create(cls, configs: Sequence[train.Config], steps_per_epoch: int,
             conv_batching: str = "auto", injected: Sequence[str] | None = None) -> SideBySide:
    """Builds the K = ``len(configs)`` trials; ``steps_per_epoch`` sizes the schedules.

    ``injected`` names the numeric hyperparameters that may differ among trials
    (they live in the optimizer state; default :func:`differing_hyperparameters`);
    all other hyperparameters must be equal.
    """
    configs = list(configs)
    if not configs:
      raise ValueError("configs must hold at least one trial")
    if conv_batching not in CONV_BATCHING:
      raise ValueError(f"conv_batching must be one of {', '.join(CONV_BATCHING)}, "
                       f"got {conv_batching!r}")
    if conv_batching == "auto":
      conv_batching = "unrolled" if jax.default_backend() == "cpu" else "native"
    injected = tuple(differing_hyperparameters(configs) if injected is None else injected)
    for config in configs:
      _check_compatible(configs[0], config, injected)
    template = _new_model(configs[0], conv_batching)
    graphdef = nnx.split(template, nnx.Param, ...)[0]
    tx = injected_optimizer(configs[0], steps_per_epoch, injected)
    train_step, eval_step = _make_steps(graphdef, tx, configs[0].augment)
    trials = cls(configs=configs, steps_per_epoch=steps_per_epoch, state={},
                 train_step=train_step, eval_step=eval_step, injected=injected)
    trials.state = _stack([trials.initial_state(c) for c in configs])
    return trials

  def __len__(self) -> int:
    return len(self.configs)

  def initial_state(self, config: train.Config) -> dict[str, Any]:
    """A fresh trial state for ``config`` (unstacked)."""
    model = models.create_model(config.model, width=config.width, seed=config.seed)
    _, params, rest = nnx.split(model, nnx.Param, ...)
    params, rest = nnx.as_pure(params), nnx.as_pure(rest)
    tx = injected_optimizer(config, self.steps_per_epoch, self.injected)
    return {"params": params, "rest": rest, "opt_state": tx.init(params),
            "step": jnp.zeros([], jnp.uint32), "key": jax.random.key(config.seed)}

  def replace(self, slot: int, config: train.Config) -> None:
    """Starts trial ``config`` afresh in ``slot``."""
    _check_compatible(self.configs[0], config, self.injected)
    fresh = self.initial_state(config)
    self.state = jax.tree.map(lambda stacked, x: stacked.at[slot].set(x), self.state, fresh)
    self.configs[slot] = config

  def new_stats(self) -> dict[str, jax.Array]:
    """Zero sums (``loss``, ``correct``, ``count``), one per slot, for the steps to add to."""
    return {"loss": jnp.zeros([len(self)], jnp.float32),
            "correct": jnp.zeros([len(self)], jnp.int32),
            "count": jnp.zeros([len(self)], jnp.int32)}

  def hyperparams(self) -> dict[str, np.ndarray]:
    """The injected numeric hyperparameters, one value per slot."""
    return {k: np.asarray(v) for k, v in self.state["opt_state"].hyperparams.items()}

  def train_epoch(self, split: input_pipeline.Split, epochs: Sequence[int]) -> list[dict[str, Any]]:
    """One epoch of every slot, slot ``k`` in the data order of its ``epochs[k]``.

    Returns per slot ``train_loss``, ``train_accuracy``, ``train_seconds`` (shared)
    and ``images_per_sec`` (all slots' images over that time).
    """
    if len(epochs) != len(self):
      raise ValueError(f"need one epoch number per slot ({len(self)}), got {len(epochs)}")
    batch_size = self.configs[0].batch_size
    if input_pipeline.num_batches(len(split), batch_size) != self.steps_per_epoch:
      raise ValueError(f"{len(split)} images in batches of {batch_size} do not make "
                       f"{self.steps_per_epoch} steps per epoch")
    streams = [input_pipeline.batches(
        split, batch_size, order=input_pipeline.epoch_order(len(split), c.seed, e))
        for c, e in zip(self.configs, epochs)]
    stats = self.new_stats()
    start = time.perf_counter()
    for images, labels, mask in input_pipeline.prefetch(_zip_batches(streams), None):
      self.state, stats = self.train_step(self.state, stats, images, labels, mask)
    stats = jax.device_get(stats)
    seconds = time.perf_counter() - start
    total = int(np.sum(stats["count"]))
    return [{"train_loss": float(stats["loss"][k]) / int(stats["count"][k]),
             "train_accuracy": int(stats["correct"][k]) / int(stats["count"][k]),
             "train_seconds": seconds, "images_per_sec": total / seconds}
            for k in range(len(self))]

  def evaluate(self, split: input_pipeline.Split) -> list[dict[str, float]]:
    """Mean loss and accuracy of every slot over all of ``split``."""
    stats = self.new_stats()
    for images, labels, mask in input_pipeline.prefetch(
        input_pipeline.batches(split, self.configs[0].eval_batch_size), None):
      stats = self.eval_step(self.state, stats, images, labels, mask)
    stats = jax.device_get(stats)
    return [{"loss": float(stats["loss"][k]) / int(stats["count"][k]),
             "accuracy": int(stats["correct"][k]) / int(stats["count"][k])}
            for k in range(len(self))]


def _check_compatible(first: train.Config, config: train.Config, injected: Sequence[str]) -> None:
  config.validate()
  if config.validation_fraction:
    raise ValueError("side-by-side trials take the validation split as their eval split; "
                     "set validation_fraction=0 and split the data beforehand")
  for name in SHARED_FIELDS:
    if getattr(config, name) != getattr(first, name):
      raise ValueError(f"trials side by side must share {name}: {getattr(first, name)!r} "
                       f"vs {getattr(config, name)!r}")
  a = optimizers.resolve(first.optimizer, first.hparams)
  b = optimizers.resolve(config.optimizer, config.hparams)
  for name in a:
    if name not in injected and a[name] != b[name]:
      raise ValueError(f"trials side by side must share the hyperparameter {name} (only "
                       f"{', '.join(injected)} may differ): {a[name]!r} vs {b[name]!r}")


def _new_model(config: train.Config, conv_batching: str) -> nnx.Module:
  model = models.create_model(config.model, width=config.width, seed=config.seed)
  if conv_batching == "unrolled":
    use_unrolled_convs(model)
  return model


def _zip_batches(streams: Sequence[Iterator[input_pipeline.Batch]]
                 ) -> Iterator[input_pipeline.Batch]:
  """One batch per slot per step, stacked: ``images (K, B, 32, 32, 3)`` and so on."""
  for group in zip(*streams, strict=True):
    yield input_pipeline.Batch(*(np.stack([getattr(b, f) for b in group])
                                 for f in ("images", "labels", "mask")))


def _make_steps(graphdef: Any, tx: optax.GradientTransformation, augment: bool):
  """The vmapped, jitted ``train_step(state, stats, images, labels, mask)`` and ``eval_step``."""

  def train_one(state, stats, images, labels, mask):
    key = jax.random.fold_in(state["key"], state["step"]) if augment else None
    x = input_pipeline.preprocess(images, key)
    count = jnp.maximum(jnp.sum(mask), 1)
    model = nnx.merge(graphdef, state["params"], state["rest"])

    def loss_fn(model):
      logits = model(x, train=True, mask=mask)
      loss_sum, correct = train.batch_sums(logits, labels, mask)
      return loss_sum / count, (loss_sum, correct)

    grads, (loss_sum, correct) = nnx.grad(loss_fn, has_aux=True)(model)
    grads = nnx.as_pure(nnx.state(grads, nnx.Param))
    updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
    new_state = {"params": optax.apply_updates(state["params"], updates),
                 "rest": nnx.as_pure(nnx.state(model, nnx.Not(nnx.Param))),
                 "opt_state": opt_state,
                 "step": state["step"] + 1, "key": state["key"]}
    return new_state, train.add_batch(stats, loss_sum, correct, mask)

  def eval_one(state, stats, images, labels, mask):
    model = nnx.merge(graphdef, state["params"], state["rest"])
    logits = model(input_pipeline.preprocess(images), train=False)
    return train.add_batch(stats, *train.batch_sums(logits, labels, mask), mask)

  train_step = jax.jit(jax.vmap(train_one), donate_argnums=(0, 1))
  eval_step = jax.jit(jax.vmap(eval_one, in_axes=(0, 0, None, None, None)), donate_argnums=(1,))
  return train_step, eval_step


def train_side_by_side(
    configs: Sequence[train.Config],
    data: tuple[input_pipeline.Split, input_pipeline.Split],
    *,
    conv_batching: str = "auto",
    injected: Sequence[str] | None = None,
    callback: Callable[[int, list[dict[str, Any]]], bool | None] | None = None,
) -> list[list[dict[str, Any]]]:
  """Trains the trials ``configs`` together on ``data = (train, eval)`` for their epochs.

  Returns one history per trial in the layout of :func:`train.train_and_evaluate`
  (``epoch``, ``train_loss``, ``train_accuracy``, ``test_loss``,
  ``test_accuracy`` for the eval split, ``train_seconds``, ``eval_seconds``,
  ``images_per_sec``). ``callback(epoch, metrics_per_trial)`` runs after each
  epoch; returning True stops.
  """
  train_split, eval_split = data
  steps = input_pipeline.num_batches(len(train_split), configs[0].batch_size)
  trials = SideBySide.create(configs, steps, conv_batching, injected)
  histories: list[list[dict[str, Any]]] = [[] for _ in configs]
  for epoch in range(1, configs[0].epochs + 1):
    metrics = trials.train_epoch(train_split, [epoch] * len(trials))
    start = time.perf_counter()
    results = trials.evaluate(eval_split)
    seconds = time.perf_counter() - start
    for history, m, r in zip(histories, metrics, results):
      history.append({"epoch": epoch, **m, "test_loss": r["loss"],
                      "test_accuracy": r["accuracy"], "eval_seconds": seconds})
    if callback is not None and callback(epoch, [h[-1] for h in histories]):
      break
  return histories
