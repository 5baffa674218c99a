"""GitLab merge requests for the team loop's workspaces. The engine opens a GitHub pull request itself after a
turn (engine/publish.py); for any other origin it only pushes the branch and records `<origin>#<branch>`. For a
workspace that answers a GitLab thread, the watcher opens the merge request of each branch the workspace pushed
to the thread's project, through GitLab's API with the integration's token, before it posts the turn's result:

    await open_merge_requests(services, session, workspace, thread)   # workspace.pull_requests gains the MRs

An open merge request of the branch is reused (a later turn, or one opened by hand). The merge request is added
to the workspace's `pull_requests` (what the API shows and what the loop tracks for follow-ups and closing), merged
into the row's current value under its lock (`add_pull_requests`): the projection of the engine's events writes the
same column meanwhile, under the same lock, and neither drops what the other added. A GitLab failure is logged and
recorded on the thread by the caller's reply; the branch stays pushed.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse

from replicas.services import integration_credentials
from replicas.services.providers import ProviderError, client_of
from replicas.services.workspaces import lock_workspace
from replicas.store.models import Workspace
from replicas.store.team_models import TeamThread

log = logging.getLogger("replicas.team_loop")


def pushed_branches(workspace: Workspace, project_path: str) -> list[tuple[str, str, str]]:
    """(checkout name, branch, base branch) of each branch the workspace pushed to `project_path` that has no
    merge request in its records (the engine records such a branch as `<origin>#<branch>`, number 0)."""
    wanted = project_path.strip("/").lower()
    found = []
    for repo in (workspace.snapshot or {}).get("repos", []):
        for record in repo.get("pullRequests") or []:
            origin, _, branch = (record.get("url") or "").partition("#")
            path = urlparse(origin).path.strip("/").removesuffix(".git").lower()
            if record.get("number") == 0 and branch and path == wanted:
                found.append((repo.get("name") or "", branch, repo.get("defaultBranch") or "main"))
    return found


def merge_request_text(thread: TeamThread, branch: str) -> tuple[str, str]:
    """Title and description: GitLab's own `Resolve "<issue title>"` / `Closes #<iid>` for an issue's work."""
    title = (thread.details or {}).get("title")
    if thread.kind == "issue" and title:
        return f'Resolve "{title}"', f"Closes #{thread.target.get('iid')}\n\nOpened by Replicas from `{branch}`."
    return branch, f"Opened by Replicas from `{branch}`."


async def open_merge_requests(services: Any, session, workspace: Workspace,
                              thread: TeamThread) -> dict[str, tuple[str, str]]:
    """Open (or find) the merge request of each pushed branch; returns {URL: (branch, base branch)} of each.
    Commits `session`."""
    project = (thread.target or {}).get("repository")
    branches = pushed_branches(workspace, project or "") if thread.provider == "gitlab" and project else []
    if not branches:
        return {}
    credential = await integration_credentials.load(session, services.box, workspace.organization_id, "gitlab")
    records, urls = [], {}
    async with client_of(credential, services.settings) as gitlab:
        for checkout, branch, base in branches:
            title, description = merge_request_text(thread, branch)
            try:
                opened = await gitlab.open_merge_request(thread.target["project_id"], branch, base, title, description)
            except ProviderError as exc:
                log.warning("team loop could not open the merge request of %s on %s: %s", branch, project, exc)
                continue
            url = opened.get("web_url")
            if not url:
                continue
            urls[url] = (branch, base)
            records.append({"repository": checkout, "number": int(opened.get("iid") or 0), "url": url})
    await add_pull_requests(session, workspace.id, records)
    return urls


async def add_pull_requests(session, workspace_id, records: list[dict[str, Any]]) -> None:
    """Add `records` to the workspace's `pull_requests` that are not there yet, read and written under the row's
    lock (the caller's GitLab calls took a while: what the session read before may be stale). Commits."""
    row = await lock_workspace(session, workspace_id)
    if row is None:
        await session.rollback()
        return
    current = list(row.pull_requests or [])
    added = [record for record in records if all(known.get("url") != record["url"] for known in current)]
    if added:
        row.pull_requests = current + added
        log.info("team loop added merge request(s) %s to workspace %s", [r["url"] for r in added], workspace_id)
    await session.commit()
