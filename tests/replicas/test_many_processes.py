"""Several `replicas serve` processes on one PostgreSQL, with the docker backend: any process serves any replica.

A replica created through process 1 is streamed through process 2 and messaged through process 3, and every
event arrives once, in order (pump leases, LISTEN/NOTIFY). The process that pumps a workspace is killed with
SIGKILL mid-turn: another takes the pump over within seconds, a client that reconnects to a survivor with
Last-Event-ID gets every event once, the turn completes, and each webhook is delivered once. SIGTERM drains a
process: its streams end at once (the client reconnects elsewhere) and its pump leases are handed back without
waiting for them to expire. A second `replicas serve` on one SQLite database is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from contextlib import asynccontextmanager

import httpx
import pytest

from replicas.testing.script import ShellCall, Text
from tests.cli.test_cli import REPLICAS, _env
from tests.replicas.conftest import Receiver, backend_env, remove_docker_leftovers
from tests.replicas.test_events_restart import (
    KEY,
    VERSION,
    Server,
    auth,
    is_completed,
    read_sse,
    setup_environment,
)
from tests.replicas.test_warm_hooks import save_warm_hook

pytestmark = [pytest.mark.slow]
FAST = {"REPLICAS_SSE_PING_SECONDS": "1", "REPLICAS_CRON_ENABLED": "false", "REPLICAS_POOL_ENABLED": "false",
        "REPLICAS_ALLOW_PRIVATE_OUTBOUND": "true", "REPLICAS_WEBHOOK_POLL_SECONDS": "0.2",
        "REPLICAS_TRANSITION_LEASE_SECONDS": "2"}


@asynccontextmanager
async def processes(tmp_path, agent_tools, database_url: str, count: int = 3):
    """`count` servers on one PostgreSQL database and one data dir, with the docker backend; at the end every
    replica is deleted through a live one and no container or volume may be left."""
    from tests.replicas.conftest import ensure_base_image

    if reason := ensure_base_image():
        pytest.skip(f"docker backend: {reason}")
    data_dir = tmp_path / "data"
    env = _env(data_dir, REPLICAS_BOOTSTRAP_API_KEY=KEY, REPLICAS_TOOLS_DIR=str(agent_tools),
               REPLICAS_DATABASE_URL=database_url, REPLICAS_SECRET_KEY="many-processes", **FAST,
               **backend_env("docker"))
    servers = [Server(data_dir, env) for _ in range(count)]
    for server in servers:
        await server.start()
    try:
        yield servers
    finally:
        alive = [s for s in servers if s.process is not None and s.process.poll() is None]
        if alive:
            async with httpx.AsyncClient(base_url=alive[0].base, headers=auth(), timeout=60) as client:
                for item in (await client.get("/v1/replica", params={"limit": 100})).json().get("replicas", []):
                    await client.delete(f"/v1/replica/{item['id']}")
        for server in servers:
            server.stop()
        remove_docker_leftovers(data_dir)


def client_of(server: Server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60)


async def pump_owner(client: httpx.AsyncClient, servers: list[Server], replica_id: str, database_url: str):
    """The server whose process holds the replica's pump lease (read from the store)."""
    import asyncpg

    connection = await asyncpg.connect(database_url)
    try:
        owner = await connection.fetchval("SELECT owner FROM leases WHERE name = $1 AND expires_at > now()",
                                          f"pump:{replica_id}")
    finally:
        await connection.close()
    if owner is None:
        return None
    pid = int(owner.split(":")[1])
    return next((s for s in servers if s.process.pid == pid), None)


