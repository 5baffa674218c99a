"""`replicas workspace`: start a workspace from an environment and talk to its agent from the shell.

Until the Replica API serves workspaces, this is the small command the README's walk-through uses:

    replicas workspace create staging --message "Add a health check" --follow
    replicas workspace send <id> "Now add tests" --follow
    replicas workspace diff <id>
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import select

from replicas.crypto import SecretBox
from replicas.errors import ReplicasError
from replicas.services import auth
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.settings import Settings
from replicas.store.models import Workspace

app = typer.Typer(help="Workspaces: a sandbox with the environment's repos and a coding agent.",
                  no_args_is_help=True)

Org = Annotated[str, typer.Option("--org", help="Organization name.")]
DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (REPLICAS_DATA_DIR).")]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Print the agent's events until the turn ends.")]


@contextlib.asynccontextmanager
async def _manager(data_dir: Path | None, org: str) -> AsyncIterator[tuple[WorkspaceManager, Principal]]:
    from replicas.store.db import make_engine, make_sessionmaker, migrate

    settings = Settings(**({"data_dir": data_dir} if data_dir else {}))
    settings.ensure_data_dir()
    engine = make_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        sessions = make_sessionmaker(engine)
        async with sessions() as session:
            organization = await auth.get_or_create_organization(session, org)
            await session.commit()
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        yield WorkspaceManager(settings, sessions, box), Principal.system(organization.id)
    finally:
        await engine.dispose()


def _run(coroutine) -> None:
    try:
        asyncio.run(coroutine)
    except ReplicasError as exc:
        typer.echo(f"error: {exc.error}" + (f": {exc.details}" if exc.details else ""), err=True)
        raise typer.Exit(1) from None


def _describe(event: dict) -> str | None:
    """One line per event worth showing a person; None for the rest."""
    kind, payload = event["type"], event["payload"]
    if kind == "chat.turn.delta":
        inner = payload["event"]
        body = inner.get("payload", {})
        blocks = (body.get("message") or {}).get("content") if isinstance(body.get("message"), dict) else None
        for block in blocks or []:
            if block.get("type") == "text":
                return f"agent: {block['text']}"
            if block.get("type") == "tool_use":
                return f"tool:  {block.get('name')} {json.dumps(block.get('input'))[:200]}"
        if body.get("type") == "agent_message" or inner["type"] == "response_item":
            text = body.get("text") or "".join(c.get("text", "") for c in body.get("content", []) or [])
            return f"agent: {text}" if text else None
        return None
    if kind in ("chat.turn.started", "chat.turn.completed", "error", "hooks.completed", "hooks.failed"):
        return f"[{kind}] {json.dumps(payload)}"
    return None


async def _follow(manager: WorkspaceManager, workspace: Workspace, after: int, until_turn_end: bool) -> None:
    async with manager.engine(workspace, timeout=None) as engine:
        async with engine.stream("GET", "/events", params={"after": after}) as response:
            data = None
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and data is not None:
                    text = _describe(data)
                    if text:
                        typer.echo(text)
                    if until_turn_end and data["type"] == "chat.turn.completed":
                        return
                    data = None


async def _last_seq(manager: WorkspaceManager, workspace: Workspace) -> int:
    status = await manager.call_engine(workspace, "GET", "/status")
    return int(status.get("lastSeq") or 0)


@app.command("create")
def create(environment: Annotated[str, typer.Argument(help="Environment id, or `global`.")],
           message: Annotated[str | None, typer.Option("--message", "-m", help="First message.")] = None,
           provider: Annotated[str, typer.Option(help="claude, codex, opencode or cursor.")] = "claude",
           name: str = "workspace", size: str = "small", follow: Follow = False,
           org: Org = "default", data_dir: DataDir = None) -> None:
    """Provision a workspace and start its engine; optionally send a first message."""

    async def work():
        async with _manager(data_dir, org) as (manager, principal):
            workspace = await manager.create(principal, environment, name=name, provider=provider, size=size)
            typer.echo(json.dumps({"id": str(workspace.id), "status": workspace.status,
                                   "default_chat_id": workspace.default_chat_id}))
            if message:
                after = await _last_seq(manager, workspace)
                typer.echo(json.dumps(await manager.send_message(workspace, message)))
                if follow:
                    await _follow(manager, workspace, after, until_turn_end=True)

    _run(work())


@app.command("send")
def send(workspace_id: str, message: str, chat: str | None = None,
         plan: Annotated[bool, typer.Option("--plan", help="Plan mode: no edits.")] = False,
         thinking: Annotated[str | None, typer.Option(help="low, medium, high or max.")] = None,
         follow: Follow = False, org: Org = "default", data_dir: DataDir = None) -> None:
    """Send a message to a workspace's chat (queued when the agent is busy)."""

    async def work():
        async with _manager(data_dir, org) as (manager, principal):
            workspace = await manager.get(principal, workspace_id)
            after = await _last_seq(manager, workspace)
            result = await manager.send_message(workspace, message, chat_id=chat,
                                                planMode=plan or None, thinkingLevel=thinking)
            typer.echo(json.dumps(result))
            if follow:
                await _follow(manager, workspace, after, until_turn_end=True)

    _run(work())


@app.command("diff")
def diff(workspace_id: str, org: Org = "default", data_dir: DataDir = None) -> None:
    """Print each repository's diff against its default branch (untracked files included)."""

    async def work():
        async with _manager(data_dir, org) as (manager, principal):
            for repo in await manager.repos(await manager.get(principal, workspace_id)):
                stats = repo["gitDiff"]
                typer.echo(f"# {repo['name']} ({repo['currentBranch']}): +{stats['added']} -{stats['removed']}")
                typer.echo(stats.get("fullDiff", ""))

    _run(work())


@app.command("list")
def list_workspaces(org: Org = "default", data_dir: DataDir = None) -> None:
    """List the organization's workspaces."""

    async def work():
        async with _manager(data_dir, org) as (manager, principal):
            async with manager.sessions() as session:
                rows = await session.scalars(select(Workspace).where(
                    Workspace.organization_id == principal.organization_id).order_by(Workspace.created_at))
                for row in rows:
                    typer.echo(f"{row.id}  {row.status:<10} {row.name}")

    _run(work())


def _lifecycle(action: str):
    def command(workspace_id: str, org: Org = "default", data_dir: DataDir = None) -> None:
        async def work():
            async with _manager(data_dir, org) as (manager, principal):
                workspace = await manager.get(principal, workspace_id)
                if action == "delete":
                    await manager.destroy(workspace)
                    typer.echo(json.dumps({"id": workspace_id, "deleted": True}))
                else:
                    changed = await getattr(manager, action)(workspace)
                    typer.echo(json.dumps({"id": workspace_id, "status": changed.status}))

        _run(work())

    command.__doc__ = {"sleep": "Stop every process; keep the disk.", "wake": "Start the engine again.",
                       "delete": "Stop the workspace and remove its disk."}[action]
    return command


for _action in ("sleep", "wake", "delete"):
    app.command(_action)(_lifecycle(_action))
