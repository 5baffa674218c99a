"""Commands in a workspace pod through pods/exec: the channel protocol, and what we send over it.

pods/exec is a websocket (`v4.channel.k8s.io`): every binary message starts with its channel, 0 stdin,
1 stdout, 2 stderr, 3 the outcome (a `Status`: Success, or NonZeroExitCode with the code). v4 cannot close
stdin on its own, so nothing we run reads stdin to its end:

- `exec` sends the environment as one line of base64 that the wrapper reads, decodes and evals before it
  execs the command. Not as `env K=V` in the command: the command is part of the URL, which API audit
  logs record even at the `Metadata` level, and the environment holds the caller's secrets.
- the upload of a staged home (`upload_command`) reads exactly the archive's size (`head -c`).

Both run in the same image as the engine (sh, base64, head, tar, timeout).
"""

from __future__ import annotations

import asyncio
import base64
import json
import shlex
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from replicas.runtime.base import OutputCallback, RuntimeFailure
from replicas.runtime.k8s_objects import UPLOAD_DONE

STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3
# Reads the environment (one base64 line on stdin), goes to $1, and runs the rest with stdin closed.
_WRAPPER = 'IFS= read -r line; eval "$(printf %s "$line" | base64 -d)"; cd "$1" && shift && exec "$@" </dev/null'
CHUNK = 256 * 1024


def exec_command(argv: Sequence[str], cwd: str, timeout_seconds: int) -> list[str]:
    """The command line sent to pods/exec: the wrapper, then `timeout` around `argv` (it kills the command's
    tree when time is up, even if our side of the stream is gone)."""
    return ["sh", "-c", _WRAPPER, "sh", cwd, "timeout", "--kill-after=2", str(timeout_seconds), *argv]


def environment_line(env: Mapping[str, str]) -> bytes:
    """`env` as the one stdin line the wrapper evals: `export K='v'` statements, base64, a newline."""
    script = "".join(f"export {key}={shlex.quote(value)}\n" for key, value in env.items() if key.isidentifier())
    return base64.b64encode(script.encode()) + b"\n"


def upload_command(size: int, mount_path: str) -> list[str]:
    """Unpack `size` bytes of tar from stdin into the claim, then tell the waiting init container."""
    script = 'head -c "$0" | tar -x -f - -C "$1" && touch "$1/' + UPLOAD_DONE + '"'
    return ["sh", "-c", script, str(size), mount_path]


def exit_code(status: Mapping) -> int:
    """The exit code a channel-3 `Status` carries (0 for Success)."""
    if status.get("status") == "Success":
        return 0
    for cause in (status.get("details") or {}).get("causes") or []:
        if cause.get("reason") == "ExitCode":
            return int(cause.get("message"))
    raise RuntimeFailure("Workspace command failed to run", status.get("message") or json.dumps(status)[:500])


@dataclass
class ExecOutcome:
    exit_code: int
    output: bytes


async def run(socket_context, stdin: AsyncIterator[bytes] | None, on_output: OutputCallback | None,
              limit: int) -> ExecOutcome:
    """Drive one pods/exec websocket: send `stdin`, gather stdout and stderr (the last `limit` bytes;
    `on_output` sees every chunk), return with the exit code once the server closes the stream."""
    output = bytearray()
    status: dict | None = None
    try:
        async with socket_context as ws:
            async def send() -> None:
                async for chunk in stdin or _nothing():
                    for start in range(0, len(chunk), CHUNK):
                        await ws.send_bytes(bytes([STDIN]) + chunk[start:start + CHUNK])

            sender = asyncio.create_task(send())
            try:
                async for message in ws:
                    if message.type not in (aiohttp.WSMsgType.BINARY, aiohttp.WSMsgType.TEXT):
                        break
                    data = message.data if isinstance(message.data, bytes) else message.data.encode()
                    if not data:
                        continue
                    channel, payload = data[0], data[1:]
                    if channel in (STDOUT, STDERR) and payload:
                        if on_output is not None:
                            on_output(payload)
                        output += payload
                        del output[:-limit]
                    elif channel == STATUS and payload:
                        status = json.loads(payload)
            finally:
                if not sender.done():
                    sender.cancel()
                else:
                    sender.result()
    except aiohttp.WSServerHandshakeError as exc:
        raise RuntimeFailure("Workspace command failed to run", f"pods/exec refused: {exc.status} {exc.message}"
                             ) from None
    except aiohttp.ClientError as exc:
        raise RuntimeFailure("Workspace command failed to run", f"pods/exec: {exc}") from None
    if status is None:
        raise RuntimeFailure("Workspace command failed to run", "the exec stream ended without an outcome")
    return ExecOutcome(exit_code(status), bytes(output))


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield b""
