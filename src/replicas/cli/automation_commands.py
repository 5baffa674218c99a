"""`replicas automation list | get | create | run | delete`: prompts that run in a new replica on a schedule,
on a repository's event or by hand, with the hosted CLI's trigger flags (spec §8.2)."""

from __future__ import annotations

from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.session import JsonOption, handles_errors, usage_error

app = typer.Typer(help="Automations: a prompt run in a new replica on a trigger.", no_args_is_help=True)
AutomationId = Annotated[str, typer.Argument(help="The automation's id.", metavar="ID")]


def describe_triggers(triggers: list[dict]) -> str:
    parts = []
    for trigger in triggers:
        config = trigger.get("config") or {}
        detail = config.get("schedule") or config.get("event") or ""
        parts.append(f"{trigger.get('type')}" + (f" {detail}" if detail else ""))
    return ", ".join(parts)


@app.command("list")
@handles_errors
def list_automations(
    page: Annotated[int, typer.Option("--page", "-p", min=1)] = 1,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=100)] = 20,
    personal: Annotated[bool, typer.Option("--personal", help="Also your personal ones.")] = False,
    as_json: JsonOption = False,
) -> None:
    """List the automations."""
    listed = session.client().automations.list(page=page, limit=limit, scope="all" if personal else None)
    if as_json:
        session.print_json(listed)
        return
    session.table(((a.id, "on" if a.enabled else "off", a.name, describe_triggers(a.triggers)) for a in listed.items),
                  ("ID", "ENABLED", "NAME", "TRIGGERS"))


@app.command("get")
@handles_errors
def get(automation_id: AutomationId, as_json: JsonOption = False) -> None:
    """Show an automation."""
    automation = session.client().automations.get(automation_id)
    if as_json:
        session.print_json(automation)
        return
    typer.echo(f"{automation.name} ({automation.id}): {'enabled' if automation.enabled else 'disabled'}")
    typer.echo(f"  triggers:    {describe_triggers(automation.triggers)}")
    if automation.cron_next_fire_at:
        typer.echo(f"  next run:    {automation.cron_next_fire_at}")
    typer.echo(f"  environment: {automation.environment_id}")
    typer.echo(f"  prompt:      {automation.prompt}")


@app.command("create")
@handles_errors
def create(
    name: Annotated[str, typer.Argument(help="The automation's name.")],
    prompt: Annotated[str, typer.Option("--prompt", help="What the agent is asked each run.")],
    environment: Annotated[str, typer.Option("--environment", "-e", help="Environment name or id.")] = "global",
    trigger_cron: Annotated[str | None, typer.Option("--trigger-cron", help="A cron schedule, e.g. '0 9 * * 1-5'.")]
    = None,
    trigger_cron_timezone: Annotated[str | None, typer.Option("--trigger-cron-timezone", help="IANA zone.")] = None,
    trigger_github: Annotated[list[str] | None, typer.Option(
        "--trigger-github", help="A GitHub event (pull_request.opened, ...); repeat for more.")] = None,
    trigger_github_repos: Annotated[str | None, typer.Option(
        "--trigger-github-repos", help="Only these repositories: owner/a,owner/b.")] = None,
    trigger_webhook: Annotated[bool, typer.Option("--trigger-webhook", help="Fire on POSTs to a secret URL.")]
    = False,
    lifecycle: Annotated[str | None, typer.Option("--lifecycle", help="default, archive_when_done, "
                                                  "sleep_when_done, delete_when_done or delete_after_inactivity.")]
    = None,
    auto_stop_minutes: Annotated[int | None, typer.Option("--auto-stop-minutes", min=3, max=1440)] = None,
    agent: Annotated[str | None, typer.Option("--agent", "-a", help="The coding agent.")] = None,
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it switched off.")] = False,
    personal: Annotated[bool, typer.Option("--personal", help="Yours alone (needs a personal key).")] = False,
    as_json: JsonOption = False,
) -> None:
    """Create an automation with at least one trigger."""
    client = session.client()
    triggers: list[dict] = []
    if trigger_cron:
        config = {"schedule": trigger_cron, **({"timezone": trigger_cron_timezone} if trigger_cron_timezone else {})}
        triggers.append({"type": "cron", "config": config})
    elif trigger_cron_timezone:
        raise usage_error("--trigger-cron-timezone goes with --trigger-cron")
    repository_ids = [client.repositories.find(ref.strip()).id
                      for ref in (trigger_github_repos or "").split(",") if ref.strip()]
    if repository_ids and not trigger_github:
        raise usage_error("--trigger-github-repos goes with --trigger-github")
    for event in trigger_github or []:
        triggers.append({"type": "github", "config": {"event": event,
                                                      **({"repository_ids": repository_ids} if repository_ids
                                                         else {})}})
    if trigger_webhook:
        triggers.append({"type": "custom", "config": {}})
    if not triggers:
        raise usage_error("give a trigger: --trigger-cron, --trigger-github or --trigger-webhook")
    automation = client.automations.create(
        name=name, prompt=prompt, environment_id=client.environments.find(environment).id, triggers=triggers,
        workspace_lifecycle_policy=lifecycle, workspace_auto_stop_minutes=auto_stop_minutes, agent_provider=agent,
        enabled=False if disabled else None, scope="user" if personal else None)
    if as_json:
        session.print_json(automation)
    else:
        typer.echo(f"Created automation {automation.name} ({automation.id})")
        if automation.webhook_token:
            typer.echo(f"  webhook: POST {client.credentials.base_url}/v1/automations/webhook/"
                       f"{automation.webhook_token}")


@app.command("run")
@handles_errors
def run(automation_id: AutomationId, as_json: JsonOption = False) -> None:
    """Run an automation now, in a new replica."""
    result = session.client().automations.run(automation_id)
    if as_json:
        session.print_json(result)
    else:
        typer.echo(f"Started execution {result.execution_id}"
                   + (f" in replica {result.workspace_id}" if result.workspace_id else ""))


@app.command("delete")
@handles_errors
def delete(automation_id: AutomationId, force: Annotated[bool, typer.Option("--force", "-f")] = False,
           as_json: JsonOption = False) -> None:
    """Delete an automation and its execution history."""
    session.confirm(f"Delete automation {automation_id}?", force)
    session.client().automations.delete(automation_id)
    if as_json:
        session.print_json({"success": True, "id": automation_id})
    else:
        typer.echo(f"Deleted automation {automation_id}")
