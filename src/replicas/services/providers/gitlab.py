"""GitLab's REST API (v4), as far as the team loop needs it: a note on an issue or merge request, the merge
request of a pushed branch (found or opened) or of an iid, a pipeline's failed jobs and a job's log. `api_url` is
`https://gitlab.com/api/v4` or a self-managed instance's `https://HOST/api/v4`; a project is named by its id or
its URL-encoded path (`acme%2Fshop`)."""

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

    async def open_merge_request(self, project_id: int | str, source_branch: str, target_branch: str, title: str,
                                 description: str) -> dict[str, Any]:
        """The open merge request of `source_branch`: the one there is, else a new one
        (`POST /projects/:id/merge_requests`)."""
        found = (await self.call("GET", f"/projects/{project_id}/merge_requests", "merge requests",
                                 params={"source_branch": source_branch, "state": "opened"})).json()
        if found:
            return found[0]
        response = await self.call("POST", f"/projects/{project_id}/merge_requests", "merge request", json={
            "source_branch": source_branch, "target_branch": target_branch, "title": title,
            "description": description, "remove_source_branch": True})
        return response.json()

    async def merge_request(self, project_id: int | str, iid: int) -> dict[str, Any]:
        """`GET /projects/:id/merge_requests/:iid` (`target_branch`, `sha`, `has_conflicts`, `merge_status`,
        `detailed_merge_status`, `web_url`)."""
        return (await self.call("GET", f"/projects/{project_id}/merge_requests/{iid}", "merge request")).json()

    async def failed_jobs(self, project_id: int | str, pipeline_id: int) -> list[dict[str, Any]]:
        """`GET /projects/:id/pipelines/:pipeline_id/jobs?scope[]=failed`."""
        response = await self.call("GET", f"/projects/{project_id}/pipelines/{pipeline_id}/jobs", "pipeline jobs",
                                   params={"scope[]": "failed", "per_page": 100})
        return [job for job in response.json() if job.get("status") == "failed"]

    async def job_log_tail(self, project_id: int | str, job_id: int) -> str | None:
        """`GET /projects/:id/jobs/:job_id/trace`; None when it cannot be had."""
        try:
            response = await self.call("GET", f"/projects/{project_id}/jobs/{job_id}/trace", "job trace")
        except ProviderError:
            return None
        return tail(response.text)
