"""Warm hooks run in every workspace (cold path), through the API with the real Claude Code CLI behind the
scripted model: Global's warm hook, the environment's, then the repository's `warmHook` from its
`replicas.json`, each once per workspace (not again on wake), inside the workspace's sandbox (the data dir is
not there), before the engine starts. Their logs are in `GET /v1/replica/{id}/hooks` (the contract's
WarmHookLogEntry), awake or asleep, and their status in `include=environment`. A failing or timed-out warm
hook is reported and the replica still comes up and runs its first turn. On both runtime backends."""

from __future__ import annotations

import json
import os

import pytest

from replicas.testing import Text
from tests.conftest import git
from tests.contract import assert_contract, validate_schema
from tests.replicas.conftest import ON_BOTH_BACKENDS, create, row_of, settled, status_of, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), ON_BOTH_BACKENDS]


def commit_replicas_json(origin, config: dict) -> None:
    (origin / "replicas.json").write_text(json.dumps(config))
    git(origin, "add", "replicas.json")
    git(origin, "commit", "-q", "-m", "replicas.json")


async def save_warm_hook(client, env_ref: str, content: str) -> None:
    response = await client.post(f"/v1/environments/{env_ref}/warm-hooks/save", json={"content": content})
    assert response.status_code == 201, response.text


async def warm_logs(client, rid: str) -> list[dict]:
    body = assert_contract(await client.get(f"/v1/replica/{rid}/hooks"), "/v1/replica/{id}/hooks")
    for entry in body["warm_hooks"]["logs"]:
        validate_schema(entry, "WarmHookLogEntry")
    return body["warm_hooks"]["logs"]


async def environment_hooks(client, rid: str) -> dict:
    response = await client.get(f"/v1/replica/{rid}", params={"include": "environment"})
    return assert_contract(response, "/v1/replica/{id}")["replica"]["environment"]["hooks"]


async def test_warm_hooks_run_once_per_workspace_in_order_inside_the_sandbox(app, client, settings, replica_env,
                                                                            model):
    home = settings.data_dir / "workspaces"
    data = os.path.realpath(settings.data_dir)
    key = (settings.data_dir / "secret.key").read_text().strip()
    await save_warm_hook(client, "global", "echo global >> ~/warm-order.txt\necho global says hi\n")
    env_script = ("echo environment >> ~/warm-order.txt\necho warmed >> ~/warm-count.txt\n"
                  f"cat {data}/secret.key 2>&1; echo \"cat-exit=$?\"\n"
                  f"echo \"LS:$(ls -a {data} 2>&1 | tr '\\n' ,)\"\n")
    await save_warm_hook(client, replica_env.environment_id, env_script)
    commit_replicas_json(replica_env.origin, {"warmHook": {"commands": ["pwd", "echo repository >> ~/warm-order.txt"],
                                                           "timeout": 60000}})
    model.add_turn(Text("Ready."))
    rid = (await create(client, replica_env, "Get ready", name="warm"))["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    order = home / rid / "home" / "warm-order.txt"
    count = home / rid / "home" / "warm-count.txt"
    # Global, then the environment, then the repository, each once; all before the agent's first turn.
    assert order.read_text().splitlines()[:2] == ["global", "environment"]
    assert order.read_text().splitlines()[2:] == ["repository"]
    assert count.read_text() == "warmed\n"

    logs = await warm_logs(client, rid)
    assert [(e["hookType"], e["hookName"]) for e in logs] == [("global", "global"), ("global", "shop"),
                                                              ("repository", "shop")]
    assert all(e["exitCode"] == 0 and e["timedOut"] is False and e["outputTruncated"] is False for e in logs)
    assert all(e["outputTotalChars"] == len(e["output"]) for e in logs)
    assert logs[0]["output"] == "global says hi\n"
    assert logs[1]["hookScript"] == env_script
    # Inside the sandbox: the data dir's key is not there to read, nor listed.
    printed = logs[1]["output"]
    assert "cat-exit=0" not in printed and "cat-exit=" in printed and key not in printed
    listing = next(line for line in printed.splitlines() if line.startswith("LS:"))
    assert "secret.key" not in listing
    # The repository's hook: its commands, each in its own shell, in its checkout.
    assert logs[2]["hookScript"] == "pwd\necho repository >> ~/warm-order.txt"
    assert logs[2]["output"].startswith("$ pwd\n") and "/workspaces/shop\n" in logs[2]["output"]

    hooks = await environment_hooks(client, rid)
    assert hooks["global_warm_hook"] == {"status": "completed", "details": None}
    assert [(r["repository_name"], r["warm_hook"]) for r in hooks["repositories"]] == [("acme/shop", "completed")]

    # Asleep: the logs are still served, without a wake.
    assert (await client.post(f"/v1/workspaces/{rid}/sleep")).json() == {"success": True}
    assert await warm_logs(client, rid) == logs
    assert await status_of(app, rid) == "sleeping"

    # Woken: the warm hooks do not run again.
    await client.get(f"/v1/replica/{rid}")

    async def awake():
        return await status_of(app, rid) == "active"

    await wait_for(awake, what="the wake")
    assert count.read_text() == "warmed\n"
    assert order.read_text().splitlines().count("global") == 1
    assert await warm_logs(client, rid) == logs
    assert (await environment_hooks(client, rid))["global_warm_hook"]["status"] == "completed"


@pytest.mark.replica_settings(hook_test_timeout_seconds=3)
async def test_failing_warm_hooks_are_reported_and_the_replica_still_runs_its_first_turn(app, client, replica_env,
                                                                                         model):
    await save_warm_hook(client, "global", "echo sleeping\nsleep 60\n")
    await save_warm_hook(client, replica_env.environment_id,
                         "head -c 150000 /dev/zero | tr '\\0' x\necho\necho before-failing\nexit 3\n")
    commit_replicas_json(replica_env.origin, {"warmHook": {"commands": ["false", "echo still-ran"]}})
    model.add_turn(Text("Up and running."))
    rid = (await create(client, replica_env, "Are you there?", name="warm-fail"))["id"]
    await wait_for(lambda: settled(app, rid), what="the first turn")
    assert "Are you there?" in model.model_requests()[0].conversation_text()
    assert (await row_of(app, rid)).status == "active"

    timed_out, failed, repository = await warm_logs(client, rid)
    assert timed_out["timedOut"] is True and timed_out["exitCode"] == 124 and "sleeping" in timed_out["output"]
    assert failed["exitCode"] == 3 and failed["timedOut"] is False
    # Over the preview: the end of the output is kept, and every character counted.
    assert failed["outputTruncated"] is True and len(failed["output"]) == 100_000
    assert failed["outputTotalChars"] == 150_000 + len("\nbefore-failing\n")
    assert failed["output"].endswith("x\nbefore-failing\n")
    # A failing command does not stop the next one; the hook reports the first failure's code.
    assert repository["exitCode"] == 1 and "$ echo still-ran\nstill-ran\n" in repository["output"]

    hooks = await environment_hooks(client, rid)
    assert hooks["global_warm_hook"] == {"status": "failed", "details": "global: timed out; shop: exited with 3"}
    assert hooks["repositories"][0]["warm_hook"] == "failed"
