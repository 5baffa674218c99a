"""`replicas repos [list | add | remove]`: the git repositories replicas can check out (through the API;
`replicas admin repos` does the same on a data dir directly)."""

from __future__ import annotations

from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.session import JsonOption, handles_errors

app = typer.Typer(help="Git repositories available to replicas (`repos` alone lists them).",
                  invoke_without_command=True)


@app.callback()
def repos(context: typer.Context, as_json: JsonOption = False) -> None:
    if context.invoked_subcommand is None:
        list_repositories(as_json=as_json)


@app.command("list")
@handles_errors
def list_repositories(as_json: JsonOption = False) -> None:
    """List the repositories."""
    repositories = session.client().repositories.list()
    if as_json:
        session.print_json(repositories)
        return
    session.table(((r.id, r.name, r.default_branch, r.url) for r in repositories),
                  ("ID", "NAME", "BRANCH", "URL"))


@app.command("add")
@handles_errors
def add(name: Annotated[str, typer.Argument(help="Its name, typically owner/repo.")],
        url: Annotated[str, typer.Argument(help="A path on the server, file:// or https:// URL.")],
        default_branch: Annotated[str | None, typer.Option("--default-branch", help="Branch to start from.")]
        = None,
        credential: Annotated[str | None, typer.Option("--credential", help="Token for an HTTPS remote.")] = None,
        as_json: JsonOption = False) -> None:
    """Register a repository (the server checks it with git ls-remote)."""
    repository = session.client().repositories.create(name=name, url=url, default_branch=default_branch,
                                                      credential=credential)
    if as_json:
        session.print_json(repository)
    else:
        typer.echo(f"Added {repository.name} ({repository.default_branch}) {repository.id}")


@app.command("remove")
@handles_errors
def remove(repository: Annotated[str, typer.Argument(help="Its name or id.")], as_json: JsonOption = False) -> None:
    """Remove a repository (refused while an environment is bound to it)."""
    client = session.client()
    found = client.repositories.find(repository)
    client.repositories.delete(found.id)
    if as_json:
        session.print_json({"success": True, "id": found.id})
    else:
        typer.echo(f"Removed {found.name}")
