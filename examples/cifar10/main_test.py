"""Tests of the command line: help, one-line errors, and a small end-to-end comparison."""

from __future__ import annotations

import argparse
import json

import pytest

from examples.cifar10 import __main__ as cli
from examples.cifar10 import compare
from examples.cifar10 import input_pipeline
from examples.cifar10 import train
from examples.cifar10 import train_test


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("cifar")
  input_pipeline.write_cifar10(root, *train_test._synthetic(64, 24, seed=2))  # pylint: disable=protected-access
  return root


def _error_line(capsys, argv):
  code = None
  try:
    code = cli.main(argv)
  except SystemExit as e:  # argparse's own errors exit.
    code = e.code
  err = capsys.readouterr().err
  assert code == 2, err
  assert "Traceback" not in err and err.count("\n") == 1, err
  return err


def test_every_flag_has_help():
  parser = cli.make_parser()
  subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # pylint: disable=protected-access
  for name in ("train", "compare"):
    actions = subparsers.choices[name]._actions  # pylint: disable=protected-access
    flags = [a for a in actions if a.option_strings and a.dest != "help"]
    assert len(flags) > 30
    assert all(a.help for a in flags), [a.dest for a in flags if not a.help]
    text = subparsers.choices[name].format_help()
    assert "--data-dir" in text and "phase_shift_adam" in text and "--threshold" in text


@pytest.mark.parametrize("argv,match", [
    (["train", "--optimizer", "adamax"], "unknown optimizer 'adamax'"),
    (["train", "--learning-rate", "-0.1"], "learning_rate must be > 0"),
    (["train", "--no-download", "--data-dir", "{missing}", "--cache-dir", "{missing}"],
     "download is disabled"),
    (["train", "--epochs", "0"], "--epochs: must be >= 1"),
    (["train", "--set", "momentum"], "NAME=VALUE"),
    (["train", "--optimizer", "adam", "--momentum", "0.9"], "adam does not take momentum"),
    (["compare", "--optimizers", "adam,phase_shift", "--momentum", "0.9"],
     "none of adam, phase_shift takes momentum"),
    (["compare", "--optimizers", "adam,adam"], "twice"),
    (["compare", "--optimizers", "adam,sgd", "--set", "rmsprop.eps=1"], "not among"),
    (["train", "--model", "vgg"], "invalid choice"),
    (["train", "--batch-size", "100", "--num-devices", "64"], "only 1 devices"),
])
def test_bad_flags_give_one_line_errors(capsys, tmp_path, argv, match):
  argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
  assert match in _error_line(capsys, argv)


def test_compare_writes_plot_table_and_runs(capsys, data_dir, tmp_path):
  workdir = tmp_path / "cmp"
  argv = ["compare", "--optimizers", "adam,phase_shift", "--epochs", "1", "--width", "4",
          "--batch-size", "32", "--eval-batch-size", "16", "--data-dir", str(data_dir),
          "--no-download", "--workdir", str(workdir), "--no-progress",
          "--set", "phase_shift.learning_rate=0.05", "--threshold", "2e-4"]
  assert cli.main(argv) == 0
  out = capsys.readouterr().out
  assert f"plot: {workdir / compare.PLOT_FILE}" in out
  assert f"table: {workdir / compare.TABLE_FILE}" in out
  assert (workdir / compare.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  rows = (workdir / compare.TABLE_FILE).read_text().splitlines()
  assert rows[0].startswith("| optimizer |") and [r.split("|")[1].strip() for r in rows[2:]] == [
      "adam", "phase_shift"]
  configs = {n: json.loads((workdir / n / train.CONFIG_FILE).read_text())
             for n in ("adam", "phase_shift")}
  assert configs["adam"]["hparams"] == {}  # --threshold only went to the optimizer taking it.
  assert configs["phase_shift"]["hparams"] == {"learning_rate": 0.05, "threshold": 2e-4}
  # A second compare into the same directory needs --resume (which finds both complete).
  assert "--resume" in _error_line(capsys, argv)
  assert cli.main(argv + ["--resume"]) == 0
