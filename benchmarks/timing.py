"""Timing helpers: the median of many timed calls after warm-up, and the run's environment."""

from __future__ import annotations

import datetime
import gc
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from importlib import metadata
from typing import Any

import jax


def _stats(times: list[float]) -> dict[str, float]:
  q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else [times[0]] * 9
  return {"median_s": statistics.median(times), "p10_s": q[0], "p90_s": q[-1],
          "steps": len(times)}


def interleaved_medians(runners: dict[str, Callable[[int], Callable[[], Any]]], *,
                        warmup: int, steps: int) -> dict[str, dict[str, float]]:
  """Times every runner ``steps`` times, in rounds, after ``warmup`` untimed rounds.

  ``runner(i)`` prepares call ``i`` (untimed: fresh gradients and the like) and
  returns a thunk; only the thunk is timed, and it must block until its work is
  done. Each round calls every runner once, so a change in the machine's load
  during the run affects all of them alike, and the order is shuffled from round
  to round (seeded), so no runner always follows the same one (whose data fill the
  caches, or whose framework's threads still spin: OpenMP threads busy-wait a
  while after torch's parallel loops). Garbage collection is off while timing.

  Returns:
    name -> ``{"median_s", "p10_s", "p90_s", "steps"}``.
  """
  times: dict[str, list[float]] = {name: [] for name in runners}
  gc_was_enabled = gc.isenabled()
  gc.collect()
  gc.disable()
  try:
    names = list(runners)
    shuffle = random.Random(0).shuffle
    for i in range(warmup + steps):
      shuffle(names)
      for name in names:
        thunk = runners[name](i)
        t0 = time.perf_counter()
        thunk()
        elapsed = time.perf_counter() - t0
        if i >= warmup:
          times[name].append(elapsed)
  finally:
    if gc_was_enabled:
      gc.enable()
  return {name: _stats(t) for name, t in times.items()}


def median_seconds(run_once: Callable[[int], Callable[[], Any]], *, warmup: int,
                   steps: int) -> dict[str, float]:
  """:func:`interleaved_medians` of a single runner."""
  return interleaved_medians({"": run_once}, warmup=warmup, steps=steps)[""]


def _cpu_name() -> str:
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def load_average() -> list[float] | None:
  """The 1, 5 and 15 minute load averages (None where the OS has none)."""
  return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def environment() -> dict[str, Any]:
  """Device, versions, date and machine load: what a results file must record."""
  device = jax.devices()[0]
  return {
      "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      "device": {"platform": device.platform, "kind": device.device_kind,
                 "count": jax.device_count(), "cpu": _cpu_name(),
                 "cpu_count": os.cpu_count()},
      "versions": {name: _version(name) for name in (
          "jax", "jaxlib", "optax", "flax", "torch", "numpy", "phaseshift_jax")}
                  | {"python": platform.python_version()},
      "load_average": load_average(),
  }
