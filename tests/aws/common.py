"""Names and helpers shared by the AWS tests."""

import boto3

REGION = "us-west-2"
DEPLOYMENT = "test-dep"
CLUSTER = "dbos-app-cluster"


def fake_session() -> boto3.Session:
    """A session with fake credentials (moto accepts any; AWS accepts none of these)."""
    return boto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        aws_session_token="testing",
        region_name=REGION,
    )
