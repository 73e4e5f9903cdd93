"""Secret sources and scrubbing."""

import base64
import logging
import os
import stat
from urllib.parse import quote

import pytest

from runbook_lib import redact, secret_sources
from runbook_lib.errors import ParameterError


def test_source_syntax():
    for good in ("env:A", "file:/x/y", "generate", "none", "env:A | generate",
                 "arn:aws:secretsmanager:us-west-2:123456789012:secret:db-pass-AbCdEf#password"):
        secret_sources.check_source(good)
    for bad in ("hunter2", "env:", "generate | env:A", "env:A | none | generate", "file:"):
        with pytest.raises(ValueError) as caught:
            secret_sources.check_source(bad)
        assert bad not in str(caught.value) or bad in ("env:", "file:")


def test_resolution_order_and_generate(tmp_path, monkeypatch):
    store = secret_sources.SecretStore(tmp_path / "state" / "generated.json")
    monkeypatch.delenv("RB_TEST_PW", raising=False)
    first = secret_sources.resolve("env:RB_TEST_PW | generate", key="pw", store=store)
    again = secret_sources.resolve("env:RB_TEST_PW | generate", key="pw", store=store)
    assert first == again and len(first) >= 24
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    monkeypatch.setenv("RB_TEST_PW", "from-the-environment")
    assert secret_sources.resolve("env:RB_TEST_PW | generate", key="pw",
                                  store=store) == "from-the-environment"
    assert secret_sources.resolve("none", key="k", store=store) is None


def test_missing_source_names_the_source_not_a_value(tmp_path, monkeypatch):
    monkeypatch.delenv("RB_MISSING", raising=False)
    store = secret_sources.SecretStore(tmp_path / "g.json")
    with pytest.raises(ParameterError) as caught:
        secret_sources.resolve("env:RB_MISSING | file:/nonexistent/pw", key="pw", store=store)
    assert "RB_MISSING is not set" in str(caught.value)


def test_file_source_refuses_record_dirs(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    (records / "pw").write_text("a-password-in-a-record\n")
    (tmp_path / "pw").write_text("a-password-outside\n")
    store = secret_sources.SecretStore(tmp_path / "g.json")
    assert secret_sources.resolve(f"file:{tmp_path / 'pw'}", key="pw", store=store,
                                  forbidden_dirs=[records]) == "a-password-outside"
    with pytest.raises(ParameterError):
        secret_sources.resolve(f"file:{records / 'pw'}", key="pw", store=store,
                               forbidden_dirs=[records])


def test_scrub_covers_encodings():
    value = "S3cret/with+odd=chars@:"
    redact.register(value)
    url = f"postgresql://role:{quote(value, safe='')}@host:5432/db"
    redact.register(url)
    for text in (value, quote(value, safe=""), base64.b64encode(value.encode()).decode(),
                 base64.b64encode(url.encode()).decode(),
                 base64.b64encode(b"prefix-" + url.encode()).decode()):
        assert value not in redact.scrub(f"before {text} after")
        assert text not in redact.scrub(f"before {text} after")


def test_logging_filter_scrubs(caplog):
    redact.register("another-secret-value")
    redact.install()
    logger = logging.getLogger("runbook_lib.test")
    with caplog.at_level(logging.INFO, logger="runbook_lib.test"):
        logger.addFilter(redact._ScrubbingFilter())
        logger.info("connecting with %s", "another-secret-value")
    assert "another-secret-value" not in caplog.text
