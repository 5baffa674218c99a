"""A NUL character (`%00`) in a /v1/ URL is refused with 400 before routing.

Path and query values end up in SQL (`?search=`, `?actor=`, names and ids), and PostgreSQL text cannot hold
NUL: such a request was a 500 there (found by the schema fuzzer). One check here covers every parameter
of every route; request bodies get the same rule from `schemas.common.Request`. The preview proxy
(`/previews/...`) is left alone: what it forwards is the workspace's business.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from replicas.api.errors import error_response

API_PREFIX = "/v1/"


class RefuseNulInUrl:
    """ASGI middleware: 400 in the contract's error body for a NUL in a /v1/ path or query string."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(API_PREFIX):
            where = _nul_in(scope)
            if where is not None:
                response = error_response(400, "Invalid request",
                                          f"{where}: must not contain NUL characters (%00)")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"\x00" in query or b"%00" in query.lower():
        return "query"
    return None
