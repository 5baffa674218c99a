"""/v1/user/profile: the caller's display name, email and photo (contract tag Profile).

PUT takes the contract's two bodies: JSON `{displayName, avatarUrl}`, or multipart/form-data with
`displayName`, an `avatar` file and `removeAvatar=true`. A multipart PUT without either keeps the photo.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from replicas.api.deps import PrincipalDep, SessionDep
from replicas.api.errors import describe_validation_errors
from replicas.api.schemas.common import ERROR_RESPONSES
from replicas.api.schemas.profile import GetUserProfileResponse, UpdateUserProfileRequest
from replicas.errors import BadRequest
from replicas.services import profiles

router = APIRouter(prefix="/v1/user/profile", tags=["Profile"], responses=ERROR_RESPONSES)

_MULTIPART_SCHEMA = {
    "type": "object", "required": ["displayName"],
    "properties": {"displayName": {"type": "string", "minLength": 1, "maxLength": 80},
                   "avatar": {"type": "string", "format": "binary"},
                   "removeAvatar": {"type": "string", "enum": ["true"]}},
}
_REQUEST_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"$ref": "#/components/schemas/UpdateUserProfileRequest"}},
    "multipart/form-data": {"schema": _MULTIPART_SCHEMA}}}}


@router.get("", response_model=GetUserProfileResponse)
async def get_user_profile(session: SessionDep, principal: PrincipalDep):
    """Returns the authenticated user's display name, email, and profile photo."""
    return {"profile": await profiles.get_profile(session, principal)}


@router.put("", response_model=GetUserProfileResponse, openapi_extra=_REQUEST_BODY)
async def update_user_profile(request: Request, session: SessionDep, principal: PrincipalDep):
    """Updates the authenticated user's display name and profile photo."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        display_name, avatar_url = await _multipart_update(request)
    else:
        display_name, avatar_url = _json_update(await request.body())
    return {"profile": await profiles.update_profile(session, principal, display_name, avatar_url)}


def _json_update(raw: bytes) -> tuple[str, str | None]:
    try:
        body = UpdateUserProfileRequest.model_validate_json(raw or b"null")
    except ValidationError as exc:
        raise BadRequest(*describe_validation_errors(list(exc.errors()))) from None
    avatar_url = profiles.checked_avatar_url(body.avatarUrl) if body.avatarUrl is not None else None
    return body.displayName, avatar_url


async def _multipart_update(request: Request):
    async with request.form(max_files=1, max_fields=8) as form:
        display_name = form.get("displayName")
        if not isinstance(display_name, str):
            raise BadRequest("Invalid request", "displayName: Field required")
        avatar = form.get("avatar")
        remove = form.get("removeAvatar")
        if remove not in (None, "true"):
            raise BadRequest("Invalid request", "removeAvatar: must be \"true\" when given")
        if remove == "true":
            return display_name, None
        if isinstance(avatar, UploadFile):
            return display_name, profiles.avatar_data_uri(await avatar.read(profiles.AVATAR_MAX_BYTES + 1))
        if avatar is not None:
            raise BadRequest("Invalid request", "avatar: must be a file")
        return display_name, profiles.KEEP
