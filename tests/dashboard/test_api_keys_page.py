"""Settings -> API keys in a real Chromium: an admin mints an org key (shown once, copied with one click), sees it
listed without its secret and revokes it (it then stops working); a member sees no org keys but mints personal
ones the same way."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.dashboard.pom import ApiKeysPage, SignInPage

pytestmark = pytest.mark.slow

ORG = "Organization keys"


def test_an_admin_mints_copies_and_revokes_an_org_key(browser_page, server, artifacts):
    key = server.new_org_key()
    browser_page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    page = ApiKeysPage(browser_page, server.url, artifacts)
    page.open()
    expect(page.row(ORG, "test")).to_be_visible()
    expect(browser_page.get_by_text("sign in with your personal key")).to_be_visible()  # an org key has no user

    minted = page.create("organization", "ci")
    browser_page.get_by_role("button", name="Copy organization key").click()
    expect(browser_page.get_by_text("Copied.")).to_be_visible()
    assert browser_page.evaluate("navigator.clipboard.readText()") == minted
    expect(page.row(ORG, "ci")).to_contain_text(minted[:16])
    page.screenshot("api-keys-created")
    assert browser_page.request.get(f"{server.url}/v1/environments",
                                    headers={"Authorization": f"Bearer {minted}"}).status == 200

    browser_page.get_by_role("button", name="Done").click()
    expect(browser_page.locator("main")).not_to_contain_text(minted)
    browser_page.reload()
    expect(page.row(ORG, "ci")).to_be_visible()
    expect(browser_page.locator("main")).not_to_contain_text(minted)  # shown once, never listed

    page.revoke(ORG, "ci")
    expect(page.row(ORG, "ci")).to_have_count(0)
    expect(page.row(ORG, "test")).to_be_visible()
    assert browser_page.request.get(f"{server.url}/v1/environments",
                                    headers={"Authorization": f"Bearer {minted}"}).status == 401


def test_a_member_mints_personal_keys_and_sees_no_org_keys(browser_page, server, artifacts):
    key = server.new_user_key("member@example.com")
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    page = ApiKeysPage(browser_page, server.url, artifacts)
    page.open()
    expect(browser_page.get_by_text("Organization keys are managed by the organization's admins.")).to_be_visible()
    expect(page.section(ORG)).to_have_count(0)
    minted = page.create("personal", "laptop")
    expect(browser_page.get_by_role("button", name="Copy personal key")).to_be_visible()
    expect(page.row("Personal keys", "laptop")).to_contain_text(minted[:16])
    page.screenshot("api-keys-personal")
    assert browser_page.request.get(f"{server.url}/v1/api-keys",
                                    headers={"Authorization": f"Bearer {minted}"}).status == 403
