"""``python -m examples.singular_fit --outdir DIR``: fits, loss curves and a table."""

from __future__ import annotations

import argparse
import pathlib

from examples.singular_fit import plot
from examples.singular_fit import run


def main(argv: list[str] | None = None) -> dict[str, run.Fit]:
  """Runs the demo, writes its outputs and returns the fits (for tests)."""
  parser = argparse.ArgumentParser(
      prog="python -m examples.singular_fit", description=__doc__)
  parser.add_argument("--outdir", type=pathlib.Path, default=pathlib.Path("singular_fit_out"),
                      help="where singular_fit.png and singular_fit.md go (created if needed)")
  parser.add_argument("--steps", type=int, default=run.STEPS,
                      help=f"training steps per optimizer (default {run.STEPS})")
  parser.add_argument("--seeds", type=int, default=4,
                      help="MLP initialisations, trained side by side (default 4)")
  parser.add_argument("--seed", type=int, default=0, help="base random seed")
  args = parser.parse_args(argv)
  if args.steps < 1 or args.seeds < 1:
    parser.error("--steps and --seeds must be >= 1")
  args.outdir.mkdir(parents=True, exist_ok=True)

  fits = run.train_all(seeds=args.seeds, seed=args.seed, steps=args.steps)
  png = plot.plot_fits(fits, args.outdir / "singular_fit.png")
  print(f"wrote {png}")
  table = run.markdown_table(fits, args.steps)
  (args.outdir / "singular_fit.md").write_text(table)
  print(table)
  print(f"wrote {args.outdir / 'singular_fit.md'}")
  return fits


if __name__ == "__main__":
  main()
