"""Bitnami Sealed Secrets in Python: sealing values, writing SealedSecrets, and controller keys.

The runbook's secrets stage seals each credential with the cluster controller's public
certificate and writes a SealedSecret manifest that is safe to commit; the ``seal`` command of
``python -m runbook_lib`` seals one value read from stdin. The sandbox's Sealed Secrets controller
(:mod:`runbook_lib.sandbox.addons.sealed_secrets`) uses the same functions to make its key and to
unseal what it receives.

The format is the real controller's, so values sealed here open in a real cluster and values
sealed by kubeseal open here: every value is sealed on its own; a random 32-byte AES-256-GCM key
encrypts it with an all-zero 12-byte nonce and no associated data; RSA-OAEP (SHA-256, MGF1
SHA-256) wraps that key under a label that binds the scope (``namespace/name`` for strict,
``namespace`` for namespace-wide, empty for cluster-wide). The bytes are the 2-byte big-endian
length of the RSA ciphertext, the RSA ciphertext, then the GCM ciphertext and its tag, in
standard base64.

Nothing here logs or raises with a plaintext or a private key: errors name the namespace, name,
scope and key names, never a value.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import ExtensionOID, NameOID

from runbook_lib.errors import ParameterError, RunbookError, TargetError

log = logging.getLogger("runbook_lib.sealing")

API_VERSION = "bitnami.com/v1alpha1"
KIND = "SealedSecret"

SCOPES = ("strict", "namespace-wide", "cluster-wide")
ANNOTATION_NAMESPACE_WIDE = "sealedsecrets.bitnami.com/namespace-wide"
ANNOTATION_CLUSTER_WIDE = "sealedsecrets.bitnami.com/cluster-wide"

# What the real controller generates: RSA-4096, a certificate valid for ten years.
KEY_SIZE = 4096
CERT_VALIDITY = dt.timedelta(days=3650)

_SESSION_KEY_BYTES = 32
_ZERO_NONCE = bytes(12)

# A key usage of encipher-only, DER-encoded: BIT STRING, 0 unused bits, bit 7 set. The
# cryptography package refuses this value (it allows encipher-only only together with key
# agreement), so it is written as an extension it does not interpret.
_KEY_USAGE_ENCIPHER_ONLY_DER = b"\x03\x02\x00\x01"

# Annotations kubectl and kubecfg fill with a full copy of an applied object; on a Secret that
# copy holds its values, so they never go into a SealedSecret template.
_LAST_APPLIED = (
    "kubectl.kubernetes.io/last-applied-configuration",
    "kubecfg.ksonnet.io/last-applied-configuration",
)


class UnsealError(RunbookError):
    """A sealed value could not be opened with the keys at hand."""

    hint = (
        "Seal the value again with the controller's current certificate, for the namespace, "
        "name and scope it is used under."
    )


# ---------------------------------------------------------------------------------------------
# Keys and certificates


def _bytes(pem: bytes | str) -> bytes:
    return pem.encode() if isinstance(pem, str) else bytes(pem)


def load_public_key(cert_pem: bytes | str) -> rsa.RSAPublicKey:
    """The RSA public key of a controller certificate (PEM), or of a bare public key PEM.

    Only the public key is read: the controller's certificate carries an encipher-only key
    usage that the ``cryptography`` package refuses to parse as an extension.
    """
    data = _bytes(cert_pem)
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            key = x509.load_pem_x509_certificate(data).public_key()
        else:
            key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ParameterError(
            [f"not a PEM certificate or public key: {exc}"], "certificate"
        ) from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ParameterError(["the certificate's key is not an RSA key"], "certificate")
    return key


def certificate_expiry(cert_pem: bytes | str) -> dt.datetime:
    """When a controller certificate (PEM) expires, in UTC."""
    return x509.load_pem_x509_certificate(_bytes(cert_pem)).not_valid_after_utc


def check_not_expired(cert_pem: bytes | str) -> None:
    """Refuse an expired certificate, as kubeseal does (a bare public key has no expiry)."""
    if b"-----BEGIN CERTIFICATE-----" not in _bytes(cert_pem):
        return
    expiry = certificate_expiry(cert_pem)
    if expiry <= dt.datetime.now(dt.UTC):
        raise ParameterError(
            [f"the certificate expired on {expiry:%Y-%m-%d}; fetch the controller's current one"],
            "certificate",
        )


def load_private_key(key_pem: bytes | str, *, trusted: bool = False) -> rsa.RSAPrivateKey:
    """An RSA private key from PEM (PKCS#1 as the controller stores it, or PKCS#8).

    Checking an RSA-4096 key's consistency takes about 0.4 s here; ``trusted`` skips it for
    keys that come from where the controller keeps its own.
    """
    try:
        key = serialization.load_pem_private_key(
            _bytes(key_pem), password=None, unsafe_skip_rsa_key_validation=trusted
        )
    except (ValueError, TypeError):
        # The parser's own message is not repeated: it is about the key's bytes.
        raise UnsealError("the private key is not a readable, unencrypted PEM key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnsealError("the private key is not an RSA key")
    return key


def generate_controller_key(common_name: str = "") -> tuple[bytes, bytes]:
    """A new controller key pair, made as the real controller makes it.

    Returns ``(private_key_pem, certificate_pem)``: an RSA-4096 key in PKCS#1 PEM (``RSA PRIVATE
    KEY``) and a self-signed X.509 v3 certificate with a random 128-bit serial, valid from now
    for 3650 days, subject and issuer holding only ``common_name`` (empty by default, as the
    controller's ``--my-cn`` is), a critical key usage of encipher-only, critical basic
    constraints CA:TRUE, signed with SHA-256. This is the pair the controller stores in its
    ``kubernetes.io/tls`` key Secret. Generating the key takes about a second on this machine.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_SIZE)

    # The real controller takes "now" to the second; so does X.509 time encoding.
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)] if common_name else [])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(secrets.randbelow((1 << 128) - 1) + 1)
        .not_valid_before(now)
        .not_valid_after(now + CERT_VALIDITY)
        .add_extension(
            x509.UnrecognizedExtension(ExtensionOID.KEY_USAGE, _KEY_USAGE_ENCIPHER_ONLY_DER),
            critical=True,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    cert = builder.sign(key, hashes.SHA256())

    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------------
# Sealing and unsealing one value


def check_scope(scope: str, namespace: str | None, name: str | None) -> None:
    """Raise ParameterError unless ``scope`` is known and has the names it binds."""
    problems = []
    if scope not in SCOPES:
        problems.append(f"scope {scope!r} is not one of {', '.join(SCOPES)}")
    elif scope in ("strict", "namespace-wide") and not namespace:
        problems.append(f"a {scope} sealed value needs a namespace")
    elif scope == "strict" and not name:
        problems.append("a strict sealed value needs the Secret's name")
    if problems:
        raise ParameterError(problems, "sealing")


def scope_label(namespace: str | None, name: str | None, scope: str) -> bytes:
    """The RSA-OAEP label that binds a sealed value to its scope."""
    if scope == "cluster-wide":
        return b""
    if scope == "namespace-wide":
        return (namespace or "").encode()
    return f"{namespace or ''}/{name or ''}".encode()


def scope_of(annotations: Mapping[str, str] | None) -> str:
    """The scope a SealedSecret's own annotations select (cluster-wide wins, as in kubeseal)."""
    annotations = annotations or {}
    if annotations.get(ANNOTATION_CLUSTER_WIDE) == "true":
        return "cluster-wide"
    if annotations.get(ANNOTATION_NAMESPACE_WIDE) == "true":
        return "namespace-wide"
    return "strict"


def scope_annotations(scope: str) -> dict[str, str]:
    """The annotations that declare ``scope`` on a SealedSecret (none for strict)."""
    if scope == "namespace-wide":
        return {ANNOTATION_NAMESPACE_WIDE: "true"}
    if scope == "cluster-wide":
        return {ANNOTATION_CLUSTER_WIDE: "true"}
    return {}


def _oaep(label: bytes) -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()),
        algorithm=hashes.SHA256(),
        label=label or None,
    )


