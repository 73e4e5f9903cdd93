"""The ClusterConfig the runbook writes: the walkthrough's cluster, our tags, checked inputs."""

from __future__ import annotations

import pytest
import yaml

from runbook_lib import eksctl, labels
from runbook_lib.errors import ParameterError

WALKTHROUGH = {
    "cluster": "dbos-app-cluster",
    "region": "us-west-2",
    "version": "1.31",
    "nodegroup": "default",
    "instance_type": "t3.medium",
    "nodes": 2,
    "min_nodes": 2,
    "max_nodes": 2,
    "deployment": "dep-1",
}


def test_config_matches_the_walkthrough_command():
    config = eksctl.cluster_config(**WALKTHROUGH)
    text = eksctl.render(config)
    doc = yaml.safe_load(text)

    assert doc["apiVersion"] == "eksctl.io/v1alpha5" and doc["kind"] == "ClusterConfig"
    assert doc["metadata"] == {
        "name": "dbos-app-cluster",
        "region": "us-west-2",
        "version": "1.31",
        "tags": labels.aws_tags("dep-1"),
    }
    # --managed: a managed node group named default of 2 x t3.medium.
    assert "nodeGroups" not in doc
    (group,) = doc["managedNodeGroups"]
    assert group["name"] == "default" and group["instanceType"] == "t3.medium"
    assert (group["desiredCapacity"], group["minSize"], group["maxSize"]) == (2, 2, 2)
    assert group["privateNetworking"] is True
    assert group["tags"] == labels.aws_tags("dep-1")
    assert doc["vpc"]["cidr"] == "192.168.0.0/16"
    # The version stays a string in YAML ("1.30" must not become 1.3).
    assert "version: '1.31'" in text


def test_render_then_parse_round_trips(tmp_path):
    config = eksctl.cluster_config(**{**WALKTHROUGH, "nodes": 3, "max_nodes": 5})
    spec = eksctl.load(eksctl.write(config, tmp_path / "c.yaml"))
    assert spec.name == "dbos-app-cluster" and spec.region == "us-west-2"
    assert spec.version == "1.31" and spec.nat_gateway == "Single"
    assert spec.tags == labels.aws_tags("dep-1")
    (group,) = spec.nodegroups
    assert (group.desired, group.min_size, group.max_size) == (3, 2, 5)
    assert group.private_networking


def test_every_bad_input_is_reported_at_once():
    with pytest.raises(ParameterError) as caught:
        eksctl.cluster_config(
            **{
                **WALKTHROUGH,
                "cluster": "1bad_name",
                "version": "1.19",
                "instance_type": "medium",
                "nodes": 5,
                "max_nodes": 3,
                "vpc_cidr": "10.0.0.0/8",
                "region": "uswest2",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 6, problems
    assert any("cluster name" in p for p in problems)
    assert any("1.19" in p for p in problems)


def test_parse_rejects_a_file_that_is_not_a_cluster_config(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n")
    with pytest.raises(ParameterError):
        eksctl.load(path)
