"""Tests of the command line: flags, one-line errors, compare with seeds, divergence, Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import numpy as np
import pytest

from examples.cifar10 import __main__ as cli
from examples.cifar10 import compare
from examples.cifar10 import train
from examples.cifar10.configs import default
from examples.cifar10.conftest import learnable, write_cifar10


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp("cifar")
  write_cifar10(root, learnable(96, 2), learnable(24, 3))
  return root


def _run(capsys, argv):
  try:
    code = cli.main([str(a) for a in argv])
  except SystemExit as e:  # argparse's own errors.
    code = e.code
  out = capsys.readouterr()
  return code, out.out, out.err


def _one_line_error(capsys, argv, code=2):
  got, _, err = _run(capsys, argv)
  assert got == code, err
  assert "Traceback" not in err and err.count("\n") == 1, err
  return err


def test_every_setting_is_a_flag_with_its_help():
  parser = cli.make_parser()
  commands = next(a for a in parser._actions  # pylint: disable=protected-access
                  if isinstance(a, argparse._SubParsersAction)).choices  # pylint: disable=W0212
  for command in ("train", "compare", "study"):
    flags = {a.dest: a for a in commands[command]._actions}  # pylint: disable=protected-access
    for field in dataclasses.fields(default.Config):
      if (field.metadata["group"] in cli.GROUPS[command]
          and field.name not in cli.NOT_IN[command]):
        assert flags[field.name].help.startswith(field.metadata["help"]), field.name
  assert "--no-augment" in commands["train"].format_help()
  assert "--trials" in commands["study"].format_help() and "--seeds" in commands[
      "compare"].format_help()


def test_the_config_file_then_the_flags_make_the_config(tmp_path):
  own = tmp_path / "mine.py"
  own.write_text("import dataclasses\nfrom examples.cifar10.configs import resnet\n"
                 "def get_config():\n  return dataclasses.replace(resnet.get_config(), epochs=3)\n")
  args = cli.make_parser().parse_args(["compare", "--config", str(own), "--no-augment",
                                       "--width", "none", "--set", "sgd.momentum=0.9"])
  config = cli.make_config(args)
  assert (config.model, config.epochs, config.augment, config.width) == ("resnet", 3, False, None)
  assert config.per_optimizer == {"sgd": {"momentum": 0.9}}
  assert cli.make_config(cli.make_parser().parse_args(["study"])).validation_fraction == 0.1


@pytest.mark.parametrize("argv,match", [
    (["train", "--optimizer", "adamax"], "unknown optimizer 'adamax'"),
    (["train", "--learning-rate", "-0.1"], "learning_rate must be > 0"),
    (["train", "--optimizer", "phase_shift", "--shift-boundary", "-1"],
     "shift_boundary must be >= 0"),
    (["train", "--epochs", "0"], "epochs must be >= 1"),
    (["train", "--epochs", "x"], "argument --epochs: not a int: 'x'"),
    (["train", "--momentum", "0.9"], "momentum is set but adam does not take it"),
    (["train", "--model", "vgg"], "unknown model 'vgg'"),
    (["train", "--num-devices", "64"], "only 1 devices"),
    (["train", "--batch-size", "100", "--num-devices", "1", "--eval-batch-size", "0"],
     "eval_batch_size must be >= 1"),
    (["train", "--config", "nope"], "--config nope"),
    (["train", "--resume", "--overwrite"], "exclude each other"),
    (["train", "--no-download", "--data-dir", "{tmp}/missing", "--cache-dir", "{tmp}/missing"],
     "download is off"),
    (["train", "--workdir", "{tmp}/file", "--data-dir", "{data}"], "cannot use .*File exists"),
    (["compare", "--set", "momentum"], "OPTIMIZER.SETTING=VALUE"),
    (["compare", "--optimizers", "adam,phase_shift", "--momentum", "0.9"],
     "momentum is set but adam, phase_shift does not take it"),
    (["compare", "--optimizers", "adam,adam"], "distinct"),
    (["compare", "--optimizers", "adam,sgd", "--set", "rmsprop.eps=1"], "not among"),
    (["study", "--optimizers", "torch_sgd"], "search space"),
    (["study", "--set", "adam.learning_rate=0.1"], "the study searches it"),
    (["study", "--storage", "foo://bar"], "cannot open the storage foo://bar"),
    (["study", "--storage", "sqlite:///{tmp}/file/study.db"], "cannot open the storage"),
    (["study", "--workdir", "{tmp}/file"], "cannot use .*File exists"),
])
def test_bad_input_is_a_one_line_error(capsys, tmp_path, data_dir, argv, match):
  (tmp_path / "file").write_text("")
  argv = [a.replace("{tmp}", str(tmp_path)).replace("{data}", str(data_dir)) for a in argv]
  err = _one_line_error(capsys, argv)
  assert re.search(match, err), err


def test_a_diverging_run_exits_with_one_line_naming_the_epoch(capsys, tmp_path, data_dir):
  err = _one_line_error(capsys, ["train", "--optimizer", "sgd", "--learning-rate", "1e4",
                                 "--width", "4", "--batch-size", "32", "--data-dir", data_dir,
                                 "--workdir", tmp_path, "--no-progress"], code=1)
  assert "sgd diverged in epoch" in err and "last good checkpoint" in err
  for line in (tmp_path / "metrics.jsonl").read_text().splitlines():
    json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in metrics.jsonl"))


def test_ctrl_c_exits_130_with_a_hint(capsys, tmp_path, data_dir, monkeypatch):
  def interrupted(*args, **kwargs):
    raise KeyboardInterrupt

  monkeypatch.setattr(train, "train_and_evaluate", interrupted)
  err = _one_line_error(capsys, ["train", "--data-dir", data_dir, "--workdir", tmp_path], code=130)
  assert "interrupted; to continue, add --resume" in err


def test_compare_with_two_seeds_on_a_slice_of_the_subset(capsys, subset, tmp_path):
  argv = ["compare", "--optimizers", "adam,phase_shift", "--seeds", "2", "--epochs", "2",
          "--train-size", "512", "--test-size", "256", "--width", "8", "--batch-size", "64",
          "--data-dir", subset, "--workdir", tmp_path, "--no-progress",
          "--set", "phase_shift.learning_rate=0.05", "--threshold", "2e-4"]
  code, out, err = _run(capsys, argv)
  assert code == 0, err
  assert f"plot: {tmp_path}/comparison.png" in out and f"table: {tmp_path}/comparison.md" in out
  assert (tmp_path / compare.PLOT_FILE).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  results = json.loads((tmp_path / compare.JSON_FILE).read_text())
  for name in ("adam", "phase_shift"):
    runs = [[json.loads(line) for line in (tmp_path / name / f"seed_{s}" / "metrics.jsonl")
             .read_text().splitlines()] for s in (0, 1)]
    configs = [json.loads((tmp_path / name / f"seed_{s}" / "config.json").read_text())
               for s in (0, 1)]
    assert [c["seed"] for c in configs] == [0, 1] and configs[0]["threshold"] == 2e-4
    assert configs[0]["learning_rate"] == (0.05 if name == "phase_shift" else None)
    final = [r[-1]["test_loss"] for r in runs]
    assert final[0] != final[1]  # The seeds differ, and the interval is theirs:
    half = 12.706 * np.std(final, ddof=1) / np.sqrt(2)  # Student's t(0.975, 1 dof).
    assert results[name]["test_loss"]["mean"][-1] == pytest.approx(np.mean(final))
    assert results[name]["test_loss"]["half_width"][-1] == pytest.approx(half, rel=1e-4)
  rows = (tmp_path / compare.TABLE_FILE).read_text().splitlines()
  assert [r.split("|")[1].strip() for r in rows[2:4]] == ["adam", "phase_shift"]
  assert all(" ± " in r for r in rows[2:4]) and any(r.startswith("| 2 | ") for r in rows)
  paired = np.subtract(*[results[n]["final_test_accuracy"] for n in ("phase_shift", "adam")])
  mean, half = compare.interval(paired)  # Paired by seed: each seed's difference.
  assert rows[-1] == f"- phase_shift: {100 * mean:.2f}% ± {100 * half:.2f}%"
  assert "--resume" in _one_line_error(capsys, argv)
  code, out, _ = _run(capsys, argv + ["--resume"])  # Finds every run complete.
  assert code == 0 and (tmp_path / compare.TABLE_FILE).read_text().splitlines()[2:4] == rows[2:4]
