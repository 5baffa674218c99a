"""The CLI as a client of the REST API: its stored login, the SDK client built from it, output as text or
`--json`, and errors as messages with the exit status scripts rely on:

    0  done
    1  the API said no (or could not be reached; or the agent's turn failed)
    2  usage error (a missing or wrong argument), as click reports them

Where the credentials come from, first found first: `REPLICAS_API_KEY` (and `REPLICAS_API_URL`), then the
login stored by `replicas login` (`<config dir>/replicas/credentials.json`, mode 0600), then agent mode
inside a workspace (`REPLICAS_ENGINE_SECRET` and `WORKSPACE_ID`, which the engine gives its agents).
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from replicas.client import (
    APIConnectionError,
    AuthenticationError,
    Credentials,
    NotFoundError,
    RateLimitError,
    Replicas,
    ReplicasError,
)
from replicas.client.models import Model

CREDENTIALS_FILE = "credentials.json"
F = TypeVar("F", bound=Callable[..., Any])

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON (for scripts).")]


# --- the stored login -------------------------------------------------------------------------------

def config_dir() -> Path:
    """The user's config dir for replicas (`$XDG_CONFIG_HOME/replicas`, else `~/.config/replicas` on Linux)."""
    return Path(typer.get_app_dir("replicas"))


def credentials_path() -> Path:
    return config_dir() / CREDENTIALS_FILE


def load_login() -> dict[str, str]:
    """`{"server": ..., "api_key": ...}` as `replicas login` stored them, or {}."""
    try:
        data = json.loads(credentials_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save_login(server: str, api_key: str) -> Path:
    """Store the login readable by the user alone (0600 from its creation: the key is never world-readable)."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump({"server": server, "api_key": api_key}, handle)
    os.replace(temporary, path)
    return path


def forget_login() -> bool:
    try:
        credentials_path().unlink()
    except FileNotFoundError:
        return False
    return True


def current_credentials() -> Credentials:
    stored = load_login()
    return Credentials.from_env(base_url=stored.get("server"), api_key=stored.get("api_key"))


def client() -> Replicas:
    """The SDK client for this invocation (one per process)."""
    global _client
    if _client is None:
        _client = Replicas(credentials=current_credentials())
    return _client


_client: Replicas | None = None


# --- output -----------------------------------------------------------------------------------------

def to_json(value: Any) -> Any:
    if isinstance(value, Model):
        return value.to_json()
    if isinstance(value, list):
        return [to_json(item) for item in value]
    return value


def print_json(value: Any, *, compact: bool = False) -> None:
    """The value's JSON: indented, or on one line (`compact`) where JSON lines follow it."""
    typer.echo(json.dumps(to_json(value), indent=None if compact else 2))


def table(rows: Iterable[Sequence[Any]], headers: Sequence[str]) -> None:
    """Plain aligned columns (no box drawing: the output stays greppable and never wraps mid-id)."""
    rows = [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in rows)]) for i, header in enumerate(headers)]
    for row in [list(headers), *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def usage_error(message: str) -> typer.BadParameter:
    """A usage error (exit status 2), raised where click would not see the problem itself."""
    return typer.BadParameter(message)


# --- errors -----------------------------------------------------------------------------------------

def explain(error: ReplicasError, credentials: Credentials) -> str:
    """What went wrong, and what to do about it, for a person."""
    said = error.error + (f": {error.details}" if error.details else "")
    if isinstance(error, APIConnectionError):
        return (f"{said}\nIs the server running? Point the CLI at it with `replicas login --server URL` "
                f"or REPLICAS_API_URL.")
    if isinstance(error, AuthenticationError):
        if credentials.agent_mode:
            return (f"Not allowed in agent mode ({said}): inside a workspace the CLI acts for workspace "
                    f"{credentials.workspace_id} only (previews).")
        if not credentials.api_key:
            return "Not logged in: run `replicas login --server URL --key KEY`, or set REPLICAS_API_KEY."
        return (f"Not authenticated ({said}): the server refused the API key. Run `replicas login` again, "
                f"or check REPLICAS_API_KEY.")
    if isinstance(error, NotFoundError):
        return f"Not found: {said}"
    if isinstance(error, RateLimitError):
        wait = error.retry_after
        return f"Rate limited: {said}" + (f" (retry in {wait:.0f} s)" if wait is not None else "")
    return f"Error {error.status}: {said}" if error.status else said


def handles_errors(command: F) -> F:
    """Run a client command: an API error leaves as a message on stderr (JSON with `--json`) and status 1."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except ReplicasError as error:
            if kwargs.get("as_json"):
                body = {"error": error.error, "details": error.details, "status": error.status}
                typer.echo(json.dumps(body), err=True)
            else:
                typer.echo(f"error: {explain(error, current_credentials())}", err=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            typer.echo("", err=True)
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def confirm(question: str, force: bool) -> None:
    """Ask before something that cannot be undone; without a terminal to ask on, `--force` is required."""
    if force:
        return
    if not sys.stdin.isatty():
        raise usage_error("not a terminal to confirm on: pass --force (-f)")
    if not typer.confirm(question, default=False):
        raise typer.Exit(1)
