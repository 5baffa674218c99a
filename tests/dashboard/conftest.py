"""Browser tests of the dashboard: Debian's Chromium driven by Playwright (never a downloaded browser), against
a real `replicas` control plane on a loopback port whose workspaces run the real Claude Code behind the
scripted model. Without /usr/bin/chromium or the playwright package the browser tests skip, saying why
(`.ci/run` installs Chromium; `pip install -e '.[test]'` installs Playwright).

Screenshots of the main pages go to `$REPLICAS_TEST_ARTIFACTS/dashboard/` (else a pytest temporary folder).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from replicas.testing import ScriptedModelServer
from tests.agents.test_real_clis import agent_tools  # noqa: F401 - fixture
from tests.conftest import git
from tests.live_server import LiveServer, destroy_workspaces, replica_settings, shop_environment

CHROMIUM = os.environ.get("REPLICAS_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium(agent_tools):  # noqa: F811
    """The browser, for one module. Playwright's sync API keeps an event loop running in this thread until it
    stops, so whatever needs `asyncio.run` (installing the agent CLIs) happens first, no async fixture or
    test may run meanwhile (the scripted model is started synchronously: `model` below), and it stops with
    the module, before any other module's async tests."""
    if not Path(CHROMIUM).exists() and not shutil.which(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extras)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory) -> Path:
    root = os.environ.get("REPLICAS_TEST_ARTIFACTS")
    folder = Path(root) / "dashboard" if root else tmp_path_factory.mktemp("dashboard-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module", params=["sqlite"])
def server(request, tmp_path_factory, agent_tools) -> Iterator[LiveServer]:  # noqa: F811
    with LiveServer(replica_settings(request, tmp_path_factory, agent_tools)) as live:
        yield live


@pytest.fixture
def browser_page(chromium):
    context = chromium.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    """The scripted model (its server runs in a thread of its own), started without an event loop here."""
    with ScriptedModelServer() as server:
        yield server


@pytest.fixture
def shop(server, tmp_path, model) -> Iterator[tuple[str, dict]]:  # noqa: F811
    """A new organization's key and its `shop` environment (bound to a git repository, pointed at the
    scripted model); its workspaces are stopped at teardown."""
    origin = tmp_path / "shop"
    origin.mkdir()
    git(origin, "init", "-q", "-b", "main")
    (origin / "README.md").write_text("# shop\n")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "initial")
    key = server.new_org_key()
    yield key, shop_environment(server, key, origin, model)
    destroy_workspaces(server)
