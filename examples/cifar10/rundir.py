"""A training run's directory: ``config.json``, ``metrics.jsonl`` and an orbax checkpoint per epoch.

Layout of ``WORKDIR``::

    config.json      the run's configuration (checked when the run is resumed)
    metrics.jsonl    one JSON object per finished epoch
    checkpoints/N/   orbax checkpoint after epoch N: model and optimizer state, and the
                     metrics of epochs 1..N (so a resumed run rewrites metrics.jsonl
                     from the checkpoint it continues from)
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import orbax.checkpoint as ocp

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


class RunError(Exception):
  """A run directory that cannot be used as asked (one-line message)."""


def holds_run(workdir: str | Path) -> bool:
  """Whether ``workdir`` has a run's metrics or checkpoints (without opening it)."""
  path = Path(workdir)
  checkpoints = path / CHECKPOINT_DIR
  return (path / METRICS_FILE).exists() or (checkpoints.is_dir() and any(checkpoints.iterdir()))


class RunDir:
  """Reads and writes one run directory (see the module docstring)."""

  def __init__(self, workdir: str | Path, keep: int | None = None, *, overwrite: bool = False):
    """Opens ``workdir`` (created if missing), keeping the ``keep`` latest checkpoints.

    ``overwrite`` first deletes a previous run's files (only those three entries).
    """
    self.path = Path(workdir)
    self.path.mkdir(parents=True, exist_ok=True)
    if overwrite:
      shutil.rmtree(self.path / CHECKPOINT_DIR, ignore_errors=True)
      for name in (METRICS_FILE, CONFIG_FILE):
        (self.path / name).unlink(missing_ok=True)
    self.manager = ocp.CheckpointManager(
        (self.path / CHECKPOINT_DIR).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=keep, create=True))

  def latest_epoch(self) -> int | None:
    return self.manager.latest_step()

  def has_run(self) -> bool:
    return self.latest_epoch() is not None or (self.path / METRICS_FILE).exists()

  def write_config(self, config: Mapping[str, Any]) -> None:
    (self.path / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")

  def check_config(self, config: Mapping[str, Any], may_change: Collection[str]) -> None:
    """Raises RunError if the saved config differs from ``config`` outside ``may_change``."""
    saved_file = self.path / CONFIG_FILE
    if not saved_file.exists():
      return
    saved = json.loads(saved_file.read_text())
    for key, value in json.loads(json.dumps(config)).items():  # Tuples read back as lists.
      if key not in may_change and saved.get(key) != value:
        raise RunError(f"{self.path} holds a run with {key}={saved.get(key)!r}, not {value!r}; "
                       "use another --workdir or --overwrite")

  def save(self, epoch: int, state: Any, history: list[dict[str, Any]]) -> None:
    """Checkpoints ``state`` (host arrays) after ``epoch``; appends its metrics line."""
    self.manager.save(epoch, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), history=ocp.args.JsonSave(history)))
    with open(self.path / METRICS_FILE, "a", encoding="utf-8") as f:
      f.write(json.dumps(history[-1]) + "\n")

  def restore(self, target: Any) -> tuple[Any, list[dict[str, Any]]]:
    """The latest checkpoint's state (in the layout of ``target``) and metrics history.

    Also rewrites metrics.jsonl to that history, dropping the lines of any epoch
    after the checkpoint.
    """
    restored = self.manager.restore(self.latest_epoch(), args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), history=ocp.args.JsonRestore()))
    history = list(restored["history"])
    self.write_history(history)
    return restored["state"], history

  def write_history(self, history: list[dict[str, Any]]) -> None:
    with open(self.path / METRICS_FILE, "w", encoding="utf-8") as f:
      f.writelines(json.dumps(m) + "\n" for m in history)

  def close(self) -> None:
    """Waits for the last checkpoint to be written."""
    self.manager.wait_until_finished()
    self.manager.close()
