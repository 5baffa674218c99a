"""`replicas preview create | list | delete` (alias `remove`): a workspace's ports at public URLs.

Inside a workspace (agent mode) they act on that workspace: `replicas preview create 3000`. With an API key,
`--replica ID` names the workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.session import JsonOption, handles_errors, usage_error

app = typer.Typer(help="Previews: a workspace's port at a public URL.", no_args_is_help=True)
Port = Annotated[int, typer.Argument(min=1, max=65535, help="The port served inside the workspace.")]
ReplicaOption = Annotated[str | None, typer.Option("--replica", "-r", help="The replica (not needed inside one).")]


def _workspace(replica: str | None) -> str | None:
    """None (agent mode: the caller's own workspace) or the replica named; an API key must name one."""
    if replica is None and not session.current_credentials().agent_mode:
        raise usage_error("--replica ID is required outside a workspace")
    return replica


@app.command("create")
@handles_errors
def create(port: Port, replica: ReplicaOption = None,
           authenticated: Annotated[bool, typer.Option("--authenticated", help="Require a key to open it.")]
           = False,
           as_json: JsonOption = False) -> None:
    """Publish a port and print its URL."""
    preview = session.client().previews.create(port, authenticated=authenticated, workspace_id=_workspace(replica))
    if as_json:
        session.print_json(preview)
    else:
        typer.echo(preview.publicUrl)


@app.command("list")
@handles_errors
def list_previews(replica: ReplicaOption = None, as_json: JsonOption = False) -> None:
    """List the published ports."""
    previews = session.client().previews.list(workspace_id=_workspace(replica))
    if as_json:
        session.print_json(previews)
        return
    session.table(((p.port, p.publicUrl, "yes" if p.authenticated else "no") for p in previews),
                  ("PORT", "URL", "AUTHENTICATED"))


@handles_errors
def delete(port: Port, replica: ReplicaOption = None, as_json: JsonOption = False) -> None:
    """Stop publishing a port."""
    session.client().previews.delete(port, workspace_id=_workspace(replica))
    if as_json:
        session.print_json({"success": True, "port": port})
    else:
        typer.echo(f"Removed the preview of port {port}")


app.command("delete")(delete)
app.command("remove", hidden=True)(delete)
