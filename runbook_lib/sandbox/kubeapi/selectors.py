"""Label and field selectors, parsed from query strings and matched against objects.

Lists, watches and deletecollection of the sandbox API server filter with these. The grammar is
the one kubectl and client libraries send: label requirements ``k``, ``!k``, ``k=v``, ``k==v``,
``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>n``, ``k<n``; field requirements ``f=v``,
``f==v``, ``f!=v`` over the fields each kind supports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .status import ApiError, bad_request

Requirement = tuple[str, str, tuple[str, ...]]  # (key, operator, values)

_TOKEN = re.compile(r"\s*(\(|\)|,|!=|==|=|!|>|<|[^\s(),!=<>]+)")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a label selector string; raise a 400 ApiError when it is malformed."""
    if not text or not text.strip():
        return []
    tokens = _tokenize(text)
    requirements: list[Requirement] = []
    i = 0

    def fail(why: str) -> ApiError:
        return bad_request(f"unable to parse requirement: {why}")

    while i < len(tokens):
        # One requirement: [!]key [op values]
        if tokens[i] == "!":
            if i + 1 >= len(tokens) or not _is_word(tokens[i + 1]):
                raise fail("found '!', expected: identifier")
            requirements.append((tokens[i + 1], "!", ()))
            i += 2
        elif _is_word(tokens[i]):
            key = tokens[i]
            i += 1
            if i >= len(tokens) or tokens[i] == ",":
                requirements.append((key, "exists", ()))
            elif tokens[i] in ("=", "==", "!=", ">", "<"):
                op = "=" if tokens[i] == "==" else tokens[i]
                i += 1
                value = ""
                if i < len(tokens) and _is_word(tokens[i]):
                    value = tokens[i]
                    i += 1
                if op in (">", "<") and not re.fullmatch(r"-?\d+", value):
                    raise fail("for 'Gt', 'Lt' operators, the value must be an integer")
                requirements.append((key, op, (value,)))
            elif tokens[i] in ("in", "notin"):
                op = tokens[i]
                i += 1
                if i >= len(tokens) or tokens[i] != "(":
                    raise fail(f"found '{tokens[i] if i < len(tokens) else ''}', expected: '('")
                i += 1
                values: list[str] = []
                while i < len(tokens) and tokens[i] != ")":
                    if tokens[i] == ",":
                        i += 1
                        continue
                    values.append(tokens[i])
                    i += 1
                if i >= len(tokens):
                    raise fail("found '', expected: ')'")
                i += 1
                requirements.append((key, op, tuple(values)))
            else:
                raise fail(f"found '{tokens[i]}', expected: in, notin, =, ==, !=, gt, lt")
        else:
            raise fail(f"found '{tokens[i]}', expected: !, identifier, or 'end of string'")
        # Requirements are separated by commas.
        if i < len(tokens):
            if tokens[i] != ",":
                raise fail(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    for key, _, _ in requirements:
        _check_label_key(key)
    return requirements


def _tokenize(text: str) -> list[str]:
    tokens = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise bad_request(f"unable to parse requirement: unexpected input {text[pos:]!r}")
        tokens.append(m.group(1))
        pos = m.end()
    return tokens


def _is_word(token: str) -> bool:
    return token not in ("(", ")", ",", "!=", "==", "=", "!", ">", "<")


def _check_label_key(key: str) -> None:
    name = key.rsplit("/", 1)[-1]
    if not re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", name) or len(name) > 63:
        raise bad_request(
            f"unable to parse requirement: values[0][{key}]: Invalid value: \"{key}\": name part "
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character"
        )


def labels_match(requirements: list[Requirement], labels: dict[str, str] | None) -> bool:
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        value = labels.get(key)
        if op == "exists":
            ok = present
        elif op == "!":
            ok = not present
        elif op == "=":
            ok = present and value == values[0]
        elif op == "!=":
            ok = not present or value != values[0]
        elif op == "in":
            ok = present and value in values
        elif op == "notin":
            ok = not present or value not in values
        elif op in (">", "<"):
            try:
                number = int(value) if present else None
            except ValueError:
                number = None
            limit = int(values[0])
            ok = number is not None and (number > limit if op == ">" else number < limit)
        else:
            ok = False
        if not ok:
            return False
    return True


def selector_from_label_selector(selector: dict[str, Any] | None) -> list[Requirement]:
    """Requirements from a ``metav1.LabelSelector`` (matchLabels / matchExpressions)."""
    if not selector:
        return []
    reqs: list[Requirement] = []
    for key, value in (selector.get("matchLabels") or {}).items():
        reqs.append((key, "=", (str(value),)))
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(expr.get("operator", ""))
        if op:
            reqs.append((expr.get("key", ""), op, tuple(expr.get("values") or ())))
    return reqs


# Fields each built-in kind can be selected by (besides metadata.name and metadata.namespace).
_FIELDS: dict[tuple[str, str], dict[str, Callable[[dict[str, Any]], Any]]] = {
    ("", "pods"): {
        "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
        "spec.restartPolicy": lambda o: o.get("spec", {}).get("restartPolicy", ""),
        "spec.schedulerName": lambda o: o.get("spec", {}).get("schedulerName", ""),
        "spec.serviceAccountName": lambda o: o.get("spec", {}).get("serviceAccountName", ""),
        "spec.hostNetwork": lambda o: str(bool(o.get("spec", {}).get("hostNetwork"))).lower(),
        "status.phase": lambda o: o.get("status", {}).get("phase", ""),
        "status.podIP": lambda o: o.get("status", {}).get("podIP", ""),
        "status.nominatedNodeName": lambda o: o.get("status", {}).get("nominatedNodeName", ""),
    },
    ("", "events"): {
        "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind", ""),
        "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace", ""),
        "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name", ""),
        "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid", ""),
        "involvedObject.apiVersion": lambda o: o.get("involvedObject", {}).get("apiVersion", ""),
        "involvedObject.resourceVersion":
            lambda o: o.get("involvedObject", {}).get("resourceVersion", ""),
        "involvedObject.fieldPath": lambda o: o.get("involvedObject", {}).get("fieldPath", ""),
        "reason": lambda o: o.get("reason", ""),
        "reportingComponent": lambda o: o.get("reportingComponent", ""),
        "source": lambda o: o.get("source", {}).get("component", ""),
        "type": lambda o: o.get("type", ""),
    },
    ("", "secrets"): {"type": lambda o: o.get("type", "")},
    ("", "namespaces"): {"status.phase": lambda o: o.get("status", {}).get("phase", "")},
    ("", "nodes"): {
        "spec.unschedulable": lambda o: str(bool(o.get("spec", {}).get("unschedulable"))).lower()
    },
    ("", "services"): {"spec.clusterIP": lambda o: o.get("spec", {}).get("clusterIP", ""),
                       "spec.type": lambda o: o.get("spec", {}).get("type", "")},
    ("apps", "replicasets"): {"status.replicas": lambda o: str(o.get("status", {})
                                                                  .get("replicas", 0))},
    ("batch", "jobs"): {"status.successful": lambda o: str(o.get("status", {})
                                                              .get("succeeded", 0))},
}

