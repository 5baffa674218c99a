"""The diff's split view in a real Chromium: a replica's change read side by side, old on the left and new on the
right, with line numbers; the Unified/Split choice is a radio group (keyboard) remembered across visits."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from replicas.client import Replicas
from replicas.testing import ShellCall, Text
from tests.dashboard.pom import SLOW, ReplicaPage, SignInPage

pytestmark = pytest.mark.slow


def test_a_changed_file_reads_side_by_side_and_the_choice_is_remembered(browser_page, server, artifacts, shop, model):
    key, env = shop
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    model.add_turn(ShellCall("printf '# shop v2\\n\\nA shop.\\n' > README.md"), Text("Renamed the heading."))
    with Replicas(server.url, api_key=key) as client:
        replica = client.replicas.create(name="split", message="Rename the heading", environment_id=env["id"])
    page = ReplicaPage(browser_page, server.url, artifacts)
    page.open(replica.id)
    page.expect_text("Renamed the heading.")
    page.view("Diff")
    unified = page.diff_table("README.md")
    expect(unified).to_contain_text("shop v2", timeout=SLOW)
    expect(page.diff_mode("Unified")).to_be_checked()

    page.diff_mode("Split").check()
    split = page.diff_table("README.md", split=True)
    expect(split).to_be_visible()
    expect(unified).to_have_count(0)
    expect(split.get_by_role("columnheader", name="Old")).to_be_visible()
    expect(split.get_by_role("columnheader", name="New")).to_be_visible()
    # The removed heading faces its replacement on one row: old number and text left, new ones right.
    changed = split.get_by_role("row").filter(has_text="shop v2")
    expect(changed.get_by_role("cell")).to_have_text(["1", re.compile(r"# shop$"), "1", re.compile(r"# shop v2$")])
    # The added lines face blanks on the old side.
    added = split.get_by_role("row").filter(has_text="A shop.")
    expect(added.get_by_role("cell")).to_have_text(["", "", "3", re.compile(r"A shop\.$")])
    expect(split.locator("td.add .hljs-section")).to_contain_text("# shop v2")  # highlighted as markdown
    page.screenshot("replica-diff-split")

    # The keyboard moves between the two views (a radio group), and a new visit opens the one last chosen.
    page.diff_mode("Split").focus()
    browser_page.keyboard.press("ArrowLeft")
    expect(page.diff_mode("Unified")).to_be_checked()
    expect(unified).to_be_visible()
    browser_page.keyboard.press("ArrowRight")
    expect(split).to_be_visible()
    browser_page.reload()
    page.view("Diff")
    expect(page.diff_table("README.md", split=True)).to_contain_text("shop v2", timeout=SLOW)
    expect(page.diff_mode("Split")).to_be_checked()
