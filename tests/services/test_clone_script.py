"""The script a workspace runs to clone its repositories itself (provisioning.clone_script; Kubernetes runs it in a
pod, tests/kubernetes/test_product.py), run here with sh in a scratch home against real git repositories: the
clone is at the planned commit with the agent's identity, a checkout already there is kept, and a planned commit
the origin lost leaves the clone at the branch's newest commit, saying so."""

from __future__ import annotations

import subprocess
from pathlib import Path

from replicas.services.provisioning import AGENT_EMAIL, AGENT_NAME, clone_script, clones_from_origin
from tests.conftest import git


def run(home: Path, plan: list[dict[str, str]]) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", "-c", clone_script(plan)], cwd=home, capture_output=True, text=True,
                          env={"HOME": str(home), "PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0"})


def test_the_script_clones_at_the_planned_commit_keeps_a_checkout_and_survives_a_lost_commit(tmp_path,
                                                                                               make_git_repo):
    origin = make_git_repo("shop", {"README.md": "one\n"})
    planned = git(origin, "rev-parse", "HEAD").strip()
    (origin / "README.md").write_text("two\n")
    git(origin, "commit", "-qam", "second")
    home = tmp_path / "home"
    (home / "workspaces").mkdir(parents=True)
    plan = [{"path": "workspaces/shop", "url": str(origin), "branch": "main", "commit": planned}]

    done = run(home, plan)
    assert done.returncode == 0, done.stderr
    checkout = home / "workspaces" / "shop"
    assert git(checkout, "rev-parse", "HEAD").strip() == planned and (checkout / "README.md").read_text() == "one\n"
    assert git(checkout, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert git(checkout, "config", "user.name").strip() == AGENT_NAME
    assert git(checkout, "config", "user.email").strip() == AGENT_EMAIL
    assert not (home / "workspaces" / "shop.partial").exists()

    (checkout / "work.txt").write_text("the agent's\n")  # a second run (a provisioning retried) keeps it
    assert run(home, plan).returncode == 0 and (checkout / "work.txt").exists()

    lost = [{**plan[0], "path": "workspaces/again", "commit": "0" * 40}]
    done = run(home, lost)
    assert done.returncode == 0, done.stderr
    assert "workspaces/again: 000000000000 is gone from the origin; at its newest commit" in done.stderr
    assert (home / "workspaces" / "again" / "README.md").read_text() == "two\n"

    broken = run(home, [{**plan[0], "path": "workspaces/nope", "url": str(tmp_path / "missing")}])
    assert broken.returncode != 0 and not (home / "workspaces" / "nope").exists()


def test_only_network_origins_are_cloned_by_the_workspace():
    for url in ("https://github.com/acme/shop.git", "http://git.internal/shop", "ssh://git@host/shop.git",
                "git@github.com:acme/shop.git", "git://host/shop"):
        assert clones_from_origin(url), url
    for url in ("/srv/git/shop", "file:///srv/git/shop", "./shop", "C:shop"):
        assert not clones_from_origin(url), url
