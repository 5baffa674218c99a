"""Every error leaves the server as the contract's body `{"error": ..., "details": ...}`.

Validation failures answer 400 (not FastAPI's 422) and name the offending field in `details`.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from replicas.errors import ReplicasError

log = logging.getLogger("replicas.api")


def error_response(status: int, error: str, details: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse({"error": error, "details": details}, status_code=status, headers=headers)


def _location(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def describe_validation_errors(errors: list[dict]) -> tuple[str, str]:
    """Turn pydantic errors into (error, details); details names each field and what is wrong."""
    lines = []
    for err in errors:
        if err.get("type") == "json_invalid":
            return "Invalid JSON body", str(err.get("ctx", {}).get("error", "malformed JSON"))
        field = _location(tuple(err.get("loc", ())))
        lines.append(f"{field}: {err.get('msg', 'invalid')}")
    return "Invalid request", "; ".join(lines)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ReplicasError)
    async def _replicas_error(_request: Request, exc: ReplicasError):
        return error_response(exc.status, exc.error, exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError):
        error, details = describe_validation_errors(list(exc.errors()))
        return error_response(400, error, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        messages = {404: "Not found", 405: "Method not allowed"}
        detail = exc.detail if isinstance(exc.detail, str) else None
        error = messages.get(exc.status_code, detail or "Error")
        return error_response(exc.status_code, error, None if detail == error else detail, exc.headers)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception):
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "Internal server error")
