"""Warm and start hooks: versions, test runs in a throwaway workspace, streaming, repository hooks, scoping.

What a test run may reach (the data dir, the server, the environment's variables and files on both backends) is
proven in `tests/security/test_hook_sandbox.py`; here, the endpoints' behaviour on the default (local) runtime."""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from replicas.api import sse
from replicas.api.app import create_app
from replicas.services import auth
from replicas.store.models import (
    AuditEvent,
    EnvironmentHook,
    Organization,
    Repository,
    RepositorySet,
    RepositorySetMember,
)
from tests.contract import assert_contract, validate_schema

ENVS = "/v1/environments"
WARM = "/v1/environments/{environmentId}/warm-hooks"
WARM_SAVE = "/v1/environments/{environmentId}/warm-hooks/save"
WARM_TEST = "/v1/environments/{environmentId}/warm-hooks/test"
WARM_SAVE_TEST = "/v1/environments/{environmentId}/warm-hooks/save-test"
START = "/v1/environments/{environmentId}/start-hooks"
START_SAVE = "/v1/environments/{environmentId}/start-hooks/save"
START_TEST = "/v1/environments/{environmentId}/start-hooks/test"
START_STREAM = "/v1/environments/{environmentId}/start-hooks/test/stream"
SCRIPT = "#!/usr/bin/env bash\nset -euo pipefail\necho warming\n"


def _url(template: str, ref: str) -> str:
    return template.replace("{environmentId}", ref)


def _error(response) -> dict:
    """For statuses the contract does not list on an operation: still the contract's Error body."""
    body = response.json()
    validate_schema(body, "Error")
    return body


