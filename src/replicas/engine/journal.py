"""The engine's append-only event journal: one JSON line per event, each with a sequence number.

The control plane pulls events by sequence (`GET /events?after=SEQ`), stores them, and only then fans
them out, so a control-plane restart or a dropped connection loses nothing (ARCHITECTURE.md, principle
3). Lines are flushed on every append, so an engine that is killed loses no event it has announced; a
torn last line (power loss mid-write) is ignored and overwritten on reopen.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path


def utc_timestamp() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Journal:
    """Append-only JSONL journal. Envelope: `{seq, id, ts, type, payload}` (contract EngineEvent + seq)."""

    def __init__(self, path: Path):
        self.path = path
        self._events: list[dict] = []
        self._appended = asyncio.Event()
        self._file = None

    @property
    def last_seq(self) -> int:
        return self._events[-1]["seq"] if self._events else 0

    def open(self) -> Journal:
        """Load the existing journal (dropping a torn last line) and open it for appending."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        good_bytes = 0
        if self.path.exists():
            with self.path.open("rb") as handle:
                for raw in handle:
                    if not raw.endswith(b"\n"):
                        break
                    try:
                        event = json.loads(raw)
                    except ValueError:
                        break
                    self._events.append(event)
                    good_bytes += len(raw)
            if good_bytes != self.path.stat().st_size:
                os.truncate(self.path, good_bytes)
        self._file = self.path.open("a", encoding="utf-8")
        return self

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def append(self, type_: str, payload: dict) -> dict:
        """Record an event and wake every follower. Returns the stored envelope."""
        event = {"seq": self.last_seq + 1, "id": str(uuid.uuid4()), "ts": utc_timestamp(),
                 "type": type_, "payload": payload}
        self._file.write(json.dumps(event, separators=(",", ":")) + "\n")
        self._file.flush()
        self._events.append(event)
        # Wake the current waiters, and give later ones a fresh event to wait on.
        self._appended.set()
        self._appended = asyncio.Event()
        return event

    def read(self, after: int = 0, limit: int | None = None) -> list[dict]:
        # Sequence numbers are dense and start at 1, so `after` is also a list index.
        start = max(after, 0)
        end = None if limit is None else start + limit
        return self._events[start:end]

    async def follow(self, after: int = 0, heartbeat: float | None = None) -> AsyncIterator[dict | None]:
        """Yield every event after `after`, then new ones as they come. With `heartbeat`, yields None
        when nothing happened for that many seconds (so a stream can send a keep-alive)."""
        cursor = max(after, 0)
        while True:
            pending = self.read(cursor)
            for event in pending:
                cursor = event["seq"]
                yield event
            appended = self._appended
            if self.last_seq > cursor:
                continue
            try:
                await asyncio.wait_for(appended.wait(), heartbeat)
            except TimeoutError:
                yield None
