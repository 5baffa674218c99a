"""The `replicas` CLI driving replicas on a live server (SQLite and PostgreSQL), each with the real Claude Code
behind the scripted model: `create --follow` in a pseudo-terminal, as a person sees it, then every replica
command with its `--json` output parsed, `watch` interrupted with Ctrl-C, previews and an automation run."""

from __future__ import annotations

import io
import json
import re
import signal
import time
from collections.abc import Iterator

import pexpect
import pytest

from replicas.client import Replicas
from replicas.testing import ShellCall, Text
from tests.cli.client_cli import REPLICAS, Cli
from tests.conftest import git
from tests.live_server import LiveServer, destroy_workspaces, replica_settings, shop_environment
from tests.live_server import settle as wait_settled

pytestmark = pytest.mark.slow
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory, agent_tools) -> Iterator[LiveServer]:
    with LiveServer(replica_settings(request, tmp_path_factory, agent_tools)) as live:
        yield live


@pytest.fixture
def cli(server, tmp_path, model) -> Iterator[Cli]:
    """The CLI with a new organization's key, which has the `shop` environment; its workspaces are removed
    after the test."""
    origin = tmp_path / "shop"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("# shop\n")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "initial")
    key = server.new_org_key()
    shop_environment(server, key, origin, model)
    yield Cli(server.url, tmp_path / "config", api_key=key)
    destroy_workspaces(server)


def settle(cli: Cli, replica_id: str, turns: int) -> None:
    with Replicas(cli.url, api_key=cli.api_key) as client:
        wait_settled(client, replica_id, turns)


def spawn(cli: Cli, *args: str) -> pexpect.spawn:
    """The CLI in a pseudo-terminal of 120 columns, as a person runs it: with Ctrl-C's default action, even when
    this test run was started in the background (where the shell ignores SIGINT, and children inherit that)."""
    return pexpect.spawn(REPLICAS, list(args), env=cli.env(), encoding="utf-8", dimensions=(40, 120), timeout=90,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_create_follow_shows_the_agent_working_in_a_terminal(cli, model):
    model.add_turn(ShellCall("printf 'OK = True\\n' > health.py"), Text("Added health.py with OK = True."))
    child = spawn(cli, "create", "-m", "Add a health check", "-e", "shop", "--follow")
    child.logfile_read = seen = io.StringIO()  # the whole screen, spinner frames included
    child.expect(r"Created add-a-health-check \(([0-9a-f-]{36})\) in shop: preparing")
    replica_id = child.match.group(1)
    child.expect(r"> Add a health check")                   # the user's message, from the history events
    child.expect(r"⏺ Bash\(printf 'OK = True\\n' > health\.py\)")  # the tool call, on one line
    child.expect(r"Added health\.py with OK = True\.")      # the agent's answer
    child.expect(r"✓ turn complete")                        # the turn's end (in green) ...
    child.expect(r"· shop \+1 -0")                          # ... with the diff stat
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = ANSI.sub("", child.before or "")
    assert "Traceback" not in screen
    # The spinner showed while the workspace was prepared and while the agent worked (rich redraws it in place).
    whole = ANSI.sub("", seen.getvalue())
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] preparing the workspace…", whole), whole[-2000:]
    assert re.search(r"[⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏] working…", whole), whole[-2000:]
    assert model.exhausted == []
    diff = cli.json("diff", replica_id)
    assert diff[0]["repository"] == "shop" and "+OK = True" in diff[0]["git_diff"]["full_diff"]


