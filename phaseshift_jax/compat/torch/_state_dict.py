r"""Continue a ``torch.optim`` run in JAX, and back: ``state_dict()`` <-> the compat optax state.

:func:`from_torch_state_dict` turns a torch optimizer's ``state_dict()`` into the state of the
matching ``compat.torch`` optimizer, so ``tx.update`` continues where ``optimizer.step()`` left off
(the same numbers as torch's next steps); :func:`to_torch_state_dict` goes the other way, to a
dict ``optimizer.load_state_dict`` takes.

Calling convention::

    state = from_torch_state_dict("adam", optimizer.state_dict(), params, lr=1e-3, amsgrad=True)
    tx = compat.torch.adam(lr=1e-3, amsgrad=True)   # the same keywords
    updates, state = tx.update(grads, state, params)

* ``params`` is the JAX params tree. Its leaves, in ``jax.tree.leaves`` order, are torch's
  parameters in the order of the state dict's param groups (``model.parameters()`` for a single
  group): a list ``[p.detach().numpy() for p in model.parameters()]`` is such a tree; for a dict
  or another pytree, ``jax.tree.leaves`` order is the rule (a dict's leaves come in sorted key
  order, not insertion order). Shapes are checked.
* The keywords are the factory's (torch's names). Each must match every torch param group's
  value, or a ``ValueError`` names it; all groups must hold the same hyperparameters (one optax
  transformation has one set). An ``lr`` given as a schedule must give the group's current ``lr``
  at the step count (so a scheduled run continues: build the schedule from torch's scheduler).
  ``foreach``, ``capturable``, ``differentiable``, ``fused`` are not compared (no numbers depend
  on them); a torch group key the factory does not have raises unless it is off (``False``/
  ``None``).
* The step count goes into every ``count`` of the chain (``scale_by_adam``'s, the schedules'
  ``ScaleByScheduleState``): every one counts the updates made so far, which is torch's
  ``step``. ``torch.optim.SGD`` keeps no step: pass ``step=`` (for example the scheduler's
  ``last_epoch``) where the count matters, i.e. with an ``lr`` schedule. The momentum buffer's
  ``momentum_steps`` (``sgd``, ``rmsprop``) is the count where torch holds momentum buffers
  (1 for an ``SGD`` without ``step=``: it only tells that the buffer exists) and 0 where it holds
  none, so that the next step with momentum starts the buffer undamped, as torch's does. The
  other way, a state with no count at all (``rmsprop`` with a constant ``lr``: no step enters
  its rule) needs ``step=``; ``sgd``'s ``momentum_steps`` stands in for it.
* A buffer torch does not keep for the hyperparameters in use (``momentum_buffer`` with
  ``momentum=0``, ``grad_avg`` without ``centered``, ...) is the state's initial value here;
  :func:`to_torch_state_dict` leaves it out, as torch does, and leaves out every parameter's
  state before the first step (torch's "no state yet"; ``Adagrad`` has its state from the start).
* A scheduled run: ``conv = schedules.torch.from_torch_scheduler(scheduler)``, then
  ``lr=conv.schedule, step=conv.count``; with a ``ReduceLROnPlateau``, ``scheduler=`` and
  ``lr=1.0`` give the state of ``optax.chain(factory(lr=1.0, ...), conv.transformation)``.
* ``lbfgs``: torch keeps its state on the first parameter, over the flattened parameters (a
  complex parameter of ``n`` elements as its ``view_as_real``: ``2n`` reals); it converts to and
  from ``compat.torch.lbfgs``'s params-shaped trees and history rings.

The library does not import torch: a tensor is anything with ``.numpy()`` or ``__array__``, and
:func:`to_torch_state_dict` returns NumPy arrays unless given ``to_tensor`` (``torch.as_tensor``
makes ``load_state_dict``-ready tensors). Complex parameters convert as they are (the state of a
complex leaf is complex, torch's state tensor, where the optimizer takes complex parameters).
* ``optax.inject_hyperparams``: :func:`from_torch_state_dict` with ``injected_tx=tx`` (the
  wrapped transformation, ``optax.inject_hyperparams(compat.torch.adam)(lr=1e-3)``) returns
  ``tx``'s state, the converted state as its ``inner_state`` and the step count as its
  ``count``; :func:`to_torch_state_dict` takes such a state as it is, and the values it holds
  in ``hyperparams`` (which may have been changed mid-run) are the param group's.

Example:
  >>> import torch
  >>> from phaseshift_jax.compat import torch as torch_optim
  >>> model = torch.nn.Linear(3, 2)
  >>> opt = torch.optim.Adam(model.parameters(), lr=1e-2)
  >>> model(torch.ones(1, 3)).sum().backward(); opt.step()
  >>> params = [p.detach().numpy() for p in model.parameters()]
  >>> state = torch_optim.from_torch_state_dict("adam", opt.state_dict(), params, lr=1e-2)
  >>> int(state[1].count)
  1
  >>> back = torch_optim.to_torch_state_dict("adam", state, params, lr=1e-2,
  ...                                        to_tensor=torch.as_tensor)
  >>> opt.load_state_dict(back)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from phaseshift_jax.schedules import torch as schedules_torch
from phaseshift_jax.compat.torch import _state_dict_lbfgs  # noqa: E402  (imports this module back)

__all__ = ["from_torch_state_dict", "to_torch_state_dict"]

# torch group keys that select an implementation (no numbers depend on them) or are bookkeeping.
_NOT_COMPARED = frozenset(
    {"params", "param_names", "initial_lr", "foreach", "capturable", "differentiable", "fused"})


class _Layout(NamedTuple):
  """How one torch optimizer's per-parameter state maps to the compat optax state.

  ``fields``: torch state key -> optax state field holding a params-shaped tree.
  ``kept(hyper, ndim)``: the keys of ``fields`` torch keeps for a parameter of ``ndim``
  dimensions under these hyperparameters (the rest stay at their initial value here).
  ``scalars``: torch state key -> optax field holding one scalar, torch's per-parameter copies
  of which are all equal. ``has_step``: torch keeps ``step``. ``from_start``: torch creates the
  state at construction (before any step). ``implied``: torch group keys the factory has no
  argument for, with the only value it stands for. ``buffer_steps``: the state field counting
  the steps that wrote the buffers, where torch's state is the buffers alone (``SGD``'s
  ``momentum_buffer``, written by the steps with ``momentum != 0`` and kept by the others):
  while it is 0 torch has no state, and for a state with no ``count`` it is the count.
  """

  fields: dict
  kept: Callable[[dict, int], set]
  scalars: Mapping = MappingProxyType({})
  has_step: bool = True
  from_start: bool = False
  implied: Mapping = MappingProxyType({})
  buffer_steps: str | None = None


def _always(*keys):
  return lambda hyper, ndim: set(keys)


_ADAM_FIELDS = {"exp_avg": "mu", "exp_avg_sq": "nu", "max_exp_avg_sq": "nu_max"}


def _adam_kept(hyper, ndim):
  return {"exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if hyper["amsgrad"] else set())


def _rmsprop_kept(hyper, ndim):
  return ({"square_avg"} | ({"grad_avg"} if hyper["centered"] else set())
          | ({"momentum_buffer"} if hyper["momentum"] > 0 else set()))


def _adafactor_kept(hyper, ndim):
  return {"row_var", "col_var"} if ndim >= 2 else {"variance"}


_LAYOUTS = {
    "sgd": _Layout(
        fields={"momentum_buffer": "trace"},
        kept=_always("momentum_buffer"), has_step=False, buffer_steps="momentum_steps"),
    "adagrad": _Layout(fields={"sum": "sum_of_squares"}, kept=_always("sum"), from_start=True),
    "rmsprop": _Layout(
        fields={"square_avg": "nu", "grad_avg": "mu", "momentum_buffer": "trace"},
        kept=_rmsprop_kept),
    "adam": _Layout(fields=_ADAM_FIELDS, kept=_adam_kept,
                    implied={"decoupled_weight_decay": False}),
    "adamw": _Layout(fields=_ADAM_FIELDS, kept=_adam_kept,
                     implied={"decoupled_weight_decay": True}),
    "asgd": _Layout(fields={"ax": "ax"}, kept=_always("ax"),
                    scalars={"eta": "eta", "mu": "mu"}),
    "adadelta": _Layout(fields={"square_avg": "e_g", "acc_delta": "e_x"},
                        kept=_always("square_avg", "acc_delta")),
    "adamax": _Layout(fields={"exp_avg": "mu", "exp_inf": "nu"},
                      kept=_always("exp_avg", "exp_inf")),
    "rprop": _Layout(fields={"prev": "prev", "step_size": "step_size"},
                     kept=_always("prev", "step_size")),
    "nadam": _Layout(fields={"exp_avg": "mu", "exp_avg_sq": "nu"},
                     kept=_always("exp_avg", "exp_avg_sq"), scalars={"mu_product": "mu_product"}),
    "radam": _Layout(fields={"exp_avg": "mu", "exp_avg_sq": "nu"},
                     kept=_always("exp_avg", "exp_avg_sq")),
    "lbfgs": _Layout(fields={}, kept=_always(), has_step=False),  # its own conversion, below
    "muon": _Layout(fields={"momentum_buffer": "trace"}, kept=_always("momentum_buffer"),
                    has_step=False),
    "adafactor": _Layout(
        fields={"row_var": "row_var", "col_var": "col_var", "variance": "variance"},
        kept=_adafactor_kept),
}


def _resolve(optimizer) -> tuple[str, Callable, _Layout]:
  from phaseshift_jax.compat import torch as compat_torch

  if callable(optimizer):
    name = getattr(optimizer, "__name__", "")
  elif isinstance(optimizer, str):
    name = optimizer.rsplit(".", 1)[-1].lower()
  else:
    raise TypeError(f"optimizer must be a name or a compat.torch factory, got {optimizer!r}")
  factory = getattr(compat_torch, name, None)
  if factory is None or (callable(optimizer) and factory is not optimizer):
    raise ValueError(f"{optimizer!r} is not a compat.torch optimizer")
  if name not in _LAYOUTS:
    raise NotImplementedError(f"no state_dict conversion for compat.torch.{name} yet")
  return name, factory, _LAYOUTS[name]


def _to_numpy(value) -> np.ndarray:
  """A torch tensor (or anything with ``.numpy()`` / ``__array__``) as a NumPy array."""
  for method in ("detach", "cpu"):
    if hasattr(value, method):
      value = getattr(value, method)()
  if hasattr(value, "numpy"):
    value = value.numpy()
  return np.asarray(value)


def _plain(value):
  """A group value as a Python number (a 0-d tensor becomes a float), tuples elementwise."""
  if isinstance(value, (tuple, list)):
    return tuple(_plain(v) for v in value)
  if isinstance(value, (bool, str, type(None))) or callable(value):
    return value
  if isinstance(value, (int, float)):
    return value
  array = _to_numpy(value)
  return array.item() if array.ndim == 0 else value


# Keywords of ours that torch's optimizer lacks (keyword-only, after torch's): accepted in
# ``factory_kwargs`` and never written to a torch param group.
_OURS_ONLY = frozenset({"ns_kernels"})


def _hyperparameters(name: str, factory, kwargs: dict) -> dict:
  """torch's hyperparameters of ``factory(**kwargs)``, defaults included."""
  signature = inspect.signature(factory).parameters
  unknown = set(kwargs) - set(signature)
  if unknown:
    raise TypeError(f"compat.torch.{name} has no argument(s) {sorted(unknown)}")
  return {k: kwargs.get(k, p.default) for k, p in signature.items() if k not in _OURS_ONLY}


