"""Names shared by the AWS tests."""

REGION = "us-west-2"
DEPLOYMENT = "test-dep"
CLUSTER = "dbos-app-cluster"
