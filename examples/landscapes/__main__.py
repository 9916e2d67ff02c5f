"""``python -m examples.landscapes --outdir DIR``: PNGs and a results table."""

from __future__ import annotations

import argparse
import pathlib

from examples.landscapes import objectives
from examples.landscapes import plot
from examples.landscapes import run


def main(argv: list[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      prog="python -m examples.landscapes", description=__doc__)
  parser.add_argument("--outdir", type=pathlib.Path, default=pathlib.Path("landscapes_out"),
                      help="where the PNGs and landscapes.md go (created if needed)")
  parser.add_argument("--seeds", type=int, default=64,
                      help="noise seeds per noisy landscape (default 64)")
  parser.add_argument("--seed", type=int, default=0, help="base random seed")
  args = parser.parse_args(argv)
  if args.seeds < 1:
    parser.error("--seeds must be >= 1")
  args.outdir.mkdir(parents=True, exist_ok=True)

  rows = []
  for landscape in objectives.LANDSCAPES.values():
    results = run.run_all(landscape, seeds=args.seeds, seed=args.seed)
    rows += [run.summary_row(landscape, name, paths) for name, paths in results.items()]
    png = plot.plot_landscape(landscape, results,
                              args.outdir / f"landscape_{landscape.name}.png")
    print(f"wrote {png}")
  table = run.markdown_table(rows)
  (args.outdir / "landscapes.md").write_text(table)
  print(table)
  print(f"wrote {args.outdir / 'landscapes.md'}")


if __name__ == "__main__":
  main()