def _same(a, b, rel_tol: float = 0.0) -> bool:
  a, b = _plain(a), _plain(b)
  if isinstance(a, tuple) or isinstance(b, tuple):
    return (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)
            and all(_same(x, y, rel_tol) for x, y in zip(a, b)))
  if isinstance(a, bool) or isinstance(b, bool) or not isinstance(a, (int, float)):
    return a == b
  return math.isclose(float(a), float(b), rel_tol=rel_tol, abs_tol=0.0) if rel_tol else (
      float(a) == float(b))


def _check_groups(name: str, layout: _Layout, groups: list, hyper: dict, step: int) -> None:
  if not groups:
    raise ValueError("the state dict has no param_groups")
  first = groups[0]
  for i, group in enumerate(groups[1:], start=1):
    for key in set(first) | set(group):
      if key in _NOT_COMPARED:
        continue
      if not _same(first.get(key), group.get(key)):
        raise ValueError(
            f"torch param groups 0 and {i} differ in {key!r} ({first.get(key)!r} vs "
            f"{group.get(key)!r}): compat.torch.{name} takes one set of hyperparameters "
            "(convert each group's parameters separately, e.g. for optax.partition)")
  for key, value in first.items():
    if key in _NOT_COMPARED:
      continue
    if key in hyper:
      expected = hyper[key]
      if key == "lr" and callable(expected):
        expected, rel_tol = float(expected(step)), 1e-9
      else:
        rel_tol = 0.0
      if not _same(value, expected, rel_tol):
        raise ValueError(
            f"torch param group has {key}={_plain(value)!r}, compat.torch.{name} was given "
            f"{key}={expected!r}" + (f" (the lr schedule at step {step})" if rel_tol else ""))
    elif key in layout.implied:
      if not _same(value, layout.implied[key]):
        raise ValueError(
            f"torch param group has {key}={_plain(value)!r}, which compat.torch.{name} does "
            f"not do ({key}={layout.implied[key]!r} only)")
    elif _plain(value) not in (False, None):
      raise ValueError(
          f"torch param group has {key}={_plain(value)!r}, which compat.torch.{name} has no "
          "argument for")


