"""The two Dockerfiles: platform, stages, user, pins and the commands the sandbox runs."""

from __future__ import annotations

import re

import pytest
from app_harness import APP_DIR, REPO, image_command

DOCKERFILES = ["Dockerfile", "Dockerfile.migrate"]
REQUIREMENTS = {"Dockerfile": "requirements.txt", "Dockerfile.migrate": "requirements-migrate.txt"}


def instructions(name: str) -> list[str]:
    text = (APP_DIR / name).read_text()
    return [line for line in text.splitlines() if line and not line.startswith(("#", " "))]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dockerfile_shape(name):
    lines = instructions(name)
    froms = [line for line in lines if line.startswith("FROM ")]
    assert len(froms) == 2, "a build stage and a final stage"
    for line in froms:
        assert line.startswith("FROM --platform=linux/amd64 python:3.11.7-slim-bookworm")
    text = (APP_DIR / name).read_text()
    assert ":latest" not in text
    assert "--require-hashes" in text and "--only-binary=:all:" in text
    final = lines[lines.index(froms[-1]) :]
    assert not any(line.startswith("RUN ") for line in final), "no tools run in the final stage"
    user = [line for line in final if line.startswith("USER ")]
    assert len(user) == 1 and re.fullmatch(r"USER [1-9]\d*:[1-9]\d*", user[0])
    assert "PYTHONDONTWRITEBYTECODE=1" in text
    entrypoint = [line for line in final if line.startswith("ENTRYPOINT ")]
    assert len(entrypoint) == 1 and entrypoint[0].startswith('ENTRYPOINT ["')


@pytest.mark.parametrize("name", DOCKERFILES)
def test_requirements_match_the_project_lock(name):
    lock = {
        line.split("==")[0].lower(): line.split("==")[1].strip()
        for line in (REPO / "requirements.lock").read_text().splitlines()
        if "==" in line and not line.startswith(" ")
    }
    text = (APP_DIR / REQUIREMENTS[name]).read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", text, flags=re.MULTILINE)
    assert ("dbos", "3.4.0") in pins
    for package, version in pins:
        assert lock.get(package.lower()) == version, package
    hashed = re.findall(r"^\S+==\S+ \\\n    --hash=sha256:[0-9a-f]{64}", text, flags=re.MULTILINE)
    assert len(hashed) == len(pins), "every pin carries its hashes"


def test_commands_the_images_run():
    app = image_command(APP_DIR / "Dockerfile")
    assert app.argv[1:] == ["main.py"] and app.workdir == APP_DIR
    assert app.env["PYTHONDONTWRITEBYTECODE"] == "1"

    migrate = image_command(APP_DIR / "Dockerfile.migrate")
    assert migrate.argv[0].endswith("dbos") and len(migrate.argv) == 1
    assert migrate.workdir == APP_DIR / "migrate"
    config = (migrate.workdir / "dbos-config.yaml").read_text()
    assert "system_database_url: ${DBOS_SYSTEM_DATABASE_URL}" in config
    # No app name: an unset variable must fail, not fall back to SQLite.
    assert not re.search(r"^name:", config, flags=re.MULTILINE)
    # The migration image carries no application code.
    ignore = (APP_DIR / "Dockerfile.migrate.dockerignore").read_text().split()
    assert "*" in ignore and "!*.py" not in ignore
