"""Warm hooks (spec §5, §5.1 pre-warm steps 2-4): once per workspace, in its sandbox, before its engine starts.

What runs, in order:

1. Global's warm hook, then the environment's (with, for a personal environment backed by a team one,
   the source's in between): each one bash script, `hookType: global`, named `global` or after its
   environment, under the 15-minute bound of environment-level hooks (spec §10 #25, the setting the
   hook test endpoints use: a test run and the real run are bounded alike).
2. Each checkout's `warmHook` from its `replicas.json|yaml`, in the checkout: `hookType: repository`,
   named after its folder under ~/workspaces (as its start hook is). With `separate` (the default) each
   command runs in its own shell under the hook's `timeout`; otherwise the commands are one script under
   one timeout. A configuration file that cannot be parsed is a failed warm hook of that repository.

Where: `Runtime.exec` on the provisioned, not yet started workspace, so a hook has the workspace's own
isolation and limits (its home, never the data dir) and the environment's variables, as in a hook test.
Scripts are written into the home before the first exec (a remote Docker engine copies the home into
the workspace's volume at its first exec or start).

Failure: a hook that fails or times out is recorded (`exitCode`, `timedOut`) and the next one still runs;
nothing here raises for it. The cold path (`WorkspaceManager.provision`) goes on and starts the engine;
a pool filler calls `warm_workspace` on its workspace before it is claimed and reads
`WarmHookReport.failed` to mark that workspace failed (spec §5).

The record is one contract WarmHookLogEntry per hook (camelCase, as the hosted engine has it). The
control plane keeps it on the workspace's row (`snapshot[LOG_KEY]`), which `GET /v1/replica/{id}/hooks`
and `include=environment` read, awake or asleep, on every backend; a file in the home would not reach a
remote Docker engine's volume once the workspace has run something there. `output` is the end of the
output (where a failure shows), at most `OUTPUT_PREVIEW_CHARS`; `outputTotalChars` counts all of it.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicas.engine.hooks import OUTPUT_PREVIEW_CHARS, TIMED_OUT_EXIT_CODE
from replicas.engine.journal import utc_timestamp
from replicas.runtime import Runtime, WorkspaceHandle
from replicas.runtime.base import OutputCallback
from replicas.services import home_files
from replicas.services.hook_runner import HOOK_ENV, MAX_OUTPUT_BYTES, TailBuffer, shell_exit_code
from replicas.services.provisioning import ProvisionResult, ResolvedEnvironment
from replicas.settings import Settings

log = logging.getLogger("replicas.warm_hooks")

# Where the workspace's row keeps its warm hook log entries (a list; present once its warm hooks ran).
LOG_KEY = "warm_hook_logs"
GLOBAL, REPOSITORY = "global", "repository"


@dataclass(frozen=True)
class WarmHook:
    """One warm hook of a workspace: one log entry. `timeout` is in seconds, per command when `separate`."""

    hook_type: str
    name: str
    commands: tuple[str, ...]
    timeout: float
    separate: bool = False
    cwd: str | None = None  # None: the home
    problem: str | None = None  # why it cannot run at all (a malformed replicas.json): recorded as failed

    @property
    def script(self) -> str:
        return "\n".join(self.commands)


@dataclass
class WarmHookReport:
    """What `warm_workspace` ran: the contract's log entries, in order."""

    logs: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [entry for entry in self.logs if failed(entry)]


def failed(entry: dict[str, Any]) -> bool:
    """Whether a WarmHookLogEntry records a failure (a non-zero exit or a timeout)."""
    return bool(entry.get("exitCode")) or bool(entry.get("timedOut"))


def planned_hooks(resolved: ResolvedEnvironment, provisioned: ProvisionResult, timeout: float) -> list[WarmHook]:
    """The warm hooks of a provisioned workspace, in the order they run (see the module docstring)."""
    hooks = [WarmHook(GLOBAL, name, (content,), timeout) for name, content in resolved.warm_hooks]
    for repo in provisioned.repos:
        folder = repo.path.name
        if repo.config_error:
            hooks.append(WarmHook(REPOSITORY, folder, (), 0.0, problem=repo.config_error))
        elif repo.warm_hook is not None and repo.warm_hook.commands:
            spec = repo.warm_hook
            hooks.append(WarmHook(REPOSITORY, folder, tuple(spec.commands), spec.timeout / 1000, spec.separate,
                                  str(repo.path)))
    return hooks


class _Output:
    """A hook's output: the tail kept (bounded), every character counted."""

    def __init__(self, on_output: OutputCallback | None = None) -> None:
        self.buffer = TailBuffer(MAX_OUTPUT_BYTES)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.chars = 0
        self.on_output = on_output

    def add_bytes(self, chunk: bytes) -> None:
        if self.on_output is not None:
            self.on_output(chunk)
        self.buffer.append(chunk)
        self.chars += len(self.decoder.decode(chunk))

    def add(self, text: str) -> None:
        self.add_bytes(text.encode())

    def preview(self) -> tuple[str, bool, int]:
        """(output, outputTruncated, outputTotalChars)."""
        self.chars += len(self.decoder.decode(b"", final=True))
        text = self.buffer.tail()
        truncated = self.chars > OUTPUT_PREVIEW_CHARS or self.buffer.dropped > 0
        return (text[-OUTPUT_PREVIEW_CHARS:] if truncated else text), truncated, self.chars


