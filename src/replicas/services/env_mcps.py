"""Environment MCP servers: name rules, per-transport config shapes, and the config encrypted at rest.

Configs are stored in their full shape (stdio `{command, args, env}`, http/sse `{url, headers}`),
with omitted `args`/`env`/`headers` filled in, so what a client reads back always matches the contract.
The whole config is encrypted because stdio `env` and http `headers` carry tokens.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from replicas.crypto import SecretBox
from replicas.errors import BadRequest, Conflict, NotFound
from replicas.services import audit, pool_generations
from replicas.services.environments import parse_uuid, resolve_environment
from replicas.services.principal import Principal
from replicas.store.models import Environment, EnvironmentMcp, utcnow

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# `replicas-` is reserved by the current contract, `relay-` by older docs; both stay reserved.
RESERVED_PREFIXES = ("relay-", "replicas-")
HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
DUPLICATE_NAME = "An MCP with this name already exists"


def _invalid(details: str) -> BadRequest:
    return BadRequest("Invalid request", details)


def check_name(name: str | None) -> str:
    if name is None or not NAME_PATTERN.match(name):
        raise _invalid(f"name: {name!r} must match ^[A-Za-z0-9][A-Za-z0-9_-]{{0,63}}$")
    for prefix in RESERVED_PREFIXES:
        if name.lower().startswith(prefix):
            raise _invalid(f"name: the prefix {prefix!r} is reserved")
    return name


def _string_map(value: Any, field: str, key_rule) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _invalid(f"{field}: must be an object mapping names to string values")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _invalid(f"{field}.{key}: must be a string")
        problem = key_rule(key, item)
        if problem:
            raise _invalid(f"{field}.{key}: {problem}")
    return dict(value)


def _env_rule(key: str, item: str) -> str | None:
    if not key or "=" in key or "\x00" in key:
        return "must be a non-empty variable name without '=' or NUL"
    if "\x00" in item:
        return "must not contain NUL"
    return None


def _header_rule(key: str, item: str) -> str | None:
    if not HEADER_NAME.match(key):
        return "is not a valid HTTP header name"
    if any(ch in item for ch in "\r\n\x00"):
        return "must not contain CR, LF or NUL"
    return None


def _check_url(url: Any) -> str:
    message = "config.url: must be an absolute http(s) URL"
    if not isinstance(url, str) or any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise _invalid(message)
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        raise _invalid(message) from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _invalid(message)
    return url


def normalize_config(transport: str, config: Any) -> dict:
    """Check `config` against `transport`'s shape; return it complete, without unknown keys."""
    if not isinstance(config, dict):
        raise _invalid("config: must be an object")
    if transport == "stdio":
        command = config.get("command")
        if not isinstance(command, str) or not command.strip():
            raise _invalid("config.command: must be a non-empty string (stdio transport)")
        args = config.get("args")
        args = [] if args is None else args
        if not isinstance(args, list) or not all(isinstance(arg, str) for arg in args):
            raise _invalid("config.args: must be an array of strings")
        return {"command": command, "args": list(args), "env": _string_map(config.get("env"), "config.env",
                                                                           _env_rule)}
    return {"url": _check_url(config.get("url")),
            "headers": _string_map(config.get("headers"), "config.headers", _header_rule)}


def snapshot(row: EnvironmentMcp, config: dict) -> dict:
    """The audited view; `audit.redact` blanks the values of `env` and `headers`."""
    return {"environment_id": str(row.environment_id), "name": row.name, "transport": row.transport,
            "config": config}


async def _check_name_free(session: AsyncSession, env: Environment, name: str,
                           except_id: uuid.UUID | None = None) -> None:
    query = select(EnvironmentMcp.id).where(EnvironmentMcp.environment_id == env.id,
                                            EnvironmentMcp.name == name)
    if except_id is not None:
        query = query.where(EnvironmentMcp.id != except_id)
    if await session.scalar(query) is not None:
        raise Conflict(DUPLICATE_NAME, f"name: {name}")


