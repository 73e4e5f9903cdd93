"""RDS input checks, ECR repositories and login, and the client guard, on a real moto server.

Bad input must be rejected before any request leaves the process, and no password may reach a
log, a repr or an exception, even with every logger (botocore's too) at DEBUG.
"""

from __future__ import annotations

import base64
import json
import logging
import re

import pytest

from runbook_lib import aws, labels, redact
from runbook_lib.errors import ParameterError

from .common import DEPLOYMENT, fake_session

GOOD = {
    "identifier": "dbos-app-pg",
    "instance_class": "db.t4g.micro",
    "engine_version": "16",
    "allocated_storage": 20,
    "master_username": "postgres",
    "master_password": "Sup3r-secret-pw",
    "subnet_group": "dbos-app-db",
    "security_group": "sg-0123456789abcdef0",
    "deployment": DEPLOYMENT,
}


@pytest.fixture
def counted(moto):
    """A session of its own whose HTTP requests are counted (the list of their URLs)."""
    session = fake_session()
    sent: list[str] = []
    session.events.register("before-send", lambda request, **_: sent.append(request.url))
    return session, sent


BAD_INPUTS = [
    ("instance_class", "db.t4g.tiny"),
    ("instance_class", "t4g.micro"),
    ("instance_class", "db.micro"),
    ("engine_version", "9.6"),
    ("engine_version", "16.x"),
    ("engine_version", "postgres16"),
    ("allocated_storage", 5),
    ("identifier", "1-starts-with-digit"),
    ("master_username", "rdsadmin"),
    ("security_group", "dbos-app-rds"),
]


def test_bad_input_is_rejected_before_any_api_call(moto, counted):
    session, requests_sent = counted
    for field, value in BAD_INPUTS:
        with pytest.raises(ParameterError) as caught:
            aws.ensure_db_instance(session, moto, **{**GOOD, field: value})
        assert len(caught.value.problems) == 1, (field, value)
        problem = caught.value.problems[0]
        assert str(value) in problem or field.split("_")[-1] in problem

    # A bad password is rejected without being shown.
    for password in ("short", "has space in it", "quote'd-password", 12345678):
        with pytest.raises(ParameterError) as caught:
            aws.ensure_db_instance(session, moto, **{**GOOD, "master_password": password})
        assert str(password) not in str(caught.value)

    with pytest.raises(ParameterError):
        aws.ensure_db_subnet_group(session, moto, name="dbos-app-db", subnet_ids=["subnet-1"],
                                   deployment=DEPLOYMENT)
    assert requests_sent == []


def test_an_intended_endpoint_never_falls_back_to_aws():
    session = aws.session("us-west-2")
    for endpoint in ("", "moto", "127.0.0.1:5000"):
        with pytest.raises(ParameterError, match="refusing to fall back"):
            aws.client(session, "ec2", endpoint)


def test_registry_login_never_shows_the_password(session, moto, caplog):
    caplog.set_level(logging.DEBUG)
    # The control: botocore itself logs the raw token at DEBUG, so the capture would catch it.
    ecr = aws.client(session, "ecr", moto)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().split(":", 1)[1]
    assert token in caplog.text
    caplog.clear()

    login = aws.registry_login(session, moto)

    assert login.registry.endswith(".dkr.ecr.us-west-2.amazonaws.com")
    assert login.username == "AWS" and login.password == password
    assert tuple(login)[2] == password  # still a plain tuple for callers
    for shown in (repr(login), str(login), f"{login}", caplog.text):
        assert password not in shown and token not in shown
    assert "password=***" in repr(login)
    assert redact.scrub(f"x {password} y") == "x [redacted] y"
    # botocore's logger is back at its own level.
    assert logging.getLogger("botocore").level == logging.NOTSET


def test_db_instance_password_stays_out_of_debug_logs(session, moto, caplog):
    caplog.set_level(logging.DEBUG)
    ec2 = aws.client(session, "ec2", moto)
    vpc = ec2.create_vpc(CidrBlock="10.2.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.2.{i}.0/24",
                                 AvailabilityZone=f"us-west-2{zone}")["Subnet"]["SubnetId"]
               for i, zone in enumerate("ab")]
    aws.ensure_db_subnet_group(session, moto, name="dbos-app-db", subnet_ids=subnets,
                               deployment=DEPLOYMENT)
    group = aws.ensure_rds_security_group(session, moto, name="dbos-app-rds", vpc_id=vpc,
                                          deployment=DEPLOYMENT)
    outcome = aws.ensure_db_instance(session, moto, **{**GOOD, "security_group": group.id})
    assert outcome.action == "created"
    assert GOOD["master_password"] not in caplog.text
    assert GOOD["master_password"] not in json.dumps(outcome.as_dict())
    assert "CreateDBInstance" not in caplog.text or "MasterUserPassword" not in caplog.text


def test_repository_settings_digest_and_identity(session, moto):
    created = aws.ensure_repository(session, moto, name="dbos-app", deployment=DEPLOYMENT)
    assert created.action == "created"
    assert created.outputs["uri"].endswith(".dkr.ecr.us-west-2.amazonaws.com/dbos-app")
    ecr = aws.client(session, "ecr", moto)
    (repo,) = ecr.describe_repositories(repositoryNames=["dbos-app"])["repositories"]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    assert repo["imageTagMutability"] == "MUTABLE"
    tags = ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"])["tags"]
    assert labels.is_ours_aws(tags, DEPLOYMENT)

    # Settings that drifted are put back; the repository is otherwise found as it is.
    ecr.put_image_scanning_configuration(repositoryName="dbos-app",
                                         imageScanningConfiguration={"scanOnPush": False})
    assert aws.ensure_repository(session, moto, name="dbos-app",
                                 deployment=DEPLOYMENT).action == "updated"
    assert aws.ensure_repository(session, moto, name="dbos-app",
                                 deployment=DEPLOYMENT).action == "found"

    # The digest a tag points to (moto's value is not the manifest's hash, as ECR's would be).
    media_type = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json",
                   "size": 2, "digest": "sha256:" + "1" * 64},
        "layers": [],
    })
    ecr.put_image(repositoryName="dbos-app", imageManifest=manifest, imageTag="v1",
                  imageManifestMediaType=media_type)
    digest = aws.image_digest(session, moto, repository="dbos-app", tag="v1")
    (image,) = ecr.describe_images(repositoryName="dbos-app")["imageDetails"]
    assert digest == image["imageDigest"] and re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    assert aws.image_digest(session, moto, repository="dbos-app", tag="nope") is None
    assert aws.image_digest(session, moto, repository="missing", tag="v1") is None

    assert set(aws.caller_identity(session, moto)) == {"Account", "Arn"}
