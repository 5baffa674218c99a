"""The caller's own profile: display name, email and photo (GET/PUT /v1/user/profile, spec §3 Profile).

A profile belongs to a user, so only a personal API key has one; an org key acts for the organization
and gets 404, which the contract lists for both operations.

The hosted API uploads photos to an S3 object store. A self-hosted server has none, so an uploaded photo
is kept as a `data:` URI on the user's row: it is a valid `uri`, any browser shows it as an `<img src>`,
and it needs no endpoint to serve it. That is why photos are small (`AVATAR_MAX_BYTES`) and must be one of
the web's image formats, told by their first bytes rather than by what the upload claims. A client that
reads the profile and sends `avatarUrl` back unchanged keeps its photo, so `data:` URIs are accepted in
JSON too, under the same rules.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncSession

from replicas.errors import BadRequest, NotFound, PayloadTooLarge
from replicas.services.principal import Principal
from replicas.store.models import User

DISPLAY_NAME_MAX = 80
AVATAR_MAX_BYTES = 1024 * 1024
AVATAR_URL_MAX = 2048  # for http(s) URLs; a data: URI is bounded by AVATAR_MAX_BYTES instead
_DATA_URI = re.compile(r"^data:(image/[a-z0-9.+-]+);base64,(.*)$", re.IGNORECASE | re.DOTALL)


class _Keep:
    """The avatar argument of `update_profile` when the request does not touch the photo."""


KEEP = _Keep()


def image_type(content: bytes) -> str | None:
    """The MIME type of a PNG, JPEG, GIF or WebP image from its signature; None for anything else."""
    if content.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if content.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if content.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    return None


def avatar_data_uri(content: bytes, field: str = "avatar") -> str:
    """An uploaded photo as the `data:` URI kept for it; 413 when too large, 400 when not an image."""
    if len(content) > AVATAR_MAX_BYTES:
        raise PayloadTooLarge("Profile photo too large", f"{field}: at most {AVATAR_MAX_BYTES} bytes")
    if not content:
        raise BadRequest("Invalid request", f"{field}: the file is empty")
    kind = image_type(content)
    if kind is None:
        raise BadRequest("Invalid request", f"{field}: must be a PNG, JPEG, GIF or WebP image")
    return f"data:{kind};base64,{base64.b64encode(content).decode()}"


def checked_avatar_url(value: str) -> str:
    """A JSON `avatarUrl`: an absolute http(s) URL, or a `data:` URI holding an image (as `avatar_data_uri`)."""
    if match := _DATA_URI.match(value):
        if len(match.group(2)) > (AVATAR_MAX_BYTES * 4) // 3 + 4:
            raise PayloadTooLarge("Profile photo too large", f"avatarUrl: at most {AVATAR_MAX_BYTES} bytes")
        try:
            content = base64.b64decode(match.group(2), validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest("Invalid request", "avatarUrl: the data: URI is not valid base64") from None
        return avatar_data_uri(content, "avatarUrl")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(value) > AVATAR_URL_MAX:
        raise BadRequest("Invalid request",
                         f"avatarUrl: must be an http(s) URL of at most {AVATAR_URL_MAX} characters, "
                         "an image data: URI, or null")
    return value


def checked_display_name(value: str) -> str:
    name = value.strip()
    if not 1 <= len(name) <= DISPLAY_NAME_MAX:
        raise BadRequest("Invalid request", f"displayName: must be 1 to {DISPLAY_NAME_MAX} characters")
    return name


def profile_view(user: User) -> dict:
    """The contract's UserProfile (camelCase, as the hosted API passes it through)."""
    return {"userId": str(user.id), "email": user.email, "displayName": user.display_name,
            "avatarUrl": user.avatar_url}


async def _own_user(session: AsyncSession, principal: Principal) -> User:
    user = await session.get(User, principal.user_id) if principal.user_id is not None else None
    if user is None or user.organization_id != principal.organization_id:
        raise NotFound("User not found",
                       "an org API key acts for the organization and has no profile; use a personal API key")
    return user


async def get_profile(session: AsyncSession, principal: Principal) -> dict:
    return profile_view(await _own_user(session, principal))


async def update_profile(session: AsyncSession, principal: Principal, display_name: str,
                         avatar_url: str | None | _Keep = KEEP) -> dict:
    """Set the display name, and the photo unless `avatar_url` is KEEP (None removes it). `avatar_url` is
    already checked (`checked_avatar_url`, `avatar_data_uri`)."""
    user = await _own_user(session, principal)
    user.display_name = checked_display_name(display_name)
    if not isinstance(avatar_url, _Keep):
        user.avatar_url = avatar_url
    await session.commit()
    return profile_view(user)
