"""`replicas`: a client of the Replica API (log in, then `list`, `create`, `send`, `env`, ...), and the
server's own commands (`serve`, `engine`, `keys`, `users`, `agents`, `images`, `admin`).

The client commands live in their own modules (`login`, `replica_commands`, `repo_commands`, `env_commands`,
`automation_commands`, `preview_commands`) and speak to a server through the SDK only; the admin commands
here open a data dir's store directly, for setting up a server before it runs."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from replicas.cli.images import app as images_app
from replicas.settings import Settings

app = typer.Typer(help="Replicas: self-hosted Replica API.", no_args_is_help=True)
keys_app = typer.Typer(help="Organization API keys (on the data dir).", no_args_is_help=True)
users_app = typer.Typer(help="Organization members (on the data dir).", no_args_is_help=True)
admin_app = typer.Typer(help="Administration directly on a data dir (the server need not run).",
                        no_args_is_help=True)
repos_app = typer.Typer(help="Git repositories available to workspaces.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(users_app, name="users")
admin_app.add_typer(repos_app, name="repos")


def _register_server_commands() -> None:
    from replicas.cli.agents import app as agents_app

    app.add_typer(agents_app, name="agents")
    from replicas.cli.engine import engine_command

    app.command("engine", help="Run the in-workspace engine (started by the runtime).")(engine_command)


def _register_client_commands() -> None:
    from replicas.cli import login, mcp_command, replica_commands
    from replicas.cli.automation_commands import app as automation_app
    from replicas.cli.env_commands import app as env_app
    from replicas.cli.preview_commands import app as preview_app
    from replicas.cli.repo_commands import app as client_repos_app

    login.register(app)
    replica_commands.register(app)
    app.add_typer(client_repos_app, name="repos")
    app.add_typer(env_app, name="env")
    app.add_typer(env_app, name="environment", hidden=True)
    app.add_typer(automation_app, name="automation")
    app.add_typer(preview_app, name="preview")
    mcp_command.register(app)


_register_client_commands()
_register_server_commands()
app.add_typer(admin_app, name="admin")
app.add_typer(images_app, name="images")


def _settings(data_dir: Path | None = None) -> Settings:
    overrides = {"data_dir": data_dir} if data_dir else {}
    return Settings(**overrides)


async def with_store(settings: Settings, work):
    """Run `work(session)` against the migrated store of `settings` and commit."""
    from replicas.store.db import make_engine, make_sessionmaker, migrate, session_scope

    settings.ensure_data_dir()
    engine = make_engine(settings.resolved_database_url)
    try:
        await migrate(engine)
        async with session_scope(make_sessionmaker(engine)) as session:
            return await work(session)
    finally:
        await engine.dispose()


DataDir = Annotated[Path | None, typer.Option("--data-dir", help="Data directory (REPLICAS_DATA_DIR).")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (REPLICAS_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (REPLICAS_PORT, default 8321).")] = None,
    data_dir: DataDir = None,
) -> None:
    """Start the control plane."""

    import uvicorn

    from replicas import long_lived
    from replicas.api.app import create_app

    overrides: dict = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    if data_dir:
        overrides["data_dir"] = data_dir
    settings = Settings(**overrides)
    from replicas import logs

    logs.configure(settings.log_level, settings.log_format)
    lock = _single_process_lock(settings)  # held until this process exits
    from replicas import draining

    class Server(long_lived.Server):
        """On SIGTERM/SIGINT: stop taking connections (uvicorn), end the open streams at once (their clients
        reconnect elsewhere), let requests in flight finish, then the lifespan hands the leases back."""

        def handle_exit(self, sig, frame) -> None:
            draining.begin()
            super().handle_exit(sig, frame)

    app = create_app(settings, announce_first_key=True)  # a store without keys: the first one is logged once
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_config=None,
                            log_level=settings.log_level, proxy_headers=True, timeout_graceful_shutdown=10,
                            access_log=False)  # ours: logs.py, api/observability.py
    Server(config).run()
    del lock


def _single_process_lock(settings: Settings):
    """SQLite (and the local runtime beside it) serve from one process: a second `replicas serve` on the same
    SQLite database is refused with a clear error, not left to corrupt or race the first. The lock is an
    flock on a file beside the database, released by the kernel when the process ends, however it ends."""
    import fcntl

    url = settings.resolved_database_url
    if not url.startswith("sqlite"):
        return None
    database = Path(url.split(":///", 1)[1])
    database.parent.mkdir(parents=True, exist_ok=True)
    handle = open(database.with_name(database.name + ".serve-lock"), "a+")  # noqa: SIM115 - held for the process
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        typer.echo(f"Error: another `replicas serve` is running on the SQLite database {database}. SQLite and the "
                   "local runtime serve from one process; to run several, use PostgreSQL (REPLICAS_DATABASE_URL) "
                   "and the docker or kubernetes runtime.", err=True)
        raise typer.Exit(1) from None
    return handle


@keys_app.command("create")
def keys_create(
    org: Annotated[str, typer.Option("--org", help="Organization name (created if absent).")] = "default",
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "cli",
    data_dir: DataDir = None,
) -> None:
    """Mint an organization API key and print it (it is shown only once)."""
    from replicas.services import auth

    async def work(session):
        organization = await auth.get_or_create_organization(session, org)
        return await auth.create_org_key(session, organization, name=name)

    typer.echo(asyncio.run(with_store(_settings(data_dir), work)))


@users_app.command("create")
def users_create(
    email: str,
    org: Annotated[str, typer.Option("--org", help="Organization name (created if absent).")] = "default",
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an org admin.")] = False,
    data_dir: DataDir = None,
) -> None:
    """Add a member and print a personal API key for them."""
    from replicas.crypto import hash_api_key, new_api_key
    from replicas.services import auth
    from replicas.store.models import ApiKey

    async def work(session):
        organization = await auth.get_or_create_organization(session, org)
        user = await auth.create_user(session, organization, email, role="admin" if admin else "member")
        key = new_api_key()
        session.add(ApiKey(organization_id=organization.id, user_id=user.id, name="cli",
                           key_hash=hash_api_key(key), key_prefix=key[:16]))
        return key

    typer.echo(asyncio.run(with_store(_settings(data_dir), work)))


OrgOption = Annotated[str, typer.Option("--org", help="Organization name.")]


def _run_as_org(org: str, data_dir: Path | None, work, *, create_org: bool = False):
    """Run `work(session, principal, settings)` as the organization's `system` actor.

    Service errors leave as `error: ...` on stderr with exit status 1, not as a traceback."""
    from replicas.errors import NotFound, ReplicasError
    from replicas.services import auth
    from replicas.services.principal import Principal
    from replicas.store.models import Organization

    settings = _settings(data_dir)

    async def as_org(session):
        if create_org:
            organization = await auth.get_or_create_organization(session, org)
        else:
            from sqlalchemy import select

            organization = await session.scalar(select(Organization).where(Organization.name == org))
            if organization is None:
                raise NotFound("Organization not found", f"no organization named {org!r}")
        return await work(session, Principal.system(organization.id), settings)

    try:
        return asyncio.run(with_store(settings, as_org))
    except ReplicasError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@repos_app.command("add")
def repos_add(
    name: Annotated[str, typer.Argument(help="Repository name, typically owner/repo.")],
    url: Annotated[str, typer.Argument(help="Absolute local path, file:// or https:// URL.")],
    default_branch: Annotated[str | None, typer.Option("--default-branch", help="Branch to record.")] = None,
    credential: Annotated[str | None, typer.Option(
        "--credential", help="Token or user:token for HTTPS remotes (stored encrypted).")] = None,
    org: Annotated[str, typer.Option("--org", help="Organization name (created if absent).")] = "default",
    data_dir: DataDir = None,
) -> None:
    """Register a git repository (checked with git ls-remote) and print it as JSON."""
    import json

    from replicas.api.schemas.repositories import repository_view
    from replicas.crypto import SecretBox
    from replicas.services import repositories

    async def work(session, principal, settings):
        box = SecretBox.from_settings(settings.secret_key, settings.data_dir)
        repo = await repositories.register_repository(
            session, principal, box, settings=settings, name=name, url=url, default_branch=default_branch,
            credential=credential)
        return repository_view(repo)

    typer.echo(json.dumps(_run_as_org(org, data_dir, work, create_org=True), indent=2))


@repos_app.command("list")
def repos_list(org: OrgOption = "default", data_dir: DataDir = None) -> None:
    """Print the organization's repositories as JSON."""
    import json

    from replicas.api.schemas.repositories import repository_view
    from replicas.services import repositories

    async def work(session, principal, _settings):
        return [repository_view(r) for r in await repositories.list_repositories(session, principal)]

    typer.echo(json.dumps(_run_as_org(org, data_dir, work), indent=2))


@repos_app.command("remove")
def repos_remove(
    name: Annotated[str, typer.Argument(help="Repository name.")],
    org: OrgOption = "default",
    data_dir: DataDir = None,
) -> None:
    """Remove a repository (refused while an environment is bound to it)."""
    from replicas.services import repositories

    async def work(session, principal, _settings):
        repo = await repositories.get_repository_by_name(session, principal, name)
        await repositories.delete_repository(session, principal, repo.id)

    _run_as_org(org, data_dir, work)
    typer.echo(f"removed {name}")


if __name__ == "__main__":  # pragma: no cover
    app()
