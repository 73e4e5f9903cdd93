"""Fixtures for the controller tests: one sandbox cluster for the session (stopped even when
tests fail, then checked for leftover pod processes) and a fresh namespace per test."""

from __future__ import annotations

import itertools

import kubernetes
import pytest
from controller_harness import Sandbox, living_in_groups

from runbook_lib.sandbox.controllers import process as pod_processes


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory):
    box = Sandbox(tmp_path_factory.mktemp("sandbox"))
    try:
        box.start()
        yield box
    finally:
        box.stop()
        leftovers = living_in_groups(set(pod_processes.started_groups))
        assert not leftovers, f"pod processes left running after stop(): {leftovers}"


_counter = itertools.count()


@pytest.fixture
def namespace(sandbox, request):
    name = f"t{next(_counter)}-{request.node.name.replace('_', '-')[5:30].strip('-')}"
    name = name.lower().rstrip("-")
    sandbox.core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        sandbox.core.delete_namespace(name)
    except kubernetes.client.ApiException:
        pass
