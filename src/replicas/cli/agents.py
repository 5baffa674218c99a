"""`replicas agents`: install the pinned agent CLIs and check what is installed."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from replicas.engine.agents import install as agent_install

app = typer.Typer(help="Coding-agent CLIs (Claude Code, Codex, opencode, cursor-agent).", no_args_is_help=True)

ToolsDir = Annotated[Path | None, typer.Option(
    "--tools-dir", help="Where the CLIs live (REPLICAS_TOOLS_DIR, default <data dir>/tools).")]


def _tools_dir(option: Path | None) -> Path:
    if option is not None:
        return option
    from replicas.settings import Settings

    return agent_install.tools_dir(Settings().data_dir)


def _print(statuses: list[agent_install.AgentStatus]) -> None:
    for status in statuses:
        state = "ok" if status.ok else "missing"
        pinned = f" (pinned {status.pinned})" if status.pinned else ""
        typer.echo(f"{status.agent:<9} {state:<8} {status.action:<18} version={status.version or '-'}{pinned} "
                   f"path={status.path or '-'}")
        for reason in status.missing:
            typer.echo(f"          - {reason}")


@app.command("install")
def install_command(
    tools_dir: ToolsDir = None,
    only: Annotated[str | None, typer.Option(
        "--only", help="Comma-separated agents to install: claude,codex,opencode.")] = None,
) -> None:
    """Install the pinned CLIs with npm (skips those already at the pinned version)."""
    agents = [name.strip() for name in only.split(",") if name.strip()] if only else None
    try:
        statuses = asyncio.run(agent_install.install(_tools_dir(tools_dir), agents))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--only") from exc
    _print(statuses)
    if not all(status.ok for status in statuses):
        raise typer.Exit(1)


@app.command("check")
def check_command(tools_dir: ToolsDir = None) -> None:
    """Report, per agent, the installed version, its path and what is missing."""
    statuses = asyncio.run(agent_install.check(_tools_dir(tools_dir)))
    _print(statuses)
    if not all(status.ok for status in statuses if status.agent != "cursor"):
        raise typer.Exit(1)
