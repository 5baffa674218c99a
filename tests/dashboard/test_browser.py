"""The dashboard in a real Chromium against a real control plane, with the real Claude Code behind the scripted
model: each test is one flow a person goes through (the README's quick start in the browser alone, sign in,
create and watch, diff, follow-up queued, terminal, variables, warm-hook test, sleep/archive/wake, sign out,
another organization)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from replicas.client import Replicas
from replicas.testing import ShellCall, Text
from tests.dashboard.pom import SLOW, Dashboard, EnvironmentPage, ReplicaPage, ReplicasListPage, SignInPage
from tests.live_server import destroy_workspaces

pytestmark = pytest.mark.slow


def signed_in(page, server, artifacts, key) -> SignInPage:
    sign_in = SignInPage(page, server.url, artifacts)
    sign_in.sign_in(key)
    return sign_in


def test_the_quick_start_in_the_browser_alone(browser_page, server, artifacts, make_git_repo, model):
    """The README's quick start, with nothing but the dashboard after sign-in: connect the repository, create the
    environment bound to it, give it variables (the agent's gateway), a file and an MCP server, find and enable
    a skill, then create a replica and read the agent's answer."""
    origin = make_git_repo("demo")
    page = browser_page
    signed_in(page, server, artifacts, server.new_org_key())
    board = Dashboard(page, server.url, artifacts)
    try:
        board.goto("#/repositories")
        page.get_by_label("Name").first.fill("acme/demo")  # then "Set name", of the repository sets
        page.get_by_label("Clone URL").fill(str(origin))
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_role("table", name="Repositories")).to_contain_text("acme/demo")
        board.screenshot("quick-start-repositories")

        board.goto("#/environments")
        page.get_by_role("button", name="New environment").click()
        dialog = page.get_by_role("dialog", name="New environment")
        dialog.get_by_label("Name").fill("staging")
        dialog.get_by_label("Repository").select_option(label="acme/demo")
        dialog.get_by_role("button", name="Create").click()
        environment = EnvironmentPage(page, server.url, artifacts)
        expect(environment.heading("staging")).to_be_visible(timeout=SLOW)

        environment.section("Variables")
        for key, value in {**model.anthropic_env(), "REPLICAS_AGENT_MAX_RETRIES": "1",
                           "DATABASE_URL": "postgres://staging"}.items():
            environment.add_variable(key, value)
            expect(environment.variable_row(key)).to_be_visible()
        expect(environment.variable_row("DATABASE_URL")).not_to_contain_text("postgres://staging")  # masked

        environment.section("Files")
        page.get_by_label("Name", exact=True).fill("AGENTS")
        page.get_by_label("Path").fill("~/AGENTS.md")
        page.get_by_label("Content").fill("# Conventions")
        page.get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_text("~/AGENTS.md")).to_be_visible()

        environment.section("MCP servers")
        environment.fill_mcp("linear", "stdio", {"Command": "npx", "Arguments": "-y @linear/mcp"})
        page.get_by_role("form", name="MCP server").get_by_role("button", name="Add", exact=True).click()
        expect(page.get_by_role("button", name="Test linear", exact=True)).to_be_visible()

        environment.section("Skills")
        page.get_by_role("searchbox", name="Search the skills catalog").fill("docker")
        page.get_by_role("button", name="Search", exact=True).click()
        page.get_by_role("listitem").filter(has_text="docker").first.get_by_role("button", name="Enable").click()
        expect(page.get_by_role("button", name="Remove")).to_be_visible()
        environment.screenshot("quick-start-environment")

        model.add_turn(Text("Hello from **staging**."))
        replicas = ReplicasListPage(page, server.url, artifacts)
        replicas.open()
        replicas.create("first", "Say hello", environment="staging")
        replica = ReplicaPage(page, server.url, artifacts)
        replica.expect_text("Hello from staging.")
        expect(page.get_by_text("Turn complete")).to_be_visible(timeout=SLOW)
        replica.screenshot("quick-start-replica")
    finally:
        destroy_workspaces(server)


