"""What a verified provider delivery asks of the agent in the team's loop: pure functions from the provider's
payload to `TeamEvent`s (no store, no network), so each shape is tested on its own.

    events = parse("github", headers, payload, LoopOptions(handle="replicas", bot_user_id=None))

Kinds:
- `mention`: `@<handle>` in a GitHub/GitLab comment or review, a Slack app mention, a Linear comment, or a
  Linear issue assigned to the Replicas user: starts a workspace, or reaches the thread's workspace.
- `thread_reply`: a message in a Slack thread (reaches the thread's workspace, if it has one).
- `review`: a review comment (file, line, text) or a review requesting changes, on a pull/merge request.
- `check_failed`: a failed check run, workflow run or pipeline (with the failing jobs when the payload names
  them; a workflow run's jobs are listed through the API later). A GitLab branch pipeline names no merge request
  (`thread_key` None, `head_branch` its branch): the branch's tracked merge request is found by the team loop.
- `conflict`: a pull/merge request that cannot be merged; `push`: a branch moved (its pull requests may now
  conflict).
- `pr_closed` (`merged` says which), `pr_reopened`, `issue_closed`.

`dedupe_key` is the delivery, or the thing itself where two deliveries report it (a Slack message that is
both an app mention and a channel message; a job reported by a check run and by a workflow run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

MAX_TEXT = 8000
SLACK_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
ENV_HINT = re.compile(r"\[(?:env|repo):\s*([^\]]+?)\s*\]", re.IGNORECASE)
PLAN = re.compile(r"(?:^|\s)/plan(?=\s|$)")
FAILED = ("failure", "timed_out")


@dataclass(frozen=True)
class LoopOptions:
    handle: str
    bot_user_id: str | None = None  # Slack: the bot's user id; Linear: the Replicas user's id


@dataclass
class TeamEvent:
    """One thing a delivery asks; see the module docstring for `kind`."""

    provider: str
    kind: str
    dedupe_key: str
    thread_key: str | None = None
    thread_kind: str | None = None  # issue | pull_request | merge_request | slack_thread | linear_issue
    target: dict[str, Any] = field(default_factory=dict)  # where answers go
    actor: str | None = None
    actor_is_bot: bool = False
    comment_id: str | None = None
    mentioned: bool = False
    text: str = ""
    title: str | None = None
    body: str | None = None
    url: str | None = None
    repository: str | None = None
    repository_ids: list[str] = field(default_factory=list)
    number: int | None = None
    head_branch: str | None = None
    head_sha: str | None = None
    base_branch: str | None = None
    merged: bool = False
    file: str | None = None
    line: int | None = None
    jobs: list[dict[str, Any]] = field(default_factory=list)
    run_id: int | None = None
    ts: str | None = None
    environment_hint: str | None = None
    plan_mode: bool = False


def cut(text: Any, limit: int = MAX_TEXT) -> str:
    text = text if isinstance(text, str) else ""
    return text if len(text) <= limit else text[:limit] + "…"


def mentions(text: str | None, handle: str) -> bool:
    """Whether `text` names `@handle` (not inside an e-mail address or a longer name)."""
    return bool(text) and re.search(rf"(?<![\w@/.-])@{re.escape(handle)}(?![\w-])", text, re.IGNORECASE) is not None


def environment_hint(*texts: str | None) -> str | None:
    for text in texts:
        match = ENV_HINT.search(text or "")
        if match:
            return match.group(1)
    return None


def parse(provider: str, headers: Any, payload: dict[str, Any], options: LoopOptions) -> list[TeamEvent]:
    parser = {"github": parse_github, "gitlab": parse_gitlab, "slack": parse_slack, "linear": parse_linear}.get(
        provider)
    return parser(headers, payload, options) if parser else []


# -- GitHub ----------------------------------------------------------------------------------------


def _github_base(payload: dict[str, Any], delivery: str, kind: str, number: int | None, on_pr: bool) -> TeamEvent:
    repo = payload.get("repository") or {}
    name = repo.get("full_name") or ""
    sender = payload.get("sender") or {}
    return TeamEvent(
        "github", kind, f"github:{delivery}", thread_key=f"github:{name.lower()}#{number}" if number else None,
        thread_kind="pull_request" if on_pr else "issue", target={"repository": name, "number": number},
        actor=sender.get("login"), actor_is_bot=sender.get("type") == "Bot", repository=name, number=number,
        repository_ids=[v for v in (name, repo.get("html_url"), repo.get("clone_url"), repo.get("ssh_url")) if v])


def _github_pull(event: TeamEvent, pull: dict[str, Any]) -> TeamEvent:
    event.url = event.url or pull.get("html_url")
    event.title = event.title or pull.get("title")
    event.head_branch = (pull.get("head") or {}).get("ref")
    event.head_sha = (pull.get("head") or {}).get("sha")
    event.base_branch = (pull.get("base") or {}).get("ref")
    return event


def parse_github(headers: Any, payload: dict[str, Any], options: LoopOptions) -> list[TeamEvent]:
    kind, delivery = headers.get("x-github-event", ""), headers.get("x-github-delivery") or ""
    action = payload.get("action")
    if not delivery or not payload.get("repository"):
        return []
    if kind == "issue_comment" and action == "created":
        issue, comment = payload.get("issue") or {}, payload.get("comment") or {}
        if not mentions(comment.get("body"), options.handle):
            return []
        on_pr = bool(issue.get("pull_request"))
        event = _github_base(payload, delivery, "mention", issue.get("number"), on_pr)
        event.mentioned, event.text, event.comment_id = True, cut(comment.get("body")), str(comment.get("id"))
        event.actor = (comment.get("user") or {}).get("login") or event.actor
        event.title, event.body = issue.get("title"), cut(issue.get("body"))
        event.url = (issue.get("pull_request") or {}).get("html_url") or issue.get("html_url")
        return [event]
    if kind == "issues" and action == "closed":
        issue = payload.get("issue") or {}
        return [_github_base(payload, delivery, "issue_closed", issue.get("number"), False)]
    if kind == "pull_request_review_comment" and action == "created":
        comment, pull = payload.get("comment") or {}, payload.get("pull_request") or {}
        event = _github_pull(_github_base(payload, delivery, "review", pull.get("number"), True), pull)
        event.text, event.comment_id, event.url = cut(comment.get("body")), str(comment.get("id")), \
            comment.get("html_url") or event.url
        event.actor = (comment.get("user") or {}).get("login") or event.actor
        event.file, event.line = comment.get("path"), comment.get("line") or comment.get("original_line")
        event.mentioned = mentions(comment.get("body"), options.handle)
        return [event]
    if kind == "pull_request_review" and action == "submitted":
        review, pull = payload.get("review") or {}, payload.get("pull_request") or {}
        mentioned = mentions(review.get("body"), options.handle)
        state = (review.get("state") or "").lower()
        if state != "changes_requested" and not mentioned:
            return []
        event = _github_pull(_github_base(payload, delivery, "review" if state == "changes_requested" else "mention",
                                          pull.get("number"), True), pull)
        event.text, event.comment_id, event.mentioned = cut(review.get("body")), f"review-{review.get('id')}", \
            mentioned
        event.url = review.get("html_url") or event.url
        event.actor = (review.get("user") or {}).get("login") or event.actor
        return [event]
    if kind == "check_run" and action == "completed":
        run = payload.get("check_run") or {}
        if run.get("conclusion") not in FAILED:
            return []
        output = run.get("output") or {}
        job = {"id": run.get("id"), "name": run.get("name"), "url": run.get("html_url") or run.get("details_url"),
               "conclusion": run.get("conclusion"),
               "summary": cut("\n".join(v for v in (output.get("title"), output.get("summary"), output.get("text"))
                                        if v), 3000)}
        return _per_pull(payload, delivery, run.get("pull_requests") or [], lambda e: e.jobs.append(job),
                         run.get("head_sha"), (run.get("check_suite") or {}).get("head_branch"),
                         dedupe=f"github-job:{(payload['repository'].get('full_name') or '').lower()}:{run.get('id')}")
    if kind == "workflow_run" and action == "completed":
        run = payload.get("workflow_run") or {}
        if run.get("conclusion") not in FAILED:
            return []

        def fill(event: TeamEvent) -> None:
            event.run_id, event.title = run.get("id"), run.get("name")

        return _per_pull(payload, delivery, run.get("pull_requests") or [], fill, run.get("head_sha"),
                         run.get("head_branch"))
    if kind == "pull_request":
        pull = payload.get("pull_request") or {}
        if action in ("closed", "reopened"):
            event = _github_pull(_github_base(payload, delivery, "pr_closed" if action == "closed" else "pr_reopened",
                                              pull.get("number"), True), pull)
            event.merged = bool(pull.get("merged"))
            return [event]
        if pull.get("state") == "open" and (pull.get("mergeable") is False or pull.get("mergeable_state") == "dirty"):
            event = _github_pull(_github_base(payload, delivery, "conflict", pull.get("number"), True), pull)
            base_sha = (pull.get("base") or {}).get("sha")
            event.dedupe_key = f"github-conflict:{event.thread_key}:{event.head_sha}:{base_sha}"
            return [event]
        return []
    if kind == "push" and (payload.get("ref") or "").startswith("refs/heads/") and not payload.get("deleted"):
        event = _github_base(payload, delivery, "push", None, False)
        event.base_branch, event.head_sha = payload["ref"][len("refs/heads/"):], payload.get("after")
        return [event]
    return []


def _per_pull(payload: dict[str, Any], delivery: str, pulls: list[dict[str, Any]], fill, head_sha: str | None,
              head_branch: str | None, dedupe: str | None = None) -> list[TeamEvent]:
    """One `check_failed` event per pull request a run names; none named: one event found by its branch."""
    events = []
    for pull in pulls or [None]:
        number = (pull or {}).get("number")
        event = _github_base(payload, delivery, "check_failed", number, True)
        event.head_sha, event.head_branch = head_sha, ((pull or {}).get("head") or {}).get("ref") or head_branch
        html_url = (payload.get("repository") or {}).get("html_url")
        event.url = f"{html_url}/pull/{number}" if html_url and number else None  # a run names no PR URL
        if dedupe:
            event.dedupe_key = f"{dedupe}#{number}" if number else dedupe
        elif number:
            event.dedupe_key = f"github:{delivery}#{number}"
        fill(event)
        events.append(event)
    return events


# -- GitLab ----------------------------------------------------------------------------------------


def _gitlab_base(payload: dict[str, Any], delivery: str, kind: str, iid: int | None,
                 on_mr: bool) -> TeamEvent:
    project = payload.get("project") or {}
    path = project.get("path_with_namespace") or ""
    mark = "!" if on_mr else "#"
    user = payload.get("user") or {}
    return TeamEvent(
        "gitlab", kind, f"gitlab:{delivery}", thread_key=f"gitlab:{path.lower()}{mark}{iid}" if iid else None,
        thread_kind="merge_request" if on_mr else "issue",
        target={"project_id": project.get("id"), "noteable": "merge_requests" if on_mr else "issues", "iid": iid,
                "repository": path},
        actor=user.get("username"), actor_is_bot=bool(user.get("bot")), repository=path, number=iid,
        repository_ids=[v for v in (path, project.get("web_url"), project.get("git_http_url"),
                                    project.get("git_ssh_url")) if v])


def parse_gitlab(headers: Any, payload: dict[str, Any], options: LoopOptions) -> list[TeamEvent]:
    delivery = headers.get("x-gitlab-event-uuid") or headers.get("idempotency-key") or ""
    kind, attrs = payload.get("object_kind"), payload.get("object_attributes") or {}
    if not delivery:
        return []
    if kind == "note":
        on_mr = attrs.get("noteable_type") == "MergeRequest"
        node = payload.get("merge_request" if on_mr else "issue") or {}
        if attrs.get("noteable_type") not in ("MergeRequest", "Issue") or attrs.get("system") \
                or attrs.get("action") not in (None, "create"):
            return []  # a system note ("mentioned in !3"), or an edited note (GitLab 16+ delivers those too)
        mentioned = mentions(attrs.get("note"), options.handle)
        diff = on_mr and (attrs.get("type") == "DiffNote" or attrs.get("position"))
        if not mentioned and not diff:
            return []
        event = _gitlab_base(payload, delivery, "review" if diff else "mention", node.get("iid"), on_mr)
        event.mentioned, event.text, event.comment_id = mentioned, cut(attrs.get("note")), str(attrs.get("id"))
        event.title, event.body, event.url = node.get("title"), cut(node.get("description")), attrs.get("url")
        event.head_branch, event.base_branch = node.get("source_branch"), node.get("target_branch")
        if diff:
            position = attrs.get("position") or {}
            event.file = position.get("new_path") or position.get("old_path")
            event.line = position.get("new_line") or position.get("old_line")
        return [event]
    if kind == "issue" and attrs.get("action") == "close":
        return [_gitlab_base(payload, delivery, "issue_closed", attrs.get("iid"), False)]
    if kind == "merge_request":
        event = _gitlab_base(payload, delivery, "pr_closed", attrs.get("iid"), True)
        event.url, event.title = attrs.get("url"), attrs.get("title")
        event.head_branch, event.base_branch = attrs.get("source_branch"), attrs.get("target_branch")
        event.head_sha = (attrs.get("last_commit") or {}).get("id")
        if attrs.get("action") in ("merge", "close"):
            event.merged = attrs.get("action") == "merge"
            return [event]
        if attrs.get("state") == "opened" and (attrs.get("merge_status") == "cannot_be_merged"
                                               or attrs.get("detailed_merge_status") == "conflict"):
            event.kind = "conflict"
            event.dedupe_key = f"gitlab-conflict:{event.thread_key}:{event.head_sha}"
            return [event]
        return []
    if kind == "pipeline" and attrs.get("status") == "failed" and (payload.get("merge_request")
                                                                   or not attrs.get("tag")):
        # A merge request pipeline names its MR (its `ref` is `refs/merge-requests/<iid>/head`: the branch is the
        # MR's source); a branch pipeline names none (`iid` None): its branch's tracked MR is found later.
        mr = payload.get("merge_request") or {}
        event = _gitlab_base(payload, delivery, "check_failed", mr.get("iid"), True)
        event.url, event.head_sha = mr.get("url"), attrs.get("sha")
        event.head_branch = mr.get("source_branch") or attrs.get("ref")
        event.run_id, event.title = attrs.get("id"), f"pipeline {attrs.get('id')}"
        event.jobs = [{"id": build.get("id"), "name": build.get("name"), "conclusion": "failed",
                       "url": f"{(payload.get('project') or {}).get('web_url')}/-/jobs/{build.get('id')}"}
                      for build in payload.get("builds") or [] if build.get("status") == "failed"]
        return [event]
    if kind == "push" and (payload.get("ref") or "").startswith("refs/heads/") \
            and (payload.get("after") or "").strip("0"):  # a deleted branch's `after` is all zeros
        event = _gitlab_base(payload, delivery, "push", None, False)
        event.base_branch, event.head_sha = payload["ref"][len("refs/heads/"):], payload.get("after")
        event.actor = payload.get("user_username")
        return [event]
    return []


# -- Slack -----------------------------------------------------------------------------------------


def slack_bot_user(payload: dict[str, Any], options: LoopOptions) -> str | None:
    """The app's bot user: configured, else the one Slack names in the delivery's authorizations."""
    if options.bot_user_id:
        return options.bot_user_id
    return next((a.get("user_id") for a in payload.get("authorizations") or [] if a.get("is_bot")), None)


def parse_slack(headers: Any, payload: dict[str, Any], options: LoopOptions) -> list[TeamEvent]:
    message = payload.get("event") or {}
    if payload.get("type") != "event_callback" or message.get("type") not in ("app_mention", "message"):
        return []
    bot = slack_bot_user(payload, options)
    if message.get("subtype") or message.get("bot_id") or (bot and message.get("user") == bot):
        return []
    channel, ts = message.get("channel"), message.get("ts")
    root = message.get("thread_ts") or ts
    raw = message.get("text") or ""
    mentioned = message.get("type") == "app_mention" or (bot is not None and f"<@{bot}" in raw)
    if not channel or not ts or (not mentioned and root == ts):
        return []  # a channel message that is neither a mention nor in a thread
    text = SLACK_MENTION.sub(lambda m: "" if m.group(1) == bot else m.group(0), raw).strip()
    hint = environment_hint(text)
    plan_mode = bool(PLAN.search(text))
    # The agent gets the request alone, otherwise as written: the hint and `/plan` (with the space before it) out.
    text = PLAN.sub("", ENV_HINT.sub("", text)).strip()
    return [TeamEvent(
        "slack", "mention" if mentioned else "thread_reply", f"slack-message:{channel}:{ts}",
        thread_key=f"slack:{payload.get('team_id')}:{channel}:{root}", thread_kind="slack_thread",
        target={"channel": channel, "thread_ts": root, "team_id": payload.get("team_id")},
        actor=message.get("user"), mentioned=mentioned, text=cut(text), ts=ts, environment_hint=hint,
        plan_mode=plan_mode)]


# -- Linear ----------------------------------------------------------------------------------------


def parse_linear(headers: Any, payload: dict[str, Any], options: LoopOptions) -> list[TeamEvent]:
    delivery = headers.get("linear-delivery") or payload.get("webhookId") or ""
    kind, action, data = payload.get("type"), payload.get("action"), payload.get("data") or {}
    changed = payload.get("updatedFrom") or {}
    actor = payload.get("actor") or {}
    me = options.bot_user_id
    if not delivery or (actor.get("id") and actor.get("id") == me):
        return []
    if kind == "Issue":
        event = _linear_issue(delivery, data, payload, actor)
        assigned = me and data.get("assigneeId") == me and (action == "create" or "assigneeId" in changed)
        if action in ("create", "update") and assigned:
            event.kind, event.mentioned = "mention", True
            event.text = ""
            return [event]
        if action == "update" and "stateId" in changed and (data.get("state") or {}).get("type") in (
                "completed", "canceled"):
            event.kind = "issue_closed"
            return [event]
        return []
    if kind == "Comment" and action == "create":
        body = data.get("body") or ""
        if (me and data.get("userId") == me) or not (mentions(body, options.handle) or (me and me in body)):
            return []
        issue = data.get("issue") or {"id": data.get("issueId")}
        event = _linear_issue(delivery, issue, payload, actor)
        event.kind, event.mentioned, event.text = "mention", True, cut(body)
        event.comment_id = data.get("id")
        event.environment_hint = environment_hint(body, issue.get("description"))
        return [event]
    return []


def _linear_issue(delivery: str, issue: dict[str, Any], payload: dict[str, Any], actor: dict[str, Any]) -> TeamEvent:
    return TeamEvent(
        "linear", "mention", f"linear:{delivery}", thread_key=f"linear:{issue.get('id')}", thread_kind="linear_issue",
        target={"issue_id": issue.get("id"), "identifier": issue.get("identifier")}, actor=actor.get("name"),
        title=issue.get("title"), body=cut(issue.get("description")), url=issue.get("url") or payload.get("url"),
        environment_hint=environment_hint(issue.get("description")))
