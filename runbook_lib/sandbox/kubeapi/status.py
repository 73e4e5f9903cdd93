"""Kubernetes ``Status`` bodies and the error that carries one.

Every refusal of the sandbox API server travels as an :class:`ApiError`, raised anywhere in the
request path and turned into the HTTP status code and the ``Status`` body a real kube-apiserver
sends: the same ``reason``, ``code``, ``details`` and message shapes, so that kubectl and the
official client report our errors exactly as they report a real cluster's.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API request: an HTTP code plus the ``Status`` body to send."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        name: str | None = None,
        group: str | None = None,
        kind: str | None = None,
        causes: list[dict[str, str]] | None = None,
        retry_after: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details: dict[str, Any] = {}
        if name is not None:
            self.details["name"] = name
        if group:
            self.details["group"] = group
        if kind is not None:
            self.details["kind"] = kind
        if causes:
            self.details["causes"] = causes
        if retry_after is not None:
            self.details["retryAfterSeconds"] = retry_after

    def body(self) -> dict[str, Any]:
        """The ``Status`` object for this error."""
        status: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            status["details"] = self.details
        return status


def qualified(resource: str, group: str) -> str:
    """The ``resource.group`` form a real server uses in messages (plain for the core group)."""
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified(resource, group)} "{name}" not found',
        name=name, group=group, kind=resource,
    )


def already_exists(resource: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{qualified(resource, group)} "{name}" already exists',
        name=name, group=group, kind=resource,
    )


def conflict(resource: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(resource, group)} "{name}": {why}',
        name=name, group=group, kind=resource,
    )


def stale(resource: str, group: str, name: str) -> ApiError:
    """The 409 a real server sends for an update carrying an old resourceVersion."""
    return conflict(
        resource, group, name,
        "the object has been modified; please apply your changes to the latest version "
        "and try again",
    )


def invalid(kind: str, group: str, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """A 422 Invalid. ``causes`` holds (reason, field, message) triples, in the real shapes:
    reason ``FieldValueInvalid`` / ``FieldValueRequired`` / ..., message such as
    ``Invalid value: "x": ...`` or ``Required value``."""
    parts = [f"{field}: {message}" if field else message for _, field, message in causes]
    if len(parts) == 1:
        summary = parts[0]
    else:
        summary = "[" + ", ".join(parts) + "]"
    return ApiError(
        422, "Invalid", f'{kind}{"." + group if group else ""} "{name}" is invalid: {summary}',
        name=name, group=group, kind=kind,
        causes=[
            {"reason": reason, "message": message, "field": field}
            for reason, field, message in causes
        ],
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested "
                       "resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        "the body of the request was in an unknown format - accepted media types include: "
        + ", ".join(accepted),
    )


def success(name: str, group: str, kind: str, uid: str | None) -> dict[str, Any]:
    """The ``Status`` a real server returns for a delete that removed the object at once."""
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    if uid:
        details["uid"] = uid
    return {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": details,
    }
