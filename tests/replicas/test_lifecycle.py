"""Lifecycle: sleep and wake, the idle reaper, delete_when_done, archive, capacity (429). Sleep and wake,
and waking an archived replica with a message, run on both runtime backends (on docker, sleep stops the
container and wake makes a new one on the same volume)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from replicas.store.models import utcnow
from replicas.testing import ShellCall, Text, WriteFile
from tests.contract import assert_contract, validate_schema
from tests.replicas.conftest import (
    ON_BOTH_BACKENDS,
    VERSIONED,
    Receiver,
    assert_history,
    checkout,
    create,
    row_of,
    set_row,
    settled,
    status_of,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]


@ON_BOTH_BACKENDS
async def test_sleep_and_wake_keep_files_chats_and_history(app, client, settings, replica_env, model):
    rid = (await create(client, replica_env, "write it", name="napper"))["id"]
    target = checkout(settings, rid) / "kept.txt"
    model.add_turn(WriteFile(str(target), "still here\n"), Text("Written."))
    await wait_for(lambda: settled(app, rid), what="turn 1")
    chats = (await client.get(f"/v1/replica/{rid}/chats")).json()["chats"]
    history = assert_history(await client.get(f"/v1/replica/{rid}/history"))

    slept = assert_contract(await client.post(f"/v1/workspaces/{rid}/sleep"), "/v1/workspaces/{workspaceId}/sleep")
    assert slept == {"success": True}
    assert await status_of(app, rid) == "sleeping"
    assert target.read_text() == "still here\n"
    again = await client.post(f"/v1/workspaces/{rid}/sleep")  # already asleep: a no-op
    assert again.status_code == 200
    listed = (await client.get("/v1/replica", params={"status": "sleeping"})).json()
    assert [r["id"] for r in listed["replicas"]] == [rid]

    # `wake=false` (our addition, what the dashboard reads with) answers from the store and leaves it asleep.
    for _ in range(2):
        kept = assert_contract(await client.get(f"/v1/replica/{rid}", params={"wake": "false"}),
                               "/v1/replica/{id}")["replica"]
        assert (kept["status"], kept["waking"]) == ("sleeping", False)
        assert [c["id"] for c in kept["chats"]] == [c["id"] for c in chats]
        listed_chats = (await client.get(f"/v1/replica/{rid}/chats", params={"wake": "false"})).json()
        assert [c["id"] for c in listed_chats["chats"]] == [c["id"] for c in chats] and "waking" not in listed_chats
    assert await status_of(app, rid) == "sleeping"

    response = await client.get(f"/v1/replica/{rid}")
    waking = assert_contract(response, "/v1/replica/{id}")["replica"]
    assert waking["waking"] is True and waking["status"] in ("sleeping", "preparing")

    async def awake():
        body = assert_contract(await client.get(f"/v1/replica/{rid}"), "/v1/replica/{id}")["replica"]
        return body if body["status"] == "active" else None

    details = await wait_for(awake, what="the wake")
    assert details["waking"] is False
    assert [c["id"] for c in details["chats"]] == [c["id"] for c in chats]
    assert details["repository_statuses"][0]["git_diff"]["added"] == 1
    assert assert_history(await client.get(f"/v1/replica/{rid}/history"))["events"] == history["events"]
    assert target.read_text() == "still here\n"

    # Awake again: it takes messages in the same chat and session.
    model.add_turn(ShellCall("cat kept.txt"), Text("It says still here."))
    sent = (await client.post(f"/v1/replica/{rid}/messages", json={"message": "read it back"})).json()
    assert sent["status"] == "sent" and sent["chat_id"] == chats[0]["id"]
    await wait_for(lambda: settled(app, rid, turns=2), what="turn 2")
    assert "still here" in model.model_requests()[-1].conversation_text()

    # Usage: two awake stretches, each rounded up to a whole minute, by size and by source.
    usage = (await client.get("/v1/usage")).json()
    [entry] = [u for u in usage["usage"] if u["replica_id"] == rid]
    assert entry["sessions"] == 2 and entry["minutes"] >= 2 and entry["active"] is True
    assert (entry["size"], entry["source"], entry["name"]) == ("small", "api", "napper")
    assert usage["by_size"]["small"] >= 2 and usage["by_source"]["api"] >= 2
    assert usage["total_minutes"] == sum(u["minutes"] for u in usage["usage"])
    later = (await client.get("/v1/usage", params={"since": "2999-01-01T00:00:00Z"})).json()
    assert later["usage"] == [] and later["total_minutes"] == 0


@pytest.mark.replica_settings(sleep_after_idle_seconds=2)
async def test_the_reaper_sleeps_idle_replicas_only(app, client, settings, replica_env, model):
    model.add_turn(Text("idle one"))
    idle = (await create(client, replica_env, "one", name="idle"))["id"]
    await wait_for(lambda: settled(app, idle), what="idle's turn")
    model.add_turn(Text("attached one"))
    attached = (await create(client, replica_env, "two", name="attached"))["id"]
    await wait_for(lambda: settled(app, attached), what="attached's turn")
    await set_row(app, attached, attached_until=utcnow() + timedelta(hours=1))
    # A turn quiet for longer than the idle timer: no event while `sleep` runs.
    model.add_turn(ShellCall("sleep 4.5"), Text("long one"))
    busy = (await create(client, replica_env, "three", name="busy"))["id"]

    async def processing():
        row = await row_of(app, busy)
        return row.status == "active" and any(c.get("processing") for c in (row.snapshot or {}).get("chats", []))

    await wait_for(processing, what="the long turn to start")
    await wait_for(lambda: _is(app, idle, "sleeping"), timeout=20, what="the idle replica to sleep")
    await wait_for(lambda: settled(app, busy), timeout=30, what="the long turn, never interrupted by a sleep")
    assert model.exhausted == []
    assert await status_of(app, attached) == "active"
    await wait_for(lambda: _is(app, busy, "sleeping"), timeout=20, what="the finished replica to sleep")
    assert await status_of(app, attached) == "active"

    await set_row(app, attached, attached_until=utcnow() - timedelta(seconds=1))
    await wait_for(lambda: _is(app, attached, "sleeping"), timeout=20, what="the detached replica to sleep")

    # Deleting a sleeper removes its sandbox too.
    assert (await client.delete(f"/v1/replica/{idle}")).json() == {"success": True}
    assert (await client.get(f"/v1/replica/{idle}")).status_code == 404
    assert not (settings.data_dir / "workspaces" / idle).exists()


@pytest.mark.replica_settings(archive_after_sleep_seconds=1, delete_after_inactivity_seconds=2)
async def test_long_sleepers_are_archived_and_inactive_ones_deleted(app, client, replica_env, model):
    receiver = Receiver()
    try:
        model.add_turn(Text("a"))
        filed = (await create(client, replica_env, "a", name="filed"))["id"]
        await wait_for(lambda: settled(app, filed), what="turn a")
        model.add_turn(Text("b"))
        doomed = (await create(client, replica_env, "b", name="doomed", lifecycle_policy="delete_after_inactivity",
                              webhook_url=receiver.url))["id"]
        await client.post(f"/v1/workspaces/{filed}/sleep")
        await wait_for(lambda: _is(app, filed, "archived"), timeout=20, what="the sleeper to be archived")

        async def gone():
            return (await client.get(f"/v1/replica/{doomed}")).status_code == 404

        await wait_for(gone, timeout=30, what="the inactive replica to be deleted")
        await receiver.wait("replica.turn_completed")
        assert "replica.deleted" not in [e["type"] for e in receiver.events()]  # silent cleanup (spec §4.3)
    finally:
        receiver.close()


async def test_a_workspace_timer_replaces_the_servers(app, client, replica_env, model):
    """`auto_stop_minutes` (an automation's `workspace_auto_stop_minutes`) is the workspace's own idle timer;
    the server's (an hour by default) still holds for the others."""
    model.add_turn(Text("own timer"))
    own = (await create(client, replica_env, "one", name="own-timer"))["id"]
    model.add_turn(Text("server timer"))
    other = (await create(client, replica_env, "two", name="server-timer"))["id"]
    await wait_for(lambda: settled(app, own), what="the first turn")
    await wait_for(lambda: settled(app, other), what="the second turn")
    two_minutes_ago = utcnow() - timedelta(minutes=2)
    await set_row(app, own, auto_stop_minutes=1, last_activity_at=two_minutes_ago)
    await set_row(app, other, last_activity_at=two_minutes_ago)
    await wait_for(lambda: _is(app, own, "sleeping"), timeout=20, what="the replica with its own timer to sleep")
    assert await status_of(app, other) == "active"


async def _is(app, rid: str, status: str) -> bool:
    return await status_of(app, rid) == status


@pytest.mark.replica_settings(done_grace_seconds=0)
async def test_delete_when_done(app, client, settings, replica_env, model):
    receiver = Receiver()
    try:
        model.add_turn(ShellCall("true"), Text("CI job done."))
        rid = (await create(client, replica_env, "run the job", name="ci", lifecycle_policy="delete_when_done",
                            webhook_url=receiver.url))["id"]

        async def gone():
            return (await client.get(f"/v1/replica/{rid}")).status_code == 404

        await wait_for(gone, timeout=30, what="the replica to be deleted")
        assert not (settings.data_dir / "workspaces" / rid).exists()
        completed = (await receiver.wait("replica.turn_completed"))[0]
        assert completed["data"]["last_assistant_message"] == "CI job done."
        deleted = (await receiver.wait("replica.deleted"))[0]
        assert deleted["replica"]["id"] == rid
        assert [e["type"] for e in receiver.events()] == ["replica.ready", "replica.turn_completed",
                                                          "replica.deleted"]
    finally:
        receiver.close()


@ON_BOTH_BACKENDS
async def test_archive_and_list_archived_by_last_activity(app, client, replica_env, model):
    model.add_turn(Text("a"))
    first = (await create(client, replica_env, "a", name="first"))["id"]
    await wait_for(lambda: settled(app, first), what="first")
    model.add_turn(Text("b"))
    second = (await create(client, replica_env, "b", name="second"))["id"]
    await wait_for(lambda: settled(app, second), what="second")
    for rid in (second, first):
        archived = assert_contract(await client.post(f"/v1/workspaces/{rid}/archive"),
                                   "/v1/workspaces/{workspaceId}/archive")
        assert archived == {"success": True}
    await set_row(app, first, last_activity_at=utcnow())
    await set_row(app, second, last_activity_at=utcnow() - timedelta(hours=1))
    response = await client.get("/v1/replica", params={"status": "archived"})
    listed = assert_contract(response, "/v1/replica")
    assert [r["id"] for r in listed["replicas"]] == [first, second]  # by last activity, not creation
    assert all(r["status"] == "archived" for r in listed["replicas"])
    newest_first = (await client.get("/v1/replica")).json()
    assert [r["id"] for r in newest_first["replicas"]] == [second, first]

    # Archived: a message wakes it like a sleeper; creating a chat through /v1/workspaces is refused.
    response = await client.post(f"/v1/workspaces/{first}/chats", json={"provider": "claude"})
    assert response.status_code == 409
    assert_contract(response, "/v1/workspaces/{workspaceId}/chats")
    model.add_turn(Text("back"))
    answer = assert_contract(await client.post(f"/v1/replica/{first}/messages", json={"message": "wake"}),
                             "/v1/replica/{id}/messages")
    assert answer["status"] == "waking"
    await wait_for(lambda: settled(app, first, turns=2), what="the woken archive's turn")


@pytest.mark.replica_settings(max_active_workspaces=1, capacity_retry_after_seconds=7)
async def test_capacity_answers_429_and_never_evicts(app, client, replica_env, model):
    model.add_turn(Text("first"))
    first = (await create(client, replica_env, "one", name="first"))["id"]
    await wait_for(lambda: settled(app, first), what="first")
    for headers in (VERSIONED, {}):
        response = await client.post("/v1/replica", headers=headers, json={
            "name": "second", "environment_id": replica_env.environment_id, "message": "two"})
        assert response.status_code == 429, response.text
        assert response.headers["Retry-After"] == "7"
        validate_schema(response.json(), "Error")  # createReplica lists no 429: an Error body all the same
    assert await status_of(app, first) == "active"
    listed = (await client.get("/v1/replica")).json()
    assert [r["id"] for r in listed["replicas"]] == [first] and listed["total"] == 1

    await client.post(f"/v1/workspaces/{first}/sleep")
    model.add_turn(Text("second"))
    second = (await create(client, replica_env, "two", name="second"))["id"]
    await wait_for(lambda: settled(app, second), what="second")
    assert await status_of(app, first) == "sleeping"

    # Waking counts against the same limit: a message to the sleeper is refused with 429 and nothing is
    # queued; every way of sending refuses alike; a read is answered from the store without a wake.
    for path, body in ((f"/v1/replica/{first}/messages", {"message": "wake up"}),
                       (f"/v1/workspaces/{first}/messages/deferred", {"message": "wake up", "provider": "claude"})):
        response = await client.post(path, json=body)
        assert response.status_code == 429 and response.headers["Retry-After"] == "7", response.text
        validate_schema(response.json(), "Error")
    read = await client.get(f"/v1/replica/{first}")
    assert read.status_code == 200 and read.json()["replica"]["status"] == "sleeping"
    row = await row_of(app, first)
    assert row.status == "sleeping" and not row.pending_messages

    # Once the other one sleeps, the same message wakes it and is delivered.
    await client.post(f"/v1/workspaces/{second}/sleep")
    model.add_turn(Text("awake again"))
    sent = await client.post(f"/v1/replica/{first}/messages", json={"message": "wake up"})
    assert sent.status_code == 200 and sent.json()["status"] == "waking", sent.text
    await wait_for(lambda: settled(app, first, turns=2), what="the woken replica's turn")
    assert await status_of(app, second) == "sleeping"

