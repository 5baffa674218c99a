"""From inside a running workspace (a real replica: the real Claude Code CLI behind the scripted model, then a
shell through the terminal API, which runs bash in the engine's own sandbox or container), nothing of the
control plane's host can be read or signalled: not the data dir (encryption key, database, mirrors), not another
workspace, not the server user's home, not the server process. On the `local` and the `docker` backend.
"""

from __future__ import annotations

import os
import pwd
import secrets

import pytest

from replicas.testing import Text
from tests.agents.test_real_clis import agent_tools, model  # noqa: F401 - fixtures
from tests.engine.test_engine_terminal import read_stream
from tests.replicas.conftest import (  # noqa: F401 - fixtures
    ON_BOTH_BACKENDS,
    create,
    replica_backend,
    replica_env,
    settings,
    settled,
    wait_for,
)
from tests.replicas.test_terminal import live  # noqa: F401 - fixture: the app served on loopback

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), ON_BOTH_BACKENDS]


@pytest.fixture
def planted(settings):  # noqa: F811
    """Secrets where a careless sandbox would show them: the data dir, another workspace, the server user's home."""
    token = secrets.token_hex(16)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    (settings.data_dir / "planted.txt").write_text(token)
    neighbour = settings.data_dir / "workspaces" / "neighbour" / "home"
    neighbour.mkdir(parents=True)
    (neighbour / "private.txt").write_text(token)
    in_home = os.path.join(os.path.realpath(pwd.getpwuid(os.getuid()).pw_dir),
                           f".replicas-test-planted-{secrets.token_hex(6)}")
    with open(in_home, "w") as handle:
        handle.write(token)
    yield {"token": token, "in_home": in_home}
    os.unlink(in_home)


async def test_a_shell_inside_a_workspace_reaches_nothing_of_the_host(app, client, live, settings,  # noqa: F811
                                                                      replica_env, model, planted):  # noqa: F811
    model.add_turn(Text("Ready."))
    rid = (await create(client, replica_env, "Get ready", name="isolation"))["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    data = os.path.realpath(settings.data_dir)
    key = (settings.data_dir / "secret.key").read_bytes()
    pid = os.getpid()
    attack = (f"cat {data}/secret.key {data}/planted.txt {data}/workspaces/neighbour/home/private.txt"
              f" {planted['in_home']} 2>/dev/null; echo \"DB:$(head -c 16 {data}/replicas.db 2>/dev/null)\";"
              f" echo \"LS:$(ls -a {data} {data}/workspaces 2>/dev/null | tr '\\n' ,)\";"
              f" kill -0 {pid} 2>/dev/null && echo SIGNAL-REACHED || echo signal-refused;"
              f" cat /proc/{pid}/environ 2>/dev/null | tr '\\0' '\\n' | head -3; echo attack-$((40+2))\n")

    sessions = f"/v1/workspaces/{rid}/terminal/sessions"
    response = await client.post(sessions, json={"cols": 200, "rows": 50})
    assert response.status_code == 201, response.text
    base = f"{sessions}/{response.json()['session']['id']}"

    async def type_attack():
        sent = await client.post(f"{base}/input", json={"data": attack, "generation": 0, "sequence": 0})
        assert sent.status_code == 200, sent.text

    events = await read_stream(live, f"{base}/stream", lambda events, text: "attack-42" in text,
                               on_replay=type_attack, timeout=30)
    output = "".join(data["data"] for name, data in events if name in ("replay", "output"))
    # What the shell printed, not what was typed (the terminal echoes the command line itself).
    printed = output.split("attack-$((40+2))", 1)[-1]
    assert "signal-refused" in printed and "SIGNAL-REACHED" not in printed
    assert planted["token"] not in printed and key.decode(errors="ignore").strip() not in printed
    assert "SQLite format" not in printed
    listing = next(line for line in printed.splitlines() if line.startswith("LS:"))
    assert "planted.txt" not in listing and "neighbour" not in listing and "secret.key" not in listing
