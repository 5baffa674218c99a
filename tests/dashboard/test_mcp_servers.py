"""An environment's MCP servers in a real Chromium: Test starts a real stdio MCP server (the `mcp` SDK's, shipped
as an environment file) in the environment's sandbox, streams its stderr, and shows the tools it answered with;
a server that does not answer shows why."""

from __future__ import annotations

import sys

import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.pom import SLOW, EnvironmentPage, SignInPage
from tests.replicas.test_mcp_checks import GREETER

pytestmark = pytest.mark.slow


def test_the_test_button_shows_what_a_server_answers(browser_page, server, artifacts):
    key = server.new_org_key()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as api:
        env = api.post("/v1/environments", json={"name": "tools"}).json()["environment"]
        base = f"/v1/environments/{env['id']}"
        greeter = {"name": "greeter", "path": "~/greeter.py", "content": GREETER}
        api.post(f"{base}/files", json=greeter).raise_for_status()
        api.post(f"{base}/variables", json={"key": "GREETER_TOOL", "value": "say_hi"}).raise_for_status()
        for name, config in (("greeter", {"command": sys.executable, "args": ["greeter.py"]}),
                             ("broken", {"command": "bash", "args": ["-c", "echo 'no GREETER_KEY set' >&2; exit 3"]})):
            api.post(f"{base}/mcps", json={"name": name, "transport": "stdio", "config": config}).raise_for_status()
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    page = EnvironmentPage(browser_page, server.url, artifacts)
    page.open(env["id"], "tools")
    page.section("MCP servers")

    page.test_mcp("greeter")
    expect(page.mcp_output("greeter")).to_contain_text("Provisioning an isolated sandbox", timeout=SLOW)
    expect(page.mcp_output("greeter")).to_contain_text("greeter: starting with say_hi", timeout=SLOW)
    expect(page.mcp_result("greeter")).to_have_text("Answered: greeter 1.2.3 · tools: say_hi", timeout=SLOW)
    expect(browser_page.get_by_role("button", name="Test greeter")).to_be_enabled()

    browser_page.get_by_role("button", name="Test broken").focus()
    browser_page.keyboard.press("Enter")
    expect(page.mcp_result("broken")).to_contain_text("Failed:", timeout=SLOW)
    expect(page.mcp_output("broken")).to_contain_text("no GREETER_KEY set")
    page.screenshot("environment-mcp-test")
