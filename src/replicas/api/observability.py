"""Per-request observability, as a plain ASGI middleware (no per-request task or body copy): the request id
(`X-Request-Id`, taken from the caller when it sends a sane one, else made), the log context of every line the
request logs (logs.py), the request metrics by route template (metrics.py), and one access line
(`replicas.access`) with the route template, status and duration. Streams (SSE) are timed to their first byte.
With tracing on (tracing.py), the request runs in a span named `<method> <route template>`.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from replicas import logs, metrics, tracing

access = logging.getLogger("replicas.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_REPLICA = re.compile(r"^/v1/(?:replica|workspaces)/([0-9a-fA-F-]{36})(?:/|$)")


class Observability:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-request-id"), "")
        request_id = given if _REQUEST_ID.match(given) else uuid.uuid4().hex
        replica = _REPLICA.match(scope.get("path", ""))
        token = logs.start(request_id, replica_id=replica.group(1) if replica else None)
        started = time.perf_counter()
        status = 500

        async def sending(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
                _record(scope, status, time.perf_counter() - started)
            await send(message)

        try:
            if tracing.enabled():
                await self._traced(scope, receive, sending, request_id, lambda: status)
            else:
                await self.app(scope, receive, sending)
        finally:
            logs.reset(token)

    async def _traced(self, scope, receive, send, request_id: str, status) -> None:
        """The request inside a span, named by its route template once routing has found it."""
        method = scope.get("method", "")
        with tracing.span(f"{method} request", **{"http.request.method": method,
                                                   "replicas.request_id": request_id}) as span:
            try:
                await self.app(scope, receive, send)
            finally:
                template = getattr(scope.get("route"), "path", None) or "unmatched"
                span.update_name(f"{method} {template}")
                span.set_attribute("http.route", template)
                span.set_attribute("http.response.status_code", status())


def _record(scope, status: int, seconds: float) -> None:
    route = scope.get("route")
    template = getattr(route, "path", None) or "unmatched"
    method = scope.get("method", "")
    metrics.HTTP_REQUESTS.labels(method=method, route=template, status=str(status)).inc()
    metrics.HTTP_LATENCY.labels(method=method, route=template).observe(seconds)
    if access.isEnabledFor(logging.INFO):
        access.info("%s %s %s %.1fms", method, template, status, seconds * 1000,
                    extra={"route": template, "method": method, "status": status,
                           "duration_ms": round(seconds * 1000, 1)})
