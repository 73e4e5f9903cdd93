#!/usr/bin/env bash
# Set up everything the runbook and its tests need on a fresh machine, from the lock file.
# Safe to run again: what is already in place is kept. Used by `make rehearse` and `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.8
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# System tools: kubectl (the tests drive the sandbox with it too) and, for the browser test,
# Debian's Chromium. Installed only when missing, and only where we may (root, apt).
missing=()
command -v kubectl >/dev/null 2>&1 || missing+=(kubectl)
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} with apt-get"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "setup: please install ${missing[*]} (tests that need them will be skipped)" >&2
  fi
fi

# uv resolves nothing here: it installs exactly what requirements.lock pins.
if ! command -v uv >/dev/null 2>&1 || [ "$(uv --version | cut -d' ' -f2)" != "$UV_VERSION" ]; then
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "uv==$UV_VERSION"
fi
UV="$PYTHON -m uv"
command -v uv >/dev/null 2>&1 && UV=uv

stamp=.venv/.requirements.lock.sha256
want=$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x .venv/bin/python ]; then
  exit 0
fi
[ -x .venv/bin/python ] || $UV venv --quiet --python "$PYTHON" .venv
$UV pip sync --quiet --compile-bytecode --python .venv/bin/python requirements.lock
$UV pip install --quiet --python .venv/bin/python --no-deps -e .
echo "$want" > "$stamp"
echo "setup: .venv is ready"