def test_every_replica_command(cli, model, server):
    model.add_turn(Text("Looked around."))
    created = cli.json("create", "fix-auth", "-m", "Look around", "-e", "shop", "--plan", "--thinking", "low")
    replica_id = created["id"]
    assert created["name"] == "fix-auth" and created["status"] == "preparing" and created["source"] == "api"
    settle(cli, replica_id, turns=1)

    listed = cli.json("list")
    assert listed["total"] == 1 and listed["replicas"][0]["id"] == replica_id and "total_pages" in listed
    assert re.search(rf"{replica_id}\s+active\s+fix-auth\s+acme/shop", cli.ok("list"))
    details = cli.json("get", replica_id, "--include", "environment")
    assert details["status"] == "active" and details["repository_statuses"][0]["repository"] == "shop"
    assert "ANTHROPIC_BASE_URL" in details["environment"]["env_vars_set"]
    assert "status:  active" in cli.ok("get", replica_id)

    # send --follow: the answer to this message, and the turn's end; --json: the API's answer, then events.
    model.add_turn(ShellCall("printf 'def test_ok():\\n    assert True\\n' > test_health.py"),
                   Text("Added a test."))
    followed = cli.run("send", replica_id, "-m", "Add a test", "--follow")
    assert followed.returncode == 0, followed.stderr
    assert re.search(r"^sent: message \S+ in chat \S+$", followed.stdout, re.M)
    assert "⏺ Bash(printf" in followed.stdout and "Added a test." in followed.stdout
    assert "✓ turn complete · shop +2 -0" in followed.stdout
    model.add_turn(Text("Nothing else to do."))
    lines = [json.loads(line) for line in cli.ok("send", replica_id, "-m", "Anything else?", "--follow",
                                                 "--json").splitlines()]
    assert lines[0]["status"] == "sent" and lines[0]["chat_id"]
    assert lines[-1]["type"] == "chat.turn.completed" and lines[-1]["payload"]["isComplete"] is True
    assert any(e["type"] == "chat.turn.delta" and "Nothing else to do." in json.dumps(e) for e in lines[1:])
    model.add_turn(Text("Queued or not, done."))
    sent = cli.json("send", replica_id, "-m", "One more")
    assert sent["status"] in ("sent", "queued") and sent["message_id"]
    settle(cli, replica_id, turns=4)

    history = cli.json("read", replica_id, "-l", "500")
    texts = json.dumps(history["events"])
    assert "Looked around." in texts and "Added a test." in texts and history["has_more"] is False
    page = cli.json("read", replica_id, "-l", "2", "-o", "1")
    assert page["events"] == history["events"][-3:-1] and page["has_more"] is True
    conversation = cli.ok("read", replica_id, "-l", "500")
    assert "> Add a test" in conversation and "Added a test." in conversation and "⏺ Bash(" in conversation
    assert "--offset 2 for older ones" in cli.ok("read", replica_id, "-l", "2")

    diff = cli.json("diff", replica_id)
    assert diff[0]["git_diff"]["added"] == 2 and "test_health.py" in diff[0]["git_diff"]["full_diff"]
    assert "# shop (main): +2 -0" in cli.ok("diff", replica_id, "--stat")
    assert "+    assert True" in cli.ok("diff", replica_id)

    assert cli.json("sleep", replica_id)["status"] == "sleeping"
    assert [r["id"] for r in cli.json("list", "--status", "sleeping")["replicas"]] == [replica_id]
    woken = cli.json("wake", replica_id, "--wait")
    assert woken == {"id": replica_id, "status": "active", "waking": False}

    preview = cli.json("preview", "create", "3000", "--replica", replica_id)
    assert preview["port"] == 3000 and preview["publicUrl"].startswith("http")
    assert cli.ok("preview", "create", "3000", "--replica", replica_id).strip() == preview["publicUrl"]
    assert [p["port"] for p in cli.json("preview", "list", "--replica", replica_id)] == [3000]
    assert cli.json("preview", "remove", "3000", "--replica", replica_id) == {"success": True, "port": 3000}
    assert cli.json("preview", "list", "--replica", replica_id) == []

    assert cli.json("delete", replica_id, "-f") == {"success": True, "id": replica_id}
    gone = cli.fails(1, "get", replica_id)
    assert "Not found: Workspace not found" in gone.stderr
    assert model.exhausted == []


def test_watch_shows_what_happens_until_ctrl_c(cli, model):
    model.add_turn(Text("Ready."))
    replica_id = cli.json("create", "-m", "Get ready", "-e", "shop")["id"]
    settle(cli, replica_id, turns=1)
    child = spawn(cli, "watch", replica_id)
    child.expect(r"watching get-ready \(active\); Ctrl-C to stop")
    time.sleep(1)  # connected: the events of the message below are the watch's
    model.add_turn(ShellCall("ls"), Text("Listed the files."))
    with Replicas(cli.url, api_key=cli.api_key) as client:
        client.replicas.send(replica_id, "List the files")
    child.expect(r"> List the files")
    child.expect(r"⏺ Bash\(ls\)")
    child.expect(r"Listed the files\.")
    child.expect(r"✓ turn complete")  # a watch goes on after a turn
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130 or child.signalstatus is not None


def test_automation_run_starts_a_replica(cli, model):
    model.add_turn(Text("Dependencies are up to date."))
    automation = cli.json("automation", "create", "deps", "--prompt", "Update the dependencies", "-e", "shop",
                          "--trigger-cron", "0 3 * * *")
    run = cli.json("automation", "run", automation["id"])
    assert run["execution_id"] and run["workspace_id"]
    settle(cli, run["workspace_id"], turns=1)
    assert "Dependencies are up to date." in json.dumps(cli.json("read", run["workspace_id"]))
    assert cli.json("get", run["workspace_id"])["source"] == "automation"


def test_the_agent_publishes_a_preview_with_the_cli_in_its_workspace(cli, model, server):
    """Inside the workspace the same CLI is on the agent's PATH, in agent mode (the engine secret and
    X-Workspace-Id): no login, and only this workspace's previews. A skill tells the agent about it."""
    model.add_turn(ShellCall("replicas preview create 3000"), ShellCall("replicas preview list --json"),
                   ShellCall("replicas list"), Text("Published port 3000."))
    replica_id = cli.json("create", "-m", "Publish port 3000", "-e", "shop")["id"]
    settle(cli, replica_id, turns=1)

    with Replicas(cli.url, api_key=cli.api_key) as client:
        previews = client.previews.list(workspace_id=replica_id)
        assert [p.port for p in previews] == [3000]
        results = [block for event in client.replicas.history(replica_id, limit=500).events
                   if event.type == "claude-user"
                   for block in event.payload["message"]["content"] if block.get("type") == "tool_result"]
    outputs = [json.dumps(block.get("content")) for block in results]
    assert previews[0].publicUrl in outputs[0]                                 # create printed the URL
    assert '\\"port\\": 3000' in outputs[1]                                     # list --json
    assert "Not allowed in agent mode" in outputs[2] and results[2].get("is_error")  # not a person's key

    home = server.settings.data_dir / "workspaces" / replica_id / "home"
    for folder in (".claude", ".codex", ".agents"):
        assert "replicas preview create" in (home / folder / "skills" / "replicas-cli" / "SKILL.md").read_text()
    assert "replicas-cli" in json.dumps(model.model_requests()[0].body)  # Claude Code offered the skill
    assert model.exhausted == []
