"""Fixtures for the chain tests: an isolated sandbox, state and records per test session."""

import os

import pytest

KNOWN_SECRETS = {
    "POSTGRES_PASSWORD": "Known-Admin-Pw-4417",
    "APP_ROLE_PASSWORD": "Known-App-Pw-9023",
}


@pytest.fixture(scope="session")
def isolated(tmp_path_factory):
    """Point the sandbox and the state directory at temporary folders; stop the sandbox after."""
    root = tmp_path_factory.mktemp("chain")
    saved = {k: os.environ.get(k) for k in ("RUNBOOK_SANDBOX_DIR", "RUNBOOK_STATE_DIR",
                                            *KNOWN_SECRETS)}
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(root / "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = str(root / "state")
    os.environ.update(KNOWN_SECRETS)
    yield root
    from runbook_lib import sandbox

    sandbox.down()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
