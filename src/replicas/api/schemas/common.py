"""Shapes shared by every resource, and the helpers that turn store rows into wire dicts."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from replicas.storable import unstorable
from replicas.store.models import iso  # noqa: F401 - the wire form of datetimes, for the routers


class Request(BaseModel):
    """Base for request bodies: unknown fields are ignored, as the hosted API does. Anything in the body
    that could not be stored or sent back as sent (a NUL character, an unpaired surrogate, NaN, absurd
    nesting; see `replicas.storable`) is a 400 naming where, before any handler runs."""

    model_config = ConfigDict(extra="ignore")
    nul_allowed: ClassVar[bool] = False  # a body that is never stored (terminal input) may carry NUL

    @model_validator(mode="before")
    @classmethod
    def _storable(cls, data: Any) -> Any:
        if problem := unstorable(data, nul_allowed=cls.nul_allowed):
            raise PydanticCustomError("unstorable", problem)
        return data


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