def test_create_a_replica_watch_the_answer_stream_and_read_its_diff(browser_page, server, artifacts, shop, model):
    key, _ = shop
    signed_in(browser_page, server, artifacts, key)
    model.add_turn(ShellCall("printf 'hello\\n' > hello.txt"),
                   Text("I wrote **hello.txt** for you."))
    replicas = ReplicasListPage(browser_page, server.url, artifacts)
    replicas.open()
    replica_id = replicas.create("first", "Please write hello.txt")
    page = ReplicaPage(browser_page, server.url, artifacts)
    page.expect_text("Please write hello.txt")
    page.expect_text("I wrote hello.txt for you.")
    expect(browser_page.locator("details.tool summary").first).to_contain_text("Bash: printf")
    expect(browser_page.get_by_text("Turn complete")).to_be_visible(timeout=SLOW)
    page.screenshot("replica-chat")

    page.view("Diff")
    expect(browser_page.get_by_role("button", name="hello.txt")).to_be_visible(timeout=SLOW)
    expect(browser_page.get_by_role("table", name="Changes in hello.txt")).to_contain_text("hello")
    page.screenshot("replica-diff")

    replicas.open()
    expect(replicas.row("first")).to_contain_text("active")
    page.screenshot("replicas-list")
    assert replica_id


def test_a_follow_up_sent_while_the_agent_works_is_queued(browser_page, server, artifacts, shop, model):
    key, env = shop
    signed_in(browser_page, server, artifacts, key)
    model.add_turn(ShellCall("sleep 6"), Text("Done sleeping."))
    model.add_turn(Text("Second answer."))
    with Replicas(server.url, api_key=key) as client:
        replica = client.replicas.create(name="busy", message="Sleep a while", environment_id=env["id"])
    page = ReplicaPage(browser_page, server.url, artifacts)
    page.open(replica.id)
    expect(browser_page.locator("details.tool summary").first).to_contain_text("sleep 6", timeout=SLOW)
    page.send("And then this")
    expect(browser_page.get_by_text("Queued at position")).to_be_visible()
    expect(page.queue).to_contain_text("And then this")
    page.screenshot("replica-queue")
    page.expect_text("Done sleeping.")
    page.expect_text("Second answer.")
    expect(page.queue).to_have_count(0)


def test_the_terminal_runs_a_command(browser_page, server, artifacts, shop, model):
    key, env = shop
    signed_in(browser_page, server, artifacts, key)
    model.add_turn(Text("Ready."))
    with Replicas(server.url, api_key=key) as client:
        replica = client.replicas.create(name="shell", message="Hello", environment_id=env["id"])
    page = ReplicaPage(browser_page, server.url, artifacts)
    page.open(replica.id)
    page.expect_text("Ready.")
    page.view("Terminal")
    page.terminal_type("echo hi-from-$((40+2))\n")
    expect(page.terminal_text()).to_contain_text("hi-from-42", timeout=SLOW)
    page.screenshot("replica-terminal")


def test_sleep_and_archive_stay_until_wake_is_asked_for(browser_page, server, artifacts, shop, model):
    """Sleep and Archive, each with its confirmation, leave the replica asleep: neither the page's reload after
    the action nor opening the page again wakes it (the page reads with `wake=false`); Wake does."""
    key, env = shop
    signed_in(browser_page, server, artifacts, key)
    model.add_turn(Text("Ready to nap."))
    with Replicas(server.url, api_key=key) as client:
        replica = client.replicas.create(name="napper", message="Hello", environment_id=env["id"])
        page = ReplicaPage(browser_page, server.url, artifacts)
        page.open(replica.id)
        page.expect_text("Ready to nap.")
        badge = browser_page.locator(".page-head .badge")
        expect(badge).to_have_text("active", timeout=SLOW)

        for action, status in (("Sleep", "sleeping"), ("Archive", "archived")):
            browser_page.get_by_role("button", name=action, exact=True).click()
            browser_page.get_by_role("button", name=f"Yes, {action.lower()}").click()
            expect(badge).to_have_text(status, timeout=SLOW)
            browser_page.reload()
            expect(badge).to_have_text(status, timeout=SLOW)
            browser_page.wait_for_timeout(1000)  # a wake would have begun by now
            assert client.replicas.list().items[0].status == status
            expect(badge).to_have_text(status)
        page.screenshot("replica-archived")

        browser_page.get_by_role("button", name="Wake", exact=True).click()
        browser_page.get_by_role("button", name="Yes, wake").click()
        expect(badge).to_have_text("active", timeout=SLOW)
        assert client.replicas.list().items[0].status == "active"


