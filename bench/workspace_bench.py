"""How fast does a workspace start, and how fast does the agent answer?

    .venv/bin/python -m bench.workspace_bench [--runs 5] [--files 200] [--provider claude]

For each run: register a generated repository and an environment (SQLite, local runtime with
bubblewrap), then time
- create → engine ready: `WorkspaceManager.create` (mirror on the first run only, checkout,
  variables, files, MCP configs, skills, system prompt, engine start, health check);
- message sent → first agent event: `POST /chats/{id}/messages` to the first `chat.turn.delta` on the
  engine's event stream, with the real CLI behind the scripted model on loopback;
- message sent → turn completed.
The pinned CLIs come from `~/.cache/replicas-test-tools` (installed if missing). Nothing asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from replicas.api.app import create_app
from replicas.engine.agents import install
from replicas.services import auth
from replicas.services.principal import Principal
from replicas.services.workspaces import WorkspaceManager
from replicas.settings import Settings
from replicas.testing.script import ShellCall, Text
from replicas.testing.scripted_model import ScriptedModelServer

TOOLS = Path.home() / ".cache" / "replicas-test-tools"


def make_repo(path: Path, files: int) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    for i in range(files):
        target = path / f"pkg{i % 10}" / f"file_{i}.py"
        target.parent.mkdir(exist_ok=True)
        target.write_text(f"VALUE_{i} = {i}\n")
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x", "GIT_COMMITTER_NAME": "b", "GIT_COMMITTER_EMAIL": "b@x"}
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env={**env, "PATH": "/usr/bin:/bin"})
    return path


async def first_delta_and_completion(manager, workspace, after: int) -> tuple[float, float]:
    """Seconds from now to the first chat.turn.delta, and to chat.turn.completed."""
    start = time.monotonic()
    first = None
    async with manager.engine(workspace, timeout=None) as engine:
        await manager.send_message(workspace, "bench: run a command")
        async with engine.stream("GET", "/events", params={"after": after}) as response:
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "chat.turn.delta" and first is None:
                    first = time.monotonic() - start
                if event["type"] == "chat.turn.completed":
                    return first or float("nan"), time.monotonic() - start
    raise RuntimeError("event stream ended early")


def summary(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    return (f"{name:<34} median {statistics.median(ordered):6.3f}s  min {ordered[0]:6.3f}s  "
            f"max {ordered[-1]:6.3f}s  (n={len(ordered)})")


async def main(runs: int, files: int, provider: str) -> None:
    statuses = await install.install(TOOLS)
    if not all(s.ok for s in statuses if s.agent == provider):
        raise SystemExit(f"cannot install {provider}: {statuses}")
    with tempfile.TemporaryDirectory(prefix="replicas-bench-") as scratch, ScriptedModelServer() as model:
        root = Path(scratch)
        origin = make_repo(root / "origin", files)
        settings = Settings(data_dir=root / "data", tools_dir=TOOLS)
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            async with app.state.sessions() as session:
                org = await auth.get_or_create_organization(session, "bench")
                key = await auth.create_org_key(session, org)
                await session.commit()
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://b",
                                         headers={"Authorization": f"Bearer {key}"}) as client:
                repo = (await client.post("/v1/replica/repositories",
                                          json={"name": "bench/repo", "url": str(origin)})).json()["repository"]
                env_id = (await client.post("/v1/environments", json={"name": "bench", "repository_id": repo["id"]})
                          ).json()["environment"]["id"]
                for name, value in {**model.anthropic_env(), **model.openai_env()}.items():
                    await client.post(f"/v1/environments/{env_id}/variables", json={"key": name, "value": value})
            manager = WorkspaceManager(settings, app.state.sessions, app.state.box)
            principal = Principal.system(org.id)
            created, first_events, turns = [], [], []
            steps: dict[str, list[float]] = {}

            def record_step(name: str, detail: dict) -> None:
                steps.setdefault(name, []).append(detail["seconds"])

            for _ in range(runs):
                start = time.monotonic()
                workspace = await manager.create(principal, env_id, provider=provider, on_step=record_step)
                created.append(time.monotonic() - start)
                try:
                    after = int((await manager.call_engine(workspace, "GET", "/status"))["lastSeq"])
                    model.add_turn(ShellCall("true"), Text("done"))
                    first, turn = await first_delta_and_completion(manager, workspace, after)
                    first_events.append(first)
                    turns.append(turn)
                finally:
                    await manager.destroy(workspace)
    print(f"workspace bench: provider={provider}, repository of {files} files, {runs} runs, local runtime")
    print(summary("create -> engine ready", created))
    for name, values in steps.items():
        print(summary(f"  provisioning step: {name}", values))
    print(summary("message sent -> first agent event", first_events))
    print(summary("message sent -> turn completed", turns))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--provider", default="claude", choices=["claude", "codex"])
    options = parser.parse_args()
    asyncio.run(main(options.runs, options.files, options.provider))
