"""/v1/api-keys: the organization's org API keys (our addition; the contract mints them only in the hosted
dashboard's Settings -> API Keys). Org admins only: an admin's personal key or an org key; members get 403.
The shapes are the personal keys' (/v1/user/api-keys)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.pagination import Page, paged
from replicas.api.schemas.api_keys import (
    CreateApiKeyRequest,
    CreatedApiKeyResponse,
    ListApiKeysResponse,
    api_key_view,
    api_keys_page,
)
from replicas.api.schemas.common import ERROR_RESPONSES, ErrorBody, SuccessResponse
from replicas.errors import NotFound
from replicas.services import org_api_keys
from replicas.services.environments import parse_uuid

FORBIDDEN = {403: {"model": ErrorBody, "description": "Admin access required"}}
router = APIRouter(prefix="/v1/api-keys", tags=["API Keys"], responses={**ERROR_RESPONSES, **FORBIDDEN})


@router.post("", status_code=201, response_model=CreatedApiKeyResponse)
async def create_org_api_key(body: CreateApiKeyRequest, session: SessionDep, principal: PrincipalDep):
    """Creates an org API key (it acts as the organization's bot). The `key` field is only returned once."""
    row, key = await org_api_keys.create_org_api_key(session, principal, body.name)
    return {"api_key": api_key_view(row, key)}


@router.get("", response_model=ListApiKeysResponse)
async def list_org_api_keys(session: SessionDep, principal: PrincipalDep,
                            paging: Annotated[Page, paged(default_limit=10)]):
    """Returns the organization's org API keys, newest first, without their secrets."""
    rows, total = await org_api_keys.list_org_api_keys(session, principal, paging.page, paging.limit)
    return api_keys_page(rows, total, paging)


@router.delete("/{apiKeyId}", response_model=SuccessResponse)
async def delete_org_api_key(apiKeyId: str, session: SessionDep, principal: PrincipalDep):  # noqa: N803
    """Deletes an org API key: it stops working at once, and the dashboard sessions it signed in end."""
    try:
        key_id = parse_uuid(apiKeyId, "API key")
    except NotFound:
        raise NotFound(org_api_keys.NOT_FOUND) from None
    await org_api_keys.delete_org_api_key(session, principal, key_id)
    return {"success": True}
