"""GitLab's REST API (v4), as far as the team loop needs it: a note on an issue or merge request, and a job's
log. `api_url` is `https://gitlab.com/api/v4` or a self-managed instance's `https://HOST/api/v4`."""

from __future__ import annotations

from typing import Any

from replicas.services.providers.base import ProviderClient, ProviderError, tail

DEFAULT_API_URL = "https://gitlab.com/api/v4"


class GitLabClient(ProviderClient):
    provider = "gitlab"

    def headers(self) -> dict[str, str]:
        return {"PRIVATE-TOKEN": self.token or ""}

    async def note(self, project_id: int | str, noteable: str, iid: int, body: str) -> dict[str, Any]:
        """`POST /projects/:id/(issues|merge_requests)/:iid/notes`."""
        response = await self.call("POST", f"/projects/{project_id}/{noteable}/{iid}/notes", "note",
                                   json={"body": body})
        return response.json()

    async def job_log_tail(self, project_id: int | str, job_id: int) -> str | None:
        """`GET /projects/:id/jobs/:job_id/trace`; None when it cannot be had."""
        try:
            response = await self.call("GET", f"/projects/{project_id}/jobs/{job_id}/trace", "job trace")
        except ProviderError:
            return None
        return tail(response.text)
