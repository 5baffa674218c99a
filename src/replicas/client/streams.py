"""Reading the API's Server-Sent Events (parsed by httpx-sse), shared by the sync and async clients.

`/v1/replica/{id}/events` sends a snapshot of the current state first (frames without `id:`), then every
event with `id: <seq>`, and `: ping` comments while quiet. After a dropped connection the client
reconnects with `Last-Event-ID: <last seq seen>`, so the server resumes after it; `EventCursor` makes sure
each event is yielded once, even if the server repeats one, and the snapshot only on the first connection.
"""

from __future__ import annotations

import json

from httpx_sse import ServerSentEvent

from replicas.client.models import Event, HookTestEvent

# Stop reconnecting after this many attempts in a row that reached no server.
MAX_RECONNECTS = 5
RECONNECT_DELAY = 1.0
# The server pings every 15 s: a stream silent for this long is dead, and reconnecting finds out.
STREAM_READ_TIMEOUT = 60.0


class EventCursor:
    """Where a replica's event stream is: the last sequence number yielded, and whether the snapshot
    may still be yielded (`snapshot=True` and on the first connection only)."""

    def __init__(self, after: int | None = None, snapshot: bool = True):
        self.last_seq = after
        self.snapshot = snapshot
        self.connections = 0

    def request_headers(self) -> dict[str, str]:
        self.connections += 1
        return {} if self.last_seq is None else {"Last-Event-ID": str(self.last_seq)}

    def accept(self, sse: ServerSentEvent) -> Event | None:
        """The event to yield for this frame, or None (not JSON, a repeat, a later snapshot)."""
        if not sse.data:
            return None
        try:
            event = Event.from_sse(sse.data, sse.id)
        except ValueError:
            return None
        if event.seq is None:
            return event if self.snapshot and self.connections == 1 else None
        if self.last_seq is not None and event.seq <= self.last_seq:
            return None
        self.last_seq = event.seq
        return event


def hook_test_event(sse: ServerSentEvent) -> HookTestEvent | None:
    """One frame of a streamed hook test (`progress`, `output`, `complete`, `error`)."""
    if not sse.data:
        return None
    data = json.loads(sse.data)
    return HookTestEvent.model_validate({**data, "type": data.get("type") or sse.event})


def is_last_hook_event(event: HookTestEvent) -> bool:
    return event.type in ("complete", "error")
