"""The contract's Replica shapes, built from a `Workspace` row and what its engine reported.

Pure functions: no I/O. The engine speaks camelCase (EngineChatSummary, EngineRepoState); the Replica
API's own resources are snake_case (spec §2.1), so the mapping lives here, in one place.
"""

from __future__ import annotations

import re
from typing import Any

from replicas.store.models import Workspace, iso

PROVIDER_TITLES = {"claude": "Claude Code", "codex": "Codex", "cursor": "Cursor", "opencode": "Opencode",
                   "pi": "Pi"}
_PR_NUMBER = re.compile(r"/pull/(\d+)")


def list_item(row: Workspace) -> dict[str, Any]:
    """The contract's ReplicaListItem."""
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
