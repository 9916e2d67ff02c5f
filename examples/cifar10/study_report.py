"""The report of a finished study: summaries, the test number of the best trials, tables, plots.

:func:`summarize` counts a study's trials and takes its best one, the mean and
std of its top trials and its times; :func:`final_test` trains the best trial's
configuration once more and evaluates it on the test set (the only use of the
test set); :func:`write_report` writes ``results.md`` (:func:`results_table`),
``results.json``, ``best_params.json``, ``history.png`` and
``importances_<optimizer>.png`` (:func:`write_plots`), each atomically, so that
workers finishing at once never leave a half-written file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from examples.cifar10 import input_pipeline
from examples.cifar10 import study_space
from examples.cifar10 import study_storage
from examples.cifar10 import train


def summarize(study: optuna.Study, top: int) -> dict[str, Any]:
  """Counts, best trial, mean and std of the top trials' accuracy, and times."""
  trials = study.get_trials(deepcopy=False)
  complete = sorted((t for t in trials if t.state == TrialState.COMPLETE),
                    key=lambda t: -t.value)
  finished = [t for t in trials if t.state in study_storage.FINISHED]
  values = np.array([t.value for t in complete[:top]], float)
  starts = [t.datetime_start for t in finished if t.datetime_start]
  ends = [t.datetime_complete for t in finished if t.datetime_complete]
  durations = [t.duration.total_seconds() for t in finished if t.duration]
  span = (max(ends) - min(starts)).total_seconds() if starts and ends else math.nan
  summary = {
      "study": study.study_name, "optimizer": study.user_attrs.get("optimizer"),
      "complete": len(complete),
      "pruned": sum(t.state == TrialState.PRUNED for t in trials),
      "failed": sum(t.state == TrialState.FAIL for t in trials),
      "top": len(values),
      "top_mean": float(values.mean()) if len(values) else math.nan,
      "top_std": float(values.std(ddof=1)) if len(values) > 1 else math.nan,
      "study_seconds": span, "trial_seconds": float(sum(durations)),
      "seconds_per_trial": span / len(finished) if finished else math.nan,
      "best": None,
  }
  if complete:
    best = complete[0]
    summary["best"] = {"trial": best.number, "val_accuracy": best.value,
                       "params": dict(best.params), "seed": best.user_attrs["seed"]}
  return summary


def final_test(study: optuna.Study, summary: dict[str, Any], settings: study_space.Settings,
               data: tuple[input_pipeline.Split, input_pipeline.Split],
               log: Callable[[str], None]) -> dict[str, Any] | None:
  """Trains the best trial's configuration again and evaluates it on the test set (cached)."""
  best = summary["best"]
  if best is None:
    return None
  cached = study.user_attrs.get("final_test")
  if cached and cached.get("trial") == best["trial"]:
    return cached
  config = settings.config(summary["optimizer"], best["params"], best["seed"])
  history = train.train_and_evaluate(config, data, log=None)
  result = {"trial": best["trial"], "test_accuracy": history[-1]["test_accuracy"],
            "test_loss": history[-1]["test_loss"]}
  study.set_user_attr("final_test", result)
  log(f"{study.study_name}: best trial {best['trial']} on the test set: "
      f"{result['test_accuracy']:.2%}")
  return result


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return "-"
  return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds:.0f} s"


