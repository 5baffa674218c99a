"""Canvas (contract tag Replica; spec §3.4): GET /v1/replica/{id}/canvas and /canvas/{filename}.

The files live in the workspace (`~/.replicas/canvas/`), so both calls ask its engine
(`replicas/engine/canvas.py`, which documents what is listed and what is refused): a sleeping replica is
woken first (`ReplicaService.engine_call`) and the call answers once it is up. The control plane keeps no
copy of the files, and on the docker and kubernetes backends it cannot read the workspace's disk.

Errors: an unknown replica, or a name that is not a canvas item (`../x`, `a/b`, a symlink, a hidden or
missing file), is 404. 502, the only other status the contract lists here, covers an engine whose answer
does not have the contract's shape, and a workspace that cannot answer at all (in error: 409 elsewhere; not
coming up or unreachable: 503 elsewhere).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import quote

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from replicas.api.deps import PrincipalDep
from replicas.api.routers.replicas import ReplicasDep
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.errors import BadGateway, Conflict, NotFound, ServiceUnavailable

router = APIRouter(prefix="/v1/replica", tags=["Replica"], responses=ERROR_RESPONSES)

CanvasItemKind = Literal["markdown", "html", "image", "video", "audio", "other"]


class CanvasItem(BaseModel):
    filename: str
    kind: CanvasItemKind
    sizeBytes: int


class CanvasListResponse(BaseModel):
    items: list[CanvasItem]


class CanvasContentResponse(BaseModel):
    """Text kinds fill `content`, binary kinds `base64`; over the cap, `tooLarge` and neither."""

    filename: str
    kind: CanvasItemKind
    sizeBytes: int
    mimeType: str
    content: str | None = None
    base64: str | None = None
    tooLarge: bool | None = None


async def _ask_engine(replicas, principal, replica_id: str, path: str, model: type[BaseModel]) -> BaseModel:
    try:
        answer = await replicas.engine_call(principal, replica_id, "GET", path)
        return model.model_validate(answer)
    except (ValidationError, ValueError) as exc:  # not JSON, or not the shape
        raise BadGateway("Workspace engine answered wrongly", f"GET {path}: {str(exc)[:300]}") from None
    except (Conflict, ServiceUnavailable) as exc:
        # A workspace in error, or one that does not come up: the contract lists only 502 ("the workspace is
        # unreachable") for these operations, where other Replica endpoints answer 409 or 503.
        raise BadGateway(exc.error, exc.details) from None


@router.get("/{replica_id}/canvas", response_model=CanvasListResponse)
async def list_canvas_items(replica_id: str, principal: PrincipalDep, replicas: ReplicasDep):
    """The files the agent dropped in `~/.replicas/canvas/`, with kind and size (wakes a sleeping replica)."""
    return await _ask_engine(replicas, principal, replica_id, "/canvas", CanvasListResponse)


@router.get("/{replica_id}/canvas/{filename:path}", response_model=CanvasContentResponse,
            response_model_exclude_none=True)
async def get_canvas_item(replica_id: str, filename: str, principal: PrincipalDep, replicas: ReplicasDep):
    """One canvas file: `content` (markdown, html), `base64` (the rest) or `tooLarge` over 5 MB."""
    # `:path` takes `a/b` and a decoded `..%2Fx` too, so that they are refused here in the error shape;
    # `.`/`..` must not reach the engine's URL, where they would be resolved as dot-segments.
    if filename in ("", ".", "..") or "/" in filename or "\x00" in filename:
        await replicas.get_workspace(principal, replica_id)  # an unknown replica is still "Workspace not found"
        raise NotFound("Canvas item not found", f"{filename!r} is not a file name in the canvas")
    return await _ask_engine(replicas, principal, replica_id, f"/canvas/{quote(filename, safe='')}",
                             CanvasContentResponse)
