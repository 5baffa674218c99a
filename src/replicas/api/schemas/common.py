"""Shapes shared by every resource, and the helpers that turn store rows into wire dicts."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict


class Request(BaseModel):
    """Base for request bodies: unknown fields are ignored, as the hosted API does."""

    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    error: str
    details: str | None = None


class SuccessResponse(BaseModel):
    success: bool = True


def iso(value: datetime | None) -> str | None:
    """ISO-8601 in UTC with a `Z`; SQLite hands datetimes back without a zone, so add it."""
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def sid(value) -> str | None:
    return None if value is None else str(value)


ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "Invalid request"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "Conflict"},
}
