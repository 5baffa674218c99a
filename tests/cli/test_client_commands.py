"""The `replicas` CLI as a client of a live server (SQLite and PostgreSQL), for every command that needs no
workspace: the login, repositories, environments with their variables, files, MCP servers, skills, warm hook and
pool, and automations. Each command's `--json` output is parsed; exit codes are 0, 1 (the API said no), 2 (usage)."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from collections.abc import Iterator

import pytest

from tests.cli.client_cli import Cli
from tests.live_server import LiveServer, live_settings
from tests.replicas.test_mcp_checks import GREETER


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def server(request, tmp_path_factory) -> Iterator[LiveServer]:
    with LiveServer(live_settings(request, tmp_path_factory)) as live:
        yield live


@pytest.fixture
def cli(server, tmp_path) -> Cli:
    """The CLI with a new organization's key in REPLICAS_API_KEY."""
    return Cli(server.url, tmp_path / "config", api_key=server.new_org_key())


def test_login_stores_the_key_for_the_user_alone_and_whoami_says_who(server, tmp_path):
    cli = Cli(server.url, tmp_path / "config")
    stored = tmp_path / "config" / "replicas" / "credentials.json"
    refused = cli.fails(1, "login", "--server", server.url, "--key", "sk_replicas_" + "x" * 32)
    assert "refused this API key" in refused.stderr and not stored.exists()

    org_key = server.new_org_key()
    out = cli.ok("login", "--server", server.url + "/", "--key", org_key, REPLICAS_API_URL=None)
    assert f"Logged in to {server.url}" in out
    assert stat.S_IMODE(os.stat(stored).st_mode) == 0o600
    assert json.loads(stored.read_text()) == {"server": server.url, "api_key": org_key}
    # The stored login is used: no REPLICAS_API_URL, no REPLICAS_API_KEY.
    assert cli.json("whoami", REPLICAS_API_URL=None) == {"server": server.url, "mode": "organization",
                                                         "profile": None}
    assert "organization API key" in cli.ok("whoami", REPLICAS_API_URL=None)

    # REPLICAS_API_KEY overrides the stored key: a personal key's user.
    personal = server.new_user_key("grace@example.com")
    mine = cli.json("whoami", REPLICAS_API_KEY=personal)
    assert mine["mode"] == "user" and mine["profile"]["email"] == "grace@example.com"
    assert "grace@example.com" in cli.ok("whoami", REPLICAS_API_KEY=personal)
    # ... and REPLICAS_API_URL the stored server.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{sock.getsockname()[1]}"
    unreachable = cli.fails(1, "whoami", REPLICAS_API_URL=nowhere)
    assert f"Cannot reach the Replicas server at {nowhere}" in unreachable.stderr

    assert cli.json("logout") == {"logged_out": True} and not stored.exists()
    assert "Not logged in" in cli.ok("logout")
    anonymous = cli.fails(1, "list")
    assert "Not logged in: run `replicas login" in anonymous.stderr
    bad = cli.fails(1, "list", REPLICAS_API_KEY="sk_replicas_" + "y" * 32)
    assert "Not authenticated" in bad.stderr and "refused the API key" in bad.stderr


def test_repositories(cli, make_git_repo):
    origin = make_git_repo("shop", branch="trunk")
    added = cli.json("repos", "add", "acme/shop", str(origin))
    assert added["name"] == "acme/shop" and added["default_branch"] == "trunk"
    assert cli.json("repos") == [added] == cli.json("repos", "list")
    assert "acme/shop" in cli.ok("repos") and added["id"] in cli.ok("repos", "list")
    missing = cli.fails(1, "repos", "add", "acme/none", str(origin.parent / "none"))
    assert "error:" in missing.stderr
    assert cli.json("repos", "remove", "acme/shop") == {"success": True, "id": added["id"]}
    assert cli.json("repos") == []
    assert "Not found: Repository not found" in cli.fails(1, "repos", "remove", "acme/shop").stderr


