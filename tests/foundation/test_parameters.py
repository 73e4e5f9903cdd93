"""Parameters: loading, merging, and one error that lists every problem."""

import json
import subprocess
import sys
import textwrap

import pytest

from runbook_lib import parameters as p
from runbook_lib.errors import ParameterError

TEN_MISTAKES = textwrap.dedent("""\
    target: sandbox
    aws:
      region: moon-west-1
    cluster:
      name: Bad_Cluster
      version: "1.19"
      instance_type: huge
      nodes: 0
    database:
      instance_id: 9-bad
      instance_class: m5.large
    app:
      conductor_url: https://conductor.example
    autoscaling:
      min_replicas: 5
      max_replicas: 2
    timeouts:
      job: soon
    secrets:
      postgres_password: hunter2hunter2
""")


def test_shipped_files_load():
    eks = p.load(p.PARAMETERS_DIR / "eks.yaml")
    assert eks.target == "eks"
    assert (eks.aws.region, eks.cluster.name, eks.cluster.version) == (
        "us-west-2", "dbos-app-cluster", "1.31")
    assert (eks.cluster.instance_type, eks.cluster.nodes) == ("t3.medium", 2)
    assert (eks.database.instance_class, eks.database.engine_version,
            eks.database.allocated_storage_gib) == ("db.t4g.micro", "16", 20)
    assert (eks.app.namespace, eks.database.name, eks.database.app_role) == (
        "dbos", "dbos_app", "dbos_app_role")
    assert (eks.secrets.names.admin, eks.secrets.names.app_db, eks.secrets.names.conductor) == (
        "postgres-admin", "dbos-app-db", "conductor-api-key")
    assert (eks.app.queue, eks.app.worker_concurrency) == ("taskQueue", 2)
    a = eks.autoscaling
    assert (a.target_value, a.min_replicas, a.max_replicas, a.polling_interval,
            a.cooldown_period) == (2, 1, 10, 15, 60)
    assert eks.app.conductor_url == "wss://conductor.dbos.dev/"
    assert eks.secrets.postgres_password == "env:POSTGRES_PASSWORD"
    assert eks.gates.confirm_cleanup == ""
    sandbox = p.load(p.PARAMETERS_DIR / "sandbox.yaml")
    assert sandbox.target == "sandbox"
    assert sandbox.secrets.postgres_password.endswith("| generate")


def test_overrides_apply_last():
    params = p.load(p.PARAMETERS_DIR / "sandbox.yaml",
                    [p.parse_override("app.replicas=3"), p.parse_override("cluster.nodes=2")])
    assert params.app.replicas == 3


def test_durations():
    assert p.parse_duration("1h30m") == 5400
    assert p.parse_duration("15s") == 15
    assert p.parse_duration(90) == 90
    for bad in ("soon", "", "-5", True):
        with pytest.raises(ValueError):
            p.parse_duration(bad)


def test_ten_mistakes_one_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(TEN_MISTAKES + "bogus_key: 1\n")
    with pytest.raises(ParameterError) as caught:
        p.load(path)
    problems = caught.value.problems
    expected = ["aws.region", "cluster.name", "cluster.version", "cluster.instance_type",
                "cluster.nodes", "database.instance_id", "database.instance_class",
                "app.conductor_url", "autoscaling: replica bounds", "timeouts.job",
                "secrets.postgres_password", "bogus_key"]
    for fragment in expected:
        assert any(fragment in line for line in problems), (fragment, problems)
    assert len(problems) >= 10
    # The message never echoes what was pasted into a secret parameter.
    assert "hunter2" not in str(caught.value)


def test_cli_bad_parameters_exit_before_any_call(tmp_path):
    """The CLI exits 2 naming all problems, creating no record and importing no API client."""
    path = tmp_path / "bad.yaml"
    path.write_text(TEN_MISTAKES)
    probe = textwrap.dedent(f"""\
        import json, sys
        from runbook_lib.cli import main
        code = main(["run", "-f", {str(path)!r}, "--records-dir", {str(tmp_path / 'rec')!r}])
        loaded = [m for m in ("boto3", "botocore", "kubernetes", "papermill") if m in sys.modules]
        print(json.dumps({{"code": code, "loaded": loaded}}))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            timeout=60)
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {"code": 2, "loaded": []}, result.stderr
    assert "problems in" in result.stderr
    assert not (tmp_path / "rec").exists()
    assert "hunter2" not in result.stderr + result.stdout
