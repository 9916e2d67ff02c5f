"""Run one of torch's own optimizer test configurations against its ``compat.torch`` counterpart.

torch describes the configurations its optimizer tests use in
``torch.testing._internal.common_optimizers.optim_db``: one ``OptimizerInfo`` per ``torch.optim``
class, whose ``optim_inputs_func(device=...)`` yields ``OptimizerInput``s (``.kwargs``, ``.desc``)
and whose ``scheduler_inputs`` is a tuple of lists of ``optimizer -> scheduler`` constructors.
torch's ``test_forloop_goes_right_direction`` steps them in this order (and so does
:func:`torch_run`): loss and gradients, ``optimizer.step()``, then every scheduler in list order,
``ReduceLROnPlateau`` with ``scheduler.step(loss)`` (the loss computed before that step), the
others with ``scheduler.step()``.

The JAX side (:func:`jax_run`) compiles one optimizer step per (factory, static arguments, model,
dtype): the factory is wrapped in ``optax.inject_hyperparams`` with the non-float arguments
static, so the configurations of one optimizer that differ only in float values share one
compiled step, and every step's learning rate is fed through ``state.hyperparams["lr"]``. The
learning rate of step ``t`` comes from a :class:`LrProgram`: torch's schedulers, converted by
``schedules.torch.from_torch_scheduler`` right after their construction.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

from phaseshift_jax.schedules import torch as schedules_torch
from tests.crosscheck.harness import (
  _JAX_MODELS,
  _batches,
  _single_torch_thread,
  max_abs_diff,
  torch_model_params,
)

# torch keywords that select an implementation and change no numbers.
IMPL_FLAGS = ("foreach", "capturable", "differentiable", "fused")


def compat_torch_optimizers() -> set:
  """The optimizer factories of ``compat.torch``: its public callables with an ``lr`` argument
  (the other names are building blocks and helpers)."""
  from phaseshift_jax.compat import torch as compat_torch

  names = set()
  for name in compat_torch.__all__:
    value = getattr(compat_torch, name)
    if inspect.isfunction(value) and "lr" in inspect.signature(value).parameters:
      names.add(name)
  return names


def plain_kwargs(kwargs: dict) -> dict:
  """torch's kwargs with tensors as Python numbers (a tensor ``lr`` becomes a float)."""
  def plain(value):
    if isinstance(value, torch.Tensor):
      return value.item()
    if isinstance(value, tuple):
      return tuple(plain(v) for v in value)
    return value
  return {k: plain(v) for k, v in kwargs.items()}


# ----------------------------------------------------------------------------- learning rates


class LrProgram:
  """The learning rate of every step of a torch run with ``schedulers``, from their conversion.

  ``lr()`` is the rate of the next optimizer step and ``advance(loss)`` steps the schedulers
  after it (``ReduceLROnPlateau`` with that step's loss), in torch's loop order: the state of
  ``schedules.torch.from_torch_scheduler(schedulers)`` (its ``transformation``, stepped with
  ``value=loss``). Without schedulers the rate is the optimizer's ``lr``, constant.
  """

  def __init__(self, base_lr: float, schedulers: Sequence[Any]):
    self.names = [type(s).__name__ for s in schedulers]
    self.base_lr = base_lr
    self.tx = self.state = None
    if schedulers:
      converted = schedules_torch.from_torch_scheduler(list(schedulers))
      self.tx, self.state = converted.transformation, converted.state

  def lr(self) -> float:
    return self.base_lr if self.state is None else float(self.state.lr)

  def advance(self, loss) -> None:
    """Every scheduler's ``step()`` after an optimizer step whose loss was ``loss``."""
    if self.tx is not None:
      _, self.state = self.tx.update(None, self.state, value=loss)


def lr_program(base_lr: float, schedulers: Sequence[Any], dtype: str) -> LrProgram:
  """An :class:`LrProgram` for torch ``schedulers`` just constructed on an optimizer (rates in
  float64 for ``dtype="float64"``, under ``jax.enable_x64``, as torch computes them)."""
  x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
  with x64:
    return LrProgram(base_lr, schedulers)


# ----------------------------------------------------------------------------- torch side


@contextlib.contextmanager
def flush_denormals():
  """torch with subnormal numbers flushed to zero, as XLA:CPU computes (restored afterwards).

  XLA:CPU flushes subnormals to zero; torch's CPU kernels keep them. A gradient element that
  is subnormal in torch (6.5e-318 in Rprop's ``maximize`` configuration) is an exact 0 in JAX,
  and a rule that branches on the sign of ``g * prev`` (Rprop) then takes another branch. So
  both sides compute in the same arithmetic; elsewhere this changes no number.
  """
  flushed = torch.set_flush_denormal(True)
  try:
    yield flushed
  finally:
    if flushed:
      torch.set_flush_denormal(False)


class TorchRun(NamedTuple):
  initial: list  # initial parameters (NumPy, torch's model.parameters() order)
  final: list
  lrs: list  # the learning rate each step used
  program: LrProgram  # built from the schedulers right after their construction