def test_environments_variables_and_files(cli, make_git_repo, tmp_path):
    repo = cli.json("repos", "add", "acme/shop", str(make_git_repo("shop")))
    env = cli.json("env", "create", "shop", "-r", "acme/shop", "-d", "The shop")
    assert env["repository_id"] == repo["id"] and env["description"] == "The shop"
    assert [e["name"] for e in cli.json("env", "list")] == ["Global", "shop"]
    assert "acme/shop" in cli.ok("env", "list")
    assert cli.json("env", "get", "shop")["id"] == env["id"] == cli.json("environment", "get", env["id"])["id"]
    assert cli.json("env", "get", "global")["is_global"] is True
    edited = cli.json("env", "edit", "shop", "--name", "store", "--system-prompt", "Be brief.")
    assert edited["name"] == "store" and edited["system_prompt"] == "Be brief."
    assert "nothing to change" in cli.fails(2, "env", "edit", "store").stderr
    assert "Not found: Environment not found" in cli.fails(1, "env", "get", "shop").stderr
    assert "already exists" in cli.fails(1, "env", "create", "store").stderr

    first = cli.json("env", "vars", "set", "store", "API_URL", "http://one")
    second = cli.json("env", "vars", "set", "store", "API_URL", "http://two")
    assert second["id"] == first["id"] and second["value"] == "http://two"
    assert [(v["key"], v["value"]) for v in cli.json("env", "vars", "list", "store")] == [("API_URL", "http://two")]
    assert "http://two" in cli.ok("env", "vars", "list", "store")
    assert cli.json("env", "vars", "delete", "store", "API_URL") == {"success": True, "id": first["id"]}
    assert cli.json("env", "vars", "list", "store") == []

    source = tmp_path / "settings.toml"
    source.write_text("debug = true\n")
    written = cli.json("env", "files", "set", "store", "~/.config/app/settings.toml", "--file", str(source))
    assert written["content"] == "debug = true\n" and written["name"] == "settings.toml"
    again = cli.json("env", "files", "set", "store", "~/.config/app/settings.toml", "--content", "debug = false\n")
    assert again["id"] == written["id"]
    assert [f["path"] for f in cli.json("env", "files", "list", "store")] == ["~/.config/app/settings.toml"]
    assert "--content or --file" in cli.fails(2, "env", "files", "set", "store", "~/x").stderr
    assert cli.json("env", "files", "delete", "store", "~/.config/app/settings.toml")["success"] is True

    assert "pass --force" in cli.fails(2, "env", "delete", "store").stderr
    assert cli.json("env", "delete", "store", "-f") == {"success": True, "id": env["id"]}
    assert "Cannot delete the global environment" in cli.fails(1, "env", "delete", "global", "-f").stderr


