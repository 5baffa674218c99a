"""`replicas engine`: run the in-workspace engine daemon (started by the runtime inside the sandbox)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="The in-workspace engine daemon.")


@app.command("engine")
def engine_command(
    socket: Annotated[str | None, typer.Option(
        "--socket", help="Unix socket to serve on (default: REPLICAS_ENGINE_SOCKET).")] = None,
    home: Annotated[str | None, typer.Option("--home", help="Workspace home (default: HOME).")] = None,
    tcp: Annotated[str | None, typer.Option("--tcp", help="HOST:PORT to serve on instead of a socket.")] = None,
) -> None:
    """Serve the engine API; needs REPLICAS_ENGINE_SECRET in the environment."""
    from replicas.engine.main import run

    run(socket, home, tcp)
