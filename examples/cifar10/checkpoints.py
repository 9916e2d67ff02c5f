"""A run directory: ``config.json``, ``metrics.jsonl`` and an orbax checkpoint per epoch.

``checkpoints/N/`` holds the model and optimizer state after epoch N and the metrics of
epochs 1..N. A checkpoint is written synchronously, and the epoch's line is appended to
``metrics.jsonl`` only once it is committed: a kill at any moment leaves a run that resumes.

With several processes the directory must be one they all see (a shared filesystem): every
process opens it, saves and restores the checkpoints together (orbax coordinates them), and
process 0 alone writes ``config.json`` and ``metrics.jsonl``. They check the directory and
try each checkpoint together too, so they all take the same decision.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from examples.cifar10 import distributed
from examples.cifar10.configs import default

CONFIG_FILE, METRICS_FILE, CHECKPOINT_DIR = "config.json", "metrics.jsonl", "checkpoints"


class RunError(Exception):
  """A run directory that cannot be used as asked (a one-line message)."""


def finite(value: Any) -> Any:
  """``value`` with non-finite floats as None: strict JSON has no NaN."""
  if isinstance(value, dict):
    return {k: finite(v) for k, v in value.items()}
  if isinstance(value, list):
    return [finite(v) for v in value]
  return None if isinstance(value, float) and not math.isfinite(value) else value


def holds_run(workdir: str | Path) -> bool:
  """Whether ``workdir`` holds a run's metrics or checkpoints."""
  path = Path(workdir)
  return (path / METRICS_FILE).is_file() or any((path / CHECKPOINT_DIR).glob("*"))


class RunDir:
  """Opens ``workdir`` for ``config``: a new run, or (``resume``) the one it holds."""

  def __init__(self, workdir: str | Path, config: default.Config, *, resume: bool = False,
               overwrite: bool = False, may_change: Collection[str] = ()):
    self.path = Path(workdir)
    self.primary = jax.process_index() == 0  # Writes config.json and metrics.jsonl.
    error = None
    try:  # Every process checks; none changes anything before all agree.
      self._check(config, resume, overwrite, may_change)
    except RunError as e:
      error = e
    distributed.raise_if_any(error)
    if self.primary:
      if overwrite:  # config.json is rewritten below.
        shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)
        (self.path / METRICS_FILE).unlink(missing_ok=True)
      (self.path / CONFIG_FILE).write_text(json.dumps(dataclasses.asdict(config), indent=2)
                                           + "\n")
    distributed.sync("RunDir opened")
    self.good: int | None = None  # The epoch of the newest checkpoint known to restore.
    self.manager = ocp.CheckpointManager(
        (self.path / CHECKPOINT_DIR).absolute(), options=ocp.CheckpointManagerOptions(
            max_to_keep=config.keep_checkpoints, create=True, enable_async_checkpointing=False))

  def _check(self, config: default.Config, resume: bool, overwrite: bool,
             may_change: Collection[str]) -> None:
    try:
      self.path.mkdir(parents=True, exist_ok=True)
      tempfile.TemporaryFile(dir=self.path).close()
    except OSError as e:
      raise RunError(f"cannot use {self.path} as a run directory: {e.strerror or e}") from e
    if not overwrite and holds_run(self.path) and not resume:
      raise RunError(f"{self.path} already holds a run; pass --resume to continue it or "
                     "--overwrite to start over")
    saved = self.path / CONFIG_FILE
    if resume and not overwrite and saved.exists():
      saved_config = json.loads(saved.read_text())
      for key, value in json.loads(json.dumps(dataclasses.asdict(config))).items():
        if key not in may_change and saved_config.get(key) != value:
          raise RunError(f"{self.path} holds a run with {key}={saved_config.get(key)!r}, not "
                         f"{value!r}; use another --workdir or --overwrite")

  def restore(self, target: Any, log: Callable[[str], None]
              ) -> tuple[Any, list[dict[str, Any]]]:
    """The newest checkpoint that restores (state in the layout of ``target``) and its
    metrics, which metrics.jsonl is rewritten to; ``(target, [])`` if none does. One that
    fails (a truncated or missing file) is skipped, saying why, and replaced when its epoch
    is trained again. With several processes, one that fails on any process is skipped by
    all."""
    for epoch in sorted(self.manager.all_steps(), reverse=True):
      reason = ""
      try:
        restored = self.manager.restore(epoch, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), history=ocp.args.JsonRestore()))
      except Exception as e:  # pylint: disable=broad-except  # Whatever orbax raises.
        reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[0][:200]}"
      reasons = distributed.allgather_text(reason)
      if failed := [(p, r) for p, r in enumerate(reasons) if r]:
        process, reason = failed[0]
        where = f"process {process}: " if len(reasons) > 1 else ""
        log(f"skipped checkpoint {self.path / CHECKPOINT_DIR / str(epoch)}: {where}{reason}")
        continue
      self.good = epoch
      self._write_metrics(restored["history"])
      return restored["state"], list(restored["history"])
    self._write_metrics([])
    return target, []

  def save(self, epoch: int, state: Any, history: list[dict[str, Any]]) -> None:
    """Checkpoints ``state`` (host arrays) after ``epoch``, then appends its metrics line."""
    if epoch in self.manager.all_steps():  # A checkpoint that failed to restore.
      self.manager.delete(epoch)
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(finite(history))))
    self.manager.wait_until_finished()
    self.good = epoch
    if self.primary:
      with open(self.path / METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(finite(history[-1]), allow_nan=False) + "\n")

  def last_checkpoint(self) -> str:
    return "none" if self.good is None else str(self.path / CHECKPOINT_DIR / str(self.good))

  def _write_metrics(self, history: list[dict[str, Any]]) -> None:
    if not self.primary:
      return
    with open(self.path / METRICS_FILE, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(finite(m), allow_nan=False) + "\n" for m in history)

  def close(self) -> None:
    self.manager.close()
