"""A replica's live transcript in a real Chromium when one person opens it in many tabs: the tabs of one profile
share one connection to its event stream (a browser gives a host six, and ten streams would starve every other
request), each tab shows every event once and in order, a network drop resumes after the last event, and a tab
that closes takes nothing from the others."""

from __future__ import annotations

import uuid

import pytest
from playwright.sync_api import expect

from tests.client.tcp_proxy import TcpProxy
from tests.dashboard.live_events import assistant_text, publish, seed_replicas

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