_RECURSE = object()


def _walk(state, replace: Callable[[str, Any], Any]):
  """``state`` with each NamedTuple field ``f`` set to ``replace(f, value)``; where that returns
  ``_RECURSE``, the field's value is walked in turn."""
  if isinstance(state, tuple) and hasattr(state, "_fields"):
    values = []
    for field, value in zip(state._fields, state):
      new = replace(field, value)
      values.append(_walk(value, replace) if new is _RECURSE else new)
    return type(state)(*values)
  if isinstance(state, (tuple, list)):
    return type(state)(_walk(v, replace) for v in state)
  return state


def _fields(state) -> list:
  """``(field, value)`` for every NamedTuple field in ``state``, depth first."""
  out = []
  if isinstance(state, tuple) and hasattr(state, "_fields"):
    for f, v in zip(state._fields, state):
      out.append((f, v))
      out += _fields(v)
  elif isinstance(state, (tuple, list)):
    for v in state:
      out += _fields(v)
  return out


def _check_fields(name: str, layout: _Layout, state, params) -> None:
  """Every params-shaped field of ``state`` is mapped, and a mapped field occurs once."""
  treedef = jax.tree.structure(params)
  mapped = set(layout.fields.values()) | set(layout.scalars.values())
  seen = []
  for field, value in _fields(state):
    if field in mapped:
      seen.append(field)
      continue
    try:
      params_shaped = jax.tree.structure(value) == treedef and bool(jax.tree.leaves(value))
    except Exception:  # noqa: BLE001 - a value that is no tree is not params-shaped
      params_shaped = False
    if params_shaped:
      raise NotImplementedError(
          f"compat.torch.{name}'s state field {field!r} has no torch counterpart in the "
          "conversion")
  duplicated = {f for f in seen if seen.count(f) > 1}
  if duplicated:
    raise NotImplementedError(f"fields {sorted(duplicated)} occur twice in the state")


