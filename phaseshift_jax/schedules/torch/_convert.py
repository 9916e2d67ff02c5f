"""A torch scheduler (object or ``state_dict()``) to its ``schedules.torch`` counterpart and state.

The library never imports torch: the scheduler is duck-typed (its class name, its
``state_dict()``, its ``optimizer.param_groups``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax.numpy as jnp
import optax

from phaseshift_jax.schedules.torch import _chainable, _composite, _cycles
from phaseshift_jax.schedules.torch._base import TorchSchedule, as_float
from phaseshift_jax.schedules.torch._stepped import (
    Plateau,
    PlateauState,
    ScheduledLrState,
    scheduled_lr,
)


class FromTorch(NamedTuple):
  """What :func:`from_torch_scheduler` returns.

  Attributes:
    schedule: ``count -> rate`` (a :class:`TorchSchedule`), or ``None`` when a
      ``ReduceLROnPlateau`` is involved (its rate depends on the metrics).
    momentum: ``count -> momentum`` (or beta1) that the schedulers set, else ``None``.
    count: the number of ``scheduler.step()`` calls torch made (its ``last_epoch``): the step
      count to continue from (the optimizer state's count, the schedule's argument).
    transformation: :func:`scheduled_lr` of the scheduler(s): torch's loop as an optax
      transformation (always given; the only form with ``ReduceLROnPlateau``).
    state: its state where torch left off (count, current rate, momentum, plateau bookkeeping).
    members: the converted members (:class:`TorchSchedule` / :class:`Plateau`), in order.
  """

  schedule: TorchSchedule | None
  momentum: Callable | None
  count: int
  transformation: optax.GradientTransformationExtraArgs
  state: ScheduledLrState
  members: tuple


def _class_name(obj) -> str:
  return type(obj).__name__


def _is_scheduler(obj) -> bool:
  return hasattr(obj, "state_dict") and hasattr(obj, "optimizer")


def _scalar(x) -> float:
  """A Python float from a float or a (0-d) tensor / array."""
  if hasattr(x, "item"):
    return float(x.item())
  return float(x)


def _convert_one(
    name: str, sd: Mapping, group_index: int, group: Mapping | None, obj: Any,
    lr_lambda: Callable | None, scale_fn: Callable | None, children: Sequence | None,
):
  """One scheduler to a TorchSchedule (or a (Plateau, PlateauState) pair)."""
  g = group_index

  def base():
    return _scalar(sd["base_lrs"][g])

  def lambda_fn():
    if lr_lambda is not None:
      return lr_lambda
    if obj is not None:
      return obj.lr_lambdas[g]
    raise ValueError(f"lr_lambda must be given to convert a {name} state_dict (torch does not "
                     "store the function)")

  if name == "LambdaLR":
    return _chainable.lambda_lr(base(), lambda_fn())
  if name == "MultiplicativeLR":
    return _chainable.multiplicative_lr(base(), lambda_fn())
  if name == "StepLR":
    return _chainable.step_lr(base(), int(sd["step_size"]), sd["gamma"])
  if name == "MultiStepLR":
    return _chainable.multi_step_lr(base(), list(sd["milestones"].elements())
                                    if hasattr(sd["milestones"], "elements")
                                    else list(sd["milestones"]), sd["gamma"])
  if name == "ConstantLR":
    return _chainable.constant_lr(base(), sd["factor"], int(sd["total_iters"]))
  if name == "LinearLR":
    return _chainable.linear_lr(base(), sd["start_factor"], sd["end_factor"],
                                int(sd["total_iters"]))
  if name == "ExponentialLR":
    return _chainable.exponential_lr(base(), sd["gamma"])
  if name == "PolynomialLR":
    return _chainable.polynomial_lr(base(), int(sd["total_iters"]), sd["power"])
  if name == "CosineAnnealingLR":
    return _chainable.cosine_annealing_lr(base(), int(sd["T_max"]), sd["eta_min"])
  if name == "CosineAnnealingWarmRestarts":
    return _cycles.cosine_annealing_warm_restarts(base(), int(sd["T_0"]), int(sd["T_mult"]),
                                                  sd["eta_min"])
  if name == "CyclicLR":
    custom = scale_fn
    if custom is None and obj is not None:
      custom = obj._scale_fn_custom
    if custom is None and sd.get("_scale_fn_custom") is not None:
      raise ValueError("scale_fn must be given to convert a CyclicLR state_dict with a custom "
                       "scale function")
    cycle = bool(sd["cycle_momentum"])
    return _cycles._cyclic(
        _scalar(sd["base_lrs"][g]), _scalar(sd["max_lrs"][g]), float(sd["total_size"]),
        float(sd["step_ratio"]), sd["mode"], sd["gamma"], custom, sd["scale_mode"], cycle,
        _scalar(sd["base_momentums"][g]) if cycle else 0.0,
        _scalar(sd["max_momentums"][g]) if cycle else 0.0)
  if name == "OneCycleLR":
    if group is None:
      raise ValueError("group must be given to convert a OneCycleLR state_dict: the optimizer's "
                       "param group (optimizer.state_dict()['param_groups'][i]) holds its rates")
    cycle = bool(sd["cycle_momentum"])
    keys = ["initial_lr", "max_lr", "min_lr"] + (["max_momentum", "base_momentum"] if cycle else [])
    values = {k: _scalar(group[k]) for k in keys}
    phases = [(float(p["end_step"]), p["start_lr"], p["end_lr"], p.get("start_momentum"),
               p.get("end_momentum")) for p in sd["_schedule_phases"]]
    return _cycles._one_cycle(values, phases, sd.get("_anneal_func_type", "cos"), cycle)
  if name in ("SequentialLR", "ChainedScheduler"):
    members = [_convert_any(c, group_index, group, None, None, None) for c in children]
    if name == "SequentialLR":
      return _composite.sequential_lr(members, [int(m) for m in sd["_milestones"]])
    return _composite.chained_scheduler(members)
  if name == "ReduceLROnPlateau":
    plateau = Plateau(
        mode=sd["mode"], factor=sd["factor"], patience=int(sd["patience"]),
        threshold=sd["threshold"], threshold_mode=sd["threshold_mode"],
        cooldown=int(sd["cooldown"]), min_lr=_scalar(sd["min_lrs"][g]), eps=sd["eps"])
    state = PlateauState(
        best=as_float(_scalar(sd["best"])),
        num_bad_epochs=jnp.asarray(int(sd["num_bad_epochs"]), jnp.int32),
        cooldown_counter=jnp.asarray(int(sd["cooldown_counter"]), jnp.int32))
    return plateau, state
  raise ValueError(f"no counterpart for torch.optim.lr_scheduler.{name}")


def _convert_any(item, group_index, group, lr_lambda, scale_fn, class_name):
  """``item``: a scheduler object, or a state_dict with ``class_name`` (a str or (str, [...]))."""
  if isinstance(item, _StateDictItem):
    item, class_name = item.sd, item.class_name
  if _is_scheduler(item):
    name = _class_name(item)
    sd = item.state_dict()
    children = list(getattr(item, "_schedulers", []) or [])
    if group is None:
      group = item.optimizer.param_groups[group_index]
    return _convert_one(name, sd, group_index, group, item, lr_lambda, scale_fn, children)
  if not isinstance(item, Mapping):
    raise ValueError(f"expected a torch scheduler or its state_dict(), got {item!r}")
  if class_name is None:
    raise ValueError("class_name must be given with a state_dict (e.g. 'StepLR', or "
                     "('SequentialLR', ['LinearLR', 'CosineAnnealingLR']))")
  name, child_names = (class_name, None) if isinstance(class_name, str) else class_name
  children = None
  if name in ("SequentialLR", "ChainedScheduler"):
    if child_names is None or len(child_names) != len(item["_schedulers"]):
      raise ValueError(f"class_name must list the class of every member of the {name}")
    children = [_StateDictItem(sd, c) for sd, c in zip(item["_schedulers"], child_names)]
  return _convert_one(name, item, group_index, group, None, lr_lambda, scale_fn, children)


class _StateDictItem(Mapping):
  """A member's state_dict tagged with its class name (so _convert_any can recurse)."""

  def __init__(self, sd, class_name):
    self.sd, self.class_name = sd, class_name

  def __getitem__(self, key):
    return self.sd[key]

  def __iter__(self):
    return iter(self.sd)

  def __len__(self):
    return len(self.sd)


