"""`replicas list | get | create | send | read | watch | delete | sleep | wake | diff`: replicas from the shell,
with the hosted CLI's flags (spec §8.2)."""

from __future__ import annotations

import re
import time
from typing import Annotated

import typer

from replicas.cli import session
from replicas.cli.live_view import LiveView, TurnWatch, render_line
from replicas.cli.session import JsonOption, handles_errors, usage_error
from replicas.cli.transcript import lines_of
from replicas.client import NotFoundError

AGENTS = ("claude", "codex", "cursor", "opencode", "pi")
ReplicaId = Annotated[str, typer.Argument(help="The replica's id.", metavar="ID")]
Message = Annotated[str, typer.Option("--message", "-m", help="The message for the agent.")]
Agent = Annotated[str | None, typer.Option("--agent", "-a", help="claude, codex, cursor, opencode or pi.")]
Plan = Annotated[bool, typer.Option("--plan", help="Plan mode: the agent plans and edits nothing.")]
Thinking = Annotated[str | None, typer.Option("--thinking", help="low, medium, high, xhigh or max.")]
Model = Annotated[str | None, typer.Option("--model", help="The model, as the agent names it.")]
Follow = Annotated[bool, typer.Option("--follow", help="Show the agent working until the turn ends.")]


def register(app: typer.Typer) -> None:
    for name, command in (("list", list_replicas), ("get", get), ("create", create), ("send", send),
                          ("read", read), ("watch", watch), ("delete", delete), ("sleep", sleep),
                          ("wake", wake), ("diff", diff)):
        app.command(name)(command)


def _agent(agent: str | None) -> str | None:
    if agent is not None and agent not in AGENTS:
        raise usage_error(f"--agent must be one of {', '.join(AGENTS)}")
    return agent


def default_name(message: str) -> str:
    """A replica name (no whitespace) from the message's first words: "Fix the login bug" -> fix-the-login-bug."""
    words = re.findall(r"[a-z0-9]+", message.lower())[:5]
    return "-".join(words)[:48].strip("-") or "replica"


