"""Shared pytest set-up for the nbval re-run of the stage notebooks.

With ``--nbval``, the notebooks run in file-name order, each in its own kernel, headless as CI
runs them, against one fresh sandbox with its own state directory. nbval starts kernels early,
and kernels inherit this process's environment, so the variables are set when pytest is
configured; the first notebook starts the sandbox, and the end of the session stops it.
"""

import os
import tempfile

_nbval = {}


def pytest_configure(config):
    if not config.getoption("nbval", default=False):
        return
    root = tempfile.mkdtemp(prefix="nbval-sandbox-")
    _nbval["env"] = {
        "RUNBOOK_SANDBOX_DIR": os.path.join(root, "sandbox"),
        "RUNBOOK_STATE_DIR": os.path.join(root, "state"),
        # As CI runs them: headless, gates answered by the parameters.
        "RUNBOOK_HEADLESS": "1",
    }
    _nbval["saved"] = {k: os.environ.get(k) for k in _nbval["env"]}
    os.environ.update(_nbval["env"])
    os.environ.pop("RUNBOOK_RECORD_DIR", None)


def pytest_unconfigure(config):
    if "env" not in _nbval:
        return
    from runbook_lib import sandbox

    os.environ["RUNBOOK_SANDBOX_DIR"] = _nbval["env"]["RUNBOOK_SANDBOX_DIR"]
    sandbox.down()
    for key, value in _nbval.pop("saved").items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def pytest_runtest_setup(item):
    """Before the first notebook cell: the sandbox up, as the chain runner has it."""
    if "env" in _nbval and not _nbval.get("up") and type(item).__name__ == "IPyNbCell":
        from runbook_lib import sandbox

        sandbox.up()
        _nbval["up"] = True
