"""What ``compat.torch.muon``'s two Newton-Schulz kernels cost, against ``torch.optim.Muon``.

One Muon step on one float32 matrix per size: ``ns_kernels="xla"`` (XLA's bfloat16 matmuls with
float32 accumulation), ``ns_kernels="torch_cpu"`` (torch's CPU kernels emulated rounding for
rounding, ``phaseshift_jax/compat/torch/_torch_cpu_bf16.py``) and torch's own ``Muon.step``,
interleaved, params and state donated. Beside the times: the fraction of the orthogonalised
direction's elements on which each of our kernels gives torch's bfloat16 value (one call of the
iteration on the same matrix), since bit-equality with torch is what the emulation is for.
Run ``python -m benchmarks.muon --sizes 64x128,256x256,1024x1024``.
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import contenders
from benchmarks import timing
from phaseshift_jax.compat import torch as compat_torch
from phaseshift_jax.compat.torch._muon import NS_COEFFICIENTS, NS_KERNELS, newton_schulz

SIZES = ((64, 128), (256, 256), (512, 1024), (1024, 1024))


def _parse_sizes(text: str) -> list[tuple[int, int]]:
  return [tuple(int(v) for v in item.split("x")) for item in text.split(",") if item]


def agreement_with_torch(shape: tuple[int, int], seed: int = 0) -> dict[str, float]:
  """Per kernel: the fraction of ``newton_schulz``'s elements equal to torch's, one call."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch.optim._muon import _zeropower_via_newtonschulz  # pylint: disable=import-outside-toplevel

  g = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
  expected = _zeropower_via_newtonschulz(torch.tensor(g), NS_COEFFICIENTS, 5, 1e-7)
  expected = expected.float().numpy()
  return {kernels: float(np.mean(np.asarray(
      newton_schulz(jnp.asarray(g), kernels=kernels).astype(jnp.float32)) == expected))
          for kernels in NS_KERNELS}


def run(sizes, *, steps: int, warmup: int, log=print) -> dict:
  import torch  # pylint: disable=import-outside-toplevel

  cases = []
  for shape in sizes:
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]
    runners = {}
    for kernels in NS_KERNELS:
      tx = compat_torch.muon(lr=0.02, ns_kernels=kernels)
      step = contenders.make_step(tx)
      params = jnp.asarray(rng.standard_normal(shape), jnp.float32)
      box = {"params": params, "state": tx.init(params)}
      device_grads = [jnp.asarray(g) for g in grads]

      def runner(i, step=step, box=box, device_grads=device_grads):
        def thunk():
          box["params"], box["state"] = step(box["params"], box["state"], device_grads[i % 4])
          jax.block_until_ready(box["params"])
        return thunk

      runners[f"compat.torch.muon(ns_kernels={kernels!r})"] = runner
    weight = torch.nn.Parameter(torch.tensor(rng.standard_normal(shape), dtype=torch.float32))
    optimizer = torch.optim.Muon([weight], lr=0.02)
    torch_grads = [torch.tensor(g) for g in grads]

    def torch_runner(i, weight=weight, optimizer=optimizer, torch_grads=torch_grads):
      def thunk():
        weight.grad = torch_grads[i % 4]
        optimizer.step()
      return thunk

    runners["torch.optim.Muon"] = torch_runner
    results = timing.interleaved_medians(runners, warmup=warmup, steps=steps)
    case = {"shape": list(shape), "results": results, "equal_to_torch": agreement_with_torch(shape)}
    cases.append(case)
    fastest = results["compat.torch.muon(ns_kernels='xla')"]["median_s"]
    log(f"{shape[0]} x {shape[1]}: " + ", ".join(
        f"{name} {row['median_s'] * 1e3:.2f} ms ({row['median_s'] / fastest:.1f}x xla)"
        for name, row in results.items())
        + "; equal to torch: " + ", ".join(f"{k} {v:.1%}" for k, v in case["equal_to_torch"].items()))
  return {"environment": timing.environment(), "cases": cases}


def table(results: dict) -> str:
  """The results as a markdown table: median ms per step, ratio to ``ns_kernels="xla"``, and the
  fraction of elements equal to torch's."""
  env = results["environment"]
  lines = [f"## Muon step: {env['device']['cpu'] or env['device']['kind']}, {env['date']}", "",
           f"Load average at the start: {' / '.join(f'{v:.2f}' for v in env['load_average'] or [])}.",
           "", "| matrix | " + " | ".join(results["cases"][0]["results"]) + " | equal to torch's "
           "bfloat16 (torch_cpu / xla) |", "|---" * (len(results["cases"][0]["results"]) + 2) + "|"]
  for case in results["cases"]:
    rows = case["results"]
    xla = rows["compat.torch.muon(ns_kernels='xla')"]["median_s"]
    cells = [f"{row['median_s'] * 1e3:.2f} ms ({row['median_s'] / xla:.1f}x)" for row in rows.values()]
    equal = case["equal_to_torch"]
    lines.append(f"| {case['shape'][0]} x {case['shape'][1]} | " + " | ".join(cells)
                 + f" | {equal['torch_cpu']:.1%} / {equal['xla']:.1%} |")
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--sizes", type=_parse_sizes, default=list(SIZES))
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--out", default=None, help="write the results as JSON here")
  args = parser.parse_args(argv)
  results = run(args.sizes, steps=args.steps, warmup=args.warmup)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      json.dump(results, f, indent=1)
    with open(args.out.removesuffix(".json") + ".md", "w", encoding="utf-8") as f:
      f.write(table(results))


if __name__ == "__main__":
  main()
