"""The engine's terminal sessions: a real engine subprocess, real PTYs, real bash."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx

from tests.contract import validate_schema

BASE = "/terminal/sessions"


async def read_stream(client: httpx.AsyncClient, url: str, until, timeout: float = 15,
                      on_replay=None) -> list[tuple]:
    """A terminal stream's (event, data) pairs (engine or API `url`), up to the first that
    `until(events, output_so_far)` accepts, or its end."""
    events: list[tuple] = []

    async def consume() -> None:
        async with client.stream("GET", url) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            name = None
            async for line in response.aiter_lines():
                if line.startswith("event: "):
                    name = line[len("event: "):]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[len("data: "):])))
                    if name == "replay" and on_replay is not None:
                        await on_replay()  # input typed while the stream is open comes as `output` events
                    if until(events, output(events)):
                        return

    try:
        await asyncio.wait_for(consume(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out; the stream so far: {events!r}") from None
    return events


def output(events: list[tuple]) -> str:
    return "".join(data["data"] for name, data in events if name in ("replay", "output"))


async def send(client, session_id: str, data: str, generation: int = 0, sequence: int = 0) -> httpx.Response:
    return await client.post(f"{BASE}/{session_id}/input",
                             json={"data": data, "generation": generation, "sequence": sequence})


async def test_a_shell_runs_input_once_resizes_and_reports_its_exit(make_engine, fake_tools, home):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        created = await client.post(BASE, json={"cols": 80, "rows": 24})
        assert created.status_code == 201, created.text
        session = created.json()["session"]
        validate_schema(session, "TerminalSession")
        sid = session["id"]

        async def type_command():
            assert (await send(client, sid, "echo $((6*7)); pwd\n")).json() == {"success": True}

        events = await read_stream(client, f"{BASE}/{sid}/stream",
                                   lambda events, text: "42\r\n" in text and "workspaces" in text,
                                   on_replay=type_command)
        assert events[0][0] == "replay" and events[-1][0] == "output"

        # The same (generation, sequence) twice: written once. A stale generation: 400.
        for _ in range(2):
            assert (await send(client, sid, "echo x >> once.txt\n", sequence=1)).json() == {"success": True}
        assert (await send(client, sid, "echo y >> once.txt\n", generation=2, sequence=0)).status_code == 200
        stale = await send(client, sid, "echo z >> once.txt\n", generation=1, sequence=5)
        assert stale.status_code == 400 and "generation" in stale.json()["error"]
        assert (await send(client, sid, "echo done-$((1+1))\n", generation=2, sequence=1)).status_code == 200
        await read_stream(client, f"{BASE}/{sid}/stream", lambda events, text: "done-2" in text)
        assert (home / "workspaces" / "once.txt").read_text() == "x\ny\n"

        assert (await client.post(f"{BASE}/{sid}/resize", json={"cols": 101, "rows": 33})).json() == {"success": True}
        assert (await send(client, sid, "stty size\n", generation=2, sequence=2)).status_code == 200
        await read_stream(client, f"{BASE}/{sid}/stream", lambda events, text: "33 101" in text)

        assert (await send(client, sid, "exit 3\n", generation=2, sequence=3)).status_code == 200
        # An exited session's stream ends.
        events = await read_stream(client, f"{BASE}/{sid}/stream", lambda events, text: False)
        assert events[-1] == ("exit", {"exitCode": 3})
        assert events[0][0] == "replay" and "33 101" in events[0][1]["data"]
        listed = (await client.get(BASE)).json()
        validate_schema(listed, "ListTerminalSessionsResponse")
        assert listed["sessions"] == [{**session, "exited": True, "exitCode": 3}]
        assert (await send(client, sid, "echo late\n", generation=2, sequence=4)).status_code == 400

        assert (await client.delete(f"{BASE}/{sid}")).json() == {"success": True}
        assert (await client.delete(f"{BASE}/{sid}")).status_code == 404
        assert (await client.get(BASE)).json() == {"sessions": []}


async def test_limits_validation_and_cleanup_when_the_engine_stops(make_engine, fake_tools, tmp_path):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    pid_file = tmp_path / "shell.pid"
    async with engine.client() as client:
        for body in ({"cols": 1, "rows": 24}, {"cols": 80, "rows": 201}, {"cols": "80", "rows": 24}, {}):
            response = await client.post(BASE, json=body)
            assert response.status_code == 400 and response.json()["error"], body
        ids = []
        for _ in range(8):
            response = await client.post(BASE, json={"cols": 80, "rows": 24})
            assert response.status_code == 201
            ids.append(response.json()["session"]["id"])
        ninth = await client.post(BASE, json={"cols": 80, "rows": 24})
        assert ninth.status_code == 429 and "8" in ninth.json()["error"]
        assert (await send(client, ids[0], "x" * 65537)).status_code == 400
        assert (await send(client, ids[0], "echo hi\n", sequence=-1)).status_code == 400
        assert (await client.post(f"{BASE}/{ids[0]}/resize", json={"cols": 501, "rows": 10})).status_code == 400
        assert (await send(client, "no-such-session", "echo\n")).status_code == 404
        assert (await client.get(f"{BASE}/no-such-session/stream")).status_code == 404

        # The deleted session's shell is gone; so is every other one once the engine stops.
        assert (await send(client, ids[0], f"echo $$ > {pid_file}.0\n")).status_code == 200
        assert (await send(client, ids[1], f"echo $$ > {pid_file}\n")).status_code == 200
        for path in (tmp_path / "shell.pid.0", pid_file):
            while not path.exists() or not path.read_text().strip():
                await asyncio.sleep(0.05)
        assert (await client.delete(f"{BASE}/{ids[0]}")).status_code == 200
        assert not alive(int((tmp_path / "shell.pid.0").read_text()))
    shell = int(pid_file.read_text())
    assert alive(shell)
    engine.stop()
    deadline = time.monotonic() + 10
    while alive(shell) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert not alive(shell)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by a parent that is itself gone) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


async def test_the_replay_keeps_the_last_256_ki_characters_of_output(make_engine, fake_tools):
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        sid = (await client.post(BASE, json={"cols": 80, "rows": 24})).json()["session"]["id"]
        command = "head -c 300000 /dev/zero | tr '\\0' a; echo; echo END-$((40+2))\n"
        assert (await send(client, sid, command)).status_code == 200
        await read_stream(client, f"{BASE}/{sid}/stream", lambda events, text: "END-42\r\n" in text)
        replay = (await read_stream(client, f"{BASE}/{sid}/stream", lambda events, text: True))[0]
        name, data = replay
        assert name == "replay" and len(data["data"]) == 256 * 1024
        assert data["data"].startswith("a" * 1000) and "END-42\r\n" in data["data"][-200:]