def _torch_index_order(groups: list) -> list:
  return [index for group in groups for index in group["params"]]


def _is_injected(state) -> bool:
  """An ``optax.inject_hyperparams`` state (plain or stateful)."""
  return hasattr(state, "inner_state") and hasattr(state, "hyperparams")


def _group_value(value):
  """An injected hyperparameter as a torch group holds it: a number, or a tuple (``betas``)."""
  array = np.asarray(value)
  return array.item() if array.ndim == 0 else tuple(array.tolist())


def from_torch_state_dict(optimizer, state_dict: dict, params, *, step: int | None = None,
                          scheduler=None, injected_tx=None, **factory_kwargs):
  """The ``compat.torch`` optimizer state equal to a torch optimizer's ``state_dict()``.

  Args:
    optimizer: the compat.torch factory (``compat.torch.adam``) or its name (``"adam"``,
      ``"Adam"``, ``"torch.optim.Adam"``).
    state_dict: ``torch_optimizer.state_dict()`` (tensors are read through ``.numpy()`` /
      ``__array__``).
    params: the JAX params tree; its ``jax.tree.leaves`` are torch's parameters in order.
    step: the step count, for an optimizer whose torch state has none (``SGD``); checked
      against torch's ``step`` where there is one.
    scheduler: torch's scheduler(s) of this optimizer (an object, a list in the order the loop
      steps them, or their ``schedules.torch.from_torch_scheduler`` conversion), for a run whose
      rate a ``ReduceLROnPlateau`` (or any scheduler) sets: the optimizer is then
      ``optax.chain(factory(lr=1.0, ...), conversion.transformation)`` (``lr`` must be 1.0, the
      rate being the transformation's final factor, which holds for an optimizer whose rate is a
      final factor: see ``schedules.torch.scheduled_lr``) and the return value is its state.
      The step count defaults to the schedulers' ``last_epoch``. Without a plateau, an ``lr``
      schedule (``conversion.schedule``) with ``step=conversion.count`` also continues the run.
    injected_tx: for an optimizer under ``optax.inject_hyperparams``: that transformation
      (``optax.inject_hyperparams(factory)(**factory_kwargs)``, with any ``static_args`` or
      ``hyperparam_dtype``); the return value is then its state. With ``scheduler``, its ``lr``
      must be ``schedules.torch.scheduled_hyperparam`` of the converted members (the form for
      an optimizer whose rate is not a final factor, such as ``asgd``): that schedule's state is
      torch's schedulers' (``factory_kwargs`` need no ``lr`` then).
    **factory_kwargs: the factory's keywords, as the optimizer will be built.

  Returns:
    ``factory(**factory_kwargs).init(params)`` with torch's buffers and step count in it; with
    ``scheduler``, the pair ``(that state, the conversion's state)``.
  """
  if injected_tx is not None:
    return _from_torch_injected(optimizer, state_dict, params, step, scheduler, injected_tx,
                                factory_kwargs)
  name, factory, layout = _resolve(optimizer)
  hyper = _hyperparameters(name, factory, factory_kwargs)
  converted = None
  if scheduler is not None:
    converted = (scheduler if isinstance(scheduler, schedules_torch.FromTorch)
                 else schedules_torch.from_torch_scheduler(scheduler))
    if callable(hyper["lr"]) or hyper["lr"] != 1.0:
      raise ValueError(f"with scheduler=, build compat.torch.{name} with lr=1.0 (the scheduler's "
                       f"transformation multiplies in torch's rate), got lr={hyper['lr']!r}")
    if step is None:
      step = converted.count
  groups = state_dict["param_groups"]
  order = _torch_index_order(groups)
  leaves, treedef = jax.tree.flatten(params)
  if len(order) != len(leaves):
    raise ValueError(f"the state dict has {len(order)} parameters, params has {len(leaves)}")
  per_param = state_dict.get("state", {})
  if name == "lbfgs":
    return _state_dict_lbfgs.from_torch_lbfgs(factory, hyper, groups, [per_param.get(i, {}) for i in order],
                             params, step, factory_kwargs)
  entries = [per_param.get(i, {}) for i in order]
  started = [bool(e) for e in entries]
  if any(started) and not all(started):
    raise ValueError("torch holds state for some parameters only (some had no gradient); "
                     "compat.torch steps every parameter")

  steps = {float(_plain(e["step"])) for e in entries if "step" in e}
  if len(steps) > 1:
    raise ValueError(f"torch's parameters are at different steps {sorted(steps)}")
  if steps:
    (torch_step,) = steps
    if step is not None and step != torch_step:
      raise ValueError(f"step={step} but torch's state is at step {int(torch_step)}")
    count = int(torch_step)
  elif step is not None:
    count = int(step)
  elif callable(hyper.get("lr")) and any(started):
    raise ValueError(f"torch.optim.{name} keeps no step count and lr is a schedule: pass step=")
  else:
    count = 1 if any(started) else 0
  _check_groups(name, layout, groups,
                hyper if converted is None else {**hyper, "lr": float(converted.state.lr)}, count)

  state = factory(**factory_kwargs).init(params)
  _check_fields(name, layout, state, params)
  kept = [layout.kept(hyper, np.ndim(leaf)) if any(started) else set() for leaf in leaves]
  for i, (entry, keys) in enumerate(zip(entries, kept)):
    missing = {k for k in keys | (set(layout.scalars) if any(started) else set())
               if entry.get(k) is None}
    if missing:
      raise ValueError(f"torch's state of parameter {order[i]} lacks {sorted(missing)} for "
                       "these hyperparameters")

  def tree_value(torch_key, current):
    values = []
    for i, (entry, keys, leaf, ours) in enumerate(
        zip(entries, kept, leaves, jax.tree.leaves(current))):
      if torch_key not in keys:
        values.append(ours)
        continue
      array = _to_numpy(entry[torch_key])
      if array.shape != ours.shape:
        raise ValueError(f"torch parameter {order[i]} has {torch_key!r} of shape {array.shape}, "
                         f"params leaf {i} (shape {np.shape(leaf)}) needs {ours.shape}")
      values.append(jnp.asarray(array, dtype=ours.dtype))
    return jax.tree.unflatten(treedef, values)

  def scalar_value(torch_key, current):
    values = {_to_numpy(entry[torch_key]).item() for entry in entries}
    if len(values) != 1:
      raise ValueError(f"torch's {torch_key!r} differs between parameters: {sorted(values)}")
    return jnp.asarray(values.pop(), dtype=current.dtype)

  by_field = {v: k for k, v in layout.fields.items()}
  by_scalar = {v: k for k, v in layout.scalars.items()}

  has_buffer = any("momentum_buffer" in entry for entry in entries)

  def replace(field, value):
    if field == "count":
      return jnp.asarray(count, dtype=value.dtype)
    if field == "momentum_steps":  # torch's buffer exists once a step has written it
      return jnp.asarray(count if has_buffer else 0, dtype=value.dtype)
    if field in by_field:
      return tree_value(by_field[field], value)
    if field in by_scalar:
      return scalar_value(by_scalar[field], value) if any(started) else value
    return _RECURSE

  state = _walk(state, replace)
  return state if converted is None else (state, converted.state)


