"""The state_dict conversion of ``compat.torch.lbfgs``, whose torch state is not per parameter.

torch keeps LBFGS's state on its first parameter only, over the flattened parameters (their
``view(-1)``s concatenated in order; a complex parameter's ``torch.view_as_real`` first, so its
real and imaginary parts interleave, two reals per element): the counters ``func_evals`` and
``n_iter``, the last direction ``d`` and step ``t``, the lists ``old_dirs`` / ``old_stps`` (the
y and s pairs, oldest first, at most ``history_size``) and ``ro``, ``H_diag``,
``prev_flat_grad``, ``prev_loss`` (and ``al``, scratch space). compat.torch.lbfgs keeps the same
with params-shaped trees and the pairs in rings of ``history_size`` slots (slot
``k % history_size`` holds the k-th pair stored, ``stored`` counts them): torch's list is the
ring read from its oldest live slot. For a complex parameter ``d`` and ``prev_flat_grad`` hold
complex leaves, the rings its real pair view.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from phaseshift_jax.compat.torch import _state_dict as common


def _lbfgs_hyper(hyper: dict) -> dict:
  """torch stores ``max_eval=None`` as the value it stands for."""
  if hyper.get("max_eval") is None:
    hyper = {**hyper, "max_eval": hyper["max_iter"] * 5 // 4}
  return hyper


def _torch_view(leaf) -> np.ndarray:
  """A leaf as torch's LBFGS sees it: a complex one as its ``view_as_real`` (trailing pair)."""
  leaf = np.asarray(leaf)
  return np.stack([leaf.real, leaf.imag], axis=-1) if np.iscomplexobj(leaf) else leaf


def _from_view(part: np.ndarray, like) -> jax.Array:
  """``part`` (a leaf's torch view) as a leaf of ``like``'s dtype: complex from the pair if
  ``like`` is complex, else as it is."""
  if jnp.iscomplexobj(like):
    pair = part
    part = np.empty(pair.shape[:-1], np.result_type(pair.dtype, np.complex64))
    part.real, part.imag = pair[..., 0], pair[..., 1]
  return jnp.asarray(part, dtype=like.dtype)


def _unflatten(flat, leaves, treedef, dtype_like):
  """torch's flat vector as a tree like ``dtype_like``: each params leaf's part of ``flat`` in
  its torch view's shape (a complex parameter's ``view_as_real``: its shape and a pair axis),
  made complex where the leaf of ``dtype_like`` is complex (the real pair view where not)."""
  flat = common._to_numpy(flat).reshape(-1)
  views = [tuple(np.shape(leaf)) + ((2,) if jnp.iscomplexobj(leaf) else ()) for leaf in leaves]
  sizes = [int(np.prod(view, dtype=int)) for view in views]
  if flat.size != sum(sizes):
    raise ValueError(f"torch's LBFGS state has {flat.size} values, params have {sum(sizes)} "
                     "(a complex parameter counts its real and imaginary parts)")
  parts = np.split(flat, np.cumsum(sizes)[:-1])
  return jax.tree.unflatten(treedef, [
      _from_view(part.reshape(view), like)
      for part, view, like in zip(parts, views, jax.tree.leaves(dtype_like))])


def _flatten(tree) -> np.ndarray:
  """A tree as torch's flat vector: each leaf's ``view_as_real`` (if complex), ``view(-1)``."""
  return np.concatenate([_torch_view(leaf).reshape(-1) for leaf in jax.tree.leaves(tree)])


