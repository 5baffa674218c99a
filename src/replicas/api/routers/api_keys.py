"""/v1/user/api-keys: a user's personal API keys (contract tag API Keys, spec §3.10).

Personal keys need a user: an org key has none and gets 403.
"""

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
from replicas.services import auth
from replicas.services.environments import parse_uuid

FORBIDDEN = {403: {"model": ErrorBody, "description": "An org key has no user, so no personal keys"}}
router = APIRouter(prefix="/v1/user/api-keys", tags=["API Keys"], responses={**ERROR_RESPONSES, **FORBIDDEN})

NOT_FOUND = "API key not found or does not belong to this user"


@router.post("", status_code=201, response_model=CreatedApiKeyResponse)
async def create_personal_api_key(body: CreateApiKeyRequest, session: SessionDep, principal: PrincipalDep):
    """Creates a personal API key for the authenticated user. The `key` field is only returned once."""
    row, key = await auth.create_personal_key(session, principal, body.name)
    return {"api_key": api_key_view(row, key)}


@router.get("", response_model=ListApiKeysResponse)
async def list_personal_api_keys(session: SessionDep, principal: PrincipalDep,
                                 paging: Annotated[Page, paged(default_limit=10)]):
    """Returns the authenticated user's personal API keys, newest first, without their secrets."""
    rows, total = await auth.list_personal_keys(session, principal, paging.page, paging.limit)
    return api_keys_page(rows, total, paging)


@router.delete("/{apiKeyId}", response_model=SuccessResponse)
async def delete_personal_api_key(apiKeyId: str, session: SessionDep, principal: PrincipalDep):  # noqa: N803
    """Deletes one of the authenticated user's personal API keys; it stops working at once."""
    try:
        key_id = parse_uuid(apiKeyId, "API key")
    except NotFound:
        raise NotFound(NOT_FOUND) from None
    await auth.delete_personal_key(session, principal, key_id)
    return {"success": True}
