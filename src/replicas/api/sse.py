"""Server-Sent Events framing shared by every stream the API serves.

Each event is `event: <type>` plus one `data:` line of JSON that repeats the type (`{"type": ...}`),
so clients that only read `data` still know what they got (spec §4.4, §10 #5). Comments (`: ping`)
keep idle connections open through proxies.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from replicas import draining

MEDIA_TYPE = "text/event-stream"
# A comment after this many idle seconds (spec §10 #5) keeps proxies from closing a quiet stream.
HEARTBEAT_SECONDS = 15.0
HEADERS = {
    "Cache-Control": "no-cache",
    # Tell nginx-style proxies not to buffer the stream.
    "X-Accel-Buffering": "no",
}


def format_event(event_type: str, data: dict[str, Any] | None = None,
                 event_id: str | int | None = None) -> str:
    """One SSE frame: optional `id:`, `event:`, and a single-line JSON `data:` carrying `type`."""
    payload = json.dumps({"type": event_type, **(data or {})}, separators=(",", ":"))
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event_type}\ndata: {payload}\n\n"


def comment(text: str = "ping") -> str:
    return f": {text}\n\n"


async def _frames(events: AsyncIterable[tuple[str, dict[str, Any]] | str]) -> AsyncIterator[str]:
    """Frames for `events`, with a `: ping` comment whenever the source has been quiet for a while.

    Each step of the source runs as its own task so that waiting for it can time out without
    cancelling it; when the response stops (client gone), the pending step is cancelled, which runs
    the source's clean-up (a hook run kills its script)."""
    source = aiter(events)
    pending: asyncio.Future | None = None
    loop = asyncio.get_running_loop()
    quiet_since = loop.time()
    try:
        while not draining.active():  # a stream ends when its process drains (draining.py)
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            wait = min(draining.CHECK_SECONDS, quiet_since + HEARTBEAT_SECONDS - loop.time())
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, wait))
            if not done:
                if loop.time() - quiet_since >= HEARTBEAT_SECONDS:
                    quiet_since = loop.time()
                    yield comment()
                continue
            quiet_since = loop.time()
            step, pending = pending, None
            try:
                item = step.result()
            except StopAsyncIteration:
                return
            yield item if isinstance(item, str) else format_event(*item)
    finally:
        if pending is not None:
            # The source is mid-step in that task: cancelling it runs the source's own clean-up there,
            # which finishes by itself (awaiting it here could be cut short by a cancelled consumer).
            pending.add_done_callback(_retrieve)
            pending.cancel()
        elif hasattr(source, "aclose"):
            await source.aclose()


def _retrieve(task: asyncio.Future) -> None:
    """Mark a cancelled step's outcome as seen, so that asyncio does not log it as lost."""
    if not task.cancelled():
        task.exception()


def event_stream(events: AsyncIterable[tuple[str, dict[str, Any]] | str]) -> StreamingResponse:
    """Serve `(type, data)` pairs (or ready-made frames such as `comment()`) as an SSE response."""
    return StreamingResponse(_frames(events), media_type=MEDIA_TYPE, headers=HEADERS)
