"""The replicas list's live status in a real Chromium, with many list tabs in one profile: they share one
status-events connection (held by the SharedWorker), every tab shows a change made through the API, a tab that
joins late is handed each replica's latest frame (so it shows the current state even when its own read of the
list is older), and a replica deleted through the API leaves every tab's list."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from replicas.events.notify import status_key
from replicas.store.models import Organization
from tests.dashboard.live_events import seed_replicas
from tests.dashboard.pom import ReplicasListPage

pytestmark = pytest.mark.slow
TABS = 10


def status_streams(server, org_name: str) -> int:
    """The organization's status-events streams the server holds open (each follows the hub)."""
    async def org_id() -> str:
        async with server.app.state.sessions() as session:
            return str(await session.scalar(select(Organization.id).where(Organization.name == org_name)))

    return server.app.state.replicas.hub.subscribers(status_key(server.call(org_id())))


def test_list_tabs_share_one_status_stream_and_a_late_tab_gets_the_latest_state(chromium, server, artifacts):
    org = f"list-tabs-{uuid.uuid4().hex[:6]}"
    key = server.new_org_key(org)
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})
    server.call(seed_replicas(server, org, 3))  # replica-0001 is sleeping, replica-0002 archived
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    try:
        assert context.request.post(f"{server.url}/auth/session", data={"api_key": key}).ok
        before = context.request.get(f"{server.url}/v1/replicas/search?page=1&limit=50").json()
        tabs = []
        for _ in range(TABS):
            tab = ReplicasListPage(context.new_page(), server.url, artifacts)
            tab.open()
            expect(tab.page.get_by_text("● live")).to_be_visible(timeout=20_000)
            tabs.append(tab)
        assert status_streams(server, org) == 1

        sleeping = next(row["id"] for row in before["replicas"] if row["name"] == "replica-0001")
        assert api.post(f"/v1/workspaces/{sleeping}/archive").status_code < 300
        for tab in tabs:
            expect(tab.row("replica-0001")).to_contain_text("archived", timeout=10_000)

        # A tab opened now whose own read of the list is stale (served the answer from before the change):
        # the worker hands it replica-0001's latest frame, so it shows the current state all the same.
        late = ReplicasListPage(context.new_page(), server.url, artifacts)
        late.page.route("**/v1/replicas/search*", lambda route: route.fulfill(json=before))
        late.open()
        expect(late.row("replica-0001")).to_contain_text("archived", timeout=10_000)
        assert status_streams(server, org) == 1

        deleted = next(row["id"] for row in before["replicas"] if row["name"] == "replica-0002")
        assert api.delete(f"/v1/replica/{deleted}").status_code < 300
        for tab in [*tabs, late]:
            expect(tab.row("replica-0002")).to_have_count(0, timeout=10_000)
        late.screenshot("replicas-list-shared-stream")
    finally:
        context.close()
        api.close()
