"""The usage page in a real Chromium: the chart is minutes per UTC day from the stored awake stretches (one across
midnight counts on both days), with the same figures in a table, and the minutes per replica below."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta

import pytest
from playwright.sync_api import expect

from replicas.services import auth
from replicas.store.models import UsageSession
from tests.dashboard.pom import Dashboard, SignInPage

pytestmark = pytest.mark.slow


def test_the_chart_shows_minutes_per_day(browser_page, server, artifacts):
    org_name = f"org-{uuid.uuid4().hex[:8]}"
    key = server.new_org_key(org_name)
    today = datetime.now(UTC).date()
    midnight = datetime.combine(today - timedelta(days=3), time(), tzinfo=UTC)

    async def meter() -> None:
        async with server.app.state.sessions() as session:
            org = await auth.get_or_create_organization(session, org_name)
            # 23:30 to 00:45:30: 30 minutes on the first day, 46 on the next.
            session.add(UsageSession(organization_id=org.id, workspace_id=uuid.uuid4(), workspace_name="nightly",
                                     size="large", source="automation", started_at=midnight - timedelta(minutes=30),
                                     ended_at=midnight + timedelta(minutes=45, seconds=30)))
            await session.commit()

    server.call(meter())
    SignInPage(browser_page, server.url, artifacts).sign_in(key)
    page = Dashboard(browser_page, server.url, artifacts)
    page.goto("#/usage")
    expect(page.heading("Usage")).to_be_visible()
    expect(browser_page.get_by_text("76 active minutes in the last 30 days")).to_be_visible()
    chart = browser_page.get_by_role("img", name="Active minutes per day")
    expect(chart).to_be_visible()
    first, second = (today - timedelta(days=4)).isoformat(), (today - timedelta(days=3)).isoformat()
    expect(chart.locator("rect title").filter(has_text=f"{first}: 30 min")).to_have_count(1)
    expect(chart.locator("rect title").filter(has_text=f"{second}: 46 min")).to_have_count(1)

    browser_page.get_by_text("Minutes per day").click()
    rows = browser_page.get_by_role("table", name="Active minutes per day").get_by_role("row")
    expect(rows).to_have_count(3)
    expect(rows.nth(1).get_by_role("cell")).to_have_text([first, "30", "automation: 30"])
    expect(rows.nth(2).get_by_role("cell")).to_have_text([second, "46", "automation: 46"])
    expect(browser_page.get_by_role("table", name="Usage by replica")).to_contain_text("nightly")
    page.screenshot("usage")