async def _team_env(client, name: str = "staging", **extra) -> str:
    response = await client.post(ENVS, json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return response.json()["environment"]["id"]


def parse_sse(text: str) -> list[tuple[str, dict]]:
    """Split an SSE body into (event, data) pairs, checking that `data.type` repeats the event name."""
    events = []
    for frame in text.split("\n\n"):
        lines = [line for line in frame.splitlines() if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        data = json.loads(fields["data"])
        assert data.pop("type") == fields["event"]
        events.append((fields["event"], data))
    return events


def _output(events) -> str:
    return "".join(data["output"] for kind, data in events if kind == "output")


async def _stream(client, url: str, body: dict) -> list[tuple[str, dict]]:
    response = await client.post(url, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    return parse_sse(response.text)


async def _hooks_in_store(app, env_id: str, kind: str) -> list[tuple[int, bool, str]]:
    async with app.state.sessions() as session:
        rows = await session.scalars(select(EnvironmentHook).where(
            EnvironmentHook.environment_id == uuid.UUID(env_id), EnvironmentHook.kind == kind,
        ).order_by(EnvironmentHook.version))
        return [(row.version, row.is_active, row.content) for row in rows]


# --- warm hooks: saving ---------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["global", "uuid"])
async def test_saving_warm_hooks_adds_increasing_versions_and_only_the_newest_is_active(client, app, kind):
    ref = "global" if kind == "global" else await _team_env(client)
    empty = assert_contract(await client.get(_url(WARM, ref)), WARM)
    assert empty == {"warm_hook": None, "warm_pool": None}

    first = await client.post(_url(WARM_SAVE, ref), json={"content": SCRIPT})
    assert first.status_code == 201
    v1 = assert_contract(first, WARM_SAVE)["warm_hook"]
    second = await client.post(_url(WARM_SAVE, ref), json={"content": "echo v2\n"})
    v2 = assert_contract(second, WARM_SAVE)["warm_hook"]
    assert (v1["version"], v2["version"]) == (1, 2)
    assert v2["is_active"] and v2["content"] == "echo v2\n" and v2["id"] != v1["id"]

    current = assert_contract(await client.get(_url(WARM, ref)), WARM)
    assert current["warm_hook"] == v2 and current["warm_pool"] is None
    env_id = v2["environment_id"]
    assert await _hooks_in_store(app, env_id, "warm") == [(1, False, SCRIPT), (2, True, "echo v2\n")]


async def test_concurrent_saves_get_distinct_versions_and_one_stays_active(client, app):
    env_id = await _team_env(client)
    responses = await asyncio.gather(*(client.post(_url(WARM_SAVE, env_id), json={"content": f"echo {n}\n"})
                                       for n in range(5)))
    assert [r.status_code for r in responses] == [201] * 5
    assert sorted(r.json()["warm_hook"]["version"] for r in responses) == [1, 2, 3, 4, 5]
    stored = await _hooks_in_store(app, env_id, "warm")
    assert [version for version, _, _ in stored] == [1, 2, 3, 4, 5]
    assert [active for _, active, _ in stored] == [False] * 4 + [True]


async def test_saves_are_audited_with_the_script(client, app):
    await client.post(_url(WARM_SAVE, "global"), json={"content": "echo one\n"})
    saved = (await client.post(_url(WARM_SAVE, "global"), json={"content": "echo two\n"})).json()["warm_hook"]
    async with app.state.sessions() as session:
        event = await session.scalar(select(AuditEvent).where(AuditEvent.resource_id == saved["id"]))
    assert event.action == "environment_hook.saved" and event.resource_type == "environment_hook"
    assert event.before["content"] == "echo one\n" and event.before["version"] == 1
    assert event.after["content"] == "echo two\n" and event.after["kind"] == "warm"


async def test_bad_content_is_refused_and_changes_nothing(client, app):
    env_id = await _team_env(client)
    kept = (await client.post(_url(WARM_SAVE, env_id), json={"content": SCRIPT})).json()["warm_hook"]
    cases = [
        ({}, "content"),
        ({"content": None}, "content"),
        ({"content": 42}, "content"),
        ({"content": "   \n\t"}, "content: must not be empty"),
        ({"content": "#" * (256 * 1024 + 1)}, "at most 262,144 bytes"),
    ]
    for body, fragment in cases:
        for template in (WARM_SAVE, WARM_SAVE_TEST):
            response = await client.post(_url(template, env_id), json=body)
            assert response.status_code == 400, (body, response.text)
            assert fragment in assert_contract(response, template)["details"]
    too_big_test = await client.post(_url(WARM_TEST, env_id), json={"content": "é" * (128 * 1024 + 1)})
    assert too_big_test.status_code == 400
    assert assert_contract(too_big_test, WARM_TEST)["error"] == "Hook script too large"
    exactly_the_limit = await client.post(_url(WARM_SAVE, env_id), json={"content": "#" * (256 * 1024)})
    assert exactly_the_limit.status_code == 201
    assert [v for v, _, _ in await _hooks_in_store(app, env_id, "warm")] == [1, 2]
    assert kept["version"] == 1


async def test_unknown_unauthorized_and_other_org_environments(client, make_org, anonymous):
    other = await make_org()
    theirs = await _team_env(other.client, "theirs")
    await other.client.post(_url(WARM_SAVE, theirs), json={"content": SCRIPT})
    for ref in (theirs, str(uuid.uuid4()), "not-a-uuid"):
        for method, template, body in [
            ("get", WARM, None), ("post", WARM_SAVE, {"content": SCRIPT}),
            ("post", WARM_TEST, {"content": "true"}), ("post", WARM_SAVE_TEST, {"content": "true"}),
            ("post", WARM + "/save-test/stream", {"content": "true"}), ("get", WARM + "/repository-hooks", None),
            ("get", START, None), ("post", START_SAVE, {"content": "true"}),
            ("post", START_TEST, {"content": "true"}), ("post", START_STREAM, {"content": "true"}),
        ]:
            kwargs = {"json": body} if body is not None else {}
            response = await client.request(method, _url(template, ref), **kwargs)
            assert response.status_code == 404, (template, ref, response.text)
            assert _error(response)["error"] == "Environment not found"
    their_hook = (await other.client.get(_url(WARM, theirs))).json()["warm_hook"]
    assert their_hook["version"] == 1 and their_hook["content"] == SCRIPT
    unauthorized = await anonymous.get(_url(WARM, "global"))
    assert unauthorized.status_code == 401
    assert_contract(unauthorized, WARM)


# --- test runs --------------------------------------------------------------------------------------

def _sandboxes(settings) -> list[str]:
    """The throwaway workspaces of hook test runs still on disk."""
    root = settings.data_dir / "workspaces"
    return sorted(p.name for p in root.glob("hooktest-*")) if root.exists() else []


def _processes_with(marker: str) -> list[int]:
    """Live processes whose command line holds `marker` (test scripts run `sleep <unique number>`)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                zombie = handle.read().split(") ", 1)[1][0] == "Z"
        except OSError:
            continue
        if marker in cmdline and not zombie and int(entry) != os.getpid():
            found.append(int(entry))
    return found


async def _until_gone(marker: str, settings, seconds: float = 10.0) -> None:
    """Wait until no process runs `marker` and no hook sandbox is left; fail otherwise."""
    for _ in range(int(seconds / 0.05)):
        if not _processes_with(marker) and not _sandboxes(settings):
            return
        await asyncio.sleep(0.05)
    assert _processes_with(marker) == [] and _sandboxes(settings) == []


def _unique_sleep() -> str:
    """A `sleep` argument no other process has, to find the script's children by command line."""
    return f"{60 + uuid.uuid4().int % 10_000 / 10_000:.4f}"


async def test_test_run_reports_output_in_a_throwaway_workspace_and_persists_nothing(client, app, settings):
    script = 'echo "home=$HOME"; echo "cwd=$(pwd)"; touch made-here; ls; echo "secret=${REPLICAS_SECRET_KEY:-}"\n'
    os.environ["REPLICAS_SECRET_KEY"] = "must-not-leak"
    try:
        response = await client.post(_url(WARM_TEST, "global"), json={"content": script})
    finally:
        del os.environ["REPLICAS_SECRET_KEY"]
    assert response.status_code == 200
    test = assert_contract(response, WARM_TEST)["test"]
    assert test["exit_code"] == 0 and test["timed_out"] is False
    lines = test["output"].splitlines()
    home = lines[0].removeprefix("home=")
    workspaces = str((settings.data_dir / "workspaces").resolve())
    assert home.startswith(workspaces + "/hooktest-") and home.endswith("/home")
    assert lines[1] == f"cwd={home}" and "made-here" in lines[2:-1] and lines[-1] == "secret="
    assert not os.path.exists(home)
    assert _sandboxes(settings) == []
    assert (await client.get(_url(WARM, "global"))).json()["warm_hook"] is None


async def test_failing_hook_reports_exit_code_and_merged_output_in_order(client):
    script = "echo to-stdout\necho to-stderr >&2\necho again\nexit 7\n"
    for template in (WARM_TEST, START_TEST):
        response = await client.post(_url(template, "global"), json={"content": script})
        test = assert_contract(response, template)["test"]
        assert test == {"exit_code": 7, "output": "to-stdout\nto-stderr\nagain\n", "timed_out": False}


async def test_sync_save_test_always_persists_even_when_the_test_fails(client, app):
    env_id = await _team_env(client)
    response = await client.post(_url(WARM_SAVE_TEST, env_id), json={"content": "echo broken; exit 3\n"})
    assert response.status_code == 201
    body = assert_contract(response, WARM_SAVE_TEST)
    assert body["test"] == {"exit_code": 3, "output": "broken\n", "timed_out": False}
    assert body["warm_hook"]["version"] == 1 and body["warm_hook"]["is_active"]
    assert (await client.get(_url(WARM, env_id))).json()["warm_hook"] == body["warm_hook"]


@pytest.fixture
async def short_timeout_client(settings):
    """A separate app whose hook tests time out after one second, with an organization of its own."""
    application = create_app(settings.model_copy(update={"hook_test_timeout_seconds": 1}))
    async with application.router.lifespan_context(application):
        async with application.state.sessions() as session:
            org = await auth.get_or_create_organization(session, f"org-{uuid.uuid4().hex[:8]}")
            key = await auth.create_org_key(session, org, name="test")
            await session.commit()
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application),
                                     base_url="http://replicas.test",
                                     headers={"Authorization": f"Bearer {key}"}) as client:
            yield client


async def test_hook_that_runs_too_long_times_out_and_its_children_are_killed(short_timeout_client, settings):
    seconds = _unique_sleep()
    script = f"echo started\nsleep {seconds} &\nwait\necho never\n"
    loop = asyncio.get_running_loop()
    started = loop.time()
    response = await short_timeout_client.post(_url(START_TEST, "global"), json={"content": script})
    assert loop.time() - started < 10
    test = assert_contract(response, START_TEST)["test"]
    assert test["timed_out"] is True and test["exit_code"] == -1
    assert test["output"].startswith("started\n") and "never" not in test["output"]
    assert "timed out after 1s" in test["output"]
    await _until_gone(seconds, settings)

    events = await _stream(short_timeout_client, _url(WARM, "global") + "/save-test/stream",
                           {"content": f"echo started; sleep {seconds}"})
    assert events[-1] == ("complete", {"exit_code": -1, "timed_out": True, "warm_hook": None})
    assert (await short_timeout_client.get(_url(WARM, "global"))).json()["warm_hook"] is None
    await _until_gone(seconds, settings)


async def test_background_children_do_not_outlive_a_finished_hook(client, settings):
    seconds = _unique_sleep()
    script = f"sleep {seconds} >/dev/null 2>&1 &\necho done\n"
    test = (await client.post(_url(WARM_TEST, "global"), json={"content": script})).json()["test"]
    assert test == {"exit_code": 0, "output": "done\n", "timed_out": False}
    await _until_gone(seconds, settings)


# --- streaming ----------------------------------------------------------------------------------------

async def test_save_test_stream_persists_only_when_the_test_succeeds(client, app):
    env_id = await _team_env(client)
    url = _url(WARM, env_id) + "/save-test/stream"

    failed = await _stream(client, url, {"content": "echo nope >&2; exit 2\n"})
    # Provisioning, running, the output, the outcome, not saved, complete.
    assert [kind for kind, _ in failed] == ["progress", "progress", "output", "progress", "progress", "complete"]
    assert "isolated sandbox" in failed[0][1]["message"] and failed[1][1]["message"] == "Running the warm hook"
    assert _output(failed) == "nope\n"
    assert failed[-1] == ("complete", {"exit_code": 2, "timed_out": False, "warm_hook": None})
    assert await _hooks_in_store(app, env_id, "warm") == []

    passed = await _stream(client, url, {"content": "echo one\necho two\n", "mode": "save_test"})
    kinds = [kind for kind, _ in passed]
    assert kinds[0] == "progress" and kinds[-1] == "complete" and set(kinds) == {"progress", "output", "complete"}
    assert _output(passed) == "one\ntwo\n"
    complete = passed[-1][1]
    assert complete["exit_code"] == 0 and complete["timed_out"] is False
    assert complete["warm_hook"]["version"] == 1 and complete["warm_hook"]["content"] == "echo one\necho two\n"
    validate_schema(complete["warm_hook"], "WarmHookRecord")
    assert "version 1" in passed[-2][1]["message"]

    test_only = await _stream(client, url, {"content": "echo only\n", "mode": "test_only"})
    assert test_only[-1] == ("complete", {"exit_code": 0, "timed_out": False, "warm_hook": None})
    assert await _hooks_in_store(app, env_id, "warm") == [(1, True, "echo one\necho two\n")]


async def test_streams_refuse_bad_input_with_a_plain_error_before_streaming(client):
    url = _url(WARM, "global") + "/save-test/stream"
    blank = await client.post(url, json={"content": "  "})
    assert blank.status_code == 400 and "content" in _error(blank)["details"]
    bad_mode = await client.post(url, json={"content": "true", "mode": "save"})
    assert bad_mode.status_code == 400 and "mode" in _error(bad_mode)["details"]
    huge = await client.post(_url(START_STREAM, "global"), json={"content": "#" * (300 * 1024)})
    assert huge.status_code == 400
    assert assert_contract(huge, START_STREAM)["error"] == "Hook script too large"
    # Blank scripts may be tested (they succeed trivially); only saving them is refused.
    events = await _stream(client, url, {"content": "", "mode": "test_only"})
    assert events[-1] == ("complete", {"exit_code": 0, "timed_out": False, "warm_hook": None})


async def test_start_hook_stream_events_in_order(client):
    events = await _stream(client, _url(START_STREAM, "global"), {"content": "echo a\necho b >&2\nexit 1\n"})
    assert events[0][0] == "progress" and "start hook" in events[0][1]["message"]
    assert _output(events) == "a\nb\n"
    assert [kind for kind, _ in events][-2:] == ["progress", "complete"]
    assert events[-1] == ("complete", {"exit_code": 1, "timed_out": False})
    assert "failed with exit code 1" in events[-2][1]["message"]


@pytest.fixture
async def live_url(app):
    """The app served over real HTTP on a loopback port: ASGITransport buffers whole responses."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    await task


async def test_stream_delivers_output_while_the_script_is_still_running(live_url, org, settings):
    # The script only finishes once the test has seen its first line (and put a flag into the sandbox's
    # home from outside), so buffered output cannot pass.
    script = ("echo first\nfor i in $(seq 500); do [ -e ~/go ] && break; sleep 0.02; done\n"
              "[ -e ~/go ] && echo saw-flag || echo no-flag\n")
    events: list[tuple[str, dict]] = []
    async with httpx.AsyncClient(base_url=live_url, headers={"Authorization": f"Bearer {org.key}"},
                                 timeout=30) as http:
        for url, body in [(_url(START_STREAM, "global"), {"content": script}),
                          (_url(WARM, "global") + "/save-test/stream", {"content": script, "mode": "test_only"})]:
            events.clear()
            flagged = False
            async with http.stream("POST", url, json=body) as response:
                assert response.status_code == 200
                buffer = ""
                async for text in response.aiter_text():
                    buffer += text
                    *frames, buffer = buffer.split("\n\n")
                    for frame in frames:
                        events.extend(parse_sse(frame + "\n\n"))
                    if "first" in _output(events) and not flagged:
                        assert events[-1][0] == "output" and "saw-flag" not in _output(events)
                        (sandbox,) = _sandboxes(settings)
                        (settings.data_dir / "workspaces" / sandbox / "home" / "go").touch()
                        flagged = True
            assert _output(events) == "first\nsaw-flag\n"
            assert events[-1][0] == "complete" and events[-1][1]["exit_code"] == 0
    assert _sandboxes(settings) == []


# --- start hooks ------------------------------------------------------------------------------------

async def test_start_hook_versions_and_clearing_with_empty_content(client, app):
    env_id = await _team_env(client)
    assert assert_contract(await client.get(_url(START, env_id)), START) == {"start_hook": None}
    nothing_to_clear = await client.post(_url(START_SAVE, env_id), json={"content": ""})
    assert nothing_to_clear.status_code == 201
    assert assert_contract(nothing_to_clear, START_SAVE) == {"start_hook": None}

    v1 = assert_contract(await client.post(_url(START_SAVE, env_id), json={"content": "make dev\n"}),
                         START_SAVE)["start_hook"]
    v2 = assert_contract(await client.post(_url(START_SAVE, env_id), json={"content": "make up\n"}),
                         START_SAVE)["start_hook"]
    assert (v1["version"], v2["version"]) == (1, 2)
    assert assert_contract(await client.get(_url(START, env_id)), START) == {"start_hook": v2}

    for blank in ("", "  \n"):
        cleared = await client.post(_url(START_SAVE, env_id), json={"content": blank})
        assert cleared.status_code == 201 and assert_contract(cleared, START_SAVE) == {"start_hook": None}
        assert (await client.get(_url(START, env_id))).json() == {"start_hook": None}

    v3 = (await client.post(_url(START_SAVE, env_id), json={"content": "make again\n"})).json()["start_hook"]
    assert v3["version"] == 3
    assert await _hooks_in_store(app, env_id, "start") == [
        (1, False, "make dev\n"), (2, False, "make up\n"), (3, True, "make again\n")]
    # Warm and start hooks number their versions independently.
    assert (await client.post(_url(WARM_SAVE, env_id), json={"content": SCRIPT})).json()["warm_hook"]["version"] == 1
    async with app.state.sessions() as session:
        actions = list(await session.scalars(select(AuditEvent.action).where(
            AuditEvent.organization_id == uuid.UUID(v1["organization_id"]),
            AuditEvent.resource_type == "environment_hook").order_by(AuditEvent.created_at)))
    assert actions.count("environment_hook.cleared") == 1


# --- repository hooks -------------------------------------------------------------------------------

async def _org_id(app, name: str) -> uuid.UUID:
    async with app.state.sessions() as session:
        return (await session.scalar(select(Organization).where(Organization.name == name))).id


async def _insert_repository(app, org_id, name: str, url: str, credential: str | None = None) -> str:
    async with app.state.sessions() as session:
        repo = Repository(organization_id=org_id, name=name, url=url, default_branch="main",
                          credential_encrypted=app.state.box.encrypt(credential) if credential else None)
        session.add(repo)
        await session.commit()
        return str(repo.id)


async def test_repository_hooks_of_a_bound_repository(client, org, app, make_git_repo):
    config = {"warmHook": {"commands": ["npm ci", "npm run build"], "timeout": 600000},
              "startHook": {"commands": ["./scripts/setup.sh"], "separate": False}, "ports": [3000]}
    path = make_git_repo("app", {"replicas.json": json.dumps(config), "replicas.yaml": "warmHook: [ignored"})
    repo_id = await _insert_repository(app, await _org_id(app, org.name), "acme/app", path.as_uri(),
                                       credential="ghp_unused_for_file_urls")
    env_id = await _team_env(client, repository_id=repo_id)
    response = await client.get(_url(WARM, env_id) + "/repository-hooks")
    assert response.status_code == 200
    assert response.json() == {"repository_hooks": [{
        "repository_id": repo_id, "repository_name": "acme/app", "config_file": "replicas.json",
        "warm_hook": {"commands": ["npm ci", "npm run build"], "timeout": 600000, "separate": True},
        "start_hook": {"commands": ["./scripts/setup.sh"], "timeout": 300000, "separate": False},
        "error": None,
    }]}
    # Unbound environments (and Global) have no repository hooks.
    assert (await client.get(_url(WARM, "global") + "/repository-hooks")).json() == {"repository_hooks": []}


async def test_repository_set_reports_parse_errors_missing_files_and_unreachable_repos(client, org, app,
                                                                                       make_git_repo, tmp_path):
    org_id = await _org_id(app, org.name)
    broken = make_git_repo("broken", {"replicas.yaml": "warmHook:\n  commands: [npm ci\n"})
    plain = make_git_repo("plain")
    ids = [
        await _insert_repository(app, org_id, "acme/broken", broken.as_uri()),
        await _insert_repository(app, org_id, "acme/plain", plain.as_uri()),
        await _insert_repository(app, org_id, "acme/gone", (tmp_path / "missing").as_uri()),
    ]
    async with app.state.sessions() as session:
        repo_set = RepositorySet(organization_id=org_id, name="stack")
        session.add(repo_set)
        await session.flush()
        for position, repo_id in enumerate(ids):
            session.add(RepositorySetMember(repository_set_id=repo_set.id, repository_id=uuid.UUID(repo_id),
                                            position=position))
        await session.commit()
        set_id = str(repo_set.id)
    env_id = await _team_env(client, repository_set_id=set_id)
    response = await client.get(_url(WARM, env_id) + "/repository-hooks")
    assert response.status_code == 200
    broken_entry, plain_entry, gone_entry = response.json()["repository_hooks"]
    assert broken_entry["repository_id"] == ids[0] and broken_entry["config_file"] == "replicas.yaml"
    assert broken_entry["warm_hook"] is None and broken_entry["start_hook"] is None
    assert broken_entry["error"].startswith("replicas.yaml: invalid YAML at line 3")
    assert plain_entry == {"repository_id": ids[1], "repository_name": "acme/plain", "config_file": None,
                           "warm_hook": None, "start_hook": None, "error": None}
    assert gone_entry["repository_name"] == "acme/gone" and gone_entry["config_file"] is None
    assert gone_entry["error"].startswith("Could not fetch file://")


async def test_a_client_that_disconnects_stops_the_script(live_url, org, settings):
    seconds = _unique_sleep()
    script = f"echo started\nsleep {seconds}\n"
    async with httpx.AsyncClient(base_url=live_url, headers={"Authorization": f"Bearer {org.key}"},
                                 timeout=30) as http:
        async with http.stream("POST", _url(START_STREAM, "global"), json={"content": script}) as response:
            async for text in response.aiter_text():
                if "started" in text:
                    assert len(_sandboxes(settings)) == 1
                    break
    await _until_gone(seconds, settings)


async def test_quiet_streams_send_ping_comments(client, monkeypatch):
    monkeypatch.setattr(sse, "HEARTBEAT_SECONDS", 0.05)
    response = await client.post(_url(START_STREAM, "global"), json={"content": "sleep 0.4\necho late\n"})
    assert ": ping\n\n" in response.text
    events = parse_sse(response.text)
    assert _output(events) == "late\n" and events[-1] == ("complete", {"exit_code": 0, "timed_out": False})
