"""Shapes shared by every resource, and the helpers that turn store rows into wire dicts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from replicas.store.models import iso  # noqa: F401 - the wire form of datetimes, for the routers


class Request(BaseModel):
    """Base for request bodies: unknown fields are ignored, as the hosted API does."""

    model_config = ConfigDict(extra="ignore")


class ErrorBody(BaseModel):
    error: str
    details: str | None = None


class SuccessResponse(BaseModel):
    success: bool = True


def sid(value) -> str | None:
    return None if value is None else str(value)


ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "Invalid request"},
    401: {"model": ErrorBody, "description": "Missing or invalid API key"},
    404: {"model": ErrorBody, "description": "Not found"},
    409: {"model": ErrorBody, "description": "Conflict"},
}