def torch_run(torch_cls, kwargs: dict, scheduler_ctors: Sequence[Callable], *, model: str,
              dtype: str, steps: int, seed: int = 0, ulp_shift: bool = False) -> TorchRun:
  """``steps`` steps of ``torch_cls(params, **kwargs)`` with ``scheduler_ctors``, torch's loop.

  ``ulp_shift`` moves every initial weight one ulp up first (the sensitivity probe). A tensor
  in ``kwargs`` is cast to ``dtype`` (its value is kept): in float64 a float32 tensor ``lr``
  would make torch round every scheduled rate to float32, which is storage, not the rule.
  """
  torch_dtype = getattr(torch, dtype)
  with _single_torch_thread(), flush_denormals():
    net, params, initial = torch_model_params(model, dtype, seed, ulp_shift)
    # A tensor hyperparameter (torch's "Tensor lr" inputs: a float32 tensor) in the run's dtype,
    # as the model is: torch's schedulers multiply a tensor lr in place, in its dtype.
    kwargs = {k: v.to(torch_dtype) if isinstance(v, torch.Tensor) and v.is_floating_point()
              else v for k, v in kwargs.items()}
    optimizer = torch_cls(params, **kwargs)
    base_lr = float(optimizer.param_groups[0]["lr"])
    schedulers = [make(optimizer) for make in scheduler_ctors]
    program = lr_program(base_lr, schedulers, dtype)
    batches = [(torch.tensor(x, dtype=torch_dtype), torch.tensor(y))
               for x, y in _batches(model, seed)]
    lrs = []
    for t in range(steps):
      x, y = batches[t % len(batches)]
      loss = torch.nn.functional.cross_entropy(net(x), y)
      grads = torch.autograd.grad(loss, params)
      for p, g in zip(params, grads):
        p.grad = g
      lrs.append(float(optimizer.param_groups[0]["lr"]))
      optimizer.step()
      for scheduler in schedulers:
        if type(scheduler).__name__ == "ReduceLROnPlateau":
          scheduler.step(loss.detach())  # the same value, without autograd's warning
        else:
          scheduler.step()
    final = [p.detach().numpy().copy() for p in params]
  return TorchRun(initial, final, lrs, program)


# ----------------------------------------------------------------------------- JAX side


def split_kwargs(factory, kwargs: dict) -> tuple[dict, dict, list]:
  """``(floats, statics, dropped)``: the factory's float arguments (injected), the rest (static),
  and the torch implementation flags the factory does not take (dropped: they change no numbers).
  """
  signature = inspect.signature(factory).parameters
  floats, statics, dropped = {}, {}, []
  for name, value in kwargs.items():
    if name not in signature:
      if name in IMPL_FLAGS:
        dropped.append(name)
        continue
      statics[name] = value  # the factory rejects it when called: a real failure
    elif type(signature[name].default) is float:
      floats[name] = float(value)
    else:
      statics[name] = value
  for name, parameter in signature.items():
    if type(parameter.default) is float:
      floats.setdefault(name, parameter.default)
  return floats, statics, dropped


def _frozen(statics: dict):
  return tuple(sorted((k, repr(v)) for k, v in statics.items()))


_COMPILED: dict = {}


def _compiled_update(factory, statics: dict, dtype: str):
  """One jitted ``(params, state, grads, lr) -> (params, state)`` per static signature.

  The float hyperparameters live in ``state.hyperparams`` (``optax.inject_hyperparams``), so
  every configuration with the same static arguments shares this step; ``lr`` is set there.
  """
  key = (factory, _frozen(statics), dtype)
  if key not in _COMPILED:
    tx = optax.inject_hyperparams(factory, static_args=tuple(statics))(**statics)

    @jax.jit
    def update(params, state, grads, lr):
      state = state._replace(hyperparams={**state.hyperparams, "lr": lr})
      updates, state = tx.update(grads, state, params)
      return optax.apply_updates(params, updates), state

    _COMPILED[key] = update
  return _COMPILED[key]


