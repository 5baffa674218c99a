"""The dashboard in Debian's Chromium: first load of the replicas page with 1,000 replicas, the JS+CSS it
transfers, and the delay from an event to its text on screen with 10 tabs open on one replica.

    .venv/bin/python -m bench.dashboard_bench [--replicas 1000] [--loads 5] [--tabs 10] [--events 100]

A real control plane (tests/live_server.LiveServer, SQLite) with N replicas in the store of one organization.

- **Time to interactive**: each load in a fresh browser context (cold cache, signed in by cookie); the time
  from navigation start until the first page of rows is on screen, read in the page (performance.now() at
  the first animation frame that has the rows).
- **Transferred JS+CSS**: the encoded (gzipped) bytes of every script and stylesheet of a cold load of the
  replicas page, then of a replica page (which loads the markdown renderer and highlighter), then with its
  terminal (xterm.js).
- **Event to screen**: one replica with a chat; `--tabs` browser tabs (each its own context, so each holds its
  own event stream, as separate windows or people would) show it. Events are stored and published exactly
  as the event pump does with an engine's (store_events, then the hub), each carrying a marker text; each tab
  records when the marker first appears in its DOM (a MutationObserver). Latency = that time minus the time
  just before the event was stored (one machine, one clock).

Nothing here asserts a figure; README.md and bench/README.md have them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from playwright.sync_api import sync_playwright
from tests.live_server import LiveServer

from replicas.events import store_events
from replicas.settings import Settings
from replicas.store.models import Environment, Organization, Workspace, iso, utcnow

CHROMIUM = "/usr/bin/chromium"
MARKER_WATCH = """
window.__seen = {};
new MutationObserver((mutations) => {
  for (const m of mutations) for (const node of m.addedNodes) {
    const text = node.textContent || "";
    for (const match of text.matchAll(/marker-(\\d+)/g)) {
      if (!(match[1] in window.__seen)) window.__seen[match[1]] = performance.timeOrigin + performance.now();
    }
  }
}).observe(document, { childList: true, subtree: true, characterData: true });
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


async def seed(server: LiveServer, key_org: str, count: int) -> tuple[str, str]:
    """`count` replicas (statuses and sources mixed, two environments) in the key's organization; returns the
    id of an active one with a chat, for the event test, and that chat's id."""
    from sqlalchemy import select

    async with server.app.state.sessions() as session:
        org = await session.scalar(select(Organization).where(Organization.name == key_org))
        envs = [Environment(organization_id=org.id, name=f"env-{i}") for i in range(2)]
        session.add_all(envs)
        await session.flush()
        now = utcnow()
        # No runtime stands behind these rows, so none is active or preparing (the control plane would try to
        # reach or start it); the one the tabs watch is in error, which nothing wakes.
        statuses, sources = ["error", "sleeping", "archived"], ["api", "dashboard", "automation"]
        rows = [Workspace(organization_id=org.id, name=f"replica-{i:04d}", status=statuses[i % 3],
                          source=sources[i % 3],
                          environment_id=envs[i % 2].id, created_at=now - timedelta(minutes=i),
                          last_activity_at=now - timedelta(minutes=i),
                          repositories=[{"id": str(uuid.uuid4()), "name": "acme/shop", "url": "https://example.com/shop.git"}])
                for i in range(count)]
        session.add_all(rows)
        await session.commit()
        target = rows[0]
        chat_id = str(uuid.uuid4())
        target.default_chat_id = chat_id
        await session.commit()
        target_id = target.id
    await publish(server, target_id, [("chat.created", {"chat": {
        "id": chat_id, "provider": "claude", "title": "Claude Code", "createdAt": iso(now), "updatedAt": iso(now),
        "processing": False, "parentChatId": None}})])
    return str(target_id), chat_id


async def publish(server: LiveServer, workspace_id, events: list[tuple[str, dict]]) -> None:
    """Store then publish, as the event pump does with an engine's events."""
    from replicas.events import store as event_store

    hub = server.app.state.replicas.hub
    async with server.app.state.sessions() as session:
        seq = await event_store.last_seq(session, workspace_id)
        stored = await store_events(session, workspace_id, [
            {"seq": seq + i + 1, "id": str(uuid.uuid4()), "ts": iso(utcnow()), "type": kind, "payload": payload}
            for i, (kind, payload) in enumerate(events)])
    for event in stored:
        await hub.publish(workspace_id, event)


