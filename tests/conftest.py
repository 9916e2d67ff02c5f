"""Under pytest-xdist, the torch cross-check reports travel from the workers to the controller.

Each report (``tests/crosscheck/report.py``, ``tests/crosscheck/optim_db.py``) is a plugin that a
test registers in its own process; a worker exports its rows at the end of its session and the
controller absorbs them, so ``make test`` (``-n 2``) prints the same tables as a one-process run.
"""

from __future__ import annotations

import pytest

_REPORTS = {
    "phaseshift-crosscheck-report": ("tests.crosscheck.report", "crosscheck_report"),
    "phaseshift-optim-db-report": ("tests.crosscheck.optim_db", "optim_db_report"),
}


def pytest_sessionfinish(session):
  workeroutput = getattr(session.config, "workeroutput", None)
  if workeroutput is None:  # not a pytest-xdist worker
    return
  for name in _REPORTS:
    plugin = session.config.pluginmanager.get_plugin(name)
    if plugin is not None:
      workeroutput[name] = plugin.export()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
  import importlib

  for name, (module, getter) in _REPORTS.items():
    exported = getattr(node, "workeroutput", {}).get(name)
    if exported:
      getattr(importlib.import_module(module), getter)(node.config).absorb(exported)
