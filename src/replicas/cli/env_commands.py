"""`replicas env ...` (alias `environment`): environments and what hangs under one, by name or id (or
`global`): `vars`, `files`, `mcps`, `skills`, `warm-hook`, `warm-pool`. The hosted CLI's verbs (spec §8.2)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.session import JsonOption, handles_errors, usage_error

app = typer.Typer(help="Environments: repositories, variables, files and hooks for replicas.", no_args_is_help=True)
vars_app = typer.Typer(help="An environment's variables (values are shown).", no_args_is_help=True)
files_app = typer.Typer(help="Files written into each workspace of an environment.", no_args_is_help=True)
mcps_app = typer.Typer(help="MCP servers written into each workspace's agent configs.", no_args_is_help=True)
skills_app = typer.Typer(help="Skills from the catalog, installed into each workspace.", no_args_is_help=True)
warm_hook_app = typer.Typer(help="The warm hook: a script run once when a workspace is prepared.",
                            no_args_is_help=True)
warm_pool_app = typer.Typer(help="The warm pool: workspaces kept ready to claim.", no_args_is_help=True)
app.add_typer(vars_app, name="vars")
app.add_typer(files_app, name="files")
app.add_typer(mcps_app, name="mcps")
app.add_typer(skills_app, name="skills")
app.add_typer(warm_hook_app, name="warm-hook")
app.add_typer(warm_pool_app, name="warm-pool")

EnvRef = Annotated[str, typer.Argument(help="Environment name, id, or `global`.", metavar="ENV")]


def _env_id(ref: str) -> str:
    return "global" if ref == "global" else session.client().environments.find(ref).id


def _repository_id(ref: str | None) -> str | None:
    return None if ref is None else session.client().repositories.find(ref).id


def _delete(kind: str, environment: str, ref: str, label: str, as_json: bool) -> None:
    """Delete the item of `environments.<kind>` that `ref` names (id, or what its `find` matches)."""
    api = getattr(session.client().environments, kind)
    env_id = _env_id(environment)
    found = api.find(env_id, ref)
    api.delete(env_id, found.id)
    if as_json:
        session.print_json({"success": True, "id": found.id})
    else:
        typer.echo(f"Deleted {getattr(found, label)}")


# --- environments -----------------------------------------------------------------------------------

@app.command("list")
@handles_errors
def list_environments(as_json: JsonOption = False) -> None:
    """List the environments (Global first)."""
    environments = session.client().environments.list(scope="all")
    if as_json:
        session.print_json(environments)
        return
    repositories = {r.id: r.name for r in session.client().repositories.list()}
    session.table(((e.id, e.name, repositories.get(e.repository_id or "", ""), (e.model_extra or {}).get(
        "variable_count", ""), (e.model_extra or {}).get("file_count", "")) for e in environments),
        ("ID", "NAME", "REPOSITORY", "VARS", "FILES"))


@app.command("get")
@handles_errors
def get(environment: EnvRef, as_json: JsonOption = False) -> None:
    """Show an environment."""
    env = session.client().environments.get(_env_id(environment))
    if as_json:
        session.print_json(env)
        return
    for key, value in env.to_json().items():
        typer.echo(f"{key}: {value}")


@app.command("create")
@handles_errors
def create(name: Annotated[str, typer.Argument(help="A name, unique in the organization.")],
           description: Annotated[str | None, typer.Option("--description", "-d")] = None,
           repository: Annotated[str | None, typer.Option("--repository", "-r", help="Repository name or id.")]
           = None,
           system_prompt: Annotated[str | None, typer.Option("--system-prompt", help="Rules for the agent.")] = None,
           as_json: JsonOption = False) -> None:
    """Create an environment, bound to a repository or to none."""
    env = session.client().environments.create(name=name, description=description,
                                               repository_id=_repository_id(repository), system_prompt=system_prompt)
    if as_json:
        session.print_json(env)
    else:
        typer.echo(f"Created environment {env.name} ({env.id})")


@app.command("edit")
@handles_errors
def edit(environment: EnvRef,
         name: Annotated[str | None, typer.Option("--name", help="A new name.")] = None,
         description: Annotated[str | None, typer.Option("--description", "-d")] = None,
         repository: Annotated[str | None, typer.Option("--repository", "-r", help="Repository name or id.")] = None,
         system_prompt: Annotated[str | None, typer.Option("--system-prompt")] = None,
         as_json: JsonOption = False) -> None:
    """Change an environment's name, description, repository or system prompt."""
    fields = {key: value for key, value in (("name", name), ("description", description),
                                            ("repository_id", _repository_id(repository)),
                                            ("system_prompt", system_prompt)) if value is not None}
    if not fields:
        raise usage_error("nothing to change: give --name, --description, --repository or --system-prompt")
    env = session.client().environments.update(_env_id(environment), **fields)
    if as_json:
        session.print_json(env)
    else:
        typer.echo(f"Updated environment {env.name}")


