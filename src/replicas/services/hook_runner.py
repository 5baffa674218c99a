"""Runs a warm or start hook script for the test endpoints, in a throwaway workspace of its environment.

The contract says "Provisions an isolated sandbox, runs the supplied script", and that is what happens:
a test run is a real workspace of the configured runtime (bubblewrap on `local`, a container on
`docker`), provisioned from the environment as any workspace is (Global plus environment variables
and files, MCP configs, skills, the repositories checked out), and never started. The script runs in
it through `Runtime.exec`, with the workspace's isolation and limits; the workspace is destroyed
afterwards whatever happens: success, timeout, a provisioning error, or a client that goes away
mid-stream. Where no sandbox can be had, the run is refused with `SandboxUnavailable` before anything
is provisioned: tenant code never runs on the control plane's host.

Usage::

    run = SandboxHookRun(runtime, resolved, script, settings=settings)
    async for kind, text in run:     # ("progress", message) and ("output", chunk), in order
        ...
    run.result                       # HookResult(exit_code, output, timed_out)

or, when only the outcome matters, `await run.wait()`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from replicas.errors import ReplicasError
from replicas.runtime import Runtime, WorkspaceHandle, WorkspaceSpec
from replicas.runtime.local import python_environment_paths
from replicas.services import provisioning
from replicas.settings import Settings

log = logging.getLogger("replicas.hooks")

# The output kept for the result; streamed chunks are not capped (the client reads them as they come).
MAX_OUTPUT_BYTES = 1024 * 1024
TIMED_OUT_EXIT_CODE = -1
# Throwaway workspaces are named so; `replicas` never lists them as workspaces (they have no row).
WORKSPACE_PREFIX = "hooktest-"
SCRIPT_NAME = "hook-test.sh"
# What a hook sees besides the environment's variables (the runtime sets HOME, PATH, USER and the like).
HOOK_ENV = {"CI": "1", "TERM": "dumb", "SHELL": "/bin/bash"}
# Beyond the hook timeout, what provisioning a sandbox may take before a left-over one counts as abandoned.
ABANDONED_MARGIN_SECONDS = 600.0


class SandboxProvisioningFailed(ReplicasError):
    """The throwaway workspace could not be laid out (a repository that cannot be fetched, say)."""

    status = 500
    default_message = "The hook's sandbox could not be provisioned"


@dataclass(frozen=True)
class HookResult:
    """The outcome of one run. `exit_code` follows the shell's convention (128 + signal when a signal
    ended the script); a timed-out run reports `TIMED_OUT_EXIT_CODE`."""

    exit_code: int
    output: str
    timed_out: bool

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


class TailBuffer:
    """Keeps the last `limit` bytes of the output and counts what it dropped (shared with `warm_hooks`)."""

    def __init__(self, limit: int):
        self.limit, self.dropped = limit, 0
        self._data = bytearray()

    def append(self, chunk: bytes) -> None:
        self._data += chunk
        # Trim only once the buffer is twice the limit, so that appends stay amortised O(1).
        if len(self._data) > 2 * self.limit:
            self._trim()

    def _trim(self) -> None:
        excess = len(self._data) - self.limit
        if excess > 0:
            del self._data[:excess]
            self.dropped += excess

    def tail(self) -> str:
        """The bytes kept, decoded (a character cut by the trim becomes U+FFFD)."""
        self._trim()
        return bytes(self._data).decode(errors="replace")

    def text(self) -> str:
        body = self.tail()
        if not self.dropped:
            return body
        return (f"[output truncated: the first {self.dropped:,} bytes were dropped; "
                f"the last {self.limit:,} bytes follow]\n{body}")


def shell_exit_code(code: int) -> int:
    """A runtime's exit code as the shell reports it: a process killed by signal N (negative) is 128 + N."""
    return 128 - code if code < 0 else code


