"""The JSON response of every route, encoded with orjson (replicas/json_bytes.py).

`JSONBody` is the app's default response class. A route that builds its body itself from data that is already
plain JSON (the hot reads: a replica, the list, the history) returns `JSONBody(body)` directly, which skips
FastAPI's `jsonable_encoder` walk over the whole body and any response-model validation: the service built
the contract's shape, and the contract tests check it.
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from replicas import json_bytes


class JSONBody(JSONResponse):
    """`application/json`, compact, UTF-8; the same JSON as Starlette's `JSONResponse`, faster."""

    def render(self, content: Any) -> bytes:
        return json_bytes.dumps(content)
