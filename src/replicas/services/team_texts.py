"""What the team loop says: the messages a workspace is sent for a provider's event (its first message, a
mention, a Slack reply, review comments, a conflict, failed CI) and the notice posted where a workspace cannot be
started. Pure functions of the event and the thread, so each wording is read, changed and tested in one place
(team_loop.py decides when each is sent; team_replies.py words what is posted back after a turn).

    text = first_message(event, branch="replicas/fix-checkout")
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from replicas.services.team_events import TeamEvent
from replicas.services.team_threads import PR_KINDS
from replicas.store.team_models import TeamMessage, TeamThread

PROVIDER_NAMES = {"github": "GitHub", "gitlab": "GitLab"}
THREAD_NOUNS = {"issue": "issue", "pull_request": "pull request", "merge_request": "merge request"}
PLAN_THEN_PR = ("Plan first: write down a short plan of the change. Then carry it out on a new branch, commit, "
                "and open a pull request.")


def where(event: TeamEvent) -> str:
    """The event's thread as the agent reads it: `GitHub issue acme/shop#12: <title>` and its URL."""
    if event.provider in PROVIDER_NAMES:
        mark = "!" if event.thread_kind == "merge_request" else "#"
        title = f": {event.title}" if event.title else ""
        return (f"{PROVIDER_NAMES[event.provider]} {THREAD_NOUNS[event.thread_kind or 'issue']} "
                f"{event.repository}{mark}{event.number}{title}" + (f"\n{event.url}" if event.url else ""))
    if event.provider == "linear":
        name = event.target.get("identifier") or "issue"
        return f"Linear issue {name}" + (f": {event.title}" if event.title else "") + \
            (f"\n{event.url}" if event.url else "")
    return "Slack"


def mention_text(event: TeamEvent) -> str:
    who = f"@{event.actor}" if event.actor and event.provider != "slack" else "Someone"
    return f"{who} on {where(event)}:\n\n{event.text}".strip()


def thread_reply_text(event: TeamEvent) -> str:
    return f"Reply in the Slack thread:\n\n{event.text}"


def first_message(event: TeamEvent, branch: str | None) -> str:
    """A new workspace's first message: the issue and the comment, then plan, work and open a pull request (on
    someone else's pull request: work on its branch)."""
    parts = []
    if event.provider == "slack":
        parts.append(f"A request from Slack:\n\n{event.text}")
        parts.append("Your final message is posted back in the Slack thread.")
        return "\n\n".join(parts)
    parts.append(f"You were asked to work on {where(event)}")
    if event.body:
        parts.append(f"## Description\n{event.body}")
    if event.text:
        who = f" by @{event.actor}" if event.actor and event.provider != "linear" else ""
        parts.append(f"## Comment{who}\n{event.text}")
    if event.thread_kind in PR_KINDS:
        checkout = (f"`git fetch origin {branch} && git switch {branch}`" if branch else
                    f"`git fetch origin pull/{event.number}/head` and switch to the pull request's branch")
        parts.append(f"Work on the pull request's own branch ({checkout}): commit there and push; do not open "
                     "another pull request.")
    else:
        parts.append(PLAN_THEN_PR)
    parts.append("Your final message is posted back as the summary of your work.")
    return "\n\n".join(parts)


def replacement_note(branch: str) -> str:
    """Added to a follow-up that starts a new workspace in place of a deleted one."""
    return (f"\n\nThis workspace replaces one that was deleted. Work on the pull request's branch "
            f"(`git fetch origin {branch} && git switch {branch}`), commit there and push.")


def review_text(event: TeamEvent) -> str:
    """One review comment, as a line of the batch (`batch_text`)."""
    place = f"`{event.file}:{event.line}`" if event.file and event.line else (f"`{event.file}`" if event.file
                                                                               else "review")
    who = f"@{event.actor}" if event.actor else "a reviewer"
    text = event.text or "(changes requested, no comment)"
    return f"- {place} ({who}): {text}" + (f"\n  {event.url}" if event.url else "")


def batch_text(rows: Iterable[TeamMessage], thread: TeamThread) -> str:
    """A thread's pending messages as one: its review comments together, then the others."""
    rows = list(rows)
    reviews = [row.text for row in rows if row.kind == "review"]
    parts = []
    if reviews:
        url = (thread.details or {}).get("url") or thread.key
        parts.append(f"Review comments on {url}:\n\n" + "\n".join(reviews)
                     + "\n\nAddress them on the pull request's branch, commit and push.")
    parts += [row.text for row in rows if row.kind != "review"]
    return "\n\n---\n\n".join(parts)


def conflict_text(event: TeamEvent, thread: TeamThread | None) -> str:
    details = (thread.details if thread is not None else None) or {}
    base, url = event.base_branch or details.get("base_branch"), event.url or details.get("url")
    noun = THREAD_NOUNS.get(event.thread_kind or "", "pull request")
    return (f"The {noun} {url or event.thread_key} has merge conflicts with `{base or 'its base branch'}`. "
            f"Merge `origin/{base or 'the base branch'}` into its branch, resolve the conflicts, commit and push.")


def job_section(job: dict[str, Any], log_tail: str | None) -> str:
    """One failed job: its name and conclusion, its URL, and the tail of its log (or what the check said)."""
    body = f"```text\n{log_tail}\n```" if log_tail else (job.get("summary") or "(no log available)")
    return f"### {job.get('name')} ({job.get('conclusion')})\n" + (f"{job['url']}\n" if job.get("url") else "") + body


def check_failed_text(event: TeamEvent, sections: list[str]) -> str:
    commit = f" (commit {event.head_sha[:12]})" if event.head_sha else ""
    return (f"CI failed on {event.url or event.thread_key}{commit}:\n\n" + "\n\n".join(sections)
            + "\n\nFix it on the pull request's branch, commit and push.")


def no_environment_notice(event: TeamEvent) -> str:
    """Posted on the thread when no environment fits the event."""
    what = (f"no environment is bound to {event.repository}" if event.provider in PROVIDER_NAMES else
            "no environment matches; name one with [env:name] or set the integration's default environment")
    return f"I can't start a workspace for this: {what}."
