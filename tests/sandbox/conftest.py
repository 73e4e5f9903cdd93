"""Fixtures for the sandbox tests: real daemons in throw-away directories, always stopped.

Every sandbox a test starts is stopped in a finalizer, also when the test fails midway, and the
finalizer checks that none of its processes is left and none of its ports still listens.
"""

from __future__ import annotations

import os

import pytest

from .support import Sandboxes

# The daemon's background import of moto's services only costs CPU in short tests.
os.environ.setdefault("RUNBOOK_SANDBOX_WARMUP", "0")


@pytest.fixture
def sandboxes():
    s = Sandboxes()
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="session")
def shared_sandbox():
    """One sandbox for the tests that only use it (RDS, stand-ins)."""
    s = Sandboxes()
    try:
        yield s.up()
    finally:
        s.close()
