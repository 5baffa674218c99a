"""`replicas images build`: build the workspace image (images/workspace/Dockerfile) with the docker CLI."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Container images for the docker runtime.", no_args_is_help=True)

DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_TAG = "replicas-workspace:latest"
WORKSPACE_DOCKERFILE = Path("images/workspace/Dockerfile")


def find_context(start: Path | None = None) -> Path | None:
    """The source checkout to build from: the first directory, from `start` (else this package's source
    tree, else the current directory) upwards, that holds the workspace Dockerfile and pyproject.toml."""
    starts = [start] if start else [Path(__file__).resolve().parent, Path.cwd()]
    for origin in starts:
        for directory in [origin.resolve(), *origin.resolve().parents]:
            if (directory / WORKSPACE_DOCKERFILE).is_file() and (directory / "pyproject.toml").is_file():
                return directory
    return None


def build_argv(context: Path, *, base: str, tag: str, agents: bool, network: str | None = None,
               extra_ca_certs: str | None = None, docker: str = "docker") -> list[str]:
    argv = [docker, "build", "--file", str(context / WORKSPACE_DOCKERFILE), "--tag", tag,
            "--build-arg", f"BASE_IMAGE={base}", "--build-arg", f"WITH_AGENTS={1 if agents else 0}"]
    if extra_ca_certs:
        argv += ["--build-arg", f"EXTRA_CA_CERTS={extra_ca_certs}"]
    if network:
        argv += ["--network", network]
    return [*argv, str(context)]


@app.command("build")
def build_command(
    base: Annotated[str, typer.Option("--base", help="Base image (a Debian bookworm userland).")] = DEFAULT_BASE,
    tag: Annotated[str, typer.Option("--tag", help="Tag of the image (REPLICAS_DOCKER_IMAGE).")] = DEFAULT_TAG,
    no_agents: Annotated[bool, typer.Option("--no-agents", help="Leave out the agent CLIs (about 1 GB).")] = False,
    network: Annotated[str | None, typer.Option(
        "--network", help="Network for the build's RUN steps, e.g. host.")] = None,
    extra_ca_certs: Annotated[Path | None, typer.Option(
        "--extra-ca-certs", help="PEM file of CA certificates to trust in the image (a TLS-intercepting proxy's).",
        exists=True, dir_okay=False)] = None,
    context: Annotated[Path | None, typer.Option(
        "--context", help="Source checkout to build from (default: found from this package or the cwd).")] = None,
) -> None:
    """Build the workspace image with docker and print its tag (docker's output goes to stderr)."""
    docker = shutil.which("docker")
    if docker is None:
        typer.echo("error: no docker client on PATH", err=True)
        raise typer.Exit(1)
    root = find_context(context)
    if root is None:
        typer.echo(f"error: no source checkout with {WORKSPACE_DOCKERFILE} found; pass --context", err=True)
        raise typer.Exit(1)
    certificates = extra_ca_certs.read_text() if extra_ca_certs else None
    argv = build_argv(root, base=base, tag=tag, agents=not no_agents, network=network,
                      extra_ca_certs=certificates, docker=docker)
    shown = [arg if not arg.startswith("EXTRA_CA_CERTS=") else "EXTRA_CA_CERTS=..." for arg in argv]
    typer.echo(" ".join(shown), err=True)
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=2, stderr=2, check=False)
    if done.returncode != 0:
        typer.echo(f"error: docker build failed with status {done.returncode}", err=True)
        raise typer.Exit(done.returncode)
    typer.echo(tag)
