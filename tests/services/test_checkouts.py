"""Workspace checkouts from a bare mirror: clean, independent, writable, and offline from the origin."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from replicas.services import git as git_service
from replicas.services.checkouts import (
    DEFAULT_METHOD,
    BranchNotFound,
    CheckoutMethod,
    DestinationNotEmpty,
    checkout,
)
from tests.conftest import git


@dataclass
class Repo:
    origin: Path
    url: str
    data_dir: Path
    mirror: Path


@pytest.fixture
async def repo(make_git_repo, tmp_path) -> Repo:
    origin = make_git_repo("origin", {"README.md": "# origin\n", "src/app.py": "print('hello')\n"})
    git(origin, "branch", "feature")
    url = git_service.normalize_url(str(origin))
    data_dir = tmp_path / "data"
    return Repo(origin, url, data_dir, await git_service.ensure_mirror(data_dir, "origin", url))


def succeeds(cwd: Path, *args: str) -> bool:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True).returncode == 0


def inodes(root: Path) -> set[tuple[int, int]]:
    found = set()
    for directory, _, files in os.walk(root):
        for name in files:
            stat = os.stat(os.path.join(directory, name))
            found.add((stat.st_dev, stat.st_ino))
    return found


async def test_default_checkout_is_a_clean_checkout_of_the_branch_with_origin_at_the_real_url(repo, tmp_path):
    dest = tmp_path / "workspaces" / "origin"

    result = await checkout(repo.mirror, dest, "main", origin_url=repo.url)

    commit = git(repo.origin, "rev-parse", "main").strip()
    assert result.method is DEFAULT_METHOD
    assert (result.path, result.branch, result.commit) == (dest, "main", commit)
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "log", "-1", "--format=%H").strip() == commit
    assert git(dest, "symbolic-ref", "--short", "HEAD").strip() == "main"
    assert git(dest, "rev-parse", "--abbrev-ref", "main@{upstream}").strip() == "origin/main"
    assert git(dest, "remote", "get-url", "origin").strip() == repo.url
    assert (dest / "src" / "app.py").read_text() == "print('hello')\n"


async def test_checkout_of_another_branch_into_an_empty_directory_tracks_it(repo, tmp_path):
    dest = tmp_path / "ws"
    dest.mkdir()

    result = await checkout(repo.mirror, dest, "feature", origin_url=repo.url)

    assert git(dest, "symbolic-ref", "--short", "HEAD").strip() == "feature"
    assert git(dest, "rev-parse", "--abbrev-ref", "feature@{upstream}").strip() == "origin/feature"
    assert result.commit == git(repo.origin, "rev-parse", "feature").strip()


async def test_commits_and_branches_in_one_checkout_touch_neither_the_mirror_nor_another_checkout(
        repo, tmp_path):
    first, second = tmp_path / "ws1", tmp_path / "ws2"
    await checkout(repo.mirror, first, "main", origin_url=repo.url)
    await checkout(repo.mirror, second, "main", origin_url=repo.url)
    mirror_refs = git(repo.mirror, "for-each-ref")

    with open(first / "README.md", "a") as readme:  # an in-place write, not a rename
        readme.write("edited by the agent\n")
    (first / "new.txt").write_text("new\n")
    git(first, "checkout", "-q", "-b", "agent/change")
    git(first, "add", "-A")
    git(first, "commit", "-q", "-m", "agent change")
    new_commit = git(first, "rev-parse", "HEAD").strip()

    assert git(first, "log", "-1", "--format=%s").strip() == "agent change"
    assert (second / "README.md").read_text() == "# origin\n"
    assert not (second / "new.txt").exists()
    assert git(second, "status", "--porcelain") == ""
    assert not succeeds(second, "rev-parse", "--verify", "--quiet", "agent/change")
    assert git(repo.mirror, "for-each-ref") == mirror_refs
    assert not succeeds(repo.mirror, "cat-file", "-e", new_commit)

    git(first, "push", "-q", "origin", "agent/change")
    assert git(repo.origin, "rev-parse", "agent/change").strip() == new_commit


async def test_default_checkout_shares_no_file_with_the_mirror(repo, tmp_path):
    dest = tmp_path / "ws"
    await checkout(repo.mirror, dest, "main", origin_url=repo.url)
    hardlinked = tmp_path / "hardlinked"
    await checkout(repo.mirror, hardlinked, "main", origin_url=repo.url, method=CheckoutMethod.HARDLINK)

    assert not inodes(dest) & inodes(repo.mirror)
    # The reason HARDLINK is not the default: a sandbox owning these inodes can rewrite the mirror.
    assert inodes(hardlinked) & inodes(repo.mirror)


async def rewrite_history_and_prune_mirror(repo: Repo, dest: Path, method: CheckoutMethod) -> str:
    """Check out a commit, then force-push it away from the origin and prune it from the mirror."""
    (repo.origin / "doomed.txt").write_text("only in the commit that is force-pushed away\n")
    git(repo.origin, "add", "-A")
    git(repo.origin, "commit", "-q", "-m", "doomed")
    await git_service.ensure_mirror(repo.data_dir, "origin", repo.url)
    doomed = (await checkout(repo.mirror, dest, "main", origin_url=repo.url, method=method)).commit

    git(repo.origin, "reset", "-q", "--hard", "HEAD~1")
    (repo.origin / "other.txt").write_text("replacement\n")
    git(repo.origin, "add", "-A")
    git(repo.origin, "commit", "-q", "-m", "replacement")
    await git_service.ensure_mirror(repo.data_dir, "origin", repo.url)
    git(repo.mirror, "reflog", "expire", "--expire=now", "--all")
    git(repo.mirror, "gc", "--quiet", "--prune=now")
    assert not succeeds(repo.mirror, "cat-file", "-e", doomed), "the mirror still holds the old commit"
    return doomed


@pytest.mark.parametrize("method", [CheckoutMethod.COPY, CheckoutMethod.HARDLINK, CheckoutMethod.UPLOAD_PACK])
async def test_checkout_still_works_after_the_mirror_is_fetched_and_garbage_collected(repo, tmp_path, method):
    dest = tmp_path / "ws"
    doomed = await rewrite_history_and_prune_mirror(repo, dest, method)

    git(dest, "fsck", "--full", "--no-progress")
    assert git(dest, "log", "-1", "--format=%H").strip() == doomed
    assert git(dest, "status", "--porcelain") == ""
    assert git(dest, "show", "HEAD:doomed.txt").startswith("only in the commit")
    (dest / "later.txt").write_text("later\n")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "later")
    git(dest, "checkout", "-q", "-b", "agent/later")


async def test_shared_checkout_breaks_when_the_mirror_prunes_what_it_borrowed(repo, tmp_path):
    """Why SHARED is not the default: the checkout depends on the mirror never pruning."""
    dest = tmp_path / "ws"
    await rewrite_history_and_prune_mirror(repo, dest, CheckoutMethod.SHARED)

    assert not succeeds(dest, "fsck", "--full", "--no-progress")
    assert not succeeds(dest, "show", "HEAD:doomed.txt")


async def test_a_second_checkout_of_the_same_repository_needs_no_origin(repo, tmp_path):
    first = await checkout(repo.mirror, tmp_path / "ws1", "main", origin_url=repo.url)
    shutil.rmtree(repo.origin)
    with pytest.raises(git_service.GitError):
        await git_service.ensure_mirror(repo.data_dir, "origin", repo.url)  # the origin is truly gone

    second = await checkout(repo.mirror, tmp_path / "ws2", "main", origin_url=repo.url)

    assert second.commit == first.commit
    assert git(second.path, "status", "--porcelain") == ""
    assert (second.path / "README.md").read_text() == "# origin\n"


async def test_a_branch_the_mirror_lacks_is_a_clear_error_and_writes_nothing(repo, tmp_path):
    dest = tmp_path / "ws"

    with pytest.raises(BranchNotFound) as raised:
        await checkout(repo.mirror, dest, "no-such-branch", origin_url=repo.url)

    assert raised.value.status == 404
    assert "'no-such-branch' is not a branch of" in raised.value.details
    assert "fatal:" in raised.value.details  # git's own reason
    assert not dest.exists()


async def test_checking_out_into_a_non_empty_destination_is_refused(repo, tmp_path):
    dest = tmp_path / "ws"
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory\n")

    with pytest.raises(DestinationNotEmpty) as raised:
        await checkout(repo.mirror, dest, "main", origin_url=repo.url)
    with pytest.raises(DestinationNotEmpty):
        await checkout(repo.mirror, a_file, "main", origin_url=repo.url)

    assert raised.value.status == 409
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert a_file.read_text() == "not a directory\n"
