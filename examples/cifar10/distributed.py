"""Several processes, one run: ``jax.distributed`` set up from the config, and agreement.

Each process of a run calls :func:`initialize` before JAX does anything else, with the
coordinator's address (process 0's ``host:port``), the process count and its own id, or
with none of them under a cluster manager JAX knows (SLURM, Open MPI, ...): then
``jax.distributed.initialize()`` detects them itself. From there ``jax.devices()`` lists
every process's devices and one mesh spans them all (``train.make_mesh``).

The processes must take the same decisions, or one of them waits forever in a collective
for the others: :func:`raise_if_any` turns an error of one process (a missing data file, a
checkpoint that does not restore) into an error of all, and :func:`check_agreement`
stops them all with one line when their configs differ. Both gather over JAX's own
collectives (``jax.experimental.multihost_utils``), so with one process they cost nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from examples.cifar10.configs import default

# Settings that may differ between the processes of one run (a host's own paths and screen).
PER_PROCESS = ("process_id", "cpu_devices", "progress", "data_dir", "cache_dir", "download")


class DistributedError(Exception):
  """The processes could not be joined, or disagree (a one-line message)."""


def wanted(config: default.Config) -> bool:
  """Whether ``config`` asks for several processes: ``distributed`` or any of the three
  coordinates set."""
  return bool(config.distributed or config.coordinator_address is not None
              or config.num_processes is not None or config.process_id is not None)


def _host_port(address: str) -> tuple[str, int]:
  host, colon, port = address.rpartition(":")
  if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
    raise ValueError(f"coordinator_address must be HOST:PORT, got {address!r}")
  return host.strip("[]"), int(port)  # [::1]:1234 is IPv6.


def wait_for_coordinator(address: str, timeout: float) -> None:
  """Returns once ``address`` accepts TCP connections; raises DistributedError after
  ``timeout`` seconds (JAX itself would abort the process with a stack trace)."""
  host, port = _host_port(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=max(0.1, min(
          2.0, deadline - time.monotonic()))):
        return
    except socket.gaierror as e:
      raise DistributedError(f"cannot resolve the coordinator host {host!r}: {e.strerror}"
                             ) from e
    except OSError as e:
      if time.monotonic() >= deadline:
        raise DistributedError(
            f"no coordinator at {address} after {timeout:g} s ({e.strerror or e}); start "
            "process 0 there, or check --coordinator-address and --initialization-timeout"
        ) from e
      time.sleep(0.2)


def initialize(config: default.Config) -> None:
  """Sets the CPU device count (``cpu_devices``) and, when :func:`wanted`, joins the run's
  other processes with ``jax.distributed.initialize``. Call it before any other JAX call.

  On CPU the processes talk over gloo (``jax_cpu_collectives_implementation``). A process
  other than 0 first waits up to ``initialization_timeout`` seconds for the coordinator to
  accept connections, so a wrong or dead address is a one-line error, not JAX's abort.

  Raises:
    ValueError: a bad setting (a process id outside ``0..num_processes-1``, ...).
    DistributedError: no coordinator, or JAX refused to initialize.
  """
  for name in ("num_processes", "cpu_devices", "initialization_timeout"):
    if (value := getattr(config, name)) is not None and value < 1:
      raise ValueError(f"{name} must be >= 1, got {value}")
  if config.process_id is not None and not (
      0 <= config.process_id < (config.num_processes or config.process_id + 1)):
    raise ValueError(f"process_id must be in 0..num_processes-1 = 0..{config.num_processes - 1}"
                     f", got {config.process_id}" if config.num_processes else
                     f"process_id must be >= 0, got {config.process_id}")
  if config.coordinator_address is not None:
    _host_port(config.coordinator_address)
  try:
    if config.cpu_devices is not None:
      jax.config.update("jax_num_cpu_devices", config.cpu_devices)
    if not wanted(config):
      return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  except RuntimeError as e:  # JAX had already started its backend.
    raise DistributedError(f"initialize before any other JAX call ({e})") from e
  address = config.coordinator_address or os.environ.get("JAX_COORDINATOR_ADDRESS")
  if address and config.process_id not in (None, 0):
    wait_for_coordinator(address, config.initialization_timeout)
  try:
    jax.distributed.initialize(config.coordinator_address, config.num_processes,
                               config.process_id,
                               initialization_timeout=config.initialization_timeout)
  except (ValueError, TypeError, RuntimeError) as e:  # What JAX could not find or accept.
    raise DistributedError(
        f"jax.distributed.initialize: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        " (give --coordinator-address, --num-processes and --process-id, or run under a "
        "cluster manager JAX detects, e.g. srun)") from e


def is_primary() -> bool:
  """Whether this is process 0, the one that writes logs, metrics and plots."""
  return jax.process_index() == 0


def _allgather_bytes(data: bytes) -> list[bytes]:
  """``data`` of every process, in process order (a collective: every process calls it)."""
  if jax.process_count() == 1:
    return [data]
  lengths = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int32)))
  buffer = np.zeros(max(1, int(lengths.max())), np.uint8)
  buffer[:len(data)] = np.frombuffer(data, np.uint8)
  gathered = np.asarray(multihost_utils.process_allgather(buffer))
  return [bytes(row[:n]) for row, n in zip(gathered, lengths.ravel(), strict=True)]


def allgather_text(text: str) -> list[str]:
  """``text`` of every process, in process order (a collective)."""
  return [b.decode() for b in _allgather_bytes(text.encode())]


def raise_if_any(error: BaseException | None) -> None:
  """Raises on every process when any process had ``error``: a process its own error, the
  others a DistributedError naming the first process that failed and why (a collective)."""
  texts = allgather_text("" if error is None else f"{type(error).__name__}: {error}")
  if error is not None:
    raise error
  for process, text in enumerate(texts):
    if text:
      raise DistributedError(f"process {process} failed: {text}")


def sync(name: str) -> None:
  """Every process waits here until all have arrived."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


