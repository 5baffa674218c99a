"""Runs a warm or start hook script for the test endpoints, with a timeout and a capped output.

Proper sandboxed runs (bubblewrap, a container, a pod) arrive with the workspace runtime; until
then this runner is the test harness's sandbox. It isolates what it cheaply can:

- a fresh scratch directory under `<data_dir>/hook-tests/<uuid>` is the script's HOME and cwd, and
  is removed afterwards;
- the environment is rebuilt from a short allow-list, so the control plane's own settings and
  secrets (`REPLICAS_SECRET_KEY`, database URLs) never reach the script;
- the script runs in its own session and process group, and the whole group is killed at the
  timeout and again when the script ends, so background children do not outlive the run.

Usage::

    run = HookRun(script, work_root=settings.data_dir / "hook-tests", timeout=900)
    async for chunk in run:          # output as it is produced, stdout and stderr merged in order
        ...
    run.result                       # HookResult(exit_code, output, timed_out)

or, when only the outcome matters, `await run_script(script, work_root=..., timeout=...)`.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import shutil
import signal
import stat
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

# The output kept for the result; streamed chunks are not capped (the client reads them as they come).
MAX_OUTPUT_BYTES = 1024 * 1024
TIMED_OUT_EXIT_CODE = -1
READ_CHUNK_BYTES = 64 * 1024
# Variables worth passing from the server's environment; everything else stays behind.
INHERITED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "USER", "LOGNAME")


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


class _TailBuffer:
    """Keeps the last `limit` bytes of the output and counts what it dropped."""

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

    def text(self) -> str:
        self._trim()
        body = bytes(self._data).decode(errors="replace")
        if not self.dropped:
            return body
        return (f"[output truncated: the first {self.dropped:,} bytes were dropped; "
                f"the last {self.limit:,} bytes follow]\n{body}")


class HookRun:
    """One run of a bash script. Iterate it once to receive its output; then read `result`."""

    def __init__(self, script: str, *, work_root: Path, timeout: float,
                 max_output_bytes: int = MAX_OUTPUT_BYTES):
        # Absolute, because the script runs with its scratch directory as cwd.
        self.script, self.work_root, self.timeout = script, Path(work_root).resolve(), timeout
        self.max_output_bytes = max_output_bytes
        self.result: HookResult | None = None

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _run(self) -> AsyncIterator[str]:
        run_id = uuid.uuid4().hex
        home = self.work_root / run_id
        # The script lives beside the scratch directory, not in it, so it does not show up in `ls ~`.
        script_path = self.work_root / f"{run_id}.sh"
        process: asyncio.subprocess.Process | None = None
        buffer = _TailBuffer(self.max_output_bytes)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        timed_out = False
        try:
            await asyncio.to_thread(_prepare, home, script_path, self.script)
            process = await asyncio.create_subprocess_exec(
                "bash", str(script_path), cwd=home, env=_script_env(home),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True,
            )
            deadline = time.monotonic() + self.timeout
            assert process.stdout is not None
            while True:
                remaining = deadline - time.monotonic()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    chunk = await asyncio.wait_for(process.stdout.read(READ_CHUNK_BYTES), remaining)
                except TimeoutError:
                    timed_out = True
                    break
                if not chunk:
                    break
                buffer.append(chunk)
                text = decoder.decode(chunk)
                if text:
                    yield text
            if not timed_out:
                # Output closed; the script itself may still be running (it closed its stdout).
                try:
                    await asyncio.wait_for(process.wait(), max(deadline - time.monotonic(), 0.001))
                except TimeoutError:
                    timed_out = True
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail
            if timed_out:
                _kill_group(process)
                await process.wait()
                notice = f"\n[timed out after {self.timeout:g}s; the script and its children were killed]\n"
                buffer.append(notice.encode())
                yield notice
                exit_code = TIMED_OUT_EXIT_CODE
            else:
                code = process.returncode
                exit_code = 128 - code if code is not None and code < 0 else int(code or 0)
            self.result = HookResult(exit_code=exit_code, output=buffer.text(), timed_out=timed_out)
        finally:
            # Runs on success, timeout, errors and when the consumer stops early (client disconnect).
            if process is not None:
                _kill_group(process)
            # The clean-up is a task of its own: a cancelled consumer (anyio cancels again at every
            # await) may stop waiting for it, but it still reaps the script and removes its files.
            cleanup = asyncio.ensure_future(_clean_up(process, home, script_path))
            _cleanups.add(cleanup)
            cleanup.add_done_callback(_cleanups.discard)
            await asyncio.shield(cleanup)


async def run_script(script: str, *, work_root: Path, timeout: float,
                     max_output_bytes: int = MAX_OUTPUT_BYTES) -> HookResult:
    """Run `script` to completion (or timeout) and return its result."""
    run = HookRun(script, work_root=work_root, timeout=timeout, max_output_bytes=max_output_bytes)
    async for _ in run:
        pass
    assert run.result is not None
    return run.result


_cleanups: set[asyncio.Future] = set()


async def _clean_up(process: asyncio.subprocess.Process | None, home: Path, script_path: Path) -> None:
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    await asyncio.to_thread(_remove, home, script_path)


def _script_env(home: Path) -> dict[str, str]:
    env = {name: os.environ[name] for name in INHERITED_ENV if name in os.environ}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update({"HOME": str(home), "PWD": str(home), "TMPDIR": str(home), "SHELL": "/bin/bash",
                "TERM": "dumb", "CI": "1"})
    return env


def _prepare(home: Path, script_path: Path, script: str) -> None:
    home.mkdir(parents=True, mode=0o700)
    script_path.write_text(script)


def _kill_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the script's process group; it may already be gone, which is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _remove(home: Path, script_path: Path) -> None:
    """Remove the scratch directory even where the script took away its own permissions."""

    def make_writable_and_retry(function, path, _exc_info):
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), stat.S_IRWXU)
            if os.path.isdir(path) and not os.path.islink(path):
                os.chmod(path, stat.S_IRWXU)
            function(path)

    if home.exists():
        shutil.rmtree(home, onerror=make_writable_and_retry)
    script_path.unlink(missing_ok=True)
