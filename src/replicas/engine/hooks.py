"""The start-hook runner (spec §5, §5.1 boot steps 2-3).

At engine start, in the background: the environment's start-hook script (REPLICAS_START_HOOK_FILE),
then each repository's `startHook` from its `replicas.json|yaml`, in the repository's directory.
With `separate` (the default) each command runs in its own shell with its own timeout; otherwise the
commands are joined into one script under one timeout. A failing or timed-out command does not stop
the next ones, nor start-up, nor messages. Each hook is recorded as the contract's StartHookLogEntry
(exit code, timed-out flag, output) and journaled as `hooks.started`, `hooks.progress` (after each
hook), then `hooks.completed` or `hooks.failed` (some hook failed), with `{running, completed}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from replicas.engine import repos as repo_status
from replicas.engine.journal import Journal, utc_timestamp
from replicas.repo_config import (
    CONFIG_FILES,
    DEFAULT_HOOK_TIMEOUT_MS,
    HookSpec,
    RepoConfigError,
    parse_repo_config,
)

logger = logging.getLogger(__name__)
OUTPUT_PREVIEW_CHARS = 100_000
TIMED_OUT_EXIT_CODE = 124


@dataclass
class CommandResult:
    exit_code: int
    timed_out: bool
    output: str


async def run_shell(script: str, cwd: Path, env: dict[str, str], timeout_ms: int) -> CommandResult:
    """Run `script` with bash in its own process group; on timeout the whole group is killed."""
    process = await asyncio.create_subprocess_exec(
        "bash", "-c", script, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=timeout_ms / 1000)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return CommandResult(TIMED_OUT_EXIT_CODE, True, f"timed out after {timeout_ms} ms\n")
    return CommandResult(process.returncode or 0, False, output.decode(errors="replace"))


def read_start_hook(repo: Path) -> tuple[HookSpec | None, str | None]:
    """The repository's `startHook` from the first configuration file at its root, or why not."""
    for name in CONFIG_FILES:
        path = repo / name
        if path.is_file():
            try:
                return parse_repo_config(path.read_text(), name).start_hook, None
            except RepoConfigError as exc:
                return None, str(exc)
    return None, None


def log_entry(hook_type: str, name: str, commands: list[str], output: str, exit_code: int,
              timed_out: bool, executed_at: str) -> dict:
    """The contract's StartHookLogEntry."""
    return {"hookType": hook_type, "hookName": name, "repoName": name, "hookCommands": commands,
            "output": output[:OUTPUT_PREVIEW_CHARS], "outputTruncated": len(output) > OUTPUT_PREVIEW_CHARS,
            "outputTotalChars": len(output), "exitCode": exit_code, "timedOut": timed_out,
            "executedAt": executed_at}


class StartHookRunner:
    """Runs the start hooks once per engine start and keeps their log (`logs`) and state."""

    def __init__(self, journal: Journal, workspaces_dir: Path, env: dict[str, str],
                 environment_script: Path | None = None,
                 on_change: Callable[[], Awaitable[None]] | None = None):
        self.journal = journal
        self.workspaces_dir = workspaces_dir
        self.env = env
        self.environment_script = environment_script
        self.on_change = on_change
        self.logs: list[dict] = []
        self.running = False
        self.completed = False
        self.completed_repos: set[str] = set()
        self.task: asyncio.Task | None = None

    def status(self) -> dict:
        return {"running": self.running, "completed": self.completed}

    def start(self) -> asyncio.Task:
        self.task = asyncio.create_task(self.run())
        return self.task

    async def run(self) -> None:
        self.running, self.completed, failed = True, False, False
        self.journal.append("hooks.started", self.status())
        await self._changed()
        try:
            if self.environment_script is not None and self.environment_script.is_file():
                cwd = self.workspaces_dir if self.workspaces_dir.is_dir() else self.environment_script.parent
                failed |= not await self._run_hook("environment", "environment",
                                                   HookSpec(commands=[f"bash {self.environment_script}"],
                                                            separate=True), cwd)
            for repo in repo_status.discover(self.workspaces_dir):
                spec, problem = read_start_hook(repo)
                if problem:
                    failed = True
                    self._record(log_entry("repository", repo.name, [], problem + "\n", 1, False, utc_timestamp()))
                elif spec and spec.commands:
                    failed |= not await self._run_hook("repository", repo.name, spec, repo)
                self.completed_repos.add(repo.name)
        except Exception as exc:  # noqa: BLE001 - a broken hook runner must not take the engine down
            logger.exception("start hooks failed")
            failed = True
            self._record(log_entry("environment", "environment", [], f"hook runner error: {exc}\n", 1, False,
                                   utc_timestamp()))
        self.running, self.completed = False, True
        self.journal.append("hooks.failed" if failed else "hooks.completed", self.status())
        await self._changed()

    async def _run_hook(self, hook_type: str, name: str, spec: HookSpec, cwd: Path) -> bool:
        executed_at = utc_timestamp()
        timeout = spec.timeout or DEFAULT_HOOK_TIMEOUT_MS
        scripts = spec.commands if spec.separate else ["\n".join(spec.commands)]
        outputs, exit_code, timed_out = [], 0, False
        for script in scripts:
            result = await run_shell(script, cwd, self.env, timeout)
            outputs.append(f"$ {script}\n{result.output}")
            timed_out |= result.timed_out
            if result.exit_code and not exit_code:
                exit_code = result.exit_code  # the first failure's code; the next commands still run
        self._record(log_entry(hook_type, name, list(spec.commands), "".join(outputs), exit_code, timed_out,
                               executed_at))
        return exit_code == 0 and not timed_out

    def _record(self, entry: dict) -> None:
        self.logs.append(entry)
        self.journal.append("hooks.progress", self.status())

    async def _changed(self) -> None:
        if self.on_change is not None:
            await self.on_change()
