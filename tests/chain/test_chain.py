"""The chain runner end to end against the sandbox: a clean run, a failure and a resume, and
proof that no secret value reaches any byte of a record."""

import base64
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from runbook_lib import chain
from runbook_lib.parameters import PARAMETERS_DIR, parse_override
from runbook_lib.record import RunRecord

from .conftest import KNOWN_SECRETS

SANDBOX = PARAMETERS_DIR / "sandbox.yaml"


def forms(value: str) -> list[bytes]:
    raw = value.encode()
    return [raw, quote(value, safe="").encode(), base64.b64encode(raw)]


def assert_no_secrets(directory: Path, extra_text: str = "") -> None:
    values = list(KNOWN_SECRETS.values())
    generated = Path(os.environ["RUNBOOK_STATE_DIR"])
    for path in generated.glob("*/generated-secrets.json"):
        values += list(json.loads(path.read_text()).values())
    checked = 0
    for path in directory.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            checked += 1
            for value in values:
                for form in forms(value):
                    assert form not in data, f"a secret form appears in {path.name}"
    for value in values:
        for form in forms(value):
            assert form.decode() not in extra_text
    assert checked > 5


def test_clean_rehearsal_writes_record_without_secrets(isolated, capfd):
    record = chain.run(SANDBOX, records_dir=isolated / "records")
    statuses = {s.name: s.status for s in record.stages}
    assert set(statuses.values()) == {"succeeded"}, statuses
    summary = (record.directory / "summary.md").read_text()
    for stage in record.stages:
        assert stage.notebook in summary and (record.directory / stage.notebook).exists()
    assert "sandbox" in summary and "succeeded" in summary
    assert (record.directory / "summary.html").exists()
    out, err = capfd.readouterr()
    assert_no_secrets(record.directory, out + err)


def _kill_kernel_when(record_root: Path, stage: str, stop: threading.Event) -> None:
    """Kill the stage's kernel once that stage is running: a dead kernel, from outside."""
    while not stop.is_set():
        for run in record_root.glob("*/run.json"):
            data = json.loads(run.read_text())
            if any(s["name"] == stage and s["status"] == "running" for s in data["stages"]):
                time.sleep(1.0)
                found = subprocess.run(["pgrep", "-f", "ipykernel_launcher"],
                                       capture_output=True, text=True).stdout.split()
                for pid in found:
                    os.kill(int(pid), signal.SIGKILL)
                if found:
                    return
        time.sleep(0.2)


def test_failure_midway_then_resume(isolated, capfd):
    records = isolated / "records-resume"
    records.mkdir()
    stop = threading.Event()
    killer = threading.Thread(target=_kill_kernel_when, args=(records, "secrets", stop))
    killer.start()
    try:
        with pytest.raises(chain.StageFailed) as failed:
            chain.run(SANDBOX, records_dir=records,
                      selection=chain.Selection(last="deployment"))
    finally:
        stop.set()
        killer.join()
    assert failed.value.stage == "secrets"
    assert "kernel died" in failed.value.reason
    directory = failed.value.record_dir
    record = RunRecord.load(directory)
    assert record.stage("secrets").status == "failed"
    assert record.stage("infrastructure").status == "succeeded"
    assert_no_secrets(directory)

    resumed = chain.resume(directory)
    statuses = {s.name: s.status for s in resumed.stages if s.status != "not run"}
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert resumed.stage("secrets").attempts, "the failed attempt is kept in the record"
    out, err = capfd.readouterr()
    assert_no_secrets(directory, out + err)


def test_cell_error_names_stage_and_cell(isolated):
    with pytest.raises(chain.StageFailed) as failed:
        chain.run(SANDBOX, [parse_override("secrets.app_role_password=env:RB_NOT_SET_ANYWHERE")],
                  records_dir=isolated / "records-error", selection=chain.Selection(
                      only=["preflight"]))
    assert failed.value.stage == "preflight"
    assert failed.value.cell is not None
    assert "RB_NOT_SET_ANYWHERE" in failed.value.reason