def test_mcp_servers_and_skills_as_in_the_quick_start(cli, tmp_path):
    cli.json("env", "create", "tools")
    source = tmp_path / "greeter.py"
    source.write_text(GREETER)
    cli.json("env", "files", "set", "tools", "~/greeter.py", "--file", str(source))
    cli.json("env", "vars", "set", "tools", "GREETER_TOOL", "say_hi")

    # A stdio server: the program, then its arguments after `--` (they may start with a dash).
    greeter = cli.json("env", "mcps", "set", "tools", "greeter", "--command", sys.executable, "--env", "MODE=quiet",
                       "--", "greeter.py")
    assert (greeter["transport"], greeter["config"]) == (
        "stdio", {"command": sys.executable, "args": ["greeter.py"], "env": {"MODE": "quiet"}})
    linear = cli.json("env", "mcps", "set", "tools", "linear", "--command", "npx", "--", "-y", "@linear/mcp")
    assert linear["config"]["args"] == ["-y", "@linear/mcp"]
    remote = cli.json("env", "mcps", "set", "tools", "docs", "--url", "https://mcp.example.com/mcp",
                      "--header", "Authorization: Bearer t0k", "--transport", "sse")
    assert (remote["transport"], remote["config"]) == (
        "sse", {"url": "https://mcp.example.com/mcp", "headers": {"Authorization": "Bearer t0k"}})
    # `set` again replaces the one of that name.
    again = cli.json("env", "mcps", "set", "tools", "docs", "--config", '{"url": "https://mcp.example.com/v2"}')
    assert again["id"] == remote["id"] and again["transport"] == "http"
    assert again["config"]["url"] == "https://mcp.example.com/v2"
    listed = cli.json("env", "mcps", "list", "tools")
    assert sorted(m["name"] for m in listed) == ["docs", "greeter", "linear"]
    assert "npx -y @linear/mcp" in cli.ok("env", "mcps", "list", "tools")

    # `test` starts the saved server in the environment's sandbox and lists its tools.
    tested = cli.run("env", "mcps", "test", "tools", "greeter")
    assert tested.returncode == 0, tested.stderr
    assert "answered (greeter 1.2.3)" in tested.stdout and "tools: say_hi" in tested.stdout
    assert cli.json("env", "mcps", "test", "tools", greeter["id"])["tools"] == ["say_hi"]
    cli.json("env", "mcps", "set", "tools", "broken", "--command", "bash", "--",
             "-c", "echo 'missing GREETER_KEY' >&2; exit 3")
    broken = cli.run("env", "mcps", "test", "tools", "broken")
    assert broken.returncode == 1 and "did not answer" in broken.stderr and "missing GREETER_KEY" in broken.stderr

    # The API's refusals (exit 1), and flags that do not go together (exit 2); nothing is stored by either.
    assert "replicas-" in cli.fails(1, "env", "mcps", "set", "tools", "replicas-x", "--command", "x").stderr
    assert "one of them" in cli.fails(2, "env", "mcps", "set", "tools", "y").stderr
    assert "one of them" in cli.fails(2, "env", "mcps", "set", "tools", "y", "--command", "a", "--url", "b").stderr
    assert "KEY=VALUE" in cli.fails(2, "env", "mcps", "set", "tools", "y", "--command", "a", "--env", "NOVALUE").stderr
    assert "not JSON" in cli.fails(2, "env", "mcps", "set", "tools", "y", "--config", "{").stderr
    assert "Not found" in cli.fails(1, "env", "mcps", "delete", "tools", "nope").stderr
    assert len(cli.json("env", "mcps", "list", "tools")) == 4
    assert cli.json("env", "mcps", "delete", "tools", "linear") == {"success": True, "id": linear["id"]}
    assert "linear" not in [m["name"] for m in cli.json("env", "mcps", "list", "tools")]

    # Skills: search the catalog, add one by its slug, list, refuse it twice, delete it.
    hits = cli.json("env", "skills", "search", "docker")
    assert hits[0]["slug"] == "docker" and hits[0]["installs"] > 0
    assert "docker" in cli.ok("env", "skills", "search", "docker")
    assert len(cli.json("env", "skills", "search")) >= 30  # no words: the popular ones
    added = cli.json("env", "skills", "add", "tools", "docker")
    assert (added["slug"], added["source"]) == ("docker", hits[0]["source"])
    assert [s["slug"] for s in cli.json("env", "skills", "list", "tools")] == ["docker"]
    assert "already enabled" in cli.fails(1, "env", "skills", "add", "tools", "docker").stderr
    assert "Not found: Skill not found" in cli.fails(1, "env", "skills", "add", "tools", "no-such-skill-x").stderr
    assert cli.json("env", "skills", "add", "global", "pdf")["slug"] == "pdf"
    assert cli.json("env", "skills", "delete", "tools", "docker") == {"success": True, "id": added["id"]}
    assert cli.json("env", "skills", "list", "tools") == []


