"""The parameters form's logic with real widgets (no frontend): what it writes into a notebook's
variables, where validation messages land, how a secret is taken and cleared, and that headless
it does nothing."""

from __future__ import annotations

import pytest

from runbook_lib import form as form_mod
from runbook_lib import parameters as params_mod
from runbook_lib import redact

STAGE_GROUPS = ["deployment", "aws", "cluster", "timeouts", "gates", "database", "secrets",
                "images", "app", "addons"]


@pytest.fixture
def namespace():
    return {"target": "sandbox", **{g: None for g in STAGE_GROUPS}}


@pytest.fixture
def interactive(monkeypatch):
    for name in ("RUNBOOK_HEADLESS", *form_mod.SECRET_VARIABLES.values()):
        monkeypatch.delenv(name, raising=False)


def problems_at(form, path: str) -> str:
    return form._messages[path].value


def test_defaults_are_the_sandbox_as_begin_would_load_it(namespace, interactive):
    form = form_mod.ParametersForm(namespace)
    assert form.problems == []
    assert form.file == params_mod.SANDBOX_FILE
    sandbox = params_mod.merged_values(params_mod.SANDBOX_FILE)
    assert namespace["target"] == "sandbox"
    # What begin() will validate from these variables equals the sandbox run's parameters.
    given = {k: namespace[k] for k in ["target", *STAGE_GROUPS]}
    from_form = params_mod.validate(params_mod.merged_values(None, [given]))
    expected = params_mod.validate(sandbox)
    for group in STAGE_GROUPS:
        assert getattr(from_form, group) == getattr(expected, group), group


def test_problems_land_beside_their_fields(namespace, interactive):
    form = form_mod.ParametersForm(namespace)
    form._inputs["cluster.nodes"].value = "0"
    assert "0 nodes is outside 1..100" in problems_at(form, "cluster.nodes")
    assert "min_nodes &lt;= nodes &lt;= max_nodes" in problems_at(form, "cluster")
    assert "cluster (2 problems)" in form._sections.titles
    assert namespace["cluster"]["nodes"] == 0

    form._inputs["cluster.nodes"].value = "two"
    assert "valid integer" in problems_at(form, "cluster.nodes")
    form._inputs["cluster.nodes"].value = "2"
    form._inputs["timeouts.rds"].value = "ten minutes"
    assert "is not a duration" in problems_at(form, "timeouts.rds")
    form._inputs["timeouts.rds"].value = "10m"
    form._inputs["app.replicas"].value = "50"
    assert "must lie within the autoscaling bounds" in problems_at(form, "app.replicas")
    form._inputs["app.replicas"].value = "2"
    assert form.problems == []
    assert namespace["timeouts"]["rds"] == "10m" and namespace["app"]["replicas"] == 2


def test_a_typed_secret_lives_only_in_the_kernel_environment(namespace, interactive):
    import os

    form = form_mod.ParametersForm(namespace)
    box = next(b for b in form._secret_box.children[1].children if hasattr(b, "placeholder"))
    typed = "Form-Typed-Secret-5150"
    box.value = typed
    assert box.value == ""
    assert os.environ["POSTGRES_PASSWORD"] == typed
    assert namespace["secrets"]["postgres_password"] == "env:POSTGRES_PASSWORD"
    assert redact.scrub(f"x {typed} y") == f"x {redact.MASK} y"
    assert typed not in repr(namespace)
    assert "set in this kernel's environment" in form._secret_status["POSTGRES_PASSWORD"].value

    # Another file keeps the entered secret as the source.
    form._file.value = params_mod.PARAMETERS_DIR / "eks.yaml"
    assert namespace["target"] == "eks"
    assert namespace["secrets"]["postgres_password"] == "env:POSTGRES_PASSWORD"


def test_headless_the_form_does_nothing(namespace, monkeypatch):
    monkeypatch.setenv("RUNBOOK_HEADLESS", "1")
    before = dict(namespace)
    assert form_mod.parameters_form(namespace) is None
    assert namespace == before


def test_problem_lines_are_placed_by_their_path():
    known = {"cluster", "cluster.nodes", "app", "app.replicas", "deployment"}
    placed = form_mod.problems_by_place([
        "cluster.nodes: 0 nodes is outside 1..100",
        "cluster: node counts must satisfy min_nodes <= nodes <= max_nodes",
        "app.replicas (20) must lie within the autoscaling bounds 1..10",
        "app.probes.liveness_period: 4000 s is outside 0..3600",
        "bogus: unknown parameter (check the spelling)",
    ], known)
    assert placed["cluster.nodes"] == ["0 nodes is outside 1..100"]
    assert placed["cluster"] == ["node counts must satisfy min_nodes <= nodes <= max_nodes"]
    assert placed["app.replicas"] == ["app.replicas (20) must lie within the autoscaling "
                                      "bounds 1..10"]
    assert placed["app"] == ["app.probes.liveness_period: 4000 s is outside 0..3600"]
    assert placed[None] == ["bogus: unknown parameter (check the spelling)"]


def test_difference_keeps_only_changed_leaves():
    old = {"a": {"b": 1, "c": {"d": 2}}, "e": "x"}
    new = {"a": {"b": 1, "c": {"d": 3}}, "e": "x", "f": None}
    assert form_mod.difference(new, old) == {"a": {"c": {"d": 3}}, "f": None}