@handles_errors
def list_replicas(
    page: Annotated[int, typer.Option("--page", "-p", min=1, help="Page number.")] = 1,
    limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=100, help="Replicas a page.")] = 10,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    source: Annotated[str | None, typer.Option("--source", help="Only this source.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List the organization's replicas, newest first."""
    listed = session.client().replicas.list(page=page, limit=limit, status=status, source=source)
    if as_json:
        session.print_json(listed)
        return
    session.table(((r.id, r.status, r.name, ", ".join(repo.name for repo in r.repositories), r.created_at)
                   for r in listed.items), ("ID", "STATUS", "NAME", "REPOSITORIES", "CREATED"))
    if listed.total_pages > 1:
        typer.echo(f"page {listed.page} of {listed.total_pages} ({listed.total} replicas): --page N for more")


@handles_errors
def get(replica_id: ReplicaId,
        include: Annotated[str | None, typer.Option("--include", help="environment, diffs (comma-separated).")]
        = None,
        as_json: JsonOption = False) -> None:
    """Show a replica (reading a sleeping one wakes it)."""
    replica = session.client().replicas.get(replica_id, include=[p for p in (include or "").split(",") if p])
    if as_json:
        session.print_json(replica)
        return
    typer.echo(f"{replica.name} ({replica.id})")
    typer.echo(f"  status:  {replica.status}" + ("  (waking: retry in 30-90 s)" if replica.waking else ""))
    typer.echo(f"  source:  {replica.source}    created {replica.created_at}")
    for status in replica.repository_statuses:
        stat = f"+{status.git_diff.added} -{status.git_diff.removed}" if status.git_diff else "no diff"
        prs = f"  PRs: {', '.join(status.pr_urls)}" if status.pr_urls else ""
        typer.echo(f"  repo:    {status.repository} ({status.branch}) {stat}{prs}")
    for chat in replica.chats:
        typer.echo(f"  chat:    {chat.id} {chat.provider} {chat.title!r}" + (" (working)" if chat.processing else ""))


@handles_errors
def create(
    message: Message,
    name: Annotated[str | None, typer.Argument(help="A name without spaces (default: from the message).")] = None,
    environment: Annotated[str, typer.Option("--environment", "-e", help="Environment name or id.")] = "global",
    agent: Agent = None,
    model: Model = None,
    plan: Plan = False,
    thinking: Thinking = None,
    lifecycle: Annotated[str | None, typer.Option("--lifecycle", help="default, archive_when_done, "
                                                  "sleep_when_done or delete_after_inactivity.")] = None,
    follow: Follow = False,
    as_json: JsonOption = False,
) -> None:
    """Create a replica in an environment and give it its first message."""
    client = session.client()
    env = client.environments.find(environment)
    replica = client.replicas.create(name=name or default_name(message), message=message, environment_id=env.id,
                                     coding_agent=_agent(agent), model=model, plan_mode=plan or None,
                                     thinking_level=thinking, lifecycle_policy=lifecycle)
    if as_json:
        session.print_json(replica, compact=follow)  # with --follow: one JSON object a line, events after it
    else:
        typer.echo(f"Created {replica.name} ({replica.id}) in {env.name}: {replica.status}")
    if follow:
        view = LiveView(client, replica.id, as_json=as_json)
        code = view.follow(client.replicas.events(replica.id, after=0, snapshot=False), TurnWatch(),
                           preparing=True)
        raise typer.Exit(code)


@handles_errors
def send(replica_id: ReplicaId, message: Message,
         chat: Annotated[str | None, typer.Option("--chat", help="The chat to send to (default: the main one).")]
         = None,
         agent: Agent = None, model: Model = None, plan: Plan = False, thinking: Thinking = None,
         follow: Follow = False, as_json: JsonOption = False) -> None:
    """Send a message (queued while the agent works; a sleeping replica wakes)."""
    client = session.client()
    stream = client.replicas.events(replica_id, snapshot=False) if follow else None
    if stream is not None:
        stream.connect()  # before sending: the answer's events are then all on this stream
    sent = client.replicas.send(replica_id, message, chat_id=chat, coding_agent=_agent(agent), model=model,
                                plan_mode=plan or None, thinking_level=thinking)
    if as_json:
        session.print_json(sent, compact=follow)
    else:
        where = f" (position {sent.position})" if sent.status == "queued" else ""
        typer.echo(f"{sent.status}{where}: message {sent.message_id} in chat {sent.chat_id}")
    if stream is not None:
        watch_turn = TurnWatch(chat_id=sent.chat_id, message_id=sent.message_id)
        raise typer.Exit(LiveView(client, replica_id, as_json=as_json).follow(stream, watch_turn))


@handles_errors
def read(replica_id: ReplicaId,
         limit: Annotated[int, typer.Option("--limit", "-l", min=1, max=500, help="Events to show.")] = 50,
         offset: Annotated[int, typer.Option("--offset", "-o", min=0, help="Events to skip, from the newest.")] = 0,
         chat: Annotated[str | None, typer.Option("--chat", help="The chat (default: the main one).")] = None,
         as_json: JsonOption = False) -> None:
    """Read the conversation: the latest events of a chat, oldest first."""
    history = session.client().replicas.history(replica_id, chat_id=chat, limit=limit, offset=offset)
    if as_json:
        session.print_json(history)
        return
    console = LiveView(session.client(), replica_id).console
    for event in history.events:
        for line in lines_of(event.to_json()):
            console.print(render_line(line))
    shown = len(history.events)
    if history.has_more:
        typer.echo(f"({shown} of {history.total} events: --offset {offset + shown} for older ones)")


@handles_errors
def watch(replica_id: ReplicaId, as_json: JsonOption = False) -> None:
    """Show a replica's live events until Ctrl-C (or until it is deleted)."""
    client = session.client()
    replica = client.replicas.get(replica_id)
    view = LiveView(client, replica_id, as_json=as_json)
    view.say(f"watching {replica.name} ({replica.status}); Ctrl-C to stop")
    try:
        view.follow(client.replicas.events(replica_id, snapshot=False), TurnWatch(until_turn_end=False))
    except NotFoundError:
        view.say("the replica was deleted")


@handles_errors
def delete(replica_id: ReplicaId,
           force: Annotated[bool, typer.Option("--force", "-f", help="Do not ask.")] = False,
           as_json: JsonOption = False) -> None:
    """Delete a replica and its workspace."""
    session.confirm(f"Delete replica {replica_id} and its workspace?", force)
    session.client().replicas.delete(replica_id)
    if as_json:
        session.print_json({"success": True, "id": replica_id})
    else:
        typer.echo(f"Deleted {replica_id}")


@handles_errors
def sleep(replica_id: ReplicaId, as_json: JsonOption = False) -> None:
    """Put a replica to sleep now: its processes stop, its disk stays."""
    session.client().replicas.sleep(replica_id)
    if as_json:
        session.print_json({"success": True, "id": replica_id, "status": "sleeping"})
    else:
        typer.echo(f"{replica_id} is asleep")


@handles_errors
def wake(replica_id: ReplicaId,
         wait: Annotated[bool, typer.Option("--wait", help="Wait until it is active.")] = False,
         timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait at most.")] = 120,
         as_json: JsonOption = False) -> None:
    """Wake a sleeping or archived replica."""
    client = session.client()
    replica = client.replicas.wake(replica_id)
    deadline = time.monotonic() + timeout
    while wait and replica.status != "active":
        if replica.status == "error" or time.monotonic() > deadline:
            break
        time.sleep(1)
        replica = client.replicas.get(replica_id)
    if as_json:
        session.print_json({"id": replica.id, "status": replica.status, "waking": bool(replica.waking)})
    elif replica.status == "active":
        typer.echo(f"{replica.name} is active")
    else:
        typer.echo(f"{replica.name} is {replica.status}" + (": waking (retry in 30-90 s)" if replica.waking else ""))
    if wait and replica.status != "active":
        raise typer.Exit(1)


@handles_errors
def diff(replica_id: ReplicaId,
         stat: Annotated[bool, typer.Option("--stat", help="Only the lines added and removed.")] = False,
         as_json: JsonOption = False) -> None:
    """Each repository's changes against its default branch (untracked files included)."""
    statuses = session.client().replicas.diff(replica_id)
    if as_json:
        session.print_json(statuses)
        return
    for status in statuses:
        git_diff = status.git_diff
        counts = f"+{git_diff.added} -{git_diff.removed}" if git_diff else "no diff"
        typer.echo(f"# {status.repository} ({status.branch}): {counts}")
        if git_diff and git_diff.full_diff and not stat:
            typer.echo(git_diff.full_diff.rstrip("\n"))
