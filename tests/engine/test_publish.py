"""Publishing the agent's branch: real checkouts pushing to a real bare origin, then through the engine.

The GitHub REST path (a token and a github.com origin) has no test: there is no stand-in for GitHub's
API here, only the pure URL helpers that pick it are tested.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from replicas.engine import repos
from replicas.engine.journal import Journal
from replicas.engine.publish import Publisher, github_repository, origin_uri
from replicas.testing import ShellCall, Text
from tests.conftest import git
from tests.contract import validate_schema
from tests.engine.conftest import read_events


@dataclass
class Setup:
    origin: Path
    checkout: Path
    state_dir: Path
    journal: Journal

    def publisher(self) -> Publisher:
        return Publisher(self.state_dir, {"PATH": os.environ["PATH"]}, self.journal)

    def origin_head(self, branch: str) -> str | None:
        heads = git(self.origin, "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads")
        return dict(line.split() for line in heads.splitlines()).get(branch)

    def commit(self, name: str, message: str) -> str:
        (self.checkout / name).write_text(f"{name}\n")
        git(self.checkout, "add", name)
        git(self.checkout, "commit", "-q", "-m", message)
        return git(self.checkout, "rev-parse", "HEAD").strip()

    def errors(self) -> list[dict]:
        return [e["payload"] for e in self.journal.read() if e["type"] == "error"]


def clone_with_bare_origin(source: Path, origin: Path, checkout: Path) -> None:
    """A bare `origin` made from `source`, and `checkout` cloned from it (origin/HEAD, origin/main)."""
    git(source.parent, "clone", "-q", "--bare", str(source), str(origin))
    git(origin.parent, "clone", "-q", str(origin), str(checkout))


@pytest.fixture
def setup(tmp_path, make_git_repo) -> Setup:
    origin, checkout = tmp_path / "origin.git", tmp_path / "home" / "workspaces" / "app"
    clone_with_bare_origin(make_git_repo("seed"), origin, checkout)
    journal = Journal(tmp_path / "state" / "events.jsonl").open()
    yield Setup(origin, checkout, tmp_path / "state", journal)
    journal.close()


async def test_a_commit_on_a_new_branch_is_pushed_and_recorded_as_the_branch(setup):
    git(setup.checkout, "switch", "-q", "-c", "fix/typo")
    head = setup.commit("fix.txt", "Fix the typo")
    outcome = await setup.publisher().publish(setup.checkout)
    assert outcome.pushed and outcome.error is None
    assert setup.origin_head("fix/typo") == head
    url = f"{setup.origin.as_uri()}#fix/typo"
    assert (outcome.record["url"], outcome.record["number"], outcome.record["head"]) == (url, 0, head)
    assert setup.errors() == []

    state = await repos.repo_state(setup.checkout, include_diff=False,
                                   pull_requests=setup.publisher().pull_requests("app"))
    assert state["prUrls"] == [url]
    assert state["pullRequests"] == [{"number": 0, "url": url, "branch": "fix/typo"}]
    validate_schema(state, "EngineRepoState")


async def test_the_record_survives_a_new_publisher_and_nothing_is_pushed_again_without_new_commits(setup):
    git(setup.checkout, "switch", "-q", "-c", "feature")
    setup.commit("a.txt", "Add a")
    assert (await setup.publisher().publish(setup.checkout)).pushed

    restarted = setup.publisher()
    assert [pr["branch"] for pr in restarted.pull_requests("app")] == ["feature"]
    setup.origin.rename(setup.origin.with_name("moved.git"))  # a push attempt would fail now
    again = await restarted.publish(setup.checkout)
    assert not again.pushed and again.error is None and again.record["url"].endswith("#feature")
    assert setup.errors() == []


async def test_a_new_commit_or_an_amended_one_is_pushed_again(setup):
    git(setup.checkout, "switch", "-q", "-c", "feature")
    setup.commit("a.txt", "Add a")
    publisher = setup.publisher()
    await publisher.publish(setup.checkout)
    second = setup.commit("b.txt", "Add b")
    assert (await publisher.publish(setup.checkout)).pushed
    assert setup.origin_head("feature") == second

    git(setup.checkout, "commit", "-q", "--amend", "-m", "Add b, reworded")
    amended = git(setup.checkout, "rev-parse", "HEAD").strip()
    assert (await setup.publisher().publish(setup.checkout)).pushed
    assert setup.origin_head("feature") == amended
    assert len(publisher.pull_requests("app")) == 1 and setup.errors() == []


async def test_someone_elses_commits_on_the_branch_are_not_overwritten(setup, tmp_path):
    git(setup.checkout, "switch", "-q", "-c", "feature")
    setup.commit("a.txt", "Add a")
    await setup.publisher().publish(setup.checkout)
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", "feature", str(setup.origin), str(other))
    (other / "theirs.txt").write_text("theirs\n")
    git(other, "add", "-A")
    git(other, "commit", "-q", "-m", "Their work")
    git(other, "push", "-q", "origin", "feature")
    theirs = git(other, "rev-parse", "HEAD").strip()

    git(setup.checkout, "commit", "-q", "--amend", "-m", "Rewritten")
    outcome = await setup.publisher().publish(setup.checkout)
    assert not outcome.pushed and outcome.error["code"] == "push_failed"
    assert setup.origin_head("feature") == theirs


async def test_a_push_failure_is_journaled_and_nothing_raises(setup):
    git(setup.checkout, "switch", "-q", "-c", "feature")
    setup.commit("a.txt", "Add a")
    shutil.rmtree(setup.origin)
    publisher = setup.publisher()
    outcomes = await publisher.publish_all([setup.checkout])
    assert not outcomes[0].pushed
    [error] = setup.errors()
    assert error["code"] == "push_failed" and "feature" in error["message"] and error["details"]
    assert publisher.pull_requests("app") == []
    assert not (setup.state_dir / "published.json").exists()


async def test_the_default_branch_a_branch_without_commits_and_a_checkout_without_origin_are_left_alone(
        setup, make_git_repo):
    main_head = setup.origin_head("main")
    setup.commit("on-main.txt", "Straight on main")
    git(setup.checkout, "switch", "-q", "-c", "empty", "origin/main")
    lonely = make_git_repo("lonely")
    git(lonely, "switch", "-q", "-c", "feature")
    (lonely / "x.txt").write_text("x\n")
    git(lonely, "add", "-A")
    git(lonely, "commit", "-q", "-m", "x")
    publisher = setup.publisher()
    for checkout in (setup.checkout, lonely):
        assert not (await publisher.publish(checkout)).pushed
    git(setup.checkout, "switch", "-q", "main")
    assert not (await publisher.publish(setup.checkout)).pushed
    assert setup.origin_head("main") == main_head and setup.origin_head("empty") is None
    assert setup.errors() == []


def test_origins_become_uris_without_credentials(tmp_path):
    repo = tmp_path / "ws" / "app"
    assert origin_uri("/srv/git/app.git", repo) == "file:///srv/git/app.git"
    assert origin_uri("../app.git", repo) == (tmp_path / "ws" / "app.git").as_uri()
    assert origin_uri("file:///srv/app.git", repo) == "file:///srv/app.git"
    assert origin_uri("https://bob:s3cret@git.example.com/app.git", repo) == "https://git.example.com/app.git"
    assert origin_uri("git@github.com:acme/app.git", repo) == "ssh://git@github.com/acme/app.git"


def test_github_origins_are_recognised():
    assert github_repository("https://github.com/acme/app.git") == ("acme", "app")
    assert github_repository("https://x-access-token:t@github.com/acme/app") == ("acme", "app")
    assert github_repository("git@github.com:acme/app.git") == ("acme", "app")
    assert github_repository("ssh://git@github.com/acme/app.git") == ("acme", "app")
    assert github_repository("https://ghe.example.com/acme/app.git") is None
    assert github_repository("https://ghe.example.com/acme/app.git", {"ghe.example.com"}) == ("acme", "app")
    assert github_repository("https://gitlab.com/acme/app.git") is None
    assert github_repository("/srv/github.com/acme/app.git") is None


def give_home_checkout_an_origin(home: Path, tmp_path: Path) -> Path:
    """Turn the `home` fixture's `~/workspaces/app` into a clone of a bare origin; return the origin."""
    repo = home / "workspaces" / "app"
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "fetch", "-q", "origin")
    git(repo, "remote", "set-head", "origin", "main")
    git(repo, "config", "user.name", "Agent")
    git(repo, "config", "user.email", "agent@example.com")
    return origin