def _from_torch_injected(optimizer, state_dict, params, step, scheduler, injected_tx,
                         factory_kwargs):
  """:func:`from_torch_state_dict` with ``injected_tx``: the state of that
  ``optax.inject_hyperparams`` transformation; with ``scheduler``, its ``lr`` is
  ``schedules.torch.scheduled_hyperparam`` of the scheduler(s), whose state is torch's."""
  outer = injected_tx.init(params)
  if not _is_injected(outer):
    raise TypeError("injected_tx must be an optax.inject_hyperparams(...) transformation, "
                    f"whose state has hyperparams and inner_state; its state is "
                    f"{type(outer).__name__}")
  converted = None
  if scheduler is not None:
    converted = (scheduler if isinstance(scheduler, schedules_torch.FromTorch)
                 else schedules_torch.from_torch_scheduler(scheduler))
    if "lr" not in getattr(outer, "hyperparams_states", {}):
      raise ValueError("with scheduler= and injected_tx=, inject lr as "
                       "schedules.torch.scheduled_hyperparam(members) (a stateful schedule)")
    # The optimizer runs at the schedulers' current rate: that is what torch's group holds.
    factory_kwargs = {**factory_kwargs, "lr": float(converted.state.lr)}
    if step is None:
      step = converted.count
  inner = from_torch_state_dict(optimizer, state_dict, params, step=step, **factory_kwargs)
  counts = [v for f, v in _fields(inner) if f == "count"]
  entries = [e for e in state_dict.get("state", {}).values() if "step" in e]
  count = (int(step) if step is not None else int(float(_plain(entries[0]["step"])))
           if entries else int(counts[0]) if counts else 0)
  outer = outer._replace(count=jnp.asarray(count, outer.count.dtype), inner_state=inner)
  if converted is not None:
    lr = outer.hyperparams["lr"]
    outer = outer._replace(
        hyperparams={**outer.hyperparams, "lr": jnp.asarray(converted.state.lr, lr.dtype)},
        hyperparams_states={**outer.hyperparams_states, "lr": converted.state})
  return outer