def signed_in_context(browser, server: LiveServer, key: str):
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    assert context.request.post(f"{server.url}/auth/session", data={"api_key": key}).ok
    return context


def count_transfers(page) -> list[int]:
    """A list that collects the encoded body size of every script and stylesheet `page` fetches."""
    sizes: list[int] = []

    def finished(request) -> None:
        if request.resource_type in ("script", "stylesheet"):
            sizes.append(request.sizes()["responseBodySize"])

    page.on("requestfinished", finished)
    return sizes


def measure_load(browser, server, key, loads: int) -> tuple[list[float], list[int]]:
    times, transferred = [], []
    for _ in range(loads):
        context = signed_in_context(browser, server, key)
        page = context.new_page()
        sizes = count_transfers(page)
        page.goto(f"{server.url}/#/replicas")
        ready = page.wait_for_function(
            "() => document.querySelectorAll('table[aria-label=Replicas] tbody tr').length >= 50"
            " && performance.now()", polling="raf", timeout=30_000)
        times.append(ready.json_value())
        page.wait_for_timeout(750)  # the event stream keeps the network busy: no "networkidle"
        transferred.append(sum(sizes))
        context.close()
    return times, transferred


def measure_replica_page(browser, server, key, replica_id) -> tuple[int, int]:
    context = signed_in_context(browser, server, key)
    page = context.new_page()
    sizes = count_transfers(page)
    page.goto(f"{server.url}/#/replicas/{replica_id}")
    page.get_by_role("tab", name="Claude Code").wait_for()
    page.wait_for_timeout(750)  # the event stream keeps the network busy: no "networkidle"
    replica_page = sum(sizes)
    context.close()
    from replicas.dashboard.routes import load_assets

    assets = load_assets()
    terminal = sum(len(assets[name].gzipped or assets[name].body) for name in ("vendor/xterm.mjs", "vendor/xterm.css",
                                                                              "js/components/terminal.js"))
    return replica_page, terminal


def measure_events(browser, server, key, replica_id, chat_id, tabs: int, events: int) -> list[float]:
    contexts, pages = [], []
    for _ in range(tabs):
        context = signed_in_context(browser, server, key)
        context.add_init_script(MARKER_WATCH)
        page = context.new_page()
        page.goto(f"{server.url}/#/replicas/{replica_id}")
        page.get_by_text("● live").wait_for(timeout=30_000)
        contexts.append(context)
        pages.append(page)
    sent: dict[int, float] = {}
    for n in range(events):
        delta = {"chatId": chat_id, "event": {"timestamp": iso(utcnow()), "type": "claude-assistant", "payload": {
            "type": "assistant", "message": {"content": [{"type": "text", "text": f"Line marker-{n} done."}]}}}}
        sent[n] = time.time() * 1000
        server.call(publish(server, uuid.UUID(replica_id), [("chat.turn.delta", delta)]))
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    latencies = []
    for page in pages:
        while time.monotonic() < deadline and page.evaluate("Object.keys(window.__seen).length") < events:
            time.sleep(0.1)
        seen = page.evaluate("window.__seen")
        latencies += [seen[str(n)] - sent[n] for n in range(events) if str(n) in seen]
    for context in contexts:
        context.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'replicas.db'}", secret_key=None,
                        cron_enabled=False, pool_enabled=False, lifecycle_interval_seconds=3600)
    with LiveServer(settings) as server:
        org_name = f"bench-{uuid.uuid4().hex[:6]}"
        key = server.new_org_key(org_name)
        replica_id, chat_id = server.call(seed(server, org_name, args.replicas))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            times, transferred = measure_load(browser, server, key, args.loads)
            replica_bytes, terminal_bytes = measure_replica_page(browser, server, key, replica_id)
            latencies = measure_events(browser, server, key, replica_id, chat_id, args.tabs, args.events)
            browser.close()
    print(f"replicas page, {args.replicas} replicas, {args.loads} cold loads: time to interactive "
          f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
    print(f"transferred JS+CSS (gzipped): replicas page {statistics.median(transferred) / 1024:.1f} KiB; "
          f"replica page {replica_bytes / 1024:.1f} KiB; terminal adds {terminal_bytes / 1024:.1f} KiB; "
          f"all three {(statistics.median(transferred) + replica_bytes + terminal_bytes) / 1024:.1f} KiB")
    print(f"event to screen, {args.tabs} tabs x {args.events} events ({len(latencies)} seen): "
          f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
          f"max {max(latencies):.1f} ms")


if __name__ == "__main__":
    main()
