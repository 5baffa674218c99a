"""An environment's MCP servers in a real Chromium: Test starts a real stdio MCP server (the `mcp` SDK's, shipped
as an environment file) in the environment's sandbox, streams its stderr, and shows the tools it answered with;
a server that does not answer shows why. The add/edit form's Test checks the server as entered, before it is
saved."""

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


def test_the_form_tests_a_server_before_it_is_saved(browser_page, server, artifacts):
    key = server.new_org_key()
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
    env = api.post("/v1/environments", json={"name": "drafts"}).json()["environment"]
    base = f"/v1/environments/{env['id']}"
    api.post(f"{base}/files", json={"name": "greeter", "path": "~/greeter.py", "content": GREETER}).raise_for_status()
    api.post(f"{base}/variables", json={"key": "GREETER_TOOL", "value": "say_hi"}).raise_for_status()
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    page = EnvironmentPage(browser_page, server.url, artifacts)
    page.open(env["id"], "drafts")
    page.section("MCP servers")

    page.fill_mcp("greeter", "stdio", {"Command": sys.executable, "Arguments": "greeter.py"})
    page.test_entered_mcp()
    expect(page.mcp_output(page.ENTERED)).to_contain_text("greeter: starting with say_hi", timeout=SLOW)
    expect(page.mcp_result(page.ENTERED)).to_have_text("Answered: greeter 1.2.3 · tools: say_hi", timeout=SLOW)
    assert api.get(f"{base}/mcps").json()["environment_mcps"] == []  # tested, not saved
    page.screenshot("environment-mcp-draft-test")
    browser_page.get_by_role("button", name="Add", exact=True).click()
    expect(browser_page.get_by_role("button", name="Test greeter", exact=True)).to_be_visible()

    # Edited: the form's Test checks the changed definition, and the saved server is still the old one.
    browser_page.get_by_role("button", name="Edit greeter").click()
    expect(browser_page.get_by_role("heading", name="Edit greeter")).to_be_visible()
    page.fill_mcp("greeter", "stdio", {"Arguments": "missing.py"})
    page.test_entered_mcp()
    expect(page.mcp_result(page.ENTERED)).to_contain_text("Failed:", timeout=SLOW)
    expect(page.mcp_output(page.ENTERED)).to_contain_text("missing.py")
    assert api.get(f"{base}/mcps").json()["environment_mcps"][0]["config"]["args"] == ["greeter.py"]
    browser_page.get_by_role("button", name="Save", exact=True).click()
    expect(browser_page.get_by_role("heading", name="Add an MCP server")).to_be_visible()
    assert api.get(f"{base}/mcps").json()["environment_mcps"][0]["config"]["args"] == ["missing.py"]

    # A definition the server refuses says why.
    page.fill_mcp("remote", "http", {"URL": "ftp://example.com/mcp"})
    page.test_entered_mcp()
    expect(page.mcp_result(page.ENTERED)).to_contain_text("config.url")
    api.close()