def to_torch_state_dict(optimizer, opt_state, params, *, step: int | None = None,
                        to_tensor: Callable[[np.ndarray], Any] | None = None, **factory_kwargs):
  """A torch ``state_dict()`` equal to a ``compat.torch`` optimizer state (the inverse).

  Args:
    optimizer: the compat.torch factory or its name, as in :func:`from_torch_state_dict`.
    opt_state: the state of ``factory(**factory_kwargs)`` for ``params``, or of
      ``optax.inject_hyperparams(factory)(**factory_kwargs)``: its ``hyperparams`` then give the
      group's values of the injected hyperparameters.
    params: the JAX params tree (its ``jax.tree.leaves`` order is torch's parameter order).
    step: the number of steps taken, for a state that keeps no count (``rmsprop`` with a
      constant ``lr``: its rule needs none, torch's state has one); checked against the state's
      count where it has one, unused for ``sgd`` (torch's SGD keeps no step).
    to_tensor: applied to every array (NumPy); ``torch.as_tensor`` gives a dict that
      ``torch_optimizer.load_state_dict`` takes. Default: NumPy arrays.
    **factory_kwargs: the factory's keywords.

  Returns:
    ``{"state": {i: {...}}, "param_groups": [{hyperparameters, "params": [0, ..., n-1]}]}``,
    torch's layout: ``step`` (float32, as torch keeps it) where torch has one, the buffers torch
    keeps for these hyperparameters, no per-parameter entry before the first step. ``lr`` is a
    float (a schedule's value at the step count).
  """
  if _is_injected(opt_state):
    injected = {k: _group_value(v) for k, v in opt_state.hyperparams.items()}
    return to_torch_state_dict(optimizer, opt_state.inner_state, params, step=step,
                               to_tensor=to_tensor, **{**factory_kwargs, **injected})
  name, factory, layout = _resolve(optimizer)
  hyper = _hyperparameters(name, factory, factory_kwargs)
  convert = to_tensor if to_tensor is not None else (lambda a: a)
  leaves = jax.tree.leaves(params)
  if name == "lbfgs":
    return _state_dict_lbfgs.to_torch_lbfgs(hyper, opt_state, params, step, convert)
  _check_fields(name, layout, opt_state, params)
  fields = dict(_fields(opt_state))
  counts = {int(v) for f, v in _fields(opt_state) if f == "count"}
  if len(counts) > 1:
    raise ValueError(f"the state's counts differ: {sorted(counts)}")
  if counts:
    count = counts.pop()
    if step is not None and step != count and layout.has_step:
      raise ValueError(f"step={step} but the state's count is {count}")
  elif step is not None:
    count = int(step)
  elif layout.buffer_steps is not None:
    count = int(fields[layout.buffer_steps])
  elif not layout.has_step and not callable(hyper.get("lr")):
    count = None  # neither side counts (Muon): its buffers start at zero in torch too
  else:
    raise ValueError(f"this compat.torch.{name} state keeps no step count (its rule needs "
                     "none): pass step=, the number of steps taken")

  group = {}
  for key, value in hyper.items():
    if key == "lr" and callable(value):
      value = float(value(count))
    group[key] = value
  for key, value in layout.implied.items():
    group.setdefault(key, value)
  group["params"] = list(range(len(leaves)))

  started = count is None or count > 0 or layout.from_start
  if layout.buffer_steps is not None:  # torch's state is the buffer, once a step wrote it
    started = int(fields[layout.buffer_steps]) > 0
  state = {}
  if started:
    for i, leaf in enumerate(leaves):
      entry = {}
      if layout.has_step:
        entry["step"] = convert(np.asarray(count, dtype=np.float32))
      for torch_key in sorted(layout.kept(hyper, np.ndim(leaf))):
        entry[torch_key] = convert(np.array(jax.tree.leaves(fields[layout.fields[torch_key]])[i]))
      for torch_key, field in layout.scalars.items():
        entry[torch_key] = convert(np.array(fields[field]))
      state[i] = entry
  return {"state": state, "param_groups": [group]}
