"""Shared fixtures of the sealing tests: the real Sealed Secrets vector and a generated key pair.

The vector (controller certificate and key, and kubeseal's SealedSecret) was made by the real
controller and kubeseal; it lives in the shared folder next to the project, or wherever
``SEALED_SECRETS_VECTOR`` points. Tests compare plaintexts, never print them: a failed
comparison shows only ``False``.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest
import yaml

from runbook_lib import sealing

VECTOR_PLAINTEXT = b"sealed-secrets-example"


@dataclass(frozen=True)
class Vector:
    cert_pem: bytes
    key_pem: bytes
    sealed_secret: dict

    @cached_property
    def key(self):
        """The controller's private key, loaded (and checked) once."""
        return sealing.load_private_key(self.key_pem)


def _vector_dir() -> Path:
    configured = os.environ.get("SEALED_SECRETS_VECTOR")
    if configured:
        return Path(configured)
    # The shared folder sits beside the project's checkout.
    return Path(__file__).resolve().parents[3] / "shared" / "vectors" / "sealed-secrets"


def same(a: bytes, b: bytes) -> bool:
    """Whether two plaintexts are equal, without either ever reaching an assertion message."""
    return hmac.compare_digest(a, b)


@pytest.fixture(scope="session")
def vector() -> Vector:
    folder = _vector_dir()
    if not (folder / "controller.key").exists():
        pytest.skip(f"the Sealed Secrets vector is not at {folder} (set SEALED_SECRETS_VECTOR)")
    return Vector(
        cert_pem=(folder / "controller.crt").read_bytes(),
        key_pem=(folder / "controller.key").read_bytes(),
        sealed_secret=yaml.safe_load((folder / "sealed-secret.yaml").read_text()),
    )


@pytest.fixture(scope="session")
def generated() -> tuple[bytes, bytes]:
    """One generated controller key pair for the session (a 4096-bit key takes about a second)."""
    return sealing.generate_controller_key()