def test_an_edited_variable_stays_masked(browser_page, server, artifacts, shop):
    key, env = shop
    signed_in(browser_page, server, artifacts, key)
    page = EnvironmentPage(browser_page, server.url, artifacts)
    page.open(env["id"], "shop")
    page.section("Variables")
    page.add_variable("DEPLOY_TOKEN", "first-secret")
    row = page.variable_row("DEPLOY_TOKEN")
    expect(row).to_contain_text("••••")
    page.edit_variable("DEPLOY_TOKEN", "second-secret")
    expect(row.get_by_label("Hidden value")).to_be_visible()
    expect(browser_page.locator("main")).not_to_contain_text("second-secret")
    page.screenshot("environment-variables")
    row.get_by_role("button", name="Reveal DEPLOY_TOKEN").click()
    expect(row).to_contain_text("second-secret")


def test_a_warm_hook_test_streams_its_output(browser_page, server, artifacts, shop):
    key, env = shop
    signed_in(browser_page, server, artifacts, key)
    page = EnvironmentPage(browser_page, server.url, artifacts)
    page.open(env["id"], "shop")
    page.section("Hooks")
    page.test_warm_hook("echo warming-up\nsleep 1\necho warm-done\n")
    expect(page.warm_hook_output).to_contain_text("warming-up", timeout=SLOW)
    expect(page.warm_hook_output).to_contain_text("warm-done", timeout=SLOW)
    expect(browser_page.get_by_text("Exit code 0")).to_be_visible(timeout=SLOW)
    page.screenshot("environment-warm-hook-test")


def test_after_sign_out_the_pages_are_refused(browser_page, server, artifacts, shop):
    key, env = shop
    sign_in = signed_in(browser_page, server, artifacts, key)
    assert browser_page.request.get(f"{server.url}/v1/environments").status == 200
    sign_in.screenshot("sign-in-done")
    sign_in.sign_out()
    sign_in.screenshot("signed-out")
    assert browser_page.request.get(f"{server.url}/v1/environments").status == 401
    assert browser_page.request.get(f"{server.url}/v1/replica").status == 401
    for route in ("#/replicas", f"#/environments/{env['id']}", "#/audit"):
        sign_in.goto(route)
        sign_in.expect_shown()


def test_a_session_of_one_organization_sees_nothing_of_another(browser_page, server, artifacts, shop, model):
    key, env = shop
    model.add_turn(Text("Theirs."))
    with Replicas(server.url, api_key=key) as client:
        theirs = client.replicas.create(name="their-replica", message="Hi", environment_id=env["id"])
    other = server.new_org_key()
    signed_in(browser_page, server, artifacts, other)
    replicas = ReplicasListPage(browser_page, server.url, artifacts)
    expect(browser_page.get_by_text("No replicas yet")).to_be_visible()
    expect(browser_page.get_by_role("link", name="their-replica")).to_have_count(0)
    ReplicaPage(browser_page, server.url, artifacts).open(theirs.id)
    expect(browser_page.get_by_role("alert")).to_contain_text("not found", ignore_case=True)
    replicas.goto(f"#/environments/{env['id']}")
    expect(browser_page.get_by_role("alert")).to_contain_text("not found", ignore_case=True)
    assert browser_page.request.get(f"{server.url}/v1/replica/{theirs.id}").status == 404
    assert browser_page.request.get(f"{server.url}/v1/replicas/search?q=their").json()["total"] == 0
