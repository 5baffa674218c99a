"""Live updates in a real Chromium. A replica's transcript when one person opens it in many tabs: the tabs of one
profile share one connection to its event stream (a browser gives a host six, and ten streams would starve every
other request), each tab shows every event once and in order, a network drop resumes after the last event, and a
tab that closes takes nothing from the others. The replicas list: a status change shows as it commits."""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.client.tcp_proxy import TcpProxy
from tests.dashboard.live_events import assistant_text, publish, seed_replicas
from tests.dashboard.pom import ReplicasListPage

pytestmark = pytest.mark.slow
TABS = 10


def streams(server, replica_id: str) -> int:
    """The event streams of the replica the server holds open (each follows the hub)."""
    return server.app.state.replicas.hub.subscribers(replica_id)


def expect_lines(page, count: int) -> None:
    """The transcript holds `Line 0` .. `Line count-1`, each once, in order."""
    expect(page.locator(".msg.assistant")).to_have_text([f"Line {n}" for n in range(count)], timeout=20_000)


def test_ten_tabs_share_one_stream_and_resume_after_a_drop(chromium, server):
    org = f"tabs-{uuid.uuid4().hex[:6]}"
    key = server.new_org_key(org)
    replica_id, chat_id = server.call(seed_replicas(server, org, 1))
    with TcpProxy(server.port) as proxy:
        context = chromium.new_context(viewport={"width": 1200, "height": 800})
        try:
            watch_ten_tabs(server, proxy, context, key, replica_id, chat_id)
        finally:
            context.close()


def watch_ten_tabs(server, proxy, context, key, replica_id, chat_id):
    assert context.request.post(f"{proxy.url}/auth/session", data={"api_key": key}).ok
    pages = []
    for _ in range(TABS):
        page = context.new_page()
        page.goto(f"{proxy.url}/#/replicas/{replica_id}")
        expect(page.get_by_text("● live")).to_be_visible(timeout=20_000)
        pages.append(page)
    assert streams(server, replica_id) == 1

    server.call(publish(server, replica_id, [assistant_text(chat_id, f"Line {n}") for n in range(10)]))
    for page in pages:
        expect_lines(page, 10)
    # Other requests still get through while every tab is live (ten streams would have held all six).
    assert context.request.get(f"{proxy.url}/v1/replicas/search").ok

    proxy.cut()
    server.call(publish(server, replica_id, [assistant_text(chat_id, f"Line {n}") for n in range(10, 20)]))
    for page in pages:
        expect_lines(page, 20)
    # The stream came back once, resuming after the last event it had (seq 11: chat.created, then ten lines).
    assert streams(server, replica_id) == 1
    resumed = [request for request in proxy.requests if f"/v1/replica/{replica_id}/events".encode() in request]
    assert any(b"last-event-id: 11\r\n" in request.lower() for request in resumed), resumed

    for page in pages[1:]:
        page.close()
    server.call(publish(server, replica_id, [assistant_text(chat_id, "Line 20")]))
    expect_lines(pages[0], 21)
    # A tab opened now gets the whole transcript, from the first event.
    late = context.new_page()
    late.goto(f"{proxy.url}/#/replicas/{replica_id}")
    expect_lines(late, 21)
    assert streams(server, replica_id) == 1


def test_the_replicas_list_shows_a_status_change_as_it_commits(chromium, server, artifacts):
    org = f"list-{uuid.uuid4().hex[:6]}"
    key = server.new_org_key(org)
    server.call(seed_replicas(server, org, 3))  # replica-0001 is sleeping
    context = chromium.new_context(viewport={"width": 1200, "height": 800})
    try:
        assert context.request.post(f"{server.url}/auth/session", data={"api_key": key}).ok
        replicas = ReplicasListPage(context.new_page(), server.url, artifacts)
        replicas.open()
        row = replicas.row("replica-0001")
        expect(row).to_contain_text("sleeping")
        expect(replicas.page.get_by_text("● live")).to_be_visible()
        replica_id = row.get_by_role("link").get_attribute("href").rsplit("/", 1)[1]
        started = time.monotonic()
        archived = httpx.post(f"{server.url}/v1/workspaces/{replica_id}/archive",
                              headers={"Authorization": f"Bearer {key}"})
        assert archived.status_code < 300, archived.text
        expect(row).to_contain_text("archived", timeout=5_000)  # the stream's safety re-read is 15 s away
        assert time.monotonic() - started < 5
    finally:
        context.close()
