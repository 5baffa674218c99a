"""The SDK's one exception tree: every refusal of the API, built from the contract's body
`{"error": "...", "details": "..."|null}` and the HTTP status.

    ReplicasError                 any error answer (status, error, details)
    ├── BadRequestError           400 (and 413, 422: the request itself is wrong)
    ├── AuthenticationError       401 missing or invalid key
    ├── PermissionDeniedError     403
    ├── NotFoundError             404
    ├── ConflictError             409
    ├── RateLimitError            429 (retry_after: seconds, from Retry-After)
    ├── ServerError               5xx (502 workspace unreachable, 503 overloaded or waking)
    └── APIConnectionError        no answer at all (status None): refused, timed out, cut off

These are the client's errors, apart from the server's own tree in `replicas.errors`: the SDK runs where
the server's code is not installed, and must not depend on it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx


class ReplicasError(Exception):
    """The API said no: `status` (None when nothing answered), `error` (the message) and `details`."""

    def __init__(self, status: int | None, error: str, details: str | None = None, *,
                 headers: httpx.Headers | None = None):
        self.status = status
        self.error = error
        self.details = details
        self.headers = headers or httpx.Headers()
        super().__init__(error if not details else f"{error}: {details}")


class BadRequestError(ReplicasError):
    """400: the request is invalid (the details name the field)."""


class AuthenticationError(ReplicasError):
    """401: no key, or one the server does not know."""


class PermissionDeniedError(ReplicasError):
    """403: authenticated, but not allowed."""


class NotFoundError(ReplicasError):
    """404: no such resource in this organization."""


class ConflictError(ReplicasError):
    """409: the resource's state refuses it (a name taken, a workspace in error, ...)."""


class RateLimitError(ReplicasError):
    """429: too many requests; `retry_after` is the server's advice in seconds, if it gave one."""

    @property
    def retry_after(self) -> float | None:
        return retry_after_seconds(self.headers)


class ServerError(ReplicasError):
    """5xx: the server (or the workspace behind it) failed or is unavailable."""


class APIConnectionError(ReplicasError):
    """The server could not be reached or the connection broke; `status` is None."""

    def __init__(self, error: str, details: str | None = None):
        super().__init__(None, error, details)


_BY_STATUS: dict[int, type[ReplicasError]] = {
    400: BadRequestError, 401: AuthenticationError, 403: PermissionDeniedError, 404: NotFoundError,
    409: ConflictError, 413: BadRequestError, 422: BadRequestError, 429: RateLimitError,
}


def error_for(status: int, body: Any, headers: httpx.Headers | None = None) -> ReplicasError:
    """The exception for an error answer: the contract's body when it is one, else the status's reason."""
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        error, details = body["error"], body.get("details")
        details = details if details is None or isinstance(details, str) else str(details)
    else:
        error = httpx.codes.get_reason_phrase(status) or f"HTTP {status}"
        details = body if isinstance(body, str) and body else None
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ReplicasError)
    return cls(status, error, details, headers=headers)


def error_from_response(response: httpx.Response) -> ReplicasError:
    """`error_for` a read response (its body parsed as JSON when it is JSON)."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text[:2000]
    return error_for(response.status_code, body, response.headers)


def retry_after_seconds(headers: httpx.Headers) -> float | None:
    """`Retry-After` in seconds (the delta-seconds form; an HTTP date is read as now)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