class SandboxHookRun:
    """One test run of a hook script in a throwaway workspace. Iterate it once; then read `result`."""

    def __init__(self, runtime: Runtime, resolved: provisioning.ResolvedEnvironment, script: str, *, settings: Settings,
                 label: str = "script", timeout: float | None = None, max_output_bytes: int = MAX_OUTPUT_BYTES):
        self.runtime, self.resolved, self.script, self.settings = runtime, resolved, script, settings
        self.timeout = timeout if timeout is not None else settings.hook_test_timeout_seconds
        self.max_output_bytes, self.label = max_output_bytes, label
        self.workspace_id = f"{WORKSPACE_PREFIX}{uuid.uuid4().hex[:20]}"
        self.result: HookResult | None = None

    def __aiter__(self) -> AsyncIterator[tuple[str, str]]:
        return self._run()

    async def wait(self) -> HookResult:
        async for _ in self:
            pass
        assert self.result is not None
        return self.result

    async def _run(self) -> AsyncIterator[tuple[str, str]]:
        await self.runtime.check_isolation()  # before anything exists: refuse rather than run on the host
        handle: WorkspaceHandle | None = None
        try:
            yield "progress", f"Provisioning an isolated sandbox for the {self.label} ({self.runtime.name} runtime)"
            spec = WorkspaceSpec(size="small", ro_binds=[str(self.settings.resolved_tools_dir),
                                                         *python_environment_paths()])
            handle = await self.runtime.provision(self.workspace_id, spec)
            try:
                provisioned = await provisioning.provision_home(
                    self.resolved, Path(handle.home), self.settings.data_dir,
                    allow_local_repositories=self.settings.allow_local_repositories,
                    clone_in_workspace=self.runtime.clones_in_workspace)
            except ReplicasError:
                raise
            except Exception as exc:  # noqa: BLE001 - git and file errors: say what failed, never a bare 500
                raise SandboxProvisioningFailed(details=str(exc)[:2000] or type(exc).__name__) from None
            script_path = Path(handle.run_dir) / SCRIPT_NAME
            await asyncio.to_thread(script_path.write_text, self.script)
            # The checkouts a workspace makes itself (Kubernetes): after the script is in the home it takes along.
            await provisioning.make_planned_checkouts(self.runtime, handle, provisioned)
            for repo in provisioned.repos:
                yield "progress", f"Checked out {repo.name} at {repo.commit[:12]} ({repo.branch})"
            for warning in provisioned.warnings:
                yield "progress", f"Warning: {warning}"
            yield "progress", f"Running the {self.label}"
            async for item in self._exec(handle, script_path, {**provisioned.env, **HOOK_ENV}):
                yield item
        finally:
            # Runs on success, timeout, errors and when the consumer stops early (client disconnect). The
            # clean-up is a task of its own: a cancelled consumer (anyio cancels again at every await) may
            # stop waiting for it, but it still destroys the workspace.
            if handle is not None:
                cleanup = asyncio.ensure_future(self._destroy(handle))
                _cleanups.add(cleanup)
                cleanup.add_done_callback(_cleanups.discard)
                await asyncio.shield(cleanup)

    async def _exec(self, handle: WorkspaceHandle, script_path: Path,
                    env: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        buffer = TailBuffer(self.max_output_bytes)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

        def on_output(chunk: bytes) -> None:
            buffer.append(chunk)
            chunks.put_nowait(chunk)

        execution = asyncio.create_task(self.runtime.exec(
            handle, ["bash", str(script_path)], self.timeout, env=env, cwd=handle.home, on_output=on_output))
        execution.add_done_callback(lambda _: chunks.put_nowait(None))
        try:
            while (chunk := await chunks.get()) is not None:
                if text := decoder.decode(chunk):
                    yield "output", text
            # Chunks handed over from a worker thread may land after the command's end: drain them too.
            await asyncio.sleep(0)
            while not chunks.empty():
                if (chunk := chunks.get_nowait()) is not None and (text := decoder.decode(chunk)):
                    yield "output", text
            result = await execution
        finally:
            if not execution.done():
                execution.cancel()
                with contextlib.suppress(BaseException):
                    await execution
        if tail := decoder.decode(b"", final=True):
            yield "output", tail
        if result.timed_out:
            notice = f"\n[timed out after {self.timeout:g}s; the script and its children were killed]\n"
            buffer.append(notice.encode())
            yield "output", notice
            exit_code = TIMED_OUT_EXIT_CODE
        else:
            exit_code = shell_exit_code(result.exit_code)
        self.result = HookResult(exit_code=exit_code, output=buffer.text(), timed_out=result.timed_out)

    async def _destroy(self, handle: WorkspaceHandle) -> None:
        try:
            await self.runtime.destroy(handle)
        except Exception:  # noqa: BLE001 - a clean-up failure must not hide the run's own outcome
            log.exception("hook test sandbox not destroyed workspace_id=%s", self.workspace_id)


_cleanups: set[asyncio.Future] = set()


async def remove_abandoned_sandboxes(runtime: Runtime, settings: Settings) -> list[str]:
    """Destroy the throwaway workspaces that a control plane killed mid-run left behind (a crash, kill -9),
    and return their ids. A sandbox counts as abandoned once it is older than the longest a run may take
    (the hook timeout) plus a margin for provisioning, so that another control-plane process's run in flight
    on the same data dir is never touched. Backends whose disk is on this host only (local, docker on the
    same host): a remote Docker engine keeps no directory here to find them by."""
    root = settings.data_dir / "workspaces"
    cutoff = time.time() - settings.hook_test_timeout_seconds - ABANDONED_MARGIN_SECONDS

    def abandoned() -> list[str]:
        if not root.is_dir():
            return []
        return [path.name for path in root.glob(f"{WORKSPACE_PREFIX}*")
                if path.is_dir() and path.stat().st_mtime < cutoff]

    removed = []
    for workspace_id in await asyncio.to_thread(abandoned):
        try:
            await runtime.destroy(await runtime.provision(workspace_id, WorkspaceSpec()))
            removed.append(workspace_id)
        except Exception:  # noqa: BLE001 - one that will not go must not stop the others; tried again next start
            log.exception("abandoned hook test sandbox not removed workspace_id=%s", workspace_id)
    if removed:
        log.info("removed abandoned hook test sandboxes count=%d", len(removed))
    return removed
