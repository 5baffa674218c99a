"""The dashboard in Debian's Chromium: first load of the replicas page with 1,000 replicas, the JS+CSS it
transfers, and the delay from an event to its text on screen with 10 tabs open on one replica.

    .venv/bin/python -m bench.dashboard_bench [--replicas 1000] [--loads 5] [--tabs 10] [--events 100]
                                              [--separate-profiles] [--only load|events]

A real control plane (tests/live_server.LiveServer, SQLite) with N replicas in the store of one organization.

- **Time to interactive**: each load in a fresh browser context (cold cache, signed in by cookie); the time
  from navigation start until the first page of rows is on screen, read in the page (performance.now() at
  the first animation frame that has the rows).
- **Transferred JS+CSS**: the encoded (gzipped) bytes of every script and stylesheet of a cold load of the
  replicas page, then of a replica page (which loads the markdown renderer and highlighter), then with its
  terminal (xterm.js).
- **Event to screen**: one replica with a chat; `--tabs` browser tabs of one profile (one browser context, as
  one person's tabs in one window: they share the profile's connections, and only the tab in front is on
  screen: the others get every event but draw when shown) show it; the figure is the front tab's, with all
  tabs' (background ones drawing at the pace Chromium gives them) beside it. With `--separate-profiles` each
  tab is a context of its own, a window in front of its own (as as many people would): the figure is all
  tabs'. Events are stored and published exactly as the event pump does with an engine's (store_events, then
  the hub), each carrying a marker text; each tab records when the marker first appears in its DOM (a
  MutationObserver). Latency = that time minus the time just before the event was stored (one machine, one
  clock), so it includes the store's commit.

Nothing here asserts a figure; README.md and bench/README.md have them.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from playwright.sync_api import sync_playwright
from tests.dashboard.live_events import assistant_text, publish, seed_replicas
from tests.live_server import LiveServer

from replicas.settings import Settings

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


def summary(latencies: list[float], expected: int) -> str:
    return (f"p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms, "
            f"max {max(latencies):.1f} ms ({len(latencies)} of {expected} seen)")


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


def measure_events(browser, server, key, replica_id, chat_id, tabs: int, events: int,
                   separate_profiles: bool) -> list[list[float]]:
    """Each tab's latencies; the last tab is the one in front."""
    contexts, pages = [], []
    for _ in range(tabs):
        if separate_profiles or not contexts:
            context = signed_in_context(browser, server, key)
            context.add_init_script(MARKER_WATCH)
            contexts.append(context)
        page = context.new_page()
        page.goto(f"{server.url}/#/replicas/{replica_id}")
        page.get_by_text("● live").wait_for(timeout=30_000)
        pages.append(page)
    pages[-1].bring_to_front()
    sent: dict[int, float] = {}
    for n in range(events):
        sent[n] = time.time() * 1000
        server.call(publish(server, replica_id, [assistant_text(chat_id, f"Line marker-{n} done.")]))
        time.sleep(0.05)
    deadline = time.monotonic() + 30
    latencies = []
    for page in pages:
        while time.monotonic() < deadline and page.evaluate("Object.keys(window.__seen).length") < events:
            time.sleep(0.1)
        seen = page.evaluate("window.__seen")
        latencies.append([seen[str(n)] - sent[n] for n in range(events) if str(n) in seen])
    for context in contexts:
        context.close()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=1000)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--tabs", type=int, default=10)
    parser.add_argument("--events", type=int, default=100)
    parser.add_argument("--separate-profiles", action="store_true", help="each tab in a browser context of its own")
    parser.add_argument("--only", choices=["load", "events"], help="measure only the first load or only the events")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="dashboard-bench-"))
    settings = Settings(data_dir=root / "data", database_url=f"sqlite:///{root / 'replicas.db'}", secret_key=None,
                        cron_enabled=False, pool_enabled=False, lifecycle_interval_seconds=3600)
    with LiveServer(settings) as server:
        org_name = f"bench-{uuid.uuid4().hex[:6]}"
        key = server.new_org_key(org_name)
        replica_id, chat_id = server.call(seed_replicas(server, org_name, args.replicas))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            if args.only != "events":
                times, transferred = measure_load(browser, server, key, args.loads)
                replica_bytes, terminal_bytes = measure_replica_page(browser, server, key, replica_id)
            if args.only != "load":
                latencies = measure_events(browser, server, key, replica_id, chat_id, args.tabs, args.events,
                                           args.separate_profiles)
            browser.close()
    if args.only != "events":
        print(f"replicas page, {args.replicas} replicas, {args.loads} cold loads: time to interactive "
              f"median {statistics.median(times):.0f} ms, max {max(times):.0f} ms")
        print(f"transferred JS+CSS (gzipped): replicas page {statistics.median(transferred) / 1024:.1f} KiB; "
              f"replica page {replica_bytes / 1024:.1f} KiB; terminal adds {terminal_bytes / 1024:.1f} KiB; "
              f"all three {(statistics.median(transferred) + replica_bytes + terminal_bytes) / 1024:.1f} KiB")
    if args.only != "load":
        every = [value for tab in latencies for value in tab]
        if args.separate_profiles:
            print(f"event to screen, {args.tabs} tabs (a profile and a window each) x {args.events} events: "
                  f"{summary(every, args.tabs * args.events)}")
        else:
            print(f"event to screen, {args.tabs} tabs of one profile x {args.events} events: the tab in front "
                  f"{summary(latencies[-1], args.events)}; all tabs {summary(every, args.tabs * args.events)}")


if __name__ == "__main__":
    main()
