"""What each provider's delivery asks of the team loop (services/team_events.py), on the providers' documented
shapes, with no server: GitLab's notes, merge requests, pipelines and pushes, Slack's `/plan`, Linear's comments."""

from __future__ import annotations

from replicas.services.team_events import LoopOptions, mentions, parse

OPTIONS = LoopOptions(handle="replicas", bot_user_id="U0BOT00001")
GITLAB = {"x-gitlab-event-uuid": "b7f1c2d4-0000-4000-8000-000000000001"}
PROJECT = {"id": 15, "path_with_namespace": "acme/shop", "web_url": "https://gitlab.example.com/acme/shop",
           "git_http_url": "https://gitlab.example.com/acme/shop.git"}


def test_mentions_need_the_handle_as_a_word():
    assert mentions("@replicas please", "replicas") and mentions("cc @Replicas.", "replicas")
    assert not mentions("mail bob@replicas.dev", "replicas") and not mentions("@replicas-bot hi", "replicas")


def test_gitlab_notes_merge_requests_and_pipelines():
    note = {"object_kind": "note", "user": {"username": "octocat"}, "project": PROJECT,
            "object_attributes": {"id": 301, "note": "@replicas fix it", "noteable_type": "Issue",
                                  "url": "https://gitlab.example.com/acme/shop/-/issues/4#note_301"},
            "issue": {"iid": 4, "title": "Cart 500", "description": "Empty cart fails"}}
    [mention] = parse("gitlab", GITLAB, note, OPTIONS)
    assert (mention.kind, mention.thread_key, mention.actor) == ("mention", "gitlab:acme/shop#4", "octocat")
    assert mention.target == {"project_id": 15, "noteable": "issues", "iid": 4, "repository": "acme/shop"}

    diff = {**note, "object_attributes": {"id": 302, "note": "Use 400 here", "noteable_type": "MergeRequest",
                                          "type": "DiffNote", "position": {"new_path": "app.py", "new_line": 3}},
            "merge_request": {"iid": 9, "source_branch": "replicas/fix", "target_branch": "main"}}
    [review] = parse("gitlab", GITLAB, diff, OPTIONS)
    assert (review.kind, review.thread_key, review.file, review.line) == ("review", "gitlab:acme/shop!9", "app.py", 3)

    merged = {"object_kind": "merge_request", "user": {"username": "octocat"}, "project": PROJECT,
              "object_attributes": {"iid": 9, "action": "merge", "state": "merged", "source_branch": "replicas/fix"}}
    [closed] = parse("gitlab", GITLAB, merged, OPTIONS)
    assert closed.kind == "pr_closed" and closed.merged

    pipeline = {"object_kind": "pipeline", "project": PROJECT, "user": {"username": "octocat"},
                "object_attributes": {"id": 77, "status": "failed", "ref": "replicas/fix", "sha": "a" * 40},
                "merge_request": {"iid": 9, "url": "https://gitlab.example.com/acme/shop/-/merge_requests/9"},
                "builds": [{"id": 501, "name": "test", "status": "failed"}, {"id": 502, "name": "lint",
                                                                             "status": "success"}]}
    [failed] = parse("gitlab", GITLAB, pipeline, OPTIONS)
    assert failed.kind == "check_failed" and [j["name"] for j in failed.jobs] == ["test"]


def test_gitlab_branch_pipelines_and_pushes():
    branch = {"object_kind": "pipeline", "project": PROJECT, "user": {"username": "octocat"},
              "object_attributes": {"id": 78, "status": "failed", "ref": "replicas/fix", "tag": False,
                                    "sha": "b" * 40}, "builds": [{"id": 503, "name": "test", "status": "failed"}]}
    [failed] = parse("gitlab", GITLAB, branch, OPTIONS)
    assert (failed.kind, failed.thread_key, failed.head_branch) == ("check_failed", None, "replicas/fix")
    tag = {**branch, "object_attributes": {**branch["object_attributes"], "ref": "v1.2.0", "tag": True}}
    assert parse("gitlab", GITLAB, tag, OPTIONS) == []  # a tag's pipeline has no merge request to reach

    push = {"object_kind": "push", "ref": "refs/heads/main", "after": "c" * 40, "user_username": "hubot",
            "project": PROJECT}
    [moved] = parse("gitlab", GITLAB, push, OPTIONS)
    assert (moved.kind, moved.base_branch, moved.repository, moved.actor) == ("push", "main", "acme/shop", "hubot")
    deleted = {**push, "ref": "refs/heads/old", "after": "0" * 40}
    tag_push = {**push, "object_kind": "tag_push", "ref": "refs/tags/v1.2.0"}
    assert parse("gitlab", GITLAB, deleted, OPTIONS) == [] and parse("gitlab", GITLAB, tag_push, OPTIONS) == []


def test_slack_plan_and_environment_and_linear_comment_mentions():
    message = {"type": "event_callback", "team_id": "T1", "event": {
        "type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.000100",
        "text": "<@U0BOT00001> /plan [env:Shop API] refactor the cart"}}
    [event] = parse("slack", {}, message, OPTIONS)
    assert event.plan_mode and event.environment_hint == "Shop API" and event.text == "refactor the cart"
    assert event.thread_key == "slack:T1:C1:1.000100"
    later_text = "fix it /plan\nthen ship /planning"
    [later] = parse("slack", {}, {**message, "event": {**message["event"], "text": later_text}}, OPTIONS)
    assert later.plan_mode and later.text == "fix it\nthen ship /planning"
    code = "<@U0BOT00001> why does\n```\ndef f():\n    return  1\n```\nfail?"  # indentation and spaces kept
    [verbatim] = parse("slack", {}, {**message, "event": {**message["event"], "text": code}}, OPTIONS)
    assert not verbatim.plan_mode and verbatim.text == code.removeprefix("<@U0BOT00001> ")
    channel_chatter = {**message, "event": {**message["event"], "type": "message", "text": "lunch?"}}
    assert parse("slack", {}, channel_chatter, OPTIONS) == []

    comment = {"type": "Comment", "action": "create", "actor": {"id": "u-jane", "name": "Jane"},
               "data": {"id": "c1", "body": "@replicas can you take this?", "userId": "u-jane",
                        "issue": {"id": "i1", "identifier": "ENG-1", "title": "Cart"}}}
    [linear] = parse("linear", {"linear-delivery": "d1"}, comment, LoopOptions("replicas", "u-replicas"))
    assert (linear.kind, linear.thread_key, linear.text) == ("mention", "linear:i1", "@replicas can you take this?")
    own = {**comment, "actor": {"id": "u-replicas"}}
    assert parse("linear", {"linear-delivery": "d2"}, own, LoopOptions("replicas", "u-replicas")) == []
