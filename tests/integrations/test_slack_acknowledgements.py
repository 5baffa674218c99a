"""Slack's acknowledgements are durable: the 👀 on a mention and the notice that no environment fits are stored at
receipt and posted by the team loop's watcher, so an app stopped between the receipt and the watcher's pass posts
them after its restart (a real second app on the same database), once, and a redelivery posts nothing more. An app
stopped while it posts leaves the row claimed; once the claim expires the next app posts it again, once."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

from sqlalchemy import select

from replicas.api.app import create_app
from replicas.services import auth, loops
from replicas.settings import Settings
from replicas.store.team_models import TeamMessage
from tests.automations.test_receivers import post, slack
from tests.conftest import _client
from tests.integrations.conftest import connect
from tests.replicas.conftest import wait_for

PAYLOADS = Path(__file__).parent / "payloads"
NOTICE = ("I can't start a workspace for this: no environment matches; name one with [env:name] or set the "
          "integration's default environment.")


def settings_for(tmp_path: Path, interval: float, claim: float = 300.0, timeout: float = 5.0) -> Settings:
    """`timeout` bounds each call to Slack: an app stopped while Slack holds its call must still be waiting for
    it when it stops (on a loaded machine a stop can take seconds), or its call fails, and what it posts is
    marked failed before the test stops it."""
    return Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'replicas.db'}",
                    secret_key=None, cron_enabled=False, pool_enabled=False, team_loop_interval_seconds=interval,
                    provider_retry_delays=[0.05], provider_timeout_seconds=timeout, team_post_claim_seconds=claim)


async def queued(app) -> list[tuple[str, str]]:
    async with app.state.sessions() as session:
        return [(row.kind, row.status) for row in await session.scalars(
            select(TeamMessage).where(TeamMessage.kind.in_(("reaction", "notice"))).order_by(TeamMessage.kind))]


async def first_delivery(tmp_path, stand_in) -> tuple[str, list[tuple[str, str]]]:
    """An organization with Slack connected (and no environment) and a mention delivered to an app whose watcher
    is stopped (its pass at start could otherwise come after the delivery and post it); returns the receiver's
    path and what was queued."""
    first = create_app(settings_for(tmp_path, interval=3600))
    async with first.router.lifespan_context(first):
        await loops.cancel(first.state.team_watcher)
        async with first.state.sessions() as session:
            org = await auth.get_or_create_organization(session, "acme")
            key = await auth.create_org_key(session, org, name="test")
            await session.commit()
        async with _client(first, key) as client, _client(first, None) as anonymous:
            path = await connect(client, stand_in, "slack")
            mention = json.loads((PAYLOADS / "slack_app_mention.json").read_text())
            assert (await post(anonymous, path, slack(mention))).status_code == 202
        await asyncio.sleep(0.5)
        return path, await queued(first)


async def test_the_reaction_and_notice_survive_a_restart_and_are_posted_once(tmp_path, stand_in):
    path, rows = await first_delivery(tmp_path, stand_in)
    assert rows == [("notice", "to_post"), ("reaction", "to_post")]
    assert stand_in.requests == []  # stopped before anything reached Slack
    mention = json.loads((PAYLOADS / "slack_app_mention.json").read_text())

    second = create_app(settings_for(tmp_path, interval=0.1))
    async with second.router.lifespan_context(second):
        async def posted():
            return await queued(second) == [("notice", "sent"), ("reaction", "sent")]

        await wait_for(posted, timeout=60, what="the queued acknowledgements")
        async with _client(second, None) as anonymous:  # Slack retries the delivery: nothing new is queued
            assert (await post(anonymous, path, slack(mention))).status_code == 202
        await asyncio.sleep(0.5)  # several passes
        assert await queued(second) == [("notice", "sent"), ("reaction", "sent")]

    [reaction] = stand_in.made("POST", r"/slack/reactions.add$")
    assert reaction.body == {"channel": "C123ABC456", "timestamp": "1712000001.000100", "name": "eyes"}
    assert reaction.headers["Authorization"] == "Bearer xoxb-bot-token"
    [notice] = stand_in.made("POST", r"/slack/chat.postMessage$")
    assert notice.body == {"channel": "C123ABC456", "thread_ts": "1712000001.000100", "text": NOTICE,
                           "unfurl_links": False}


async def reaction_status(app) -> str:
    async with app.state.sessions() as session:
        return await session.scalar(select(TeamMessage.status).where(TeamMessage.kind == "reaction"))


async def stopped_while_posting(app, stand_in, attempts: int) -> None:
    """Run `app` until its watcher is posting the reaction for the `attempts`-th time (Slack holds the call),
    then stop it: the process is gone mid-post."""
    async with app.router.lifespan_context(app):
        async def posting():
            return len(stand_in.made("POST", r"/slack/reactions.add$")) == attempts
        await wait_for(posting, timeout=60, what=f"reactions.add #{attempts}")
        assert await reaction_status(app) == ("posting" if attempts == 1 else "reposting")


async def test_a_reaction_whose_poster_died_is_posted_again_once_its_claim_expires(tmp_path, stand_in):
    gate = stand_in.held["POST", "/slack/reactions.add"] = threading.Event()
    await first_delivery(tmp_path, stand_in)
    await stopped_while_posting(create_app(settings_for(tmp_path, interval=0.1, claim=1.0, timeout=600)), stand_in,
                                attempts=1)

    gate.set()  # Slack answers again; the dead process's call may or may not have reached it
    second = create_app(settings_for(tmp_path, interval=0.1, claim=1.0))
    async with second.router.lifespan_context(second):
        async def sent():
            return await reaction_status(second) == "sent"

        await wait_for(sent, timeout=60, what="the reaction posted again")
        await asyncio.sleep(1.5)  # past another claim's expiry: a sent row stays sent
        assert await reaction_status(second) == "sent"
    reactions = stand_in.made("POST", r"/slack/reactions.add$")
    assert len(reactions) == 2 and reactions[0].body == reactions[1].body == {
        "channel": "C123ABC456", "timestamp": "1712000001.000100", "name": "eyes"}


async def test_a_reaction_whose_poster_died_twice_is_failed_not_posted_a_third_time(tmp_path, stand_in):
    stand_in.held["POST", "/slack/reactions.add"] = threading.Event()
    await first_delivery(tmp_path, stand_in)
    for attempt in (1, 2):
        await stopped_while_posting(create_app(settings_for(tmp_path, interval=0.1, claim=1.0, timeout=600)), stand_in,
                                    attempt)

    third = create_app(settings_for(tmp_path, interval=0.1, claim=1.0))
    async with third.router.lifespan_context(third):
        async def failed():
            return await reaction_status(third) == "failed"

        await wait_for(failed, timeout=60, what="the reaction given up")
        await asyncio.sleep(0.5)
    assert len(stand_in.made("POST", r"/slack/reactions.add$")) == 2
