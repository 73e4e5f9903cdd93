"""How the sandbox kubelet turns a container spec into a local command line and environment.

Pure functions, used by the pod worker and tested on their own:

- :func:`container_argv` applies the Kubernetes rule for ``command``/``args`` over the image's
  ENTRYPOINT/CMD (an explicit ``command`` replaces ENTRYPOINT and drops CMD; ``args`` replace
  CMD).
- :func:`expand` is Kubernetes' ``$(VAR)`` expansion: a defined variable is substituted, an
  undefined reference stays as written, ``$$`` yields a literal ``$``.
- :func:`resolve_env` builds the container environment in Kubernetes order (``envFrom`` first,
  then ``env``, each literal expanded against the variables defined before it), reading Secrets
  and ConfigMaps through callables; a missing one raises :class:`ContainerConfigError` with the
  message Kubernetes shows under CreateContainerConfigError.
- :func:`rewrite_mounts` maps a container's ``mountPath`` prefixes in a string onto the local
  directories that stand in for its volumes.

Values resolved here may be secret: nothing in this module logs them or puts them in a message.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Awaitable, Callable
from typing import Any

Fetch = Callable[[str, str], Awaitable[dict | None]]  # (namespace, name) -> object or None


class ContainerConfigError(Exception):
    """The container cannot be configured yet (a missing Secret, ConfigMap or key)."""


def container_argv(container: dict, image: Any | None) -> list[str] | None:
    """The argv Kubernetes would run, or None when neither the spec nor the image names one."""
    command = container.get("command")
    args = container.get("args")
    entrypoint = list(getattr(image, "entrypoint", None) or [])
    cmd = list(getattr(image, "cmd", None) or [])
    if command:
        argv = list(command) + list(args or [])
    elif args is not None and len(args) > 0:
        argv = entrypoint + list(args)
    else:
        argv = entrypoint + cmd
    return argv or None


def expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion of ``text`` against ``env``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            end = text.find(")", i + 2)
            if end < 0:
                out.append(text[i:])
                break
            name = text[i + 2:end]
            out.append(env[name] if name in env else text[i:end + 1])
            i = end + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def _decode(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", errors="replace")


def _field_value(pod: dict, path: str) -> str:
    metadata = pod.get("metadata") or {}
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (metadata.get(match.group(1)) or {}).get(match.group(2), "")
    simple = {
        "metadata.name": metadata.get("name", ""),
        "metadata.namespace": metadata.get("namespace", ""),
        "metadata.uid": metadata.get("uid", ""),
        "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
        "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "default"),
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
    }
    if path in simple:
        return simple[path]
    raise ContainerConfigError(f'unsupported fieldPath "{path}"')


def _resource_value(container: dict, path: str) -> str:
    # Limits are not enforced in the sandbox; report what the spec says, as a plain quantity.
    section, _, resource = path.partition(".")
    value = ((container.get("resources") or {}).get(section) or {}).get(resource)
    return str(value) if value is not None else "0"


async def resolve_env(container: dict, pod: dict, get_secret: Fetch,
                      get_configmap: Fetch) -> dict[str, str]:
    """The container's environment as Kubernetes builds it (without image or sandbox variables)."""
    namespace = (pod.get("metadata") or {}).get("namespace", "default")
    env: dict[str, str] = {}
    cache: dict[tuple[str, str], dict | None] = {}

    async def load(kind: str, name: str) -> dict | None:
        if (kind, name) not in cache:
            fetch = get_secret if kind == "secret" else get_configmap
            cache[(kind, name)] = await fetch(namespace, name)
        return cache[(kind, name)]

    async def source_data(kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = await load(kind, name)
        if obj is None:
            if optional:
                return None
            raise ContainerConfigError(f'{kind} "{name}" not found')
        # Secret data is base64; ConfigMap data is plain text and its binaryData base64.
        if kind == "secret":
            data = {k: _decode(v) for k, v in (obj.get("data") or {}).items()}
            data.update(obj.get("stringData") or {})
        else:
            data = {k: str(v) for k, v in (obj.get("data") or {}).items()}
            data.update({k: _decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    # envFrom first, in order; explicit env entries come after and win.
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, field in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = source.get(field)
            if ref:
                data = await source_data(kind, ref.get("name", ""), bool(ref.get("optional")))
                for k, v in (data or {}).items():
                    env[prefix + k] = v

    for entry in container.get("env") or []:
        name = entry.get("name", "")
        if "valueFrom" not in entry:
            env[name] = expand(entry.get("value", "") or "", env)
            continue
        source = entry["valueFrom"]
        if "secretKeyRef" in source or "configMapKeyRef" in source:
            kind, ref = (("secret", source["secretKeyRef"]) if "secretKeyRef" in source
                         else ("configmap", source["configMapKeyRef"]))
            optional = bool(ref.get("optional"))
            data = await source_data(kind, ref.get("name", ""), optional)
            if data is None:
                continue
            key = ref.get("key", "")
            if key not in data:
                if optional:
                    continue
                label = "Secret" if kind == "secret" else "ConfigMap"
                raise ContainerConfigError(
                    f"couldn't find key {key} in {label} {namespace}/{ref.get('name', '')}")
            env[name] = data[key]
        elif "fieldRef" in source:
            env[name] = _field_value(pod, source["fieldRef"].get("fieldPath", ""))
        elif "resourceFieldRef" in source:
            env[name] = _resource_value(container, source["resourceFieldRef"].get("resource", ""))
    return env


def rewrite_mounts(text: str, mounts: list[tuple[str, str]]) -> str:
    """Replace each ``mountPath`` (as a whole path prefix) in ``text`` by its local directory."""
    for mount_path, local in sorted(mounts, key=lambda m: -len(m[0])):
        mount_path = mount_path.rstrip("/") or "/"
        if mount_path == "/":
            continue
        pattern = r"(?<![\w./-])" + re.escape(mount_path) + r"(?=/|$|[^\w.-])"
        text = re.sub(pattern, lambda _m, local=local: local, text)
    return text
