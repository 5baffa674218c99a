"""Logging of a control-plane process: plain text (the default) or one JSON object per line
(`REPLICAS_LOG_FORMAT=json`), each line carrying the request id, organization and replica of the request it
belongs to (contextvars, bound by the request middleware and the authentication dependency, inherited by the
tasks a request starts).

    logs.configure(settings)                       # `replicas serve`
    logs.bind(organization_id=str(org_id))         # adds to every line of the current request

Lines never carry secrets: nothing here logs request or response bodies, headers or query strings; the access
line names the route template (`/v1/replica/{replica_id}`), not the raw path, whose segments may be tokens.
"""

from __future__ import annotations

import contextvars
import logging
import traceback
from datetime import UTC, datetime

import orjson

CONTEXT: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("replicas_log_context", default=None)
TEXT_FORMAT = "%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"


def bind(**values: str | None) -> None:
    """Add `values` to the log context of the current request (or task)."""
    current = dict(CONTEXT.get() or {})
    current.update({key: value for key, value in values.items() if value})
    CONTEXT.set(current)


def start(request_id: str, **values: str | None) -> contextvars.Token:
    """A fresh context for a new request; `reset` it when the request ends."""
    return CONTEXT.set({"request_id": request_id, **{k: v for k, v in values.items() if v}})


def reset(token: contextvars.Token) -> None:
    CONTEXT.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage(),
                **(CONTEXT.get() or {})}
        for key in ("route", "method", "status", "duration_ms"):
            if hasattr(record, key):
                line[key] = getattr(record, key)
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info))[-8000:]
        return orjson.dumps(line, default=str).decode()


class ContextFilter(logging.Filter):
    """Text lines get the context too, as `key=value` at the end."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = CONTEXT.get()
        if context and not getattr(record, "_context_added", False):
            record.msg = f"{record.msg} " + " ".join(f"{k}={v}" for k, v in context.items())
            record._context_added = True
        return True


def configure(log_level: str, log_format: str) -> None:
    """The root logger for `replicas serve`; uvicorn's access log is replaced by ours (`replicas.access`)."""
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
        handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(log_level.upper())
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True
