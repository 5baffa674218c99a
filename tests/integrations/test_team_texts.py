"""What the team loop tells a workspace and posts where no workspace can start (services/team_texts.py), with no
server: the first message on an issue and on someone else's pull request, a conflict on a GitLab merge request, a
failed job without a log, and the notices."""

from __future__ import annotations

from replicas.services import team_texts as texts
from replicas.services.team_events import TeamEvent


def issue(**fields) -> TeamEvent:
    return TeamEvent("github", "mention", "github:d1", thread_key="github:acme/shop#12", thread_kind="issue",
                     actor="octocat", repository="acme/shop", number=12, title="Cart 500",
                     url="https://github.com/acme/shop/issues/12", body="Empty cart fails", text="@replicas fix it",
                     **fields)


def test_the_first_message_plans_on_an_issue_and_stays_on_a_pull_requests_branch():
    first = texts.first_message(issue(), None)
    assert first.startswith("You were asked to work on GitHub issue acme/shop#12: Cart 500\n"
                            "https://github.com/acme/shop/issues/12")
    assert "## Description\nEmpty cart fails" in first and "## Comment by @octocat\n@replicas fix it" in first
    assert texts.PLAN_THEN_PR in first
    pull = issue()
    pull.thread_kind = "pull_request"
    on_pull = texts.first_message(pull, "feature/cart")
    assert "`git fetch origin feature/cart && git switch feature/cart`" in on_pull
    assert texts.PLAN_THEN_PR not in on_pull


def test_conflicts_failed_jobs_and_notices():
    mr = TeamEvent("gitlab", "conflict", "k", thread_key="gitlab:acme/shop!1", thread_kind="merge_request",
                   url="https://gitlab.example.com/acme/shop/-/merge_requests/1", base_branch="main")
    assert texts.conflict_text(mr, None).startswith(
        "The merge request https://gitlab.example.com/acme/shop/-/merge_requests/1 has merge conflicts with `main`.")
    section = texts.job_section({"name": "pytest", "conclusion": "failed"}, None)
    assert section == "### pytest (failed)\n(no log available)"
    assert texts.no_environment_notice(issue()) == \
        "I can't start a workspace for this: no environment is bound to acme/shop."
    slack = TeamEvent("slack", "mention", "k", thread_kind="slack_thread")
    assert "[env:name]" in texts.no_environment_notice(slack)
