"""Argument checks and chaining shared by the compat optimizer families."""

from __future__ import annotations

import optax


def check_non_negative(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is a schedule or a number >= 0."""
  if not callable(value) and not value >= 0:
    raise ValueError(f"{name} must be >= 0, got {value!r}")


def check_unit_interval(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``0 <= value < 1``."""
  if not 0 <= value < 1:
    raise ValueError(f"{name} must be in [0, 1), got {value!r}")


def check_positive_int(name: str, value) -> None:
  """Raise ``ValueError`` naming ``name`` unless ``value`` is an integer >= 1."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


def chain(*transforms) -> optax.GradientTransformationExtraArgs:
  """``optax.chain`` of the given transforms, skipping ``None`` (a switched-off piece)."""
  return optax.chain(*(t for t in transforms if t is not None))
