"""Operations of more than one call, written once for both clients as generators: each `yield`s a `Call`
and receives its parsed answer (or has the call's `ReplicasError` thrown in), and returns the result.

    def upsert_variable(environment, key, value):
        existing = yield calls.list_variables(environment)
        ...
        return (yield calls.create_variable(environment, key=key, value=value))

The sync client drives them with blocking requests, the async one with awaited ones.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any, TypeVar

from replicas.client import calls
from replicas.client.calls import Call
from replicas.client.errors import NotFoundError
from replicas.client.models import (
    Environment,
    EnvironmentFile,
    EnvironmentMcp,
    EnvironmentSkill,
    EnvironmentVariable,
    Repository,
)

T = TypeVar("T")
Flow = Generator[Call[Any], Any, T]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_id(value: str) -> bool:
    return bool(_UUID.match(value))


def _named(items: list[T], ref: str, kind: str, *names: str) -> T:
    """The item whose id or one of `names` attributes is `ref` (exactly, else ignoring case), or 404."""
    for exact in (True, False):
        for item in items:
            values = [getattr(item, "id", None), *(getattr(item, name, None) for name in names)]
            if any(v is not None and (v == ref if exact else v.lower() == ref.lower()) for v in values):
                return item
    raise NotFoundError(404, f"{kind} not found", f"no {kind.lower()} named {ref!r}")


def find_environment(ref: str) -> Flow[Environment]:
    """An environment by id, `global`, or name."""
    if ref == "global" or is_id(ref):
        return (yield calls.get_environment(ref))
    environments = yield calls.list_environments(scope="all")
    return _named(environments, ref, "Environment", "name")


def find_repository(ref: str) -> Flow[Repository]:
    """A repository by id or name (`owner/repo`)."""
    return _named((yield calls.list_repositories()), ref, "Repository", "name")


def find_variable(environment: str, ref: str) -> Flow[EnvironmentVariable]:
    """A variable of the environment by id or key."""
    return _named((yield calls.list_variables(environment)), ref, "Variable", "key")


def find_file(environment: str, ref: str) -> Flow[EnvironmentFile]:
    """A file of the environment by id, destination path or name."""
    return _named((yield calls.list_files(environment)), ref, "File", "path", "name")


def find_mcp(environment: str, ref: str) -> Flow[EnvironmentMcp]:
    """An MCP server of the environment by id or name."""
    return _named((yield calls.list_mcps(environment)), ref, "MCP server", "name")


def find_skill(environment: str, ref: str) -> Flow[EnvironmentSkill]:
    """A skill enabled on the environment by id, slug or name."""
    return _named((yield calls.list_skills(environment)), ref, "Skill", "slug", "name")


def upsert_mcp(environment: str, name: str, transport: str, config: dict[str, Any]) -> Flow[EnvironmentMcp]:
    """Set an MCP server: replace the transport and config of the one with this name, or create it."""
    existing = [m for m in (yield calls.list_mcps(environment)) if m.name == name]
    if existing:
        return (yield calls.update_mcp(environment, existing[0].id, transport=transport, config=config))
    return (yield calls.create_mcp(environment, name=name, transport=transport, config=config))


def add_skill(environment: str, ref: str, query: str | None = None) -> Flow[EnvironmentSkill]:
    """Enable the catalog's skill whose slug or name is `ref`, found by searching `query` (default: `ref`)."""
    hits = yield calls.search_skills(query if query is not None else ref)
    found = _named(hits, ref, "Skill", "slug", "name")
    return (yield calls.enable_skill(environment, name=found.name, slug=found.slug, source=found.source))


def upsert_variable(environment: str, key: str, value: str) -> Flow[EnvironmentVariable]:
    """Set a variable: update the one with this key, or create it."""
    existing = [v for v in (yield calls.list_variables(environment)) if v.key == key]
    if existing:
        return (yield calls.update_variable(environment, existing[0].id, value=value))
    return (yield calls.create_variable(environment, key=key, value=value))


def upsert_file(environment: str, path: str, content: str, name: str | None = None) -> Flow[EnvironmentFile]:
    """Set a file: update the one with this destination path, or create it."""
    existing = [f for f in (yield calls.list_files(environment)) if f.path == path]
    if existing:
        fields: dict[str, Any] = {"content": content, **({"name": name} if name else {})}
        return (yield calls.update_file(environment, existing[0].id, **fields))
    return (yield calls.create_file(environment, path=path, content=content, name=name))
