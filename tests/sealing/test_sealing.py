"""Sealing interoperates with the real Sealed Secrets controller and kubeseal.

The vector proves the format: kubeseal's value opens with the controller's key only under its own
namespace, name and scope, and our values sealed under the controller's certificate open with its
key in every scope. Generated keys round-trip and look like the controller's own.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from runbook_lib import sealing
from runbook_lib.errors import ParameterError

from .conftest import VECTOR_PLAINTEXT, same


def _token(vector) -> str:
    return vector.sealed_secret["spec"]["encryptedData"]["token"]


# ---------------------------------------------------------------------------------------------
# The real vector


def test_vector_token_unseals_under_its_own_namespace_name_and_scope(vector):
    key = vector.key
    plaintext = sealing.unseal_value(
        key, _token(vector), namespace="foo", name="credentials", scope="strict"
    )
    assert same(plaintext, VECTOR_PLAINTEXT)


@pytest.mark.parametrize(
    "namespace, name, scope",
    [
        ("bar", "credentials", "strict"),
        ("foo", "other", "strict"),
        ("foo", "credentials", "namespace-wide"),
        ("foo", None, "namespace-wide"),
        (None, None, "cluster-wide"),
        ("foo", "credentials", "cluster-wide"),
    ],
)
def test_vector_token_fails_anywhere_else(vector, namespace, name, scope):
    key = vector.key
    with pytest.raises(sealing.UnsealError, match="^no key could decrypt secret$"):
        sealing.unseal_value(key, _token(vector), namespace=namespace, name=name, scope=scope)


def test_vector_token_fails_with_another_key(vector, generated):
    other = sealing.load_private_key(generated[0])
    with pytest.raises(sealing.UnsealError):
        sealing.unseal_value(other, _token(vector), namespace="foo", name="credentials")


def test_unseal_tries_every_key_it_is_given(vector, generated):
    keys = [sealing.load_private_key(generated[0]), vector.key]
    plaintext = sealing.unseal_value(keys, _token(vector), namespace="foo", name="credentials")
    assert same(plaintext, VECTOR_PLAINTEXT)


# ---------------------------------------------------------------------------------------------
# Our sealing under the real certificate


@pytest.mark.parametrize("scope", sealing.SCOPES)
def test_our_sealing_opens_with_the_real_key(vector, scope):
    value = b"postgresql://app:s3cret@db:5432/app"
    sealed = sealing.seal_value(
        vector.cert_pem, value, namespace="dbos", name="dbos-app-db", scope=scope
    )
    assert sealed.startswith("Ag")  # a 4096-bit key: 512 bytes of RSA ciphertext, length 0x0200
    blob = base64.b64decode(sealed)
    assert int.from_bytes(blob[:2], "big") == 512
    assert len(blob) == 2 + 512 + len(value) + 16

    key = vector.key
    opened = sealing.unseal_value(key, sealed, namespace="dbos", name="dbos-app-db", scope=scope)
    assert same(opened, value)


def test_scopes_bind_what_they_should(vector):
    key = vector.key
    value = b"v4lue"

    def opens(sealed, namespace, name, scope):
        try:
            return same(
                sealing.unseal_value(key, sealed, namespace=namespace, name=name, scope=scope),
                value,
            )
        except sealing.UnsealError:
            return False

    strict = sealing.seal_value(vector.cert_pem, value, namespace="a", name="x")
    assert opens(strict, "a", "x", "strict")
    assert not opens(strict, "a", "y", "strict")
    assert not opens(strict, "b", "x", "strict")

    wide = sealing.seal_value(
        vector.cert_pem, value, namespace="a", name="x", scope="namespace-wide"
    )
    assert opens(wide, "a", "y", "namespace-wide")
    assert not opens(wide, "b", "x", "namespace-wide")
    assert not opens(wide, "a", "x", "strict")

    anywhere = sealing.seal_value(
        vector.cert_pem, value, namespace=None, name=None, scope="cluster-wide"
    )
    assert opens(anywhere, "b", "z", "cluster-wide")
    assert not opens(anywhere, "b", "z", "namespace-wide")


def test_each_sealing_is_fresh(vector):
    first = sealing.seal_value(vector.cert_pem, b"same", namespace="a", name="x")
    second = sealing.seal_value(vector.cert_pem, b"same", namespace="a", name="x")
    assert first != second


def test_text_values_are_sealed_as_utf8(vector):
    sealed = sealing.seal_value(vector.cert_pem, "pässword", namespace="a", name="x")
    key = vector.key
    opened = sealing.unseal_value(key, sealed, namespace="a", name="x")
    assert same(opened, "pässword".encode())


def test_bad_scopes_and_missing_names_are_parameter_errors(vector):
    with pytest.raises(ParameterError, match="scope 'global'"):
        sealing.seal_value(vector.cert_pem, b"v", namespace="a", name="x", scope="global")
    with pytest.raises(ParameterError, match="needs a namespace"):
        sealing.seal_value(vector.cert_pem, b"v", namespace=None, name="x")
    with pytest.raises(ParameterError, match="needs the Secret's name"):
        sealing.seal_value(vector.cert_pem, b"v", namespace="a", name=None)


def test_malformed_sealed_values_fail_clearly(vector):
    key = vector.key
    with pytest.raises(sealing.UnsealError, match="not valid base64"):
        sealing.unseal_value(key, "not base64!", namespace="a", name="x")
    with pytest.raises(sealing.UnsealError, match="too short"):
        sealing.unseal_value(key, "AA==", namespace="a", name="x")
    with pytest.raises(sealing.UnsealError, match="too short"):
        sealing.unseal_value(
            key, base64.b64encode(b"\x02\x00abc").decode(), namespace="a", name="x"
        )


def test_unseal_errors_carry_no_plaintext_or_key(vector, generated):
    value = b"do-not-show-this-value"
    sealed = sealing.seal_value(vector.cert_pem, value, namespace="a", name="x")
    with pytest.raises(sealing.UnsealError) as failure:
        sealing.unseal_value(generated[0], sealed, namespace="a", name="x")
    text = str(failure.value) + repr(failure.value)
    assert value.decode() not in text
    assert "PRIVATE KEY" not in text
    assert failure.value.__cause__ is None and failure.value.__context__ is None


def test_a_broken_private_key_is_reported_without_its_bytes():
    broken = b"-----BEGIN RSA PRIVATE KEY-----\nTUlJQ2Vnb3Q=\n-----END RSA PRIVATE KEY-----\n"
    with pytest.raises(sealing.UnsealError) as failure:
        sealing.load_private_key(broken)
    assert "TUlJQ2Vnb3Q" not in str(failure.value)


# ---------------------------------------------------------------------------------------------
# Generated controller keys


def test_generated_pair_round_trips(generated):
    key_pem, cert_pem = generated
    value = b"round-trip"
    key = sealing.load_private_key(key_pem)
    for scope in sealing.SCOPES:
        sealed = sealing.seal_value(cert_pem, value, namespace="n", name="s", scope=scope)
        opened = sealing.unseal_value(key, sealed, namespace="n", name="s", scope=scope)
        assert same(opened, value)


def test_generated_certificate_has_the_shape_of_the_controllers(generated, vector):
    key_pem, cert_pem = generated
    ours = x509.load_pem_x509_certificate(cert_pem)
    theirs = x509.load_pem_x509_certificate(vector.cert_pem)

    # The private key is PKCS#1, as the controller stores it, and matches the certificate.
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert sealing.load_private_key(key_pem).public_key() == ours.public_key()

    # Subject and issuer, key, version, signature as the controller's (empty CN by default).
    assert ours.subject == theirs.subject == x509.Name([])
    assert ours.issuer == ours.subject
    assert ours.version == theirs.version == x509.Version.v3
    assert ours.public_key().key_size == theirs.public_key().key_size == 4096
    assert ours.public_key().public_numbers().e == 65537
    assert ours.signature_hash_algorithm.name == theirs.signature_hash_algorithm.name == "sha256"
    assert 0 < ours.serial_number < 2**128

    # Valid from now for ten years (3650 days, as the controller's key TTL); self-signed.
    lifetime = ours.not_valid_after_utc - ours.not_valid_before_utc
    assert lifetime == theirs.not_valid_after_utc - theirs.not_valid_before_utc
    assert lifetime == dt.timedelta(days=3650)
    now = dt.datetime.now(dt.UTC)
    assert abs(ours.not_valid_before_utc - now) < dt.timedelta(minutes=5)
    ours.public_key().verify(
        ours.signature,
        ours.tbs_certificate_bytes,
        padding.PKCS1v15(),
        ours.signature_hash_algorithm,
    )

    # The extensions are byte for byte the controller's: critical key usage encipher-only,
    # critical basic constraints CA:TRUE. They close the to-be-signed part of the certificate.
    extensions = bytes.fromhex(
        "a3233021300e0603551d0f0101ff040403020001300f0603551d130101ff040530030101ff"
    )
    assert theirs.tbs_certificate_bytes.endswith(extensions)
    assert ours.tbs_certificate_bytes.endswith(extensions)

    # And the cryptography package refuses to interpret them, for both.
    for cert in (ours, theirs):
        with pytest.raises(ValueError, match="encipher_only"):
            _ = cert.extensions


def test_common_name_goes_into_subject_and_issuer():
    _, cert_pem = sealing.generate_controller_key("sealed-secret")
    cert = x509.load_pem_x509_certificate(cert_pem)
    cn = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "sealed-secret")])
    assert cert.subject == cn and cert.issuer == cn


# ---------------------------------------------------------------------------------------------
# SealedSecret manifests


def _masked(manifest: dict) -> dict:
    masked = copy.deepcopy(manifest)
    for name in masked["spec"]["encryptedData"]:
        masked["spec"]["encryptedData"][name] = "<sealed>"
    return masked


def test_manifest_matches_kubeseals_output_apart_from_values(vector):
    manifest = sealing.sealed_secret(
        "credentials", "foo", {"token": VECTOR_PLAINTEXT}, vector.cert_pem
    )
    assert _masked(manifest) == _masked(vector.sealed_secret)
    # Field order too, as written in the file.
    ours = yaml.safe_dump(_masked(manifest), sort_keys=False)
    theirs = yaml.safe_dump(_masked(vector.sealed_secret), sort_keys=False)
    assert ours == theirs

    key = vector.key
    token = manifest["spec"]["encryptedData"]["token"]
    assert same(
        sealing.unseal_value(key, token, namespace="foo", name="credentials"), VECTOR_PLAINTEXT
    )


@pytest.mark.parametrize(
    "scope, annotation",
    [
        ("namespace-wide", sealing.ANNOTATION_NAMESPACE_WIDE),
        ("cluster-wide", sealing.ANNOTATION_CLUSTER_WIDE),
    ],
)
def test_manifest_scope_annotations(vector, scope, annotation):
    manifest = sealing.sealed_secret(
        "app-db", "dbos", {"database-url": b"postgresql://x"}, vector.cert_pem, scope=scope
    )
    assert manifest["metadata"]["annotations"] == {annotation: "true"}
    assert manifest["spec"]["template"]["metadata"]["annotations"] == {annotation: "true"}
    assert sealing.scope_of(manifest["metadata"]["annotations"]) == scope

    key = vector.key
    sealed = manifest["spec"]["encryptedData"]["database-url"]
    opened = sealing.unseal_value(key, sealed, namespace="dbos", name="app-db", scope=scope)
    assert same(opened, b"postgresql://x")


def test_manifest_template_carries_labels_annotations_and_type(vector):
    manifest = sealing.sealed_secret(
        "app-db",
        "dbos",
        {"b": b"2", "a": b"1"},
        vector.cert_pem,
        labels={"runbook.dbos.dev/deployment": "demo", "app.kubernetes.io/managed-by": "x"},
        annotations={
            "note": "kept",
            "kubectl.kubernetes.io/last-applied-configuration": '{"data":{"a":"MQ=="}}',
            sealing.ANNOTATION_CLUSTER_WIDE: "true",
        },
        secret_type="kubernetes.io/basic-auth",
    )
    template = manifest["spec"]["template"]
    assert template["type"] == "kubernetes.io/basic-auth"
    assert template["metadata"] == {
        "annotations": {"note": "kept"},
        "creationTimestamp": None,
        "labels": {"app.kubernetes.io/managed-by": "x", "runbook.dbos.dev/deployment": "demo"},
        "name": "app-db",
        "namespace": "dbos",
    }
    assert "annotations" not in manifest["metadata"]  # strict: the scope was not changed
    assert list(manifest["spec"]["encryptedData"]) == ["a", "b"]


def test_manifest_is_safe_to_commit(vector):
    value = b"postgresql://postgres:hunter2-very-secret@db.example:5432/dbos_app"
    manifest = sealing.sealed_secret(
        "postgres-admin", "dbos", {"database-url": value}, vector.cert_pem
    )
    text = yaml.safe_dump(manifest)
    for form in (value, base64.b64encode(value), b"hunter2-very-secret"):
        assert form.decode() not in text


def test_expired_certificates_are_refused(tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    then = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(then)
        .not_valid_after(then + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ParameterError, match="expired on 2020-01-02"):
        sealing.sealed_secret("s", "n", {"k": b"v"}, pem)
    path = tmp_path / "old.pem"
    path.write_bytes(pem)
    with pytest.raises(ParameterError, match="expired"):
        sealing.seal_cli(path, "n", "s", "strict", b"v")


# ---------------------------------------------------------------------------------------------
# The command-line helper


def test_seal_cli_seals_with_the_certificate_file(vector, tmp_path):
    cert = tmp_path / "cert.pem"
    cert.write_bytes(vector.cert_pem)
    key = vector.key
    for scope in sealing.SCOPES:
        sealed = sealing.seal_cli(cert, "dbos", "conductor-api-key", scope, b"key-123")
        assert "\n" not in sealed
        opened = sealing.unseal_value(
            key, sealed, namespace="dbos", name="conductor-api-key", scope=scope
        )
        assert same(opened, b"key-123")


def test_seal_cli_names_a_missing_certificate(tmp_path):
    with pytest.raises(ParameterError, match="cannot read certificate"):
        sealing.seal_cli(tmp_path / "missing.pem", "n", "s", "strict", b"v")
