"""`replicas login | logout | whoami`: which server the CLI talks to, and as whom."""

from __future__ import annotations

from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.session import JsonOption, handles_errors
from replicas.client import AuthenticationError, Credentials, NotFoundError, Replicas


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)


@handles_errors
def login(
    server: Annotated[str, typer.Option("--server", "-s", help="The server's URL, e.g. http://127.0.0.1:8321.")],
    key: Annotated[str | None, typer.Option("--key", "-k", help="An API key (sk_replicas_...); asked if left out.")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """Check an API key against a server and store both for the next commands (mode 0600)."""
    if key is None:
        key = typer.prompt("API key", hide_input=True)
    server = server.rstrip("/")
    with Replicas(credentials=Credentials(server, api_key=key)) as checking:
        try:
            checking.replicas.list(limit=1)
        except AuthenticationError as refused:
            typer.echo(f"error: {server} refused this API key ({refused.error}); nothing was stored", err=True)
            raise typer.Exit(1) from None
    path = session.save_login(server, key)
    if as_json:
        session.print_json({"server": server, "credentials_file": str(path)})
    else:
        typer.echo(f"Logged in to {server} (credentials in {path})")


def logout(as_json: JsonOption = False) -> None:
    """Forget the stored login."""
    removed = session.forget_login()
    if as_json:
        session.print_json({"logged_out": removed})
    else:
        typer.echo("Logged out" if removed else "Not logged in")


@handles_errors
def whoami(as_json: JsonOption = False) -> None:
    """Who the CLI acts as: the key's user (GET /v1/user/profile), its organization, or this workspace."""
    credentials = session.current_credentials()
    client = session.client()
    if credentials.agent_mode:
        answer = {"server": credentials.base_url, "mode": "agent", "workspace_id": credentials.workspace_id}
    else:
        try:
            profile = client.user.profile().to_json()
            answer = {"server": credentials.base_url, "mode": "user", "profile": profile}
        except NotFoundError:  # an organization key: it acts for the organization and has no user
            client.replicas.list(limit=1)  # still refuses a bad key with 401
            answer = {"server": credentials.base_url, "mode": "organization", "profile": None}
    if as_json:
        session.print_json(answer)
    elif answer["mode"] == "agent":
        typer.echo(f"Workspace {answer['workspace_id']} (agent mode) at {answer['server']}")
    elif answer["mode"] == "user":
        profile = answer["profile"]
        typer.echo(f"{profile.get('displayName') or profile.get('email')} <{profile.get('email')}> "
                   f"at {answer['server']}")
    else:
        typer.echo(f"An organization API key (no user) at {answer['server']}")