@app.command("delete")
@handles_errors
def delete(environment: EnvRef, force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
           as_json: JsonOption = False) -> None:
    """Delete an environment (refused while an automation uses it)."""
    env_id = _env_id(environment)
    session.confirm(f"Delete environment {environment}?", force)
    session.client().environments.delete(env_id)
    if as_json:
        session.print_json({"success": True, "id": env_id})
    else:
        typer.echo(f"Deleted environment {environment}")


# --- variables --------------------------------------------------------------------------------------

@vars_app.command("list")
@handles_errors
def vars_list(environment: EnvRef, as_json: JsonOption = False) -> None:
    variables = session.client().environments.variables.list(_env_id(environment))
    if as_json:
        session.print_json(variables)
        return
    session.table(((v.id, v.key, v.value) for v in variables), ("ID", "KEY", "VALUE"))


@vars_app.command("set")
@handles_errors
def vars_set(environment: EnvRef, key: str, value: str, as_json: JsonOption = False) -> None:
    """Set a variable (created, or updated when the key exists)."""
    variable = session.client().environments.variables.set(_env_id(environment), key, value)
    if as_json:
        session.print_json(variable)
    else:
        typer.echo(f"Set {variable.key}")


@vars_app.command("delete")
@handles_errors
def vars_delete(environment: EnvRef, key: Annotated[str, typer.Argument(help="The key, or the variable's id.")],
                as_json: JsonOption = False) -> None:
    _delete("variables", environment, key, "key", as_json)


# --- files ------------------------------------------------------------------------------------------

@files_app.command("list")
@handles_errors
def files_list(environment: EnvRef, as_json: JsonOption = False) -> None:
    files = session.client().environments.files.list(_env_id(environment))
    if as_json:
        session.print_json(files)
        return
    session.table(((f.id, f.path, f.name, len(f.content.encode())) for f in files), ("ID", "PATH", "NAME", "BYTES"))


@files_app.command("set")
@handles_errors
def files_set(environment: EnvRef,
              path: Annotated[str, typer.Argument(help="Where it goes in the workspace, under ~/.")],
              content: Annotated[str | None, typer.Option("--content", help="The file's text.")] = None,
              file: Annotated[Path | None, typer.Option("--file", help="Read the text from this file.",
                                                        exists=True, dir_okay=False)] = None,
              name: Annotated[str | None, typer.Option("--name", help="A label (default: the file name).")] = None,
              as_json: JsonOption = False) -> None:
    """Set a file (created, or updated when one has this path)."""
    if (content is None) == (file is None):
        raise usage_error("give the text with --content or --file (one of them)")
    text = content if content is not None else file.read_text()
    saved = session.client().environments.files.set(_env_id(environment), path, text, name)
    if as_json:
        session.print_json(saved)
    else:
        typer.echo(f"Set {saved.path}")


