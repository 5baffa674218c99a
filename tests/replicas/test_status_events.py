"""`GET /v1/replicas/status-events`, the organization-wide live status stream behind the replicas list, against a
real server on SQLite and PostgreSQL: a change made through the API reaches a connected client at once (pushed,
well before the stream's safety re-read), another organization's replicas never do, and a client that comes back
with `Last-Event-ID` gets what changed while it was away, replicas deleted meanwhile included (their tombstones,
pruned after a day). On PostgreSQL a change made through another process arrives too (NOTIFY)."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from sqlalchemy import select

from replicas.api.routers.replica_extensions import STATUS_EVENTS_SAFETY_SECONDS
from replicas.services.replica_index import RESUME_MARGIN_MICROSECONDS
from replicas.services.replica_status_feed import TOMBSTONE_DAYS
from replicas.store.models import Organization, ReplicaTombstone, Workspace, utcnow
from tests.live_server import LiveServer, live_settings

PUSHED_WITHIN = 5.0  # seconds: far below the safety re-read, so only a push can make it
assert PUSHED_WITHIN < STATUS_EVENTS_SAFETY_SECONDS


@pytest.fixture(params=["sqlite", "postgresql"])
def server(request, tmp_path_factory):
    with LiveServer(live_settings(request, tmp_path_factory)) as live:
        yield live


def organization(server: LiveServer, *names: str) -> tuple[str, list[str]]:
    """A new organization's API key and the ids of its sleeping replicas named `names`."""
    org_name = f"org-{uuid.uuid4().hex[:8]}"
    key = server.new_org_key(org_name)

    async def seed() -> list[str]:
        async with server.app.state.sessions() as session:
            org = await session.scalar(select(Organization).where(Organization.name == org_name))
            rows = [Workspace(organization_id=org.id, name=name, status="sleeping", source="api",
                              last_activity_at=utcnow()) for name in names]
            session.add_all(rows)
            await session.commit()
            return [str(row.id) for row in rows]

    return key, server.call(seed())


async def load(server: LiveServer, replica_id: str) -> Workspace:
    async with server.app.state.sessions() as session:
        return await session.get(Workspace, uuid.UUID(replica_id))


