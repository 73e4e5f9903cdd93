"""Fixtures of the JupyterLab tests: a real kernel, the sandbox, JupyterLab and Chromium.

Each fixture stops what it started, even when a test fails. The sandbox and the state folder
live in this session's temporary folder (``RUNBOOK_SANDBOX_DIR`` and ``RUNBOOK_STATE_DIR`` are
set before JupyterLab starts, so its kernels inherit them).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import Kernel, interactive_env, start_lab, stop_lab

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def kernel(tmp_path_factory):
    """A kernel as JupyterLab starts it for a person: not headless, no secrets in its env."""
    workdir = tmp_path_factory.mktemp("kernel")
    started = Kernel(interactive_env(RUNBOOK_STATE_DIR=str(workdir / "state")), workdir)
    yield started
    started.stop()


@pytest.fixture(scope="session")
def sandbox_dirs(tmp_path_factory):
    """This session's own sandbox and state folders; the sandbox is stopped at the end."""
    root = tmp_path_factory.mktemp("browser-sandbox")
    saved = {k: os.environ.get(k) for k in ("RUNBOOK_SANDBOX_DIR", "RUNBOOK_STATE_DIR")}
    os.environ["RUNBOOK_SANDBOX_DIR"] = str(root / "sandbox")
    os.environ["RUNBOOK_STATE_DIR"] = str(root / "state")
    yield root
    from runbook_lib import sandbox

    try:
        if sandbox.status() is not None:
            sandbox.down()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def lab(tmp_path_factory, sandbox_dirs):
    """JupyterLab on 127.0.0.1, its kernels pointed at this session's sandbox (started while
    JupyterLab starts)."""
    from runbook_lib import sandbox

    base = tmp_path_factory.mktemp("lab")
    server = start_lab(base, interactive_env(RUNBOOK_GATE_TIMEOUT="120"), meanwhile=sandbox.up)
    yield server
    stop_lab(server)


@pytest.fixture(scope="session")
def browser():
    """Headless Chromium from Debian, driven by Playwright (never a browser of its own)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                              args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()