def _write_scripts(home: Path, hooks: list[WarmHook]) -> dict[int, Path | str]:
    """Each environment-level script into ~/.replicas/hooks (never through a symlink planted there):
    index -> its path, or why it could not be written."""
    paths: dict[int, Path | str] = {}
    for index, hook in enumerate(hooks):
        if hook.hook_type != GLOBAL:
            continue
        content = hook.script if hook.script.endswith("\n") else hook.script + "\n"
        try:
            paths[index] = home_files.write_text(home, f".replicas/hooks/warm-{index}.sh", content, 0o700)
        except (home_files.PathRefused, OSError) as exc:
            paths[index] = f"the script could not be written: {exc}"
    return paths


async def _run(runtime: Runtime, handle: WorkspaceHandle, hook: WarmHook, script: Path | str | None,
               env: dict[str, str], on_output: OutputCallback | None = None) -> dict[str, Any]:
    executed_at = utc_timestamp()
    output = _Output(on_output)
    exit_code, timed_out = 0, False
    if hook.hook_type == GLOBAL:
        runs = [(["bash", str(script)], None)] if isinstance(script, Path) else []
        problem = script if isinstance(script, str) else None
    else:
        scripts = list(hook.commands) if hook.separate else [hook.script]
        runs = [(["bash", "-c", command], command) for command in scripts]
        problem = hook.problem
    if problem:
        output.add(problem + "\n")
        exit_code = 1
    for argv, shown in [] if problem else runs:
        if shown is not None:
            output.add(f"$ {shown}\n")
        try:
            result = await runtime.exec(handle, argv, hook.timeout, env=env, cwd=hook.cwd or handle.home,
                                        on_output=output.add_bytes)
            await asyncio.sleep(0)  # output handed over from a worker thread (docker) lands first
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - a sandbox that would not run it fails this hook only
            output.add(f"[could not run: {exc}]\n")
            code, timed = 1, False
        else:
            timed = result.timed_out
            if timed:
                output.add(f"\n[timed out after {hook.timeout:g}s; the script and its children were killed]\n")
            code = TIMED_OUT_EXIT_CODE if timed else shell_exit_code(result.exit_code)
        timed_out |= timed
        if code and not exit_code:
            exit_code = code  # the first failure's code; the next commands still run (as for start hooks)
    text, truncated, total = output.preview()
    return {"hookType": hook.hook_type, "hookName": hook.name, "hookScript": hook.script, "output": text,
            "outputTruncated": truncated, "outputTotalChars": total, "exitCode": exit_code,
            "timedOut": timed_out, "executedAt": executed_at}


async def run_warm_hooks(runtime: Runtime, handle: WorkspaceHandle, hooks: list[WarmHook],
                         env: dict[str, str], on_output: OutputCallback | None = None,
                         before: Callable[[], Awaitable[None]] | None = None) -> list[dict[str, Any]]:
    """Run `hooks` in order in the workspace `handle` (provisioned; stopped or running), each once, whatever
    the one before did; their WarmHookLogEntry dicts. `on_output` gets all of their output as it comes.
    `before` runs once their scripts are written into the home, before the first (the checkouts a workspace
    makes itself: what the home holds when the first command runs in it is what reaches a staged disk)."""
    scripts = await asyncio.to_thread(_write_scripts, Path(handle.home), hooks)
    if before is not None:
        await before()
    return [await _run(runtime, handle, hook, scripts.get(index), env, on_output)
            for index, hook in enumerate(hooks)]


OnStep = Callable[[str, dict[str, Any]], Awaitable[None] | None]


async def warm_workspace(runtime: Runtime, handle: WorkspaceHandle, resolved: ResolvedEnvironment,
                         provisioned: ProvisionResult, settings: Settings, *,
                         on_step: OnStep | None = None, on_output: OutputCallback | None = None,
                         before: Callable[[], Awaitable[None]] | None = None) -> WarmHookReport:
    """Run the warm hooks of a workspace whose home `provision_home` laid out (`provisioned`) and whose engine
    has not started. The caller keeps `report.logs` on the workspace's row (`LOG_KEY`) and runs this once per
    workspace: at provisioning on the cold path, or before the claim for a pooled one. `on_step` gets
    `("warm_hooks", detail)` as `provision_home`'s steps do: names, codes and timings, never output."""
    started = time.perf_counter()
    hooks = planned_hooks(resolved, provisioned, settings.hook_test_timeout_seconds)
    report = WarmHookReport()
    if hooks:
        report.logs = await run_warm_hooks(runtime, handle, hooks, {**provisioned.env, **HOOK_ENV}, on_output,
                                           before)
    elif before is not None:
        await before()
    report.seconds = time.perf_counter() - started
    for entry in report.failed:  # names and codes only: a hook's output may hold anything
        log.warning("warm hook failed workspace_id=%s hook_type=%s hook_name=%s exit_code=%s timed_out=%s",
                    handle.workspace_id, entry["hookType"], entry["hookName"], entry["exitCode"], entry["timedOut"])
    if on_step is not None:
        detail = {"hooks": [{"type": e["hookType"], "name": e["hookName"], "exit_code": e["exitCode"],
                             "timed_out": e["timedOut"]} for e in report.logs],
                  "seconds": round(report.seconds, 3), "warnings": []}
        outcome = on_step("warm_hooks", detail)
        if asyncio.iscoroutine(outcome):
            await outcome
    return report