async def test_the_engine_publishes_after_a_turn_and_repo_status_carries_the_branch(tmp_path, make_engine,
                                                                                   fake_tools, home):
    origin = give_home_checkout_an_origin(home, tmp_path)
    repo = home / "workspaces" / "app"
    git(repo, "switch", "-q", "-c", "agent/work")
    (repo / "work.txt").write_text("work\n")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Do the work")
    url = f"{origin.as_uri()}#agent/work"

    engine = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with engine.client() as client:
        chat_id = (await client.get("/chats")).json()["chats"][0]["id"]
        after = (await client.get("/health")).json()["lastSeq"]
        await client.post(f"/chats/{chat_id}/messages", json={"message": "write:more.txt"})
        events = await read_events(client, after, lambda e: e["type"] == "repo.status.changed")
        [state] = events[-1]["payload"]["repos"]
        assert state["prUrls"] == [url] and state["pullRequests"] == [{"number": 0, "url": url,
                                                                       "branch": "agent/work"}]
        assert not any(e["type"] == "error" for e in events)
        last_seq = (await client.get("/health")).json()["lastSeq"]
    assert git(origin, "rev-parse", "refs/heads/agent/work") == git(repo, "rev-parse", "HEAD")
    engine.stop()

    restarted = await make_engine(REPLICAS_TOOLS_DIR=str(fake_tools)).start()
    async with restarted.client() as client:
        events = await read_events(client, last_seq, lambda e: e["type"] == "repo.discovered")
        assert events[-1]["payload"]["repos"][0]["prUrls"] == [url]
        assert (await client.get("/repos")).json()["repos"][0]["pullRequests"][0]["url"] == url


