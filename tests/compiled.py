"""Reading a compiled XLA program's text in tests: what it materializes."""

import re

import numpy as np


def large_intermediates(compiled_text: str, min_elements: int) -> list[str]:
  """Instructions of a compiled program's entry that materialize ``min_elements`` or more
  values without being an output (parameters, bitcasts and tuple plumbing aside)."""
  entry = compiled_text[compiled_text.index("\nENTRY"):].splitlines()[1:]
  root = next(line for line in entry if line.strip().startswith("ROOT"))
  name, value = root.strip()[len("ROOT "):].split(" = ", 1)
  outputs = set(re.findall(r"%[\w.\-]+", value)) if " tuple(" in value else {name}
  found = []
  for line in entry:
    match = re.match(r"\s*(?:ROOT )?(%[\w.\-]+) = [a-z0-9]+\[([0-9,]*)\]\S* ([\w\-]+)\(", line)
    if not match or match.group(3) in ("parameter", "bitcast", "get-tuple-element", "tuple"):
      continue
    size = int(np.prod([int(d) for d in match.group(2).split(",") if d]))
    if size >= min_elements and match.group(1) not in outputs:
      found.append(line.strip()[:160])
  return found


def copies_of_shapes(compiled_text: str, shapes: set[tuple[int, ...]]) -> list[str]:
  """The f32 ``copy`` instructions of a compiled program whose result has one of ``shapes``."""
  wanted = {",".join(map(str, shape)) for shape in shapes}
  return [line.strip() for line in compiled_text.splitlines()
          if (match := re.search(r"= f32\[([0-9,]+)\]\{[0-9,]*\} copy\(", line))
          and match.group(1) in wanted]