def from_torch_lbfgs(factory, hyper, groups, entries, params, step, factory_kwargs):
  leaves, treedef = jax.tree.flatten(params)
  if any(entries[1:]):
    raise ValueError("torch's LBFGS keeps its state on its first parameter only")
  entry = entries[0]
  if step is not None:
    count = int(step)
  elif callable(hyper["lr"]) and entry:
    raise ValueError("torch.optim.LBFGS keeps no step count and lr is a schedule: pass step=")
  else:
    count = 1 if entry else 0  # for a constant lr the count is not read
  common._check_groups("lbfgs", common._LAYOUTS["lbfgs"], groups, _lbfgs_hyper(hyper), count)
  state = factory(**factory_kwargs).init(params)
  fields = dict(common._fields(state))
  history = hyper["history_size"]
  dirs, stps = list(entry.get("old_dirs", [])), list(entry.get("old_stps", []))
  ros = list(entry.get("ro", []))
  if not len(dirs) == len(stps) == len(ros) <= history:
    raise ValueError(f"torch's LBFGS history has {len(dirs)}, {len(stps)}, {len(ros)} entries "
                     f"(history_size={history})")

  def ring(pairs, like):
    # The ring's leaves are real (the pair view, with a trailing axis, for a complex leaf).
    slot_like = jax.tree.map(lambda leaf: leaf[0], like)
    slots = [jax.tree.leaves(_unflatten(v, leaves, treedef, slot_like)) for v in pairs]
    return jax.tree.unflatten(treedef, [
        leaf.at[: len(slots)].set(jnp.stack([slot[j] for slot in slots]).astype(leaf.dtype))
        if slots else leaf for j, leaf in enumerate(jax.tree.leaves(like))])

  def scalar(key, like):
    return jnp.asarray(common._plain(entry[key]), dtype=like.dtype) if key in entry else like

  def tree(key, like):
    return _unflatten(entry[key], leaves, treedef, like) if entry.get(key) is not None else like

  values = {
      "count": jnp.asarray(count, fields["count"].dtype),
      "func_evals": scalar("func_evals", fields["func_evals"]),
      "n_iter": scalar("n_iter", fields["n_iter"]),
      "d": tree("d", fields["d"]),
      "t": scalar("t", fields["t"]),
      "old_dirs": ring(dirs, fields["old_dirs"]),
      "old_stps": ring(stps, fields["old_stps"]),
      "ro": fields["ro"].at[: len(ros)].set(
          jnp.asarray([common._plain(r) for r in ros], fields["ro"].dtype)) if ros else fields["ro"],
      "stored": jnp.asarray(len(dirs), fields["stored"].dtype),
      "h_diag": scalar("H_diag", fields["h_diag"]),
      "prev_flat_grad": tree("prev_flat_grad", fields["prev_flat_grad"]),
      "prev_loss": scalar("prev_loss", fields["prev_loss"]),
  }
  return common._walk(state, lambda field, value: values.get(field, common._RECURSE))


def to_torch_lbfgs(hyper, opt_state, params, step, convert):
  fields = dict(common._fields(opt_state))
  history = hyper["history_size"]
  group = dict(_lbfgs_hyper(hyper))
  count = int(fields["count"]) if step is None else int(step)
  if callable(group["lr"]):
    group["lr"] = float(group["lr"](count))
  group["params"] = list(range(len(jax.tree.leaves(params))))
  state = {}
  if int(fields["n_iter"]) or int(fields["func_evals"]):
    stored = int(fields["stored"])
    live = min(stored, history)
    slots = [(stored - live + i) % history for i in range(live)]

    def slot(ring, k):
      return convert(_flatten(jax.tree.map(lambda leaf: leaf[k], ring)))

    entry = {"func_evals": int(fields["func_evals"]), "n_iter": int(fields["n_iter"])}
    if stored or int(fields["n_iter"]):
      entry.update(
          d=convert(_flatten(fields["d"])), t=float(fields["t"]),
          old_dirs=[slot(fields["old_dirs"], k) for k in slots],
          old_stps=[slot(fields["old_stps"], k) for k in slots],
          ro=[convert(np.array(fields["ro"][k])) for k in slots],
          H_diag=convert(np.array(fields["h_diag"])),
          prev_flat_grad=convert(_flatten(fields["prev_flat_grad"])),
          prev_loss=float(fields["prev_loss"]))
    state[0] = entry
  return {"state": state, "param_groups": [group]}
