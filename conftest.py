"""Shared pytest set-up for the nbval re-run of the stage notebooks.

When pytest collects notebooks (``--nbval``), the notebooks run in file-name order, each in its
own kernel, against one fresh sandbox with its own state directory, started before the first
notebook's kernel and stopped at the end of the session. Kernels inherit this environment.
"""

import os
import tempfile

import pytest

_started = {}


def _is_notebook_item(item) -> bool:
    return type(item).__name__ == "NbCellItem"


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if not _is_notebook_item(item) or _started:
        return
    root = tempfile.mkdtemp(prefix="nbval-sandbox-")
    os.environ["RUNBOOK_SANDBOX_DIR"] = os.path.join(root, "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = os.path.join(root, "state")
    os.environ.pop("RUNBOOK_RECORD_DIR", None)
    from runbook_lib import sandbox

    _started["info"] = sandbox.up()


def pytest_sessionfinish(session, exitstatus):
    if _started:
        from runbook_lib import sandbox

        sandbox.down()