def _last_epoch(item, name_hint=None) -> int | None:
  sd = item.state_dict() if _is_scheduler(item) else item
  sd = sd.sd if isinstance(sd, _StateDictItem) else sd
  if "last_epoch" in sd:
    return int(sd["last_epoch"])
  if sd.get("_schedulers"):  # ChainedScheduler keeps no count of its own
    members = getattr(item, "_schedulers", None) or sd["_schedulers"]
    return _last_epoch(members[0])
  return None


def _current_lr(item, group_index, group) -> float | None:
  if group is not None and "lr" in group:
    return _scalar(group["lr"])
  if _is_scheduler(item):
    return _scalar(item.optimizer.param_groups[group_index]["lr"])
  sd = item
  if "_last_lr" in sd:
    return _scalar(sd["_last_lr"][group_index])
  return None


def from_torch_scheduler(
    scheduler,
    *,
    class_name=None,
    group_index: int = 0,
    group: Mapping | None = None,
    lr_lambda: Callable | None = None,
    scale_fn: Callable | None = None,
) -> FromTorch:
  r"""The ``schedules.torch`` counterpart of a torch scheduler, continuing where torch left off.

  Give a scheduler object (duck-typed, torch is not imported), its ``state_dict()`` with
  ``class_name``, or a list of them in the order a training loop steps them (as torch's
  ``optim_db`` ``scheduler_inputs`` build them: the members are chained on the optimizer's
  shared rate, a ``ReduceLROnPlateau`` among them cuts it).

  Example::

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheds = [StepLR(opt, 10, 0.9), ReduceLROnPlateau(opt)]
    ...  # N steps of: loss; opt.step(); scheds[0].step(); scheds[1].step(loss)
    conv = schedules.torch.from_torch_scheduler(scheds)
    tx = optax.chain(compat.torch.sgd(1.0, momentum=0.9), conv.transformation)
    # opt_state = (the converted SGD state, with count conv.count, ..., conv.state)
    # then: updates, opt_state = tx.update(grads, opt_state, params, value=loss)

  Without a ``ReduceLROnPlateau``, ``conv.schedule`` is the rate as a plain optax schedule:
  ``conv.schedule(count)`` is torch's rate at step ``count`` (so with ``conv.count`` the run
  continues), e.g. ``compat.torch.sgd(conv.schedule, ...)`` with the optimizer state's counts
  set to ``conv.count``.

  The count is torch's ``last_epoch`` (the number of ``scheduler.step()`` calls since
  construction); the rate in ``conv.state`` is the optimizer group's current ``lr`` (from the
  object's optimizer, ``group["lr"]``, or the state_dict's ``_last_lr``), the plateau state is
  torch's ``best``, ``num_bad_epochs``, ``cooldown_counter``. The converted schedule assumes
  torch's own stepping (one ``step()`` per optimizer step, no ``epoch`` argument, no manual
  changes of ``lr``) and that composite members were built in list order.

  Args:
    scheduler: a torch scheduler, its ``state_dict()``, or a list of either.
    class_name: with a state_dict: the class name, or ``(name, [member names])`` for a
      ``SequentialLR`` / ``ChainedScheduler``; a list of those for a list.
    group_index: the optimizer's param group to follow (torch keeps one rate per group).
    group: that param group (``optimizer.state_dict()["param_groups"][i]``), needed for a
      ``OneCycleLR`` state_dict (its rates live there); read from the object otherwise.
    lr_lambda: the function of a ``LambdaLR`` / ``MultiplicativeLR`` state_dict (torch does
      not store it), as a JAX function of the step.
    scale_fn: ``CyclicLR``'s custom scale function for a state_dict.

  Returns:
    :class:`FromTorch`.
  """
  items = list(scheduler) if isinstance(scheduler, (list, tuple)) else [scheduler]
  if not items:
    raise ValueError("scheduler must not be an empty list")
  names = class_name if isinstance(class_name, list) else [class_name] * len(items)
  if len(names) != len(items):
    raise ValueError("class_name must give one entry per scheduler of the list")
  members, plateau_states = [], []
  for item, name in zip(items, names):
    converted = _convert_any(item, group_index, group, lr_lambda, scale_fn, name)
    if isinstance(converted, tuple):
      members.append(converted[0])
      plateau_states.append(converted[1])
    else:
      members.append(converted)
  counts = {c for c in (_last_epoch(item) for item in items) if c is not None}
  if len(counts) > 1:
    raise ValueError(f"the schedulers were stepped different numbers of times: {sorted(counts)}")
  count = counts.pop() if counts else 0
  lr_members = [m for m in members if isinstance(m, TorchSchedule)]
  schedule = None
  if lr_members and not plateau_states:
    schedule = lr_members[0] if len(lr_members) == 1 else _composite.chained_scheduler(lr_members)
  momentum = None
  if lr_members:
    chain = lr_members[0] if len(lr_members) == 1 else _composite.chained_scheduler(lr_members)
    momentum = chain.momentum
  current = _current_lr(items[-1], group_index, group)
  start_lr = lr_members[0].lr if lr_members else current
  transformation = scheduled_lr(members, lr=start_lr)
  state = transformation.init(None)
  state = ScheduledLrState(
      count=jnp.asarray(count, jnp.int32),
      lr=as_float(current if current is not None else state.lr),
      momentum=momentum(count) if momentum is not None else state.momentum,
      plateaus=tuple(plateau_states),
  )
  return FromTorch(schedule, momentum, count, transformation, state, tuple(members))
