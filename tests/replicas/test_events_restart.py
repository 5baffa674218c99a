"""The SSE event stream against a real `replicas serve`: snapshot, pings, many clients, and nothing lost
when the control plane is killed with SIGKILL in the middle of a turn. Both run on both runtime backends:
on docker, the restarted control plane must reattach to the still-running container."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from replicas.testing.script import ShellCall, Text
from tests.cli.test_cli import REPLICAS, _env, _free_port
from tests.replicas.conftest import ON_BOTH_BACKENDS, backend_env, remove_docker_leftovers

pytestmark = [pytest.mark.slow]
KEY = "sk_replicas_" + "e" * 40
VERSION = {"X-Replicas-Api-Version": "2026-05-17"}


class Server:
    """`replicas serve` on a fixed port and data dir; can be killed and started again."""

    def __init__(self, data_dir: Path, env: dict[str, str]):
        self.data_dir, self.env, self.port = data_dir, env, _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self.log_path = data_dir.parent / "serve.log"

    async def start(self) -> None:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([REPLICAS, "serve", "--port", str(self.port), "--data-dir",
                                         str(self.data_dir)], env=self.env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient() as client:
            while True:
                assert self.process.poll() is None, f"serve exited:\n{self.log_path.read_text()[-3000:]}"
                try:
                    if (await client.get(f"{self.base}/healthz", timeout=1)).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"serve did not start:\n{self.log_path.read_text()[-3000:]}"
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@asynccontextmanager
async def running_server(tmp_path, agent_tools, **settings: str):
    """`replicas serve` with `settings` (REPLICAS_* variables). At exit every replica is deleted through
    the API; on docker, no container or volume of this data dir may be left (any found are removed, and
    the test fails for them unless it already failed)."""
    data_dir = tmp_path / "data"
    env = _env(data_dir, REPLICAS_BOOTSTRAP_API_KEY=KEY, REPLICAS_TOOLS_DIR=str(agent_tools), **settings)
    server = Server(data_dir, env)
    await server.start()
    failed = False
    try:
        yield server
    except BaseException:
        failed = True
        raise
    finally:
        # Remove every workspace (their engines outlive a killed control plane), then stop.
        with_process = server.process is not None and server.process.poll() is None
        if with_process:
            async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=30) as client:
                listed = (await client.get("/v1/replica", params={"limit": 100})).json()
                for item in listed.get("replicas", []):
                    await client.delete(f"/v1/replica/{item['id']}")
        server.stop()
        if env.get("REPLICAS_RUNTIME") == "docker":
            left = remove_docker_leftovers(data_dir)
            assert failed or left == [], f"deleting the replicas left docker objects behind: {left}"


def running_containers(backend: str, replica_id: str) -> list[str]:
    """The ids of the replica's running containers on docker (one: its engine's); [] on other backends."""
    if backend != "docker":
        return []
    listed = subprocess.run(["docker", "ps", "--no-trunc", "--format", "{{.ID}}", "--filter",
                             f"label=replicas.workspace_id={replica_id}"], capture_output=True, text=True,
                            timeout=60, check=True)
    return sorted(listed.stdout.split())


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


async def setup_environment(client: httpx.AsyncClient, make_git_repo, model) -> str:
    origin = make_git_repo("shop", {"README.md": "# shop\n"})
    repo = (await client.post("/v1/replica/repositories", json={"name": "acme/shop", "url": str(origin)})).json()
    env = (await client.post("/v1/environments", json={"name": "shop", "repository_id": repo["repository"]["id"]}))
    env_id = env.json()["environment"]["id"]
    for key, value in {**model.anthropic_env(), "REPLICAS_AGENT_MAX_RETRIES": "1"}.items():
        assert (await client.post(f"/v1/environments/{env_id}/variables",
                                  json={"key": key, "value": value})).status_code == 201
    return env_id


async def read_sse(response: httpx.Response, into: list[dict], stop, comments: list[str] | None = None) -> None:
    """Parse SSE frames into `into` ({id, event, data}) until `stop(frame)` is true or the stream ends."""
    frame: dict = {}
    async for line in response.aiter_lines():
        if line == "":
            if "data" in frame:
                frame["data"] = json.loads(frame["data"])
                into.append(frame)
                if stop(frame):
                    return
            frame = {}
        elif line.startswith(":"):
            if comments is not None:
                comments.append(line)
        else:
            name, _, value = line.partition(":")
            frame[name] = value.removeprefix(" ")


def is_completed(frame: dict) -> bool:
    return frame.get("event") == "chat.turn.completed"


@ON_BOTH_BACKENDS
async def test_kill_9_mid_turn_then_reconnect_with_last_event_id_loses_nothing(tmp_path, agent_tools, model,
                                                                                make_git_repo, replica_backend):
    async with running_server(tmp_path, agent_tools, **backend_env(replica_backend)) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(Text("Working on it."), ShellCall("sleep 2; echo one"), ShellCall("sleep 2; echo two"),
                           Text("All done."))
            created = await client.post("/v1/replica", headers=VERSION, json={
                "name": "restart", "environment_id": env_id, "message": "Do the slow thing"})
            assert created.status_code == 201 and created.json()["replica"]["status"] == "preparing"
            replica_id = created.json()["replica"]["id"]

            first: list[dict] = []
            async with client.stream("GET", f"/v1/replica/{replica_id}/events", params={"after": 0},
                                     timeout=httpx.Timeout(60, read=60)) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                # Bounded: pings keep a stream alive, so a replica that never starts would wait forever.
                await asyncio.wait_for(read_sse(response, first, lambda f: f.get("event") == "chat.turn.delta"
                                                and "id" in f
                                                and any(x.get("event") == "chat.turn.delta" for x in first[:-1])), 90)
            running_before = running_containers(replica_backend, replica_id)
            assert running_before or replica_backend != "docker", "no running container for the replica"
            server.kill()  # SIGKILL mid-turn: the engine goes on inside the workspace

        snapshot = [f for f in first if "id" not in f]
        assert snapshot and snapshot[0]["data"]["type"] in ("engine.ready", "engine.status.changed",
                                                             "repo.status.changed")
        seen = [f for f in first if "id" in f]
        assert not any(is_completed(f) for f in seen), "the turn should still be running when killed"
        last_id = seen[-1]["id"]

        await server.start()
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            second: list[dict] = []
            async with client.stream("GET", f"/v1/replica/{replica_id}/events",
                                     headers={"Last-Event-ID": last_id},
                                     timeout=httpx.Timeout(90, read=90)) as response:
                assert response.status_code == 200
                await asyncio.wait_for(read_sse(response, second, is_completed), 90)
            resumed = [f for f in second if "id" in f]
            ids = [int(f["id"]) for f in seen + resumed]
            assert ids == list(range(ids[0], ids[0] + len(ids))), f"gap or duplicate in {ids}"
            assert resumed[-1]["data"]["payload"]["isComplete"] is True
            assert [f["data"]["type"] for f in seen + resumed] == [f["event"] for f in seen + resumed]

            # Exactly what the store holds: a fresh client replaying from 0 sees the same sequence.
            replay: list[dict] = []
            async with client.stream("GET", f"/v1/replica/{replica_id}/events", params={"after": 0}) as response:
                await asyncio.wait_for(read_sse(response, replay, lambda f: f.get("id") == resumed[-1]["id"]), 30)
            stored = [(int(f["id"]), f["data"]["type"]) for f in replay if "id" in f]
            assert stored[-len(ids):] == [(int(f["id"]), f["data"]["type"]) for f in seen + resumed]
            history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
            assert history["events"][-1]["type"] == "claude-result"
            # On docker: the restarted control plane reattached to the same container, never replaced it.
            assert running_containers(replica_backend, replica_id) == running_before


@ON_BOTH_BACKENDS
async def test_many_clients_each_get_every_event_once_with_pings(tmp_path, agent_tools, model, make_git_repo,
                                                                 replica_backend):
    async with running_server(tmp_path, agent_tools, REPLICAS_SSE_PING_SECONDS="0.5",
                              **backend_env(replica_backend)) as server:
        async with httpx.AsyncClient(base_url=server.base, headers=auth(), timeout=60) as client:
            env_id = await setup_environment(client, make_git_repo, model)
            model.add_turn(Text("First answer."))
            created = await client.post("/v1/replica", json={"name": "fanout", "environment_id": env_id,
                                                              "message": "hello"})
            assert created.json()["replica"]["status"] == "active"
            replica_id = created.json()["replica"]["id"]
            await wait_settled(client, replica_id)

            async def listen(frames: list[dict], comments: list[str]) -> None:
                async with client.stream("GET", f"/v1/replica/{replica_id}/events",
                                         timeout=httpx.Timeout(60, read=60)) as response:
                    await read_sse(response, frames, is_completed, comments)

            clients = [([], []) for _ in range(20)]
            tasks = [asyncio.create_task(listen(frames, comments)) for frames, comments in clients]
            await asyncio.sleep(1.5)  # attached, idle: pings flow
            # While 20 streams are open, 40 concurrent reads still answer (no request may hold a pooled
            # connection for its whole lifetime, or the pool runs dry).
            reads = await asyncio.gather(*(client.get(f"/v1/replica/{replica_id}") for _ in range(40)))
            assert [r.status_code for r in reads] == [200] * 40
            model.add_turn(Text("Second answer."))
            sent = await client.post(f"/v1/replica/{replica_id}/messages", json={"message": "again"})
            assert sent.json()["status"] == "sent"
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            sequences = [[int(f["id"]) for f in frames if "id" in f] for frames, _ in clients]
            # Each client starts "from now" (its connect time), then gets every event once, in order.
            for seq in sequences:
                assert seq == list(range(seq[0], seq[0] + len(seq))), f"gap or duplicate in {seq}"
            assert len({seq[-1] for seq in sequences}) == 1, sequences
            assert all(any(c == ": ping" for c in comments) for _, comments in clients)
            # Attached clients keep the workspace awake: the row says so.
            async with httpx.AsyncClient(base_url=server.base, headers=auth()) as other:
                assert (await other.get(f"/v1/replica/{replica_id}")).json()["replica"]["status"] == "active"

            # Deleting the replica ends its open streams (at the next ping).
            async def until_end() -> None:
                async with client.stream("GET", f"/v1/replica/{replica_id}/events") as response:
                    async for _ in response.aiter_lines():
                        pass
            ending = asyncio.create_task(until_end())
            await asyncio.sleep(0.3)
            assert (await client.delete(f"/v1/replica/{replica_id}")).json() == {"success": True}
            await asyncio.wait_for(ending, 10)


async def wait_settled(client: httpx.AsyncClient, replica_id: str, timeout: float = 60) -> None:
    """Until the replica's history ends with a finished turn and no chat is processing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        history = (await client.get(f"/v1/replica/{replica_id}/history")).json()
        chats = (await client.get(f"/v1/replica/{replica_id}")).json()["replica"]["chats"]
        if history["events"] and history["events"][-1]["type"] == "claude-result" and \
                not any(chat["processing"] for chat in chats):
            return
        await asyncio.sleep(0.2)
    raise AssertionError("the first turn did not finish")