def _as_public_key(public_key: rsa.RSAPublicKey | bytes | str) -> rsa.RSAPublicKey:
    if isinstance(public_key, rsa.RSAPublicKey):
        return public_key
    return load_public_key(public_key)


def seal_value(
    public_key: rsa.RSAPublicKey | bytes | str,
    value: bytes | str,
    *,
    namespace: str | None,
    name: str | None,
    scope: str = "strict",
) -> str:
    """Seal one value for the Secret ``namespace/name`` under ``scope``; return its base64 text.

    ``public_key`` is the controller's RSA public key, or its certificate PEM. A text value is
    sealed as its UTF-8 bytes.
    """
    check_scope(scope, namespace, name)
    key = _as_public_key(public_key)
    plaintext = value.encode() if isinstance(value, str) else bytes(value)

    session_key = os.urandom(_SESSION_KEY_BYTES)
    wrapped = key.encrypt(session_key, _oaep(scope_label(namespace, name, scope)))
    sealed = AESGCM(session_key).encrypt(_ZERO_NONCE, plaintext, None)
    blob = len(wrapped).to_bytes(2, "big") + wrapped + sealed
    return base64.b64encode(blob).decode("ascii")


def _as_private_keys(
    private_key: rsa.RSAPrivateKey | bytes | str | Iterable[rsa.RSAPrivateKey],
) -> list[rsa.RSAPrivateKey]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        return [private_key]
    if isinstance(private_key, (bytes, str)):
        return [load_private_key(private_key)]
    return list(private_key)


