"""The sandbox controller's unsealing, on its own: SealedSecret in, Secret (or refusal) out.

These run the controller's functions directly on the real vector; the end-to-end tests run the
controller as a process against the sandbox API server.
"""

from __future__ import annotations

import base64
import copy

import pytest

from runbook_lib import sealing
from runbook_lib.sandbox.addons import sealed_secrets as controller

from .conftest import VECTOR_PLAINTEXT, same


def _applied(manifest: dict, uid: str = "0b7c-uid") -> dict:
    """The object as the API server returns it: uid, generation, no creationTimestamp null."""
    obj = copy.deepcopy(manifest)
    obj["metadata"].pop("creationTimestamp", None)
    obj["metadata"].update(uid=uid, generation=1, resourceVersion="7")
    return obj


def test_the_vectors_sealed_secret_becomes_its_secret(vector):
    secret = controller.unseal_secret(_applied(vector.sealed_secret), [vector.key])
    assert secret["metadata"] == {
        "name": "credentials",
        "namespace": "foo",
        "ownerReferences": [
            {
                "apiVersion": "bitnami.com/v1alpha1",
                "kind": "SealedSecret",
                "name": "credentials",
                "uid": "0b7c-uid",
                "controller": True,
            }
        ],
    }
    assert secret["type"] == "Opaque"
    assert list(secret["data"]) == ["token"]
    assert same(base64.b64decode(secret["data"]["token"]), VECTOR_PLAINTEXT)


def test_moving_the_vector_fails_like_the_real_controller(vector):
    moved = _applied(vector.sealed_secret)
    moved["metadata"]["namespace"] = "bar"
    with pytest.raises(sealing.UnsealError) as failure:
        controller.unseal_secret(moved, [vector.key])
    assert str(failure.value) == "no key could decrypt secret (token)"

    widened = _applied(vector.sealed_secret)
    widened["metadata"]["annotations"] = {sealing.ANNOTATION_CLUSTER_WIDE: "true"}
    with pytest.raises(sealing.UnsealError, match=r"^no key could decrypt secret \(token\)$"):
        controller.unseal_secret(widened, [vector.key])


def test_failures_name_every_key_that_did_not_open(vector):
    manifest = sealing.sealed_secret(
        "db", "dbos", {"password": b"p", "url": b"u", "user": b"n"}, vector.cert_pem
    )
    manifest["spec"]["encryptedData"]["url"] = "%%%"
    manifest["metadata"]["name"] = "renamed"
    with pytest.raises(sealing.UnsealError) as failure:
        controller.unseal_secret(_applied(manifest), [vector.key])
    assert str(failure.value) == (
        "no key could decrypt secret (password, user), the sealed value is not valid base64 (url)"
    )


def test_template_metadata_and_type_reach_the_secret(vector):
    manifest = sealing.sealed_secret(
        "db",
        "dbos",
        {"database-url": b"postgresql://x"},
        vector.cert_pem,
        scope="namespace-wide",
        labels={"app": "dbos"},
        annotations={"note": "n"},
        secret_type="kubernetes.io/basic-auth",
    )
    secret = controller.unseal_secret(_applied(manifest), [vector.key])
    meta = secret["metadata"]
    assert meta["labels"] == {"app": "dbos"}
    assert meta["annotations"] == {"note": "n", sealing.ANNOTATION_NAMESPACE_WIDE: "true"}
    assert secret["type"] == "kubernetes.io/basic-auth"
    assert "creationTimestamp" not in meta


def test_owner_reference_can_be_skipped_by_annotation(vector):
    manifest = sealing.sealed_secret(
        "db",
        "dbos",
        {"k": b"v"},
        vector.cert_pem,
        annotations={controller.SKIP_OWNER_ANNOTATION: "true"},
    )
    secret = controller.unseal_secret(_applied(manifest), [vector.key])
    assert "ownerReferences" not in secret["metadata"]


def test_unsupported_forms_are_refused_with_a_reason(vector):
    legacy = _applied(vector.sealed_secret)
    legacy["spec"] = {"data": "AgBy", "template": {}}
    with pytest.raises(sealing.UnsealError, match="deprecated 'data' field"):
        controller.unseal_secret(legacy, [vector.key])

    templated = _applied(vector.sealed_secret)
    templated["spec"]["template"]["data"] = {"url": "{{ .token }}"}
    with pytest.raises(sealing.UnsealError, match="template.data is not supported"):
        controller.unseal_secret(templated, [vector.key])


def test_kubeconfig_reader_takes_the_current_context(tmp_path):
    (tmp_path / "token").write_text("abc123\n")
    (tmp_path / "config").write_text(
        """
apiVersion: v1
kind: Config
current-context: sandbox
contexts:
- name: other
  context: {cluster: far, user: nobody}
- name: sandbox
  context: {cluster: local, user: admin}
clusters:
- name: far
  cluster: {server: "https://far.example:6443"}
- name: local
  cluster: {server: "http://127.0.0.1:41234/prefix"}
users:
- name: nobody
  user: {}
- name: admin
  user: {tokenFile: token}
"""
    )
    api = controller.KubeHTTP.from_kubeconfig(str(tmp_path / "config"))
    assert (api.scheme, api.host, api.port, api.prefix) == ("http", "127.0.0.1", 41234, "/prefix")
    assert api.headers["Authorization"] == "Bearer abc123"
    assert api.context is None
