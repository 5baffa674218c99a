"""Slack's Web API, as far as the team loop needs it: post in a thread, add a reaction, `auth.test` (the bot
token's team) and a thread's first message (`conversations.replies`). Slack answers 200
with `{"ok": false, "error": ...}` for refusals; those raise ProviderError too (`already_reacted` is fine).
`api_url` is `https://slack.com/api`; the token is the app's bot token (`xoxb-...`)."""

from __future__ import annotations

from typing import Any

from replicas.services.providers.base import ProviderClient, ProviderError

DEFAULT_API_URL = "https://slack.com/api"


class SlackClient(ProviderClient):
    provider = "slack"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json; charset=utf-8"}

    async def _method(self, method: str, body: dict[str, Any], fine: tuple[str, ...] = ()) -> dict[str, Any]:
        answer = (await self.call("POST", f"/{method}", method, json=body)).json()
        if not answer.get("ok") and answer.get("error") not in fine:
            raise ProviderError(self.provider, method, 200, str(answer.get("error")))
        return answer

    async def post_message(self, channel: str, thread_ts: str, text: str) -> dict[str, Any]:
        return await self._method("chat.postMessage", {"channel": channel, "thread_ts": thread_ts, "text": text,
                                                       "unfurl_links": False})

    async def add_reaction(self, channel: str, ts: str, name: str) -> None:
        await self._method("reactions.add", {"channel": channel, "timestamp": ts, "name": name},
                           fine=("already_reacted",))

    async def auth_test(self) -> dict[str, Any]:
        """`auth.test`: who the token is (`team_id`, `user_id`, `bot_id`)."""
        return await self._method("auth.test", {})

    async def thread_parent(self, channel: str, thread_ts: str) -> dict[str, Any] | None:
        """The thread's first message (`conversations.replies`, a read: query parameters, not JSON); None when
        Slack has none."""
        answer = (await self.call("GET", "/conversations.replies", "conversations.replies",
                                  params={"channel": channel, "ts": thread_ts, "limit": 1})).json()
        if not answer.get("ok"):
            raise ProviderError(self.provider, "conversations.replies", 200, str(answer.get("error")))
        return next(iter(answer.get("messages") or []), None)