@files_app.command("delete")
@handles_errors
def files_delete(environment: EnvRef, path: Annotated[str, typer.Argument(help="The path, or the file's id.")],
                 as_json: JsonOption = False) -> None:
    _delete("files", environment, path, "path", as_json)


# --- MCP servers ------------------------------------------------------------------------------------

def _pairs(values: list[str] | None, separator: str, option: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, found, rest = value.partition(separator)
        if not found or not key:
            raise usage_error(f"{option} takes KEY{separator}VALUE, not {value!r}")
        pairs[key.strip()] = rest.strip() if separator == ":" else rest
    return pairs


def _mcp_config(command: str | None, args: list[str] | None, env: list[str] | None, url: str | None,
                headers: list[str] | None, transport: str | None, config: str | None) -> tuple[str, dict]:
    """The transport and config from the flags: --command (stdio), --url (http, or --transport sse), or --config."""
    if sum(x is not None for x in (command, url, config)) != 1:
        raise usage_error("give the server with --command (stdio), --url (http, sse) or --config JSON (one of them)")
    if config is not None:
        try:
            parsed = json.loads(config)
        except ValueError as exc:
            raise usage_error(f"--config is not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise usage_error("--config must be a JSON object")
        return transport or ("stdio" if "command" in parsed else "http"), parsed
    if command is not None:
        if transport not in (None, "stdio") or url is not None or headers:
            raise usage_error("--command is a stdio server: --url, --header and --transport do not apply")
        return "stdio", {"command": command, "args": list(args or []), "env": _pairs(env, "=", "--env")}
    if args or env:
        raise usage_error("arguments and --env are for a stdio server (--command)")
    if transport not in (None, "http", "sse"):
        raise usage_error("--url takes --transport http or sse")
    return transport or "http", {"url": url, "headers": _pairs(headers, ":", "--header")}


def _show_mcp(mcp) -> str:
    config = mcp.config or {}
    if mcp.transport == "stdio":
        return " ".join([str(config.get("command", "")), *map(str, config.get("args") or [])])
    return str(config.get("url", ""))


@mcps_app.command("list")
@handles_errors
def mcps_list(environment: EnvRef, as_json: JsonOption = False) -> None:
    mcps = session.client().environments.mcps.list(_env_id(environment))
    if as_json:
        session.print_json(mcps)
        return
    session.table(((m.id, m.name, m.transport, _show_mcp(m)) for m in mcps), ("ID", "NAME", "TRANSPORT", "SERVER"))


@mcps_app.command("set")
@handles_errors
def mcps_set(environment: EnvRef,
             name: Annotated[str, typer.Argument(help="Letters, digits, - and _ (not replicas-...).")],
             args: Annotated[list[str] | None, typer.Argument(
                 help="A stdio server's arguments, after `--`: ... --command npx -- -y @linear/mcp")] = None,
             command: Annotated[str | None, typer.Option("--command", help="A stdio server's program.")] = None,
             env: Annotated[list[str] | None, typer.Option("--env", help="KEY=VALUE for its environment.")] = None,
             url: Annotated[str | None, typer.Option("--url", help="An http or sse server's URL.")] = None,
             headers: Annotated[list[str] | None, typer.Option("--header", help="'Name: value' sent to it.")] = None,
             transport: Annotated[str | None, typer.Option("--transport", help="stdio, http or sse.")] = None,
             config: Annotated[str | None, typer.Option("--config", help="The API's config object, as JSON.")] = None,
             as_json: JsonOption = False) -> None:
    """Set an MCP server (created, or replaced when one has this name)."""
    kind, body = _mcp_config(command, args, env, url, headers, transport, config)
    saved = session.client().environments.mcps.set(_env_id(environment), name, kind, body)
    if as_json:
        session.print_json(saved)
    else:
        typer.echo(f"Set {saved.name} ({saved.transport})")


@mcps_app.command("delete")
@handles_errors
def mcps_delete(environment: EnvRef, name: Annotated[str, typer.Argument(help="The name, or the server's id.")],
                as_json: JsonOption = False) -> None:
    _delete("mcps", environment, name, "name", as_json)


@mcps_app.command("test")
@handles_errors
def mcps_test(environment: EnvRef, name: Annotated[str, typer.Argument(help="The name, or the server's id.")],
              as_json: JsonOption = False) -> None:
    """Start the saved server in a throwaway sandbox and list its tools (exit status 1 when it does not answer)."""
    client = session.client()
    env_id = _env_id(environment)
    result = client.environments.mcps.test(env_id, client.environments.mcps.find(env_id, name).id)
    if as_json:
        session.print_json(result)
    elif result.ok:
        server = result.server or {}
        typer.echo(f"{name}: answered ({server.get('name', '?')} {server.get('version') or ''}".rstrip() + ")")
        typer.echo(f"tools: {', '.join(result.tools) or '(none)'}")
    else:
        typer.echo(f"{name}: did not answer: {result.error}", err=True)
        if result.output:
            typer.echo(result.output.rstrip("\n"), err=True)
    raise typer.Exit(0 if result.ok else 1)


# --- skills -----------------------------------------------------------------------------------------

@skills_app.command("search")
@handles_errors
def skills_search(query: Annotated[str, typer.Argument(help="Words to look for (none: the popular ones).")] = "",
                  as_json: JsonOption = False) -> None:
    """Search the skills catalog."""
    hits = session.client().environments.skills.search(query)
    if as_json:
        session.print_json(hits)
        return
    session.table(((h.slug, h.name, h.source, h.installs) for h in hits), ("SLUG", "NAME", "SOURCE", "INSTALLS"))


@skills_app.command("list")
@handles_errors
def skills_list(environment: EnvRef, as_json: JsonOption = False) -> None:
    skills = session.client().environments.skills.list(_env_id(environment))
    if as_json:
        session.print_json(skills)
        return
    session.table(((s.id, s.slug, s.name, s.source) for s in skills), ("ID", "SLUG", "NAME", "SOURCE"))


@skills_app.command("add")
@handles_errors
def skills_add(environment: EnvRef,
               skill: Annotated[str, typer.Argument(help="The skill's slug or name, as `skills search` shows it.")],
               query: Annotated[str | None, typer.Option("--query", "-q", help="Search with these words.")] = None,
               as_json: JsonOption = False) -> None:
    """Enable a skill of the catalog on the environment."""
    added = session.client().environments.skills.add(_env_id(environment), skill, query)
    if as_json:
        session.print_json(added)
    else:
        typer.echo(f"Added {added.slug} ({added.source})")


@skills_app.command("delete")
@handles_errors
def skills_delete(environment: EnvRef, skill: Annotated[str, typer.Argument(help="Its slug, name or id.")],
                  as_json: JsonOption = False) -> None:
    _delete("skills", environment, skill, "slug", as_json)


# --- warm hook --------------------------------------------------------------------------------------

Script = Annotated[str | None, typer.Option("--script", help="A script file, or - for standard input.")]
Inline = Annotated[str | None, typer.Option("--inline", help="The script's text.")]


def _script(script: str | None, inline: str | None) -> str | None:
    if script is not None and inline is not None:
        raise usage_error("give --script or --inline, not both")
    if script == "-":
        return sys.stdin.read()
    if script is not None:
        path = Path(script)
        if not path.is_file():
            raise usage_error(f"--script: no such file: {script}")
        return path.read_text()
    return inline


@warm_hook_app.command("get")
@handles_errors
def warm_hook_get(environment: EnvRef, as_json: JsonOption = False) -> None:
    """Show the active warm hook."""
    state = session.client().environments.warm_hook.get(_env_id(environment))
    if as_json:
        session.print_json(state)
    elif state.warm_hook is None:
        typer.echo("No warm hook")
    else:
        typer.echo(f"# version {state.warm_hook.version}, saved {state.warm_hook.created_at}")
        typer.echo(state.warm_hook.content.rstrip("\n"))


@warm_hook_app.command("set")
@handles_errors
def warm_hook_set(environment: EnvRef, script: Script = None, inline: Inline = None,
                  as_json: JsonOption = False) -> None:
    """Save a new warm hook (the pool's ready workspaces are replaced)."""
    content = _script(script, inline)
    if content is None:
        raise usage_error("give the script with --script PATH, --script - or --inline TEXT")
    saved = session.client().environments.warm_hook.save(_env_id(environment), content)
    if as_json:
        session.print_json(saved)
    else:
        typer.echo(f"Saved warm hook version {saved.version}")


@warm_hook_app.command("test")
@handles_errors
def warm_hook_test(environment: EnvRef, script: Script = None, inline: Inline = None,
                   use_current: Annotated[bool, typer.Option("--use-current", help="Test the saved hook.")] = False,
                   as_json: JsonOption = False) -> None:
    """Run a warm hook in a throwaway sandbox, streaming its output (nothing is saved)."""
    client = session.client()
    env_id = _env_id(environment)
    content = _script(script, inline)
    if use_current == (content is not None):
        raise usage_error("give --script, --inline or --use-current (one of them)")
    if use_current:
        current = client.environments.warm_hook.get(env_id).warm_hook
        if current is None:
            raise usage_error("--use-current: the environment has no warm hook")
        content = current.content
    exit_code = 1
    for event in client.environments.warm_hook.test_stream(env_id, content):
        if as_json:
            typer.echo(event.model_dump_json(exclude_none=True))
        elif event.type == "output":
            sys.stdout.write(event.output or "")
            sys.stdout.flush()
        elif event.type == "progress":
            typer.echo(f"• {event.message}", err=True)
        elif event.type == "error":
            typer.echo(f"error: {event.message}", err=True)
        if event.type == "complete":
            exit_code = event.exit_code if event.exit_code is not None else 1
            if not as_json:
                typer.echo(f"exit code {exit_code}" + (" (timed out)" if event.timed_out else ""), err=True)
    raise typer.Exit(0 if exit_code == 0 else 1)


# --- warm pool --------------------------------------------------------------------------------------

def _show_pool(pool, as_json: bool) -> None:
    if as_json:
        session.print_json(pool)
    elif pool is None:
        typer.echo("No warm pool")
    else:
        typer.echo(f"{'enabled' if pool.enabled else 'disabled'}, target size {pool.target_size}: "
                   f"{pool.ready_count} ready, {pool.warming_count} warming, {pool.stale_count} stale")


@warm_pool_app.command("get")
@handles_errors
def warm_pool_get(environment: EnvRef, as_json: JsonOption = False) -> None:
    _show_pool(session.client().environments.warm_pool.get(_env_id(environment)), as_json)


@warm_pool_app.command("enable")
@handles_errors
def warm_pool_enable(environment: EnvRef, as_json: JsonOption = False) -> None:
    _show_pool(session.client().environments.warm_pool.put(_env_id(environment), enabled=True), as_json)


@warm_pool_app.command("disable")
@handles_errors
def warm_pool_disable(environment: EnvRef, as_json: JsonOption = False) -> None:
    _show_pool(session.client().environments.warm_pool.put(_env_id(environment), enabled=False), as_json)


@warm_pool_app.command("set")
@handles_errors
def warm_pool_set(environment: EnvRef,
                  size: Annotated[int, typer.Option("--size", min=0, max=20, help="Workspaces kept ready (0: off).")],
                  as_json: JsonOption = False) -> None:
    pool = session.client().environments.warm_pool.put(_env_id(environment), enabled=size > 0, target_size=size)
    _show_pool(pool, as_json)
