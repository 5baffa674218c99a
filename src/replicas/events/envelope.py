"""A stored event as it travels through the control plane, and its SSE frame.

An event is the engine's envelope `{seq, id, ts, type, payload}`. `Envelope` is that dict, plus its frame on a
replica's event stream, encoded the first time a stream sends it and then shared: a hundred streams of one
workspace cost one encoding per event, not a hundred (events/fanout.py hands the same object to each).

    event = Envelope(seq=7, id="evt-7", ts="2026-05-17T10:00:00.000Z", type="chat.turn.delta", payload={...})
    event.frame()   # b'id: 7\\nevent: chat.turn.delta\\ndata: {"id":"evt-7","ts":...,"type":...,"payload":...}\\n\\n'
"""

from __future__ import annotations

from typing import Any

from replicas import json_bytes


def sse_frame(event: dict[str, Any], seq: int | None = None) -> bytes:
    """One SSE frame of the replica stream: `id: <seq>` (when given), `event: <type>`, and one `data:` line of JSON
    `{id, ts, type, payload}` (spec §4.4: the data repeats the type)."""
    data = json_bytes.dumps({"id": event.get("id") or str(event.get("seq")), "ts": event.get("ts"),
                             "type": event["type"], "payload": event.get("payload")})
    head = b"id: %d\n" % seq if seq is not None else b""
    return b"%sevent: %s\ndata: %s\n\n" % (head, str(event["type"]).encode(), data)


class Envelope(dict):
    """A stored event: the engine's envelope, with its SSE frame encoded once (`frame`)."""

    __slots__ = ("_frame",)

    def frame(self) -> bytes:
        try:
            return self._frame
        except AttributeError:
            self._frame = sse_frame(self, self["seq"])
            return self._frame


def frame_of(event: dict[str, Any]) -> bytes:
    """The SSE frame of a stored event, shared when it is an `Envelope`."""
    return event.frame() if isinstance(event, Envelope) else sse_frame(event, event["seq"])
