"""GitHub's REST API, as far as the team loop needs it: comment on an issue or pull request, read a pull
request, list a workflow run's jobs and fetch a job's log. `api_url` is `https://api.github.com` or a GitHub
Enterprise Server's `https://HOST/api/v3`; the token is an installation or personal token."""

from __future__ import annotations

from typing import Any

from replicas.services.providers.base import ProviderClient, ProviderError, tail

DEFAULT_API_URL = "https://api.github.com"


class GitHubClient(ProviderClient):
    provider = "github"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28"}

    async def comment(self, repository: str, number: int, body: str) -> dict[str, Any]:
        """`POST /repos/{owner}/{repo}/issues/{number}/comments` (issues and pull requests alike)."""
        response = await self.call("POST", f"/repos/{repository}/issues/{number}/comments", "issue comment",
                                   json={"body": body})
        return response.json()

    async def pull_request(self, repository: str, number: int) -> dict[str, Any]:
        return (await self.call("GET", f"/repos/{repository}/pulls/{number}", "pull request")).json()

    async def failed_jobs(self, repository: str, run_id: int) -> list[dict[str, Any]]:
        """The jobs of a workflow run that failed or timed out."""
        response = await self.call("GET", f"/repos/{repository}/actions/runs/{run_id}/jobs", "workflow jobs",
                                   params={"filter": "latest", "per_page": 100})
        return [job for job in response.json().get("jobs") or []
                if job.get("conclusion") in ("failure", "timed_out")]

    async def job_log_tail(self, repository: str, job_id: int) -> str | None:
        """The end of a job's log (GitHub answers with a redirect to the log's download URL); None when the
        API does not give it (not an Actions job, logs expired, no permission)."""
        try:
            response = await self.call("GET", f"/repos/{repository}/actions/jobs/{job_id}/logs", "job log",
                                       follow_redirects=True)
        except ProviderError:
            return None
        return tail(response.text)