async def wait_active(client: httpx.AsyncClient, replica_id: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while (await client.get(f"/v1/replica/{replica_id}")).json()["replica"]["status"] != "active":
        assert time.monotonic() < deadline, "the replica did not become active"
        await asyncio.sleep(0.2)


def ids_of(frames: list[dict]) -> list[int]:
    return [int(f["id"]) for f in frames if "id" in f]


async def test_one_replica_through_three_processes_every_event_once_in_order(tmp_path, agent_tools, model,
                                                                            make_git_repo, own_database):
    async with processes(tmp_path, agent_tools, own_database) as servers:
        first, second, third = servers
        async with client_of(first) as one, client_of(second) as two, client_of(third) as three:
            env_id = await setup_environment(one, make_git_repo, model)
            model.add_turn(Text("First, through one."), ShellCall("sleep 1; echo step"), Text("First done."))
            created = await one.post("/v1/replica", json={"name": "spread", "environment_id": env_id,
                                                          "message": "hello"})
            assert created.status_code == 201, created.text
            replica_id = created.json()["replica"]["id"]

            frames: list[dict] = []
            completed = 0

            def second_turn_done(frame: dict) -> bool:
                nonlocal completed
                completed += is_completed(frame)
                return completed == 2

            async def watch() -> None:
                async with two.stream("GET", f"/v1/replica/{replica_id}/events", params={"after": 0},
                                      timeout=httpx.Timeout(120, read=120)) as response:
                    assert response.status_code == 200
                    await read_sse(response, frames, second_turn_done)

            watcher = asyncio.create_task(watch())
            deadline = time.monotonic() + 120
            while not any(is_completed(f) for f in frames):
                assert time.monotonic() < deadline and not watcher.done(), "the first turn did not arrive"
                await asyncio.sleep(0.1)
            model.add_turn(Text("Second, through three."))
            sent = await three.post(f"/v1/replica/{replica_id}/messages", json={"message": "again"})
            assert sent.status_code in (200, 202), sent.text
            await asyncio.wait_for(watcher, 120)

        ids = ids_of(frames)
        assert ids == list(range(1, len(ids) + 1)), f"gap or duplicate in {ids}"
        texts = " ".join(str(f["data"]) for f in frames)
        assert "First done." in texts and "Second, through three." in texts


async def test_kill_9_the_pumping_process_mid_turn_another_takes_over(tmp_path, agent_tools, model, make_git_repo,
                                                                      own_database):
    receiver = Receiver()
    try:
        async with processes(tmp_path, agent_tools, own_database) as servers:
            async with client_of(servers[0]) as client:
                env_id = await setup_environment(client, make_git_repo, model)
                model.add_turn(Text("Slowly."), ShellCall("sleep 2; echo one"), ShellCall("sleep 2; echo two"),
                               Text("Finished after the kill."))
                created = await client.post("/v1/replica", json={
                    "name": "takeover", "environment_id": env_id, "message": "slow work",
                    "webhook_url": receiver.url})
                assert created.status_code == 201, created.text
                replica_id = created.json()["replica"]["id"]
                await wait_active(client, replica_id)
                pumper = await pump_owner(client, servers, replica_id, own_database)
                assert pumper is not None, "nobody holds the pump lease"

            seen: list[dict] = []
            async with client_of(pumper) as client:
                async with client.stream("GET", f"/v1/replica/{replica_id}/events", params={"after": 0},
                                         timeout=httpx.Timeout(60, read=60)) as response:
                    await asyncio.wait_for(read_sse(response, seen, lambda f: sum(
                        x.get("event") == "chat.turn.delta" for x in seen) >= 2), 90)
            assert not any(is_completed(f) for f in seen), "the turn should still be running when killed"
            pumper.kill()
            killed_at = time.monotonic()
            survivors = [s for s in servers if s is not pumper]

            rest: list[dict] = []
            async with client_of(survivors[0]) as client:
                async with client.stream("GET", f"/v1/replica/{replica_id}/events",
                                         headers={"Last-Event-ID": [f for f in seen if "id" in f][-1]["id"]},
                                         timeout=httpx.Timeout(90, read=90)) as response:
                    await asyncio.wait_for(read_sse(response, rest, is_completed), 90)
                new_pumper = await pump_owner(client, survivors, replica_id, own_database)
            assert new_pumper in survivors, "no survivor took the pump over"
            print(f"\ntake-over and the turn's end within {time.monotonic() - killed_at:.1f} s of the kill")
            ids = ids_of(seen) + ids_of(rest)
            assert ids == list(range(ids[0], ids[0] + len(ids))), f"gap or duplicate in {ids}"
            assert rest[-1]["data"]["payload"]["isComplete"] is True
            completions = await receiver.wait("replica.turn_completed")
            await asyncio.sleep(1.0)  # a second delivery of the same event would have come by now
            assert len([e for e in receiver.events() if e["type"] == "replica.turn_completed"]) == 1, completions
            delivery_ids = [headers.get("X-Replicas-Delivery") for headers, _ in receiver.received]
            assert len(delivery_ids) == len(set(delivery_ids)), "a webhook was delivered twice"
    finally:
        receiver.close()


async def test_sigterm_ends_the_streams_at_once_and_hands_the_pumps_back(tmp_path, agent_tools, model, make_git_repo,
                                                                         own_database):
    """SIGTERM to the process that pumps a replica, while a stream watches it and a create it took a moment ago
    is still booting: the stream ends at once, the other process takes the pump over at its next pass, and the
    create's boot (cut short by the stop) once its lease lapses: that replica comes up there and answers."""
    async with processes(tmp_path, agent_tools, own_database, count=2) as servers:
        async with client_of(servers[0]) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(Text("Here."))
            created = await client.post("/v1/replica", json={"name": "drain", "environment_id": env_id,
                                                              "message": "hello"})
            replica_id = created.json()["replica"]["id"]
            await wait_active(client, replica_id)
        pumper = await pump_owner(None, servers, replica_id, own_database)
        other = next(s for s in servers if s is not pumper)
        async with client_of(pumper) as client:
            await save_warm_hook(client, env_id, "sleep 5\necho warmed\n")  # the next boot takes a while
            model.add_turn(Text("Booted by the process that stayed."))
            in_flight = await client.post("/v1/replica", headers=VERSION, json={  # versioned: answered at once
                "name": "in-flight", "environment_id": env_id, "message": "hello again"})
            assert in_flight.status_code == 201, in_flight.text
            in_flight_id = in_flight.json()["replica"]["id"]
            async with client.stream("GET", f"/v1/replica/{replica_id}/events",
                                     timeout=httpx.Timeout(60, read=60)) as response:
                lines = response.aiter_lines()
                await anext(lines)  # attached
                assert (await client.get(f"/v1/replica/{in_flight_id}")).json()["replica"]["status"] == "preparing"
                pumper.process.send_signal(signal.SIGTERM)
                started = time.monotonic()
                async for _ in lines:
                    pass
                ended = time.monotonic() - started
        assert ended < 5, f"the stream took {ended:.1f} s to end after SIGTERM"
        # uvicorn re-raises the signal once it has shut down cleanly (lifespan included).
        assert pumper.process.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in pumper.log_path.read_text()
        # Handed back, not left to expire: the other process pumps it within its next pass (2 s), not the TTL.
        deadline = time.monotonic() + 4
        while await pump_owner(None, [other], replica_id, own_database) is not other:
            assert time.monotonic() < deadline, "the pump lease was not taken over promptly"
            await asyncio.sleep(0.2)
        async with client_of(other) as client:
            await wait_active(client, in_flight_id)
            deadline = time.monotonic() + 60
            while "Booted by the process that stayed." not in str(
                    (await client.get(f"/v1/replica/{in_flight_id}/read")).json()):
                assert time.monotonic() < deadline, "the in-flight create's message was not answered"
                await asyncio.sleep(0.5)
        assert "left preparing by a process that stopped" in other.log_path.read_text()


def test_a_second_serve_on_one_sqlite_database_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    env = _env(data_dir, REPLICAS_CRON_ENABLED="false", REPLICAS_POOL_ENABLED="false")
    first = Server(data_dir, env)
    asyncio.run(first.start())
    try:
        second = subprocess.run([REPLICAS, "serve", "--port", "0", "--data-dir", str(data_dir)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1, second.stderr
        assert "another `replicas serve` is running on the SQLite database" in second.stderr
        assert "PostgreSQL" in second.stderr
        assert first.process.poll() is None, "the first server must go on"
    finally:
        first.stop()
    assert os.path.exists(data_dir / "replicas.db.serve-lock")


async def test_a_rolling_restart_under_watch_loses_no_event_and_no_message(tmp_path, agent_tools, model, make_git_repo,
                                                                           own_database):
    """20 SSE clients spread over three processes, a script sending a message every second or so, and each
    process restarted in turn (SIGTERM, then started again). Each client follows its stream across the
    restarts (reconnecting to any live process with Last-Event-ID) and gets every event once, in order; each
    message is delivered once."""
    import asyncpg

    async with processes(tmp_path, agent_tools, own_database) as servers:
        async with client_of(servers[0]) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(Text("Started."))
            created = await client.post("/v1/replica", json={"name": "rolling", "environment_id": env_id,
                                                              "message": "start"})
            replica_id = created.json()["replica"]["id"]
            await wait_active(client, replica_id)
        first_seq = 0
        final_seq: list[int] = []

        draining: set[int] = set()  # what a load balancer has taken out of rotation before the SIGTERM

        def alive() -> list[Server]:
            return [s for s in servers if s.process is not None and s.process.poll() is None
                    and id(s) not in draining]

        async def watcher(index: int) -> list[int]:
            seen: list[int] = []
            attempt = index
            while not (final_seq and seen and seen[-1] >= final_seq[0]):
                candidates = alive()
                if not candidates:
                    await asyncio.sleep(0.2)
                    continue
                server = candidates[attempt % len(candidates)]
                attempt += 1
                headers = {"Last-Event-ID": str(seen[-1] if seen else first_seq)}
                try:
                    async with client_of(server) as c, c.stream("GET", f"/v1/replica/{replica_id}/events",
                                                                headers=headers,
                                                                timeout=httpx.Timeout(10, read=5)) as response:
                        if response.status_code != 200:
                            continue
                        frame: dict = {}
                        async for line in response.aiter_lines():
                            if line.startswith("id: "):
                                frame["id"] = int(line[4:])
                            elif line == "" and "id" in frame:
                                seen.append(frame["id"])
                                frame = {}
                            if final_seq and seen and seen[-1] >= final_seq[0]:
                                break  # checked at every line, pings included: the last event may be long past
                except (httpx.HTTPError, OSError):
                    await asyncio.sleep(0.1)
            return seen

        async def sender(count: int) -> list[str]:
            sent = []
            for n in range(count):
                text = f"message {n}"
                model.add_turn(Text(f"Answer {n}."))
                while True:
                    candidates = alive()
                    try:
                        async with client_of(candidates[n % len(candidates)]) as c:
                            answer = await c.post(f"/v1/replica/{replica_id}/messages", json={"message": text})
                        assert answer.status_code in (200, 202), answer.text
                        break
                    except (httpx.ConnectError, IndexError):  # never reached a process: safe to send again
                        await asyncio.sleep(0.2)
                sent.append(text)
                await asyncio.sleep(1.0)
            return sent

        watchers = [asyncio.create_task(watcher(i)) for i in range(20)]
        sending = asyncio.create_task(sender(6))
        await asyncio.sleep(1.0)
        for server in servers:  # one at a time, as a deploy would: out of rotation, SIGTERM, started again
            draining.add(id(server))
            await asyncio.sleep(0.3)  # requests already routed to it finish; new ones go elsewhere
            server.process.send_signal(signal.SIGTERM)
            server.process.wait(timeout=30)
            await server.start()
            draining.discard(id(server))
            await asyncio.sleep(0.5)
        sent = await asyncio.wait_for(sending, 120)

        connection = await asyncpg.connect(own_database)
        try:
            deadline = time.monotonic() + 120
            while True:
                completed = await connection.fetchval(
                    "SELECT count(*) FROM workspace_events WHERE workspace_id = $1 AND type = 'chat.turn.completed'",
                    uuid.UUID(replica_id))
                if completed >= 1 + len(sent):
                    break
                assert time.monotonic() < deadline, f"{completed} turns completed of {1 + len(sent)}"
                await asyncio.sleep(0.5)
            final_seq.append(await connection.fetchval("SELECT last_event_seq FROM workspaces WHERE id = $1",
                                                       uuid.UUID(replica_id)))
        finally:
            await connection.close()
        sequences = await asyncio.wait_for(asyncio.gather(*watchers), 120)
        for seen in sequences:
            assert seen == list(range(first_seq + 1, final_seq[0] + 1)), f"gap or duplicate: {seen}"
        async with client_of(alive()[0]) as client:
            history = (await client.get(f"/v1/replica/{replica_id}/history", params={"limit": 500})).json()
        said = [str(event) for event in history["events"] if event["type"] == "claude-user"]
        for text in sent:
            assert sum(text in entry for entry in said) == 1, f"{text!r} delivered {sum(text in e for e in said)}x"
