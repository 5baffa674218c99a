"""Fixtures for the engine: the real engine as a subprocess on a unix socket, a workspace home with git
checkouts, and a fake `claude` binary (stream-json lines, no model) for queue mechanics."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures for the slow tests
from tests.conftest import git

SECRET = "test-engine-secret"

FAKE_CLAUDE = r'''#!{python}
"""A stand-in for Claude Code: reads the stream-json user message on stdin, prints stream-json lines.
The prompt says what to do: `sleep:N` sleeps N seconds, `crash` exits 1 without a result, `write:NAME`
creates NAME in the cwd."""
import json, os, sys, time, uuid
argv = sys.argv[1:]
message = json.loads(sys.stdin.readline() or "{}") if "--input-format" in argv else {}
prompt = "".join(block.get("text", "") for block in (message.get("message") or {}).get("content") or []
                 if block.get("type") == "text")
session = argv[argv.index("--resume") + 1] if "--resume" in argv else str(uuid.uuid4())
with open(os.environ["FAKE_AGENT_LOG"], "a") as log:
    log.write(json.dumps({"argv": argv, "cwd": os.getcwd(), "prompt": prompt}) + "\n")
def out(line):
    print(json.dumps(line), flush=True)
out({"type": "system", "subtype": "init", "session_id": session})
out({"type": "assistant", "session_id": session, "message": {"content": [{"type": "text", "text": "on it"}]}})
for word in prompt.split():
    if word.startswith("sleep:"):
        time.sleep(float(word.split(":", 1)[1]))
    elif word == "crash":
        sys.exit(1)
    elif word.startswith("write:"):
        open(word.split(":", 1)[1], "w").write("written\n")
out({"type": "result", "subtype": "success", "is_error": False, "session_id": session, "result": "done"})
'''


@pytest.fixture
def fake_tools(tmp_path) -> Path:
    """A tools directory whose `claude` is the fake above."""
    tools = tmp_path / "tools"
    binary = tools / "claude" / "node_modules" / ".bin" / "claude"
    binary.parent.mkdir(parents=True)
    binary.write_text(FAKE_CLAUDE.replace("{python}", sys.executable))
    binary.chmod(0o755)
    return tools


@pytest.fixture
def home(tmp_path) -> Path:
    """A workspace home with one checkout, `~/workspaces/app`."""
    home = tmp_path / "home"
    repo = home / "workspaces" / "app"
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / "README.md").write_text("# app\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "initial")
    return home


class EngineProcess:
    """The engine running as `python -m replicas.engine.main` on a unix socket."""

    def __init__(self, home: Path, socket: Path, env: dict[str, str]):
        self.home, self.socket, self.env = home, socket, env
        self.process: subprocess.Popen | None = None
        self.log = home.parent / "engine.log"

    def client(self, secret: str | None = SECRET, timeout: float = 30) -> httpx.AsyncClient:
        headers = {"X-Replicas-Engine-Secret": secret} if secret else {}
        return httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(self.socket)),
                                 base_url="http://engine", headers=headers, timeout=timeout)

    async def start(self) -> EngineProcess:
        with self.log.open("ab") as log:
            argv = [sys.executable, "-m", "replicas.engine.main", "--socket", str(self.socket)]
            self.process = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        deadline = time.monotonic() + 20
        async with self.client() as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"engine exited:\n{self.log.read_text()}")
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get("/health")).status_code == 200:
                        return self
                await asyncio.sleep(0.05)
        raise RuntimeError(f"engine did not start:\n{self.log.read_text()}")

    def kill(self) -> None:
        """SIGKILL the engine and whatever it started (as a crash would)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)


@pytest.fixture
def make_engine(tmp_path, home) -> Callable[..., EngineProcess]:
    """Factory: an engine (not started) over `home`; extra environment variables as keyword arguments."""
    engines: list[EngineProcess] = []

    def factory(**env: str) -> EngineProcess:
        base = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8",
                "REPLICAS_ENGINE_SECRET": SECRET, "REPLICAS_WORKSPACE_ID": "ws-test",
                "FAKE_AGENT_LOG": str(tmp_path / "agent.log"), "PYTHONPATH": os.pathsep.join(sys.path)}
        engine = EngineProcess(home, tmp_path / "run" / "engine.sock", {**base, **env})
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        engine.stop()


async def read_events(client: httpx.AsyncClient, after: int, until: Callable[[dict], bool],
                      timeout: float = 30) -> list[dict]:
    """Events from the SSE stream after `after`, up to and including the first one `until` accepts."""
    events: list[dict] = []

    async def consume() -> None:
        async with client.stream("GET", "/events", params={"after": after}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line == "":
                    if "data" in fields:
                        event = json.loads(fields["data"])
                        assert str(event["seq"]) == fields["id"] and event["type"] == fields["event"]
                        events.append(event)
                        if until(event):
                            return
                    fields = {}
                elif not line.startswith(":"):
                    name, _, value = line.partition(": ")
                    fields[name] = value

    await asyncio.wait_for(consume(), timeout)
    return events
