"""Personal API key models. The contract publishes no response schemas; these follow spec §3.10."""

from __future__ import annotations

from pydantic import BaseModel, Field

from replicas.api.schemas.common import Request, iso
from replicas.store.models import ApiKey as ApiKeyRow


class ApiKey(BaseModel):
    id: str
    name: str
    key_prefix: str
    created_at: str
    last_used_at: str | None


class CreatedApiKey(ApiKey):
    key: str = Field(description="The full key. It is returned only by this response.")


class CreatedApiKeyResponse(BaseModel):
    api_key: CreatedApiKey


class ListApiKeysResponse(BaseModel):
    api_keys: list[ApiKey]
    total: int
    page: int
    limit: int
    total_pages: int


class CreateApiKeyRequest(Request):
    name: str = Field(min_length=1, max_length=255, description="Display name for the API key")


def api_key_view(row: ApiKeyRow, key: str | None = None) -> dict:
    view = {"id": str(row.id), "name": row.name, "key_prefix": row.key_prefix,
            "created_at": iso(row.created_at), "last_used_at": iso(row.last_used_at)}
    if key is not None:
        view["key"] = key
    return view


def api_keys_page(rows: list[ApiKeyRow], total: int, paging) -> dict:
    """A page of keys (`paging`: the request's `api.pagination.Page`), without their secrets."""
    return {"api_keys": [api_key_view(r) for r in rows], "total": total, "page": paging.page,
            "limit": paging.limit, "total_pages": paging.total_pages(total)}
