"""The live view of `create --follow`, `send --follow` and `watch`: a replica's events as a person reads them.

The agent's text is printed as it arrives, each tool call and each tool result on one line, a spinner runs
while the agent works, and a turn's end is shown with the diff stat of its repositories:

    > Add a health check
    ⏺ Write(/home/…/workspaces/shop/health.py)
      ⎿ File created successfully at: /home/…/health.py
    Added health.py.
    ✓ turn complete · shop +1 -0

The events are read on a thread (the SDK's stream blocks) and handed over through a queue, so the view can
notice, while nothing happens, that a workspace being prepared went to `error` and say why.
"""

from __future__ import annotations

import json
import queue
import threading
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from replicas.cli.transcript import ASSISTANT, ERROR, NOTE, RESULT, THINKING, TOOL, USER, Line, lines_of, one_line
from replicas.client import Event, EventStream, Replicas, ReplicasError

STYLES = {USER: ("> ", "bold"), ASSISTANT: ("", ""), THINKING: ("✻ ", "dim italic"), TOOL: ("⏺ ", "cyan"),
          RESULT: ("  ⎿ ", "dim"), ERROR: ("✗ ", "red"), NOTE: ("• ", "yellow")}
# While nothing arrives, look at the replica this often (a preparing one may have failed).
STATUS_POLL_SECONDS = 3.0


def render_line(line: Line) -> str:
    prefix, style = STYLES.get(line.kind, ("", ""))
    text = line.text if line.kind in (ASSISTANT, USER, ERROR) else one_line(line.text)
    body = escape(prefix + text)
    return f"[{style}]{body}[/]" if style else body


def diff_stat(client: Replicas, replica_id: str) -> str:
    """`shop +1 -0, api +3 -2`, or `no changes`: asked of the engine (the stored status may not have caught
    up with the turn that just ended)."""
    statuses = client.replicas.diff(replica_id)
    parts = [f"{s.repository} +{s.git_diff.added} -{s.git_diff.removed}" for s in statuses
             if s.git_diff and (s.git_diff.added or s.git_diff.removed)]
    return ", ".join(parts) or "no changes"


@dataclass
class TurnWatch:
    """Which turn ends the view: the one of `message_id` in `chat_id` (a message sent), else the first turn
    to complete (a new replica's first message); with `until_turn_end=False`, none (watch)."""

    until_turn_end: bool = True
    chat_id: str | None = None
    message_id: str | None = None
    started: bool = field(default=False)

    def is_end(self, event: Event) -> bool:
        """Whether `event` ends the view (call it with every event, in order)."""
        payload = event.payload
        if not self.until_turn_end or (self.chat_id and payload.get("chatId") not in (None, self.chat_id)):
            return False
        if event.type == "chat.turn.started" and self.message_id in (None, payload.get("messageId")):
            self.started = True
        return event.type == "chat.turn.completed" and (self.started or self.message_id is None)


class LiveView:
    """Prints events for a person (or, with `as_json`, one JSON object a line) until the watched turn ends."""

    def __init__(self, client: Replicas, replica_id: str, *, as_json: bool = False, console: Console | None = None):
        self.client, self.replica_id, self.as_json = client, replica_id, as_json
        self.console = console or Console(highlight=False, soft_wrap=True)
        self.spinner: Status | None = None

    # -- the spinner -------------------------------------------------------------------------------

    def working(self, text: str) -> None:
        if self.as_json:
            return
        if self.spinner is None:
            self.spinner = self.console.status(text, spinner="dots")
            self.spinner.start()
        else:
            self.spinner.update(text)

    def idle(self) -> None:
        if self.spinner is not None:
            self.spinner.stop()
            self.spinner = None

    def say(self, markup: str) -> None:
        if not self.as_json:
            self.console.print(markup)

    # -- events ------------------------------------------------------------------------------------

    def show(self, event: Event) -> None:
        if self.as_json:
            print(json.dumps(event.to_json()), flush=True)
            return
        kind, payload = event.type, event.payload
        if kind == "chat.turn.delta":
            for line in lines_of(payload.get("event") or {}):
                self.console.print(render_line(line))
            self.working("working…")
        elif kind == "chat.turn.started":
            self.working("working…")
        elif kind == "chat.turn.accepted" and payload.get("queued"):
            self.say(render_line(Line(NOTE, f"queued behind the running turn (position {payload.get('position')})")))
        elif kind == "hooks.started":
            self.working("running start hooks…")
        elif kind == "hooks.failed":
            self.say(render_line(Line(ERROR, "a start hook failed (replicas get --json shows the logs)")))
        elif kind == "preview.changed":
            for preview in payload.get("previews") or []:
                self.say(render_line(Line(NOTE, f"preview: port {preview.get('port')} → {preview.get('publicUrl')}")))
        elif kind == "error":
            self.say(render_line(Line(ERROR, f"{payload.get('message')}")))

    def turn_ended(self, complete: bool) -> None:
        self.idle()
        if self.as_json:
            return
        stat = diff_stat(self.client, self.replica_id)
        mark = "[green]✓ turn complete[/]" if complete else "[red]✗ the turn did not complete[/]"
        self.console.print(f"{mark} · {escape(stat)}")

    # -- the loop ----------------------------------------------------------------------------------

    def follow(self, stream: EventStream, watch: TurnWatch, *, preparing: bool = False) -> int:
        """Show the stream's events until the watched turn ends: 0 when it completed, 1 when not (or the
        workspace failed to start). Ctrl-C leaves the replica working and raises KeyboardInterrupt."""
        events: queue.Queue[Any] = queue.Queue()

        def read() -> None:
            try:
                for event in stream:
                    events.put(event)
            except ReplicasError as error:
                events.put(error)
            except Exception as error:  # noqa: BLE001 - handed to the view, which reports it
                events.put(error)
            events.put(None)

        threading.Thread(target=read, name="replica-events", daemon=True).start()
        if preparing:
            self.working("preparing the workspace…")
        try:
            while True:
                try:
                    item = events.get(timeout=STATUS_POLL_SECONDS)
                except queue.Empty:
                    if preparing and (failed := self._provisioning_error()) is not None:
                        self.idle()
                        self.say(render_line(Line(ERROR, f"the workspace failed to start: {failed}")))
                        return 1
                    continue
                if item is None:
                    self.idle()
                    return 0
                if isinstance(item, Exception):
                    self.idle()
                    raise item
                if item.type in ("engine.ready", "chat.turn.started"):
                    preparing = False
                self.show(item)
                end = watch.is_end(item)
                if item.type == "chat.turn.completed":
                    complete = bool(item.payload.get("isComplete"))
                    self.turn_ended(complete)
                    if end:
                        return 0 if complete else 1
        finally:
            self.idle()
            stream.close()

    def _provisioning_error(self) -> str | None:
        replica = self.client.replicas.get(self.replica_id)
        if replica.status != "error":
            return None
        config = (replica.model_extra or {}).get("config") or {}
        return (config.get("provisioning_error") or {}).get("message") or "no reason given"