FieldRequirement = tuple[Callable[[dict[str, Any]], Any], str, str]


def parse_field_selector(text: str | None, resource_key: tuple[str, str]) -> list[FieldRequirement]:
    """Parse a field selector for one resource; unknown fields are a 400 as on a real server."""
    if not text or not text.strip():
        return []
    supported = _FIELDS.get(resource_key, {})
    requirements: list[FieldRequirement] = []
    for part in _split_unescaped(text):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!]+)(!=|==|=)(.*)", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        field_name, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if field_name == "metadata.name":
            getter = _metadata_name
        elif field_name == "metadata.namespace":
            getter = _metadata_namespace
        elif field_name in supported:
            getter = supported[field_name]
        else:
            raise bad_request(f"field label not supported: {field_name}")
        requirements.append((getter, "!=" if op == "!=" else "=", value.replace("\\,", ",")))
    return requirements


def _metadata_name(obj: dict[str, Any]) -> str:
    return obj.get("metadata", {}).get("name", "")


def _metadata_namespace(obj: dict[str, Any]) -> str:
    return obj.get("metadata", {}).get("namespace", "")


def _split_unescaped(text: str) -> list[str]:
    return re.split(r"(?<!\\),", text)


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    for getter, op, value in requirements:
        actual = getter(obj)
        actual = "" if actual is None else str(actual)
        if (actual == value) != (op == "="):
            return False
    return True


def field_name_equals(requirements_text: str | None) -> str | None:
    """The name a ``metadata.name=X`` field selector pins, if any (a fast path for lists)."""
    if not requirements_text:
        return None
    for part in _split_unescaped(requirements_text):
        m = re.fullmatch(r"\s*metadata\.name\s*(==|=)\s*(.*?)\s*", part)
        if m:
            return m.group(2)
    return None