def unseal_value(
    private_key: rsa.RSAPrivateKey | bytes | str | Iterable[rsa.RSAPrivateKey],
    sealed: str | bytes,
    *,
    namespace: str | None,
    name: str | None,
    scope: str = "strict",
) -> bytes:
    """Open one sealed value for ``namespace/name`` under ``scope``; return its plaintext bytes.

    ``private_key`` is one RSA private key (or its PEM), or several keys to try in turn, as the
    controller tries every key it holds. Raises :class:`UnsealError` when the text is not a
    sealed value or when no key opens it for this namespace, name and scope.
    """
    if scope not in SCOPES:
        raise ParameterError([f"scope {scope!r} is not one of {', '.join(SCOPES)}"], "unsealing")
    keys = _as_private_keys(private_key)

    # Split the blob: length of the wrapped key, the wrapped key, the GCM ciphertext and tag.
    try:
        blob = base64.b64decode(sealed, validate=True)
    except (binascii.Error, ValueError):
        raise UnsealError("the sealed value is not valid base64") from None
    if len(blob) < 2:
        raise UnsealError("SealedSecret data is too short")
    wrapped_len = int.from_bytes(blob[:2], "big")
    if len(blob) < 2 + wrapped_len:
        raise UnsealError("SealedSecret data is too short")
    wrapped, sealed_data = blob[2 : 2 + wrapped_len], blob[2 + wrapped_len :]

    # Try every key; a wrong key, namespace, name or scope all fail the same way.
    label = scope_label(namespace, name, scope)
    for key in keys:
        try:
            session_key = key.decrypt(wrapped, _oaep(label))
            return AESGCM(session_key).decrypt(_ZERO_NONCE, sealed_data, None)
        except (ValueError, InvalidTag):
            continue
    raise UnsealError("no key could decrypt secret")


# ---------------------------------------------------------------------------------------------
# SealedSecret manifests


