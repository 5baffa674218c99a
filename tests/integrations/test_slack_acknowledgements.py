"""Slack's acknowledgements are durable: the 👀 on a mention and the notice that no environment fits are stored at
receipt and posted by the team loop's watcher, so an app stopped between the receipt and the watcher's pass posts
them after its restart (a real second app on the same database), once, and a redelivery posts nothing more."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from sqlalchemy import select

from replicas.api.app import create_app
from replicas.services import auth
from replicas.settings import Settings
from replicas.store.team_models import TeamMessage
from tests.automations.test_receivers import post, slack
from tests.conftest import _client
from tests.integrations.conftest import connect
from tests.replicas.conftest import wait_for

PAYLOADS = Path(__file__).parent / "payloads"
NOTICE = ("I can't start a workspace for this: no environment matches; name one with [env:name] or set the "
          "integration's default environment.")


def settings_for(tmp_path: Path, interval: float) -> Settings:
    return Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'replicas.db'}",
                    secret_key=None, cron_enabled=False, pool_enabled=False, team_loop_interval_seconds=interval,
                    provider_retry_delays=[0.05], provider_timeout_seconds=5.0)


async def queued(app) -> list[tuple[str, str]]:
    async with app.state.sessions() as session:
        return [(row.kind, row.status) for row in await session.scalars(
            select(TeamMessage).where(TeamMessage.kind.in_(("reaction", "notice"))).order_by(TeamMessage.kind))]


async def test_the_reaction_and_notice_survive_a_restart_and_are_posted_once(tmp_path, stand_in):
    mention = json.loads((PAYLOADS / "slack_app_mention.json").read_text())
    # The first app's watcher makes its pass at start, then not for an hour: the delivery comes in between.
    first = create_app(settings_for(tmp_path, interval=3600))
    async with first.router.lifespan_context(first):
        async with first.state.sessions() as session:
            org = await auth.get_or_create_organization(session, "acme")
            key = await auth.create_org_key(session, org, name="test")
            await session.commit()
        async with _client(first, key) as client, _client(first, None) as anonymous:
            path = await connect(client, stand_in, "slack")  # the organization has no environment
            assert (await post(anonymous, path, slack(mention))).status_code == 202
        assert await queued(first) == [("notice", "to_post"), ("reaction", "to_post")]
        await asyncio.sleep(0.5)
    assert stand_in.requests == []  # stopped before anything reached Slack

    second = create_app(settings_for(tmp_path, interval=0.1))
    async with second.router.lifespan_context(second):
        async def posted():
            return await queued(second) == [("notice", "sent"), ("reaction", "sent")]

        await wait_for(posted, timeout=20, what="the queued acknowledgements")
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