@pytest.mark.slow
async def test_claude_commits_on_a_branch_and_the_engine_pushes_it(tmp_path, make_engine, home, agent_tools,
                                                                   model):
    origin = give_home_checkout_an_origin(home, tmp_path)
    repo = home / "workspaces" / "app"
    model.add_turn(ShellCall(f"cd {repo} && git switch -c claude/hello && echo hi > hello.txt && "
                             "git add hello.txt && git commit -q -m 'Add hello.txt'"), Text("committed"))
    engine = await make_engine(REPLICAS_TOOLS_DIR=str(agent_tools), REPLICAS_AGENT_MAX_RETRIES="1",
                               REPLICAS_AGENT_IDLE_TIMEOUT="60", **model.anthropic_env()).start()
    async with engine.client() as client:
        chat_id = (await client.get("/chats")).json()["chats"][0]["id"]
        after = (await client.get("/health")).json()["lastSeq"]
        await client.post(f"/chats/{chat_id}/messages", json={"message": "commit hello.txt on a branch"})
        events = await read_events(client, after, lambda e: e["type"] == "repo.status.changed", timeout=180)
        assert [e["payload"]["isComplete"] for e in events if e["type"] == "chat.turn.completed"] == [True]
        [state] = events[-1]["payload"]["repos"]
        assert state["currentBranch"] == "claude/hello"
        assert state["prUrls"] == [f"{origin.as_uri()}#claude/hello"]
    assert git(origin, "log", "-1", "--format=%s", "claude/hello").strip() == "Add hello.txt"
