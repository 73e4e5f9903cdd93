"""The sandbox's image registry: Dockerfile parsing, build digests, add-on images, PATH."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from runbook_lib.sandbox.images import (
    DockerfileError,
    ImageResolver,
    bin_path,
    normalize_ref,
    parse_dockerfile,
    postgres_bin_dir,
)

CTX = Path("/build/ctx")


def parse(text: str):
    return parse_dockerfile(text, CTX)


def test_exec_form_cmd_workdir_env_user_expose():
    c = parse(
        """
        # syntax=docker/dockerfile:1
        FROM python:3.11-slim
        ENV PORT=8080 GREETING="hello world" \\
            EMPTY=
        WORKDIR /app
        COPY . .
        USER app
        EXPOSE 8080/tcp 9000-9001
        CMD ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8080"]
        """
    )
    assert c.entrypoint == []
    assert c.cmd == ["uvicorn", "main:app", "--host", "0.0.0.0", "--port", "8080"]
    assert c.workdir == CTX
    assert c.env == {"PORT": "8080", "GREETING": "hello world", "EMPTY": ""}
    assert c.user == "app"
    assert c.exposed_ports == [8080, 9000, 9001]
    assert c.sandbox_addon is False


def test_shell_forms():
    c = parse('FROM alpine\nCMD echo "hi $HOME"\n')
    assert c.cmd == ["/bin/sh", "-c", 'echo "hi $HOME"']
    # A shell-form ENTRYPOINT ignores CMD, as Docker does.
    c = parse('FROM alpine\nENTRYPOINT dbos migrate\nCMD ["ignored"]\n')
    assert c.entrypoint == ["/bin/sh", "-c", "dbos migrate"]
    assert c.cmd == []
    # SHELL changes the shell of later shell forms.
    c = parse('FROM alpine\nSHELL ["/bin/bash", "-lc"]\nCMD run it\n')
    assert c.cmd == ["/bin/bash", "-lc", "run it"]


def test_entrypoint_and_cmd_together_and_inheritance():
    c = parse('FROM alpine\nCMD ["--help"]\nENTRYPOINT ["dbos"]\n')
    assert (c.entrypoint, c.cmd) == (["dbos"], ["--help"])
    # A later stage built FROM an earlier one inherits; a new ENTRYPOINT drops inherited CMD.
    c = parse('FROM alpine AS base\nCMD ["x"]\nENV A=1\nFROM base\nENTRYPOINT ["dbos"]\n')
    assert (c.entrypoint, c.cmd, c.env) == (["dbos"], [], {"A": "1"})


def test_only_the_final_stage_counts_and_heredocs_are_skipped():
    c = parse(
        """
        FROM golang:1.25 AS builder
        WORKDIR /src
        CMD ["builder-only"]
        RUN <<EOF
        CMD ["inside a heredoc"]
        EOF
        FROM alpine:latest
        COPY --from=builder /go/bin/dbos /usr/local/bin/dbos
        ENTRYPOINT ["dbos"]
        """
    )
    assert c.entrypoint == ["dbos"]
    assert c.cmd == []
    assert c.workdir == CTX


def test_arg_and_variable_substitution():
    c = parse(
        """
        ARG BASE=3.11
        FROM python:${BASE}-slim
        ARG HOME_DIR=/srv
        ENV APP=${HOME_DIR}/app OTHER=${UNSET:-fallback} ALT=${HOME_DIR:+set}
        ENV SAME_LINE=$APP
        WORKDIR $APP
        """
    )
    assert c.env["APP"] == "/srv/app"
    assert c.env["OTHER"] == "fallback"
    assert c.env["ALT"] == "set"
    assert c.env["SAME_LINE"] == "/srv/app"
    assert c.workdir == CTX


def test_legacy_env_form_and_escapes():
    c = parse('FROM alpine\nENV GREETING hello there\nENV Q="a \\"quoted\\" word" S=\'$NOT\'\n')
    assert c.env["GREETING"] == "hello there"
    assert c.env["Q"] == 'a "quoted" word'
    assert c.env["S"] == "$NOT"


def test_paths_into_the_copied_context_are_mapped(tmp_path):
    (tmp_path / "src").mkdir()
    c = parse_dockerfile(
        "FROM python\nCOPY . /app\nWORKDIR /app/src\nENV PATH=/app/.venv/bin:$PATH\n"
        'CMD ["python", "/app/main.py", "/application"]\n',
        tmp_path,
    )
    assert c.workdir == tmp_path / "src"
    assert c.cmd == ["python", f"{tmp_path}/main.py", "/application"]
    assert c.env["PATH"].startswith(f"{tmp_path}/.venv/bin:")
    # The unknown base image's PATH is played by the sandbox's.
    assert c.env["PATH"].endswith(bin_path())


def test_line_continuations_and_comments_inside_them():
    c = parse('FROM alpine\nCMD ["a", \\\n# a comment\n     "b"]\n')
    assert c.cmd == ["a", "b"]


def test_backtick_escape_directive():
    c = parse("# escape=`\nFROM alpine\nENV A=1 `\n    B=2\n")
    assert c.env == {"A": "1", "B": "2"}


def test_bad_dockerfiles():
    with pytest.raises(DockerfileError):
        parse("CMD ['no FROM']\n")
    with pytest.raises(DockerfileError):
        parse("# only a comment\n")


@pytest.mark.parametrize(
    ("ref", "expected"),
    [
        ("nginx", ("docker.io/library/nginx", "latest", None)),
        ("bitnami/sealed-secrets-controller:0.36.1",
         ("docker.io/bitnami/sealed-secrets-controller", "0.36.1", None)),
        ("ghcr.io/kedacore/keda:2.18.0", ("ghcr.io/kedacore/keda", "2.18.0", None)),
        ("localhost:5000/x", ("localhost:5000/x", "latest", None)),
        ("1.dkr.ecr.us-west-2.amazonaws.com/app@sha256:ab",
         ("1.dkr.ecr.us-west-2.amazonaws.com/app", None, "sha256:ab")),
    ],
)  # fmt: skip
def test_normalize_ref(ref, expected):
    assert normalize_ref(ref) == expected


def _context(root: Path) -> Path:
    ctx = root / "ctx"
    ctx.mkdir()
    (ctx / "main.py").write_text("print('hi')\n")
    (ctx / "cache").mkdir()
    (ctx / "cache" / "junk.bin").write_bytes(b"\0" * 10)
    (ctx / "Dockerfile").write_text(
        'FROM python:3.11-slim\nWORKDIR /app\nCOPY . .\nCMD ["python", "main.py"]\n'
    )
    return ctx


def test_record_build_digest_is_deterministic_and_follows_dockerignore(tmp_path):
    ctx = _context(tmp_path)
    reg = ImageResolver(tmp_path / "sandbox")
    ref = "123456789012.dkr.ecr.us-west-2.amazonaws.com/dbos-app:latest"
    first = reg.record_build(ref, ctx, ctx / "Dockerfile")
    assert first.startswith("sha256:") and len(first) == 71
    assert reg.record_build(ref, ctx, ctx / "Dockerfile") == first

    (ctx / "cache" / "junk.bin").write_bytes(b"\1")
    changed = reg.record_build(ref, ctx, ctx / "Dockerfile")
    assert changed != first
    (ctx / ".dockerignore").write_text("# comment\ncache\n")
    ignored = reg.record_build(ref, ctx, ctx / "Dockerfile")
    (ctx / "cache" / "junk.bin").write_bytes(b"\2")
    assert reg.record_build(ref, ctx, ctx / "Dockerfile") == ignored

    data = json.loads((tmp_path / "sandbox" / "images.json").read_text())
    assert list(data["images"]) == [ref]


def test_resolve_built_image_by_tag_and_by_pushed_digest(tmp_path):
    ctx = _context(tmp_path)
    reg = ImageResolver(tmp_path / "sandbox")
    ref = "123456789012.dkr.ecr.us-west-2.amazonaws.com/dbos-app:v1"
    reg.record_build(ref, ctx, ctx / "Dockerfile")
    config = reg.resolve(ref)
    assert config is not None
    assert config.cmd == ["python", "main.py"]
    assert config.workdir == ctx.resolve()

    repo = ref.rsplit(":", 1)[0]
    assert reg.resolve(f"{repo}@sha256:{'0' * 64}") is None
    reg.record_push(ref, "sha256:" + "1" * 64)
    assert reg.resolve(f"{repo}@sha256:{'1' * 64}") == config
    # A second resolver (the daemon's) reads the same file.
    assert ImageResolver(tmp_path / "sandbox").resolve(ref) == config
    assert reg.resolve(f"{repo}:other-tag") is None
    assert reg.resolve("docker.io/library/postgres:16") is None


@pytest.mark.parametrize(
    ("image", "module"),
    [
        ("docker.io/bitnami/sealed-secrets-controller:0.36.1", "sealed_secrets"),
        ("bitnami/sealed-secrets-controller:0.30.0", "sealed_secrets"),
        ("ghcr.io/kedacore/keda:2.18.0", "keda"),
        ("ghcr.io/kedacore/keda-metrics-apiserver:2.18.0", "idle"),
        ("ghcr.io/kedacore/keda-admission-webhooks:2.18.0", "idle"),
    ],
)
def test_addon_images(tmp_path, image, module):
    config = ImageResolver(tmp_path).resolve(image)
    assert config is not None and config.sandbox_addon
    assert config.entrypoint == [sys.executable, "-m", f"runbook_lib.sandbox.addons.{module}"]
    assert config.workdir is not None and (config.workdir / "runbook_lib").is_dir()


def test_bin_path_order():
    parts = bin_path().split(":")
    assert parts[0] == str(Path(sys.executable).parent)
    assert parts[1] == str(postgres_bin_dir())
    assert (Path(parts[1]) / "psql").exists()
    assert parts[-2:] == ["/usr/bin", "/bin"]


def test_workdir_follows_a_directory_copy(tmp_path):
    """``COPY migrate/ /migrate/`` then ``WORKDIR /migrate`` runs in <context>/migrate."""
    from runbook_lib.sandbox.images import parse_dockerfile

    (tmp_path / "migrate").mkdir()
    (tmp_path / "migrate" / "dbos-config.yaml").write_text("x: 1\n")
    text = "FROM python:3.11-slim\nCOPY migrate/ /migrate/\nWORKDIR /migrate\nENTRYPOINT [\"dbos\"]\n"
    assert parse_dockerfile(text, tmp_path).workdir == tmp_path / "migrate"
