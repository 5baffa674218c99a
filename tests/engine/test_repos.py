"""Git status and diffs of the checkouts under ~/workspaces, on real git repositories."""

from __future__ import annotations

from replicas.engine import repos
from tests.conftest import git


async def test_a_clean_checkout_has_an_empty_diff(make_git_repo):
    repo = make_git_repo("clean")
    state = await repos.repo_state(repo, include_diff=True)
    assert state == {"name": "clean", "path": str(repo), "defaultBranch": "main", "currentBranch": "main",
                     "prUrls": [], "gitDiff": {"added": 0, "removed": 0, "fullDiff": ""},
                     "startHooksCompleted": False}


async def test_edits_and_untracked_files_count_and_show_in_the_full_diff(make_git_repo):
    repo = make_git_repo("work", {"a.txt": "one\ntwo\n"})
    (repo / "a.txt").write_text("one\nTWO\nthree\n")
    (repo / "new").mkdir()
    (repo / "new" / "b.txt").write_text("fresh\n")
    state = await repos.repo_state(repo, include_diff=True)
    assert state["gitDiff"]["added"] == 3 and state["gitDiff"]["removed"] == 1
    full = state["gitDiff"]["fullDiff"]
    assert "+TWO" in full and "-two" in full and "+fresh" in full and "new/b.txt" in full
    summary = await repos.repo_state(repo, include_diff=False)
    assert summary["gitDiff"] == {"added": 3, "removed": 1}
    assert git(repo, "status", "--porcelain").count("??") == 1  # nothing was staged


async def test_committed_work_on_a_branch_counts_against_the_default_branch(make_git_repo):
    repo = make_git_repo("feature", {"a.txt": "one\n"})
    git(repo, "checkout", "-q", "-b", "fix")
    (repo / "a.txt").write_text("one\ntwo\n")
    git(repo, "commit", "-q", "-am", "add two")
    (repo / "c.txt").write_text("c\n")
    state = await repos.repo_state(repo, include_diff=True, start_hooks_completed=True)
    assert (state["currentBranch"], state["defaultBranch"]) == ("fix", "main")
    assert state["gitDiff"]["added"] == 2 and state["gitDiff"]["removed"] == 0
    assert state["startHooksCompleted"] is True


async def test_the_default_branch_comes_from_origin_head(make_git_repo, tmp_path):
    origin = make_git_repo("origin", branch="trunk")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(origin), str(clone))
    git(clone, "checkout", "-q", "-b", "topic")
    state = await repos.repo_state(clone, include_diff=False)
    assert (state["defaultBranch"], state["currentBranch"]) == ("trunk", "topic")


def test_repositories_are_the_git_checkouts_under_workspaces(tmp_path, make_git_repo):
    workspaces = tmp_path / "git"
    make_git_repo("b")
    make_git_repo("a")
    (workspaces / "notes").mkdir()
    assert [p.name for p in repos.discover(workspaces)] == ["a", "b"]
    assert repos.discover(tmp_path / "missing") == []
