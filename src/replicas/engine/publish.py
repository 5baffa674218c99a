"""Publishing the agent's work: push a committed feature branch to `origin` and record its pull request.

After every turn (before `repo.status.changed` is journaled) `Publisher.publish_all` looks at each
checkout under `~/workspaces`. A checkout is pushed when HEAD is on a branch other than the default one,
has commits that `origin/<default>` lacks, and differs from what was last pushed for that branch:

    git push --porcelain origin HEAD:refs/heads/<branch>      # agent env: provisioning's credentials

A head the agent pushed itself (`origin/<branch>` already at HEAD) is only recorded. A later push of
the same branch carries `--force-with-lease=<branch>:<last pushed head>`, so an agent
that amended or rebased its own work still publishes it, while anyone else's commits on the branch are
never overwritten (that push fails instead). Then the branch gets its record:

- a GitHub origin (`https://github.com/OWNER/REPO(.git)`, `git@github.com:OWNER/REPO`) with
  `GITHUB_TOKEN` or `GH_TOKEN` in the env: a pull request is opened once per branch through
  `POST {GITHUB_API_URL}/repos/OWNER/REPO/pulls`; the record holds its `html_url` and `number`;
- any other origin (or no token): the pushed branch is the record, `<origin as a URI>#<branch>`, number 0.

Without `GITHUB_TOKEN`/`GH_TOKEN`, a GitHub origin's token comes from the control plane when the organization's
GitHub integration is a GitHub App: `POST {REPLICAS_API_URL}/v1/integrations/github/token {"repository": ...}` in
agent mode (the engine secret and `WORKSPACE_ID`) answers an installation token for that repository only, and its
API URL; it is kept until five minutes before it expires. A 404 (no App) means no token, as before.

The push authenticates with a token from the env when the origin is its host's and no auth header is configured:
`GITHUB_TOKEN`/`GH_TOKEN` for an https GitHub origin, `GITLAB_TOKEN` for an origin on `GITLAB_HOST` (the
instance's URL, default https://gitlab.com; the control plane sets both for a workspace the team loop started on
a GitLab thread). It goes as git's `http.extraHeader` through `GIT_CONFIG_*` in the push's own env: never in the
checkout's config, the remote URL or a message.

Records live in `<state_dir>/published.json` (`{"repos": {name: {branch: {head, url, number, base,
pushedAt}}}}`), so a restarted engine neither pushes again nor forgets its pull requests. A failed push
or pull-request creation is journaled as an `error` event (`push_failed`, `pr_create_failed`) and never
breaks the turn. The GitHub path runs against a GitHub stand-in in tests/integrations; keep it small.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote, urlparse

from replicas.engine import repos as repo_status
from replicas.engine.journal import Journal, utc_timestamp
from replicas.engine.state import write_atomically

logger = logging.getLogger(__name__)

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GCM_INTERACTIVE": "never"}
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")
_SCP_LIKE = re.compile(r"^(?:(?P<user>[^@/:]+)@)?(?P<host>[^/:]+):(?P<path>.*)$")
_GITHUB_PATH = re.compile(r"^/*(?P<owner>[^/]+)/(?P<name>[^/]+?)(?:\.git)?/*$")
DEFAULT_GITHUB_API = "https://api.github.com"
DEFAULT_GITLAB_HOST = "https://gitlab.com"
_DEFAULT_PORTS = {"https": 443, "http": 80}
APP_TOKEN_REFRESH = 300  # a GitHub App token is asked for again this long before it expires


@dataclass
class Outcome:
    """What `publish` did for one checkout: `pushed` a new head (with its `record`; the agent may have pushed
    it itself), or nothing (`record` is then the branch's existing record, if any), or failed (`error` is
    the journaled payload)."""

    pushed: bool = False
    record: dict | None = None
    error: dict | None = None


@dataclass(frozen=True)
class GitResult:
    code: int
    stdout: str
    stderr: str


def scrub(text: str) -> str:
    """`text` without any `user:password@` part of a URL (git's messages repeat the remote URL)."""
    return _USERINFO.sub("", text)


def origin_uri(origin: str, repo: Path) -> str:
    """The origin as a URI without credentials: a URL as is, `user@host:path` as `ssh://user@host/path`,
    and a local path (relative ones from the checkout) as `file:///abs/path`."""
    if "://" in origin:
        return scrub(origin)
    scp = _SCP_LIKE.match(origin)
    if scp and not origin.startswith(("/", ".")) and "/" not in origin.split(":", 1)[0]:
        user = f"{scp['user']}@" if scp["user"] else ""
        return f"ssh://{user}{scp['host']}/{scp['path'].lstrip('/')}"
    return (repo / os.path.expanduser(origin)).resolve().as_uri()


def github_repository(origin: str, extra_hosts: Iterable[str] = ()) -> tuple[str, str] | None:
    """(owner, name) when `origin` is a GitHub remote (github.com or one of `extra_hosts`), else None."""
    uri = origin_uri(origin, Path("/"))
    parsed = urlparse(uri)
    hosts = {"github.com", *extra_hosts}
    if parsed.scheme not in ("https", "ssh") or (parsed.hostname or "").lower() not in hosts:
        return None
    match = _GITHUB_PATH.match(parsed.path)
    return (match["owner"], match["name"]) if match else None


def _same_origin(uri: str, server: str) -> bool:
    """Whether `uri` is on `server` (scheme, host and port; a default port counts as given)."""
    a, b = urlparse(uri), urlparse(server)
    if a.scheme not in _DEFAULT_PORTS or a.scheme != b.scheme or not a.hostname:
        return False
    try:
        return (a.hostname.lower(), a.port or _DEFAULT_PORTS[a.scheme]) == \
            ((b.hostname or "").lower(), b.port or _DEFAULT_PORTS[b.scheme])
    except ValueError:  # a port that is not a number
        return False


def branch_url(origin: str, repo: Path, branch: str) -> str:
    return f"{origin_uri(origin, repo)}#{quote(branch, safe='/')}"


class Publisher:
    """Pushes the checkouts' feature branches and remembers what it pushed (see the module docstring).

        publisher = Publisher(config.state_dir, config.agent_env, journal)
        await publisher.publish_all(repos.discover(config.workspaces_dir))
        publisher.pull_requests("app")       # [{"number": 0, "url": "file:///srv/app.git#fix", "branch": "fix"}]
    """

    def __init__(self, state_dir: Path, env: Mapping[str, str], journal: Journal | None = None, *,
                 workspace_id: str = "", push_timeout: float = 120.0, api_timeout: float = 30.0):
        self.path = state_dir / "published.json"
        self.env = {**env, **_GIT_ENV}
        self.journal = journal
        self.workspace_id = workspace_id
        self.push_timeout = push_timeout
        self.api_timeout = api_timeout
        self.records: dict[str, dict[str, dict]] = self._load()
        self._app_tokens: dict[str, tuple[dict, float]] = {}  # repository -> (a GitHub App token, its expiry)
        self._lock = asyncio.Lock()

    def _load(self) -> dict[str, dict[str, dict]]:
        try:
            return json.loads(self.path.read_text()).get("repos", {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError, AttributeError):
            logger.exception("unreadable publish records path=%s; starting afresh", self.path)
            return {}

    async def _save(self) -> None:
        await asyncio.to_thread(write_atomically, self.path, json.dumps({"repos": self.records}, indent=1))

    def pull_requests(self, repo_name: str) -> list[dict]:
        """The recorded pull requests (or pushed branches) of a checkout, oldest first."""
        return [{"number": record["number"], "url": record["url"], "branch": branch}
                for branch, record in self.records.get(repo_name, {}).items() if record.get("url")]

    async def publish_all(self, repos: Iterable[Path]) -> list[Outcome]:
        """`publish` every checkout in turn; never raises (a failure is journaled or logged)."""
        outcomes = []
        async with self._lock:
            for repo in repos:
                try:
                    outcomes.append(await self.publish(repo))
                except Exception:  # noqa: BLE001 - publishing must never break a turn
                    logger.exception("publishing failed repo=%s", repo.name)
                    outcomes.append(Outcome())
        return outcomes

    async def publish(self, repo: Path) -> Outcome:
        """Push `repo`'s current branch if it holds new work, then record it (and open its pull request)."""
        origin = (await self._git(repo, "config", "--get", "remote.origin.url")).stdout.strip()
        branch = (await self._git(repo, "symbolic-ref", "--quiet", "--short", "HEAD")).stdout.strip()
        if not origin or not branch:
            return Outcome()
        default = await repo_status.default_branch(repo)
        head = (await self._git(repo, "rev-parse", "--verify", "--quiet", "HEAD")).stdout.strip()
        record = self.records.get(repo.name, {}).get(branch)
        if branch == default or not head or (record is not None and record["head"] == head):
            return Outcome(record=record)
        if not await self._has_new_commits(repo, default):
            return Outcome(record=record)

        github = github_repository(origin, self._github_hosts())
        token, api = await self._github_access(github)
        tracking = f"refs/remotes/origin/{branch}"
        if (await self._git(repo, "rev-parse", "--verify", "--quiet", tracking)).stdout.strip() != head:
            push = ["push", "--porcelain", "origin", f"HEAD:refs/heads/{branch}"]
            if record is not None:
                push.insert(1, f"--force-with-lease=refs/heads/{branch}:{record['head']}")
            result = await self._git(repo, *push, env=await self._push_env(repo, origin, token),
                                     timeout=self.push_timeout)
            if result.code != 0:
                self._forget_app_token(github)  # a revoked one is not used again: the next publish asks anew
                return Outcome(error=self._error("push_failed", f"could not push branch {branch} of {repo.name}",
                                                 scrub(result.stderr or result.stdout).strip()))

        record = {**(record or {"url": None, "number": 0}), "head": head, "base": default,
                  "pushedAt": utc_timestamp()}
        if github and token and not record["number"]:
            # Imported here, not at the top: httpx (and the CLI it pulls in) is about 40 ms of every engine
            # start, and only a GitHub pull request needs it.
            import httpx

            try:
                pull = await self._open_pull_request(repo, *github, branch, default, token, api)
                record.update(url=pull["html_url"], number=int(pull["number"]))
            except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
                detail = exc.response.text[:2000] if isinstance(exc, httpx.HTTPStatusError) else str(exc)
                self._forget_app_token(github)
                self._error("pr_create_failed", f"could not open a pull request for {branch} of {repo.name}",
                            scrub(detail))
        if not record["url"]:
            record["url"] = branch_url(origin, repo, branch)
        self.records.setdefault(repo.name, {})[branch] = record
        await self._save()
        return Outcome(pushed=True, record=record)

    async def _has_new_commits(self, repo: Path, default: str) -> bool:
        base = f"refs/remotes/origin/{default}"
        if (await self._git(repo, "rev-parse", "--verify", "--quiet", base)).code == 0:
            count = await self._git(repo, "rev-list", "--count", f"{base}..HEAD")
        else:  # a checkout without the default branch's tracking ref: anything origin has not seen
            count = await self._git(repo, "rev-list", "--count", "HEAD", "--not", "--remotes=origin")
        return count.code == 0 and count.stdout.strip() not in ("", "0")

    def _github_hosts(self) -> set[str]:
        server = self.env.get("GITHUB_SERVER_URL")
        return {urlparse(server).hostname or ""} - {""} if server else set()

    async def _github_access(self, github: tuple[str, str] | None) -> tuple[str | None, str]:
        """The token and API URL for a GitHub origin: the env's token, else the organization's GitHub App's
        (see the module docstring); (None, API) for any other origin or when there is none."""
        token = self.env.get("GITHUB_TOKEN") or self.env.get("GH_TOKEN")
        minted = await self._app_token("/".join(github)) if github is not None and not token else None
        api = self.env.get("GITHUB_API_URL") or (minted or {}).get("api_url") or DEFAULT_GITHUB_API
        return (minted["token"] if minted else token), api.rstrip("/")

    def _forget_app_token(self, github: tuple[str, str] | None) -> None:
        if github is not None:
            self._app_tokens.pop("/".join(github).lower(), None)

    async def _app_token(self, repository: str) -> dict | None:
        kept = self._app_tokens.get(repository.lower())
        if kept is not None and kept[1] - APP_TOKEN_REFRESH > time.time():
            return kept[0]
        base, secret = self.env.get("REPLICAS_API_URL"), self.env.get("REPLICAS_ENGINE_SECRET")
        workspace = self.env.get("WORKSPACE_ID")
        if not (base and secret and workspace):
            return None
        import httpx  # not at the top: see publish()

        try:
            async with httpx.AsyncClient(timeout=self.api_timeout) as client:
                response = await client.post(f"{base.rstrip('/')}/v1/integrations/github/token",
                                             json={"repository": repository},
                                             headers={"Authorization": f"Bearer {secret}",
                                                      "X-Workspace-Id": workspace,
                                                      "User-Agent": "replicas-engine"})
        except httpx.HTTPError as exc:
            self._error("github_token_failed", f"could not ask the control plane for a token for {repository}",
                        scrub(str(exc)))
            return None
        if response.status_code == 404:
            return None  # no GitHub App: push as before
        try:
            response.raise_for_status()
            minted = response.json()
            expires = datetime.fromisoformat(str(minted["expires_at"]).replace("Z", "+00:00")).timestamp()
            if not isinstance(minted["token"], str):
                raise TypeError("the token is not a string")
        except (httpx.HTTPError, KeyError, TypeError, ValueError) as exc:
            detail = response.text[:2000] if isinstance(exc, httpx.HTTPStatusError) else str(exc)
            self._error("github_token_failed", f"no GitHub App token for {repository}", scrub(detail))
            return None
        self._app_tokens[repository.lower()] = (minted, expires)
        return minted

    async def _push_env(self, repo: Path, origin: str, github_token: str | None = None) -> dict[str, str]:
        """The agent env, plus the origin's token as a Basic auth header (git's own config through GIT_CONFIG_*,
        never written to disk) when the env holds one for the origin's host (see the module docstring) and no
        auth header is configured."""
        env = dict(self.env)
        uri = origin_uri(origin, repo)
        credential = self._push_credential(origin, uri, github_token)
        if credential is None:
            return env
        if (await self._git(repo, "config", "--get-urlmatch", "http.extraheader", uri)).stdout.strip():
            return env
        count = int(env.get("GIT_CONFIG_COUNT") or 0)
        if any(env.get(f"GIT_CONFIG_KEY_{i}", "").lower() == "http.extraheader" for i in range(count)):
            return env
        basic = base64.b64encode(credential.encode()).decode()
        env.update({"GIT_CONFIG_COUNT": str(count + 1), f"GIT_CONFIG_KEY_{count}": "http.extraHeader",
                    f"GIT_CONFIG_VALUE_{count}": f"Authorization: Basic {basic}"})
        return env

    def _push_credential(self, origin: str, uri: str, github_token: str | None = None) -> str | None:
        """`user:token` for pushing to `uri`: GitHub's token for an https GitHub origin, GitLab's for an origin
        on `GITLAB_HOST` (same scheme, host and port: plain http only where the instance itself is http)."""
        github_token = github_token or self.env.get("GITHUB_TOKEN") or self.env.get("GH_TOKEN")
        if github_token and uri.startswith("https://") and github_repository(origin, self._github_hosts()):
            return f"x-access-token:{github_token}"
        gitlab_token = self.env.get("GITLAB_TOKEN")
        if gitlab_token and _same_origin(uri, self.env.get("GITLAB_HOST") or DEFAULT_GITLAB_HOST):
            return f"oauth2:{gitlab_token}"
        return None

    async def _open_pull_request(self, repo: Path, owner: str, name: str, branch: str, base: str,
                                 token: str, api: str) -> dict:
        """Open the branch's pull request; when GitHub says one is open already (422), return that one."""
        title = (await self._git(repo, "log", "-1", "--format=%s")).stdout.strip() or branch
        where = f" in workspace {self.workspace_id}" if self.workspace_id else ""
        body = f"Opened by [Replicas](https://replicas.dev) from branch `{branch}`{where}."
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
                   "X-GitHub-Api-Version": "2022-11-28", "User-Agent": "replicas-engine"}
        import httpx  # not at the top: see publish()

        async with httpx.AsyncClient(headers=headers, timeout=self.api_timeout) as client:
            response = await client.post(f"{api}/repos/{owner}/{name}/pulls",
                                         json={"head": branch, "base": base, "title": title, "body": body})
            if response.status_code == 422:
                existing = await client.get(f"{api}/repos/{owner}/{name}/pulls",
                                            params={"head": f"{owner}:{branch}", "state": "open"})
                if existing.status_code == 200 and existing.json():
                    return existing.json()[0]
            response.raise_for_status()
            return response.json()

    def _error(self, code: str, message: str, details: str) -> dict:
        payload = {"code": code, "message": message, "details": details}
        logger.warning("publish error code=%s message=%s", code, message)
        if self.journal is not None:
            self.journal.append("error", payload)
        return payload

    async def _git(self, repo: Path, *args: str, env: Mapping[str, str] | None = None,
                   timeout: float = 30.0) -> GitResult:
        """Run git in its own session (so nothing can prompt on a terminal); a timeout kills its group."""
        process = await asyncio.create_subprocess_exec(
            "git", *args, cwd=repo, env=dict(env or self.env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return GitResult(-1, "", f"git {args[0]} timed out after {timeout:.0f} s")
        return GitResult(process.returncode or 0, stdout.decode(errors="replace"), stderr.decode(errors="replace"))