@functools.cache
def _value_and_grad(model: str, dtype: str):
  """Jitted loss and gradient on ``model``, shared by every optimizer (compiled once)."""
  forward = _JAX_MODELS[model]

  def loss_fn(params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(forward(params, x), y).mean()

  return jax.jit(jax.value_and_grad(loss_fn))


def jax_run(factory, kwargs: dict, program: LrProgram, initial: list, *, model: str,
            dtype: str, steps: int, seed: int = 0) -> tuple[list, list]:
  """``steps`` steps of ``factory(**kwargs)`` from ``initial``; returns (final params, lrs)."""
  floats, statics, _ = split_kwargs(factory, kwargs)
  x64 = jax.enable_x64(True) if dtype == "float64" else contextlib.nullcontext()
  with x64:
    update = _compiled_update(factory, statics, dtype)
    value_and_grad = _value_and_grad(model, dtype)
    params = [jnp.asarray(p, dtype=dtype) for p in initial]
    lr0 = program.lr()
    state = optax.inject_hyperparams(factory, static_args=tuple(statics))(
        **{**floats, "lr": lr0}, **statics).init(params)
    batches = [(jnp.asarray(x, dtype=dtype), jnp.asarray(y, jnp.int32))
               for x, y in _batches(model, seed)]
    lrs = []
    for t in range(steps):
      x, y = batches[t % len(batches)]
      lr = program.lr()
      lrs.append(lr)
      loss, grads = value_and_grad(params, x, y)
      params, state = update(params, state, grads, jnp.asarray(lr, dtype=dtype))
      program.advance(loss)
    return [np.asarray(p) for p in params], lrs


class Comparison(NamedTuple):
  diff: float  # max abs parameter difference torch vs JAX
  tolerance: float
  sensitivity: float | None  # torch vs torch from weights one ulp up (measured when needed)
  lr_diff: float  # max relative difference of the per-step learning rates
  schedulers: list  # the torch schedulers' class names


def compare(torch_cls, factory, kwargs: dict, scheduler_ctors: Sequence[Callable] = (), *,
            model: str = "mlp", dtype: str = "float64", steps: int = 100,
            tolerance: float = 1e-10) -> Comparison:
  """Run both sides (torch with ``kwargs`` as given, ours with :func:`plain_kwargs`).

  The tolerance is ``tolerance``, or 10x the measured sensitivity if larger.

  The sensitivity run (torch again from its initial weights moved one ulp up) is made only when
  the difference exceeds ``tolerance``.
  """
  reference = torch_run(torch_cls, copy.deepcopy(kwargs), scheduler_ctors, model=model,
                        dtype=dtype, steps=steps)
  ours, lrs = jax_run(factory, plain_kwargs(kwargs), reference.program, reference.initial, model=model,
                      dtype=dtype, steps=steps)
  diff = max_abs_diff(reference.final, ours)
  lr_diff = float(np.max(np.abs(np.subtract(lrs, reference.lrs))
                         / np.maximum(np.abs(reference.lrs), 1e-300)))
  sensitivity = None
  if not diff <= tolerance:
    shifted = torch_run(torch_cls, copy.deepcopy(kwargs), scheduler_ctors, model=model, dtype=dtype,
                        steps=steps, ulp_shift=True)
    sensitivity = max_abs_diff(reference.final, shifted.final)
    tolerance = max(tolerance, 10 * sensitivity)
  return Comparison(diff, tolerance, sensitivity, lr_diff, reference.program.names)


# ----------------------------------------------------------------------------- report

_PLUGIN_NAME = "phaseshift-optim-db-report"


class OptimDbReport:
  """Per torch optimizer: runs, worst difference and the tolerance it was held to."""

  def __init__(self):
    self.rows: dict = {}
    self.notes: list = []

  def add(self, optimizer: str, what: str, comparison: Comparison) -> None:
    runs, worst, tolerance = self.rows.get((optimizer, what), (0, 0.0, 0.0))
    if comparison.diff >= worst:
      worst, tolerance = comparison.diff, comparison.tolerance
    self.rows[(optimizer, what)] = (runs + 1, worst, tolerance)

  def note(self, line: str) -> None:
    self.notes.append(line)

  def export(self) -> dict:
    """Rows and notes as plain lists (what pytest-xdist can send from a worker)."""
    return {"rows": [[*key, *value] for key, value in self.rows.items()], "notes": self.notes}

  def absorb(self, exported: dict) -> None:
    """Merge a worker's export: runs add up, the worst difference (and its tolerance) wins."""
    for optimizer, what, runs, worst, tolerance in exported["rows"]:
      had_runs, had_worst, had_tolerance = self.rows.get((optimizer, what), (0, 0.0, 0.0))
      if worst < had_worst:
        worst, tolerance = had_worst, had_tolerance
      self.rows[(optimizer, what)] = (had_runs + runs, worst, tolerance)
    self.notes.extend(exported["notes"])

  def lines(self) -> list:
    width = max([len("optimizer")] + [len(k[0]) for k in self.rows])
    wwhat = max([len("runs of")] + [len(k[1]) for k in self.rows])
    out = [f"{'optimizer':<{width}}  {'runs of':<{wwhat}}  runs  worst |diff|  tolerance"]
    for (name, what), (runs, worst, tolerance) in sorted(self.rows.items()):
      out.append(f"{name:<{width}}  {what:<{wwhat}}  {runs:>4}  {worst:>11.3e}  {tolerance:>9.1e}")
    return out + self.notes

  def pytest_terminal_summary(self, terminalreporter):
    if not self.rows:
      return
    terminalreporter.section("torch optim_db configurations: max abs parameter difference")
    for line in self.lines():
      terminalreporter.write_line(line)


def optim_db_report(config) -> OptimDbReport:
  """The session's report (``config``: pytest's ``pytestconfig``), registered on first use."""
  report = config.pluginmanager.get_plugin(_PLUGIN_NAME)
  if report is None:
    report = OptimDbReport()
    config.pluginmanager.register(report, _PLUGIN_NAME)
  return report
