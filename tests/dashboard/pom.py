"""Page objects for the dashboard's browser tests: each wraps one page's controls by their accessible names
(the labels a person reads), so the specs read as the flows they test."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Page, expect

SLOW = 90_000  # ms: a replica's first answer includes starting its workspace and the agent


class Dashboard:
    def __init__(self, page: Page, base_url: str, artifacts: Path):
        self.page, self.base_url, self.artifacts = page, base_url, artifacts

    def goto(self, route: str = "#/replicas") -> None:
        self.page.goto(f"{self.base_url}/{route}")

    def screenshot(self, name: str) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path

    def heading(self, name: str):
        return self.page.get_by_role("heading", name=name, level=1, exact=True)


class SignInPage(Dashboard):
    def sign_in(self, key: str) -> None:
        self.goto("")
        self.page.get_by_label("API key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.heading("Replicas")).to_be_visible()

    def expect_shown(self) -> None:
        expect(self.page.get_by_role("heading", name="Sign in to Replicas")).to_be_visible()

    def sign_out(self) -> None:
        self.page.get_by_role("button", name="Sign out").click()
        self.expect_shown()


class ReplicasListPage(Dashboard):
    def open(self) -> None:
        self.goto("#/replicas")
        expect(self.heading("Replicas")).to_be_visible()

    def create(self, name: str, message: str, environment: str = "shop") -> str:
        """Create through the dialog; returns the new replica's id (the page moves to it)."""
        self.page.get_by_role("button", name="New replica").click()
        dialog = self.page.get_by_role("dialog", name="New replica")
        dialog.get_by_label("Name").fill(name)
        dialog.get_by_label("Environment").select_option(label=environment)
        dialog.get_by_label("Agent").select_option("claude")
        dialog.get_by_label("First message").fill(message)
        dialog.get_by_role("button", name="Create").click()
        self.page.wait_for_url(re.compile(r"#/replicas/[0-9a-f-]{36}$"))
        return self.page.url.rsplit("/", 1)[1]

    def row(self, name: str):
        return self.page.get_by_role("row").filter(has=self.page.get_by_role("link", name=name, exact=True))


class ReplicaPage(Dashboard):
    def open(self, replica_id: str) -> None:
        self.goto(f"#/replicas/{replica_id}")

    @property
    def transcript(self):
        return self.page.get_by_role("log").first

    def expect_text(self, text: str, timeout: int = SLOW) -> None:
        expect(self.transcript).to_contain_text(text, timeout=timeout)

    def view(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def send(self, message: str) -> None:
        self.page.get_by_role("textbox", name="Message").fill(message)
        self.page.get_by_role("button", name="Send").click()

    @property
    def queue(self):
        return self.page.get_by_role("region", name="Queued messages")

    def terminal_type(self, text: str) -> None:
        terminal = self.page.get_by_role("application", name="Terminal")
        expect(self.page.get_by_text("Terminal: connected")).to_be_visible(timeout=SLOW)
        terminal.click()
        self.page.keyboard.type(text)

    def terminal_text(self):
        return self.page.locator(".xterm-rows")

    def diff_table(self, path: str, split: bool = False):
        name = f"Changes in {path}, side by side" if split else f"Changes in {path}"
        return self.page.get_by_role("table", name=name, exact=True)

    def diff_mode(self, label: str):
        """The Unified/Split radio of the (first) diff shown."""
        return self.page.get_by_role("radio", name=label, exact=True).first


class EnvironmentPage(Dashboard):
    def open(self, environment_id: str, name: str) -> None:
        self.goto(f"#/environments/{environment_id}")
        expect(self.heading(name)).to_be_visible()

    def section(self, name: str) -> None:
        self.page.get_by_role("tab", name=name, exact=True).click()

    def add_variable(self, key: str, value: str) -> None:
        self.page.get_by_role("textbox", name="Key", exact=True).fill(key)
        self.page.get_by_label("Value", exact=True).fill(value)
        self.page.get_by_role("button", name="Add", exact=True).click()

    def variable_row(self, key: str):
        return self.page.locator(f'tr[data-variable="{key}"]')

    def edit_variable(self, key: str, value: str) -> None:
        self.page.get_by_role("button", name=f"Edit {key}").click()
        self.page.get_by_label(f"New value for {key}").fill(value)
        self.variable_row(key).get_by_role("button", name="Save").click()

    def test_warm_hook(self, script: str) -> None:
        hook = self.page.get_by_role("region", name="Warm hook")
        hook.get_by_label("Warm hook script").fill(script)
        hook.get_by_role("button", name="Test").click()

    @property
    def warm_hook_output(self):
        return self.page.get_by_role("log", name="Warm hook test output")

    def test_mcp(self, name: str) -> None:
        self.page.get_by_role("button", name=f"Test {name}", exact=True).click()

    def mcp_output(self, name: str):
        return self.page.get_by_role("log", name=f"{name} test output")

    def mcp_result(self, name: str):
        return self.page.get_by_role("status", name=f"{name} test result")

    # The add/edit form; its Test checks the server as entered (`mcp_output`/`mcp_result` of ENTERED).
    ENTERED = "The server as entered"

    def fill_mcp(self, name: str, transport: str, fields: dict[str, str]) -> None:
        """Fill the form: `fields` by label (Command, Arguments, URL)."""
        form = self.page.get_by_role("form", name="MCP server")
        form.get_by_label("Name", exact=True).fill(name)
        form.get_by_label("Transport").select_option(transport)
        for label, value in fields.items():
            form.get_by_label(label, exact=True).fill(value)

    def test_entered_mcp(self) -> None:
        self.page.get_by_role("button", name="Test the server as entered").click()


class ApiKeysPage(Dashboard):
    def open(self) -> None:
        self.goto("#/api-keys")
        expect(self.heading("API keys")).to_be_visible()

    def section(self, title: str):
        return self.page.get_by_role("region", name=title, exact=True)

    def create(self, kind: str, name: str) -> str:
        """Create a `kind` ("organization" or "personal") key; returns the key shown once."""
        self.page.get_by_label(f"New {kind} key name").fill(name)
        self.page.get_by_role("button", name=f"Create {kind} key").click()
        shown = self.page.get_by_label(f"New {kind} key", exact=True)
        expect(shown).to_contain_text("sk_replicas_")
        return shown.inner_text().strip()

    def row(self, title: str, name: str):
        return self.section(title).get_by_role("row").filter(has=self.page.get_by_role("cell", name=name, exact=True))

    def revoke(self, title: str, name: str) -> None:
        self.row(title, name).get_by_role("button", name="Revoke").click()
        self.page.get_by_role("dialog", name="Revoke").get_by_role("button", name="Yes, revoke").click()
