"""Environment files: dropped into a workspace's home at provisioning; encrypted at rest, ≤ 64 KB.

Paths are stored normalised (`~/a//b/./c` → `~/a/b/c`) so that one path cannot be registered twice
under two spellings, and may never leave the home directory: not absolute, no `..` above `~`, no NUL
or control characters. A symlink in the home is the workspace's business and cannot be seen from
here; provisioning refuses to write through one (`home_files`).
"""

from __future__ import annotations

import hashlib
import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, NotFound
from replicas.services import audit, pool_generations
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.store.models import Environment, EnvironmentFile, utcnow

MAX_CONTENT_BYTES = 65_536
MAX_NAME_LENGTH = 255
MAX_PATH_LENGTH = 1024
MAX_SEGMENT_BYTES = 255  # NAME_MAX: a longer component could not be written at provisioning
DUPLICATE_PATH = "A file with this path already exists"
HOME = "~/"


def normalize_path(raw: str) -> str:
    """Return the canonical `~/...` form of `raw`, or raise BadRequest naming what is wrong."""
    if not raw.startswith(HOME):
        raise BadRequest("Invalid request", f"path: must start with ~/ (got {raw!r})")
    if "\x00" in raw:
        raise BadRequest("Invalid request", "path: must not contain a NUL byte")
    if any(ord(ch) < 32 or ch == "\x7f" for ch in raw):
        raise BadRequest("Invalid request", "path: must not contain control characters")
    if raw.endswith("/"):
        raise BadRequest("Invalid request", "path: must name a file, not a directory")
    parts: list[str] = []
    for part in raw[len(HOME):].split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise BadRequest("Invalid request", "path: must not escape the home directory with ..")
            parts.pop()
        elif len(part.encode()) > MAX_SEGMENT_BYTES:
            raise BadRequest("Invalid request", f"path: each segment at most {MAX_SEGMENT_BYTES} bytes")
        else:
            parts.append(part)
    if not parts:
        raise BadRequest("Invalid request", "path: must name a file under ~/")
    path = HOME + "/".join(parts)
    if len(path) > MAX_PATH_LENGTH:
        raise BadRequest("Invalid request", f"path: at most {MAX_PATH_LENGTH} characters")
    return path


def _check_content(content: str) -> None:
    size = len(content.encode())
    if size > MAX_CONTENT_BYTES:
        raise BadRequest("File content too large",
                         f"content: at most {MAX_CONTENT_BYTES:,} bytes (64 KB) UTF-8 encoded; got {size:,}")


def _check_name(name: str | None) -> str:
    if name is None or not name.strip():
        raise BadRequest("Invalid request", "name: must not be empty")
    if len(name) > MAX_NAME_LENGTH:
        raise BadRequest("Invalid request", f"name: at most {MAX_NAME_LENGTH} characters")
    return name


def snapshot(row: EnvironmentFile, content: str) -> dict:
    """The audited view: a digest and size stand in for the (secret) content."""
    data = content.encode()
    return {
        "environment_id": str(row.environment_id),
        "name": row.name,
        "path": row.path,
        "content_sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


async def _check_path_free(session: AsyncSession, env: Environment, path: str,
                           except_id: uuid.UUID | None = None) -> None:
    query = select(EnvironmentFile.id).where(EnvironmentFile.environment_id == env.id,
                                             EnvironmentFile.path == path)
    if except_id is not None:
        query = query.where(EnvironmentFile.id != except_id)
    if await session.scalar(query) is not None:
        raise BadRequest(DUPLICATE_PATH, f"path: {path}")


async def _commit(session: AsyncSession, path: str) -> None:
    """Commit; a concurrent file at the same path loses on the unique index and changes nothing."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise BadRequest(DUPLICATE_PATH, f"path: {path}") from None


async def list_files(session: AsyncSession, principal: Principal, env_ref: str) -> list[EnvironmentFile]:
    env = await resolve_environment(session, principal, env_ref)
    rows = await session.scalars(
        select(EnvironmentFile)
        .where(EnvironmentFile.organization_id == principal.organization_id,
               EnvironmentFile.environment_id == env.id)
        .order_by(EnvironmentFile.created_at, EnvironmentFile.path)
    )
    return list(rows)


async def get_file(session: AsyncSession, principal: Principal, env: Environment,
                   file_id: str) -> EnvironmentFile:
    """The file `file_id` of `env`; 404 for ids of other environments or organizations."""
    row = await session.scalar(
        select(EnvironmentFile).where(
            EnvironmentFile.id == parse_uuid(file_id, "Environment file"),
            EnvironmentFile.organization_id == principal.organization_id,
            EnvironmentFile.environment_id == env.id,
        )
    )
    if row is None:
        raise NotFound("Environment file not found")
    return row


async def create_file(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                      data: dict) -> EnvironmentFile:
    env = await resolve_environment(session, principal, env_ref)
    name = _check_name(data["name"])
    path = normalize_path(data["path"])
    _check_content(data["content"])
    await _check_path_free(session, env, path)
    # The id is set here, not at flush, so that a lost race surfaces at commit, where it becomes a 400.
    row = EnvironmentFile(id=uuid.uuid4(), organization_id=principal.organization_id, environment_id=env.id,
                          name=name, path=path, content_encrypted=box.encrypt(data["content"]))
    session.add(row)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_file.created", "environment_file", row.id,
                 after=snapshot(row, data["content"]))
    await _commit(session, path)
    return row


async def update_file(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                      file_id: str, data: dict) -> EnvironmentFile:
    """Apply a PATCH; `data` holds only the fields the client sent."""
    env = await resolve_environment(session, principal, env_ref)
    row = await get_file(session, principal, env, file_id)
    name = _check_name(data["name"]) if "name" in data else row.name
    if "path" in data and data["path"] is None:
        raise BadRequest("Invalid request", "path: must be a string, not null")
    if "content" in data and data["content"] is None:
        raise BadRequest("Invalid request", "content: must be a string, not null")
    path = normalize_path(data["path"]) if "path" in data else row.path
    if "content" in data:
        _check_content(data["content"])
    if path != row.path:
        await _check_path_free(session, env, path, except_id=row.id)
    old_content = box.decrypt(row.content_encrypted)
    before = snapshot(row, old_content)
    row.name, row.path = name, path
    if "content" in data:
        row.content_encrypted = box.encrypt(data["content"])
    row.updated_at = utcnow()
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_file.updated", "environment_file", row.id,
                 before=before, after=snapshot(row, data.get("content", old_content)))
    await _commit(session, path)
    return row


async def delete_file(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                      file_id: str) -> None:
    env = await resolve_environment(session, principal, env_ref)
    row = await get_file(session, principal, env, file_id)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_file.deleted", "environment_file", row.id,
                 before=snapshot(row, box.decrypt(row.content_encrypted)))
    await session.delete(row)
    await session.commit()
