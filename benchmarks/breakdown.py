"""Where a PhaseShift step's time goes: its passes over memory timed one by one.

A PhaseShift step must (1) reduce ``max|g - h|`` per leaf, reading ``g`` and ``h``,
(2) update the params, reading ``g`` and ``p`` and writing ``p``, which can only
start once the selection (a function of every leaf's reduction) is known, and
(3) write the new history ``h <- g``. XLA fuses none of these into another, so
this times, in one interleaved run on the same tree:

* ``optax.sgd``: pass (2) alone, the yardstick;
* ``read g and h (vdot)``: a dot product of ``g`` and ``h`` per leaf, the cheapest
  way XLA reads both arrays: the floor of pass (1);
* ``reduction``: pass (1) alone (the per-leaf changes, nothing written);
* ``phase_shift without history write``: (1) + (2), the state's history left as it was
  (wrong as an optimizer; only for timing);
* ``sgd + history write``: (2) + (3) with no reduction;
* ``phase_shift``: the whole step;
* ``phase_shift[donated grads]``: the whole step of ``grads_donated=True``, the
  gradients donated: the large leaves' history write (3) is gone.

Run ``python -m benchmarks.breakdown --sizes 10x10000000,1000x1000000``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from benchmarks import contenders
from benchmarks import report
from benchmarks import step_cost
from benchmarks import timing
from benchmarks import trees
from phaseshift_jax import selection

_phase_shift = contenders.BUILTIN["phase_shift"]


def without_history_write() -> optax.GradientTransformation:
  """PhaseShift whose returned state keeps the old history (for timing only)."""
  tx = _phase_shift()

  def update(updates, state, params=None):
    new_updates, new_state = tx.update(updates, state, params)
    return new_updates, new_state._replace(history=state.history)

  return optax.GradientTransformation(tx.init, update)


def sgd_with_history_write() -> optax.GradientTransformation:
  """SGD's updates with PhaseShift's state, whose history gets the gradients (no reduction)."""
  tx = _phase_shift()

  def update(updates, state, params=None):
    del params
    leaves = jax.tree.leaves(updates)
    groups = state.history.stacked_groups()
    stacked = {p for group in groups for p in group}
    # The history's arrays in its pytree order: the large leaves' own, then the stacks.
    new = ([g for p, g in enumerate(leaves) if p not in stacked]
           + [jnp.stack([leaves[p] for p in group]) for group in groups])
    old, treedef = jax.tree.flatten(state.history)
    history = treedef.unflatten([g.astype(h.dtype) for g, h in zip(new, old)])
    return jax.tree.map(lambda g: -contenders.LR * g, updates), state._replace(history=history)

  return optax.GradientTransformation(tx.init, update)


def _per_leaf_scalars(leaf_scalar: Callable[[jax.Array, jax.Array], jax.Array]
                      ) -> optax.GradientTransformation:
  """SGD's state and no update at all: ``leaf_scalar(g, h)`` of every leaf, returned in the state."""

  def init(params):
    return (jnp.zeros([], jnp.int32),
            jax.tree.map(jnp.zeros_like, params), jnp.zeros([len(jax.tree.leaves(params))]))

  def update(updates, state, params=None):
    del params
    count, prev, _ = state
    scalars = jnp.stack([leaf_scalar(g, h) for g, h in
                         zip(jax.tree.leaves(updates), jax.tree.leaves(prev))])
    return jax.tree.map(jnp.zeros_like, updates), (count, prev, scalars)

  return optax.GradientTransformation(init, update)


def reduction_only() -> optax.GradientTransformation:
  """Only the per-leaf changes ``max|g - h|`` (pass (1)), nothing written but a scalar per leaf."""
  return _per_leaf_scalars(selection.leaf_change)


def dot_only() -> optax.GradientTransformation:
  """Only ``vdot(g, h)`` per leaf: what reading ``g`` and ``h`` costs in XLA's tuned dot kernel.

  The yardstick for pass (1): any pass that reads both arrays costs at least
  about this much, whatever it computes.
  """
  return _per_leaf_scalars(lambda g, h: jnp.vdot(g, h).astype(jnp.float32))


PARTS: dict[str, Callable[[], optax.GradientTransformation]] = {
    "optax.sgd": contenders.BUILTIN["optax.sgd"],
    "read g and h (vdot)": dot_only,
    "reduction": reduction_only,
    "phase_shift without history write": without_history_write,
    "sgd + history write": sgd_with_history_write,
    "phase_shift": _phase_shift,
    "phase_shift[donated grads]": contenders.BUILTIN["phase_shift[donated grads]"],
}


def run(sizes, *, warmup: int = 5, steps: int = 30, log: Callable[[str], None] = print
        ) -> list[dict[str, Any]]:
  """The parts on each tree: median ms and the ratio to ``optax.sgd``."""
  cases = []
  for num_leaves, total in sizes:
    shapes = trees.synthetic_shapes(num_leaves, total)
    params = trees.random_tree(shapes, 0)
    grads = [trees.random_tree(shapes, seed) for seed in (1, 2)]
    runners = {name: step_cost.jax_runner(factory, params, grads,
                                          name in contenders.DONATES_GRADS)
               for name, factory in PARTS.items()}
    stats = timing.interleaved_medians(runners, warmup=warmup, steps=steps)
    sgd = stats["optax.sgd"]["median_s"]
    label = f"{num_leaves} leaves, {trees.count(shapes)[1] / 1e6:.1f}M"
    rows = {name: {"median_ms": s["median_s"] * 1e3, "vs_sgd": s["median_s"] / sgd}
            for name, s in stats.items()}
    cases.append({"label": label, "parts": rows})
    for name, row in rows.items():
      log(f"  {label}: {name:36s} {row['median_ms']:8.3f} ms  {row['vs_sgd']:5.2f}x sgd")
  return cases


def table(cases: list[dict[str, Any]]) -> str:
  rows = [[name] + [f"{c['parts'][name]['median_ms']:.3g} ms ({c['parts'][name]['vs_sgd']:.2f}x)"
                    for c in cases] for name in PARTS]
  return report.markdown_table(["part"] + [c["label"] for c in cases], rows)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=step_cost.parse_sizes,
                      default="10x10000000,100x10000000,1000x1000000",
                      help="comma-separated LEAVESxPARAMS")
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--warmup", type=int, default=5)
  args = parser.parse_args(argv)
  cases = run(args.sizes, warmup=args.warmup, steps=args.steps)
  print(table(cases))
  return cases


if __name__ == "__main__":
  main()
