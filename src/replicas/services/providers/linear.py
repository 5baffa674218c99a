"""Linear's GraphQL API, as far as the team loop needs it: comment on an issue. GraphQL answers 200 with
`errors` for refusals; those raise ProviderError too. `api_url` is `https://api.linear.app`; the token is a
personal API key (`lin_api_...`, sent as is) or an OAuth access token (sent as a Bearer token)."""

from __future__ import annotations

from typing import Any

from replicas.services.providers.base import ProviderClient, ProviderError

DEFAULT_API_URL = "https://api.linear.app"
COMMENT_CREATE = ("mutation CommentCreate($input: CommentCreateInput!) "
                  "{ commentCreate(input: $input) { success comment { id url } } }")


class LinearClient(ProviderClient):
    provider = "linear"

    def headers(self) -> dict[str, str]:
        token = self.token or ""
        return {"Authorization": token if token.startswith("lin_api_") else f"Bearer {token}"}

    async def comment(self, issue_id: str, body: str) -> dict[str, Any]:
        answer = (await self.call("POST", "/graphql", "commentCreate", json={
            "query": COMMENT_CREATE, "variables": {"input": {"issueId": issue_id, "body": body}}})).json()
        created = (answer.get("data") or {}).get("commentCreate") or {}
        if answer.get("errors") or not created.get("success"):
            raise ProviderError(self.provider, "commentCreate", 200, str(answer.get("errors") or answer)[:500])
        return created.get("comment") or {}