def test_warm_hook_and_warm_pool(cli, tmp_path):
    cli.json("env", "create", "warm")
    assert "No warm hook" in cli.ok("env", "warm-hook", "get", "warm")
    script = tmp_path / "warm.sh"
    script.write_text("#!/bin/bash\necho warming up\n")
    saved = cli.json("env", "warm-hook", "set", "warm", "--script", str(script))
    assert saved["version"] == 1
    from_stdin = cli.json("env", "warm-hook", "set", "warm", "--script", "-", input="echo from stdin\n")
    assert from_stdin["version"] == 2
    assert cli.json("env", "warm-hook", "get", "warm")["warm_hook"]["content"] == "echo from stdin\n"
    assert "echo from stdin" in cli.ok("env", "warm-hook", "get", "warm")

    # `test` streams the sandbox's output as it comes, and exits with the script's success.
    tested = cli.run("env", "warm-hook", "test", "warm", "--use-current")
    assert tested.returncode == 0 and "from stdin" in tested.stdout and "exit code 0" in tested.stderr
    failing = cli.run("env", "warm-hook", "test", "warm", "--inline", "echo broken; exit 4")
    assert failing.returncode == 1 and "broken" in failing.stdout and "exit code 4" in failing.stderr
    events = [json.loads(line) for line in cli.run("env", "warm-hook", "test", "warm", "--inline", "echo hi",
                                                     "--json").stdout.splitlines()]
    assert events[-1]["type"] == "complete" and events[-1]["exit_code"] == 0
    assert any(e["type"] == "output" and "hi" in e["output"] for e in events)
    assert "one of them" in cli.fails(2, "env", "warm-hook", "test", "warm").stderr
    assert cli.json("env", "warm-hook", "get", "warm")["warm_hook"]["version"] == 2  # tests save nothing

    assert cli.json("env", "warm-pool", "get", "warm") is None
    assert cli.json("env", "warm-pool", "set", "warm", "--size", "3")["target_size"] == 3
    assert cli.json("env", "warm-pool", "disable", "warm")["enabled"] is False
    enabled = cli.json("env", "warm-pool", "enable", "warm")
    assert enabled["enabled"] is True and "enabled, target size" in cli.ok("env", "warm-pool", "get", "warm")
    assert cli.fails(2, "env", "warm-pool", "set", "warm", "--size", "21")


def test_automations(cli, make_git_repo):
    cli.json("repos", "add", "acme/shop", str(make_git_repo("shop")))
    cli.json("env", "create", "shop", "-r", "acme/shop")
    nightly = cli.json("automation", "create", "nightly", "--prompt", "Update the dependencies", "-e", "shop",
                       "--trigger-cron", "0 3 * * *", "--trigger-cron-timezone", "Europe/Paris",
                       "--lifecycle", "delete_after_inactivity", "--auto-stop-minutes", "30")
    assert nightly["triggers"] == [{"type": "cron", "config": {"schedule": "0 3 * * *",
                                                                "timezone": "Europe/Paris"}}]
    assert nightly["workspace_auto_stop_minutes"] == 30 and nightly["cron_next_fire_at"]
    review = cli.json("automation", "create", "review", "--prompt", "Review it", "--trigger-github",
                      "pull_request.opened", "--trigger-github-repos", "acme/shop", "--disabled")
    assert review["enabled"] is False and review["triggers"][0]["config"]["event"] == "pull_request.opened"
    assert len(review["triggers"][0]["config"]["repository_ids"]) == 1
    hook = cli.run("automation", "create", "hook", "--prompt", "p", "--trigger-webhook")
    assert hook.returncode == 0 and "/v1/automations/webhook/" in hook.stdout

    listed = cli.json("automation", "list")
    assert listed["total"] == 3 and {a["name"] for a in listed["automations"]} == {"nightly", "review", "hook"}
    assert "cron 0 3 * * *" in cli.ok("automation", "list")
    assert cli.json("automation", "get", nightly["id"])["name"] == "nightly"
    assert "next run" in cli.ok("automation", "get", nightly["id"])
    assert "give a trigger" in cli.fails(2, "automation", "create", "none", "--prompt", "p").stderr
    assert cli.fails(1, "automation", "create", "mine", "--prompt", "p", "--trigger-webhook", "--personal")
    assert cli.json("automation", "delete", review["id"], "-f") == {"success": True, "id": review["id"]}
    assert "Not found" in cli.fails(1, "automation", "get", review["id"]).stderr


def test_errors_and_usage(cli):
    missing = cli.fails(1, "get", "00000000-0000-4000-8000-000000000000")
    assert missing.stderr.startswith("error: Not found: Workspace not found")
    as_json = cli.fails(1, "get", "00000000-0000-4000-8000-000000000000", "--json")
    assert json.loads(as_json.stderr) == {"error": "Workspace not found", "details": None, "status": 404}
    assert cli.fails(2, "create", "-m", "hi", "-a", "nobody")
    assert cli.fails(2, "create")  # -m is required
    assert cli.fails(2, "list", "--limit", "500")
    assert "--replica ID is required" in cli.fails(2, "preview", "list").stderr
    assert "pass --force" in cli.fails(2, "delete", "00000000-0000-4000-8000-000000000000").stderr
    assert cli.fails(2, "no-such-command")
