"""The installed `replicas` command: administer a data dir, then serve it and use the printed keys."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.slow

REPLICAS = shutil.which("replicas", path=str(Path(sys.executable).parent))


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any REPLICAS_* setting, so only the given data dir counts."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLICAS_")}
    return {**env, "REPLICAS_DATA_DIR": str(data_dir), **extra}


def run_replicas(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    assert REPLICAS, "the `replicas` command is not installed next to this Python"
    return subprocess.run([REPLICAS, *args], env=env, capture_output=True, text=True, timeout=120)


def replicas(*args: str, env: dict[str, str]) -> str:
    """Run a command that must succeed; return its stdout."""
    result = run_replicas(*args, env=env)
    assert result.returncode == 0, f"replicas {' '.join(args)} failed:\n{result.stderr}"
    return result.stdout.strip()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve(data_dir: Path, env: dict[str, str]) -> Iterator[str]:
    """Run `replicas serve` on a free port until /healthz answers; always terminate it."""
    port = _free_port()
    log = (data_dir.parent / f"serve-{port}.log").open("w")
    process = subprocess.Popen([REPLICAS, "serve", "--port", str(port), "--data-dir", str(data_dir)],
                               env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"replicas serve exited with {process.returncode}:\n"
                                     f"{Path(log.name).read_text()}")
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"replicas serve did not start:\n{Path(log.name).read_text()}")
            time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_keys_users_and_repos_created_by_the_cli_work_against_the_server(tmp_path, make_git_repo):
    data_dir = tmp_path / "data"
    env = _env(data_dir)
    org_key = replicas("keys", "create", "--org", "acme", env=env)
    personal_key = replicas("users", "create", "alice@example.com", "--org", "acme", env=env)
    assert org_key.startswith("sk_replicas_") and personal_key.startswith("sk_replicas_")
    repo_path = make_git_repo("demo", branch="trunk")
    repo = json.loads(replicas("admin", "repos", "add", "acme/demo", str(repo_path), "--org", "acme", env=env))
    assert repo["name"] == "acme/demo" and repo["default_branch"] == "trunk"
    assert repo["url"] == repo_path.as_uri()
    assert json.loads(replicas("admin", "repos", "list", "--org", "acme", env=env)) == [repo]
    with serve(data_dir, env) as base:
        as_org = httpx.get(f"{base}/v1/replica/repositories", headers={"Authorization": f"Bearer {org_key}"})
        assert as_org.status_code == 200 and as_org.json() == {"repositories": [repo]}
        as_alice = httpx.get(f"{base}/v1/user/api-keys", headers={"Authorization": f"Bearer {personal_key}"})
        assert as_alice.status_code == 200 and as_alice.json()["total"] == 1
        assert personal_key not in as_alice.text


def test_a_first_start_without_any_key_prints_one_to_sign_in_with(tmp_path):
    """`make run` on a fresh data dir, no bootstrap key: the log shows the first key, once; it works."""
    import re

    data_dir = tmp_path / "first"
    env = _env(data_dir)
    with serve(data_dir, env) as base:
        log = next(data_dir.parent.glob("serve-*.log")).read_text()
        keys = re.findall(r"sk_replicas_[A-Za-z0-9_-]{16,}", log)
        assert len(keys) == 1 and "the first one, for the `default` organization" in log, log
        ok = httpx.get(f"{base}/v1/replica", headers={"Authorization": f"Bearer {keys[0]}"})
        assert ok.status_code == 200, ok.text
        signed_in = httpx.post(f"{base}/auth/session", json={"api_key": keys[0]})
        assert signed_in.status_code in (200, 201), signed_in.text
    for stale in data_dir.parent.glob("serve-*.log"):
        stale.unlink()
    with serve(data_dir, env):  # a key exists now: nothing is minted or printed again
        assert "sk_replicas_" not in next(data_dir.parent.glob("serve-*.log")).read_text()
    assert "sk_replicas_" in replicas("keys", "create", "--org", "default", env=env)


def test_repos_commands_report_errors_without_a_traceback(tmp_path, make_git_repo):
    env = _env(tmp_path / "data")
    missing = run_replicas("admin", "repos", "add", "acme/none", str(tmp_path / "nothing"), "--org", "acme", env=env)
    assert missing.returncode == 1 and "does not appear to be a git repository" in missing.stderr
    assert "Traceback" not in missing.stderr
    path = make_git_repo("demo")
    replicas("admin", "repos", "add", "acme/demo", str(path), "--org", "acme", env=env)
    assert replicas("admin", "repos", "remove", "acme/demo", "--org", "acme", env=env) == "removed acme/demo"
    assert json.loads(replicas("admin", "repos", "list", "--org", "acme", env=env)) == []
    gone = run_replicas("admin", "repos", "remove", "acme/demo", "--org", "acme", env=env)
    assert gone.returncode == 1 and "Repository not found" in gone.stderr


def test_bootstrap_api_key_works_on_a_fresh_data_dir(tmp_path):
    key = "sk_replicas_" + "b" * 32
    data_dir = tmp_path / "fresh"
    with serve(data_dir, _env(data_dir, REPLICAS_BOOTSTRAP_API_KEY=key)) as base:
        ok = httpx.get(f"{base}/v1/replica/repositories", headers={"Authorization": f"Bearer {key}"})
        assert ok.status_code == 200 and ok.json() == {"repositories": []}
        wrong = httpx.get(f"{base}/v1/replica/repositories",
                          headers={"Authorization": f"Bearer sk_replicas_{'c' * 32}"})
        assert wrong.status_code == 401