def results_table(summaries: Sequence[dict[str, Any]]) -> str:
  """The markdown table of a study's results, one row per optimizer."""
  lines = ["| optimizer | trials (complete / pruned) | best val acc | top-k val acc, mean ± std "
           "| test acc (best) | study time | time per trial |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
  for s in summaries:
    best, test = s["best"], s.get("final_test")
    if not s["top"]:
      mean = "-"
    elif s["top"] == 1:
      mean = f"{s['top_mean']:.2%} (k=1)"
    else:
      mean = f"{s['top_mean']:.2%} ± {s['top_std']:.2%} (k={s['top']})"
    cells = [s["optimizer"], f"{s['complete'] + s['pruned']} ({s['complete']} / {s['pruned']})",
             f"{best['val_accuracy']:.2%}" if best else "-", mean,
             f"{test['test_accuracy']:.2%}" if test else "-",
             _duration(s["study_seconds"]), _duration(s["seconds_per_trial"])]
    lines.append("| " + " | ".join(cells) + " |")
  lines += ["", "| optimizer | best trial | hyperparameters |", "| --- | --- | --- |"]
  for s in summaries:
    if s["best"]:
      params = ", ".join(f"{k}={v:.4g}" for k, v in s["best"]["params"].items())
      lines.append(f"| {s['optimizer']} | {s['best']['trial']} | {params} |")
  return "\n".join(lines) + "\n"


def _finite(value: Any) -> Any:
  """``value`` with NaN floats replaced by None (strict JSON has no NaN)."""
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, list):
    return [_finite(v) for v in value]
  return None if isinstance(value, float) and not math.isfinite(value) else value


@contextlib.contextmanager
def _atomic(path: Path) -> Iterator[Path]:
  """A temporary path to write; renamed to ``path`` at the end, so that concurrent workers
  never leave a half-written file."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  yield tmp
  os.replace(tmp, path)


def _write(path: Path, text: str) -> None:
  with _atomic(path) as tmp:
    tmp.write_text(text, encoding="utf-8")


def write_plots(studies: Sequence[optuna.Study], workdir: Path) -> dict[str, str]:
  """history.png of all studies and importances_<optimizer>.png; returns what was skipped."""
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  from optuna.visualization import matplotlib as vis  # pylint: disable=import-outside-toplevel

  skipped: dict[str, str] = {}
  jobs = [("history.png", "optimization history (objective: validation accuracy)",
           lambda: vis.plot_optimization_history(list(studies)))]
  jobs += [(f"importances_{s.user_attrs['optimizer']}.png",
            f"hyperparameter importances: {s.user_attrs['optimizer']}",
            lambda s=s: vis.plot_param_importances(s)) for s in studies]
  for name, title, plot in jobs:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
      try:
        axes = np.ravel(plot())[0]
      except (ValueError, RuntimeError) as e:  # e.g. importances need two complete trials.
        skipped[name] = str(e)
        continue
    figure = axes.figure
    for loc in ("left", "center", "right"):  # Optuna's own titles.
      axes.set_title("", loc=loc)
    figure.suptitle(title)
    figure.set_size_inches(10, 5)
    figure.tight_layout()
    with _atomic(workdir / name) as tmp:
      figure.savefig(tmp, dpi=120, format="png")
    plt.close(figure)
  return skipped


def write_report(studies: Sequence[optuna.Study], summaries: list[dict[str, Any]],
                 workdir: Path, command: str, seconds: float) -> None:
  """results.md, results.json, best_params.json and the plots, in ``workdir``."""
  table = results_table(summaries)
  skipped = write_plots(studies, workdir)
  notes = "".join(f"- {name} not drawn: {why}\n" for name, why in skipped.items())
  _write(workdir / "results.md",
         f"# Optimizer study\n\n`{command}`\n\nWall time of this run: {_duration(seconds)}. "
         "Study time: from the first trial's start to the last one's end (pauses between "
         "resumed runs included); time per trial: study time / finished trials. Accuracies "
         "are on the validation split, except the test accuracy of the best trial.\n\n"
         f"{table}" + (f"\n{notes}" if notes else ""))
  _write(workdir / "results.json", json.dumps(_finite(
      {"command": command, "seconds": seconds, "optimizers": summaries}), indent=2) + "\n")
  best = {s["optimizer"]: {**s["best"], **(s.get("final_test") or {})}
          for s in summaries if s["best"]}
  _write(workdir / "best_params.json", json.dumps(best, indent=2) + "\n")