def sealed_secret(
    name: str,
    namespace: str,
    data: Mapping[str, bytes | str],
    cert_pem: bytes | str,
    *,
    scope: str = "strict",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
    secret_type: str = "Opaque",
) -> dict[str, Any]:
    """A SealedSecret manifest for Secret ``namespace/name``, shaped as kubeseal writes it.

    Every value of ``data`` is sealed on its own with the controller certificate ``cert_pem``.
    The scope annotations go on the SealedSecret's own metadata (which the controller reads)
    and, as kubeseal copies the input Secret's metadata, on the template's too. ``labels`` and
    ``annotations`` become the unsealed Secret's. The result holds no plaintext: safe to commit.
    """
    check_scope(scope, namespace, name)
    check_not_expired(cert_pem)
    key = load_public_key(cert_pem)

    # The scope comes from ``scope`` alone; copies of applied objects would carry values.
    dropped = (*_LAST_APPLIED, ANNOTATION_NAMESPACE_WIDE, ANNOTATION_CLUSTER_WIDE)
    template_annotations = {k: v for k, v in (annotations or {}).items() if k not in dropped}
    template_annotations.update(scope_annotations(scope))

    # Field order follows kubeseal's output, so a diff against its files stays small.
    template_metadata: dict[str, Any] = {}
    if template_annotations:
        template_metadata["annotations"] = dict(sorted(template_annotations.items()))
    template_metadata["creationTimestamp"] = None
    if labels:
        template_metadata["labels"] = dict(sorted(labels.items()))
    template_metadata["name"] = name
    template_metadata["namespace"] = namespace

    metadata: dict[str, Any] = {}
    if scope_annotations(scope):
        metadata["annotations"] = scope_annotations(scope)
    metadata.update({"creationTimestamp": None, "name": name, "namespace": namespace})

    encrypted = {
        key_name: seal_value(key, value, namespace=namespace, name=name, scope=scope)
        for key_name, value in sorted(data.items())
    }
    log.debug("sealed %d value(s) for %s/%s (%s)", len(encrypted), namespace, name, scope)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "encryptedData": encrypted,
            "template": {"metadata": template_metadata, "type": secret_type},
        },
    }


# ---------------------------------------------------------------------------------------------
# The controller's certificate, and the command line


def fetch_certificate(
    api_client: Any,
    *,
    namespace: str = "kube-system",
    service: str = "sealed-secrets",
    port: str = "8080",
) -> bytes:
    """The controller's certificate (PEM), fetched through the API server's service proxy.

    ``api_client`` is a ``kubernetes.client.ApiClient``. The request is ``GET /v1/cert.pem`` on
    ``http:SERVICE:PORT`` in ``namespace``, as kubeseal makes it; no port-forward is needed.
    Raises :class:`TargetError` with the API server's answer when that fails.
    """
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api_client)
    target = f"http:{service}:{port}"
    try:
        # Raw bytes: the generated client would otherwise try to decode the PEM as a str.
        response = core.connect_get_namespaced_service_proxy_with_path(
            name=target, namespace=namespace, path="v1/cert.pem", _preload_content=False
        )
        try:
            body = response.data
        finally:
            response.release_conn()
    except ApiException as exc:
        raise TargetError(
            f"cannot fetch the Sealed Secrets certificate from service {namespace}/{service} "
            f"port {port}: {exc.status} {exc.reason}"
        ) from None
    if b"-----BEGIN CERTIFICATE-----" not in body:
        raise TargetError(
            f"service {namespace}/{service} port {port} answered /v1/cert.pem without a certificate"
        )
    load_public_key(body)
    return body


def seal_cli(
    cert_path: str | os.PathLike, namespace: str, name: str, scope: str, value: bytes
) -> str:
    """What ``python -m runbook_lib seal`` prints: ``value`` sealed with the certificate file.

    ``namespace`` and ``name`` are the Secret's (a cluster-wide value may leave them empty).
    """
    path = Path(cert_path)
    try:
        cert_pem = path.read_bytes()
    except OSError as exc:
        raise ParameterError([f"cannot read certificate {path}: {exc.strerror}"], "seal") from None
    check_not_expired(cert_pem)
    return seal_value(
        load_public_key(cert_pem),
        value,
        namespace=namespace or None,
        name=name or None,
        scope=scope,
    )
