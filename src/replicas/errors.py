"""The one exception hierarchy. Each maps to the contract's error body in one place (api/errors.py).

    ReplicasError (500)
    ├── BadRequest (400)
    ├── Unauthorized (401)
    ├── Forbidden (403)
    ├── NotFound (404)
    ├── Conflict (409)
    ├── PayloadTooLarge (413)
    ├── TooManyRequests (429)
    ├── BadGateway (502)
    └── ServiceUnavailable (503)
"""

from __future__ import annotations


class ReplicasError(Exception):
    """An error a client should see as `{"error": ..., "details": ...}` with `status`."""

    status: int = 500
    default_message: str = "Internal server error"

    def __init__(self, error: str | None = None, details: str | None = None, *, headers=None):
        self.error = error or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.error if details is None else f"{self.error}: {details}")


class BadRequest(ReplicasError):
    status = 400
    default_message = "Bad request"


class Unauthorized(ReplicasError):
    status = 401
    default_message = "Invalid token"


class Forbidden(ReplicasError):
    status = 403
    default_message = "Forbidden"


class NotFound(ReplicasError):
    status = 404
    default_message = "Not found"


class Conflict(ReplicasError):
    status = 409
    default_message = "Conflict"


class PayloadTooLarge(ReplicasError):
    status = 413
    default_message = "Payload too large"


class TooManyRequests(ReplicasError):
    status = 429
    default_message = "Too many requests"


class BadGateway(ReplicasError):
    status = 502
    default_message = "Bad gateway"


class ServiceUnavailable(ReplicasError):
    status = 503
    default_message = "Service unavailable"