def _shared(config: default.Config) -> dict[str, Any]:
  return {k: v for k, v in json.loads(json.dumps(dataclasses.asdict(config))).items()
          if k not in PER_PROCESS}


def differences(configs: Sequence[dict[str, Any]]) -> str:
  """``"process 1 has learning_rate=0.01 where process 0 has 0.001; ..."``, or ``""``."""
  found = []
  for process, config in enumerate(configs[1:], 1):
    for key in sorted(set(config) | set(configs[0])):
      if config.get(key) != configs[0].get(key):
        found.append(f"process {process} has {key}={config.get(key)!r} where process 0 has "
                     f"{configs[0].get(key)!r}")
  return "; ".join(found)


def check_agreement(config: default.Config) -> None:
  """Raises DistributedError on every process when their configs differ in more than
  :data:`PER_PROCESS` (a collective)."""
  if jax.process_count() == 1:
    return
  mine = json.dumps(_shared(config), sort_keys=True)
  digests = allgather_text(hashlib.sha256(mine.encode()).hexdigest())
  if len(set(digests)) > 1:
    text = differences([json.loads(t) for t in allgather_text(mine)])
    raise DistributedError(f"the {len(digests)} processes were given different configs: {text}")


def check_same_data(splits: Iterable[tuple[str, Any]]) -> None:
  """Raises DistributedError on every process when they loaded different images or labels
  (``splits``: ``(name, Split)`` pairs; a collective)."""
  if jax.process_count() == 1:
    return
  digest = hashlib.sha256()
  for name, split in splits:
    digest.update(name.encode())
    digest.update(np.ascontiguousarray(split.images).data)
    digest.update(np.ascontiguousarray(split.labels).data)
  digests = allgather_text(digest.hexdigest())
  if differ := [p for p, d in enumerate(digests) if d != digests[0]]:
    raise DistributedError(f"process(es) {', '.join(map(str, differ))} loaded other images "
                           "than process 0 (check --data-dir on every host)")
