"""Terminal sessions through the API, as a user drives them: real workspaces, real PTYs, real bash. The event
stream is read from the app served over loopback (httpx's ASGI transport would wait for the stream's end)."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest
import uvicorn

from replicas.testing import Text
from tests.contract import assert_contract, validate_schema
from tests.engine.test_engine_terminal import read_stream
from tests.replicas.conftest import ON_BOTH_BACKENDS, checkout, create, row_of, settled, status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)]

SESSIONS = "/v1/workspaces/{workspaceId}/terminal/sessions"
SESSION = SESSIONS + "/{sessionId}"


@pytest.fixture
async def live(app, org):
    """A client of the app served by uvicorn on 127.0.0.1, with the org's key."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                                           timeout_graceful_shutdown=2))
    task = asyncio.create_task(server.serve())
    await wait_for(lambda: asyncio.sleep(0, server.started), timeout=10, what="uvicorn")
    port = server.servers[0].sockets[0].getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Authorization": f"Bearer {org.key}"}) as client:
        yield client
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def workspace(app, client, replica_env, model) -> str:
    model.add_turn(Text("Ready."))
    rid = (await create(client, replica_env, "Get ready", name="terminal"))["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    return rid


@ON_BOTH_BACKENDS
async def test_a_terminal_session_runs_a_shell_in_the_workspace(app, client, live, settings, replica_env, model):
    rid = await workspace(app, client, replica_env, model)
    sessions = f"/v1/workspaces/{rid}/terminal/sessions"
    assert assert_contract(await client.get(sessions), SESSIONS) == {"sessions": []}

    response = await client.post(sessions, json={"cols": 80, "rows": 24})
    assert response.status_code == 201, response.text
    session = assert_contract(response, SESSIONS)["session"]
    assert session["exited"] is False and "exitCode" not in session
    base = f"{sessions}/{session['id']}"

    async def send(data: str, generation: int = 0, sequence: int = 0) -> httpx.Response:
        return await client.post(f"{base}/input", json={"data": data, "generation": generation,
                                                        "sequence": sequence})

    async def type_command():
        assert assert_contract(await send("echo $((6*7)); pwd\n"), SESSION + "/input") == {"success": True}

    events = await read_stream(live, f"{base}/stream", lambda events, text: "42\r\n" in text
                               and "/home/workspaces\r\n" in text, on_replay=type_command)
    # Typed after the stream opened: live `output` events. The shell runs in ~/workspaces, beside the checkouts.
    assert events[0][0] == "replay" and "42" not in events[0][1]["data"]
    assert any(name == "output" and "42\r\n" in data["data"] for name, data in events)

    # The same (generation, sequence) twice runs once; a reconnected client's newer generation goes on.
    for _ in range(2):
        assert (await send("echo x >> once.txt\n", sequence=1)).json() == {"success": True}
    assert (await send("echo y >> once.txt; echo marker-$((2+3))\n", generation=1, sequence=0)).status_code == 200
    await read_stream(live, f"{base}/stream", lambda events, text: "marker-5" in text)
    assert (checkout(settings, rid).parent / "once.txt").read_text() == "x\ny\n"
    stale = await send("echo z >> once.txt\n", generation=0, sequence=9)
    assert stale.status_code == 400
    validate_schema(stale.json(), "Error")

    resized = await client.post(f"{base}/resize", json={"cols": 120, "rows": 40})
    assert assert_contract(resized, SESSION + "/resize") == {"success": True}
    assert (await send("stty size\n", generation=1, sequence=1)).status_code == 200
    await read_stream(live, f"{base}/stream", lambda events, text: "40 120" in text)

    # A reconnect replays what came before; `exit 3` ends the stream with the exit code.
    assert (await send("exit 3\n", generation=1, sequence=2)).status_code == 200
    events = await read_stream(live, f"{base}/stream", lambda events, text: False)
    assert events[0][0] == "replay" and "42\r\n" in events[0][1]["data"] and "40 120" in events[0][1]["data"]
    assert events[-1] == ("exit", {"exitCode": 3})
    listed = assert_contract(await client.get(sessions), SESSIONS)["sessions"]
    assert listed == [{**session, "exited": True, "exitCode": 3}]

    # Validation, unknown sessions, delete.
    for body in ({"cols": 1, "rows": 24}, {"cols": 80, "rows": 0}, {"cols": "80", "rows": 24}, {"rows": 24}):
        invalid = await client.post(sessions, json=body)
        assert invalid.status_code == 400, body
        assert assert_contract(invalid, SESSIONS)["error"]
    too_long = await send("x" * 65537, generation=1, sequence=3)
    assert too_long.status_code == 400
    assert_contract(too_long, SESSION + "/input")
    unknown = f"{sessions}/00000000-0000-4000-8000-000000000000"
    missing = await client.post(f"{unknown}/input", json={"data": "echo\n", "generation": 0, "sequence": 0})
    assert missing.status_code == 404
    assert assert_contract(missing, SESSION + "/input")["error"]
    assert (await client.post(f"{unknown}/resize", json={"cols": 80, "rows": 24})).status_code == 404
    assert (await live.get(f"{unknown}/stream")).status_code == 404
    deleted = await client.delete(base)
    assert assert_contract(deleted, SESSION) == {"success": True}
    assert (await client.delete(base)).status_code == 404
    assert assert_contract(await client.get(sessions), SESSIONS) == {"sessions": []}
    other = await client.get("/v1/workspaces/00000000-0000-4000-8000-000000000000/terminal/sessions")
    assert other.status_code == 404
    assert_contract(other, SESSIONS)


async def test_eight_sessions_at_most_and_creating_one_wakes_a_sleeping_workspace(app, client, live, replica_env,
                                                                                  model):
    rid = await workspace(app, client, replica_env, model)
    sessions = f"/v1/workspaces/{rid}/terminal/sessions"
    created = []
    for _ in range(8):
        response = await client.post(sessions, json={"cols": 80, "rows": 24})
        assert response.status_code == 201, response.text
        created.append(response.json()["session"]["id"])
    ninth = await client.post(sessions, json={"cols": 80, "rows": 24})
    assert ninth.status_code == 429
    assert "8" in assert_contract(ninth, SESSIONS)["error"]
    assert len({s["id"] for s in (await client.get(sessions)).json()["sessions"]}) == 8
    assert (await client.delete(f"{sessions}/{created[0]}")).status_code == 200
    assert (await client.post(sessions, json={"cols": 80, "rows": 24})).status_code == 201

    # Asleep, the workspace has no sessions (listing does not wake it); creating one wakes it.
    assert (await client.post(f"/v1/workspaces/{rid}/sleep")).status_code == 200
    assert assert_contract(await client.get(sessions), SESSIONS) == {"sessions": []}
    assert await status_of(app, rid) == "sleeping"
    response = await client.post(sessions, json={"cols": 80, "rows": 24})
    assert response.status_code == 201, response.text
    assert await status_of(app, rid) == "active"
    session = assert_contract(response, SESSIONS)["session"]
    url = f"{sessions}/{session['id']}"
    await client.post(f"{url}/input", json={"data": "echo awake-$((3*3))\n", "generation": 0, "sequence": 0})
    await read_stream(live, f"{url}/stream", lambda events, text: "awake-9" in text)
    assert [s["id"] for s in (await client.get(sessions)).json()["sessions"]] == [session["id"]]


# An idle limit of 2 s: the terminal's open stream must reach the store (the engine's status, pumped) within it, which
# took over 1 s once on a loaded machine, and the workspace slept first.
@pytest.mark.replica_settings(sleep_after_idle_seconds=2)
async def test_someone_at_a_terminal_keeps_the_workspace_awake(app, client, live, replica_env, model):
    rid = await workspace(app, client, replica_env, model)
    sessions = f"/v1/workspaces/{rid}/terminal/sessions"
    session = (await client.post(sessions, json={"cols": 80, "rows": 24})).json()["session"]

    async def status_flag():
        row = await row_of(app, rid)
        return ((row.snapshot or {}).get("status") or {}).get("hasActiveSSHSessions")

    watching = asyncio.create_task(read_stream(live, f"{sessions}/{session['id']}/stream",
                                               lambda events, text: False, timeout=60))
    try:
        await wait_for(status_flag, timeout=10, what="the engine status to show the open terminal")
        await asyncio.sleep(5)  # over twice the idle limit, with the reaper passing every 0.2 s
        # Not put to sleep: the stream is still open and the same engine still has the session.
        assert not watching.done() and await status_of(app, rid) == "active"
        listed = (await client.get(sessions)).json()["sessions"]
        assert [s["id"] for s in listed] == [session["id"]] and listed[0]["exited"] is False
    finally:
        watching.cancel()
        with contextlib.suppress(BaseException):
            await watching
    # Nobody at the terminal (the session itself still open): idle again, so it sleeps.
    await wait_for(lambda: _status_is(app, rid, "sleeping"), timeout=20, what="the idle workspace to sleep")


async def _status_is(app, rid: str, status: str) -> bool:
    return await status_of(app, rid) == status
