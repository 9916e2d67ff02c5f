"""Collect one line per cross-checked optimizer and print them at the end of the pytest run.

Tests call ``crosscheck_report(pytestconfig).add(name, steps, diff_f32, diff_f64)``. The first call
registers a small plugin whose ``pytest_terminal_summary`` prints the table, so the report appears
in every run that executes a cross-check (whatever the directory or the ``-s``/``-q`` options).
Under pytest-xdist each worker hands its rows to the controller, which prints them
(``tests/conftest.py``, through :meth:`CrossCheckReport.export` and :meth:`CrossCheckReport.absorb`).
"""

from __future__ import annotations

_PLUGIN_NAME = "phaseshift-crosscheck-report"


class CrossCheckReport:
  """Rows of ``(name, steps, max abs diff float32, max abs diff float64)``."""

  def __init__(self):
    self.rows = []

  def add(self, name: str, steps: int, diff_f32: float, diff_f64: float) -> None:
    self.rows.append((name, steps, diff_f32, diff_f64))

  def export(self) -> list:
    """The rows as plain lists (what pytest-xdist can send from a worker)."""
    return [list(row) for row in self.rows]

  def absorb(self, exported: list) -> None:
    """Add the rows a worker exported."""
    self.rows.extend(tuple(row) for row in exported)

  def lines(self) -> list:
    width = max([len("optimizer")] + [len(row[0]) for row in self.rows])
    out = [f"{'optimizer':<{width}}  steps  max|diff| f32  max|diff| f64"]
    for name, steps, f32, f64 in self.rows:
      out.append(f"{name:<{width}}  {steps:>5}  {f32:>13.3e}  {f64:>13.3e}")
    return out

  def pytest_terminal_summary(self, terminalreporter):
    if not self.rows:
      return
    terminalreporter.section("torch cross-check: max abs parameter difference")
    for line in self.lines():
      terminalreporter.write_line(line)


def crosscheck_report(config) -> CrossCheckReport:
  """The session's report (``config`` is pytest's ``pytestconfig``), registered on first use."""
  report = config.pluginmanager.get_plugin(_PLUGIN_NAME)
  if report is None:
    report = CrossCheckReport()
    config.pluginmanager.register(report, _PLUGIN_NAME)
  return report
