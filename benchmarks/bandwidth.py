"""Copy bandwidth of the device: the yardstick for "fraction of the memory-bandwidth limit".

An elementwise pass over ``n`` float32 values reads and writes ``8 n`` bytes. This
times such a pass four ways, on the default JAX device:

* ``jax_in_place``: jitted ``x + 1`` with ``x`` donated, so the output overwrites
  the input (what a donated optimizer step does);
* ``jax_fresh``: the same without donation, so every call writes a fresh buffer
  (on CPU the first touch of new pages costs page faults);
* ``numpy_in_place`` (CPU only): ``np.add(x, 1, out=x)``;
* ``torch_in_place`` (on the CPU, or on the GPU where torch has CUDA): ``x.add_(1)``.

The limit is the fastest in-place figure. A step's yardstick (:func:`step_limit`)
is that of an array of the step's size on the CPU; on an accelerator it is that
of a 1 GiB array, past every cache: the device memory's (HBM's) copy bandwidth.
Run ``python -m benchmarks.bandwidth``.
"""

from __future__ import annotations

import argparse
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import timing


# Module-level, so a size measured again (one call per benchmark case) is not compiled again.
_in_place = jax.jit(lambda x: x + 1, donate_argnums=0)
_fresh = jax.jit(lambda x: x + 1)


def _rate(num_bytes: int, stats: dict[str, float]) -> float:
  return num_bytes / stats["median_s"] / 1e9


def _jax_rates(num_elements: int, warmup: int, steps: int) -> dict[str, float]:
  """``jax_in_place`` and ``jax_fresh`` (its arrays are freed when it returns)."""
  num_bytes = 8 * num_elements
  box = [jnp.zeros((num_elements,), jnp.float32)]

  def donated(_):
    def thunk():
      box[0] = _in_place(box[0])
      box[0].block_until_ready()
    return thunk

  x = jnp.zeros((num_elements,), jnp.float32)
  return {
      "jax_in_place": _rate(num_bytes, timing.median_seconds(donated, warmup=warmup,
                                                             steps=steps)),
      "jax_fresh": _rate(num_bytes, timing.median_seconds(
          lambda _: lambda: _fresh(x).block_until_ready(), warmup=warmup, steps=steps)),
  }


def _torch_rate(num_elements: int, warmup: int, steps: int) -> float | None:
  """``torch_in_place`` on torch's device for JAX's backend; None without one (or torch)."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
    from benchmarks import torch_contenders  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  device = torch_contenders.device_for(jax.default_backend())
  if device is None:
    return None
  t = torch.zeros(num_elements, dtype=torch.float32, device=device)
  one_pass = torch_contenders.waiting(functools.partial(t.add_, 1), device)
  return _rate(8 * num_elements, timing.median_seconds(lambda _: one_pass, warmup=warmup,
                                                       steps=steps))


def copy_bandwidth(num_elements: int, *, warmup: int = 3, steps: int = 20) -> dict[str, Any]:
  """GB/s of an elementwise pass over ``num_elements`` float32 values, four ways (see module doc)."""
  num_bytes = 8 * num_elements
  rates = _jax_rates(num_elements, warmup, steps)
  if jax.default_backend() == "cpu":
    a = np.zeros(num_elements, np.float32)
    rates["numpy_in_place"] = _rate(num_bytes, timing.median_seconds(
        lambda _: functools.partial(np.add, a, 1, out=a), warmup=warmup, steps=steps))
  torch_rate = _torch_rate(num_elements, warmup, steps)
  if torch_rate is not None:
    rates["torch_in_place"] = torch_rate
  limit = max(v for k, v in rates.items() if k.endswith("in_place"))
  return {"elements": num_elements, "bytes_per_pass": num_bytes, "gbps": rates,
          "limit_gbps": limit}


DEVICE_MEMORY_ELEMENTS = 2**28  # 1 GiB of float32: larger than any accelerator's cache


@functools.cache
def _device_memory_bandwidth() -> dict[str, Any]:
  return copy_bandwidth(DEVICE_MEMORY_ELEMENTS)


def step_limit(num_elements: int) -> dict[str, Any]:
  """:func:`copy_bandwidth` of ``num_elements``; on an accelerator, ``limit_gbps`` is HBM's.

  There ``"limit"`` says ``"device memory"`` and ``"device_memory"`` holds the
  measurement of the 1 GiB array; on the CPU ``"limit"`` is ``"same size"``.
  """
  result = copy_bandwidth(num_elements)
  if jax.default_backend() == "cpu":
    return {**result, "limit": "same size"}
  memory = _device_memory_bandwidth()
  return {**result, "limit": "device memory", "device_memory": memory,
          "limit_gbps": memory["limit_gbps"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--elements", type=int, nargs="+", default=[1_000_000, 10_000_000],
                      help="array sizes (float32 elements)")
  parser.add_argument("--steps", type=int, default=20)
  args = parser.parse_args(argv)
  result = {"environment": timing.environment(),
            "bandwidth": [copy_bandwidth(n, steps=args.steps) for n in args.elements]}
  for row in result["bandwidth"]:
    rates = ", ".join(f"{k} {v:.1f}" for k, v in row["gbps"].items())
    print(f"{row['elements']:>11,} float32: {rates} GB/s -> limit {row['limit_gbps']:.1f} GB/s")
  return result


if __name__ == "__main__":
  main()
