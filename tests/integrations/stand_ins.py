"""Loopback stand-ins for the providers' APIs the team loop answers through, one server with a prefix per
provider (`/github`, `/gitlab`, `/slack`, `/linear`). Each records the requests it gets and answers in the
provider's documented shape:

- GitHub as a GitHub App (when `app_id` is set): `GET /repos/{o}/{r}/installation` and
  `POST /app/installations/{id}/access_tokens` take only the App's JWT (RS256, checked with `app_public_key`, its
  `iss`, `iat` and `exp` as GitHub checks them; 401 otherwise) and mint `ghs_app_<n>` tokens (`expires_at`
  `token_lifetime` seconds on, the `repositories` and `permissions` asked for); every other GitHub call must then
  carry a minted token that has not expired (401 `Bad credentials`), one limited to repositories only those.
- GitHub REST: `POST /repos/{o}/{r}/issues/{n}/comments` (201, an issue comment), `POST /repos/{o}/{r}/pulls`
  (201, a pull request numbered from 7; what the engine's publish path opens), `GET /repos/{o}/{r}/pulls`
  (the open ones of a head), `GET /repos/{o}/{r}/pulls/{n}`, `GET /repos/{o}/{r}/actions/runs/{id}/jobs`,
  `GET /repos/{o}/{r}/actions/jobs/{id}/logs` (302 to the log's download URL, as GitHub does).
- GitLab REST v4 (a project named by its id or its URL-encoded path): `POST /projects/{id}/(issues|merge_requests)/
  {iid}/notes` (201, a note), `POST /projects/{id}/merge_requests` (201, numbered from 1; 409 when the source branch
  has an open one), `GET /projects/{id}/merge_requests?source_branch=&state=opened`, `GET /projects/{id}/
  merge_requests/{iid}` (what the test set: `has_conflicts`, `merge_status`),
  `GET /projects/{id}/pipelines/{id}/jobs` (`scope[]` filters by status), `GET /projects/{id}/jobs/{id}/trace`
  (the raw log).
- Slack Web API: `chat.postMessage`, `reactions.add`, `auth.test` (200 with `ok`), `GET conversations.replies`
  (the thread's first message as the test set it in `slack_messages`, else `thread_not_found`).
- Linear GraphQL: `POST /graphql` with the `commentCreate` mutation.
- Over HTTPS when `tls` (an `ssl.SSLContext` with the server's certificate) is given; `url` then says https.
- A GitLab instance's git side (when `git_root` is set): git's smart HTTP protocol for `/<path>.git/...` served by
  `git http-backend` from the bare repositories under `git_root`, each request refused (401) unless it carries
  `git_token` as the password of HTTP Basic auth, as GitLab does with an access token.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from email.parser import Parser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

GIT_PATH = re.compile(r"^/(?P<repo>[^?]+?\.git)(?P<rest>/(?:info/refs|HEAD|git-upload-pack|git-receive-pack))$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class StandIn:
    """The server, what it recorded, and what it is told to answer (job logs, pull requests, failures)."""

    requests: list[Recorded] = field(default_factory=list)
    logs: dict[int, str] = field(default_factory=dict)
    jobs: dict[int, list[dict]] = field(default_factory=dict)  # workflow run id -> jobs
    pulls: dict[int, dict] = field(default_factory=dict)  # GitHub pull requests, opened or told
    merge_requests: dict[int, dict] = field(default_factory=dict)  # GitLab merge requests, opened or told
    pipeline_jobs: dict[int, list[dict]] = field(default_factory=dict)  # GitLab pipeline id -> jobs
    gitlab_host: str = "https://gitlab.example.com"
    fail_next: int = 0  # answer this many requests 502 first (retries)
    git_root: Path | None = None  # bare repositories served over git's smart HTTP (`<path>.git`)
    git_token: str = ""
    tls: Any = None  # an ssl.SSLContext: serve HTTPS
    git_requests: list[Recorded] = field(default_factory=list)
    slack_messages: dict[tuple[str, str], dict] = field(default_factory=dict)  # (channel, ts) -> message
    held: dict[tuple[str, str], threading.Event] = field(default_factory=dict)  # (method, path): answered once set
    # ("github", number) / ("gitlab", iid) -> changes made to the pull (merge) request after each read of it, in
    # turn: what the provider computed meanwhile (a `mergeable` that was null, a `merge_status` "checking")
    after_read: dict[tuple[str, int], list[dict]] = field(default_factory=dict)
    next_number: int = 7
    next_id: int = 900000
    app_id: str = ""  # GitHub App mode (see the module docstring)
    app_public_key: Any = None
    installations: dict[str, int] = field(default_factory=dict)  # "owner/repo" -> installation id
    token_lifetime: int = 3600
    minted: dict[str, dict] = field(default_factory=dict)  # token -> {installation, expires, repositories, ...}

    def start(self) -> StandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, body: Any = None, headers: dict | None = None) -> None:
                data = (body if isinstance(body, str) else json.dumps(body)).encode() if body is not None else b""
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "text/plain" if isinstance(body, str) else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                path, _, query = self.path.partition("?")
                if stand_in.git_root is not None and (match := GIT_PATH.match(path)):
                    stand_in.git_requests.append(Recorded(method, self.path, dict(self.headers), None))
                    return self._git(method, match, query, raw)
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                stand_in.requests.append(Recorded(method, self.path, dict(self.headers), body))
                if stand_in.fail_next > 0:
                    stand_in.fail_next -= 1
                    return self._answer(502, {"message": "Bad Gateway"})
                if (gate := stand_in.held.get((method, path))) is not None:
                    gate.wait(60)
                status, answer, headers = stand_in.answer(method, path, body, self, parse_qs(query))
                self._answer(status, answer, headers)

            def _git(self, method: str, match: re.Match, query: str, raw: bytes) -> None:
                if stand_in.git_password(self.headers.get("Authorization")) != stand_in.git_token:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="GitLab"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                env = {"PATH": os.environ.get("PATH", ""), "GIT_PROJECT_ROOT": str(stand_in.git_root),
                       "GIT_HTTP_EXPORT_ALL": "1", "REMOTE_USER": "oauth2", "REQUEST_METHOD": method,
                       "PATH_INFO": f"/{match['repo']}{match['rest']}", "QUERY_STRING": query,
                       "CONTENT_TYPE": self.headers.get("Content-Type") or "", "CONTENT_LENGTH": str(len(raw)),
                       "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding") or ""}
                output = subprocess.run(["git", "http-backend"], input=raw, env=env, capture_output=True,
                                        check=False).stdout
                head, _, body = output.partition(b"\r\n\r\n") if b"\r\n\r\n" in output else output.partition(b"\n\n")
                headers = Parser().parsestr(head.decode("latin-1"))
                self.send_response(int((headers.get("Status") or "200").split()[0]))
                for key, value in headers.items():
                    if key.lower() != "status":
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"{'https' if self.tls is not None else 'http'}://127.0.0.1:{self.server.server_address[1]}"
        return self

    def close(self) -> None:
        for gate in self.held.values():
            gate.set()
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def git_password(authorization: str | None) -> str | None:
        scheme, _, value = (authorization or "").partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            return base64.b64decode(value).decode().partition(":")[2]
        except ValueError:
            return None

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def answer(self, method: str, path: str, body: Any, handler,
               query: dict[str, list[str]] | None = None) -> tuple[int, Any, dict | None]:
        auth = handler.headers.get("Authorization") or handler.headers.get("PRIVATE-TOKEN")
        if not auth and not path.startswith("/blob/"):  # a log's download URL is pre-signed
            return 401, {"message": "Requires authentication"}, None
        if self.app_id and path.startswith("/github/"):
            refused = self._app_refusal(method, path, body, handler.headers.get("Authorization") or "")
            if refused is not None:
                return refused
        if match := re.fullmatch(r"/github/repos/([^/]+/[^/]+)/issues/(\d+)/comments", path):
            cid = self._id()
            return 201, {"id": cid, "body": body["body"], "user": {"login": "replicas-bot[bot]", "type": "Bot"},
                         "html_url": f"https://github.com/{match[1]}/issues/{match[2]}#issuecomment-{cid}"}, None
        if (match := re.fullmatch(r"/github/repos/([^/]+/[^/]+)/pulls", path)) and method == "POST":
            number, self.next_number = self.next_number, self.next_number + 1
            pull = {"id": self._id(), "number": number, "state": "open", "title": body["title"], "body": body["body"],
                    "html_url": f"https://github.com/{match[1]}/pull/{number}", "mergeable": True,
                    "head": {"ref": body["head"], "sha": "f" * 40}, "base": {"ref": body["base"]}}
            self.pulls[number] = pull
            return 201, pull, None
        if re.fullmatch(r"/github/repos/([^/]+/[^/]+)/pulls", path):
            return 200, [], None
        if match := re.fullmatch(r"/github/repos/([^/]+/[^/]+)/pulls/(\d+)", path):
            pull = self.pulls.get(int(match[2]))
            return (200, self._read("github", int(match[2]), pull), None) if pull else \
                (404, {"message": "Not Found"}, None)
        if match := re.fullmatch(r"/github/repos/[^/]+/[^/]+/actions/runs/(\d+)/jobs", path):
            jobs = self.jobs.get(int(match[1]), [])
            return 200, {"total_count": len(jobs), "jobs": jobs}, None
        if match := re.fullmatch(r"/github/repos/[^/]+/[^/]+/actions/jobs/(\d+)/logs", path):
            if int(match[1]) not in self.logs:
                return 404, {"message": "Not Found"}, None
            return 302, None, {"Location": f"{self.url}/blob/logs/{match[1]}.txt"}
        if match := re.fullmatch(r"/blob/logs/(\d+)\.txt", path):
            return 200, self.logs[int(match[1])], None
        if re.fullmatch(r"/gitlab/projects/[^/]+/(issues|merge_requests)/\d+/notes", path):
            return 201, {"id": self._id(), "body": body["body"], "author": {"username": "replicas-bot"}}, None
        if match := re.fullmatch(r"/gitlab/projects/[^/]+/merge_requests/(\d+)", path):
            mr = self.merge_requests.get(int(match[1]))
            return (200, self._read("gitlab", int(match[1]), mr), None) if mr else \
                (404, {"message": "404 Not found"}, None)
        if match := re.fullmatch(r"/gitlab/projects/([^/]+)/merge_requests", path):
            return self._gitlab_merge_requests(method, unquote(match[1]), body, query or {})
        if match := re.fullmatch(r"/gitlab/projects/[^/]+/pipelines/(\d+)/jobs", path):
            scopes = (query or {}).get("scope[]") or []
            return 200, [job for job in self.pipeline_jobs.get(int(match[1]), [])
                         if not scopes or job["status"] in scopes], None
        if match := re.fullmatch(r"/gitlab/projects/[^/]+/jobs/(\d+)/trace", path):
            return 200, self.logs.get(int(match[1]), ""), None
        if path == "/slack/chat.postMessage":
            return 200, {"ok": True, "channel": body["channel"], "ts": f"1712000000.{self._id()}",
                         "message": {"text": body["text"], "bot_id": "B0BOT", "thread_ts": body["thread_ts"]}}, None
        if path == "/slack/auth.test":
            return 200, {"ok": True, "url": "https://acme.slack.com/", "team": "Acme", "user": "replicas",
                         "team_id": "T123ABC456", "user_id": "U0BOT00001", "bot_id": "B0BOT"}, None
        if path == "/slack/conversations.replies":
            channel, ts = ((query or {}).get(name, [""])[0] for name in ("channel", "ts"))
            message = self.slack_messages.get((channel, ts))
            return 200, ({"ok": True, "messages": [message], "has_more": False} if message else
                         {"ok": False, "error": "thread_not_found"}), None
        if path == "/slack/reactions.add":
            return 200, {"ok": True}, None
        if path == "/linear/graphql":
            cid = f"comment-{self._id()}"
            return 200, {"data": {"commentCreate": {"success": True, "comment": {
                "id": cid, "url": f"https://linear.app/acme/issue/ENG-123#comment-{cid}"}}}}, None
        return 404, {"message": "Not Found"}, None

    def _app_refusal(self, method: str, path: str, body: Any, authorization: str) -> tuple[int, Any, None] | None:
        """GitHub App mode: the App's own endpoints (answered here) take its JWT; the rest a minted token."""
        token = authorization.removeprefix("Bearer ").removeprefix("token ").strip()
        install = re.fullmatch(r"/github/repos/([^/]+/[^/]+)/installation", path)
        minting = re.fullmatch(r"/github/app/installations/(\d+)/access_tokens", path)
        if install or minting:
            problem = self._jwt_problem(token)
            if problem:
                return 401, {"message": problem, "documentation_url": "https://docs.github.com/rest"}, None
            if install:
                found = self.installations.get(install[1].lower())
                return (200, {"id": found, "app_id": int(self.app_id), "target_type": "Organization"}, None) if found \
                    else (404, {"message": "Not Found"}, None)
            if method != "POST" or int(minting[1]) not in self.installations.values():
                return 404, {"message": "Not Found"}, None
            return 201, self._mint(int(minting[1]), body or {}), None
        grant = self.minted.get(token)
        if grant is None or grant["expires"] <= time.time():
            return 401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, None
        repo = re.match(r"/github/repos/[^/]+/([^/]+)/", path)
        if grant["repositories"] is not None and (repo is None or repo[1] not in grant["repositories"]):
            return 403, {"message": "Resource not accessible by integration"}, None
        return None

    def _jwt_problem(self, token: str) -> str | None:
        """Why GitHub would refuse `token` as the App's JWT, or None."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def decode(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            header, claims, signature = token.split(".")
            if json.loads(decode(header)).get("alg") != "RS256":
                return "'alg' must be RS256"
            self.app_public_key.verify(decode(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(),
                                       hashes.SHA256())
            values = json.loads(decode(claims))
        except (ValueError, InvalidSignature):
            return "A JSON web token could not be decoded"
        now = time.time()
        if str(values.get("iss")) != self.app_id:
            return "'Issuer' claim ('iss') must be an Integer"
        if not values.get("iat", now + 1) <= now < values.get("exp", 0) or values["exp"] - values["iat"] > 600:
            return "'Expiration time' claim ('exp') is too far in the future or has passed"
        return None

    def _mint(self, installation: int, body: dict) -> dict:
        token = f"ghs_app_{self._id()}"
        expires = time.time() + self.token_lifetime
        self.minted[token] = {"installation": installation, "expires": expires,
                              "repositories": body.get("repositories"), "permissions": body.get("permissions")}
        answer = {"token": token, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires)),
                  "permissions": body.get("permissions") or {"issues": "write", "pull_requests": "write",
                                                             "contents": "write", "checks": "read",
                                                             "actions": "read"},
                  "repository_selection": "selected" if body.get("repositories") else "all"}
        return answer

    def _gitlab_merge_requests(self, method: str, project: str, body: Any,
                               query: dict[str, list[str]]) -> tuple[int, Any, None]:
        if method == "GET":
            branch, state = (query.get("source_branch") or [None])[0], (query.get("state") or [None])[0]
            return 200, [mr for mr in self.merge_requests.values()
                         if (branch is None or mr["source_branch"] == branch)
                         and (state in (None, "all") or mr["state"] == state)], None
        for mr in self.merge_requests.values():
            if mr["source_branch"] == body["source_branch"] and mr["state"] == "opened":
                return 409, {"message": ["Another open merge request already exists for this source branch: "
                                         f"!{mr['iid']}"]}, None
        iid = len(self.merge_requests) + 1
        path = project if "/" in project else "acme/shop"
        mr = {"id": self._id(), "iid": iid, "project_id": 15, "title": body["title"],
              "description": body.get("description"), "state": "opened", "source_branch": body["source_branch"],
              "target_branch": body["target_branch"], "merge_status": "checking", "has_conflicts": False,
              "sha": "f" * 40,
              "web_url": f"{self.gitlab_host}/{path}/-/merge_requests/{iid}"}
        self.merge_requests[iid] = {**mr, "merge_status": "can_be_merged", "detailed_merge_status": "mergeable"}
        return 201, mr, None  # GitLab checks a new merge request in the background: "checking" in the answer

    def _read(self, provider: str, number: int, item: dict) -> dict:
        """What a read answers (a copy), then the provider's next computed change, if the test set one."""
        answer = dict(item)
        if changes := self.after_read.get((provider, number)):
            item.update(changes.pop(0))
        return answer

    def made(self, method: str, pattern: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(pattern, r.path)]
