"""The contract's Replica shapes, built from a `Workspace` row and what its engine reported.

Pure functions: no I/O. The engine speaks camelCase (EngineChatSummary, EngineRepoState); the Replica
API's own resources are snake_case (spec §2.1), so the mapping lives here, in one place.
"""

from __future__ import annotations

import re
from typing import Any

from replicas.services.provisioning import checkout_folders
from replicas.services.warm_hooks import GLOBAL, LOG_KEY, REPOSITORY, failed
from replicas.store.models import Workspace, iso

PROVIDER_TITLES = {"claude": "Claude Code", "codex": "Codex", "cursor": "Cursor", "opencode": "Opencode",
                   "pi": "Pi"}
_PR_NUMBER = re.compile(r"/pull/(\d+)")


# What `list_item` reads: a list selects these columns alone (not the snapshot, which can be large).
LIST_COLUMNS = (Workspace.id, Workspace.name, Workspace.status, Workspace.source, Workspace.created_at,
                Workspace.last_activity_at, Workspace.repositories, Workspace.pull_requests)


def list_item(row: Workspace) -> dict[str, Any]:
    """The contract's ReplicaListItem, from a Workspace or a row of LIST_COLUMNS."""
    return {
        "id": str(row.id), "name": row.name, "status": row.status, "source": row.source,
        "created_at": iso(row.created_at), "last_activity_at": iso(row.last_activity_at),
        "repositories": [{"id": r["id"], "name": r["name"], "url": r["url"]} for r in row.repositories or []],
        "pull_requests": list(row.pull_requests or []),
    }


def replica_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """EngineChatSummary -> the contract's ReplicaChat."""
    return {"id": chat["id"], "provider": chat["provider"], "title": chat.get("title") or "",
            "created_at": chat.get("createdAt"), "updated_at": chat.get("updatedAt"),
            "processing": bool(chat.get("processing"))}


def workspace_chat(chat: dict[str, Any]) -> dict[str, Any]:
    """EngineChatSummary -> the contract's WorkspaceChat (camelCase, as the engine has it)."""
    keys = ("id", "provider", "title", "createdAt", "updatedAt", "processing", "parentChatId", "lastMessageText",
            "awaitingInput")
    out = {key: chat.get(key) for key in keys if key in chat}
    out.setdefault("parentChatId", None)
    out["processing"] = bool(out.get("processing"))
    return out


def repository_status(repo: dict[str, Any], include_diff: bool) -> dict[str, Any]:
    """EngineRepoState -> the contract's repository_statuses entry."""
    diff = repo.get("gitDiff")
    git_diff = None
    if diff is not None:
        git_diff = {"added": diff.get("added", 0), "removed": diff.get("removed", 0),
                    "full_diff": (diff.get("fullDiff") or "") if include_diff else ""}
    return {"repository": repo.get("name", ""), "branch": repo.get("currentBranch") or "",
            "default_branch": repo.get("defaultBranch") or "", "pr_urls": list(repo.get("prUrls") or []),
            "start_hooks_completed": bool(repo.get("startHooksCompleted")), "git_diff": git_diff}


def pull_requests_from(repos: list[dict[str, Any]], known: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The contract's pull_requests: what was recorded before, plus every PR URL the repos now report."""
    out = list(known)
    seen = {pr["url"] for pr in out}
    for repo in repos:
        numbers = {pr.get("url"): pr.get("number") for pr in repo.get("pullRequests") or []}
        for url in repo.get("prUrls") or []:
            if url in seen:
                continue
            seen.add(url)
            number = numbers.get(url)
            if number is None:
                match = _PR_NUMBER.search(url)
                number = int(match.group(1)) if match else 0
            out.append({"repository": repo.get("name", ""), "number": int(number), "url": url})
    return out


def active_agent(row: Workspace) -> str | None:
    """The agent working right now (the provider of a processing chat), `None` on a settled workspace."""
    for chat in (row.snapshot or {}).get("chats", []):
        if chat.get("processing"):
            return chat.get("provider")
    return None


def assistant_text(event: dict[str, Any]) -> str | None:
    """The assistant's words in one AgentEvent, for `last_assistant_message` (None if it has none)."""
    kind = event.get("type", "")
    payload = event.get("payload") or {}
    if kind == "claude-assistant":
        blocks = (payload.get("message") or {}).get("content") or []
        texts = [b.get("text", "") for b in blocks if isinstance(b, dict) and b.get("type") == "text"]
        return "".join(texts) or None
    if kind == "response_item" and payload.get("type") == "message" and payload.get("role") == "assistant":
        texts = [c.get("text", "") for c in payload.get("content") or [] if c.get("type") == "output_text"]
        return "".join(texts) or None
    if kind == "opencode-part-text":
        return (payload.get("part") or {}).get("text") or payload.get("text")
    return None


def warm_hook_status(entries: list[dict[str, Any]]) -> tuple[str, str | None]:
    """`completed`, or `failed` with which hooks failed and how, for some WarmHookLogEntry dicts."""
    bad = [entry for entry in entries if failed(entry)]
    if not bad:
        return "completed", None
    how = ["timed out" if entry.get("timedOut") else f"exited with {entry.get('exitCode')}" for entry in bad]
    return "failed", "; ".join(f"{entry.get('hookName')}: {what}" for entry, what in zip(bad, how, strict=True))


def environment_hooks(row: Workspace, warm_configured: bool) -> dict[str, Any]:
    """The contract's ReplicaEnvironment.hooks, from what this workspace ran (its warm hook log, kept on the
    row) and what its engine last reported (start hooks). A warm hook status is `completed` or `failed`
    (`details` names the failed hooks), `pending` before the workspace's warm hooks ran, else `none`.
    `warm_configured`: whether Global or the environment has a warm hook now."""
    snapshot = row.snapshot or {}
    warm = snapshot.get(LOG_KEY)  # None until its warm hooks ran
    pending = row.status == "preparing" and warm is None
    warm = list(warm or [])
    global_entries = [entry for entry in warm if entry.get("hookType") == GLOBAL]
    if global_entries:
        status, details = warm_hook_status(global_entries)
    else:
        status, details = ("pending" if pending and warm_configured else "none"), None
    reported = {repo.get("name"): repo for repo in snapshot.get("repos", [])}
    repositories = []
    names = [repo["name"] for repo in row.repositories or []]
    for name, folder in zip(names, checkout_folders(names), strict=True):
        state = reported.get(folder)  # the engine names a repository after its checkout folder
        start = "unknown" if state is None else ("completed" if state.get("startHooksCompleted") else "pending")
        entries = [entry for entry in warm if entry.get("hookType") == REPOSITORY and entry.get("hookName") == folder]
        warm_status = warm_hook_status(entries)[0] if entries else ("pending" if pending else "none")
        repositories.append({"repository_name": name, "warm_hook": warm_status, "start_hook": start})
    return {"global_warm_hook": {"status": status, "details": details}, "repositories": repositories}
