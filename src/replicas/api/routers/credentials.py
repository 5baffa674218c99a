"""/v1/opencode-go/credentials (the organization's key) and /v1/opencode-go/user/credentials (the
caller's own key): status, upload, delete (contract tag Credentials)."""

from __future__ import annotations

from fastapi import APIRouter

from replicas.api.deps import BoxDep, PrincipalDep, SessionDep
from replicas.api.schemas.common import ERROR_RESPONSES, ErrorBody
from replicas.api.schemas.credentials import (
    ApiKeyCredentialDeleteResponse,
    ApiKeyCredentialRequest,
    ApiKeyCredentialStatus,
    ApiKeyCredentialUploadResponse,
    status_view,
)
from replicas.services import credentials as service

FORBIDDEN = {403: {"model": ErrorBody, "description": "Admin access required"}}
router = APIRouter(prefix="/v1/opencode-go", tags=["Credentials"], responses=ERROR_RESPONSES)

ORG_PATH, USER_PATH = "/credentials", "/user/credentials"
STATUS = {"response_model": ApiKeyCredentialStatus, "response_model_exclude_none": True}


@router.get(ORG_PATH, **STATUS)
async def get_org_credentials(session: SessionDep, principal: PrincipalDep, box: BoxDep):
    """The organization's OpenCode Go key status (any member may read it; the key comes back masked)."""
    return status_view(await service.get_credential(session, principal, service.ORG), box)


@router.post(ORG_PATH, response_model=ApiKeyCredentialUploadResponse, responses=FORBIDDEN)
async def set_org_credentials(body: ApiKeyCredentialRequest, session: SessionDep, principal: PrincipalDep,
                              box: BoxDep):
    """Set (or replace) the organization's key. Org admins only."""
    row = await service.set_credential(session, principal, box, service.ORG, body.api_key)
    return {"success": True, "credentialId": str(row.id)}


@router.delete(ORG_PATH, response_model=ApiKeyCredentialDeleteResponse, responses=FORBIDDEN)
async def delete_org_credentials(session: SessionDep, principal: PrincipalDep):
    await service.delete_credential(session, principal, service.ORG)
    return {"success": True}


@router.get(USER_PATH, **STATUS)
async def get_user_credentials(session: SessionDep, principal: PrincipalDep, box: BoxDep):
    """The caller's own key status. Needs a personal API key (an org key gets 400)."""
    return status_view(await service.get_credential(session, principal, service.USER), box)


@router.post(USER_PATH, response_model=ApiKeyCredentialUploadResponse)
async def set_user_credentials(body: ApiKeyCredentialRequest, session: SessionDep, principal: PrincipalDep,
                               box: BoxDep):
    """Set (or replace) the caller's own key; it wins over the organization's in the caller's workspaces."""
    row = await service.set_credential(session, principal, box, service.USER, body.api_key)
    return {"success": True, "credentialId": str(row.id)}


@router.delete(USER_PATH, response_model=ApiKeyCredentialDeleteResponse)
async def delete_user_credentials(session: SessionDep, principal: PrincipalDep):
    await service.delete_credential(session, principal, service.USER)
    return {"success": True}
