"""The README walk-through: `replicas workspace create ... --message ... --follow` runs the real agent
in a workspace, then `diff`, `send`, `sleep`, `wake` and `delete` work from the shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from replicas.api.app import create_app
from replicas.services import auth
from replicas.settings import Settings
from replicas.testing.script import Text, WriteFile

pytestmark = pytest.mark.slow
REPLICAS = str(Path(sys.executable).parent / "replicas")


def cli(data_dir: Path, tools: Path, *args: str, timeout: float = 120) -> str:
    env = {**os.environ, "REPLICAS_DATA_DIR": str(data_dir), "REPLICAS_TOOLS_DIR": str(tools)}
    done = subprocess.run([REPLICAS, *args], env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def test_the_workspace_command_runs_the_agent_and_shows_the_diff(tmp_path, make_git_repo, model,
                                                                      agent_tools):
    data_dir = tmp_path / "data"
    app = create_app(Settings(data_dir=data_dir))
    origin = make_git_repo("shop", {"README.md": "# shop\n"})
    async with app.router.lifespan_context(app):
        async with app.state.sessions() as session:
            org = await auth.get_or_create_organization(session, "acme")
            key = await auth.create_org_key(session, org)
            await session.commit()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            repo = (await client.post("/v1/replica/repositories",
                                      json={"name": "acme/shop", "url": str(origin)})).json()["repository"]
            env = (await client.post("/v1/environments", json={"name": "dev", "repository_id": repo["id"]})).json()
            env_id = env["environment"]["id"]
            for name, value in model.anthropic_env().items():
                await client.post(f"/v1/environments/{env_id}/variables", json={"key": name, "value": value})

    workspace_home = None
    model.add_turn(WriteFile("/dev/null", ""), Text("Looked around."))
    out = cli(data_dir, agent_tools, "workspace", "create", env_id, "--org", "acme", "-m", "Look around",
              "--follow")
    workspace_id = __import__("json").loads(out.splitlines()[0])["id"]
    assert "[chat.turn.completed]" in out and "Looked around." in out
    try:
        workspace_home = data_dir / "workspaces" / workspace_id / "home"
        checkout = workspace_home / "workspaces" / "shop"
        model.add_turn(WriteFile(str(checkout / "health.py"), "OK = True\n"), Text("Added health.py."))
        out = cli(data_dir, agent_tools, "workspace", "send", workspace_id, "Add a health check", "--org", "acme",
                  "--follow")
        assert "Added health.py." in out
        assert (checkout / "health.py").read_text() == "OK = True\n"
        diff = cli(data_dir, agent_tools, "workspace", "diff", workspace_id, "--org", "acme")
        assert "# shop (main): +1 -0" in diff and "+OK = True" in diff
        assert '"status": "sleeping"' in cli(data_dir, agent_tools, "workspace", "sleep", workspace_id,
                                             "--org", "acme")
        assert '"status": "active"' in cli(data_dir, agent_tools, "workspace", "wake", workspace_id,
                                           "--org", "acme")
        assert workspace_id in cli(data_dir, agent_tools, "workspace", "list", "--org", "acme")
    finally:
        cli(data_dir, agent_tools, "workspace", "delete", workspace_id, "--org", "acme")
    assert not workspace_home.exists()
