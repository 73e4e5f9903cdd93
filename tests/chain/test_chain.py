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
from runbook_lib.parameters import PARAMETERS_DIR, load, parse_override
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

    # The autoscaler followed the burst within two polling intervals (plus one sampling
    # second), and came back down only after the stabilization window.
    published = record.outputs()["autoscaling"]
    params = load(SANDBOX)
    polling, window = params.autoscaling.polling_interval, params.autoscaling.scale_down_window
    assert float(published["load_test_scale_up_s"]) <= 2 * polling + 1.5
    assert float(published["load_test_scale_down_s"]) >= window - 1.0
    assert published["load_test_workflows"] == "8/8 SUCCESS"
    assert record.outputs()["upgrade"]["serving_version"] == "v2"


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


@pytest.fixture(scope="module")
def resumed(isolated):
    """A run to the deployment stage whose secrets stage loses its kernel, then its resume.

    Leaves the deployment running in the sandbox for the tests that follow.
    """
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
    directory = failed.value.record_dir
    after_failure = RunRecord.load(directory)
    assert_no_secrets(directory)
    resumed = chain.resume(directory)
    return failed.value, after_failure, resumed


def test_failure_midway_then_resume(resumed, capfd):
    failure, after_failure, record = resumed
    assert failure.stage == "secrets"
    assert "kernel died" in failure.reason
    assert after_failure.stage("secrets").status == "failed"
    assert after_failure.stage("infrastructure").status == "succeeded"
    statuses = {s.name: s.status for s in record.stages if s.status != "not run"}
    assert set(statuses.values()) == {"succeeded"}, statuses
    assert record.stage("secrets").attempts, "the failed attempt is kept in the record"
    out, err = capfd.readouterr()
    assert_no_secrets(record.directory, out + err)


def _printed(notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.outputs)


def test_the_app_serves_through_the_port_forward(resumed):
    _, _, record = resumed
    text = _printed(record.directory / "40_deployment.ipynb")
    assert "/healthz -> HTTP 200" in text
    migration = _printed(record.directory / "30_migration.ipynb")
    assert "create table: denied" in migration and "write privileges" in migration


def test_rerunning_each_stage_changes_nothing(resumed, isolated):
    record = chain.run(SANDBOX, records_dir=isolated / "records-rerun",
                       selection=chain.Selection(first="infrastructure", last="deployment"))
    for stage in record.stages:
        if stage.status == "not run":
            continue
        assert stage.status == "succeeded"
        lines = _printed(record.directory / stage.notebook).splitlines()
        changed = [line for line in lines if line.startswith(("created ", "updated ",
                                                               "deleted "))]
        assert not changed, (stage.name, changed)
    assert_no_secrets(record.directory)


def test_wrong_password_fails_with_the_pods_own_error(resumed, isolated, monkeypatch, capfd):
    wrong = "Wrong-Admin-Pw-5521"
    monkeypatch.setenv("RB_WRONG_ADMIN_PASSWORD", wrong)
    override = parse_override("secrets.postgres_password=env:RB_WRONG_ADMIN_PASSWORD")
    with pytest.raises(chain.StageFailed) as failed:
        chain.run(SANDBOX, [override], records_dir=isolated / "records-wrong",
                  selection=chain.Selection(only=["secrets", "migration"]))
    assert failed.value.stage == "migration"
    printed = _printed(failed.value.record_dir / "30_migration.ipynb")
    assert "password authentication failed" in printed
    out, err = capfd.readouterr()
    for text in (printed, out + err):
        assert wrong not in text
    for path in failed.value.record_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for form in forms(wrong):
                assert form not in data, path.name


def test_cell_error_names_stage_and_cell(isolated):
    with pytest.raises(chain.StageFailed) as failed:
        chain.run(SANDBOX, [parse_override("secrets.app_role_password=env:RB_NOT_SET_ANYWHERE")],
                  records_dir=isolated / "records-error", selection=chain.Selection(
                      only=["preflight"]))
    assert failed.value.stage == "preflight"
    assert failed.value.cell is not None
    assert "RB_NOT_SET_ANYWHERE" in failed.value.reason