async def _commit(session: AsyncSession, name: str) -> None:
    """Commit; a concurrent MCP of the same name loses on the unique index and changes nothing."""
    try:
        await session.commit()
    except IntegrityError:
        await session.rollback()
        raise Conflict(DUPLICATE_NAME, f"name: {name}") from None


async def list_mcps(session: AsyncSession, principal: Principal, env_ref: str) -> list[EnvironmentMcp]:
    env = await resolve_environment(session, principal, env_ref)
    rows = await session.scalars(
        select(EnvironmentMcp)
        .where(EnvironmentMcp.organization_id == principal.organization_id,
               EnvironmentMcp.environment_id == env.id)
        .order_by(EnvironmentMcp.created_at, EnvironmentMcp.name)
    )
    return list(rows)


async def get_mcp(session: AsyncSession, principal: Principal, env: Environment,
                  mcp_id: str) -> EnvironmentMcp:
    """The MCP `mcp_id` of `env`; 404 for ids of other environments or organizations."""
    row = await session.scalar(
        select(EnvironmentMcp).where(
            EnvironmentMcp.id == parse_uuid(mcp_id, "Environment MCP"),
            EnvironmentMcp.organization_id == principal.organization_id,
            EnvironmentMcp.environment_id == env.id,
        )
    )
    if row is None:
        raise NotFound("Environment MCP not found")
    return row


async def create_mcp(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                     data: dict) -> EnvironmentMcp:
    env = await resolve_environment(session, principal, env_ref)
    name = check_name(data["name"])
    config = normalize_config(data["transport"], data["config"])
    await _check_name_free(session, env, name)
    # The id is set here, not at flush, so that a lost race surfaces at commit, where it becomes a 409.
    row = EnvironmentMcp(id=uuid.uuid4(), organization_id=principal.organization_id, environment_id=env.id,
                         name=name, transport=data["transport"],
                         config_encrypted=box.encrypt(json.dumps(config)))
    session.add(row)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_mcp.created", "environment_mcp", row.id,
                 after=snapshot(row, config))
    await _commit(session, name)
    return row


async def update_mcp(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str, mcp_id: str,
                     data: dict) -> EnvironmentMcp:
    """Apply a PATCH. A new transport needs a config of its shape in the same request."""
    env = await resolve_environment(session, principal, env_ref)
    row = await get_mcp(session, principal, env, mcp_id)
    name = check_name(data["name"]) if "name" in data else row.name
    if "transport" in data and data["transport"] is None:
        raise _invalid("transport: must be one of stdio, http, sse")
    transport = data.get("transport", row.transport)
    if transport != row.transport and "config" not in data:
        raise _invalid(f"config: required when changing transport ({row.transport} → {transport}), "
                       "in the new transport's shape")
    old_config = json.loads(box.decrypt(row.config_encrypted))
    config = normalize_config(transport, data["config"]) if "config" in data else old_config
    if name != row.name:
        await _check_name_free(session, env, name, except_id=row.id)
    before = snapshot(row, old_config)
    row.name, row.transport = name, transport
    row.config_encrypted = box.encrypt(json.dumps(config))
    row.updated_at = utcnow()
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_mcp.updated", "environment_mcp", row.id,
                 before=before, after=snapshot(row, config))
    await _commit(session, name)
    return row


async def delete_mcp(session: AsyncSession, principal: Principal, box: SecretBox, env_ref: str,
                     mcp_id: str) -> None:
    env = await resolve_environment(session, principal, env_ref)
    row = await get_mcp(session, principal, env, mcp_id)
    await pool_generations.invalidate_environment(session, env)
    audit.record(session, principal, "environment_mcp.deleted", "environment_mcp", row.id,
                 before=snapshot(row, json.loads(box.decrypt(row.config_encrypted))))
    await session.delete(row)
    await session.commit()