class StatusStream:
    """One client of the stream: its frames, read as they come, in a queue."""

    def __init__(self, client: httpx.AsyncClient, key: str, last_event_id: str | None = None):
        self.frames: asyncio.Queue[ServerSentEvent] = asyncio.Queue()
        headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.task = asyncio.create_task(self._read(client, headers))

    async def _read(self, client: httpx.AsyncClient, headers: dict[str, str]) -> None:
        async with aconnect_sse(client, "GET", "/v1/replicas/status-events", headers=headers) as source:
            source.response.raise_for_status()
            async for frame in source.aiter_sse():
                await self.frames.put(frame)

    async def next(self, timeout: float = PUSHED_WITHIN) -> ServerSentEvent:
        return await asyncio.wait_for(self.frames.get(), timeout)

    async def cursor(self) -> str:
        """The bare cursor the stream opens with."""
        frame = await self.next()
        assert frame.data == "" and frame.id.isdigit(), frame
        return frame.id

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def change(client: httpx.AsyncClient, key: str, method: str, path: str) -> None:
    response = await client.request(method, path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code < 300, response.text


async def test_a_change_through_the_api_reaches_the_organizations_stream_alone(server):
    key, (first, second) = organization(server, "first", "second")
    other_key, (theirs,) = organization(server, "theirs")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        stream = StatusStream(client, key)
        try:
            await stream.cursor()
            await change(client, other_key, "POST", f"/v1/workspaces/{theirs}/archive")
            started = time.monotonic()
            await change(client, key, "POST", f"/v1/workspaces/{first}/archive")
            frame = await stream.next()
            assert time.monotonic() - started < PUSHED_WITHIN
            assert frame.event == "replica.updated" and frame.id.isdigit()
            assert frame.json()["replica"]["id"] == first and frame.json()["replica"]["status"] == "archived"

            await change(client, key, "DELETE", f"/v1/replica/{second}")
            frame = await stream.next()
            assert (frame.event, frame.json()["replica"]) == ("replica.deleted", {"id": second})
            # The other organization's archive was never sent (it came before ours, and nothing else is queued).
            assert stream.frames.empty()
        finally:
            await stream.close()


async def test_a_bulk_update_of_a_listed_column_reaches_the_stream(server):
    """An `update(Workspace)` statement (here the activity touch a message makes) names no organization: every
    organization's streams look, and this one finds its replica changed."""
    key, (first,) = organization(server, "first")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        stream = StatusStream(client, key)
        try:
            await stream.cursor()
            row = await asyncio.to_thread(server.call, load(server, first))
            await asyncio.to_thread(server.call, server.app.state.replicas.touch(row))
            frame = await stream.next()
            assert frame.event == "replica.updated" and frame.json()["replica"]["id"] == first
        finally:
            await stream.close()


async def cursor_now(client: httpx.AsyncClient, key: str) -> str:
    """The cursor a stream opened now starts at (the stream is closed again)."""
    stream = StatusStream(client, key)
    try:
        return await stream.cursor()
    finally:
        await stream.close()


async def age_tombstone(server: LiveServer, replica_id: str) -> None:
    async with server.app.state.sessions() as session:
        tombstone = await session.get(ReplicaTombstone, uuid.UUID(replica_id))
        tombstone.deleted_at = utcnow() - timedelta(days=TOMBSTONE_DAYS, minutes=1)
        await session.commit()


async def catch_up(stream: StatusStream) -> tuple[dict[str, tuple[str, dict]], str]:
    """The frames a resumed stream sends before its cursor (replica id -> (event, replica)), and that cursor."""
    frames = {}
    while True:
        frame = await stream.next()
        if frame.data == "":
            return frames, frame.id
        frames[frame.json()["replica"]["id"]] = (frame.event, frame.json()["replica"])


async def test_a_client_back_with_last_event_id_gets_what_changed_meanwhile(server):
    key, (first, second) = organization(server, "first", "second")
    other_key, (theirs,) = organization(server, "theirs")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        cursor = await cursor_now(client, key)

        await change(client, key, "POST", f"/v1/workspaces/{first}/archive")
        await change(client, other_key, "POST", f"/v1/workspaces/{theirs}/archive")

        stream = StatusStream(client, key, last_event_id=cursor)
        try:
            frames, resumed_at = await catch_up(stream)
            # A margin may repeat a replica that had not changed; what changed is there, and nothing of theirs.
            assert frames[first][1]["status"] == "archived"
            assert set(frames) <= {first, second}
            assert int(resumed_at) >= int(cursor)
        finally:
            await stream.close()


async def test_a_replica_deleted_while_the_client_was_away_is_reported_on_resume(server):
    key, (first, second, third) = organization(server, "first", "second", "third")
    other_key, (theirs,) = organization(server, "theirs")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        cursor = await cursor_now(client, key)

        await change(client, key, "DELETE", f"/v1/replica/{second}")
        await change(client, other_key, "DELETE", f"/v1/replica/{theirs}")

        stream = StatusStream(client, key, last_event_id=cursor)
        try:
            frames, _ = await catch_up(stream)
            assert frames[second] == ("replica.deleted", {"id": second})
            assert theirs not in frames  # another organization's deletion is never sent
        finally:
            await stream.close()

        # A tombstone older than a day is pruned by the next deletion (that one's own is kept).
        await asyncio.to_thread(server.call, age_tombstone(server, second))
        await change(client, key, "DELETE", f"/v1/replica/{third}")
        stream = StatusStream(client, key, last_event_id=cursor)
        try:
            frames, _ = await catch_up(stream)
            assert frames[third] == ("replica.deleted", {"id": third})
            assert second not in frames
            assert set(frames) <= {first, third}
        finally:
            await stream.close()

    async def tombstones() -> set[str]:
        async with server.app.state.sessions() as session:
            return {str(row_id) for row_id in await session.scalars(select(ReplicaTombstone.replica_id))}

    assert {second, third} & await asyncio.to_thread(server.call, tombstones()) == {third}


async def test_a_deletion_seen_live_moves_the_cursor_past_it(server):
    """A client that saw a deletion live and resumes from the cursor it was given is not told of it again."""
    key, (first, second) = organization(server, "first", "second")
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        stream = StatusStream(client, key)
        try:
            await stream.cursor()
            await change(client, key, "DELETE", f"/v1/replica/{second}")
            frame = await stream.next()
            assert frame.event == "replica.deleted"
            cursor = frame.id
        finally:
            await stream.close()
        # Resumed one margin later, so that only what came after the cursor is sent.
        stream = StatusStream(client, key, last_event_id=str(int(cursor) + RESUME_MARGIN_MICROSECONDS + 1))
        try:
            assert (await catch_up(stream))[0] == {}
        finally:
            await stream.close()


async def test_a_malformed_last_event_id_is_refused(server):
    key, _ = organization(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        response = await client.get("/v1/replicas/status-events",
                                    headers={"Authorization": f"Bearer {key}", "Last-Event-ID": "soon"})
    assert response.status_code == 400
    assert response.json()["error"] == "Invalid Last-Event-ID"


@pytest.mark.parametrize("server", ["postgresql"], indirect=True)
async def test_a_change_made_through_another_process_arrives(server, tmp_path_factory):
    """Two servers on one PostgreSQL database: the stream on one, the change through the other."""
    key, (first,) = organization(server, "first")
    with LiveServer(server.settings.model_copy(update={"data_dir": tmp_path_factory.mktemp("other")})) as other:
        async with (httpx.AsyncClient(base_url=server.url, timeout=30) as client,
                    httpx.AsyncClient(base_url=other.url, timeout=30) as other_client):
            stream = StatusStream(client, key)
            try:
                await stream.cursor()
                started = time.monotonic()
                await change(other_client, key, "POST", f"/v1/workspaces/{first}/archive")
                frame = await stream.next()
                assert time.monotonic() - started < PUSHED_WITHIN
                assert frame.event == "replica.updated" and frame.json()["replica"]["status"] == "archived"
            finally:
                await stream.close()
